"""Routing policies measured on held-out data: accuracy against every FLOP spent.

Every tier runs once on every input (:func:`collect_outputs`); a policy is then a rule that says
which tiers run on which input, so its accuracy and FLOPs follow exactly from those outputs
(:func:`simulate`), the same numbers :class:`~leanxai.route.routed.RoutedClassifier` and
:class:`~leanxai.route.routed.ConfidenceCascade` produce when they run (a test checks this).
FLOPs per input are constant per tier for these networks, so the mean is exact. Latency is not
simulated: :func:`measure_latency` times the real pipelines.

Policies (:func:`evaluate_policies`):

- ``always-<TIER>``: every input on one tier, no probe.
- ``oracle``: the probe, then the smallest tier that is right (HEAVY when none is): the ceiling of
  any router that reads the probe.
- ``router``: the probe's explanation, the router's tier at ``tau``, that tier.
- ``router+escalate``: the same, then escalation from the routed tier while the top softmax
  probability is below that tier's threshold (what the confidence cascade knows).
- ``cascade``: TINY for everyone, escalating tier by tier while unsure, paying for each model run;
  its per-tier thresholds are chosen on the router split exactly as the router's are.
- ``random``: the router's tier mix at its operating point, drawn at random per input, probe paid.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from leanxai.core.errors import InputError
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.route.features import FeatureExtractor
from leanxai.route.routed import (
    ConfidenceCascade,
    Escalation,
    RoutedClassifier,
    check_escalate,
    count_flops,
)
from leanxai.route.router import TIERS, TierRouter, smallest_correct_tier

__all__ = [
    "PolicyResult",
    "TierOutputs",
    "choose_cascade",
    "choose_operating_point",
    "collect_outputs",
    "evaluate_policies",
    "matched_accuracy",
    "measure_latency",
    "simulate",
]

logger = logging.getLogger(__name__)

TAUS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0.0, 1.0, 41), 3))
"""The router's operating points swept for the accuracy-FLOPs curve."""

THRESHOLDS: tuple[float, ...] = tuple(
    float(t)
    for t in np.round(np.concatenate([np.linspace(0.0, 0.9, 19), 1 - np.logspace(-1.3, -4, 12)]), 5)
)
"""The cascade's (and escalation's) top-probability thresholds swept, one for every tier."""

STAGE_THRESHOLDS: tuple[float, ...] = (
    0.0,
    0.5,
    0.6,
    0.7,
    0.8,
    0.85,
    0.9,
    0.93,
    0.95,
    0.97,
    0.99,
    1.0,
)
"""The values each tier's own threshold takes in the per-tier search (every combination)."""


@dataclass(frozen=True)
class TierOutputs:
    """What every tier says about every input, and what each costs.

    Attributes
    ----------
    probabilities
        ``(N, T, K)`` softmax of each tier's logits.
    labels
        ``(N,)`` true classes.
    features
        ``(N, 7)`` the probe's complexity features.
    tier_flops
        ``(T,)`` forward FLOPs per input of each tier.
    probe_flops
        FLOPs per input of the probe's explanation (its forward pass, plus a backward from the
        CAM layer if the probe needs one).
    """

    probabilities: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    tier_flops: np.ndarray
    probe_flops: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> np.ndarray:
        """``(N, T)`` whether each tier is right on each input."""
        return self.probabilities.argmax(2) == self.labels[:, None]

    @property
    def oracle_tiers(self) -> np.ndarray:
        """``(N,)`` the smallest correct tier, the last when none is: the router's labels."""
        return smallest_correct_tier(self.correct)

    def subset(self, index: np.ndarray) -> TierOutputs:
        """The rows at ``index``."""
        return TierOutputs(
            self.probabilities[index],
            self.labels[index],
            self.features[index],
            self.tier_flops,
            self.probe_flops,
        )


def collect_outputs(
    tiers: Sequence[nn.Module],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 128,
    progress: bool = False,
) -> TierOutputs:
    """Run the probe's explanation and every tier on every input.

    Parameters
    ----------
    tiers
        All tiers, smallest first; ``tiers[0]`` is the probe.
    inputs
        ``(N, C, H, W)``.
    labels
        ``(N,)`` true classes.
    batch_size
        Inputs per forward pass.
    progress
        Show a progress bar.
    """
    if len(tiers) < 2:
        raise InputError(f"tiers must hold the probe and at least one more model, got {len(tiers)}")
    if inputs.shape[0] != labels.shape[0] or inputs.shape[0] == 0:
        raise InputError(
            f"inputs and labels must hold the same non-zero number of items, got "
            f"{tuple(inputs.shape)} and {tuple(labels.shape)}"
        )
    extractor = FeatureExtractor(tiers[0])
    features, probabilities = [], []
    starts = range(0, inputs.shape[0], batch_size)
    for start in tqdm(starts, desc="tiers", unit="batch", disable=not progress):
        batch = inputs[start : start + batch_size]
        found, _ = extractor.extract(batch)
        features.append(found.double().cpu().numpy())
        row = []
        for model in tiers:
            with eval_mode(model), torch.no_grad():
                row.append(torch.softmax(logits_of(model(batch)).float(), 1).cpu().numpy())
        probabilities.append(np.stack(row, 1))
    sample = inputs[:1]
    with FlopCounterMode(display=False) as counter:
        extractor.extract(sample)
    return TierOutputs(
        probabilities=np.concatenate(probabilities),
        labels=labels.cpu().numpy().astype(np.int64),
        features=np.concatenate(features),
        tier_flops=np.array([count_flops(model, sample) for model in tiers], dtype=np.int64),
        probe_flops=int(counter.get_total_flops()),
    )


def simulate(
    outputs: TierOutputs,
    start: np.ndarray,
    *,
    escalate: Escalation | None = None,
    probe: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a policy predicts and spends, from the tiers' outputs.

    Parameters
    ----------
    outputs
        From :func:`collect_outputs`.
    start
        ``(N,)`` the first tier each input runs on.
    escalate
        Move on to the next tier while the top probability is below the threshold: one number
        for every tier, or one per tier but the last (``None``: never).
    probe
        Whether the probe's explanation ran first (its FLOPs are paid, and tier 0's prediction
        comes with it at no further cost).

    Returns
    -------
    prediction, final_tier, flops
        ``(N,)`` each.
    """
    n, n_tiers, _ = outputs.probabilities.shape
    thresholds = check_escalate(escalate, n_tiers)
    stage = np.asarray(start, dtype=np.int64).copy()
    rows = np.arange(n)
    flops = np.full(n, outputs.probe_flops if probe else 0, dtype=np.int64)
    # The start tier is paid for, except tier 0 after the probe: its prediction came with it.
    flops += np.where((stage == 0) & probe, 0, outputs.tier_flops[stage])
    if thresholds is not None:
        # The last tier never escalates: a threshold of -1 is never cleared from below.
        per_tier = np.array([*thresholds, -1.0])
        top = outputs.probabilities.max(2)
        for _ in range(n_tiers - 1):
            move = top[rows, stage] < per_tier[stage]
            if not move.any():
                break
            stage = np.where(move, stage + 1, stage)
            flops += np.where(move, outputs.tier_flops[stage], 0)
    prediction = outputs.probabilities[rows, stage].argmax(1)
    return prediction, stage, flops


def _grid(n_tiers: int) -> list[tuple[float, ...]]:
    """Every per-tier threshold combination of :data:`STAGE_THRESHOLDS`, and every single
    threshold of :data:`THRESHOLDS` for all tiers alike."""
    combos = set(itertools.product(STAGE_THRESHOLDS, repeat=n_tiers - 1))
    combos.update((t,) * (n_tiers - 1) for t in THRESHOLDS)
    return sorted(combos)


def _sweep(
    outputs: TierOutputs, start: np.ndarray, *, probe: bool, chunk: int = 64
) -> list[tuple[float, float, tuple[float, ...]]]:
    """``(accuracy, mean FLOPs, thresholds)`` for every escalation of :func:`_grid` from
    ``start``: :func:`simulate` for many thresholds at once (a test checks they agree)."""
    n, n_tiers, _ = outputs.probabilities.shape
    combos = _grid(n_tiers)
    start = np.asarray(start, dtype=np.int64)
    top = outputs.probabilities.max(2)[:, :-1]  # (N, T-1): the last tier never escalates
    correct = outputs.correct
    rows = np.arange(n)
    # cost[s, f]: FLOPs of running tiers s..f, the probe's tier 0 free after the probe.
    tiers = np.arange(n_tiers)
    cost = np.where(
        tiers[None, :] >= tiers[:, None],
        np.cumsum(np.triu(np.broadcast_to(outputs.tier_flops, (n_tiers, n_tiers))), 1),
        0,
    ).astype(np.float64)
    if probe:
        cost[0] -= outputs.tier_flops[0]
    base = outputs.probe_flops if probe else 0
    reachable = tiers[None, :-1] >= start[:, None]  # (N, T-1)
    found: list[tuple[float, float, tuple[float, ...]]] = []
    for first in range(0, len(combos), chunk):
        block = np.asarray(combos[first : first + chunk])  # (M, T-1)
        stop = (top[None] >= block[:, None, :]) & reachable[None]  # (M, N, T-1)
        stop = np.concatenate([stop, np.ones((len(block), n, 1), dtype=bool)], 2)
        final = stop.argmax(2)  # (M, N)
        accuracy = correct[rows[None], final].mean(1)
        flops = base + cost[start[None], final].mean(1)
        found.extend(
            (float(a), float(f), tuple(float(v) for v in values))
            for a, f, values in zip(accuracy, flops, block, strict=True)
        )
    return found


def _pareto(
    points: Sequence[tuple[float, float, tuple[float, ...]]],
) -> list[tuple[float, float, tuple[float, ...]]]:
    """The points no other point beats on both accuracy (higher) and FLOPs (lower), cheapest
    first."""
    front: list[tuple[float, float, tuple[float, ...]]] = []
    for point in sorted(points, key=lambda p: (p[1], -p[0])):
        if not front or point[0] > front[-1][0]:
            front.append(point)
    return front


@dataclass
class PolicyResult:
    """One policy's accuracy and cost on held-out data.

    ``mean_flops`` counts every model that ran, the probe included; ``relative_flops`` divides it
    by always-HEAVY's (the last tier's). ``tier_mix`` is the share of inputs whose prediction came
    from each tier. Latencies are filled by :func:`measure_latency` (``None`` when not measured).
    """

    name: str
    policy: str
    parameter: float | list[float] | None
    accuracy: float
    mean_flops: float
    relative_flops: float
    tier_mix: list[float]
    n: int
    routing_accuracy: float | None = None
    latency_ms_b1: float | None = None
    latency_ms_b32: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _result(
    outputs: TierOutputs,
    name: str,
    policy: str,
    parameter: float | Sequence[float] | None,
    prediction: np.ndarray,
    tier: np.ndarray,
    flops: np.ndarray,
    routed: np.ndarray | None = None,
) -> PolicyResult:
    n_tiers = outputs.probabilities.shape[1]
    mean_flops = float(flops.mean())
    return PolicyResult(
        name=name,
        policy=policy,
        parameter=(
            None
            if parameter is None
            else float(parameter)
            if isinstance(parameter, (int, float))
            else [float(p) for p in parameter]
        ),
        accuracy=float((prediction == outputs.labels).mean()),
        mean_flops=mean_flops,
        relative_flops=mean_flops / float(outputs.tier_flops[-1]),
        tier_mix=(np.bincount(tier, minlength=n_tiers) / len(tier)).tolist(),
        n=len(outputs),
        routing_accuracy=(
            None if routed is None else float((routed == outputs.oracle_tiers).mean())
        ),
    )


def _oof_sufficiency(router: TierRouter, outputs: TierOutputs, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold sufficiency of a router on its own training data."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    labels = outputs.oracle_tiers
    counts = np.bincount(labels, minlength=router.n_tiers)
    folds = max(2, min(folds, int(counts[counts > 0].min())))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    result = np.zeros((len(outputs), router.n_tiers))
    for train_index, test_index in splitter.split(outputs.features, labels):
        fitted = clone(router).fit(outputs.features[train_index], labels[train_index])
        result[test_index] = fitted.sufficiency(outputs.features[test_index])
    return result


def _route_from(sufficiency: np.ndarray, tau: float) -> np.ndarray:
    return (sufficiency >= tau - 1e-12).argmax(1).astype(np.int64)


def _cheapest(
    candidates: Sequence[tuple[float, float, Any]], goal: float
) -> tuple[float, float, Any]:
    """The cheapest ``(accuracy, flops, choice)`` with accuracy at least ``goal`` (the most
    accurate when none has)."""
    qualified = [c for c in candidates if c[0] >= goal - 1e-12]
    if qualified:
        return min(qualified, key=lambda c: (c[1], -c[0]))
    return max(candidates, key=lambda c: (c[0], -c[1]))


def choose_operating_point(
    router: TierRouter,
    outputs: TierOutputs,
    *,
    max_drop: float = 0.0025,
    escalate: bool = True,
    folds: int = 5,
    seed: int = 0,
) -> tuple[float, tuple[float, ...] | None]:
    """Pick ``tau`` (and per-tier escalation thresholds) on the router's training data only.

    The router's out-of-fold sufficiency (cross-validation on ``outputs``) gives each candidate
    ``(tau, thresholds)`` an accuracy and a mean FLOPs on data the router did not fit; the
    cheapest candidate whose accuracy is at least always-HEAVY's minus ``max_drop`` wins (the
    most accurate, when none qualifies). Candidates: every ``tau`` of :data:`TAUS` without
    escalation and, with ``escalate``, every other ``tau`` with every threshold combination of
    :data:`STAGE_THRESHOLDS` (and every single threshold of :data:`THRESHOLDS`). Held-out data
    are never looked at.

    Returns
    -------
    tau, escalate
        ``escalate`` holds one threshold per tier but the last; ``None`` when escalation is off
        or does not help.
    """
    sufficiency = _oof_sufficiency(router, outputs, folds, seed)
    goal = float(outputs.correct[:, -1].mean()) - max_drop
    candidates: list[tuple[float, float, tuple[float, tuple[float, ...] | None]]] = []
    for tau in TAUS:
        prediction, _, flops = simulate(outputs, _route_from(sufficiency, tau))
        accuracy = float((prediction == outputs.labels).mean())
        candidates.append((accuracy, float(flops.mean()), (tau, None)))
    if escalate:
        for tau in TAUS[::2]:
            start = _route_from(sufficiency, tau)
            for accuracy, flops_mean, thresholds in _sweep(outputs, start, probe=True):
                candidates.append((accuracy, flops_mean, (tau, thresholds)))
    accuracy, flops_mean, (tau, thresholds) = _cheapest(candidates, goal)
    logger.info(
        "operating point tau=%s escalate=%s: cross-validated accuracy %.4f (goal %.4f), %.3g FLOPs",
        tau,
        thresholds,
        accuracy,
        goal,
        flops_mean,
    )
    return tau, thresholds


def choose_cascade(outputs: TierOutputs, *, max_drop: float = 0.0025) -> tuple[float, ...]:
    """The confidence cascade's per-tier thresholds, chosen on the router split as
    :func:`choose_operating_point` chooses the router's: the cheapest combination whose accuracy
    is at least always-HEAVY's minus ``max_drop``."""
    goal = float(outputs.correct[:, -1].mean()) - max_drop
    start = np.zeros(len(outputs), dtype=np.int64)
    _, _, thresholds = _cheapest(_sweep(outputs, start, probe=False), goal)
    return tuple(thresholds)


def _label(values: Sequence[float]) -> str:
    return "/".join(f"{v:g}" for v in values)


def evaluate_policies(
    router: TierRouter,
    outputs: TierOutputs,
    *,
    tau: float | None = None,
    escalate: Escalation | None = None,
    escalate_tau: float | None = None,
    cascade: Escalation | None = None,
    seed: int = 0,
) -> list[PolicyResult]:
    """Every policy of the module docstring on held-out ``outputs``.

    The router's operating point (``tau``, default ``router.tau``) gives the row ``router``;
    ``escalate`` with ``escalate_tau`` (default ``tau``) the row ``router+escalate``;
    ``cascade`` (thresholds chosen on the router split, :func:`choose_cascade`) the row
    ``cascade``. Curves (``extra["curve"] = True``): the router's ``tau`` sweep over
    :data:`TAUS`; for the escalating router (from its routed tiers) and for the cascade, the
    accuracy-FLOPs Pareto front of every threshold combination, found on these held-out data
    (so the curves are the best each could do, an optimistic bound).
    """
    n, n_tiers, _ = outputs.probabilities.shape
    names = list(TIERS) if n_tiers == len(TIERS) else [str(t) for t in range(n_tiers)]
    results = []
    for t in range(n_tiers):
        start = np.full(n, t)
        prediction, tier, flops = simulate(outputs, start, probe=False)
        results.append(
            _result(outputs, f"always-{names[t]}", "always", None, prediction, tier, flops)
        )
    oracle = outputs.oracle_tiers
    prediction, tier, flops = simulate(outputs, oracle)
    results.append(_result(outputs, "oracle", "oracle", None, prediction, tier, flops, oracle))
    sufficiency = router.sufficiency(outputs.features)
    operating = router.tau if tau is None else tau
    routed_at_point = _route_from(sufficiency, operating)
    for value in TAUS:
        routed = _route_from(sufficiency, value)
        prediction, tier, flops = simulate(outputs, routed)
        row = _result(
            outputs, f"router tau={value:g}", "router", value, prediction, tier, flops, routed
        )
        row.extra["curve"] = True
        results.append(row)
    prediction, tier, flops = simulate(outputs, routed_at_point)
    results.append(
        _result(outputs, "router", "router", operating, prediction, tier, flops, routed_at_point)
    )
    if escalate is not None:
        thresholds = check_escalate(escalate, n_tiers)
        assert thresholds is not None
        escalate_at = operating if escalate_tau is None else escalate_tau
        routed_escalating = _route_from(sufficiency, escalate_at)
        prediction, tier, flops = simulate(outputs, routed_escalating, escalate=thresholds)
        row = _result(
            outputs,
            "router+escalate",
            "router+escalate",
            thresholds,
            prediction,
            tier,
            flops,
            routed_escalating,
        )
        row.extra["tau"] = escalate_at
        results.append(row)
        for _, _, values in _pareto(_sweep(outputs, routed_escalating, probe=True)):
            prediction, tier, flops = simulate(outputs, routed_escalating, escalate=values)
            row = _result(
                outputs,
                f"router+escalate c={_label(values)}",
                "router+escalate",
                values,
                prediction,
                tier,
                flops,
                routed_escalating,
            )
            row.extra.update(curve=True, tau=escalate_at)
            results.append(row)
    first = np.zeros(n, dtype=np.int64)
    if cascade is not None:
        thresholds = check_escalate(cascade, n_tiers, name="cascade")
        assert thresholds is not None
        prediction, tier, flops = simulate(outputs, first, escalate=thresholds, probe=False)
        results.append(_result(outputs, "cascade", "cascade", thresholds, prediction, tier, flops))
    for _, _, values in _pareto(_sweep(outputs, first, probe=False)):
        prediction, tier, flops = simulate(outputs, first, escalate=values, probe=False)
        row = _result(
            outputs, f"cascade c={_label(values)}", "cascade", values, prediction, tier, flops
        )
        row.extra["curve"] = True
        results.append(row)
    mix = np.bincount(routed_at_point, minlength=n_tiers) / n
    rng = np.random.default_rng(seed)
    drawn = np.asarray(rng.choice(n_tiers, size=n, p=mix), dtype=np.int64)
    prediction, tier, flops = simulate(outputs, drawn)
    results.append(
        _result(outputs, "random (router's mix)", "random", None, prediction, tier, flops, drawn)
    )
    return results


def matched_accuracy(
    results: Sequence[PolicyResult], policy: str, accuracy: float
) -> PolicyResult | None:
    """The cheapest point of ``policy``'s curve whose accuracy is at least ``accuracy``."""
    points = [r for r in results if r.policy == policy and r.extra.get("curve")]
    good = [r for r in points if r.accuracy >= accuracy - 1e-12]
    return min(good, key=lambda r: (r.mean_flops, -r.accuracy)) if good else None


def measure_latency(
    pipelines: dict[str, Callable[[torch.Tensor], Any]],
    inputs: torch.Tensor,
    *,
    batch_sizes: Sequence[int] = (1, 32),
    max_items: int = 256,
    rounds: int = 3,
) -> dict[str, dict[int, float]]:
    """Mean milliseconds per input of each pipeline, run on real inputs.

    Pipelines are timed in turn within each round (so drift on a shared machine hits all alike),
    over ``max_items`` inputs in batches of each size, after one warm-up batch; the median over
    ``rounds`` is reported.
    """
    items = inputs[:max_items]
    times: dict[str, dict[int, list[float]]] = {
        name: {b: [] for b in batch_sizes} for name in pipelines
    }
    for run in pipelines.values():
        run(items[: max(batch_sizes)])
    for _ in range(rounds):
        for size in batch_sizes:
            for name, run in pipelines.items():
                began = time.perf_counter()
                for start in range(0, len(items), size):
                    run(items[start : start + size])
                times[name][size].append((time.perf_counter() - began) * 1e3 / len(items))
    return {name: {b: float(np.median(v)) for b, v in per.items()} for name, per in times.items()}


def pipelines(
    tiers: Sequence[nn.Module],
    router: TierRouter,
    *,
    tau: float,
    escalate: Escalation | None,
    cascade_threshold: Escalation | None,
    escalate_tau: float | None = None,
) -> dict[str, Callable[[torch.Tensor], Any]]:
    """The runnable pipeline behind each policy, for :func:`measure_latency`."""
    result: dict[str, Callable[[torch.Tensor], Any]] = {}
    names = list(TIERS) if len(tiers) == len(TIERS) else [str(t) for t in range(len(tiers))]

    def forward(model: nn.Module) -> Callable[[torch.Tensor], Any]:
        def run(x: torch.Tensor) -> Any:
            with eval_mode(model), torch.no_grad():
                return model(x)

        return run

    for name, model in zip(names, tiers, strict=True):
        result[f"always-{name}"] = forward(model)
    result["router"] = RoutedClassifier(tiers[0], tiers[1:], router, tau=tau).predict
    if escalate is not None:
        result["router+escalate"] = RoutedClassifier(
            tiers[0],
            tiers[1:],
            router,
            tau=tau if escalate_tau is None else escalate_tau,
            escalate=escalate,
        ).predict
    if cascade_threshold is not None:
        result["cascade"] = ConfidenceCascade(tiers, cascade_threshold).predict
    return result
