"""Run the probe, route, run the chosen tier: the routed classifier and what it spends.

Costs are counted, not estimated: FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`
around the probe's explanation (the forward pass, plus the backward from the target layer when the
probe is not on Grad-CAM's forward path) and around each tier's forward pass, per input; every
model that runs is counted, the probe included. Latency is wall time of the batch's stages, shared
out per input.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError, one_line
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.explainers.base import check_images
from leanxai.route.features import FeatureExtractor
from leanxai.route.router import TIERS, TierRouter

__all__ = [
    "ConfidenceCascade",
    "Escalation",
    "RoutedClassifier",
    "RoutedResult",
    "check_escalate",
    "count_flops",
]


@dataclass(frozen=True)
class RoutedResult:
    """Per input: what was predicted, where, how sure the router was, and what it cost.

    Attributes
    ----------
    prediction
        ``(B,)`` int64 class; -1 where the chosen tier failed (see ``errors``).
    tier
        ``(B,)`` int64 index of the tier that gave the prediction (0 is the probe, TINY): the
        routed tier, or a larger one after escalation.
    confidence
        ``(B,)`` the router's probability that the chosen tier suffices.
    flops
        ``(B,)`` int64 FLOPs spent on the input: the probe's explanation plus the forward pass of
        every further tier that ran on it (nothing more when the tier is the probe). Steady
        state: Grad-CAM's one-time check of its forward path, run on the first call, is not
        charged per input.
    latency_s
        ``(B,)`` seconds: the probe stage's wall time divided by the batch size, plus the chosen
        tier's wall time divided by the number of inputs it ran on.
    features
        ``(B, 7)`` the complexity features.
    errors
        ``{index: message}`` for inputs whose tier failed.
    routed
        ``(B,)`` int64 the tier the router chose, before any escalation.
    """

    prediction: np.ndarray
    tier: np.ndarray
    confidence: np.ndarray
    flops: np.ndarray
    latency_s: np.ndarray
    features: np.ndarray
    errors: dict[int, str]
    routed: np.ndarray | None = None


def count_flops(model: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``inputs`` (whole batch), in eval mode."""
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return int(counter.get_total_flops())


Escalation = float | Sequence[float]
"""An escalation threshold: one number for every tier, or one per tier but the last."""


def check_escalate(value: object, n_tiers: int, name: str = "escalate") -> tuple[float, ...] | None:
    """``None``, or one threshold in ``[0, 1]`` per tier but the last (one number: the same for
    every tier)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()

    def number(label: str, item: object) -> float:
        # Not a number at all is a value error here (as it always was): the argument takes
        # several forms, and the message names them.
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise InputError(
                f"{name} must be None, a number in [0, 1] or one per tier but the last, "
                f"got {value!r}"
            )
        return validate.fraction(label, item)

    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        return (number(name, value),) * (n_tiers - 1)
    thresholds = tuple(number(f"{name}[{index}]", item) for index, item in enumerate(value))
    if len(thresholds) != n_tiers - 1:
        raise InputError(
            f"{name} must hold one threshold per tier but the last ({n_tiers - 1}), got "
            f"{len(thresholds)}"
        )
    return thresholds


def _check_tiers(name: str, value: object) -> list[nn.Module]:
    """A non-empty sequence (or ``nn.ModuleList``) of modules, as a list."""
    if not isinstance(value, nn.ModuleList) and (
        isinstance(value, (nn.Module, str, bytes)) or not isinstance(value, Sequence)
    ):
        raise InputTypeError(
            f"{name} must be a sequence of torch.nn.Modules, got {type(value).__name__}"
        )
    if len(value) == 0:
        raise InputError(f"{name} must hold at least one model")
    return [validate.instance(f"{name}[{index}]", m, nn.Module) for index, m in enumerate(value)]


def _check_router(value: object, n_tiers: int) -> TierRouter:
    """A fitted :class:`TierRouter` that knows ``n_tiers`` tiers."""
    router: TierRouter = validate.instance("router", value, TierRouter)
    try:
        # scikit-learn's test: fitted attributes (``estimator_``), or __sklearn_is_fitted__.
        check_is_fitted(router)
    except NotFittedError as error:
        raise InputError("router is not fitted; call router.fit(features, labels) first") from error
    if router.n_tiers != n_tiers:
        raise InputError(
            f"the router knows {router.n_tiers} tiers but {n_tiers} were given "
            "(the probe and the larger tiers)"
        )
    return router


@dataclass(frozen=True)
class _StageResult:
    """What :meth:`_Stages.run` gives, per input.

    Attributes
    ----------
    prediction
        ``(B,)`` int64 class at the last tier run; -1 where that tier failed.
    tier
        ``(B,)`` int64 the last tier run; -1 where it failed.
    top
        ``(B,)`` float64 top softmax probability at the last tier that answered (0 if none did).
    flops
        ``(B,)`` int64 forward FLOPs of the tiers that ran on the input (known logits are free).
    latency_s
        ``(B,)`` seconds: each tier's wall time divided by the number of inputs it ran on.
    errors
        ``{index: message}`` for inputs whose tier failed.
    """

    prediction: np.ndarray
    tier: np.ndarray
    top: np.ndarray
    flops: np.ndarray
    latency_s: np.ndarray
    errors: dict[int, str]


class _Stages:
    """Runs inputs through tiers from a start tier upwards, escalating the unsure ones.

    Shared by :class:`RoutedClassifier` and :class:`ConfidenceCascade`, so both count FLOPs and
    time the same way.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)
        self._flops: dict[tuple[int, tuple[int, ...]], int] = {}
        self._checked = False

    def flops(self, index: int, sample: torch.Tensor) -> int:
        """Forward FLOPs per input of tier ``index`` (cached per input shape)."""
        key = (index, tuple(sample.shape))
        if key not in self._flops:
            self._flops[key] = count_flops(self.models[index], sample)
        return self._flops[key]

    def check(self, sample: torch.Tensor, classes: int, first: int) -> None:
        """Once: every tier from ``first`` on takes the input and returns ``classes`` classes."""
        if self._checked:
            return
        for index in range(first, len(self.models)):
            name = TIERS[index] if index < len(TIERS) else str(index)
            try:
                with eval_mode(self.models[index]), torch.no_grad():
                    width = logits_of(self.models[index](sample)).shape[1]
            except Exception as error:
                raise InputError(f"tier {name} cannot take the input: {one_line(error)}") from error
            if width != classes:
                raise InputError(f"tier {name} returns {width} classes, the probe {classes}")
        self._checked = True

    def run(
        self,
        inputs: torch.Tensor,
        start: np.ndarray,
        escalate: tuple[float, ...] | None,
        known: dict[int, torch.Tensor],
    ) -> _StageResult:
        """Run each input from its first tier ``start[i]`` upwards.

        ``known[t]`` holds ``(B, K)`` logits of tier ``t`` already computed for every input (the
        probe's), used without cost. With ``escalate`` (one threshold per tier but the last), an
        input whose top softmax probability at tier ``t`` is below ``escalate[t]`` moves on to
        the next tier, paying for it, until one clears its threshold or the last tier has run.
        """
        batch = len(start)
        stage = start.copy()
        prediction = np.full(batch, -1, dtype=np.int64)
        top = np.zeros(batch)
        flops = np.zeros(batch, dtype=np.int64)
        latency = np.zeros(batch)
        errors: dict[int, str] = {}
        last = len(self.models) - 1
        for index in range(len(self.models)):
            members = np.flatnonzero(stage == index)
            if len(members) == 0:
                continue
            if index in known:
                logits = known[index][torch.as_tensor(members, device=inputs.device)]
            else:
                subset = inputs[torch.as_tensor(members, device=inputs.device)]
                model = self.models[index]
                began = time.perf_counter()
                try:
                    with eval_mode(model), torch.no_grad():
                        logits = logits_of(model(subset))
                except Exception as error:  # reported per input, never silently replaced
                    kind, line = type(error).__name__, one_line(error)
                    message = kind if line == kind else f"{kind}: {line}"
                    for member in members:
                        errors[int(member)] = message
                        prediction[member] = -1
                    stage[members] = -1
                    continue
                latency[members] += (time.perf_counter() - began) / len(members)
                flops[members] += self.flops(index, subset[:1])
            probabilities = torch.softmax(logits.detach().float(), dim=1)
            best, label = probabilities.max(1)
            prediction[members] = label.cpu().numpy()
            top[members] = best.cpu().numpy()
            if escalate is not None and index < last:
                unsure = members[top[members] < escalate[index]]
                stage[unsure] = index + 1
        return _StageResult(
            prediction=prediction,
            tier=stage,
            top=top,
            flops=flops,
            latency_s=latency,
            errors=errors,
        )


class RoutedClassifier:
    """A probe, tiers of increasing size, and a fitted :class:`TierRouter`.

    Parameters
    ----------
    probe
        The TINY tier; Grad-CAM runs on it to give the complexity features, and its own
        prediction is used when the router picks tier 0.
    tiers
        The larger tiers, smallest first (LIGHT, MEDIUM, HEAVY); all must return as many classes
        as the probe.
    router
        A fitted router with ``n_tiers == 1 + len(tiers)``.
    layer
        The probe's Grad-CAM layer (default: found).
    tau
        Operating point; default the router's own ``tau``.
    escalate
        ``None`` (default) runs only the routed tier. A number in ``[0, 1]`` also uses what a
        confidence cascade knows: when the routed tier's top softmax probability is below
        ``escalate``, the next larger tier runs too (and is paid for), and so on until one clears
        it or the largest has run; the last tier run gives the prediction. A sequence gives one
        threshold per tier but the last (TINY's, LIGHT's, MEDIUM's).

    Raises
    ------
    InputTypeError
        (a ``TypeError``) ``probe`` or a tier that is not an ``nn.Module``, ``tiers`` that is
        not a sequence, ``router`` that is not a :class:`TierRouter`.
    InputError
        (a ``ValueError``) No larger tier, a router that is not fitted or knows another number
        of tiers, ``tau`` or a threshold outside ``[0, 1]``, or the wrong number of thresholds.
        Checked here, when the classifier is built; whether every tier takes the inputs and
        returns the probe's number of classes is checked on the first :meth:`predict`.
    """

    def __init__(
        self,
        probe: nn.Module,
        tiers: Sequence[nn.Module],
        router: TierRouter,
        layer: str | None = None,
        tau: float | None = None,
        escalate: Escalation | None = None,
    ) -> None:
        validate.instance("probe", probe, nn.Module)
        self.tiers = _check_tiers("tiers", tiers)
        n_tiers = 1 + len(self.tiers)
        self.router = _check_router(router, n_tiers)
        self._tau = None if tau is None else validate.fraction("tau", tau)
        self._escalate = check_escalate(escalate, n_tiers)
        self.probe = probe
        self.tau = tau
        self.escalate = escalate
        self.extractor = FeatureExtractor(probe, layer=layer)
        self._stages = _Stages([probe, *self.tiers])
        self._probe_flops: dict[tuple[int, ...], int] = {}

    def _explanation_flops(self, sample: torch.Tensor) -> int:
        """FLOPs per input of the probe's explanation, cached per shape."""
        key = tuple(sample.shape)
        if key not in self._probe_flops:
            with FlopCounterMode(display=False) as counter:
                self.extractor.extract(sample)
            self._probe_flops[key] = int(counter.get_total_flops())
        return self._probe_flops[key]

    def predict(self, inputs: torch.Tensor) -> RoutedResult:
        """Route and classify ``inputs`` ``(B, C, H, W)``."""
        inputs = check_images(inputs)
        batch = len(inputs)
        start = time.perf_counter()
        features, explanation = self.extractor.extract(inputs)
        decided = features.detach().cpu().double().numpy()
        tier = self.router.route(decided, tau=self._tau)
        confidence = self.router.sufficiency(decided)[np.arange(batch), tier]
        probe_seconds = time.perf_counter() - start
        self._stages.check(inputs[:1], explanation.logits.shape[1], first=1)
        stages = self._stages.run(inputs, tier, self._escalate, {0: explanation.logits})
        return RoutedResult(
            prediction=stages.prediction,
            tier=np.where(stages.tier >= 0, stages.tier, tier).astype(np.int64),
            confidence=confidence,
            flops=self._explanation_flops(inputs[:1]) + stages.flops,
            latency_s=probe_seconds / batch + stages.latency_s,
            features=decided,
            errors=stages.errors,
            routed=tier,
        )


class ConfidenceCascade:
    """The baseline a router must beat: run the smallest tier, escalate while unsure.

    Every input runs on TINY; when its top softmax probability is below ``threshold`` it runs
    on the next tier too, and so on; the last tier run gives the prediction. Every model that
    runs is paid for. There is no probe and no explanation.

    Parameters
    ----------
    tiers
        All tiers, smallest first (TINY, LIGHT, MEDIUM, HEAVY).
    threshold
        Top-probability threshold in ``[0, 1]``: 0 stops at TINY always, 1 runs every tier. A
        sequence gives one threshold per tier but the last.

    Raises
    ------
    InputTypeError
        (a ``TypeError``) ``tiers`` that is not a sequence of ``nn.Module``.
    InputError
        (a ``ValueError``) No tier, or a threshold that is not one of the forms above.
    """

    def __init__(self, tiers: Sequence[nn.Module], threshold: Escalation) -> None:
        self.tiers = _check_tiers("tiers", tiers)
        if threshold is None:
            raise InputError("threshold must be a number in [0, 1], got None")
        self._threshold = check_escalate(threshold, len(self.tiers), name="threshold")
        self.threshold = threshold
        self._stages = _Stages(self.tiers)

    def predict(self, inputs: torch.Tensor) -> RoutedResult:
        """Classify ``inputs`` ``(B, C, H, W)``; ``confidence`` is the last tier's top
        probability, ``features`` is empty."""
        inputs = check_images(inputs)
        batch = len(inputs)
        start = np.zeros(batch, dtype=np.int64)
        stages = self._stages.run(inputs, start, self._threshold, {})
        return RoutedResult(
            prediction=stages.prediction,
            tier=np.where(stages.tier >= 0, stages.tier, 0).astype(np.int64),
            confidence=stages.top,
            flops=stages.flops,
            latency_s=stages.latency_s,
            features=np.zeros((batch, 0)),
            errors=stages.errors,
            routed=start,
        )
