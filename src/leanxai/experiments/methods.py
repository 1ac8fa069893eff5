"""The methods benchmark: every method at every threshold on every data set, against ground truth.

For each data set a trained model and held-out images with ground-truth object masks are loaded;
only images the model classifies correctly are kept, so that the explained class (the label) is
also the predicted class and the object mask is the evidence for it. Each method explains the
images once, timed batch by batch; each threshold is then applied to the same heatmaps and
scored with :mod:`leanxai.evaluate` (deletion, insertion, completeness, max-sensitivity,
localisation, pointing game, AUPR). One row per (data set, method, threshold) goes to
``results.csv``; a method that fails on a data set gets failed rows with the error and the run
goes on. Plots and a self-contained HTML report are written beside the CSV.

Cost is measured in this process on the same inputs. Time: after scoring, every method explains
the same batch once per round, alternately, in an order rotated each round, and the median over
rounds per image is reported (see ``timing_rounds``). Memory: the peak resident memory growth
during the first batch call of the explain phase (see :func:`cost`).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leanxai import threshold
from leanxai.core.errors import InputError, one_line
from leanxai.data.user import MaskedImages
from leanxai.evaluate.cost import cost
from leanxai.evaluate.faithfulness import (
    completeness,
    deletion_curve,
    insertion_curve,
    max_relative_change,
    perturbed_explanations,
)
from leanxai.evaluate.localization import localization, pointing_game, pr_curve
from leanxai.evaluate.stats import paired_test
from leanxai.experiments.methods_report import csv_text, render_report
from leanxai.explainers import registry
from leanxai.explainers.base import Explainer
from leanxai.io import atomic_write_bytes, atomic_write_text, check_writable

__all__ = [
    "COLUMNS",
    "DATASETS",
    "DEFAULT_METHODS",
    "DEFAULT_THRESHOLDS",
    "BenchmarkConfig",
    "BenchmarkData",
    "BenchmarkResult",
    "load_benchmark_data",
    "make_explainer",
    "run_benchmark",
    "user_benchmark_data",
]

DEFAULT_METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcam++",
    "rise",
    "lime",
    "kernelshap",
    "ig",
    "occlusion",
    "guided_backprop",
)
"""The image methods of the registry in the order the report lists them (a test checks that they
are exactly :func:`leanxai.explainers.registry.names` for ``"cnn"``)."""
DEFAULT_THRESHOLDS: tuple[str, ...] = (
    "none",
    "top:1",
    "top:5",
    "top:10",
    "top:20",
    "dynamic",
    "mass:0.8",
)

COLUMNS: tuple[str, ...] = (
    "dataset",
    "method",
    "threshold",
    "status",
    "n",
    "time_s",
    "explain_time_s",
    "threshold_time_s",
    "peak_memory_mb",
    "deletion",
    "insertion",
    "completeness",
    "kept_fraction",
    "max_sensitivity",
    "iou",
    "dice",
    "boundary_f1",
    "precision",
    "recall",
    "pointing_game",
    "aupr",
    "excluded_empty_masks",
    "error",
)
"""Columns of ``results.csv``; metrics are means over the ``n`` images (max-sensitivity over
its own subset, see :class:`BenchmarkConfig`)."""

# Per-sample metrics kept for the paired tests.
_PAIRED_METRICS = ("iou", "deletion", "insertion", "aupr")

# Held-out seed, never used for training.
_SHAPES_SEED = 7_000_001


@dataclass(frozen=True)
class BenchmarkConfig:
    """What the benchmark runs.

    Attributes
    ----------
    methods
        Names from :func:`make_explainer`.
    thresholds
        Threshold specs (:func:`leanxai.threshold.from_spec`); ``"none"`` is the raw heatmap.
    datasets
        Names from :data:`DATASETS`.
    n
        Correctly classified held-out images per data set.
    batch_size
        Images per ``explain`` call (and per timed batch).
    steps
        Steps of the deletion and insertion curves.
    sensitivity_n, sensitivity_samples, radius
        Max-sensitivity is measured on the first ``sensitivity_n`` images with
        ``sensitivity_samples`` noise draws of half-width ``radius``.
    timing_rounds
        Rounds of the timing phase: after scoring, every method explains the first batch once
        per round, alternately, in a rotated order; times are medians over rounds. 0 keeps the
        times of the explain phase (median over batches, methods one after another).
    seed
        Seed of the data selection and of every method that draws random numbers.
    method_options
        Extra keyword arguments per method, e.g. ``{"lime": {"n_samples": 500}}``.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    thresholds: tuple[str, ...] = DEFAULT_THRESHOLDS
    datasets: tuple[str, ...] = ("shapes", "mnist")
    n: int = 64
    batch_size: int = 8
    steps: int = 32
    sensitivity_n: int = 16
    sensitivity_samples: int = 5
    radius: float = 0.02
    timing_rounds: int = 5
    seed: int = 0
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def quick(cls, **changes: Any) -> BenchmarkConfig:
        """A run that finishes in under two minutes on two CPU cores: one data set, 8 images,
        16 curve steps, max-sensitivity on 2 images with 2 draws, 2 timing rounds. Method
        settings are the defaults, so cost ratios are those of the full run."""
        quick = cls(
            datasets=("shapes",),
            n=8,
            steps=16,
            sensitivity_n=2,
            sensitivity_samples=2,
            timing_rounds=2,
        )
        return replace(quick, **changes)

    def check(self, datasets: Sequence[str] | None = None) -> None:
        """Raise ``ValueError`` naming the first bad setting.

        ``datasets``: the names accepted beside :data:`DATASETS` (a user's data, issue 23).
        """
        for name in ("n", "batch_size", "steps", "sensitivity_n", "sensitivity_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive int, got {value!r}")
        rounds = self.timing_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise InputError(f"timing_rounds must be an int >= 0, got {rounds!r}")
        if not self.methods:
            raise InputError("methods is empty")
        if not self.datasets:
            raise InputError("datasets is empty")
        for method in self.methods:
            registry.get(method, "cnn")
        for method, options in self.method_options.items():
            info = registry.get(method, "cnn")
            accepted = registry.parameters(info.factory)
            unknown_options = sorted(set(options) - accepted) if accepted is not None else []
            if unknown_options:
                raise InputError(
                    f"method {info.name!r} takes no option(s) {', '.join(unknown_options)}; "
                    f"it takes {', '.join(sorted(accepted or ()))}"
                )
        unknown = [d for d in self.datasets if d not in DATASETS and d not in (datasets or ())]
        if unknown:
            raise InputError(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
        for spec in self.thresholds:
            threshold.from_spec(spec)
        if not self.radius >= 0:
            raise InputError(f"radius must be >= 0, got {self.radius!r}")


@dataclass(frozen=True)
class BenchmarkData:
    """A model and correctly classified held-out images with object masks."""

    name: str
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str, ...]
    note: str = ""
    preprocessing: str = ""


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` wrote and found."""

    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    failures: list[dict[str, str]]
    files: dict[str, Path]
    notes: dict[str, str]

    @property
    def failed(self) -> bool:
        return bool(self.failures)


# --------------------------------------------------------------------------------------------
# Methods


def make_explainer(
    name: str, model: nn.Module, seed: int = 0, options: Mapping[str, Any] | None = None
) -> Explainer:
    """Build the image explainer ``name`` (``"gradcam"``, ``"rise"``...) from the registry.

    ``seed`` is passed to methods that take one; ``options`` are extra keyword arguments.
    """
    explainer: Explainer = registry.create(
        name, model, "cnn", seed=seed, options=dict(options or {})
    )
    return explainer


# --------------------------------------------------------------------------------------------
# Data sets


def _correct(
    name: str,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    classes: tuple[str, ...],
    n: int,
) -> BenchmarkData:
    """The first ``n`` images the model classifies correctly and whose mask is not empty."""
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat(
            [model(images[i : i + 256]).argmax(1) for i in range(0, len(images), 256)]
        )
    correct = predicted == labels
    usable = correct & masks.flatten(1).any(1)
    index = usable.nonzero()[:, 0][:n]
    if len(index) == 0:
        raise InputError(f"{name}: the model classifies none of {len(images)} images correctly")
    note = (
        f"{len(index)} of the first {int(usable[: int(index[-1]) + 1].numel())} held-out "
        f"images (accuracy on all {len(images)}: {float(correct.float().mean()):.3f}); "
        "only correctly classified images with a non-empty mask are explained"
    )
    return BenchmarkData(
        name=name,
        model=model,
        images=images[index],
        labels=labels[index],
        masks=masks[index].bool(),
        classes=classes,
        note=note,
    )


def _shapes(n: int, seed: int, cache_dir: str | Path | None) -> BenchmarkData:
    from leanxai.data.shapes import make_shapes
    from leanxai.zoo import load_demo_model

    model, _ = load_demo_model(cache_dir, progress=False)
    data = make_shapes(max(4 * n, 64), seed=_SHAPES_SEED + seed)
    return _correct("shapes", model, data.images, data.labels, data.masks, data.classes, n)


def _mnist(n: int, seed: int, cache_dir: str | Path | None) -> BenchmarkData:
    from leanxai.zoo.digits import load_mnist_model, mnist_held_out

    model, _ = load_mnist_model(cache_dir, progress=False)
    data = mnist_held_out()
    assert data.masks is not None
    return _correct("mnist", model, data.images, data.labels, data.masks, data.classes, n)


DATASETS: dict[str, Callable[[int, int, str | Path | None], BenchmarkData]] = {
    "shapes": _shapes,
    "mnist": _mnist,
}
"""Benchmark data sets: the demo CNN on held-out shapes (masks: the object's pixels), and a
small CNN on MNIST-5k's held-out digits (masks: the ink, a proxy for where the digit is). Harder
shapes (``make_shapes(difficulty="hard")``) are not here: the demo CNN, trained on the default
knobs, is at chance on them, and explaining chance hits measures nothing."""


def user_benchmark_data(
    name: str,
    model: nn.Module,
    data: MaskedImages,
    n: int,
    *,
    labels: Mapping[int, str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    gray: bool = False,
    preprocessing: str = "",
) -> BenchmarkData:
    """A user's model on a user's images and masks (:mod:`leanxai.data.user`), ready to run.

    The model is wrapped so that it reads RGB in ``[0, 1]`` (:func:`leanxai.core.models.normalized`
    with ``mean``/``std``): deletion and insertion then perturb the photo, not its normalised
    values. Where the data names an image's class and the model has that class (``labels``, by
    name or index), only images the model classifies as that class are explained, as on the
    built-in sets; elsewhere the predicted class is explained. At most ``n`` images are kept.
    """
    from leanxai.core.models import normalized

    wrapped = normalized(
        model, tuple(mean) if mean else None, tuple(std) if std else None, gray=gray
    )
    wrapped.eval()
    with torch.inference_mode():
        predicted = torch.cat(
            [wrapped(data.images[i : i + 64]).argmax(1) for i in range(0, len(data.images), 64)]
        )
    names = {str(v).strip().lower(): int(k) for k, v in (labels or {}).items()}
    indices = {str(int(k)): int(k) for k in (labels or {})}
    keep: list[int] = []
    targets: list[int] = []
    wrong = unknown = 0
    for i, label in enumerate(data.classes):
        if label is None:
            keep.append(i)
            targets.append(int(predicted[i]))
            continue
        named = names.get(label.strip().lower(), indices.get(label.strip()))
        if named is None:
            unknown += 1
            keep.append(i)
            targets.append(int(predicted[i]))
        elif named == int(predicted[i]):
            keep.append(i)
            targets.append(named)
        else:
            wrong += 1
    keep, targets = keep[:n], targets[:n]
    if not keep:
        raise InputError(
            f"{name}: the model classifies none of {len(data.images)} labelled images as labelled"
        )
    parts = [f"{len(keep)} of {len(data.images)} images of {data.source}"]
    if wrong:
        parts.append(f"{wrong} left out: the model does not predict their labelled class")
    if unknown:
        parts.append(
            f"{unknown} labelled with a class the model does not name: prediction explained"
        )
    if any(label is None for label in data.classes):
        parts.append("images without a class: the predicted class is explained")
    if data.skipped:
        parts.append(f"{len(data.skipped)} files skipped (bad or unmatched)")
    parts.append(f"normalisation: {preprocessing or 'none: RGB in [0, 1]'}")
    index = torch.tensor(keep)
    k = max([*(labels or {}), *targets]) + 1
    return BenchmarkData(
        name=name,
        model=wrapped,
        images=data.images[index],
        labels=torch.tensor(targets, dtype=torch.int64),
        masks=data.masks[index],
        classes=tuple((labels or {}).get(j, str(j)) for j in range(k)),
        note="; ".join(parts),
        preprocessing=preprocessing or "none: RGB in [0, 1]",
    )


def load_benchmark_data(
    name: str, n: int, seed: int = 0, cache_dir: str | Path | None = None
) -> BenchmarkData:
    """Load the benchmark data set ``name`` (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name](n, seed, cache_dir)


# --------------------------------------------------------------------------------------------
# One method on one data set


@dataclass
class _MethodRun:
    rows: list[dict[str, Any]]
    per_sample: dict[str, dict[str, np.ndarray]]  # threshold -> metric -> (n,)
    pr: dict[str, tuple[np.ndarray, np.ndarray]]  # threshold -> (recall, mean precision)
    deletion: tuple[np.ndarray, np.ndarray]  # unthresholded mean curve
    insertion: tuple[np.ndarray, np.ndarray]
    explainer: Explainer | None = None


def _nanmean(values: torch.Tensor) -> float:
    values = values.double()
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else math.nan


def _explain_all(
    explainer: Explainer, data: BenchmarkData, batch_size: int
) -> tuple[torch.Tensor, float, float | None]:
    """Heatmaps ``(n, H, W)``, median seconds per image, peak MB of one batch call."""
    explainer.explain(data.images[:1], data.labels[:1])  # warm-up
    heatmaps, per_image = [], []
    peak: float | None = None
    for i, start in enumerate(range(0, len(data.images), batch_size)):
        images = data.images[start : start + batch_size]
        labels = data.labels[start : start + batch_size]
        measured = cost(explainer.explain, images, labels, repeats=1, warmup=0, memory=i == 0)
        if i == 0 and measured.peak_bytes is not None:
            peak = measured.peak_bytes / 2**20
        heatmaps.append(measured.result.heatmap)
        per_image.append(measured.median_s / len(images))
    return torch.cat(heatmaps), float(np.median(per_image)), peak


def _run_method(
    method: str, data: BenchmarkData, config: BenchmarkConfig, progress: tqdm | None
) -> _MethodRun:
    explainer = make_explainer(method, data.model, config.seed, config.method_options.get(method))
    heatmaps, explain_s, peak_mb = _explain_all(explainer, data, config.batch_size)
    subset = slice(0, min(config.sensitivity_n, len(data.images)))
    reference, perturbed = perturbed_explanations(
        explainer,
        data.images[subset],
        data.labels[subset],
        radius=config.radius,
        samples=config.sensitivity_samples,
        seed=config.seed,
    )
    run = _MethodRun([], {}, {}, (np.zeros(0), np.zeros(0)), (np.zeros(0), np.zeros(0)), explainer)
    for spec in config.thresholds:
        apply = threshold.from_spec(spec)
        start = time.perf_counter()
        kept = apply(heatmaps)
        threshold_s = (time.perf_counter() - start) / len(heatmaps)
        deleted = deletion_curve(data.model, data.images, kept, data.labels, steps=config.steps)
        inserted = insertion_curve(data.model, data.images, kept, data.labels, steps=config.steps)
        complete = completeness(data.model, data.images, kept, data.labels)
        sensitivity = max_relative_change(apply(reference.heatmap), [apply(h) for h in perturbed])
        located = localization(kept > 0, data.masks)
        pointing = pointing_game(kept, data.masks)
        precision_recall = pr_curve(kept, data.masks)
        run.rows.append(
            {
                "dataset": data.name,
                "method": method,
                "threshold": spec,
                "status": "ok",
                "n": len(data.images),
                "time_s": explain_s + threshold_s,
                "explain_time_s": explain_s,
                "threshold_time_s": threshold_s,
                "peak_memory_mb": peak_mb,
                "deletion": _nanmean(deleted.area),
                "insertion": _nanmean(inserted.area),
                "completeness": _nanmean(complete.score),
                "kept_fraction": _nanmean(complete.kept_fraction),
                "max_sensitivity": _nanmean(sensitivity),
                "iou": _nanmean(located["iou"]),
                "dice": _nanmean(located["dice"]),
                "boundary_f1": _nanmean(located["boundary_f1"]),
                "precision": _nanmean(located["precision"]),
                "recall": _nanmean(located["recall"]),
                "pointing_game": pointing.accuracy,
                "aupr": _nanmean(precision_recall.aupr),
                "excluded_empty_masks": pointing.excluded,
                "error": "",
            }
        )
        run.per_sample[spec] = {
            "iou": located["iou"].double().cpu().numpy(),
            "deletion": deleted.area.double().cpu().numpy(),
            "insertion": inserted.area.double().cpu().numpy(),
            "aupr": precision_recall.aupr.double().cpu().numpy(),
        }
        valid = precision_recall.valid
        run.pr[spec] = (
            precision_recall.recall_grid.cpu().numpy(),
            precision_recall.precision[valid].double().mean(0).cpu().numpy(),
        )
        if spec == config.thresholds[0]:
            run.deletion = (
                deleted.fractions.numpy(),
                deleted.probabilities.double().mean(0).numpy(),
            )
            run.insertion = (
                inserted.fractions.numpy(),
                inserted.probabilities.double().mean(0).numpy(),
            )
        if progress is not None:
            progress.update(1)
    return run


def _failed_rows(
    dataset: str, method: str, thresholds: Sequence[str], error: str
) -> list[dict[str, Any]]:
    rows = []
    for spec in thresholds:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(dataset=dataset, method=method, threshold=spec, status="failed", error=error)
        rows.append(row)
    return rows


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_line(error)}"


# --------------------------------------------------------------------------------------------
# The run


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    user_data: Sequence[BenchmarkData] = (),
) -> BenchmarkResult:
    """Run the benchmark and write ``results.csv``, ``paired_tests.csv``, ``results.json``,
    the plots (``plots/*.png``) and ``report.html`` to ``out_dir``.

    Parameters
    ----------
    config
        What to run; :meth:`BenchmarkConfig.quick` for a short run.
    out_dir
        Output folder, created if missing.
    overwrite
        Replace the files of an earlier run; without it, existing files stop the run before any
        work is done.
    cache_dir
        Where trained models are cached (default as in :func:`leanxai.zoo.load_demo_model`).
    progress
        Show a progress bar.
    user_data
        A user's data sets (:func:`user_benchmark_data`), run instead of ``config.datasets``.

    Returns
    -------
    BenchmarkResult
        Rows, paired tests, failures (a method that failed on a data set, or a data set that
        did not load: the run goes on; check ``result.failed``), written files.
    """
    given = {item.name: item for item in user_data}
    if given:
        config = replace(config, datasets=tuple(given))
    config.check(tuple(given))
    out = Path(out_dir)
    files = {
        "results": out / "results.csv",
        "paired": out / "paired_tests.csv",
        "json": out / "results.json",
        "report": out / "report.html",
    }
    plot_names = {
        f"{kind}-{dataset}": out / "plots" / f"{kind}-{dataset}.png"
        for dataset in config.datasets
        for kind in ("pr", "cost", "curves")
    }
    check_writable([*files.values(), *plot_names.values()], overwrite)

    rows: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    notes: dict[str, str] = {}
    preprocessing: dict[str, str] = {}
    plots: dict[str, bytes] = {}
    total = len(config.datasets) * len(config.methods) * len(config.thresholds)
    bar = tqdm(total=total, desc="benchmark", unit="row", disable=not progress)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        for dataset in config.datasets:
            bar.set_postfix_str(f"{dataset}: loading")
            try:
                data = given.get(dataset) or load_benchmark_data(
                    dataset, config.n, config.seed, cache_dir
                )
            except Exception as error:  # a data set that fails is reported, the run goes on
                message = _one_line(error)
                failures.append({"dataset": dataset, "method": "*", "error": message})
                for method in config.methods:
                    rows.extend(_failed_rows(dataset, method, config.thresholds, message))
                bar.update(len(config.methods) * len(config.thresholds))
                continue
            notes[dataset] = data.note
            preprocessing[dataset] = data.preprocessing or "as the built-in model expects"
            runs: dict[str, _MethodRun] = {}
            for method in config.methods:
                bar.set_postfix_str(f"{dataset}: {method}")
                position = bar.n
                try:
                    runs[method] = _run_method(method, data, config, bar)
                except Exception as error:  # one failed method must not stop the others
                    message = _one_line(error)
                    failures.append({"dataset": dataset, "method": method, "error": message})
                    rows.extend(_failed_rows(dataset, method, config.thresholds, message))
                    bar.update(position + len(config.thresholds) - bar.n)
                    continue
                rows.extend(runs[method].rows)
            if config.timing_rounds > 0 and runs:
                bar.set_postfix_str(f"{dataset}: timing")
                _retime(rows, dataset, runs, data, config)
            paired.extend(_paired_tests(dataset, runs, config.thresholds))
            plots.update(_plots(dataset, runs, rows))
    bar.close()
    seconds = time.perf_counter() - started

    atomic_write_text(files["results"], csv_text(rows, COLUMNS), overwrite=overwrite)
    paired_columns = tuple(paired[0]) if paired else ("dataset",)
    atomic_write_text(files["paired"], csv_text(paired, paired_columns), overwrite=overwrite)
    for key, data_png in plots.items():
        atomic_write_bytes(plot_names[key], data_png, overwrite=overwrite)
    meta = {
        "config": {**asdict(config), "method_options": dict(config.method_options)},
        "seconds": round(seconds, 1),
        "notes": notes,
        "preprocessing": preprocessing,
        "failures": failures,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "memory_method": "peak resident memory growth during one explain() call of a batch",
    }
    atomic_write_text(
        files["json"], json.dumps(meta, indent=2, default=str) + "\n", overwrite=overwrite
    )
    atomic_write_text(
        files["report"],
        render_report(rows, paired, failures, notes, plots, config, seconds),
        overwrite=overwrite,
    )
    files.update({key: path for key, path in plot_names.items() if key in plots})
    return BenchmarkResult(rows, paired, failures, files, notes)


def _retime(
    rows: list[dict[str, Any]],
    dataset: str,
    runs: Mapping[str, _MethodRun],
    data: BenchmarkData,
    config: BenchmarkConfig,
) -> None:
    """Time every method again on the same batch, alternately, and put those times in the rows.

    Methods run one after another in the explain phase, so a method's time there also depends
    on what ran before it (allocator state, caches, other load on the machine). Here each round
    times one ``explain`` call of every method on the first ``batch_size`` images, in an order
    rotated each round; the reported time is the median over rounds, per image.
    """
    images = data.images[: config.batch_size]
    labels = data.labels[: config.batch_size]
    names = [m for m, run in runs.items() if run.explainer is not None]
    times: dict[str, list[float]] = {m: [] for m in names}
    for round_ in range(config.timing_rounds):
        shift = round_ % len(names)
        for method in names[shift:] + names[:shift]:
            explainer = runs[method].explainer
            assert explainer is not None
            start = time.perf_counter()
            explainer.explain(images, labels)
            times[method].append((time.perf_counter() - start) / len(images))
    for row in rows:
        if row["dataset"] == dataset and row["method"] in times and row["status"] == "ok":
            row["explain_time_s"] = float(np.median(times[row["method"]]))
            row["time_s"] = row["explain_time_s"] + row["threshold_time_s"]


# --------------------------------------------------------------------------------------------
# Paired tests, plots, CSV, report


def _paired_tests(
    dataset: str, runs: Mapping[str, _MethodRun], thresholds: Sequence[str]
) -> list[dict[str, Any]]:
    """Each method unthresholded vs each of its thresholds; Grad-CAM vs each other method."""
    results: list[dict[str, Any]] = []
    base = thresholds[0]

    def add(method_a: str, threshold_a: str, method_b: str, threshold_b: str) -> None:
        for metric in _PAIRED_METRICS:
            a = runs[method_a].per_sample[threshold_a][metric]
            b = runs[method_b].per_sample[threshold_b][metric]
            try:
                test = paired_test(a, b).to_dict()
            except ValueError:
                continue
            results.append(
                {
                    "dataset": dataset,
                    "a": f"{method_a} {threshold_a}",
                    "b": f"{method_b} {threshold_b}",
                    "metric": metric,
                    **test,
                }
            )

    for method, run in runs.items():
        for spec in thresholds[1:]:
            if spec in run.per_sample:
                add(method, base, method, spec)
    if "gradcam" in runs:
        for method in runs:
            if method != "gradcam":
                add("gradcam", base, method, base)
    return results


def _plots(
    dataset: str, runs: Mapping[str, _MethodRun], rows: Sequence[Mapping[str, Any]]
) -> dict[str, bytes]:
    from leanxai.viz.plots import cost_bars, faithfulness_curves, pr_curves

    if not runs:
        return {}
    first = next(iter(next(iter(runs.values())).pr))
    methods = list(runs)
    timing = {
        row["method"]: row
        for row in rows
        if row["dataset"] == dataset and row["threshold"] == first and row["status"] == "ok"
    }
    return {
        f"pr-{dataset}": pr_curves(
            {m: run.pr for m, run in runs.items()},
            title=f"{dataset}: mean precision-recall against the object mask, per threshold",
        ),
        f"cost-{dataset}": cost_bars(
            methods,
            [timing[m]["explain_time_s"] for m in methods],
            [timing[m]["peak_memory_mb"] or 0.0 for m in methods],
            title=f"{dataset}: time per image and peak memory of explain()",
        ),
        f"curves-{dataset}": faithfulness_curves(
            {m: run.deletion for m, run in runs.items()},
            {m: run.insertion for m, run in runs.items()},
            title=f"{dataset}: mean deletion and insertion curves (unthresholded)",
        ),
    }
