"""``leanxai explain graph.pt --model py:...``: node and edge scores of a graph neural network.

Called by ``leanxai explain`` when every input is a saved PyG ``Data`` (``.pt``), optionally
followed by the nodes to explain: ``graph.pt:400`` or ``graph.pt:400,405`` (node
classification); a plain ``graph.pt`` explains the node(s) saved in ``data.index`` if there are,
else the graph (graph classification). Files are loaded with ``torch.load(weights_only=True)``,
with only PyG's own data classes allowed besides tensors.

For each explanation it writes ``<name>-nodes.csv`` (node, score, cam, kept), ``<name>-edges.csv``
(edge, source, target, score, kept) and ``<name>.png``, a drawing of the kept subgraph: the top
edges (``--threshold edges:K``, default 12) connected to the explained node (or the largest
connected piece, for a graph); and one ``summary.csv``.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
import torch

from leanxai.cli._common import EXIT_PARTIAL, fail, output_names
from leanxai.core.errors import InputError, LeanXAIError

__all__ = ["DEFAULT_EDGES", "explain_graphs", "is_graph_input", "load_graph"]

DEFAULT_EDGES = 12
"""Edges kept in the drawing when ``--threshold`` is not given (a house motif has 12)."""

_INPUT = re.compile(r"^(?P<path>.+\.pt)(?::(?P<nodes>[0-9][0-9,\s]*))?$", re.IGNORECASE)

_FIELDS = ["file", "node", "class", "score", "kept_edges", "time_s", "nodes", "edges", "plot"]
_FIELDS += ["status"]


def is_graph_input(text: str) -> bool:
    """``graph.pt`` or ``graph.pt:<node>[,<node>...]``."""
    return _INPUT.match(str(text)) is not None


def _parse(text: str) -> tuple[Path, list[int] | None]:
    match = _INPUT.match(text)
    if match is None:  # pragma: no cover - checked by the dispatch
        raise InputError(f"{text!r} is not a .pt graph file")
    nodes = match.group("nodes")
    if nodes is None:
        return Path(match.group("path")), None
    return Path(match.group("path")), [int(n) for n in nodes.replace(" ", "").split(",") if n]


def load_graph(path: Path) -> Any:
    """A PyG ``Data`` saved with ``torch.save``, read with ``weights_only=True``.

    Only PyG's data classes (and their storages) are allowed besides tensors: never arbitrary
    objects.
    """
    from torch_geometric.data import Batch, Data
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import (
        BaseStorage,
        EdgeStorage,
        GlobalStorage,
        NodeStorage,
    )

    allowed = [Data, Batch, DataEdgeAttr, DataTensorAttr, BaseStorage, EdgeStorage]
    allowed += [GlobalStorage, NodeStorage]
    if not path.is_file():
        raise InputError(f"graph file {str(path)!r} does not exist")
    try:
        with torch.serialization.safe_globals(allowed):
            value = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot read {str(path)!r} as a saved PyG Data: {first}") from None
    if isinstance(value, dict) and "x" in value and "edge_index" in value:
        value = Data(**value)
    if not (hasattr(value, "x") and hasattr(value, "edge_index")):
        raise InputError(
            f"{str(path)!r} holds a {type(value).__name__}, not a PyG Data with x and edge_index"
        )
    return value


def _draw(explanation: Any, kept: torch.Tensor, node: int | None, title: str) -> bytes:
    """PNG bytes: the kept edges and their nodes, edge width and node colour by score."""
    import networkx as nx
    from matplotlib.figure import Figure

    edge_index = explanation.edge_index
    chosen = kept.nonzero()[:, 0].tolist()
    graph = nx.Graph()
    scores = explanation.node_mask[:, 0]
    for e in chosen:
        a, b = int(edge_index[0, e]), int(edge_index[1, e])
        weight = float(explanation.edge_mask[e])
        if graph.has_edge(a, b):
            weight = max(weight, graph[a][b]["weight"])
        graph.add_edge(a, b, weight=weight)
    if node is not None:
        graph.add_node(node)
    figure = Figure(figsize=(4, 4), dpi=100)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    if graph.number_of_nodes():
        layout = nx.spring_layout(graph, seed=0)
        nodes = list(graph.nodes)
        nx.draw_networkx_edges(
            graph,
            layout,
            ax=axes,
            width=[0.5 + 3 * graph[a][b]["weight"] for a, b in graph.edges],
        )
        nx.draw_networkx_nodes(
            graph,
            layout,
            ax=axes,
            nodelist=nodes,
            node_color=[float(scores[n]) for n in nodes],
            cmap="viridis",
            vmin=0,
            vmax=1,
            node_size=[300 if n == node else 120 for n in nodes],
            edgecolors=["red" if n == node else "black" for n in nodes],
        )
        nx.draw_networkx_labels(graph, layout, ax=axes, font_size=6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _edges_spec(spec: str | None) -> int:
    if spec is None:
        return DEFAULT_EDGES
    text = spec.strip().lower()
    kind, _, value = text.partition(":")
    if kind == "edges" and value.isdigit() and int(value) >= 1:
        return int(value)
    raise InputError(f"--threshold for graphs must be edges:K (K >= 1 edges kept), got {spec!r}")


def explain_graphs(
    inputs: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    method: str | None,
    layer: str | None,
    threshold_spec: str | None,
    target: int | None,
    out_dir: Path,
    overwrite: bool,
) -> None:
    """The graph branch of ``leanxai explain`` (see the module docstring)."""
    from leanxai.core.models import load_model
    from leanxai.explainers import registry
    from leanxai.explainers.graph import connected_subgraph
    from leanxai.io import atomic_write_bytes, atomic_write_text, check_writable

    try:
        top = _edges_spec(threshold_spec)
        info = registry.get(method or registry.default_method("graph"), "graph")
        parsed = [_parse(text) for text in inputs]
    except LeanXAIError as error:
        fail(error)
    stems = output_names([path for path, _ in parsed])
    planned = [out_dir / "summary.csv"]
    for stem, (_, nodes) in zip(stems, parsed, strict=True):
        for name in [f"{stem}-{n}" for n in nodes] if nodes else [stem]:
            planned += [out_dir / f"{name}-nodes.csv", out_dir / f"{name}-edges.csv"]
            planned.append(out_dir / f"{name}.png")
    try:
        check_writable(planned, overwrite)
        loaded = load_model(model_spec, weights)
        options = {"layer": layer} if layer else {}
        explainer = registry.create(info.name, loaded.model, "graph", options=options)
    except LeanXAIError as error:
        fail(error)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create output folder {str(out_dir)!r}: {error.strerror or error}")

    rows: list[dict[str, Any]] = []
    done = failed = 0
    for stem, (path, nodes) in zip(stems, parsed, strict=True):
        try:
            data = load_graph(path)
            if nodes is None and isinstance(getattr(data, "index", None), (int, torch.Tensor)):
                saved = data.index
                nodes = [int(saved)] if isinstance(saved, int) else saved.reshape(-1).tolist()
            start = time.perf_counter()
            result = explainer.explain(data, target, index=nodes)
            seconds = (time.perf_counter() - start) / max(1, len(nodes or [None]))
        except LeanXAIError as error:
            click.echo(f"error: {path}: {error}", err=True)
            rows.append({"file": str(path), "status": f"failed: {error}"})
            failed += 1
            continue
        explanations = result if isinstance(result, list) else [result]
        for explanation in explanations:
            node = explanation.index
            name = stem if node is None or (nodes is None) else f"{stem}-{node}"
            if "edge_mask" in explanation:
                kept = connected_subgraph(
                    explanation.edge_mask,
                    explanation.edge_index,
                    top,
                    node=node,
                    num_nodes=explanation.num_nodes,
                )
                kept_mask = kept > 0
            else:
                kept_mask = torch.zeros(explanation.edge_index.shape[1], dtype=torch.bool)
            touched = torch.zeros(explanation.num_nodes, dtype=torch.bool)
            touched[explanation.edge_index[:, kept_mask].reshape(-1)] = True
            node_csv = io.StringIO()
            writer = csv.writer(node_csv, lineterminator="\n")
            writer.writerow(["node", "score", "cam", "kept"])
            for n in range(explanation.num_nodes):
                writer.writerow(
                    [
                        n,
                        f"{float(explanation.node_mask[n, 0]):.6g}",
                        f"{float(explanation.cam[n]):.6g}",
                        int(touched[n]),
                    ]
                )
            edge_csv = io.StringIO()
            writer = csv.writer(edge_csv, lineterminator="\n")
            writer.writerow(["edge", "source", "target", "score", "kept"])
            scores = explanation.get("edge_mask")
            for e in range(explanation.edge_index.shape[1]):
                writer.writerow(
                    [
                        e,
                        int(explanation.edge_index[0, e]),
                        int(explanation.edge_index[1, e]),
                        "" if scores is None else f"{float(scores[e]):.6g}",
                        int(kept_mask[e]),
                    ]
                )
            classes = explanation.target.tolist()
            score_of = explanation.prediction.softmax(dim=-1)
            score = (
                float(score_of[node, classes[0]])
                if node is not None
                else float(score_of[0, classes[0]])
            )
            title = f"{path.name}" + (f" node {node}" if node is not None else "")
            title += f": class {classes[0]}, {int(kept_mask.sum())} edges kept"
            atomic_write_text(
                out_dir / f"{name}-nodes.csv", node_csv.getvalue(), overwrite=overwrite
            )
            atomic_write_text(
                out_dir / f"{name}-edges.csv", edge_csv.getvalue(), overwrite=overwrite
            )
            atomic_write_bytes(
                out_dir / f"{name}.png",
                _draw(explanation, kept_mask, node, title),
                overwrite=overwrite,
            )
            rows.append(
                {
                    "file": str(path),
                    "node": "" if node is None else node,
                    "class": classes[0] if len(classes) == 1 else " ".join(map(str, classes)),
                    "score": f"{score:.4f}",
                    "kept_edges": int(kept_mask.sum()),
                    "time_s": f"{seconds:.4f}",
                    "nodes": f"{name}-nodes.csv",
                    "edges": f"{name}-edges.csv",
                    "plot": f"{name}.png",
                    "status": "ok",
                }
            )
            done += 1
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_FIELDS, lineterminator="\n")  # type: ignore[assignment]
    writer.writeheader()  # type: ignore[attr-defined]
    writer.writerows(rows)
    atomic_write_text(out_dir / "summary.csv", buffer.getvalue(), overwrite=overwrite)
    click.echo(
        f"explained {done} graph outputs from {len(inputs)} files; wrote {out_dir / 'summary.csv'}"
    )
    if failed:
        click.echo(f"{failed} of {len(inputs)} files failed (named above)", err=True)
        sys.exit(EXIT_PARTIAL if done else 1)
