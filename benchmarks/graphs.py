"""Graph Grad-CAM against PyG's GNNExplainer, PGExplainer and CaptumExplainer on ground truth.

Two data sets from PyG's generators with known explanations (``leanxai.data.graphs``, seed 0):
BA-Shapes (node classification, house motifs; the zoo's 3-layer GCN) and BA-2Motifs (graph
classification, house vs 5-cycle; the zoo's 3-layer GIN with mean pooling). Methods:

- ``ours``: :class:`leanxai.explainers.graph.GraphGradCAM` (graph Grad-CAM nodes, edge-weight
  gradient edges, one forward and one backward pass), one explanation per call; ``ours
  (batched)`` times the same explanations made in one call (all sampled nodes, or all sampled
  graphs as one batch); the masks are identical (tested).
- ``gnnexplainer``: PyG's ``GNNExplainer()`` at its defaults (100 epochs, lr 0.01), explanation
  type ``model``, node and edge masks of type ``object``.
- ``pgexplainer``: PyG's ``PGExplainer(epochs=30, lr=0.003)`` trained as PyG documents
  (``algorithm.train(epoch, ...)`` over training nodes / graphs, type ``phenomenon``, target the
  true label); its training time is reported apart and not in the per-explanation time.
- ``captum_ig``: PyG's ``CaptumExplainer("IntegratedGradients")`` (node attributes, edge mask).
- ``random``: uniform random masks (seeded).

Metrics, per explained node / graph, as PyG's BA-Shapes example computes them: AUROC of the edge
mask against the ground-truth edge mask over the edges of the node's computation subgraph (its
3-hop neighbourhood; the whole graph for BA-2Motifs), pooled over all explained items (PyG's
number) and per item (for the paired tests); the same for the node mask (node masks of type
``attributes`` summed over features in absolute value); fidelity+ / fidelity- (PyG's
``fidelity``, explanation type ``model``) of each method's top-12 edges (the size of a house in
directed edges), node features untouched. Times: every method runs on the same item in turn,
items in sequence, one thread, after a warm-up; the median per item of the thread's CPU time
(and of the wall time) is reported, and the speedup is the ratio of the CPU medians (the machine
is shared: wall time of a few-ms call mostly measures the other jobs). Paired tests
(:func:`leanxai.evaluate.stats.paired_test`): ours against each method on per-item edge and node
AUROC.

    OMP_NUM_THREADS=1 python benchmarks/graphs.py              # ~5-8 min on one CPU thread
    OMP_NUM_THREADS=1 python benchmarks/graphs.py --quick      # 8 items per data set
    OMP_NUM_THREADS=1 python benchmarks/graphs.py --cost-only  # times only, ~1 min

Output: ``benchmarks/results/graphs.csv``, ``benchmarks/results/graphs_tests.csv`` and
``benchmarks/results/graphs.md`` (the tables in README.md). ``--cost-only`` times ours (one item
per call, and all items in one call), GNNExplainer and CaptumExplainer IG the same way on the same
items, with no metrics and no PGExplainer (its training alone takes minutes), and writes
``benchmarks/results/graphs_cost.csv`` and ``graphs_cost.md``, leaving the full run's files alone:
a second measurement of the cost columns.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from leanxai.data.graphs import computation_subgraph
from leanxai.evaluate.stats import format_p, paired_test
from leanxai.explainers.graph import GraphGradCAM
from leanxai.zoo.graphs import ba_2motifs_split, load_graph_model

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
METHODS = ("ours", "gnnexplainer", "pgexplainer", "captum_ig", "random")
LABELS = {
    "ours": "ours (graph Grad-CAM + edge gradient)",
    "ours_batched": "ours, all items in one call",
    "ours_gxi": "ours, node mask = abs(gradient x input) of the same pass",
    "gnnexplainer": "GNNExplainer (PyG, 100 epochs)",
    "pgexplainer": "PGExplainer (PyG, 30 epochs training)",
    "captum_ig": "CaptumExplainer IG (PyG)",
    "random": "random",
}
TITLES = {
    "ba_shapes": "BA-Shapes, 3-layer GCN (node classification)",
    "ba_2motifs": "BA-2Motifs, 3-layer GIN + mean pooling (graph classification)",
}
ITEMS = {"ba_shapes": "nodes (house nodes of the test split)", "ba_2motifs": "test graphs"}
TOP_EDGES = 12
HOPS = 3


def _auroc(truth: torch.Tensor, score: torch.Tensor) -> float:
    truth = truth.detach().float().cpu()
    if truth.min() == truth.max():
        return math.nan
    return float(roc_auc_score(truth.numpy(), score.detach().float().cpu().numpy()))


def _node_scores(explanation: Any) -> torch.Tensor | None:
    mask = explanation.get("node_mask")
    if mask is None:
        return None
    return mask.abs().sum(dim=-1)


def _top_edges(edge_mask: torch.Tensor, k: int = TOP_EDGES) -> torch.Tensor:
    hard = torch.zeros_like(edge_mask)
    order = torch.sort(edge_mask, descending=True, stable=True).indices[:k]
    hard[order] = 1.0
    return hard


def _pyg_explainer(model: torch.nn.Module, algorithm: Any, level: str, **kwargs: Any) -> Any:
    """A PyG Explainer on its own copy of the model: after PyG's GNNExplainer has run on a model,
    its layers hold a registered ``_edge_mask`` parameter, and CaptumExplainer's mask on the same
    model then never reaches the forward (PyG wraps it in a new Parameter)."""
    from torch_geometric.explain import Explainer

    return Explainer(
        model=copy.deepcopy(model),
        algorithm=algorithm,
        model_config={
            "mode": "multiclass_classification",
            "task_level": level,
            "return_type": "raw",
        },
        **kwargs,
    )


def _fidelity(
    fidelity_explainer: Any, x, edge_index, edge_mask, index, kwargs
) -> tuple[float, float]:
    from torch_geometric.explain import Explanation
    from torch_geometric.explain.metric import fidelity

    explanation = Explanation(
        x=x,
        edge_index=edge_index,
        edge_mask=_top_edges(edge_mask),
        index=index,
        **kwargs,
    )
    explanation._model_args = list(kwargs)
    prediction = fidelity_explainer.get_prediction(x, edge_index, **kwargs)
    explanation.target = fidelity_explainer.get_target(prediction)  # the model's own classes
    plus, minus = fidelity(fidelity_explainer, explanation)
    return float(plus), float(minus)


def _time(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """The result, the wall time and the CPU time of this thread, in ms.

    CPU time is what the comparison uses: the machine is shared, and a call of a few ms is
    often descheduled, which wall time counts and CPU time does not (one thread does all the
    work: ``torch.set_num_threads(1)``).
    """
    start, cpu = time.perf_counter(), time.thread_time()
    result = call()
    return result, (time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000


def _train_pg(model, level: str, items: list[Any], epochs: int = 30) -> tuple[Any, float]:
    from torch_geometric.explain.algorithm import PGExplainer

    explainer = _pyg_explainer(
        model,
        PGExplainer(epochs=epochs, lr=0.003),
        level,
        explanation_type="phenomenon",
        edge_mask_type="object",
    )
    start = time.perf_counter()
    for epoch in range(epochs):
        for x, edge_index, target, index, kwargs in items:
            explainer.algorithm.train(
                epoch, explainer.model, x, edge_index, target=target, index=index, **kwargs
            )
    return explainer, time.perf_counter() - start


def _items(name: str, quick: bool) -> tuple[Any, dict[str, Any], str, list[dict[str, Any]], list]:
    """The model, its metadata, the task level, the explained items and PGExplainer's training
    items of data set ``name`` (seed 0)."""
    if name == "ba_shapes":
        from leanxai.data.graphs import ba_shapes

        model, meta = load_graph_model("ba_shapes_gcn")
        data = ba_shapes(0)
        level = "node"
        motif = [i for i in range(data.num_nodes) if data.node_mask[i] > 0]
        test_nodes = [i for i in motif if data.test_mask[i]]
        train_nodes = [i for i in motif if data.train_mask[i]]
        step = max(1, len(test_nodes) // (8 if quick else 40))
        sample = test_nodes[::step][: 8 if quick else 40]
        items = []
        for i in sample:
            nodes, edges = computation_subgraph(i, data.edge_index, HOPS, data.num_nodes)
            items.append(
                {
                    "data": data,
                    "index": i,
                    "kwargs": {},
                    "nodes": nodes,
                    "edges": edges,
                    "node_truth": data.node_mask,
                    "edge_truth": data.edge_mask,
                    "label": data.y,
                }
            )
        pg_items = [
            (data.x, data.edge_index, data.y, i, {})
            for i in train_nodes[:: max(1, len(train_nodes) // (10 if quick else 40))]
        ]
    else:
        model, meta = load_graph_model("ba_2motifs_gin")
        train, test = ba_2motifs_split(0)
        level = "graph"
        sample = test[: 8 if quick else 40]
        items = []
        for graph in sample:
            batch = torch.zeros(graph.num_nodes, dtype=torch.long)
            items.append(
                {
                    "data": graph,
                    "index": None,
                    "kwargs": {"batch": batch},
                    "nodes": torch.ones(graph.num_nodes, dtype=torch.bool),
                    "edges": torch.ones(graph.num_edges, dtype=torch.bool),
                    "node_truth": graph.node_mask,
                    "edge_truth": graph.edge_mask,
                    "label": graph.y,
                }
            )
        pg_items = [
            (g.x, g.edge_index, g.y, None, {"batch": torch.zeros(g.num_nodes, dtype=torch.long)})
            for g in train[: 20 if quick else 100]
        ]
    return model, meta, level, items, pg_items


def run_dataset(name: str, quick: bool, generator: torch.Generator) -> dict[str, Any]:
    from torch_geometric.data import Batch
    from torch_geometric.explain import CaptumExplainer, GNNExplainer
    from torch_geometric.explain.algorithm import DummyExplainer

    model, meta, level, items, pg_items = _items(name, quick)
    ours = GraphGradCAM(model)
    gnn = _pyg_explainer(
        model,
        GNNExplainer(),
        level,
        explanation_type="model",
        node_mask_type="object",
        edge_mask_type="object",
    )
    captum = _pyg_explainer(
        model,
        CaptumExplainer("IntegratedGradients"),
        level,
        explanation_type="model",
        node_mask_type="attributes",
        edge_mask_type="object",
    )
    fidelity_explainer = _pyg_explainer(
        model, DummyExplainer(), level, explanation_type="model", edge_mask_type="object"
    )
    torch.manual_seed(0)
    pg, pg_seconds = _train_pg(model, level, pg_items)

    def run(method: str, item: dict[str, Any]) -> Any:
        data, index, kwargs = item["data"], item["index"], item["kwargs"]
        if method == "ours":
            return ours.explain(data, index=index)
        if method == "gnnexplainer":
            return gnn(data.x, data.edge_index, index=index, **kwargs)
        if method == "pgexplainer":
            return pg(data.x, data.edge_index, target=item["label"], index=index, **kwargs)
        if method == "captum_ig":
            return captum(data.x, data.edge_index, index=index, **kwargs)
        from torch_geometric.explain import Explanation

        return Explanation(
            node_mask=torch.rand(data.num_nodes, 1, generator=generator),
            edge_mask=torch.rand(data.num_edges, generator=generator),
        )

    # Warm-up: every method once on the first item.
    for method in METHODS:
        run(method, items[0])

    every = (*METHODS, "ours_gxi")
    rows: dict[str, dict[str, list[float]]] = {
        m: {"ms": [], "cpu": [], "edge": [], "node": [], "fid_plus": [], "fid_minus": []}
        for m in every
    }
    pooled: dict[str, dict[str, list[torch.Tensor]]] = {
        m: {"edge_t": [], "edge_s": [], "node_t": [], "node_s": []} for m in every
    }
    for number, item in enumerate(items):
        for method in METHODS:
            explanation, ms, cpu = _time(lambda: run(method, item))  # noqa: B023
            record = rows[method]
            record["ms"].append(ms)
            record["cpu"].append(cpu)
            edge_truth, node_truth = item["edge_truth"], item["node_truth"]
            edges, nodes = item["edges"], item["nodes"]
            edge_scores = explanation.edge_mask.detach()
            record["edge"].append(_auroc(edge_truth[edges], edge_scores[edges]))
            pooled[method]["edge_t"].append(edge_truth[edges])
            pooled[method]["edge_s"].append(edge_scores[edges])
            node_scores = _node_scores(explanation)
            if node_scores is not None:
                record["node"].append(_auroc(node_truth[nodes], node_scores[nodes]))
                pooled[method]["node_t"].append(node_truth[nodes])
                pooled[method]["node_s"].append(node_scores[nodes])
            if method == "ours":  # the same pass's gradient x input, as a node mask
                gxi = explanation.feature_attribution.abs().sum(dim=-1)
                rows["ours_gxi"]["node"].append(_auroc(node_truth[nodes], gxi[nodes]))
                pooled["ours_gxi"]["node_t"].append(node_truth[nodes])
                pooled["ours_gxi"]["node_s"].append(gxi[nodes])
            data = item["data"]
            plus, minus = _fidelity(
                fidelity_explainer,
                data.x,
                data.edge_index,
                edge_scores,
                item["index"],
                item["kwargs"],
            )
            record["fid_plus"].append(plus)
            record["fid_minus"].append(minus)
        print(f"{name}: {number + 1}/{len(items)}", flush=True)

    # The same explanations, made in one call.
    if level == "node":
        _, batched_ms, batched_cpu = _time(
            lambda: ours.explain(items[0]["data"], index=[it["index"] for it in items])
        )
    else:
        batch = Batch.from_data_list([it["data"] for it in items])
        _, batched_ms, batched_cpu = _time(lambda: ours.explain(batch))

    summary = []
    for method in METHODS:
        record, pool = rows[method], pooled[method]
        node_pooled = (
            _auroc(torch.cat(pool["node_t"]), torch.cat(pool["node_s"]))
            if pool["node_t"]
            else math.nan
        )
        summary.append(
            {
                "dataset": name,
                "method": method,
                "items": len(items),
                "ms_per_item": statistics.median(record["ms"]),
                "cpu_ms_per_item": statistics.median(record["cpu"]),
                "edge_auroc": _auroc(torch.cat(pool["edge_t"]), torch.cat(pool["edge_s"])),
                "edge_auroc_mean": float(np.nanmean(record["edge"])),
                "node_auroc": node_pooled,
                "node_auroc_mean": float(np.nanmean(record["node"]))
                if record["node"]
                else math.nan,
                "fidelity_plus": float(np.mean(record["fid_plus"])),
                "fidelity_minus": float(np.mean(record["fid_minus"])),
                "training_s": pg_seconds if method == "pgexplainer" else 0.0,
            }
        )
    summary.append(
        {
            "dataset": name,
            "method": "ours_batched",
            "items": len(items),
            "ms_per_item": batched_ms / len(items),
            "cpu_ms_per_item": batched_cpu / len(items),
            **{
                k: summary[0][k]
                for k in (
                    "edge_auroc",
                    "edge_auroc_mean",
                    "node_auroc",
                    "node_auroc_mean",
                    "fidelity_plus",
                    "fidelity_minus",
                )
            },
            "training_s": 0.0,
        }
    )
    gxi_pool = pooled["ours_gxi"]
    summary.append(
        {
            **summary[0],
            "method": "ours_gxi",
            "node_auroc": _auroc(torch.cat(gxi_pool["node_t"]), torch.cat(gxi_pool["node_s"])),
            "node_auroc_mean": float(np.nanmean(rows["ours_gxi"]["node"])),
        }
    )
    tests = []
    pairs = [("ours", m, metric) for m in METHODS[1:] for metric in ("edge", "node")]
    pairs += [("ours_gxi", m, "node") for m in ("gnnexplainer", "captum_ig", "random")]
    for ours_key, method, metric in pairs:
        a, b = rows[ours_key][metric], rows[method][metric]
        if not b:
            continue
        try:
            result = paired_test(a, b)
        except ValueError:
            continue
        label = f"{metric} AUROC" + (" (ours: abs(gradient x input))" if ours_key != "ours" else "")
        tests.append({"dataset": name, "metric": label, "against": method, **result.to_dict()})
    return {"summary": summary, "tests": tests, "meta": meta}


def _fmt(value: float, digits: int = 3) -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _ratio(speed: float) -> str:
    return f"{speed:.0f}x" if speed >= 10 else f"{speed:.2g}x"


def write(results: list[dict[str, Any]], quick: bool) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = [row for result in results for row in result["summary"]]
    tests = [row for result in results for row in result["tests"]]
    suffix = "_quick" if quick else ""
    with open(RESULTS / f"graphs{suffix}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    with open(RESULTS / f"graphs_tests{suffix}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(tests[0]))
        writer.writeheader()
        writer.writerows(tests)
    lines = []
    for result in results:
        rows = result["summary"]
        name = rows[0]["dataset"]
        ours = next(r for r in rows if r["method"] == "ours")
        meta = result["meta"]
        lines += [
            f"**{TITLES[name]}**"
            f" — model test accuracy {meta['test_accuracy']:.3f}; {ours['items']} explained "
            f"{ITEMS[name]}.",
            "",
            "| method | CPU ms per explanation | wall ms | ours faster by (CPU) "
            "| edge AUROC (pooled) | edge AUROC (mean) | node AUROC (pooled) | fidelity+ "
            "| fidelity- |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            speed = row["cpu_ms_per_item"] / ours["cpu_ms_per_item"]
            extra = f" (+{row['training_s']:.0f} s training)" if row["training_s"] else ""
            lines.append(
                f"| {LABELS[row['method']]} | {row['cpu_ms_per_item']:.1f}{extra} | "
                f"{row['ms_per_item']:.1f} | "
                f"{'—' if row['method'].startswith('ours') else _ratio(speed)} | "
                f"{_fmt(row['edge_auroc'])} | {_fmt(row['edge_auroc_mean'])} | "
                f"{_fmt(row['node_auroc'])} | {_fmt(row['fidelity_plus'], 2)} | "
                f"{_fmt(row['fidelity_minus'], 2)} |"
            )
        lines.append("")
    lines += [
        "Paired tests, ours against each method on per-item AUROC (positive difference: ours "
        "higher):",
        "",
        "| data set | metric | against | n | mean ours | mean other | difference | Wilcoxon p | "
        "t-test p | effect size d_z |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in tests:
        lines.append(
            f"| {row['dataset']} | {row['metric']} | {row['against']} | {row['n']} | "
            f"{row['mean_a']:.3f} | {row['mean_b']:.3f} | {row['mean_diff']:+.3f} | "
            f"{format_p(row['w_pvalue'])} | {format_p(row['t_pvalue'])} | "
            f"{row['effect_size']:+.2f} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"graphs{suffix}.md").write_text(text)
    return text


COST_METHODS = ("ours", "gnnexplainer", "captum_ig")


def cost_dataset(name: str, quick: bool) -> list[dict[str, Any]]:
    """CPU and wall ms per explanation of ours, GNNExplainer and CaptumExplainer IG, as
    :func:`run_dataset` times them (each item in turn by every method, after a warm-up), and of
    ours with all items in one call; no masks are scored."""
    from torch_geometric.data import Batch
    from torch_geometric.explain import CaptumExplainer, GNNExplainer

    model, _, level, items, _ = _items(name, quick)
    ours = GraphGradCAM(model)
    explainers = {
        "gnnexplainer": _pyg_explainer(
            model,
            GNNExplainer(),
            level,
            explanation_type="model",
            node_mask_type="object",
            edge_mask_type="object",
        ),
        "captum_ig": _pyg_explainer(
            model,
            CaptumExplainer("IntegratedGradients"),
            level,
            explanation_type="model",
            node_mask_type="attributes",
            edge_mask_type="object",
        ),
    }

    def run(method: str, item: dict[str, Any]) -> Any:
        data, index = item["data"], item["index"]
        if method == "ours":
            return ours.explain(data, index=index)
        return explainers[method](data.x, data.edge_index, index=index, **item["kwargs"])

    for method in COST_METHODS:
        run(method, items[0])
    times: dict[str, dict[str, list[float]]] = {m: {"ms": [], "cpu": []} for m in COST_METHODS}
    for number, item in enumerate(items):
        for method in COST_METHODS:
            _, ms, cpu = _time(lambda: run(method, item))  # noqa: B023
            times[method]["ms"].append(ms)
            times[method]["cpu"].append(cpu)
        print(f"{name}: {number + 1}/{len(items)}", flush=True)
    if level == "node":
        _, batched_ms, batched_cpu = _time(
            lambda: ours.explain(items[0]["data"], index=[it["index"] for it in items])
        )
    else:
        batch = Batch.from_data_list([it["data"] for it in items])
        _, batched_ms, batched_cpu = _time(lambda: ours.explain(batch))
    ours_cpu = statistics.median(times["ours"]["cpu"])
    rows = [
        {
            "dataset": name,
            "method": method,
            "items": len(items),
            "ms_per_item": statistics.median(times[method]["ms"]),
            "cpu_ms_per_item": statistics.median(times[method]["cpu"]),
            "cpu_ratio_to_ours": statistics.median(times[method]["cpu"]) / ours_cpu,
        }
        for method in COST_METHODS
    ]
    rows.append(
        {
            "dataset": name,
            "method": "ours_batched",
            "items": len(items),
            "ms_per_item": batched_ms / len(items),
            "cpu_ms_per_item": batched_cpu / len(items),
            "cpu_ratio_to_ours": batched_cpu / len(items) / ours_cpu,
        }
    )
    return rows


def write_cost(rows: list[dict[str, Any]], quick: bool) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if quick else ""
    with open(RESULTS / f"graphs_cost{suffix}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| data set | method | CPU ms per explanation | wall ms | ours faster by (CPU) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        speed = row["cpu_ratio_to_ours"]
        lines.append(
            f"| {row['dataset']} | {LABELS[row['method']]} | {row['cpu_ms_per_item']:.2f} | "
            f"{row['ms_per_item']:.2f} | "
            f"{'—' if row['method'].startswith('ours') else _ratio(speed)} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"graphs_cost{suffix}.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 items per data set")
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="time ours, GNNExplainer and CaptumExplainer IG only (graphs_cost.*)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if args.cost_only:
        start = time.perf_counter()
        rows = [
            row for name in ("ba_shapes", "ba_2motifs") for row in cost_dataset(name, args.quick)
        ]
        print(write_cost(rows, args.quick))
        print(f"total {time.perf_counter() - start:.0f} s")
        return
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    results = [run_dataset(name, args.quick, generator) for name in ("ba_shapes", "ba_2motifs")]
    print(write(results, args.quick))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
