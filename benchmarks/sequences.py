"""Per-input explanations of recurrent classifiers against planted ground truth (issue 17).

For each set with known saliency (:mod:`leanxai.data.sequences`: box and sine patterns in the
style of Ismail et al. 2020, and the state-switching set) and each reference model (LSTM, GRU,
BiLSTM, :func:`leanxai.zoo.sequences.load_saliency_model`, seed 0), every per-input method of
the registry (family ``recurrent``, output ``time x feature map``) explains the first
``--n`` test sequences for the predicted class. Reported per method and model:

- cost: ms per sequence and the ratio to inference (``model(x)`` on the same batch of 64), the
  median of interleaved repeats in this one process, one thread, in CPU time of the process
  (``time.process_time``: on a machine whose cores are shared, wall time charges a call for the
  time it waits for a core, which inflates longer calls most); the wall-time ratio is kept in the
  CSV as ``x_inference_wall``;
- AUPRC and AUROC of the ``(T, F)`` map (``|attribution|``) against the planted cells, and of
  the ``(T,)`` time map against the planted steps, averaged over sequences (a uniformly random
  map is the chance row);
- deletion over time: the steps in decreasing time-map order are replaced by the sequence's own
  mean, 10% at a time; the area under the softmax probability of the originally predicted class
  (lower is better);
- paired tests (t-test and Wilcoxon, :func:`leanxai.evaluate.stats.paired_test`) of DeepACTIF
  per input against each other method on per-sequence AUPRC (T x F), over all models of a set.

On BasicMotions and JapaneseVowels (aeon; no ground truth) only the deletion curves.

    OMP_NUM_THREADS=1 python benchmarks/sequences.py            # ~5-10 min on one thread
    OMP_NUM_THREADS=1 python benchmarks/sequences.py --quick    # one set, LSTM, 30 sequences
    OMP_NUM_THREADS=1 python benchmarks/sequences.py --cost-only  # rerun the cost columns only

Output: ``benchmarks/results/sequences.csv`` (one row per set, model and method),
``benchmarks/results/sequences_tests.csv`` and ``benchmarks/results/sequences.md``.
``--cost-only`` measures the cost again, replaces the cost columns of the existing
``sequences.csv`` and rewrites ``sequences.md`` from the CSV files; nothing else is rerun.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from leanxai.evaluate.localization import pr_curve
from leanxai.evaluate.stats import format_p, paired_test
from leanxai.explainers import registry
from leanxai.zoo.recurrent import load_recurrent_data, load_recurrent_model
from leanxai.zoo.sequences import load_saliency_data, load_saliency_model

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SETS = ("box", "sine", "switching")
REAL = {"basic_motions": "BasicMotions", "japanese_vowels": "JapaneseVowels"}
KINDS = {"lstm": "LSTM", "gru": "GRU", "bilstm": "BiLSTM"}
OPTIONS: dict[str, dict[str, Any]] = {"ig_map": {"n_steps": 32}, "occlusion_map": {"window": 5}}
COST_BATCH = 64
DELETION_STEPS = 10  # 10% of the steps at a time


def _methods() -> tuple[str, ...]:
    return registry.names("recurrent", output="time x feature map")


def _build(name: str, model: torch.nn.Module) -> Any:
    return registry.create(name, model, "recurrent", options=OPTIONS.get(name))


def auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    positives, total = int(truth.sum()), truth.size
    if positives in (0, total):
        return float("nan")
    ranks = rankdata(scores)
    return float(
        (ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * (total - positives))
    )


def _per_sequence(heatmap: torch.Tensor, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """AUPRC and AUROC of each map ``(B, ...)`` against its truth."""
    maps = heatmap.double().reshape(heatmap.shape[0], heatmap.shape[1], -1)
    labels = truth.reshape(maps.shape)
    auprc = pr_curve(maps, labels).aupr.double().numpy()
    roc = np.array(
        [auroc(m.flatten().numpy(), t.flatten().numpy()) for m, t in zip(maps, labels, strict=True)]
    )
    return auprc, roc


@torch.no_grad()
def deletion(
    model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None, time_map: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence area under the deletion curve over time and the mean curve.

    Steps in decreasing ``time_map`` order (ties: earlier first) are replaced by the sequence's
    own per-feature mean over its valid steps, ``ceil(L / 10)`` at a time; the probability of the
    class predicted on the intact sequence is recorded after each round, 0% to 100% removed.
    """
    valid = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask
    call = (lambda v: model(v)) if mask is None else (lambda v: model(v, mask))
    probs = call(x).softmax(1)
    target = probs.argmax(1)
    weights = valid.to(x.dtype)[:, :, None]
    mean = (x * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)  # (B, 1, F)
    ranked = torch.where(valid, time_map.double(), torch.full_like(time_map.double(), -1.0))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(x.shape[1]).expand_as(order))
    lengths = valid.sum(1, keepdim=True)  # (B, 1)
    curve = [probs.gather(1, target[:, None])[:, 0]]
    for k in range(1, DELETION_STEPS + 1):
        removed = rank < torch.ceil(lengths * k / DELETION_STEPS)  # (B, T)
        removed &= valid
        perturbed = torch.where(removed[:, :, None], mean, x)
        curve.append(call(perturbed).softmax(1).gather(1, target[:, None])[:, 0])
    values = torch.stack(curve, 1).double().numpy()  # (B, K + 1)
    area = np.trapezoid(values, dx=1 / DELETION_STEPS, axis=1)
    return area, values.mean(0)


def _median_ms(runs: list[float]) -> float:
    return statistics.median(runs) * 1e3


def cost(
    model: torch.nn.Module, x: torch.Tensor, methods: tuple[str, ...], repeats: int
) -> dict[str, tuple[float, float, float]]:
    """``method -> (ms per sequence, x inference, x inference in wall time)``: each method and
    inference run alternately on the same batch, medians of ``repeats`` rounds after a warm-up.

    Milliseconds and the first ratio are CPU time of the process (one thread: the work done);
    the wall-time ratio also counts the time a call waits for a core when others share them.
    """
    explainers = {name: _build(name, model) for name in methods}
    calls: dict[str, Callable[[], Any]] = {"inference": lambda: model(x)}
    for name, explainer in explainers.items():
        calls[name] = lambda e=explainer: e.explain(x)
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    wall: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        model(x)
    for name in calls:
        with torch.no_grad() if name == "inference" else torch.enable_grad():
            calls[name]()
    for r in range(repeats):
        for name, call in calls.items():
            if r >= 3 and name in ("ig_map", "occlusion_map"):
                continue  # slow: three rounds are enough
            start, start_wall = time.process_time(), time.perf_counter()
            if name == "inference":
                with torch.no_grad():
                    call()
            else:
                call()
            cpu[name].append(time.process_time() - start)
            wall[name].append(time.perf_counter() - start_wall)
    base, base_wall = _median_ms(cpu["inference"]), _median_ms(wall["inference"])
    result = {"inference": (base / len(x), 1.0, 1.0)}
    for name in methods:
        ms = _median_ms(cpu[name])
        result[name] = (ms / len(x), ms / base, _median_ms(wall[name]) / base_wall)
    return result


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values))


def run(sets: tuple[str, ...], kinds: tuple[str, ...], n: int, real: bool, repeats: int) -> None:
    torch.set_num_threads(1)
    methods = _methods()
    rows: list[dict[str, Any]] = []
    per_sequence: dict[tuple[str, str, str], np.ndarray] = {}
    curves: dict[tuple[str, str, str], np.ndarray] = {}
    for dataset in sets:
        _, test = load_saliency_data(dataset)
        test = test.subset(range(n))
        x = test.inputs
        for kind in kinds:
            model, meta = load_saliency_model(dataset, kind)
            timing = cost(model, x[:COST_BATCH], methods, repeats)
            rng = np.random.default_rng(0)
            random_map = torch.from_numpy(rng.random(tuple(x.shape)))
            maps: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
                "random": (random_map, random_map.sum(2))
            }
            for name in methods:
                explanation = _build(name, model).explain(x)
                maps[name] = (explanation.heatmap, explanation.time_map)
            for name, (heatmap, time_map) in maps.items():
                auprc, roc = _per_sequence(heatmap, test.saliency)
                time_auprc, time_roc = _per_sequence(
                    time_map[:, :, None], test.time_saliency[:, :, None]
                )
                area, curve = deletion(model, x, None, time_map)
                per_sequence[(dataset, kind, name)] = auprc
                curves[(dataset, kind, name)] = curve
                ms, ratio, ratio_wall = timing.get(name, (float("nan"),) * 3)
                rows.append(
                    {
                        "dataset": dataset,
                        "model": kind,
                        "test_accuracy": round(meta["test_accuracy"], 3),
                        "method": name,
                        "ms_per_sequence": round(ms, 4),
                        "x_inference": round(ratio, 2),
                        "x_inference_wall": round(ratio_wall, 2),
                        "auprc_tf": round(_mean(auprc), 4),
                        "auroc_tf": round(_mean(roc), 4),
                        "auprc_t": round(_mean(time_auprc), 4),
                        "auroc_t": round(_mean(time_roc), 4),
                        "deletion_auc": round(_mean(area), 4),
                        "n": len(x),
                    }
                )
                print(rows[-1], flush=True)
    tests = []
    for dataset in sets:
        for name in [*methods, "random"]:
            if name == "deepactif_map":
                continue
            a = np.concatenate([per_sequence[(dataset, k, "deepactif_map")] for k in kinds])
            b = np.concatenate([per_sequence[(dataset, k, name)] for k in kinds])
            result = paired_test(a, b)
            tests.append({"dataset": dataset, "a": "deepactif_map", "b": name, **result.to_dict()})
    real_rows: list[dict[str, Any]] = []
    if real:
        for dataset in REAL:
            _, test = load_recurrent_data(dataset)
            test = test.subset(range(min(n, len(test))))
            for kind in kinds:
                model, meta = load_recurrent_model(dataset, kind)
                for name in [*methods, "random"]:
                    if name == "random":
                        rng = np.random.default_rng(0)
                        time_map = torch.from_numpy(rng.random(tuple(test.inputs.shape[:2])))
                    else:
                        time_map = _build(name, model).explain(test.inputs, mask=test.mask).time_map
                    area, curve = deletion(model, test.inputs, test.mask, time_map)
                    real_rows.append(
                        {
                            "dataset": dataset,
                            "model": kind,
                            "test_accuracy": round(meta["test_accuracy"], 3),
                            "method": name,
                            "deletion_auc": round(_mean(area), 4),
                            "curve": " ".join(f"{v:.3f}" for v in curve),
                            "n": len(test),
                        }
                    )
                    print(real_rows[-1], flush=True)
    write(rows, tests, real_rows, n)


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _value(text: str) -> Any:
    """A CSV cell back as the int, float or string it was written from."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _with_wall_column(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``x_inference_wall`` right after ``x_inference`` (NaN if it had none)."""
    rebuilt: dict[str, Any] = {}
    for key, value in row.items():
        if key != "x_inference_wall":
            rebuilt[key] = value
        if key == "x_inference":
            rebuilt["x_inference_wall"] = row.get("x_inference_wall", float("nan"))
    return rebuilt


def cost_only(sets: tuple[str, ...], kinds: tuple[str, ...], repeats: int) -> None:
    """Measure the cost again and replace the cost columns of the existing results."""
    torch.set_num_threads(1)
    rows = [_with_wall_column(row) for row in _read_csv(RESULTS / "sequences.csv")]
    if not rows:
        raise SystemExit(f"no {RESULTS / 'sequences.csv'}: run the full benchmark first")
    methods = _methods()
    for dataset in sets:
        _, test = load_saliency_data(dataset)
        x = test.inputs[:COST_BATCH]
        for kind in kinds:
            model, _ = load_saliency_model(dataset, kind)
            timing = cost(model, x, methods, repeats)
            for row in rows:
                if (row["dataset"], row["model"]) != (dataset, kind) or row["method"] not in timing:
                    continue
                ms, ratio, ratio_wall = timing[row["method"]]
                row["ms_per_sequence"] = round(ms, 4)
                row["x_inference"] = round(ratio, 2)
                row["x_inference_wall"] = round(ratio_wall, 2)
                print({k: row[k] for k in ("dataset", "model", "method")}, timing[row["method"]])
    tests = _read_csv(RESULTS / "sequences_tests.csv")
    write(rows, tests, _read_csv(RESULTS / "sequences_real.csv"), int(rows[0]["n"]))


def write(
    rows: list[dict[str, Any]], tests: list[dict[str, Any]], real_rows: list[dict[str, Any]], n: int
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    _csv(RESULTS / "sequences.csv", rows)
    _csv(RESULTS / "sequences_tests.csv", tests)
    _csv(RESULTS / "sequences_real.csv", real_rows)
    lines = [
        "# Per-input explanations of recurrent classifiers (benchmarks/sequences.py)",
        "",
        f"{n} test sequences per set; maps for the predicted class; cost on a batch of "
        f"{COST_BATCH}, one thread, medians of interleaved repeats in CPU time (x inference: the "
        "same batch through `model(x)`; the wall-time ratio, which on shared cores also counts "
        "waiting for a core, is `x_inference_wall` in the CSV). AUPRC/AUROC: mean over sequences "
        "of the map against the planted cells (T x F) or steps (T). Deletion: area under the "
        "probability of the predicted class as the top steps are replaced by the sequence mean, "
        "10% at a time (lower is better).",
        "",
        "| set | model (acc) | method | ms/seq | x inference | AUPRC TxF | AUROC TxF | AUPRC T | "
        "AUROC T | deletion |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {KINDS[r['model']]} ({r['test_accuracy']:.2f}) | {r['method']} | "
            f"{r['ms_per_sequence']:.3f} | {r['x_inference']:.2f} | {r['auprc_tf']:.3f} | "
            f"{r['auroc_tf']:.3f} | {r['auprc_t']:.3f} | {r['auroc_t']:.3f} | "
            f"{r['deletion_auc']:.3f} |"
        )
    lines += [
        "",
        "Paired tests on per-sequence AUPRC (T x F), all models of a set pooled "
        "(mean difference > 0: DeepACTIF per input better):",
        "",
        "| set | vs | n | DeepACTIF map | other | mean diff | t-test p | Wilcoxon p | d_z |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tests:
        lines.append(
            f"| {t['dataset']} | {t['b']} | {t['n']} | {t['mean_a']:.3f} | {t['mean_b']:.3f} | "
            f"{t['mean_diff']:+.3f} | {format_p(t['t_pvalue'])} | {format_p(t['w_pvalue'])} | "
            f"{t['effect_size']:+.2f} |"
        )
    if real_rows:
        lines += [
            "",
            "Deletion over time on real sets (no ground truth; lower is better), curve at "
            "0, 10, ..., 100% of the steps removed:",
            "",
            "| set | model (acc) | method | deletion | curve |",
            "|---|---|---|---:|---|",
        ]
        for r in real_rows:
            lines.append(
                f"| {REAL[r['dataset']]} | {KINDS[r['model']]} ({r['test_accuracy']:.2f}) | "
                f"{r['method']} | {r['deletion_auc']:.3f} | {r['curve']} |"
            )
    (RESULTS / "sequences.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / 'sequences.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="box, LSTM, 30 sequences, no real sets"
    )
    parser.add_argument("--n", type=int, default=100, help="test sequences per set")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="rerun only the cost (ms/seq, x inference) of the existing results",
    )
    args = parser.parse_args()
    if args.cost_only:
        cost_only(SETS, tuple(KINDS), args.repeats)
    elif args.quick:
        run(("box",), ("lstm",), 30, real=False, repeats=3)
    else:
        run(SETS, tuple(KINDS), args.n, real=True, repeats=args.repeats)


if __name__ == "__main__":
    main()
