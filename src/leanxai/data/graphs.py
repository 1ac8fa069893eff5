"""Graphs with ground-truth explanations, built from PyG's generators: BA-Shapes and BA-2Motifs.

Both follow Ying et al. (GNNExplainer, 2019) and Luo et al. (PGExplainer, 2020), generated here
with :class:`torch_geometric.datasets.ExplainerDataset` and its graph and motif generators (no
download). Each is seeded: the same seed gives the same graphs.

- :func:`ba_shapes`: one Barabasi-Albert graph of 300 nodes (5 edges per new node) with 80 house
  motifs attached; node labels 0 (base), 1-3 (house top, middle, bottom); constant node features
  (``T.Constant()``, as in PyG's BA-Shapes example); ``node_mask`` and ``edge_mask`` are 1 on the
  motifs.
- :func:`ba_2motifs`: graphs of a 20-node Barabasi-Albert tree with one motif attached, a house
  (label 0) or a 5-cycle (label 1); ten node features of 0.1, as in the original set; ground truth
  on the motif's nodes and edges.

torch_geometric is imported inside the functions (the ``graph`` extra).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from leanxai.core import validate

__all__ = ["ba_2motifs", "ba_shapes", "computation_subgraph"]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch and NumPy's global generator (PyG's BA generator draws from it) for the block,
    then put both states back."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


def ba_shapes(seed: int = 0, *, num_nodes: int = 300, num_motifs: int = 80) -> Any:
    """BA-Shapes as PyG's example builds it, with ``train_mask``/``test_mask`` (80/20, stratified).

    Returns
    -------
    torch_geometric.data.Data
        ``x`` (N, 1) ones, ``edge_index`` (2, E) undirected, ``y`` (N,) in 0..3, ``node_mask``
        (N,) and ``edge_mask`` (E,) ground truth, ``train_mask`` and ``test_mask`` (N,) bool.
    """
    from torch_geometric.data import Data
    from torch_geometric.datasets import ExplainerDataset
    from torch_geometric.datasets.graph_generator import BAGraph

    seed = validate.non_negative_int("seed", seed)
    with _seeded(seed):
        dataset = ExplainerDataset(
            graph_generator=BAGraph(num_nodes=num_nodes, num_edges=5),
            motif_generator="house",
            num_motifs=num_motifs,
        )
        truth = dataset[0]
        n = int(truth.y.numel())
        train_mask = torch.zeros(n, dtype=torch.bool)
        for label in truth.y.unique():
            members = (truth.y == label).nonzero()[:, 0]
            members = members[torch.randperm(members.numel())]
            train_mask[members[: round(0.8 * members.numel())]] = True
    return Data(
        x=torch.ones(n, 1),
        edge_index=truth.edge_index,
        y=truth.y,
        node_mask=truth.node_mask,
        edge_mask=truth.edge_mask,
        train_mask=train_mask,
        test_mask=~train_mask,
    )


def ba_2motifs(seed: int = 0, *, num_graphs: int = 1000, base_nodes: int = 20) -> list[Any]:
    """BA-2Motifs: half the graphs carry a house (label 0), half a 5-cycle (label 1).

    Returns
    -------
    list of torch_geometric.data.Data
        Each with ``x`` (N, 10) of 0.1, ``edge_index``, ``y`` (1,), ``node_mask`` (N,) and
        ``edge_mask`` (E,) ground truth. Labels alternate 0, 1, 0, ...
    """
    from torch_geometric.data import Data
    from torch_geometric.datasets import ExplainerDataset
    from torch_geometric.datasets.graph_generator import BAGraph
    from torch_geometric.datasets.motif_generator import CycleMotif, HouseMotif

    seed = validate.non_negative_int("seed", seed)
    num_graphs = validate.positive_int("num_graphs", num_graphs)
    graphs = []
    with _seeded(seed):
        generators = [
            ExplainerDataset(BAGraph(base_nodes, 1), HouseMotif(), num_motifs=1),
            ExplainerDataset(BAGraph(base_nodes, 1), CycleMotif(5), num_motifs=1),
        ]
        for i in range(num_graphs):
            label = i % 2
            truth = generators[label].get_graph()
            n = int(truth.node_mask.numel())
            graphs.append(
                Data(
                    x=torch.full((n, 10), 0.1),
                    edge_index=truth.edge_index,
                    y=torch.tensor([label]),
                    node_mask=truth.node_mask,
                    edge_mask=truth.edge_mask,
                )
            )
    return graphs


def computation_subgraph(
    index: int, edge_index: torch.Tensor, num_hops: int, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nodes and edges that can reach node ``index`` in ``num_hops`` message-passing steps.

    Returns ``(node_mask (N,) bool, edge_mask (E,) bool)``, as PyG's ``k_hop_subgraph`` computes
    them (flow source to target).
    """
    from torch_geometric.utils import k_hop_subgraph

    subset, _, _, edges = k_hop_subgraph(int(index), num_hops, edge_index, num_nodes=num_nodes)
    nodes = torch.zeros(num_nodes, dtype=torch.bool)
    nodes[subset] = True
    return nodes, edges
