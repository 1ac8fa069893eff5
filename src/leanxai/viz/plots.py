"""Benchmark plots as PNG bytes: precision-recall curves, cost bars, deletion/insertion curves.

Every function takes plain arrays and returns the PNG's bytes, so callers decide where (and
whether) to write them. matplotlib runs on the non-interactive Agg canvas; nothing global is
changed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["cost_bars", "faithfulness_curves", "pr_curves"]

_DPI = 100


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _grid(count: int, columns: int = 4) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def pr_curves(
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    title: str = "",
) -> bytes:
    """One panel per method, one mean precision-recall curve per threshold.

    Parameters
    ----------
    curves
        ``{method: {threshold: (recall (R,), precision (R,))}}``.
    title
        Figure title.
    """
    methods = list(curves)
    rows, columns = _grid(max(1, len(methods)))
    figure = Figure(figsize=(3.2 * columns, 2.9 * rows))
    for i, method in enumerate(methods):
        axes = figure.add_subplot(rows, columns, i + 1)
        for label, (recall, precision) in curves[method].items():
            axes.plot(recall, precision, label=label, linewidth=1.2)
        axes.set_title(method, fontsize=9)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall", fontsize=8)
        axes.set_ylabel("precision", fontsize=8)
        axes.tick_params(labelsize=7)
        if i == 0:
            axes.legend(fontsize=6, loc="upper right")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _png(figure)


def cost_bars(
    methods: Sequence[str],
    seconds: Sequence[float],
    megabytes: Sequence[float],
    title: str = "",
) -> bytes:
    """Time per image and peak memory per method, side by side, time on a log scale."""
    figure = Figure(figsize=(10, 3.2))
    positions = np.arange(len(methods))
    time_axes = figure.add_subplot(1, 2, 1)
    time_axes.bar(positions, [s * 1e3 for s in seconds], color="#4c72b0")
    time_axes.set_yscale("log")
    time_axes.set_ylabel("ms per image (log)", fontsize=8)
    memory_axes = figure.add_subplot(1, 2, 2)
    memory_axes.bar(positions, megabytes, color="#dd8452")
    memory_axes.set_ylabel("peak RSS growth, MB", fontsize=8)
    for axes in (time_axes, memory_axes):
        axes.set_xticks(positions)
        axes.set_xticklabels(methods, rotation=40, ha="right", fontsize=7)
        axes.tick_params(axis="y", labelsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _png(figure)


def faithfulness_curves(
    deletion: Mapping[str, tuple[np.ndarray, np.ndarray]],
    insertion: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "",
) -> bytes:
    """Mean deletion and insertion curves, one line per method.

    Parameters
    ----------
    deletion, insertion
        ``{method: (fractions (S+1,), mean probability (S+1,))}``.
    """
    figure = Figure(figsize=(10, 3.4))
    for i, (name, curves) in enumerate((("deletion", deletion), ("insertion", insertion))):
        axes = figure.add_subplot(1, 2, i + 1)
        for method, (fractions, probability) in curves.items():
            axes.plot(fractions, probability, label=method, linewidth=1.2)
        axes.set_title(f"{name} (area: {'lower' if i == 0 else 'higher'} is better)", fontsize=9)
        axes.set_xlabel(f"fraction of pixels {'removed' if i == 0 else 'inserted'}", fontsize=8)
        axes.set_ylabel("probability of the class", fontsize=8)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.tick_params(labelsize=7)
        if i == 1:
            axes.legend(fontsize=6, loc="lower right")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _png(figure)
