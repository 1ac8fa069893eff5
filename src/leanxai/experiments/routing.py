"""The built-in routing system: the zoo's tiers, a router trained on their real behaviour.

The router never learns from data the tiers were trained on (there, every tier is right and the
labels would all say TINY). Each data set has a *router* split the tiers never saw and a *test*
split that neither the tiers nor the router saw:

- ``"shapes"``: 12,000 fresh mixed-difficulty images for the router and 8,000 more for the test
  (drawn from seeds the tiers' training and held-out images do not use; the tiers' own 900
  held-out images were the test until routing version 3, too few to tell half a point apart);
- ``"mnist"``: the 1,000 held-out digits of MNIST-5k (corrupted), the first 500 for the router
  and the last 500 for the test (MNIST-5k has no more digits the tiers did not train on).

:func:`load_routing` trains the tiers (cached, :func:`~leanxai.zoo.tiers.load_tiers`), then the
router on the router split with its operating point chosen by cross-validation on that split
(:func:`~leanxai.experiments.routing_evaluation.choose_operating_point`) and the confidence
cascade's thresholds chosen on the same split
(:func:`~leanxai.experiments.routing_evaluation.choose_cascade`), and caches the
router as its training data (:func:`~leanxai.route.router.save_router`, no pickle).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from leanxai.core.errors import InputError
from leanxai.experiments.routing_evaluation import (
    TierOutputs,
    choose_cascade,
    choose_operating_point,
    collect_outputs,
)
from leanxai.route.routed import RoutedClassifier
from leanxai.route.router import TierRouter, load_router, read_router_file, save_router

__all__ = [
    "DATASETS",
    "Routing",
    "evaluate_routing",
    "load_routing",
    "routing_split",
    "train_router",
]

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mnist", "shapes")
"""Data sets with built-in tiers; the first is the default."""

ROUTER_VERSION = "v3"
_ROUTER_SEED_OFFSET = 2_000_003
_TEST_SEED_OFFSET = 4_000_037
_SHAPES_ROUTER_N = 12_000
_SHAPES_TEST_N = 8_000


@dataclass
class Routing:
    """Tiers, a fitted router and its operating point.

    Attributes
    ----------
    dataset
        The data set the tiers were trained on.
    tiers
        TINY (the probe) to HEAVY, in eval mode.
    router
        Fitted, with ``tau`` at the operating point.
    escalate
        The escalating operating point's thresholds (one per tier but the last), or ``None``.
    escalate_tau
        The router's ``tau`` at that operating point (``router.tau`` is the best ``tau``
        without escalation).
    classes
        Class names.
    input_size
        ``[C, H, W]`` the tiers take.
    cascade
        The confidence cascade's thresholds chosen on the same router split (the baseline).
    metadata
        How the router was trained (split sizes, cross-validated operating point).
    training_features, training_labels
        ``(N, 7)`` and ``(N,)``: what the router was fitted on; the SHAP background and the
        tiers' typical profiles come from them.
    """

    dataset: str
    tiers: list[nn.Module]
    router: TierRouter
    escalate: tuple[float, ...] | None
    escalate_tau: float | None
    classes: tuple[str, ...]
    input_size: list[int]
    cascade: tuple[float, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    training_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    training_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def profiles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(profiles (T, 7), low (7,), high (7,))`` for the radar chart: each tier's median
        training features (NaN rows for a tier no training input needed) and the 5th and 95th
        percentiles of all of them."""
        features, labels = self.training_features, self.training_labels
        rows = [
            np.median(features[labels == t], 0)
            if (labels == t).any()
            else np.full(features.shape[1], np.nan)
            for t in range(self.router.n_tiers)
        ]
        low, high = np.percentile(features, [5, 95], axis=0)
        return np.stack(rows), low, high

    def classifier(self, *, escalate: bool = True) -> RoutedClassifier:
        """The routed classifier at the operating point (with escalation unless turned off)."""
        if escalate and self.escalate is not None:
            return RoutedClassifier(
                self.tiers[0],
                self.tiers[1:],
                self.router,
                tau=self.escalate_tau,
                escalate=self.escalate,
            )
        return RoutedClassifier(self.tiers[0], self.tiers[1:], self.router)


def routing_split(dataset: str) -> tuple[Any, Any]:
    """``(router_data, test_data)`` as :class:`~leanxai.zoo.tiers.TierData`; see the module."""
    from leanxai.zoo.tiers import mixed_shapes, tier_data

    if dataset not in DATASETS:
        raise InputError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "shapes":
        router_data = mixed_shapes(_SHAPES_ROUTER_N, _ROUTER_SEED_OFFSET, size=64)
        return router_data, mixed_shapes(_SHAPES_TEST_N, _TEST_SEED_OFFSET, size=64)
    held_out = tier_data(dataset, "held_out")
    half = len(held_out) // 2
    return held_out.subset(np.arange(half)), held_out.subset(np.arange(half, len(held_out)))


def train_router(
    outputs: TierOutputs, *, max_drop: float = 0.0025, seed: int = 0
) -> tuple[TierRouter, tuple[float, ...] | None, dict[str, Any]]:
    """Fit a router on ``outputs`` and choose its operating point there, and the cascade's
    thresholds the same way; see
    :func:`~leanxai.experiments.routing_evaluation.choose_operating_point`.

    Returns ``(router, escalate, metadata)``; ``metadata["cascade"]`` holds the cascade's
    thresholds."""
    router = TierRouter(random_state=seed, n_tiers=outputs.probabilities.shape[1])
    tau, _ = choose_operating_point(router, outputs, max_drop=max_drop, seed=seed, escalate=False)
    escalate_tau, escalate = choose_operating_point(router, outputs, max_drop=max_drop, seed=seed)
    cascade = choose_cascade(outputs, max_drop=max_drop)
    router.set_params(tau=tau)
    router.fit(outputs.features, outputs.oracle_tiers)
    return (
        router,
        escalate,
        {
            "tau": tau,
            "escalate_tau": escalate_tau,
            "escalate": None if escalate is None else list(escalate),
            "cascade": list(cascade),
            "max_drop": max_drop,
            "n_router": len(outputs),
            "label_counts": np.bincount(outputs.oracle_tiers, minlength=router.n_tiers).tolist(),
        },
    )


def load_routing(
    dataset: str = DATASETS[0],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    retrain: bool = False,
) -> Routing:
    """The built-in tiers and router of ``dataset``, trained once and cached.

    Parameters
    ----------
    dataset : {"mnist", "shapes"}
        Which tiers.
    cache_dir
        Cache directory (default ``$LEANXAI_CACHE`` or ``~/.cache/leanxai``).
    progress
        Show progress bars while training.
    retrain
        Retrain the router (the tiers stay cached).
    """
    from leanxai.zoo.tiers import TIERS, load_tiers, tier_version
    from leanxai.zoo.train import cache_directory

    if dataset not in DATASETS:
        raise InputError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    loaded = load_tiers(dataset, cache_dir, progress=progress)
    tiers: list[nn.Module] = [model for model, _ in loaded.values()]
    first = next(iter(loaded.values()))[1]
    # The router is trained on the tiers' behaviour: a retrained tier makes a new cache file.
    tiers_key = "".join(tier_version(dataset, tier) for tier in TIERS)
    name = f"router_{dataset}-{ROUTER_VERSION}-{tiers_key}.safetensors"
    path = cache_directory(cache_dir) / name
    router: TierRouter | None = None
    metadata: dict[str, Any] = {}
    if path.exists() and not retrain:
        try:
            router, metadata = load_router(path)
            features, labels, _, _ = read_router_file(path)
        except (ValueError, OSError) as error:
            logger.warning("router cache %s is unreadable (%s); retraining", path, error)
            router = None
    if router is None:
        router_data, _ = routing_split(dataset)
        outputs = collect_outputs(tiers, router_data.images, router_data.labels, progress=progress)
        router, escalate, metadata = train_router(outputs)
        metadata = {**metadata, "dataset": dataset}
        features, labels = outputs.features, outputs.oracle_tiers
        try:
            save_router(
                router,
                path,
                outputs.features,
                outputs.oracle_tiers,
                metadata=metadata,
                overwrite=True,
            )
        except OSError as error:
            logger.warning("could not write the router cache %s: %s", path, error)
    escalate = metadata.get("escalate")
    escalate_tau = metadata.get("escalate_tau")
    cascade = metadata.get("cascade")
    return Routing(
        dataset=dataset,
        tiers=tiers,
        router=router,
        escalate=None if escalate is None else tuple(float(v) for v in escalate),
        escalate_tau=None if escalate_tau is None else float(escalate_tau),
        classes=tuple(first["classes"]),
        input_size=list(first["input_size"]),
        cascade=None if cascade is None else tuple(float(v) for v in cascade),
        metadata=metadata,
        training_features=np.asarray(features, dtype=np.float64),
        training_labels=np.asarray(labels, dtype=np.int64),
    )


def _tiny_suffices_auc(router: TierRouter, outputs: TierOutputs) -> dict[str, float] | None:
    """How well the router's seven features and the probe's own top softmax probability each
    tell, on the test split, whether TINY suffices (ROC AUC; ``None`` when one class only)."""
    from sklearn.metrics import roc_auc_score

    suffices = outputs.oracle_tiers == 0
    if suffices.all() or not suffices.any():
        return None
    return {
        "router": float(roc_auc_score(suffices, router.sufficiency(outputs.features)[:, 0])),
        "probe_confidence": float(roc_auc_score(suffices, outputs.probabilities[:, 0].max(1))),
    }


def evaluate_routing(
    routing: Routing,
    *,
    latency: bool = True,
    latency_items: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Every policy on the test split of ``routing.dataset``; see
    :mod:`leanxai.experiments.routing_evaluation`.

    Returns a JSON-serialisable dict: ``dataset``, ``n``, ``tiny_suffices_auc`` (how well the
    router and, alone, the probe's top softmax probability tell whether TINY suffices: ROC AUC),
    ``tau``, ``escalate``, ``cascade``, ``policies``
    (one object per policy at its operating point: ``name``, ``accuracy``, ``mean_flops``
    (probe included), ``relative_flops``, ``latency_ms_b1``, ``latency_ms_b32``, ``tier_mix``,
    ``routing_accuracy``), and ``curves`` (the router's ``tau`` sweep and the Pareto fronts of the
    escalating router's and the cascade's thresholds, found on the test split). The cascade
    appears twice more: at the cheapest point of its front that matches the router's accuracy,
    and the escalating router's (an optimistic baseline: its thresholds are picked on the test
    data).
    """
    from leanxai.experiments.routing_evaluation import (
        evaluate_policies,
        matched_accuracy,
        measure_latency,
        pipelines,
    )
    from leanxai.route.routed import ConfidenceCascade

    _, test = routing_split(routing.dataset)
    outputs = collect_outputs(routing.tiers, test.images, test.labels, progress=progress)
    results = evaluate_policies(
        routing.router,
        outputs,
        tau=routing.router.tau,
        escalate=routing.escalate,
        escalate_tau=routing.escalate_tau,
        cascade=routing.cascade,
    )
    rows = [r for r in results if not r.extra.get("curve")]
    by_name = {r.name: r for r in rows}
    for source in ("router", "router+escalate"):
        if source not in by_name:
            continue
        match = matched_accuracy(results, "cascade", by_name[source].accuracy)
        if match is not None:
            copy = type(match)(**{**match.to_dict(), "extra": dict(match.extra)})
            copy.name = f"cascade matched to {source}"
            copy.extra = {"matched_to": source, "threshold": match.parameter}
            rows.append(copy)
    if latency:
        runs = pipelines(
            routing.tiers,
            routing.router,
            tau=float(routing.router.tau),
            escalate=routing.escalate,
            escalate_tau=routing.escalate_tau,
            cascade_threshold=routing.cascade,
        )
        for row in rows:
            if row.policy == "cascade" and row.name not in runs and row.parameter is not None:
                runs[row.name] = ConfidenceCascade(routing.tiers, row.parameter).predict
        times = measure_latency(runs, test.images, max_items=latency_items)
        for row in rows:
            if row.name in times:
                row.latency_ms_b1 = times[row.name][1]
                row.latency_ms_b32 = times[row.name][32]
    return {
        "dataset": routing.dataset,
        "n": len(outputs),
        "tiny_suffices_auc": _tiny_suffices_auc(routing.router, outputs),
        "tau": float(routing.router.tau),
        "escalate": None if routing.escalate is None else list(routing.escalate),
        "escalate_tau": routing.escalate_tau,
        "cascade": None if routing.cascade is None else list(routing.cascade),
        "tier_flops": outputs.tier_flops.tolist(),
        "probe_flops": outputs.probe_flops,
        "policies": [r.to_dict() for r in rows],
        "curves": [r.to_dict() for r in results if r.extra.get("curve")],
        "router_training": routing.metadata,
    }
