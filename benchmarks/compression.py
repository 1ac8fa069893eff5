"""Relevance-guided compression against magnitude, random and plain quantisation (issue 5).

Every accuracy is measured on held-out data with the model loaded back from the file that was
written (:func:`leanxai.compress.load_compressed`); every size is that file's size on disk,
compared with the float32 safetensors file of the original state dict.

Two parts, per model and seed (a seed sets the model's training and the draw of the 256
calibration inputs):

1. criterion search: pruning only (weights stay float32), at 50/70/90 % sparsity per layer, for
   each criterion, without and with a short self-distillation on the calibration inputs
   (:func:`leanxai.compress.finetune`, 200 steps, masks fixed, applied to every method alike),
   plus the paper's sign rule at its own sparsity. Two rows rank over all layers at once
   (``plan_pruning(scope="global")``, one threshold for the whole model): magnitude, the stronger
   plain baseline, relevance_magnitude, and relevance_tempered (the default of ``compress``).
   ``plan_pruning`` has no per-layer cap, so every row records the largest share pruned from any
   one layer (``max_layer_sparsity``; 1.0 would mean a layer emptied). Each criterion's scores are
   computed once and reused for every sparsity, scope and fine-tune setting; the paired tests
   compare each relevance criterion with magnitude pruning, per layer and global, over seeds;
2. matched size: the default ``compress(model, inputs)`` against magnitude pruning (per layer
   and global) and random pruning at the same sparsity, bits and fine-tune, uniform 8- and 4-bit
   quantisation, the sign rule with the same bits, and PyTorch's dynamic int8 quantisation of
   Linear layers (its size: the file ``torch.save(state_dict)`` writes).

Models: the paper's dense network (10 seeds), the MNIST-5k CNN and the shapes demo CNN (5 seeds
each; CNN seeds other than 0 train once, about a minute each, and are cached). The shapes CNN's
64x64 fine-tunes cost several times the MNIST ones, so its search covers magnitude (per layer and
global) and the default's criterion only; it is tested on the 500 images its recipe holds out.

Run ``OMP_NUM_THREADS=1 python benchmarks/compression.py`` (about 35 min on two free cores with
``--jobs 2``; the CNN fine-tunes dominate) or ``--quick`` (dense net, 3 seeds, about a minute).
Writes benchmarks/results/compression/{results.csv,paired_tests.csv,size_accuracy.png} and
benchmarks/results/compression.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanxai.compress import (
    DEFAULT_CRITERION,
    DEFAULT_FINETUNE_STEPS,
    DEFAULT_SCOPE,
    DEFAULT_SPARSITY,
    PrunePlan,
    apply_pruning,
    compress,
    finetune,
    float32_size,
    load_compressed,
    plan_pruning,
    quantize_model,
    save_compressed,
    weight_relevance,
    weight_scores,
)
from leanxai.evaluate.stats import paired_test
from leanxai.experiments.compression import (
    REAL_RECIPES,
    accuracy,
    load_lite0_setting,
    load_real_setting,
    load_setting,
)

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "compression"
REPORT = ROOT / "results" / "compression.md"

SPARSITIES = (0.5, 0.7, 0.9)
GLOBAL_MAGNITUDE = "magnitude (global)"
REFERENCES = ("magnitude", GLOBAL_MAGNITUDE)
# name -> weight_scores() options and plan_pruning(structured=..., scope=...) of the search
CRITERIA: dict[str, dict[str, Any]] = {
    "magnitude": {"criterion": "magnitude"},
    GLOBAL_MAGNITUDE: {"criterion": "magnitude", "scope": "global"},
    "random": {"criterion": "random"},
    "relevance_magnitude": {"criterion": "relevance_magnitude"},
    "relevance_magnitude (global)": {"criterion": "relevance_magnitude", "scope": "global"},
    "relevance_tempered (global)": {"criterion": "relevance_tempered", "scope": "global"},
    "relevance_l2": {"criterion": "relevance_l2"},
    "relevance": {"criterion": "relevance"},
    "signed_relevance": {"criterion": "signed_relevance"},
    "relevance_l2_all_classes": {"criterion": "relevance_l2", "target": "all"},
    "relevance_all_classes": {"criterion": "relevance", "target": "all"},
    "relevance_structured": {"criterion": "relevance", "structured": True},
    "magnitude_structured": {"criterion": "magnitude", "structured": True},
}
SHAPES_CRITERIA = ["magnitude", GLOBAL_MAGNITUDE, "relevance_tempered (global)"]
SIGN_RULE = "sign_rule (paper)"
RELEVANCE = "relevance"
FIELDS = [
    "model",
    "seed",
    "part",
    "method",
    "finetune",
    "sparsity",
    "achieved_sparsity",
    "max_layer_sparsity",
    "bits",
    "bytes",
    "original_bytes",
    "reduction",
    "accuracy",
    "original_accuracy",
    "change",
]


def _measure(
    setting: Any, result: Any, original: int, base: float, folder: Path, **row: Any
) -> dict[str, Any]:
    path = folder / "model.safetensors"
    size = save_compressed(result, path, overwrite=True)
    loaded = load_compressed(path, model=setting.model)
    acc = accuracy(loaded, setting.inputs, setting.labels)
    return {
        "model": setting.name,
        "seed": setting.seed,
        **row,
        "bytes": size,
        "original_bytes": original,
        "reduction": round(1 - size / original, 4),
        "accuracy": round(acc, 4),
        "original_accuracy": round(base, 4),
        "change": round(acc - base, 4),
    }


def _max_layer_sparsity(plan: PrunePlan | None) -> float:
    """Largest share of weights the plan prunes from any one layer (0 without a plan)."""
    if plan is None or not plan.masks:
        return 0.0
    return round(max(1 - float(m.float().mean()) for m in plan.masks.values()), 4)


def _dynamic_int8(setting: Any, original: int, base: float, folder: Path) -> dict[str, Any]:
    quantized = torch.ao.quantization.quantize_dynamic(
        setting.model, {nn.Linear}, dtype=torch.qint8
    )
    path = folder / "dynamic.pt"
    torch.save(quantized.state_dict(), path)
    size = os.path.getsize(path)
    acc = accuracy(quantized, setting.inputs, setting.labels)
    return {
        "model": setting.name,
        "seed": setting.seed,
        "part": "matched",
        "method": "torch dynamic int8 (Linear)",
        "finetune": 0,
        "sparsity": 0.0,
        "achieved_sparsity": 0.0,
        "max_layer_sparsity": 0.0,
        "bits": "8 (Linear only)",
        "bytes": size,
        "original_bytes": original,
        "reduction": round(1 - size / original, 4),
        "accuracy": round(acc, 4),
        "original_accuracy": round(base, 4),
        "change": round(acc - base, 4),
    }


def _pruned(setting: Any, plan: PrunePlan, steps: int) -> Any:
    """What ``compress(..., bits=None, finetune_steps=steps)`` gives for this plan."""
    source = setting.model
    if steps > 0:
        pruned = apply_pruning(setting.model, plan)
        source = finetune(pruned, setting.model, setting.calibration, plan, steps=steps)
    return quantize_model(source, {}, plan=plan)  # pruning only, weights stay float32


def run_setting(setting: Any, config: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    x = setting.calibration
    original = float32_size(setting.model)
    base = accuracy(setting.model, setting.inputs, setting.labels)
    rows: list[dict[str, Any]] = []
    # Scores once per criterion (relevance is the expensive part), plans once per sparsity; every
    # plan is then measured without and with fine-tuning.
    plans: list[tuple[str, Any, PrunePlan]] = [
        (
            SIGN_RULE,
            "own",
            plan_pruning(
                weight_relevance(setting.model, x),
                method="nonpositive",
                criterion="signed_relevance",
            ),
        )
    ]
    cache: dict[tuple[Any, ...], dict[str, torch.Tensor]] = {}
    for name in config["criteria"]:
        options = dict(CRITERIA[name])
        structured = options.pop("structured", False)
        scope = options.pop("scope", "layer")
        key = tuple(sorted(options.items()))
        if key not in cache:  # global and per-layer rows share their scores
            cache[key] = weight_scores(setting.model, x, seed=setting.seed, **options)
        for sp in config["sparsities"]:
            plan = plan_pruning(
                cache[key], sparsity=sp, structured=structured, scope=scope, criterion=name
            )
            plans.append((name, sp, plan))
    for ft in (0, config["finetune"]):
        for name, sp, plan in plans:
            rows.append(
                _measure(
                    setting,
                    _pruned(setting, plan, ft),
                    original,
                    base,
                    folder,
                    part="search",
                    method=name,
                    finetune=ft,
                    sparsity=sp,
                    bits="float32",
                    achieved_sparsity=round(plan.achieved_sparsity, 4),
                    max_layer_sparsity=_max_layer_sparsity(plan),
                )
            )
    # Matched size: the default and the baselines at its sparsity, bits and fine-tune.
    matched = {
        f"default ({DEFAULT_CRITERION}, {DEFAULT_SCOPE})": {},
        "magnitude": {"prune": "magnitude", "scope": "layer"},
        GLOBAL_MAGNITUDE: {"prune": "magnitude", "scope": "global"},
        "random": {"prune": "random", "scope": "layer", "seed": setting.seed},
        SIGN_RULE: {"prune": "nonpositive"},
        "uniform 8-bit": {"prune": None, "bits": 8},
        "uniform 4-bit": {"prune": None, "bits": 4},
    }
    for name, options in matched.items():
        result = compress(setting.model, x, **options)
        pruned = options.get("prune", DEFAULT_CRITERION) is not None
        bits = options.get("bits", (8, 4))
        rows.append(
            _measure(
                setting,
                result,
                original,
                base,
                folder,
                part="matched",
                method=name,
                finetune=DEFAULT_FINETUNE_STEPS if pruned else 0,
                sparsity="own"
                if options.get("prune") == "nonpositive"
                else (DEFAULT_SPARSITY if pruned else 0.0),
                bits="/".join(map(str, bits)) if isinstance(bits, tuple) else bits,
                achieved_sparsity=round(float(result.metadata.get("sparsity") or 0.0), 4),
                max_layer_sparsity=_max_layer_sparsity(result.plan),
            )
        )
    rows.append(_dynamic_int8(setting, original, base, folder))
    return rows


def paired_rows(rows: list[dict[str, Any]], reference: str = "magnitude") -> list[dict[str, Any]]:
    """Each relevance criterion against ``reference`` at equal sparsity, paired over seeds.

    Against per-layer magnitude, global magnitude is tested too.
    """
    table: dict[tuple[Any, ...], dict[int, float]] = defaultdict(dict)
    for row in rows:
        if row["part"] == "search":
            key = (row["model"], row["method"], row["finetune"], row["sparsity"])
            table[key][row["seed"]] = float(row["accuracy"])
    out = []
    models = sorted({k[0] for k in table})
    methods = [
        m
        for m in CRITERIA
        if (m.startswith(("relevance", "signed")) or m == GLOBAL_MAGNITUDE)
        and m != reference
        and not CRITERIA[m].get("structured")
    ]
    for model in [*models, "all"]:
        for method in methods:
            for ft in sorted({k[2] for k in table}):
                for sp in SPARSITIES:
                    a: list[float] = []
                    b: list[float] = []
                    for m in models if model == "all" else [model]:
                        mine, ref = (
                            table.get((m, method, ft, sp)),
                            table.get((m, reference, ft, sp)),
                        )
                        if not mine or not ref:
                            continue
                        seeds = sorted(set(mine) & set(ref))
                        a += [mine[s] for s in seeds]
                        b += [ref[s] for s in seeds]
                    if len(a) < 2:
                        continue
                    test = paired_test(a, b)
                    out.append(
                        {
                            "model": model,
                            "method": method,
                            "reference": reference,
                            "finetune": ft,
                            "sparsity": sp,
                            **{
                                k: float(f"{v:.4g}") if isinstance(v, float) else v
                                for k, v in test.to_dict().items()
                            },
                        }
                    )
    return out


def verdict_lines(tests: list[dict[str, Any]], alpha: float = 0.05) -> list[list[str]]:
    """Per model, criterion, reference and fine-tune: the paired difference at each sparsity.

    A cell reads ``+1.23 (p 0.01) better``: the mean accuracy difference in points and the paired
    t-test's p; "better" or "worse" when p < alpha, "tie" otherwise.
    """
    cells: dict[tuple[Any, ...], dict[float, str]] = defaultdict(dict)
    counts: dict[tuple[Any, ...], int] = {}
    for t in tests:
        if t["model"] == "all":
            continue
        key = (t["model"], t["method"], t["reference"], t["finetune"])
        p = t["t_pvalue"]
        word = "tie" if not p < alpha else ("better" if t["mean_diff"] > 0 else "worse")
        cells[key][t["sparsity"]] = f"{t['mean_diff'] * 100:+.2f} (p {p:.2g}) {word}"
        counts[key] = t["n"]
    return [
        [*map(str, key), str(counts[key]), *(value.get(sp, "") for sp in SPARSITIES)]
        for key, value in cells.items()
    ]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _summary(rows: list[dict[str, Any]], part: str) -> list[list[str]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["part"] == part:
            groups[
                (
                    row["model"],
                    row["method"],
                    row["finetune"],
                    str(row["sparsity"]),
                    str(row["bits"]),
                )
            ].append(row)
    lines = []
    for (model, method, ft, sp, bits), group in groups.items():
        lines.append(
            [
                model,
                method,
                str(ft),
                sp,
                f"{_mean([r['achieved_sparsity'] for r in group]):.2f}",
                f"{max(r['max_layer_sparsity'] for r in group):.3f}",
                bits,
                f"{_mean([r['bytes'] for r in group]):,.0f}",
                f"{_mean([r['reduction'] for r in group]):.1%}",
                f"{_mean([r['accuracy'] for r in group]):.4f}",
                f"{_mean([r['change'] for r in group]) * 100:+.2f}",
                f"{min(r['change'] for r in group) * 100:+.2f}",
                str(len(group)),
            ]
        )
    return lines


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _markdown(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in rows:
            if r["model"] == model and (r["part"] == "matched" or r["finetune"]):
                groups[r["method"]].append((100 * r["reduction"], 100 * r["change"]))
        for method, points in sorted(groups.items()):
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=14, label=method, alpha=0.8)
        ax.axhline(-1, color="grey", lw=0.8, ls="--")
        ax.axvline(64, color="grey", lw=0.8, ls=":")
        ax.set_title(model)
        ax.set_xlabel("size reduction on disk (%)")
        ax.set_ylabel("accuracy change (points)")
        ax.set_ylim(max(-60, ax.get_ylim()[0]), 3)
    axes[0][-1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    rows: list[dict[str, Any]], tests: list[dict[str, Any]], seconds: float, command: str
) -> str:
    head = [
        "model",
        "method",
        "fine-tune steps",
        "sparsity",
        "achieved",
        "max layer",
        "bits",
        "bytes",
        "reduction",
        "accuracy",
        "change (pts)",
        "worst seed (pts)",
        "seeds",
    ]
    test_head = [
        "model",
        "method",
        "reference",
        "fine-tune",
        "sparsity",
        "n",
        "mean acc",
        "reference acc",
        "diff (pts)",
        "t p",
        "Wilcoxon p",
    ]
    test_lines = [
        [
            t["model"],
            t["method"],
            t["reference"],
            str(t["finetune"]),
            str(t["sparsity"]),
            str(t["n"]),
            f"{t['mean_a']:.4f}",
            f"{t['mean_b']:.4f}",
            f"{t['mean_diff'] * 100:+.2f}",
            f"{t['t_pvalue']:.3g}",
            f"{t['w_pvalue']:.3g}",
        ]
        for t in tests
    ]
    default = [r for r in rows if r["method"].startswith("default")]
    target = []
    for model in sorted({r["model"] for r in default}):
        group = [r for r in default if r["model"] == model]
        ok = all(r["reduction"] >= 0.64 and r["change"] >= -0.01 for r in group)
        target.append(
            f"- {model}: reduction {min(r['reduction'] for r in group):.1%} (smallest over "
            f"seeds), accuracy change {min(r['change'] for r in group) * 100:+.2f} points "
            f"(worst seed), mean {_mean([r['change'] for r in group]) * 100:+.2f}: "
            f"{'holds' if ok else 'does NOT hold'}"
        )
    return "\n".join(
        [
            "# Relevance-guided compression (issue 5)",
            "",
            f"Command: `{command}` ({seconds / 60:.1f} min, torch threads "
            f"{torch.get_num_threads()}). Accuracy on held-out data, after loading the saved file "
            "back; size = bytes of that file on disk; reduction against the float32 safetensors "
            "file of the original state dict. Calibration: 256 training inputs. PyTorch dynamic "
            "int8: `torch.ao.quantization.quantize_dynamic` on Linear layers (convolutions stay "
            "float32), size = the file `torch.save(state_dict)` writes.",
            "",
            "README text: SEE_BELOW",
            "",
            "## Target: default `compress(model, inputs)` (>= 64 % smaller, <= 1 point lost)",
            "",
            f"Defaults: prune `{DEFAULT_CRITERION}` at {DEFAULT_SPARSITY:.0%} "
            f"{'over all layers (global)' if DEFAULT_SCOPE == 'global' else 'per layer'}, "
            f"{DEFAULT_FINETUNE_STEPS} self-distillation steps, bits (8, 4) by relevance.",
            "",
            *target,
            "",
            "## Matched size: default against baselines",
            "",
            _markdown(head, _summary(rows, "matched")),
            "",
            "## Criterion search (pruning only, float32 weights; paper's sign rule at its own "
            "sparsity)",
            "",
            "Rows marked (global) rank all layers together (`plan_pruning(scope='global')`, one "
            "threshold for the whole model, no per-layer cap); the others prune the same share "
            "of every layer. max layer: the largest share pruned from any one layer, over seeds "
            "(1.000 would be a layer emptied).",
            "",
            _markdown(head, _summary(rows, "search")),
            "",
            "## Verdict: relevance criteria against magnitude pruning (per layer and global) at "
            "equal sparsity",
            "",
            "Mean accuracy difference to the reference in points over seeds (paired by seed: "
            "same model, calibration inputs and sparsity), paired t-test p; better/worse when "
            "p < 0.05, else tie. Weights float32 (pruning only). Reference `magnitude`: the same "
            f"share of every layer; `{GLOBAL_MAGNITUDE}`: one magnitude threshold over all layers.",
            "",
            _markdown(
                [
                    "model",
                    "criterion",
                    "reference",
                    "fine-tune steps",
                    "seeds",
                    *map(_percent, SPARSITIES),
                ],
                verdict_lines(tests),
            ),
            "",
            "## Paired tests: relevance criteria against magnitude (per layer and global) at equal "
            "sparsity (over seeds; 'all' pools models)",
            "",
            _markdown(test_head, test_lines),
            "",
            "![size and accuracy](compression/size_accuracy.png)",
            "",
        ]
    )


def _run_one(job: tuple[str, int, dict[str, Any], str | None, int]) -> list[dict[str, Any]]:
    name, seed, config, cache, threads = job
    torch.set_num_threads(threads)
    start = time.perf_counter()
    setting = load_setting(
        name,
        seed,
        calibration=256,
        cache_dir=cache,
        held_out=500 if name == "shapes" else None,
    )
    with tempfile.TemporaryDirectory() as scratch:
        rows = run_setting(setting, config, Path(scratch))
    print(f"{name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


# -- Real architectures (issue 22): --models resnet,mobilenet ------------------------------------

REAL_CSV = ROOT / "results" / "compression_real.csv"
REAL_REPORT = ROOT / "results" / "compression_real.md"
REAL_METHODS: dict[str, dict[str, Any]] = {
    f"default ({DEFAULT_CRITERION}, {DEFAULT_SCOPE})": {},
    GLOBAL_MAGNITUDE: {"prune": "magnitude", "scope": "global"},
    "uniform 8-bit": {"prune": None, "bits": 8},
}


def run_real(name: str, seed: int, folder: Path, finetune_steps: int) -> list[dict[str, Any]]:
    """The default against global magnitude (same sparsity, bits and fine-tune) and uniform
    8-bit, each file loaded back into a skeleton of the architecture and evaluated."""
    setting = load_real_setting(name, seed)
    original = float32_size(setting.model)
    base = accuracy(setting.model, setting.inputs, setting.labels)
    rows = []
    for method, options in REAL_METHODS.items():
        result = compress(
            setting.model, setting.calibration, finetune_steps=finetune_steps, **options
        )
        path = folder / "model.safetensors"
        size = save_compressed(result, path, overwrite=True)
        loaded = load_compressed(path, model=copy.deepcopy(setting.model))
        value = accuracy(loaded, setting.inputs, setting.labels)
        bits = options.get("bits", (8, 4))
        rows.append(
            {
                "model": name,
                "recipe": setting.metadata.get("recipe", ""),
                "seed": seed,
                "method": method,
                "finetune": finetune_steps if options.get("prune", 1) is not None else 0,
                "sparsity": round(float(result.metadata.get("sparsity") or 0.0), 4),
                "max_layer_sparsity": _max_layer_sparsity(result.plan),
                "bits": "/".join(map(str, bits)) if isinstance(bits, tuple) else bits,
                "bytes": size,
                "original_bytes": original,
                "accuracy": value,
                "original_accuracy": base,
                "change": value - base,
            }
        )
    return rows


def real_paired_tests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, the default's accuracy change minus global magnitude's over the seeds both
    have: paired t-test and Wilcoxon (:func:`leanxai.evaluate.stats.paired_test`)."""
    default = next(iter(REAL_METHODS))
    tests = []
    for model in sorted({r["model"] for r in rows}):
        ours = {
            r["seed"]: r["change"] for r in rows if (r["model"], r["method"]) == (model, default)
        }
        theirs = {
            r["seed"]: r["change"]
            for r in rows
            if (r["model"], r["method"]) == (model, GLOBAL_MAGNITUDE)
        }
        seeds = sorted(set(ours) & set(theirs))
        if len(seeds) < 2:
            continue
        test = paired_test([ours[s] for s in seeds], [theirs[s] for s in seeds])
        tests.append(
            {
                "model": model,
                "n": test.n,
                "mean_diff": test.mean_diff,
                "t_pvalue": test.t_pvalue,
                "w_pvalue": test.w_pvalue,
                "effect_size": test.effect_size,
                "wins": sum(ours[s] > theirs[s] for s in seeds),
                "losses": sum(ours[s] < theirs[s] for s in seeds),
            }
        )
    return tests


def write_real_report(rows: list[dict[str, Any]], command: str, seconds: float) -> str:
    """The markdown report of ``--models resnet,mobilenet``: one line per model and method (mean
    over seeds), the originals' accuracies and the paired tests. ``command`` and ``seconds``
    describe this run; rows kept from earlier runs carry their own ``command`` and ``minutes``."""
    runs = {(command, round(seconds / 60, 1))}
    runs |= {(r["command"], float(r["minutes"])) for r in rows if r.get("command")}
    recipes = ", ".join(sorted({f"{r['model']} `{r['recipe']}`" for r in rows}))
    lines = [
        "# Relevance-guided compression on transformers ResNet and MobileNetV2 (issue 22)",
        "",
        "Commands: "
        + "; ".join(f"`{run}` ({minutes:.1f} min)" for run, minutes in sorted(runs))
        + ". Models: small transformers configs trained here on 64x64 shapes of the `easy` "
        f"preset (recipes: {recipes}; cached, so a run's time counts training only where a "
        "model was not cached yet); accuracy on 500 held-out shapes, each file loaded back into "
        "a skeleton (`load_compressed(path, model=...)`). 'max layer' is the largest share of "
        "one layer's weights pruned (mean over seeds).",
        "",
        "| model | method | bits | sparsity | max layer | size (KB) | reduction | mean change "
        "| worst seed | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["method"])].append(row)
    for (model, method), group in sorted(
        groups.items(), key=lambda item: (item[0][0], list(REAL_METHODS).index(item[0][1]))
    ):
        changes = [r["change"] for r in group]
        size = _mean([r["bytes"] for r in group])
        layers = [r.get("max_layer_sparsity") for r in group]
        worst = "-" if "" in layers or None in layers else f"{_mean(layers):.2f}"  # older rows
        lines.append(
            f"| {model} | {method} | {group[0]['bits']} | {group[0]['sparsity']:.2f} | "
            f"{worst} | {size / 1024:.0f} | {group[0]['original_bytes'] / size:.1f}x | "
            f"{100 * _mean(changes):+.2f} pt | {100 * min(changes):+.2f} pt | {len(group)} |"
        )
    lines += ["", "Held-out accuracy of the original models (float32), by seed:", ""]
    for model in sorted({r["model"] for r in rows}):
        bases = sorted({(r["seed"], r["original_accuracy"]) for r in rows if r["model"] == model})
        values = [value for _, value in bases]
        lines.append(
            f"- {model}: mean {100 * _mean(values):.1f} %, lowest {100 * min(values):.1f} % "
            f"over {len(values)} seeds ("
            + ", ".join(f"seed {seed}: {100 * value:.1f} %" for seed, value in bases)
            + ")"
        )
    default = next(iter(REAL_METHODS))
    lines += [
        "",
        "Accuracy change by seed (points): default / global magnitude / uniform 8-bit:",
        "",
    ]
    for model in sorted({r["model"] for r in rows}):
        by_seed: dict[int, dict[str, float]] = defaultdict(dict)
        for r in rows:
            if r["model"] == model:
                by_seed[r["seed"]][r["method"]] = 100 * r["change"]
        lines.append(
            f"- {model}: "
            + "; ".join(
                f"seed {seed}: "
                + " / ".join(f"{changes.get(m, float('nan')):+.1f}" for m in REAL_METHODS)
                for seed, changes in sorted(by_seed.items())
            )
        )
    lines += [
        "",
        f"Paired over seeds, {default} minus {GLOBAL_MAGNITUDE} at the same size (accuracy "
        "change, points; effect size Cohen's d_z):",
        "",
    ]
    for test in real_paired_tests(rows):
        lines.append(
            f"- {test['model']}: mean {100 * test['mean_diff']:+.2f} pt over {test['n']} seeds "
            f"(default better on {test['wins']}, worse on {test['losses']}); paired t-test "
            f"p = {test['t_pvalue']:.3g}, Wilcoxon p = {test['w_pvalue']:.3g}, "
            f"d_z = {test['effect_size']:+.2f}"
        )
    return "\n".join(lines) + "\n"


def _real_row(row: dict[str, str]) -> dict[str, Any]:
    """A row of ``compression_real.csv`` read back, with its numbers as numbers."""
    out: dict[str, Any] = dict(row)
    for key in ("seed", "finetune", "bytes", "original_bytes"):
        out[key] = int(float(row[key]))
    for key in ("sparsity", "accuracy", "original_accuracy", "change"):
        out[key] = float(row[key])
    if row.get("max_layer_sparsity"):
        out["max_layer_sparsity"] = float(row["max_layer_sparsity"])
    return out


def _earlier_run() -> tuple[str, float] | None:
    """The command and minutes of the run that wrote ``compression_real.md`` before rows
    carried them (its first ``Command: `...` (N min)``)."""
    if not REAL_REPORT.exists():
        return None
    import re

    found = re.search(r"Command: `([^`]*)` \(([\d.]+) min\)", REAL_REPORT.read_text())
    return (found.group(1), float(found.group(2))) if found else None


def main_real(models: list[str], seeds: int, finetune_steps: int, command: str) -> None:
    """Run :func:`run_real` for ``models`` and ``seeds`` and write the CSV and the report; rows
    of other models from earlier runs are kept where they were measured on the current recipe
    of their model (:data:`~leanxai.experiments.compression.REAL_RECIPES`)."""
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in models:
            for seed in range(seeds):
                rows += run_real(name, seed, Path(scratch), finetune_steps)
                print(f"{name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    minutes = round((time.perf_counter() - start) / 60, 1)
    for row in rows:
        row["command"], row["minutes"] = command, minutes
    if REAL_CSV.exists():
        earlier = _earlier_run()
        with open(REAL_CSV, newline="") as handle:
            for old in csv.DictReader(handle):
                if old["model"] in models or old.get("recipe") != REAL_RECIPES.get(old["model"]):
                    continue
                kept = _real_row(old)
                if not kept.get("command") and earlier is not None:
                    kept["command"], kept["minutes"] = earlier
                rows.append(kept)
    fields = list(rows[0])
    REAL_CSV.parent.mkdir(parents=True, exist_ok=True)
    with open(REAL_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    REAL_REPORT.write_text(write_real_report(rows, command, time.perf_counter() - start))
    print(f"wrote {REAL_CSV} and {REAL_REPORT}")


LITE0_CSV = ROOT / "results" / "compression_real_lite0.csv"
LITE0_REPORT = ROOT / "results" / "compression_real_lite0.md"
LITE0_METHODS: dict[str, dict[str, Any]] = dict(REAL_METHODS)
"""The methods of ``--models lite0``: those of :data:`REAL_METHODS`. (Pruning-only rows in float
were tried; the process was killed for memory at the fourth method on this shared machine.)"""


def _logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(batch) for batch in inputs.split(32)])


def run_lite0(folder: Path, finetune_steps: int) -> list[dict[str, Any]]:
    """EfficientNet-Lite0 (ImageNet weights): each method's file loaded back into a skeleton,
    top-1 agreement and mean KL(original || compressed) on held-out photo crops, and the largest
    share any one layer lost (a global ranking can empty a layer; issue 22)."""
    setting = load_lite0_setting()
    original = float32_size(setting.model)
    reference = torch.log_softmax(_logits(setting.model, setting.inputs), dim=1)
    # Classes the calibration inputs are predicted as: LRP of the predicted class gives the
    # classifier rows of all other classes no relevance.
    predicted = _logits(setting.model, setting.calibration).argmax(1).unique().numel()
    rows = []
    for method, options in LITE0_METHODS.items():
        start = time.perf_counter()
        result = compress(
            setting.model, setting.calibration, finetune_steps=finetune_steps, **options
        )
        path = folder / "model.safetensors"
        size = save_compressed(result, path, overwrite=True)
        loaded = load_compressed(path, model=copy.deepcopy(setting.model))
        logits = torch.log_softmax(_logits(loaded, setting.inputs), dim=1)
        kl = (reference.exp() * (reference - logits)).sum(1).mean().item()
        agreement = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        bits = options.get("bits", (8, 4))
        masks = result.plan.masks if result.plan is not None else {}
        worst = max((1.0 - float(m.float().mean()) for m in masks.values()), default=0.0)
        rows.append(
            {
                "model": "lite0",
                "method": method,
                "finetune": finetune_steps if options.get("prune", 1) is not None else 0,
                "sparsity": round(float(result.metadata.get("sparsity") or 0.0), 4),
                "max_layer_sparsity": round(worst, 4),
                "bits": "/".join(map(str, bits)) if isinstance(bits, tuple) else bits or "float",
                "bytes": size,
                "original_bytes": original,
                "agreement": agreement,
                "mean_kl": kl,
                "calibration": int(setting.calibration.shape[0]),
                "calibration_classes": int(predicted),
                "held_out": int(setting.inputs.shape[0]),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)
        del result, loaded, logits  # a 224x224 model per method: keep the peak memory down
        gc.collect()
    return rows


def _lite0_row(row: dict[str, str]) -> dict[str, Any]:
    """A row of ``compression_real_lite0.csv`` read back, with its numbers as numbers."""
    out: dict[str, Any] = dict(row)
    for key in ("finetune", "bytes", "original_bytes", "calibration", "held_out"):
        out[key] = int(float(row[key]))
    for key in ("sparsity", "max_layer_sparsity", "agreement", "mean_kl", "seconds", "minutes"):
        out[key] = float(row[key])
    return out


def main_lite0(finetune_steps: int, command: str) -> None:
    """Run :func:`run_lite0` and write its rows, keeping the rows of earlier runs of other
    (method, fine-tune steps) pairs with the command and wall time that produced them."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        rows = run_lite0(Path(scratch), finetune_steps)
    minutes = round((time.perf_counter() - start) / 60, 1)
    for row in rows:
        row["command"], row["minutes"] = command, minutes
    done = {(row["method"], row["finetune"]) for row in rows}
    if LITE0_CSV.exists():
        with open(LITE0_CSV, newline="") as handle:
            for old in csv.DictReader(handle):
                # Rows written before the columns below existed are not kept.
                if "command" in old and "max_layer_sparsity" in old:
                    kept = _lite0_row(old)
                    if (kept["method"], kept["finetune"]) not in done:
                        rows.append(kept)
    rows.sort(key=lambda row: (row["finetune"], list(LITE0_METHODS).index(row["method"])))
    LITE0_CSV.parent.mkdir(parents=True, exist_ok=True)
    with open(LITE0_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    runs = sorted({(row["command"], row["minutes"]) for row in rows})
    classes = {str(row.get("calibration_classes", "")) for row in rows} - {""}
    lines = [
        "# EfficientNet-Lite0 (ImageNet weights): fidelity of the compressed model (issue 22)",
        "",
        "Commands: "
        + "; ".join(f"`{run}` ({run_minutes:.1f} min)" for run, run_minutes in runs)
        + f". No labels: top-1 agreement with the original model and mean KL(original || "
        f"compressed) on {rows[0]['held_out']} held-out crops and flips of 12 photos of "
        f"scikit-image and scikit-learn; calibration (and fine-tuning): "
        f"{rows[0]['calibration']} crops of 5 other photos, predicted as "
        f"{' or '.join(sorted(classes)) or 'an unrecorded number of'} of the 1,000 classes. Each "
        "file loaded back into a skeleton "
        "(`load_compressed(path, model=...)`). 'max layer' is the largest share of one layer's "
        "weights pruned.",
        "",
        "| method | bits | sparsity | max layer | fine-tune steps | size (KB) | reduction "
        "| top-1 agreement | mean KL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['bits']} | {row['sparsity']:.2f} | "
            f"{row['max_layer_sparsity']:.3f} | {row['finetune']} | "
            f"{row['bytes'] / 1024:.0f} | {row['original_bytes'] / row['bytes']:.1f}x | "
            f"{100 * row['agreement']:.1f} % | {row['mean_kl']:.3f} |"
        )
    LITE0_REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {LITE0_CSV} and {LITE0_REPORT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="dense net, 3 seeds (about a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="settings run in parallel processes")
    parser.add_argument("--cache", default=None, help="model cache directory")
    parser.add_argument(
        "--models",
        default=None,
        help="real architectures only (issue 22): resnet,mobilenet (writes compression_real.*) "
        "or lite0 (pretrained EfficientNet-Lite0, writes compression_real_lite0.*)",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds of --models")
    parser.add_argument(
        "--finetune-steps", type=int, default=DEFAULT_FINETUNE_STEPS, help="fine-tune of --models"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.models == "lite0":
        main_lite0(
            args.finetune_steps,
            "OMP_NUM_THREADS=1 python benchmarks/compression.py --models lite0 "
            f"--finetune-steps {args.finetune_steps}",
        )
        return
    if args.models:
        command = (
            f"OMP_NUM_THREADS=1 python benchmarks/compression.py --models {args.models} "
            f"--seeds {args.seeds} --finetune-steps {args.finetune_steps}"
        )
        main_real(args.models.split(","), args.seeds, args.finetune_steps, command)
        return
    start = time.perf_counter()
    light = [
        "magnitude",
        GLOBAL_MAGNITUDE,
        "random",
        "relevance_magnitude",
        "relevance_magnitude (global)",
        "relevance_tempered (global)",
        "relevance_l2",
        "relevance",
        "signed_relevance",
    ]
    search = {"finetune": DEFAULT_FINETUNE_STEPS, "sparsities": SPARSITIES}
    plan: list[tuple[str, list[int], dict[str, Any]]]
    if args.quick:
        plan = [("dense", [0, 1, 2], {**search, "criteria": light})]
    else:
        # The shapes CNN's 64x64 fine-tunes cost several times the MNIST ones: it gets the
        # plain baselines and the default's criterion only. Longest jobs first.
        plan = [
            ("shapes", list(range(5)), {**search, "criteria": SHAPES_CRITERIA}),
            ("mnist", list(range(5)), {**search, "criteria": [c for c in light if c != RELEVANCE]}),
            ("dense", list(range(10)), {**search, "criteria": list(CRITERIA)}),
        ]
    jobs = [
        (name, seed, config, args.cache, args.threads)
        for name, seeds, config in plan
        for seed in seeds
    ]
    rows: list[dict[str, Any]] = []
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            for result in pool.map(_run_one, jobs):
                rows += result
    else:
        for job in jobs:
            rows += _run_one(job)
    tests = [t for reference in REFERENCES for t in paired_rows(rows, reference)]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    if tests:
        with open(OUT / "paired_tests.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(tests[0]))
            writer.writeheader()
            writer.writerows(tests)
    _plot(rows, OUT / "size_accuracy.png")
    command = "OMP_NUM_THREADS=1 python benchmarks/compression.py" + (
        " --quick" if args.quick else ""
    )
    if args.jobs > 1:
        command += f" --jobs {args.jobs}"
    text = write_report(rows, tests, time.perf_counter() - start, command)
    readme = (
        REPORT.read_text().split("README text: ", 1)[1].split("\n\n", 1)[0]
        if (REPORT.exists() and "README text: " in REPORT.read_text())
        else "(to be written)"
    )
    REPORT.write_text(text.replace("README text: SEE_BELOW", f"README text: {readme}"))
    print(f"wrote {OUT / 'results.csv'} and {REPORT} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
