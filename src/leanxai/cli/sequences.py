"""``leanxai explain series.npy --model py:...``: per-sequence maps of a recurrent classifier.

Called by ``leanxai explain`` when every input ends in ``.npy``. Each file holds one sequence
``(T, F)`` or a batch ``(N, T, F)``; trailing rows that are all NaN are padding (the sequence is
shorter), and the model is then called as ``model(x, mask)``. For each sequence it writes
``<name>.npy``, the ``(T, F)`` float32 attribution over the valid steps, and ``<name>.png``, the
series over its time x feature map with the kept windows shaded; and one ``summary.csv``.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from leanxai.cli._common import EXIT_PARTIAL, fail, output_names
from leanxai.core.errors import InputError, LeanXAIError

__all__ = ["DEFAULT_WINDOWS", "explain_series", "parse_windows"]

DEFAULT_WINDOWS = "windows:20:3"
"""The kept windows shaded when ``--threshold`` is not given: the top 20% of the steps, gaps
of fewer than 3 steps closed."""

_FIELDS = [
    "file",
    "sequence",
    "steps",
    "class",
    "score",
    "windows",
    "time_s",
    "method",
    "map",
    "plot",
    "status",
]


def parse_windows(spec: str) -> tuple[float, int] | None:
    """``none`` -> ``None``; ``top:P`` -> ``(P, 1)``; ``windows:P[:MIN_RUN]`` -> ``(P, MIN_RUN)``
    (default ``MIN_RUN`` 3)."""
    text = spec.strip().lower()
    if text == "none":
        return None
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind == "top" and len(parts) == 1:
            percent, min_run = float(parts[0]), 1
        elif kind == "windows" and len(parts) in (1, 2):
            percent = float(parts[0])
            min_run = int(parts[1]) if len(parts) == 2 else 3
        else:
            raise ValueError(spec)
    except ValueError:
        raise InputError(
            f"--threshold for sequences must be none, top:P or windows:P[:MIN_RUN], got {spec!r}"
        ) from None
    if not 0 < percent <= 100 or min_run < 1:
        raise InputError(f"--threshold {spec!r}: need 0 < P <= 100 and MIN_RUN >= 1")
    return percent, min_run


def _load_series(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(N, T, F)`` float32 and the ``(N, T)`` mask (``None`` when nothing is padded)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read a .npy array ({error})") from None
    if array.dtype.kind not in "fiu":
        raise InputError(f"{path}: holds {array.dtype} values, not numbers")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or 0 in array.shape:
        raise InputError(
            f"{path}: must hold one sequence (T, F) or a batch (N, T, F), got shape {array.shape}"
        )
    values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    missing = torch.isnan(values).all(dim=2)  # (N, T): padding rows
    valid = ~missing
    lengths = valid.sum(dim=1)
    prefix = torch.arange(values.shape[1])[None, :] < lengths[:, None]
    if not torch.equal(valid, prefix) or bool((lengths == 0).any()):
        raise InputError(
            f"{path}: all-NaN rows (padding) must come last, and each sequence needs a step"
        )
    values = torch.where(valid[:, :, None], values, 0.0)
    if not bool(torch.isfinite(values).all()):
        raise InputError(f"{path}: NaN or infinite values inside a sequence")
    return values, (None if bool(valid.all()) else valid)


def _windows_text(kept: torch.Tensor) -> str:
    steps = kept.to(torch.int8).tolist()
    runs, start = [], None
    for t, value in enumerate([*steps, 0]):
        if value and start is None:
            start = t
        elif not value and start is not None:
            runs.append(f"{start}-{t - 1}")
            start = None
    return ";".join(runs)


def explain_series(
    inputs: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    method: str | None,
    layer: str | None,
    threshold_spec: str | None,
    target: int | None,
    batch_size: int,
    out_dir: Path,
    overwrite: bool,
) -> None:
    """Explain ``.npy`` series with a recurrent method; see the module docstring."""
    from tqdm import tqdm

    from leanxai import threshold
    from leanxai.core.models import load_model
    from leanxai.explainers import registry
    from leanxai.io import atomic_save_npy, atomic_write_bytes, atomic_write_text, check_writable
    from leanxai.viz.sequences import sequence_figure

    try:
        name = registry.get(method or registry.default_method("recurrent"), "recurrent")
        if name.output != "time x feature map":
            raise InputError(
                f"method {name.name!r} ranks features over a data set; for per-sequence maps "
                f"choose from {', '.join(registry.names('recurrent', 'time x feature map'))}"
            )
        windows = parse_windows(DEFAULT_WINDOWS if threshold_spec is None else threshold_spec)
        if layer is not None and name.name != "deepactif_map":
            raise InputError(f"--layer applies to deepactif_map, not {name.name}")
    except LeanXAIError as error:
        fail(error)
    files = [Path(p) for p in inputs]
    loaded_series: list[tuple[Path, str, torch.Tensor, torch.Tensor | None]] = []
    failed: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    for path, stem in zip(files, output_names(files), strict=True):
        if not path.is_file():
            failed.append((str(path), "no such file"))
            rows.append({"file": str(path), "status": "skipped: no such file"})
            continue
        try:
            x, mask = _load_series(path)
        except InputError as error:
            failed.append((str(path), str(error)))
            rows.append({"file": str(path), "status": f"skipped: {error}"})
            continue
        loaded_series.append((path, stem, x, mask))
    planned = [out_dir / "summary.csv"]
    for _, stem, x, _ in loaded_series:
        for i in range(x.shape[0]):
            label = stem if x.shape[0] == 1 else f"{stem}-{i}"
            planned += [out_dir / f"{label}.npy", out_dir / f"{label}.png"]
    try:
        check_writable(planned, overwrite)
        model = load_model(model_spec, weights).model
        explainer = registry.create(
            name.name, model, "recurrent", options={"layer": layer} if layer else None
        )
    except LeanXAIError as error:
        fail(error)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create output folder {str(out_dir)!r}: {error.strerror or error}")
    for path, stem, x, mask in tqdm(loaded_series, desc="explaining", unit="file", disable=None):
        for begin in range(0, x.shape[0], batch_size):
            part = slice(begin, begin + batch_size)
            start = time.perf_counter()
            try:
                explanation = explainer.explain(
                    x[part], target, mask=None if mask is None else mask[part]
                )
            except LeanXAIError as error:
                failed.append((str(path), str(error)))
                rows.append({"file": str(path), "status": f"skipped: {error}"})
                break
            except Exception as error:
                text = str(error).strip()
                first = text.splitlines()[0] if text else type(error).__name__
                fail(f"the model failed on {path} (shape {tuple(x.shape)}): {first}")
            seconds = (time.perf_counter() - start) / len(explanation)
            kept = (
                None
                if windows is None
                else threshold.temporal_windows(
                    explanation.time_map.float(), windows[0], windows[1], mask=explanation.mask
                )
            )
            for j in range(len(explanation)):
                index = begin + j
                label = stem if x.shape[0] == 1 else f"{stem}-{index}"
                steps = int(explanation.mask[j].sum())
                attribution = explanation.attribution[j, :steps].float()
                atomic_save_npy(out_dir / f"{label}.npy", attribution, overwrite=overwrite)
                png = sequence_figure(
                    x[index, :steps],
                    explanation.heatmap[j, :steps],
                    None if kept is None else kept[j, :steps],
                    title=f"{path.name}[{index}]: class {int(explanation.target[j])}, {name.name}",
                )
                atomic_write_bytes(out_dir / f"{label}.png", png, overwrite=overwrite)
                rows.append(
                    {
                        "file": str(path),
                        "sequence": index,
                        "steps": steps,
                        "class": int(explanation.target[j]),
                        "score": f"{float(explanation.probabilities[j]):.6f}",
                        "windows": "" if kept is None else _windows_text(kept[j, :steps]),
                        "time_s": f"{seconds:.6f}",
                        "method": name.name,
                        "map": f"{label}.npy",
                        "plot": f"{label}.png",
                        "status": "ok",
                    }
                )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "summary.csv", buffer.getvalue(), overwrite=overwrite)
    done = sum(row["status"] == "ok" for row in rows)
    click.echo(
        f"explained {done} sequences from {len(files)} files; wrote {out_dir / 'summary.csv'}"
    )
    for path_text, reason in failed:
        message = reason if reason.startswith(path_text) else f"{path_text}: {reason}"
        click.echo(f"skipped {message}", err=True)
    if failed:
        sys.exit(EXIT_PARTIAL)
