"""Why a routing decision: SHAP values of the router's output, and a radar chart of the features.

The quantity explained is the router's *expected tier*, ``sum_t t * P(smallest sufficient tier =
t)``: one number per input that grows when the input looks harder, so a positive SHAP value pushes
toward a heavier tier. SHAP values are exact Shapley values (shap's ``Exact`` explainer; seven
features make 128 coalitions) against an independent masker over background features, and are
checked for additivity: ``base_value + sum(values) == expected tier`` for every decision.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from leanxai.core.errors import InputError
from leanxai.route.features import FEATURE_NAMES
from leanxai.route.router import TIERS, TierRouter

__all__ = ["DecisionSHAP", "expected_tier", "explain_decisions", "radar_chart", "shap_bar_chart"]


@dataclass(frozen=True)
class DecisionSHAP:
    """SHAP values of the expected tier.

    Attributes
    ----------
    values
        ``(N, F)`` one value per feature and decision; positive pushes toward a heavier tier.
    base_value
        The expected tier averaged over the background.
    output
        ``(N,)`` the router's expected tier for each input: ``base_value + values.sum(1)``.
    names
        Feature names.
    """

    values: np.ndarray
    base_value: float
    output: np.ndarray
    names: tuple[str, ...]


def expected_tier(router: TierRouter, X: Any) -> np.ndarray:
    """``(N,)`` the router's expected smallest sufficient tier, ``sum_t t * P(t)``."""
    proba = router.predict_proba(X)
    return proba @ np.arange(proba.shape[1], dtype=np.float64)


def explain_decisions(
    router: TierRouter,
    X: Any,
    background: Any,
    max_background: int = 100,
    seed: int = 0,
    names: Sequence[str] = FEATURE_NAMES,
) -> DecisionSHAP:
    """Exact SHAP values of :func:`expected_tier` for each row of ``X``.

    Parameters
    ----------
    router
        A fitted :class:`TierRouter`.
    X
        ``(N, F)`` features of the decisions to explain.
    background
        ``(M, F)`` features of typical inputs (training features); at most ``max_background``
        rows, drawn with ``seed``, are used.

    Raises
    ------
    RuntimeError
        If the values do not add up to the router's output (they always should).
    """
    import shap

    features = np.asarray(X, dtype=np.float64)
    reference = np.asarray(background, dtype=np.float64)
    if reference.ndim != 2 or reference.shape[1] != features.shape[1]:
        raise InputError(
            f"background must have shape (M, {features.shape[1]}), got {reference.shape}"
        )
    if len(reference) > max_background:
        rows = np.random.default_rng(seed).choice(len(reference), max_background, replace=False)
        reference = reference[np.sort(rows)]
    masker = shap.maskers.Independent(reference, max_samples=len(reference))
    explainer = shap.explainers.Exact(lambda data: expected_tier(router, data), masker)
    explained = explainer(features)
    values = np.asarray(explained.values, dtype=np.float64)
    base = np.asarray(explained.base_values, dtype=np.float64).reshape(-1)
    output = expected_tier(router, features)
    if not np.allclose(base + values.sum(axis=1), output, atol=1e-6):
        worst = float(np.abs(base + values.sum(axis=1) - output).max())
        raise RuntimeError(f"SHAP values do not add up to the router's output (off by {worst})")
    return DecisionSHAP(values, float(base[0]), output, tuple(names))


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def shap_bar_chart(
    values: np.ndarray, names: Sequence[str] = FEATURE_NAMES, title: str = ""
) -> bytes:
    """Horizontal bars of one decision's SHAP values (red: toward a heavier tier)."""
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(np.abs(values))
    figure = Figure(figsize=(5.5, 3.2))
    axes = figure.add_subplot(1, 1, 1)
    colours = ["#c44e52" if v > 0 else "#4c72b0" for v in values[order]]
    axes.barh(np.arange(len(values)), values[order], color=colours)
    axes.set_yticks(np.arange(len(values)))
    axes.set_yticklabels([names[i] for i in order], fontsize=8)
    axes.axvline(0, color="#333", linewidth=0.8)
    axes.set_xlabel("SHAP value (+: toward a heavier tier)", fontsize=8)
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return _png(figure)


def radar_chart(
    features: np.ndarray,
    profiles: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    names: Sequence[str] = FEATURE_NAMES,
    tiers: Sequence[str] = TIERS,
    title: str = "",
) -> bytes:
    """One input's features against each tier's typical profile, scaled to ``[0, 1]``.

    Parameters
    ----------
    features
        ``(F,)`` the input's features.
    profiles
        ``(T, F)`` each tier's typical features (e.g. the median over training inputs labelled
        with that tier); rows of NaN (a tier with no training input) are skipped.
    low, high
        ``(F,)`` the range used for scaling (e.g. the 5th and 95th percentiles of the training
        features); values outside are clipped.
    """
    from matplotlib.figure import Figure

    span = np.where(high > low, high - low, 1.0)

    def scale(row: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(row, dtype=np.float64) - low) / span, 0.0, 1.0)

    angles = np.linspace(0, 2 * np.pi, len(names), endpoint=False)
    closed = np.append(angles, angles[0])
    figure = Figure(figsize=(4.8, 4.8))
    axes = figure.add_subplot(1, 1, 1, projection="polar")
    for tier, profile in zip(tiers, profiles, strict=False):
        if np.isnan(profile).any():
            continue
        axes.plot(closed, np.append(scale(profile), scale(profile)[0]), linewidth=1, label=tier)
    mine = scale(features)
    axes.plot(closed, np.append(mine, mine[0]), color="black", linewidth=2, label="this input")
    axes.fill(closed, np.append(mine, mine[0]), color="black", alpha=0.1)
    axes.set_xticks(angles)
    axes.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=7)
    axes.set_yticklabels([])
    axes.set_ylim(0, 1)
    axes.legend(fontsize=6, loc="upper right", bbox_to_anchor=(1.3, 1.1))
    if title:
        axes.set_title(title, fontsize=9)
    return _png(figure)
