"""Small graph neural networks for the graph benchmarks, trained here in seconds and cached.

- :class:`NodeGCN` on :func:`~leanxai.data.graphs.ba_shapes` (node classification): three
  ``GCNConv`` layers with ReLU, then one linear layer per node.
- :class:`GraphGIN` on :func:`~leanxai.data.graphs.ba_2motifs` (graph classification): three
  ``GINConv`` layers whose MLPs end in ReLU, global mean pooling, one linear layer, so that graph
  Grad-CAM at the last layer has the exact forward path.
- :class:`NodeGAT` on BA-Shapes, for the attention-weights baseline.

The factories :func:`ba_shapes_gcn`, :func:`ba_2motifs_gin` and :func:`ba_shapes_gat` return the
trained model (from the cache, or trained on first use) and serve as ``--model py:`` specs:
``leanxai explain graph.pt --model py:leanxai.zoo.graphs:ba_shapes_gcn``.
torch_geometric is imported inside functions (the ``graph`` extra).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from leanxai.zoo.train import deterministic_training, load_cached

__all__ = [
    "GRAPH_RECIPE_VERSION",
    "GraphGIN",
    "NodeGAT",
    "NodeGCN",
    "ba_2motifs_gin",
    "ba_2motifs_split",
    "ba_shapes_gat",
    "ba_shapes_gcn",
    "load_graph_model",
]

GRAPH_RECIPE_VERSION = "v1"
"""Version of the graph recipes; part of the cache file names, bumped whenever weights change."""

_HIDDEN = 20
_NODE_EPOCHS = 1000
_NODE_LR = 0.01
_GRAPH_EPOCHS = 100
_GRAPH_LR = 0.005
_GRAPH_BATCH = 64
_WEIGHT_DECAY = 5e-4
N_GRAPHS = 1000
"""Graphs in the BA-2Motifs set the GIN is trained on (80% train, 20% test)."""


class NodeGCN(nn.Module):
    """``GCNConv`` x3 (ReLU after each), then a linear layer on each node's embedding."""

    def __init__(self, in_channels: int = 1, hidden: int = _HIDDEN, classes: int = 4) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(in_channels, hidden)
        self.conv2 = GCNConv(hidden, hidden)
        self.conv3 = GCNConv(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x, edge_index))
        x = F.relu(self.conv2(x, edge_index))
        x = F.relu(self.conv3(x, edge_index))
        return self.head(x)  # (N, classes)


class NodeGAT(nn.Module):
    """``GATConv`` x3 (one head each, ReLU after each), then a linear layer per node."""

    def __init__(self, in_channels: int = 1, hidden: int = _HIDDEN, classes: int = 4) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        self.conv1 = GATConv(in_channels, hidden)
        self.conv2 = GATConv(hidden, hidden)
        self.conv3 = GATConv(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x, edge_index))
        x = F.relu(self.conv2(x, edge_index))
        x = F.relu(self.conv3(x, edge_index))
        return self.head(x)


def _gin_mlp(fan_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fan_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


class GraphGIN(nn.Module):
    """``GINConv`` x3 (MLPs ending in ReLU), global mean pooling, one linear layer."""

    def __init__(self, in_channels: int = 10, hidden: int = _HIDDEN, classes: int = 2) -> None:
        super().__init__()
        from torch_geometric.nn import GINConv

        self.conv1 = GINConv(_gin_mlp(in_channels, hidden))
        self.conv2 = GINConv(_gin_mlp(hidden, hidden))
        self.conv3 = GINConv(_gin_mlp(hidden, hidden))
        self.head = nn.Linear(hidden, classes)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        from torch_geometric.nn import global_mean_pool

        x = self.conv1(x, edge_index)
        x = self.conv2(x, edge_index)
        x = self.conv3(x, edge_index)
        return self.head(global_mean_pool(x, batch))  # (B, classes)


def _train_node_model(model: nn.Module, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    from leanxai.data.graphs import ba_shapes

    data = ba_shapes(seed)
    start = time.perf_counter()
    with deterministic_training():
        torch.manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=_NODE_LR, weight_decay=_WEIGHT_DECAY)
        model.train()
        for _ in range(_NODE_EPOCHS):
            optimizer.zero_grad()
            loss = F.cross_entropy(
                model(data.x, data.edge_index)[data.train_mask], data.y[data.train_mask]
            )
            loss.backward()
            optimizer.step()
        model.eval()
    with torch.no_grad():
        predicted = model(data.x, data.edge_index).argmax(dim=1)
    metadata = {
        "dataset": "ba_shapes",
        "seed": seed,
        "epochs": _NODE_EPOCHS,
        "train_accuracy": float((predicted == data.y)[data.train_mask].float().mean()),
        "test_accuracy": float((predicted == data.y)[data.test_mask].float().mean()),
        "training_seconds": round(time.perf_counter() - start, 2),
    }
    return model, metadata


def ba_2motifs_split(seed: int = 0) -> tuple[list[Any], list[Any]]:
    """BA-2Motifs graphs for ``seed``: the first 80% for training, the rest held out."""
    from leanxai.data.graphs import ba_2motifs

    graphs = ba_2motifs(seed, num_graphs=N_GRAPHS)
    cut = int(0.8 * len(graphs))
    return graphs[:cut], graphs[cut:]


def _graph_accuracy(model: nn.Module, graphs: list[Any]) -> float:
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        predicted = model(batch.x, batch.edge_index, batch.batch).argmax(dim=1)
    return float((predicted == batch.y).float().mean())


def _train_graph_model(model: nn.Module, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    from torch_geometric.data import Batch

    train, test = ba_2motifs_split(seed)
    start = time.perf_counter()
    with deterministic_training():
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=_GRAPH_LR)
        model.train()
        for _ in range(_GRAPH_EPOCHS):
            order = torch.randperm(len(train), generator=generator).tolist()
            for i in range(0, len(order), _GRAPH_BATCH):
                batch = Batch.from_data_list([train[j] for j in order[i : i + _GRAPH_BATCH]])
                optimizer.zero_grad()
                loss = F.cross_entropy(model(batch.x, batch.edge_index, batch.batch), batch.y)
                loss.backward()
                optimizer.step()
        model.eval()
    metadata = {
        "dataset": "ba_2motifs",
        "seed": seed,
        "epochs": _GRAPH_EPOCHS,
        "train_accuracy": _graph_accuracy(model, train),
        "test_accuracy": _graph_accuracy(model, test),
        "training_seconds": round(time.perf_counter() - start, 2),
    }
    return model, metadata


_RECIPES: dict[str, tuple[type[nn.Module], str]] = {
    "ba_shapes_gcn": (NodeGCN, "node"),
    "ba_shapes_gat": (NodeGAT, "node"),
    "ba_2motifs_gin": (GraphGIN, "graph"),
}


def load_graph_model(
    name: str,
    seed: int = 0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained model of the graph zoo (``"ba_shapes_gcn"``, ``"ba_shapes_gat"``,
    ``"ba_2motifs_gin"``), cached as ``graph-<name>-s<seed>-<version>.safetensors``.

    Returns the model in eval mode and its metadata (test accuracy, training seconds).
    """
    if name not in _RECIPES:
        raise ValueError(f"name must be one of {sorted(_RECIPES)}, got {name!r}")
    architecture, level = _RECIPES[name]

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return architecture()

    def train() -> tuple[nn.Module, dict[str, Any]]:
        model = build()
        if level == "node":
            return _train_node_model(model, seed)
        return _train_graph_model(model, seed)

    model, metadata = load_cached(
        f"graph-{name}-s{seed}",
        build,
        train,
        GRAPH_RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )
    return model.eval(), metadata


def ba_shapes_gcn() -> nn.Module:
    """The trained BA-Shapes GCN (a ``py:`` model factory)."""
    return load_graph_model("ba_shapes_gcn")[0]


def ba_shapes_gat() -> nn.Module:
    """The trained BA-Shapes GAT (a ``py:`` model factory)."""
    return load_graph_model("ba_shapes_gat")[0]


def ba_2motifs_gin() -> nn.Module:
    """The trained BA-2Motifs GIN (a ``py:`` model factory)."""
    return load_graph_model("ba_2motifs_gin")[0]
