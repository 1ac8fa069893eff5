"""A sequence and its explanation in one figure: the series on top, the time x feature map below,
the kept windows shaded in both.

PNG bytes, from plain arrays or tensors; matplotlib on the non-interactive Agg canvas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from leanxai.core.errors import InputError
from leanxai.viz.plots import _png

__all__ = ["sequence_figure"]

ArrayLike = np.ndarray | torch.Tensor


def _array(value: ArrayLike, name: str, dims: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != dims:
        raise InputError(f"{name} must have {dims} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name} must be finite")
    return array


def _runs(kept: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of true values."""
    edges = np.diff(np.concatenate([[0], kept.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def sequence_figure(
    series: ArrayLike,
    heatmap: ArrayLike,
    kept: ArrayLike | None = None,
    *,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "magma",
) -> bytes:
    """The series ``(T, F)`` plotted over time, its time x feature ``heatmap`` ``(T, F)`` under it
    (features as rows), and the steps of ``kept`` ``(T,)`` (e.g. from
    :func:`leanxai.threshold.temporal_windows`) shaded in both panels.

    Returns
    -------
    bytes
        The PNG file's contents.
    """
    values = _array(series, "series", 2)
    scores = _array(heatmap, "heatmap", 2)
    if values.shape != scores.shape:
        raise InputError(
            f"series {values.shape} and heatmap {scores.shape} must have the same (T, F) shape"
        )
    steps, features = values.shape
    windows: list[tuple[int, int]] = []
    if kept is not None:
        mask = _array(kept, "kept", 1) > 0
        if mask.shape[0] != steps:
            raise InputError(f"kept must have T = {steps} steps, got {mask.shape[0]}")
        windows = _runs(mask)
    names = list(feature_names) if feature_names is not None else [f"x{f}" for f in range(features)]
    if len(names) != features:
        raise InputError(f"feature_names must name {features} features, got {len(names)}")
    figure = Figure(figsize=(8, 2.2 + 0.22 * features))
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, max(1.0, 0.25 * features)]}
    )
    time = np.arange(steps)
    for f in range(features):
        top.plot(time, values[:, f], linewidth=0.9, label=names[f])
    if features <= 10:
        top.legend(loc="upper right", fontsize=6, ncol=min(features, 5))
    top.set_ylabel("value")
    if title:
        top.set_title(title, fontsize=9)
    image = bottom.imshow(
        scores.T,
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
        extent=(-0.5, steps - 0.5, features - 0.5, -0.5),
    )
    bottom.set_yticks(range(features))
    bottom.set_yticklabels(names, fontsize=6)
    bottom.set_xlabel("time step")
    figure.colorbar(image, ax=bottom, fraction=0.03, pad=0.01)
    for start, end in windows:
        top.axvspan(start - 0.5, end - 0.5, color="tab:cyan", alpha=0.2, linewidth=0)
        bottom.axvspan(start - 0.5, end - 0.5, fill=False, edgecolor="tab:cyan", linewidth=1.2)
    return _png(figure)
