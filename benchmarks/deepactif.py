"""DeepACTIF against gradient and perturbation rankings: retraining, recovery and cost.

For each data set (BasicMotions, JapaneseVowels with masks, the synthetic set with known
informative features) and each recurrent model (LSTM, GRU, BiLSTM, the zoo's reference models,
seed 0), every method ranks the features on the whole training set; then, for k in 10..50% of
the features, a fresh model of the same kind is trained on each method's top-k features over
several seeds and scored on the test set. Reported:

- test accuracy per method and k, and Wilcoxon signed-rank tests (with the paired t-test and
  the effect size, :func:`leanxai.evaluate.stats.paired_test`) of each method against
  DeepACTIF over the paired (model, k, seed) runs;
- the DeepACTIF ablation: every mapping x aggregation, ``inverse`` being the paper's rule;
- on the synthetic set, how many of the truly informative features each top-k holds;
- the time of ranking the whole training set (median of interleaved repeats in this process,
  one thread) and its peak memory (measured in a child process, see ``_memory``).

Top-k rule: ``n = ceil(k * F / 100)``, at least 1, so on BasicMotions (F = 6) 10% is 1 feature
and 50% is 3. The selected columns are sorted before retraining, so two methods that select
the same set get the same accuracy for a seed (training is deterministic on one thread).

    python benchmarks/deepactif.py            # full run (~15 min on one CPU thread)
    python benchmarks/deepactif.py --quick    # 2 data sets, LSTM, 2 seeds (~1-2 min)
    python benchmarks/deepactif.py --cost-only  # time and memory again, nothing retrained
    python benchmarks/deepactif.py --front-ends  # front-end models (below), ~26 min

``--front-ends``: the same retraining on LSTMs and GRUs with a front end before the recurrent
layer (``Linear(F, 32)`` + ReLU on each step, or ``Conv1d(F, 32, 3)`` + ReLU over time; the
zoo's :class:`~leanxai.zoo.recurrent.FrontEndRecurrentClassifier`, seed 0 for the rankings),
where DeepACTIF maps the recurrent layer's unit scores back to the features through the front
end's exact linear contributions. Methods: DeepACTIF (default and inverse rule), IG, DeepLIFT,
SHAP, Feature Ablation, Random; retrained models keep the front end. Also the time of ranking
the training set with DeepACTIF, IG and Feature Ablation on each front-end model. Output:
``benchmarks/results/deepactif_front_ends/`` and ``benchmarks/results/deepactif_front_ends.md``
(the plain models' files are left as they are).

Output: ``benchmarks/results/deepactif/`` (rankings.csv, retraining.csv, tests.csv,
recovery.csv, cost.csv) and ``benchmarks/results/deepactif.md`` (the tables).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanxai.evaluate.stats import format_p, paired_test
from leanxai.explainers import deepactif as da
from leanxai.zoo.recurrent import load_recurrent_data, load_recurrent_model, retrain_on_features

ROOT = Path(__file__).resolve().parent
DATASETS = {
    "basic_motions": "BasicMotions",
    "japanese_vowels": "JapaneseVowels",
    "synthetic": "Synthetic",
}
KINDS = {"lstm": "LSTM", "gru": "GRU", "bilstm": "BiLSTM"}
# Front-end models: "<front>_<cell>" (see model_spec).
FRONT_KINDS = {
    "linear_lstm": "Linear+LSTM",
    "conv_lstm": "Conv1d+LSTM",
    "linear_gru": "Linear+GRU",
    "conv_gru": "Conv1d+GRU",
}
LABELS = KINDS | FRONT_KINDS
PERCENTS = (10, 20, 30, 40, 50)
# The retraining recipe: that of leanxai.zoo.recurrent.load_recurrent_model, except that for
# JapaneseVowels: 15 epochs in batches of 64 instead of the zoo's 30 epochs of 32, four times
# cheaper for the same test accuracy with all features (0.97-0.98).
RECIPE: dict[str, dict[str, Any]] = {
    "synthetic": {"epochs": 15, "lr": 1e-2},
    "basic_motions": {"epochs": 40, "lr": 1e-2},
    "japanese_vowels": {"epochs": 15, "lr": 1e-2, "batch_size": 64},
}
DEFAULT = "DeepACTIF"
BASELINES = {"IG": "ig", "DeepLIFT": "deeplift", "SHAP": "shap", "Ablation": "ablation"}
KERNEL_SHAP_SAMPLES = 200
MEMORY_THRESHOLD = "65536"


def top_count(percent: int, features: int) -> int:
    """Features in the top ``percent``%: ``ceil(percent * F / 100)``, at least 1."""
    return max(1, -(-percent * features // 100))


def model_spec(kind: str) -> tuple[str, dict[str, Any]]:
    """``"conv_gru"`` -> ``("gru", {"front": "conv"})``; ``"lstm"`` -> ``("lstm", {})``: the
    recurrent cell and the zoo's front-end option."""
    front, _, cell = kind.rpartition("_")
    return cell, ({"front": front} if front else {})


def variant(mapping: str, aggregation: str) -> str:
    return f"DeepACTIF[{mapping}/{aggregation}]"


def ranking_methods() -> dict[str, Callable[..., da.FeatureAttribution]]:
    """Name -> ``fn(model, inputs, mask)``: the baselines and every DeepACTIF variant. The
    default DeepACTIF is not run separately: its rows are those of the variant that
    ``DEFAULT_MAPPING`` and ``DEFAULT_AGGREGATION`` name (see :func:`alias_default`)."""
    methods: dict[str, Callable[..., da.FeatureAttribution]] = {}
    for name, key in BASELINES.items():
        methods[name] = lambda m, x, mask, key=key: da.feature_ranking(m, x, key, mask=mask)
    for mapping in da.MAPPINGS:
        for aggregation in da.AGGREGATIONS:
            options = {"mapping": mapping, "aggregation": aggregation}
            methods[variant(mapping, aggregation)] = lambda m, x, mask, o=options: (
                da.feature_ranking(m, x, "deepactif", mask=mask, **o)
            )
    return methods


def kernel_shap(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """Captum's KernelSHAP, one group per feature across all steps, baseline 0 (the mean of the
    standardised data), ``KERNEL_SHAP_SAMPLES`` coalitions per sequence in one forward batch,
    for the predicted class; reduced like the other baselines (mean |attribution| over valid
    steps and samples). Returns the importance ``(F,)``."""
    import captum.attr as attr

    forward = da._SequenceLogits(model, True)
    extra = () if mask is None else (mask,)
    features = x.shape[2]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = forward(x, *extra).argmax(dim=1)
        attribution = attr.KernelShap(forward).attribute(
            x,
            baselines=0.0,
            target=target,
            additional_forward_args=extra or None,
            feature_mask=torch.arange(features).view(1, 1, features),
            n_samples=KERNEL_SHAP_SAMPLES,
            perturbations_per_eval=KERNEL_SHAP_SAMPLES,
        )
    importance, _ = da.aggregate(attribution, mask, "mean")
    return importance.numpy()


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# -- ranking and retraining -----------------------------------------------------------------------


def rank_all(
    datasets: list[str], kinds: list[str], only: list[str] | None = None
) -> tuple[list[dict[str, Any]], dict[Any, Any]]:
    rows: list[dict[str, Any]] = []
    rankings: dict[tuple[str, str, str], list[int]] = {}
    methods = {m: fn for m, fn in ranking_methods().items() if only is None or m in only}
    for name in datasets:
        train, _ = load_recurrent_data(name)
        for kind in kinds:
            cell, front = model_spec(kind)
            model, meta = load_recurrent_model(name, cell, 0, **front)
            for method, fn in methods.items():
                result = fn(model, train.inputs, train.mask)
                order = [int(i) for i in result.ranking]
                rankings[(name, kind, method)] = order
                rows.append(
                    {
                        "dataset": name,
                        "kind": kind,
                        "method": method,
                        "reference_test_accuracy": round(meta["test_accuracy"], 4),
                        "ranking": " ".join(map(str, order)),
                        "importance": " ".join(f"{float(v):.6g}" for v in result.importance),
                    }
                )
            print(f"ranked {name}/{kind}: reference accuracy {meta['test_accuracy']:.3f}")
    return rows, rankings


def retrain_all(
    datasets: list[str],
    kinds: list[str],
    seeds: list[int],
    rankings: dict[Any, list[int]],
    only: list[str] | None = None,
    known: dict[tuple[Any, ...], float] | None = None,
    all_features: bool | None = None,
) -> list[dict[str, Any]]:
    """Retrain every (model, method, k, seed) cell (``only``: those methods); ``known`` scores
    of (dataset, kind, seed, features) from an earlier run are reused, not retrained.
    ``all_features`` (default: when ``only`` is None) adds the model trained on every feature."""
    from tqdm import tqdm

    methods = [*ranking_methods(), "Random"] if only is None else only
    if all_features is None:
        all_features = only is None
    plan: list[dict[str, Any]] = []
    for name in datasets:
        train, _ = load_recurrent_data(name)
        features = train.inputs.shape[2]
        for kind in kinds:
            for seed in seeds:
                shuffle = np.random.default_rng(1000 + seed).permutation(features).tolist()
                if all_features:
                    plan.append(
                        {"dataset": name, "kind": kind, "seed": seed, "method": "All features"}
                        | {"k_percent": 100, "features": tuple(range(features))}
                    )
                for method in methods:
                    order = shuffle if method == "Random" else rankings[(name, kind, method)]
                    for percent in PERCENTS:
                        chosen = tuple(sorted(order[: top_count(percent, features)]))
                        plan.append(
                            {"dataset": name, "kind": kind, "seed": seed, "method": method}
                            | {"k_percent": percent, "features": chosen}
                        )
    scores: dict[tuple[Any, ...], float] = dict(known or {})
    jobs = sorted({(p["dataset"], p["kind"], p["seed"], p["features"]) for p in plan} - set(scores))
    print(f"{len(plan)} (method, k, seed) cells need {len(jobs)} new retrainings")
    data = {name: load_recurrent_data(name) for name in datasets}
    for job in tqdm(jobs, desc="retraining", unit="model", mininterval=30):
        name, kind, seed, chosen = job
        train, test = data[name]
        cell, front = model_spec(kind)
        scores[job] = retrain_on_features(
            train.inputs,
            train.labels,
            test.inputs,
            test.labels,
            list(chosen),
            cell,
            seed,
            mask_train=train.mask,
            mask_test=test.mask,
            n_classes=len(train.classes),
            **RECIPE[name],
            **front,
        )
    rows = []
    for p in plan:
        job = (p["dataset"], p["kind"], p["seed"], p["features"])
        rows.append(
            p
            | {
                "n_features": len(p["features"]),
                "features": " ".join(map(str, p["features"])),
                "accuracy": round(scores[job], 6),
            }
        )
    return rows


def tests_against_default(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each method vs DeepACTIF over paired (kind, k, seed) runs, per data set and pooled."""
    by_key: dict[tuple[Any, ...], float] = {
        (r["dataset"], r["kind"], r["method"], r["k_percent"], r["seed"]): r["accuracy"]
        for r in rows
    }
    methods = sorted({r["method"] for r in rows} - {DEFAULT, "All features"})
    datasets = sorted({r["dataset"] for r in rows})
    out = []
    for scope in [*datasets, "all"]:
        keys = sorted(
            {
                (d, kind, k, seed)
                for (d, kind, m, k, seed) in by_key
                if m == DEFAULT and (scope == "all" or d == scope)
            }
        )
        for method in methods:
            a = [by_key[(d, kind, method, k, seed)] for d, kind, k, seed in keys]
            b = [by_key[(d, kind, DEFAULT, k, seed)] for d, kind, k, seed in keys]
            test = paired_test(a, b)
            nonzero = int(np.count_nonzero(np.asarray(a) - np.asarray(b)))
            out.append(
                {"dataset": scope, "method": method, "nonzero_pairs": nonzero} | test.to_dict()
            )
    return out


def recovery(rankings: dict[Any, list[int]], kinds: list[str]) -> list[dict[str, Any]]:
    """On the synthetic set: informative features in each top-k."""
    train, _ = load_recurrent_data("synthetic")
    informative = set(train.informative or ())
    features = train.inputs.shape[2]
    rows = []
    entries = [(kind, m, order) for (d, kind, m), order in rankings.items() if d == "synthetic"]
    for kind, method, order in entries:
        if kind not in kinds:
            continue
        for percent in PERCENTS:
            n = top_count(percent, features)
            rows.append(
                {
                    "kind": kind,
                    "method": method,
                    "k_percent": percent,
                    "n_features": n,
                    "informative_in_top": len(informative & set(order[:n])),
                    "best_possible": min(n, len(informative)),
                }
            )
    return rows


# -- cost -----------------------------------------------------------------------------------------


def cost_methods(kernel: bool) -> dict[str, Callable[..., Any]]:
    methods: dict[str, Callable[..., Any]] = {
        f"DeepACTIF[{mp}]": (
            lambda m, x, mask, mp=mp: da.feature_ranking(m, x, "deepactif", mask=mask, mapping=mp)
        )
        for mp in da.MAPPINGS
    }
    for name, key in BASELINES.items():
        methods[name] = lambda m, x, mask, key=key: da.feature_ranking(m, x, key, mask=mask)
    if kernel:
        methods["KernelSHAP"] = kernel_shap
    return methods


def time_all(datasets: list[str], repeats: int, kernel_limit: int | None) -> list[dict[str, Any]]:
    """Median of ``repeats`` interleaved rounds (KernelSHAP: one call, in round 0)."""
    rows = []
    for name in datasets:
        train, _ = load_recurrent_data(name)
        x, mask = train.inputs, train.mask
        model, _ = load_recurrent_model(name, "lstm", 0)
        methods = cost_methods(kernel=True)
        for fn in methods.values():  # warm-up on two sequences
            fn(model, x[:2], None if mask is None else mask[:2])
        times: dict[str, list[float]] = {m: [] for m in methods}
        kernel_n = len(x) if kernel_limit is None else min(len(x), kernel_limit)
        for round_ in range(repeats):
            for method, fn in methods.items():
                if method == "KernelSHAP":
                    if round_:
                        continue
                    xs, ms = x[:kernel_n], None if mask is None else mask[:kernel_n]
                    start = time.perf_counter()
                    fn(model, xs, ms)
                    times[method].append((time.perf_counter() - start) * len(x) / kernel_n)
                    continue
                start = time.perf_counter()
                fn(model, x, mask)
                times[method].append(time.perf_counter() - start)
        for method, values in times.items():
            rows.append(
                {
                    "dataset": name,
                    "model": "lstm",
                    "n_sequences": len(x),
                    "method": method,
                    "median_s": statistics.median(values),
                    "repeats": len(values),
                    "extrapolated_from": kernel_n if method == "KernelSHAP" else len(x),
                }
            )
        print(f"timed {name}")
    return rows


def memory_worker(name: str, kernel_limit: int | None) -> None:
    """Child process: peak RSS growth of one ranking call per method (JSON on stdout)."""
    from leanxai.evaluate.cost import cost

    torch.set_num_threads(1)
    train, _ = load_recurrent_data(name)
    x, mask = train.inputs, train.mask
    model, _ = load_recurrent_model(name, "lstm", 0)
    out = {}
    for method, fn in cost_methods(kernel=True).items():
        fn(model, x[:2], None if mask is None else mask[:2])
        n = len(x) if method != "KernelSHAP" or kernel_limit is None else min(len(x), kernel_limit)
        xs, ms = x[:n], None if mask is None else mask[:n]
        result = cost(fn, model, xs, ms, repeats=1, warmup=0, memory=True)
        out[method] = {"peak_bytes": result.peak_bytes, "memory_method": result.memory_method}
        out[method]["n"] = n
    print(json.dumps(out))


def memory_all(datasets: list[str], kernel_limit: int | None) -> dict[tuple[str, str], Any]:
    """Peak memory per call, each data set in a fresh child process with glibc's mmap threshold
    fixed at 64 KiB, so every tensor of that size is mapped and unmapped and the resident-set
    peak sees it (with the default dynamic threshold, memory freed by an earlier method is
    reused without growing the resident set). Timing runs in this process, untouched."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MEMORY_THRESHOLD)
    results = {}
    for name in datasets:
        command = [sys.executable, __file__, "--memory-worker", name]
        if kernel_limit is not None:
            command += ["--kernel-limit", str(kernel_limit)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        for method, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
            results[(name, method)] = value
        print(f"measured memory on {name}")
    return results


# -- report ---------------------------------------------------------------------------------------


def _p(value: float) -> str:
    text = format_p(value)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def report(
    retrain: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    recovered: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    args: argparse.Namespace,
    seeds: list[int],
    kinds: list[str],
) -> str:
    lines = [
        "# DeepACTIF benchmark",
        "",
        f"Command: `python benchmarks/deepactif.py{' --quick' if args.quick else ''}`"
        f" ({'quick' if args.quick else 'full'} run; seeds {seeds}; models "
        f"{', '.join(KINDS[k] for k in kinds)}; one CPU thread). DeepACTIF is "
        f"`mapping={da.DEFAULT_MAPPING!r}, aggregation={da.DEFAULT_AGGREGATION!r}` (the library "
        "default); `inverse` is the paper's inverse-weighted rule. Top-k: `ceil(k * F / 100)` "
        "features, at least 1 (BasicMotions, F = 6: 1, 2, 2, 3, 3). Rankings are computed on the "
        "whole training set with the zoo's reference model (seed 0); each top-k set is then "
        "retrained from scratch on the training set over the seeds and scored on the test set.",
        "",
    ]
    for method in getattr(args, "redone", []):
        lines += [
            f"{method}: ranked and retrained again with `python benchmarks/deepactif.py --redo "
            f"{method}` (the other rows' feature sets reused).",
            "",
        ]
    main_methods = [DEFAULT, *BASELINES, "Random", variant(da.DEFAULT_MAPPING, "inverse")]
    main_methods = list(dict.fromkeys(main_methods))
    datasets = list(dict.fromkeys(r["dataset"] for r in retrain))

    def acc(**filters: Any) -> list[float]:
        return [r["accuracy"] for r in retrain if all(r[k] == v for k, v in filters.items())]

    lines += ["## Test accuracy after retraining on the top-k features", ""]
    lines += [
        "Mean over models and seeds (n = models x seeds per cell); `All features` is the "
        "model trained on every feature.",
        "",
    ]
    for name in datasets:
        header = ["method", *[f"k={p}%" for p in PERCENTS], "mean"]
        rows = []
        for method in main_methods:
            values = [_mean(acc(dataset=name, method=method, k_percent=p)) for p in PERCENTS]
            rows.append([method, *[f"{v:.3f}" for v in values], f"{_mean(values):.3f}"])
        every = _mean(acc(dataset=name, method="All features"))
        rows.append(["All features", *["" for _ in PERCENTS], f"{every:.3f}"])
        lines += [f"**{DATASETS[name]}**", "", *table(header, rows), ""]

    lines += ["## Per model (mean accuracy over k and seeds)", ""]
    header = ["data set", "model", *main_methods]
    rows = []
    for name in datasets:
        for kind in kinds:
            rows.append(
                [DATASETS[name], KINDS[kind]]
                + [f"{_mean(acc(dataset=name, kind=kind, method=m)):.3f}" for m in main_methods]
            )
    lines += [*table(header, rows), ""]

    lines += [
        "## Paired tests against DeepACTIF",
        "",
        "Pairs: the same (model, k, seed) run with each method's selection; mean difference is "
        "method minus DeepACTIF (negative: DeepACTIF better). Wilcoxon signed-rank (scipy, zero "
        "differences dropped; `nonzero` pairs remain) and paired t-test.",
        "",
    ]
    header = ["scope", "method", "pairs", "nonzero", "mean diff", "Wilcoxon p", "t-test p", "d_z"]
    rows = []
    for t in tests:
        if t["method"] not in main_methods:
            continue
        scope = DATASETS.get(t["dataset"], "all data sets")
        rows.append(
            [
                scope,
                t["method"],
                str(t["n"]),
                str(t["nonzero_pairs"]),
                f"{t['mean_diff']:+.4f}",
                format_p(t["w_pvalue"]),
                format_p(t["t_pvalue"]),
                f"{t['effect_size']:+.2f}",
            ]
        )
    lines += [*table(header, rows), ""]

    lines += ["## DeepACTIF ablation: mapping x aggregation", ""]
    variants = [variant(mp, ag) for mp in da.MAPPINGS for ag in da.AGGREGATIONS]
    header = ["variant", *[DATASETS[d] for d in datasets], "all", "vs default: diff, p"]
    header.append("informative (synthetic)")
    pooled = {t["method"]: t for t in tests if t["dataset"] == "all"}
    rows = []
    for name in variants:
        per = [_mean(acc(dataset=d, method=name)) for d in datasets]
        found = [r for r in recovered if r["method"] == name]
        hits = sum(r["informative_in_top"] for r in found)
        best = sum(r["best_possible"] for r in found)
        t = pooled.get(name)
        found_text = f"{hits}/{best}"
        versus = (
            "default"
            if t is None or t["nonzero_pairs"] == 0
            else (f"{t['mean_diff']:+.4f}, {format_p(t['w_pvalue'])}")
        )
        rows.append(
            [name, *[f"{v:.3f}" for v in per], f"{_mean(acc(method=name)):.3f}", versus, found_text]
        )
    lines += [
        "Mean test accuracy over models, k and seeds; the mean paired difference from the "
        "default and its Wilcoxon p over all (data set, model, k, seed) pairs; informative "
        "features found in the top-k summed over k and models on the synthetic set.",
        "",
        *table(header, rows),
        "",
    ]

    if recovered:
        lines += ["## Informative features in the top k (synthetic set)", ""]
        shown = [*main_methods, "KernelSHAP"]
        header = ["model", "method", *[f"k={p}%" for p in PERCENTS]]
        rows = []
        for kind in kinds:
            for method in shown:
                cells = [
                    f"{r['informative_in_top']}/{r['best_possible']}"
                    for r in recovered
                    if r["kind"] == kind and r["method"] == method
                ]
                if cells:
                    rows.append([KINDS[kind], method, *cells])
        lines += [
            "Informative features among the top n / the most possible, min(n, 4); n = 1, 2, 3, "
            "4, 4 of F = 8.",
            "",
            *table(header, rows),
            "",
        ]

    lines += ["## Cost of ranking the whole training set (LSTM)", ""]
    method_text = costs[0]["memory_method"] if costs else ""
    if getattr(args, "cost_rerun", False):
        lines += [
            "Measured again with `python benchmarks/deepactif.py --cost-only` (cost only, on "
            "the same reference models; the retraining results above are those of the full "
            "run).",
            "",
        ]
    lines += [
        "Time: median of interleaved repeats in one process, one thread (KernelSHAP: one call"
        f"{', extrapolated linearly from a subset' if args.quick else ''}). KernelSHAP: "
        f"{KERNEL_SHAP_SAMPLES} coalitions per sequence, one group per feature. Memory: "
        f"{method_text}, measured in a child process with MALLOC_MMAP_THRESHOLD_="
        f"{MEMORY_THRESHOLD} so that freed tensors leave the resident set. The DeepACTIF row is "
        f"the `DeepACTIF[{da.DEFAULT_MAPPING}]` measurement (the aggregation is a few "
        "reductions of the (B, T, F) scores).",
        "",
    ]
    header = ["data set", "method", "time (s)", "x DeepACTIF time", "peak memory (MiB)"]
    rows = []
    for name in datasets:
        base = next(c for c in costs if c["dataset"] == name and c["method"] == DEFAULT)
        for c in sorted(costs, key=lambda c: c["method"] != DEFAULT):
            if c["dataset"] != name:
                continue
            mib = "" if c["peak_bytes"] is None else f"{c['peak_bytes'] / 2**20:.1f}"
            rows.append(
                [
                    DATASETS[name],
                    c["method"],
                    f"{c['median_s']:.4g}",
                    f"{c['median_s'] / base['median_s']:.1f}",
                    mib,
                ]
            )
    lines += [*table(header, rows), ""]
    lines += ["## README text", "", readme_text(retrain, tests, costs, recovered, datasets), ""]
    return "\n".join(lines)


def readme_text(
    retrain: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    recovered: list[dict[str, Any]],
    datasets: list[str],
) -> str:
    """A plain summary from the numbers: where DeepACTIF wins and loses, and the cost ratios."""
    parts = []
    wins, losses, ties = [], [], []
    for t in tests:
        if t["dataset"] == "all" or t["method"] not in BASELINES:
            continue
        p_text = _p(t["w_pvalue"])
        label = f"{t['method']} on {DATASETS[t['dataset']]} ({t['mean_diff']:+.3f}, {p_text})"
        if t["w_pvalue"] < 0.05 and t["mean_diff"] > 0:
            losses.append(label)
        elif t["w_pvalue"] < 0.05 and t["mean_diff"] < 0:
            wins.append(label)
        else:
            ties.append(label)
    parts.append(
        "Retraining on the top-k features (mean accuracy difference, method minus DeepACTIF; "
        "Wilcoxon over model x k x seed pairs): DeepACTIF is significantly better than "
        + ("; ".join(wins) or "none of the baselines")
        + ". It is significantly worse than "
        + ("; ".join(losses) or "none of them")
        + ". No significant difference: "
        + ("; ".join(ties) or "none")
        + "."
    )
    behind = []
    for name in datasets:
        for kind in KINDS:
            cell = [r for r in retrain if r["dataset"] == name and r["kind"] == kind]
            if not cell:
                continue
            own = _mean([r["accuracy"] for r in cell if r["method"] == DEFAULT])
            for method in BASELINES:
                other = _mean([r["accuracy"] for r in cell if r["method"] == method])
                if other - own > 0.01:
                    behind.append(
                        f"{DATASETS[name]} {KINDS[kind]} ({method} {other:.3f} vs {own:.3f})"
                    )
    parts.append(
        "Per model (mean over k and seeds), a baseline is ahead of DeepACTIF by more than 0.01 "
        "on: " + ("; ".join(behind) or "none") + "."
    )
    published = next(
        (
            t
            for t in tests
            if t["dataset"] == "all" and t["method"] == variant(da.DEFAULT_MAPPING, "inverse")
        ),
        None,
    )
    if published is not None:
        parts.append(
            "The paper's inverse-weighted aggregation loses to the plain mean: "
            f"{published['mean_diff']:+.3f} accuracy over {published['n']} pairs (Wilcoxon "
            f"{_p(published['w_pvalue'])}), and it finds fewer informative features on the "
            "synthetic set (see the ablation table)."
        )
    if recovered:
        summary = []
        for method in [DEFAULT, *BASELINES, "KernelSHAP"]:
            found = [r for r in recovered if r["method"] == method]
            if found:
                hits = sum(r["informative_in_top"] for r in found)
                best = sum(r["best_possible"] for r in found)
                summary.append(f"{method} {hits}/{best}")
        parts.append(
            "Synthetic set, informative features in the top k (summed over k and models): "
            + ", ".join(summary)
            + "."
        )
    ratios = []
    for name in datasets:
        by = {c["method"]: c for c in costs if c["dataset"] == name}
        if DEFAULT not in by:
            continue
        base = by[DEFAULT]["median_s"]
        ig, ks = by["IG"]["median_s"] / base, by["KernelSHAP"]["median_s"] / base
        fast = by["DeepACTIF[input_term]"]["median_s"]
        memory = by[DEFAULT]["peak_bytes"], by["IG"]["peak_bytes"]
        ratios.append(
            f"{DATASETS[name]}: {ig:.0f}x less time than IG (50 steps) "
            f"[target 10x: {'met' if ig >= 10 else 'NOT met'}] and {ks:.0f}x less than "
            f"KernelSHAP [target 100x: {'met' if ks >= 100 else 'NOT met'}]; peak memory "
            f"{(memory[0] or 0) / 2**20:.1f} MiB vs {(memory[1] or 0) / 2**20:.1f} MiB for IG"
            f" (mapping='input_term': {by['KernelSHAP']['median_s'] / fast:.0f}x less than "
            "KernelSHAP)"
        )
    parts.append("Cost of ranking the training set (LSTM, one thread): " + "; ".join(ratios) + ".")
    return " ".join(parts)


def alias_default(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Rows of ``source`` copied as ``DEFAULT`` (any earlier ``DEFAULT`` rows dropped)."""
    kept = [r for r in rows if r["method"] != DEFAULT]
    return kept + [r | {"method": DEFAULT} for r in kept if r["method"] == source]


def read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    numbers = {"accuracy", "median_s", "reference_test_accuracy"}
    integers = {"k_percent", "seed", "n_features", "peak_bytes", "n_sequences", "repeats"}
    for row in rows:
        for key, value in row.items():
            if key in numbers:
                row[key] = float(value) if value not in ("", "None") else None
            elif key in integers:
                row[key] = int(value) if value not in ("", "None") else None
    return rows


def run(args: argparse.Namespace, folder: Path) -> None:
    """Rank, retrain, time and measure; write the CSV files."""
    if args.quick:
        datasets, kinds, seeds, repeats, kernel_limit = (
            ["basic_motions", "synthetic"],
            ["lstm"],
            2,
            3,
            40,
        )
    else:
        datasets, kinds, seeds, repeats, kernel_limit = list(DATASETS), list(KINDS), 5, 5, None
    seed_list = list(range(args.seeds if args.seeds is not None else seeds))
    rank_rows, rankings = rank_all(datasets, kinds)
    if "synthetic" in datasets:
        train, _ = load_recurrent_data("synthetic")
        model, _ = load_recurrent_model("synthetic", "lstm", 0)
        n = len(train) if kernel_limit is None else kernel_limit
        importance = kernel_shap(model, train.inputs[:n], None)
        order = [int(i) for i in da._ranking(torch.from_numpy(importance))]
        rank_rows.append(
            {"dataset": "synthetic", "kind": "lstm", "method": "KernelSHAP"}
            | {"ranking": " ".join(map(str, order)), "n_sequences": n}
        )
    retrain = retrain_all(datasets, kinds, seed_list, rankings)
    costs = time_all(datasets, repeats, kernel_limit)
    memory = memory_all(datasets, kernel_limit)
    for c in costs:
        c.update(memory[(c["dataset"], c["method"])])
    write_csv(folder / "rankings.csv", rank_rows)
    write_csv(folder / "retraining.csv", retrain)
    write_csv(folder / "cost.csv", costs)
    (folder / "settings.json").write_text(
        json.dumps({"quick": args.quick, "seeds": seed_list, "kinds": kinds, "datasets": datasets})
    )


def cost_only(folder: Path) -> None:
    """Time and measure again, with an earlier run's settings; write cost.csv only."""
    settings = json.loads((folder / "settings.json").read_text())
    datasets = settings["datasets"]
    repeats, kernel_limit = (3, 40) if settings["quick"] else (5, None)
    costs = time_all(datasets, repeats, kernel_limit)
    memory = memory_all(datasets, kernel_limit)
    for c in costs:
        c.update(memory[(c["dataset"], c["method"])])
    write_csv(folder / "cost.csv", costs)
    settings["cost_rerun"] = True
    (folder / "settings.json").write_text(json.dumps(settings))


def redo(methods: list[str], folder: Path) -> None:
    """Rank again with ``methods`` on the models of an earlier run and retrain their cells,
    reusing that run's scores for feature sets already trained; other rows are kept."""
    settings = json.loads((folder / "settings.json").read_text())
    unknown = set(methods) - set(ranking_methods())
    if unknown:
        raise SystemExit(f"--redo: unknown methods {sorted(unknown)}")
    datasets, kinds, seeds = settings["datasets"], settings["kinds"], settings["seeds"]
    old_ranks = read_csv(folder / "rankings.csv")
    old_retrain = read_csv(folder / "retraining.csv")
    known = {
        (r["dataset"], r["kind"], r["seed"], tuple(int(i) for i in str(r["features"]).split())): r[
            "accuracy"
        ]
        for r in old_retrain
        if r["method"] != DEFAULT
    }
    rank_rows, rankings = rank_all(datasets, kinds, methods)
    retrain = retrain_all(datasets, kinds, seeds, rankings, methods, known)
    write_csv(
        folder / "rankings.csv", [r for r in old_ranks if r["method"] not in methods] + rank_rows
    )
    settings["redone"] = sorted(set(settings.get("redone", [])) | set(methods))
    (folder / "settings.json").write_text(json.dumps(settings))
    write_csv(
        folder / "retraining.csv",
        [r for r in old_retrain if r["method"] not in methods and r["method"] != DEFAULT] + retrain,
    )


# -- front-end models (--front-ends) --------------------------------------------------------------

FRONT_FOLDER = "deepactif_front_ends"


def front_methods() -> list[str]:
    """The ranking methods of the front-end run: the main table's, without the ablation."""
    return [variant(da.DEFAULT_MAPPING, da.DEFAULT_AGGREGATION), *BASELINES, inverse_variant()]


def inverse_variant() -> str:
    return variant(da.DEFAULT_MAPPING, "inverse")


def time_front_ends(datasets: list[str], kinds: list[str], repeats: int) -> list[dict[str, Any]]:
    """Ranking the whole training set with DeepACTIF, IG and Feature Ablation on each front-end
    model: median of ``repeats`` interleaved rounds in this process, one thread."""
    methods: dict[str, Callable[..., Any]] = {
        DEFAULT: lambda m, x, mask: da.feature_ranking(m, x, "deepactif", mask=mask),
        "IG": lambda m, x, mask: da.feature_ranking(m, x, "ig", mask=mask),
        "Ablation": lambda m, x, mask: da.feature_ranking(m, x, "ablation", mask=mask),
    }
    rows = []
    for name in datasets:
        train, _ = load_recurrent_data(name)
        x, mask = train.inputs, train.mask
        for kind in kinds:
            cell, front = model_spec(kind)
            model, _ = load_recurrent_model(name, cell, 0, **front)
            for fn in methods.values():  # warm-up on two sequences
                fn(model, x[:2], None if mask is None else mask[:2])
            times: dict[str, list[float]] = {m: [] for m in methods}
            for _ in range(repeats):
                for method, fn in methods.items():
                    start = time.perf_counter()
                    fn(model, x, mask)
                    times[method].append(time.perf_counter() - start)
            for method, values in times.items():
                rows.append(
                    {"dataset": name, "kind": kind, "method": method, "n_sequences": len(x)}
                    | {"median_s": statistics.median(values), "repeats": len(values)}
                )
        print(f"timed {name}")
    return rows


def front_end_tests(retrain: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`tests_against_default` per data set and pooled, then pooled per front end."""
    out = tests_against_default(retrain)
    for front, label in (("linear", "Linear front ends"), ("conv", "Conv1d front ends")):
        rows = [r for r in retrain if model_spec(r["kind"])[1].get("front") == front]
        if rows:
            out += [
                t | {"dataset": label} for t in tests_against_default(rows) if t["dataset"] == "all"
            ]
    return out


def run_front_ends(args: argparse.Namespace, folder: Path) -> None:
    """Rank, retrain and time on the front-end models; write the CSV files."""
    if args.quick:
        datasets, kinds, seeds, repeats = ["basic_motions"], ["linear_lstm", "conv_gru"], 2, 1
    else:
        datasets, kinds, seeds, repeats = list(DATASETS), list(FRONT_KINDS), 5, 3
    seed_list = list(range(args.seeds if args.seeds is not None else seeds))
    methods = front_methods()
    rank_rows, rankings = rank_all(datasets, kinds, methods)
    retrain = retrain_all(
        datasets, kinds, seed_list, rankings, [*methods, "Random"], all_features=True
    )
    costs = time_front_ends(datasets, kinds, repeats)
    write_csv(folder / "rankings.csv", rank_rows)
    write_csv(folder / "retraining.csv", retrain)
    write_csv(folder / "cost.csv", costs)
    (folder / "settings.json").write_text(
        json.dumps({"quick": args.quick, "seeds": seed_list, "kinds": kinds, "datasets": datasets})
    )


def front_end_report(
    retrain: list[dict[str, Any]],
    ranked: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    recovered: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    settings: dict[str, Any],
) -> str:
    quick, seeds, kinds = settings["quick"], settings["seeds"], settings["kinds"]
    datasets = settings["datasets"]
    command = f"python benchmarks/deepactif.py --front-ends{' --quick' if quick else ''}"
    wall = settings.get("wall_seconds")
    lines = [
        "# DeepACTIF on recurrent models with a front end",
        "",
        f"Command: `OMP_NUM_THREADS=1 {command}` ({'quick' if quick else 'full'} run; seeds "
        f"{seeds}; one CPU thread"
        + (f"; wall time {wall / 60:.1f} min" if wall else "")
        + "). Models: the zoo's `FrontEndRecurrentClassifier`, a `Linear(F, 32)` on each step "
        "or a `Conv1d(F, 32, kernel 3, padding 1)` over time, then ReLU, then a one-layer LSTM "
        "or GRU (32 units) read out at the last valid step. DeepACTIF scores the recurrent "
        "layer's 32 input units with the default "
        f"`mapping={da.DEFAULT_MAPPING!r}, aggregation={da.DEFAULT_AGGREGATION!r}` and maps "
        "them back to the features through the front end's exact linear contributions (one "
        "forward pass). Rankings use the whole training set and the seed-0 model; every top-k "
        "set (`ceil(k * F / 100)` features) is retrained from scratch, front end included, "
        "over the seeds and scored on the test set, as in `benchmarks/results/deepactif.md`.",
        "",
    ]
    main_methods = [DEFAULT, *BASELINES, "Random", inverse_variant()]

    def acc(**filters: Any) -> list[float]:
        return [r["accuracy"] for r in retrain if all(r[k] == v for k, v in filters.items())]

    plain: dict[tuple[str, str], float] = {}
    plain_path = ROOT / "results" / "deepactif" / "rankings.csv"
    if plain_path.exists():
        for r in read_csv(plain_path):
            if r.get("reference_test_accuracy") is not None:
                plain[(r["dataset"], r["kind"])] = r["reference_test_accuracy"]
    lines += ["## Held-out accuracy of the reference models (seed 0, all features)", ""]
    header = ["data set", *[FRONT_KINDS[k] for k in kinds], "plain LSTM", "plain GRU"]
    rows = []
    for name in datasets:
        reference = {
            r["kind"]: r["reference_test_accuracy"] for r in ranked if r["dataset"] == name
        }
        rows.append(
            [DATASETS[name]]
            + [f"{reference[k]:.3f}" for k in kinds]
            + [f"{plain[(name, c)]:.3f}" if (name, c) in plain else "" for c in ("lstm", "gru")]
        )
    lines += [
        "Test-set accuracy of the models the rankings come from (the plain models' column is "
        "from `benchmarks/results/deepactif/rankings.csv`).",
        "",
        *table(header, rows),
        "",
    ]

    lines += ["## Test accuracy after retraining on the top-k features", ""]
    lines += [
        "Mean over the front-end models and seeds; `All features`: the same models trained on "
        "every feature.",
        "",
    ]
    for name in datasets:
        header = ["method", *[f"k={p}%" for p in PERCENTS], "mean"]
        rows = []
        for method in main_methods:
            values = [_mean(acc(dataset=name, method=method, k_percent=p)) for p in PERCENTS]
            rows.append([method, *[f"{v:.3f}" for v in values], f"{_mean(values):.3f}"])
        every = _mean(acc(dataset=name, method="All features"))
        rows.append(["All features", *["" for _ in PERCENTS], f"{every:.3f}"])
        lines += [f"**{DATASETS[name]}**", "", *table(header, rows), ""]

    lines += ["## Per model (mean accuracy over k and seeds)", ""]
    header = ["data set", "model", *main_methods, "All features"]
    rows = []
    for name in datasets:
        for kind in kinds:
            rows.append(
                [DATASETS[name], FRONT_KINDS[kind]]
                + [
                    f"{_mean(acc(dataset=name, kind=kind, method=m)):.3f}"
                    for m in [*main_methods, "All features"]
                ]
            )
    lines += [*table(header, rows), ""]

    lines += [
        "## Paired tests against DeepACTIF",
        "",
        "Pairs: the same (model, k, seed) run with each method's selection; mean difference is "
        "method minus DeepACTIF (negative: DeepACTIF better). Wilcoxon signed-rank (scipy, zero "
        "differences dropped; `nonzero` pairs remain) and paired t-test; d_z is the effect size.",
        "",
    ]
    header = ["scope", "method", "pairs", "nonzero", "mean diff", "Wilcoxon p", "t-test p", "d_z"]
    rows = []
    for t in tests:
        if t["method"] not in main_methods:
            continue
        scope = DATASETS.get(t["dataset"], "all data sets" if t["dataset"] == "all" else "")
        rows.append(
            [
                scope or f"{t['dataset']} (all data sets)",
                t["method"],
                str(t["n"]),
                str(t["nonzero_pairs"]),
                f"{t['mean_diff']:+.4f}",
                format_p(t["w_pvalue"]),
                format_p(t["t_pvalue"]),
                f"{t['effect_size']:+.2f}",
            ]
        )
    lines += [*table(header, rows), ""]

    if recovered:
        lines += ["## Informative features in the top k (synthetic set)", ""]
        header = ["model", "method", *[f"k={p}%" for p in PERCENTS], "total"]
        rows = []
        for kind in kinds:
            for method in main_methods:
                found = [r for r in recovered if r["kind"] == kind and r["method"] == method]
                if found:
                    hits = sum(r["informative_in_top"] for r in found)
                    best = sum(r["best_possible"] for r in found)
                    cells = [f"{r['informative_in_top']}/{r['best_possible']}" for r in found]
                    rows.append([FRONT_KINDS[kind], method, *cells, f"{hits}/{best}"])
        lines += [
            "Informative features among the top n / the most possible, min(n, 4); n = 1, 2, 3, "
            "4, 4 of F = 8.",
            "",
            *table(header, rows),
            "",
        ]

    lines += ["## Cost of ranking the whole training set", ""]
    lines += [
        "Median of interleaved repeats in one process, one thread; IG with 50 steps, Feature "
        "Ablation one feature at a time over all steps.",
        "",
    ]
    header = ["data set", "model", "DeepACTIF (s)", "IG (s)", "Ablation (s)", "IG / DeepACTIF"]
    header.append("Ablation / DeepACTIF")
    rows = []
    for name in datasets:
        for kind in kinds:
            by = {
                c["method"]: c["median_s"]
                for c in costs
                if (c["dataset"], c["kind"]) == (name, kind)
            }
            if DEFAULT not in by:
                continue
            rows.append(
                [DATASETS[name], FRONT_KINDS[kind]]
                + [f"{by[m]:.4g}" for m in (DEFAULT, "IG", "Ablation")]
                + [f"{by['IG'] / by[DEFAULT]:.0f}x", f"{by['Ablation'] / by[DEFAULT]:.0f}x"]
            )
    lines += [*table(header, rows), ""]
    lines += ["## README text", "", front_end_summary(retrain, tests, recovered, datasets), ""]
    return "\n".join(lines)


def front_end_summary(
    retrain: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    recovered: list[dict[str, Any]],
    datasets: list[str],
) -> str:
    """Where DeepACTIF wins, ties and loses against IG and Feature Ablation, from the numbers."""
    parts = []
    for method, label in (("IG", "IG"), ("Ablation", "Feature Ablation")):
        cells = []
        for t in tests:
            if t["method"] != method:
                continue
            scope = DATASETS.get(t["dataset"], "all data sets" if t["dataset"] == "all" else "")
            scope = scope or t["dataset"]
            verdict = (
                "no significant difference"
                if t["w_pvalue"] >= 0.05
                else ("DeepACTIF better" if t["mean_diff"] < 0 else "DeepACTIF worse")
            )
            cells.append(f"{scope} {t['mean_diff']:+.3f} ({_p(t['w_pvalue'])}, {verdict})")
        parts.append(f"{label} minus DeepACTIF: " + "; ".join(cells) + ".")
    behind = []
    for name in datasets:
        for kind in FRONT_KINDS:
            cell = [r for r in retrain if r["dataset"] == name and r["kind"] == kind]
            if not cell:
                continue
            own = _mean([r["accuracy"] for r in cell if r["method"] == DEFAULT])
            for method in BASELINES:
                other = _mean([r["accuracy"] for r in cell if r["method"] == method])
                if other - own > 0.01:
                    behind.append(
                        f"{DATASETS[name]} {FRONT_KINDS[kind]} ({method} {other:.3f} vs {own:.3f})"
                    )
    parts.append(
        "Per model (mean over k and seeds), a baseline is ahead of DeepACTIF by more than 0.01 "
        "on: " + ("; ".join(behind) or "none") + "."
    )
    if recovered:
        summary = []
        for method in [DEFAULT, *BASELINES]:
            found = [r for r in recovered if r["method"] == method]
            if found:
                hits = sum(r["informative_in_top"] for r in found)
                best = sum(r["best_possible"] for r in found)
                summary.append(f"{method} {hits}/{best}")
        parts.append(
            "Synthetic set, informative features in the top k (summed over k and models): "
            + ", ".join(summary)
            + "."
        )
    return " ".join(parts)


def front_ends(args: argparse.Namespace) -> None:
    """``--front-ends``: run (unless ``--report-only``), then write the tables."""
    start = time.perf_counter()
    folder = args.out / FRONT_FOLDER
    if not args.report_only:
        run_front_ends(args, folder)
    settings = json.loads((folder / "settings.json").read_text())
    if not args.report_only:
        settings["wall_seconds"] = round(time.perf_counter() - start, 1)
        (folder / "settings.json").write_text(json.dumps(settings))
    source = variant(da.DEFAULT_MAPPING, da.DEFAULT_AGGREGATION)
    retrain = alias_default(read_csv(folder / "retraining.csv"), source)
    ranked = alias_default(read_csv(folder / "rankings.csv"), source)
    costs = read_csv(folder / "cost.csv")
    rankings = {
        (r["dataset"], r["kind"], r["method"]): [int(i) for i in r["ranking"].split()]
        for r in ranked
    }
    tests = front_end_tests(retrain)
    kinds = settings["kinds"]
    recovered = recovery(rankings, kinds) if "synthetic" in settings["datasets"] else []
    write_csv(folder / "tests.csv", tests)
    write_csv(folder / "recovery.csv", recovered)
    text = front_end_report(retrain, ranked, tests, recovered, costs, settings)
    (args.out / f"{FRONT_FOLDER}.md").write_text(text + "\n")
    print(text)
    print(f"done in {time.perf_counter() - start:.0f} s; wrote {folder} and {FRONT_FOLDER}.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 data sets, LSTM, 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="retraining seeds (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild tests.csv, recovery.csv and the tables from the CSV files of an earlier run "
        "(after changing the default DeepACTIF variant)",
    )
    parser.add_argument(
        "--redo",
        default=None,
        help="comma-separated methods (e.g. SHAP) to rank and retrain again in an earlier run's "
        "results, keeping the other rows",
    )
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="time and measure memory again (cost.csv) on an earlier run's data sets and "
        "reference models, then rebuild the tables; rankings and retraining are kept",
    )
    parser.add_argument(
        "--front-ends",
        action="store_true",
        help="LSTMs and GRUs with a Linear or Conv1d front end (their own results files); "
        "with --quick: BasicMotions, two models, 2 seeds; with --report-only: tables only",
    )
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kernel-limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.memory_worker:
        memory_worker(args.memory_worker, args.kernel_limit)
        return
    if args.front_ends:
        front_ends(args)
        return
    start = time.perf_counter()
    folder = args.out / "deepactif"
    if args.redo:
        redo([m.strip() for m in args.redo.split(",") if m.strip()], folder)
    elif args.cost_only:
        cost_only(folder)
    elif not args.report_only:
        run(args, folder)
    settings = json.loads((folder / "settings.json").read_text())
    args.quick = settings["quick"]
    args.redone = settings.get("redone", [])
    args.cost_rerun = settings.get("cost_rerun", False)
    source = variant(da.DEFAULT_MAPPING, da.DEFAULT_AGGREGATION)
    retrain = alias_default(read_csv(folder / "retraining.csv"), source)
    ranked = alias_default(read_csv(folder / "rankings.csv"), source)
    costs = alias_default(read_csv(folder / "cost.csv"), f"DeepACTIF[{da.DEFAULT_MAPPING}]")
    rankings = {
        (r["dataset"], r["kind"], r["method"]): [int(i) for i in r["ranking"].split()]
        for r in ranked
    }
    tests = tests_against_default(retrain)
    kinds = settings["kinds"]
    recovered = recovery(rankings, kinds) if "synthetic" in settings["datasets"] else []
    write_csv(folder / "tests.csv", tests)
    write_csv(folder / "recovery.csv", recovered)
    text = report(retrain, tests, recovered, costs, args, settings["seeds"], kinds)
    (args.out / "deepactif.md").write_text(text + "\n")
    print(text)
    seconds = time.perf_counter() - start
    print(f"done in {seconds:.0f} s; wrote {folder} and {args.out / 'deepactif.md'}")


if __name__ == "__main__":
    main()
