"""Run the probe, route, run the chosen tier: the routed classifier and what it spends.

Costs are counted, not estimated: FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`
around the probe's explanation (the forward pass, plus the backward from the target layer when the
probe is not on Grad-CAM's forward path) and around each tier's forward pass, per input; every
model that runs is counted, the probe included. Latency is wall time of the batch's stages, shared
out per input.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leanxai.core.errors import InputError
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.explainers.base import check_images
from leanxai.route.features import FeatureExtractor
from leanxai.route.router import TIERS, TierRouter

__all__ = ["RoutedClassifier", "RoutedResult", "count_flops"]


@dataclass(frozen=True)
class RoutedResult:
    """Per input: what was predicted, where, how sure the router was, and what it cost.

    Attributes
    ----------
    prediction
        ``(B,)`` int64 class; -1 where the chosen tier failed (see ``errors``).
    tier
        ``(B,)`` int64 tier index (0 is the probe, TINY).
    confidence
        ``(B,)`` the router's probability that the chosen tier suffices.
    flops
        ``(B,)`` int64 FLOPs spent on the input: the probe's explanation plus the chosen tier's
        forward pass (nothing more when the tier is the probe). Steady state: Grad-CAM's
        one-time check of its forward path, run on the first call, is not charged per input.
    latency_s
        ``(B,)`` seconds: the probe stage's wall time divided by the batch size, plus the chosen
        tier's wall time divided by the number of inputs it ran on.
    features
        ``(B, 7)`` the complexity features.
    errors
        ``{index: message}`` for inputs whose tier failed.
    """

    prediction: np.ndarray
    tier: np.ndarray
    confidence: np.ndarray
    flops: np.ndarray
    latency_s: np.ndarray
    features: np.ndarray
    errors: dict[int, str]


def count_flops(model: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``inputs`` (whole batch), in eval mode."""
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return int(counter.get_total_flops())


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
    """

    def __init__(
        self,
        probe: nn.Module,
        tiers: Sequence[nn.Module],
        router: TierRouter,
        layer: str | None = None,
        tau: float | None = None,
    ) -> None:
        self.probe = probe
        self.tiers = list(tiers)
        self.router = router
        self.tau = tau
        self.extractor = FeatureExtractor(probe, layer=layer)
        self._flops: dict[tuple[int, tuple[int, ...]], int] = {}
        self._checked = False

    def _check_tiers(self, sample: torch.Tensor, classes: int) -> None:
        """Once: every tier takes the probe's input and returns as many classes."""
        for index, model in enumerate(self.tiers, start=1):
            name = TIERS[index] if index < len(TIERS) else str(index)
            try:
                with eval_mode(model), torch.no_grad():
                    width = logits_of(model(sample)).shape[1]
            except Exception as error:
                raise InputError(f"tier {name} cannot take the probe's input: {error}") from error
            if width != classes:
                raise InputError(f"tier {name} returns {width} classes, the probe {classes}")
        self._checked = True

    def _per_input_flops(self, index: int, sample: torch.Tensor) -> int:
        """FLOPs per input of stage ``index`` (0: the probe's explanation), cached per shape."""
        key = (index, tuple(sample.shape))
        if key not in self._flops:
            if index == 0:
                with FlopCounterMode(display=False) as counter:
                    self.extractor.extract(sample)
                self._flops[key] = int(counter.get_total_flops())
            else:
                self._flops[key] = count_flops(self.tiers[index - 1], sample)
        return self._flops[key]

    def predict(self, inputs: torch.Tensor) -> RoutedResult:
        """Route and classify ``inputs`` ``(B, C, H, W)``."""
        inputs = check_images(inputs)
        n_tiers = 1 + len(self.tiers)
        if getattr(self.router, "n_tiers", n_tiers) != n_tiers:
            raise InputError(
                f"the router knows {self.router.n_tiers} tiers but {n_tiers} were given "
                "(the probe and the larger tiers)"
            )
        batch = len(inputs)
        start = time.perf_counter()
        features, explanation = self.extractor.extract(inputs)
        probe_logits = explanation.logits
        decided = features.detach().cpu().double().numpy()
        tier = self.router.route(decided, tau=self.tau)
        confidence = self.router.sufficiency(decided)[np.arange(batch), tier]
        probe_seconds = time.perf_counter() - start

        classes = probe_logits.shape[1]
        if not self._checked:
            self._check_tiers(inputs[:1], classes)
        prediction = np.full(batch, -1, dtype=np.int64)
        latency = np.full(batch, probe_seconds / batch)
        flops = np.full(batch, self._per_input_flops(0, inputs[:1]), dtype=np.int64)
        errors: dict[int, str] = {}
        chosen = tier == 0
        prediction[chosen] = probe_logits.argmax(1).cpu().numpy()[chosen]
        for index in range(1, n_tiers):
            members = np.flatnonzero(tier == index)
            if len(members) == 0:
                continue
            model = self.tiers[index - 1]
            subset = inputs[torch.as_tensor(members, device=inputs.device)]
            began = time.perf_counter()
            try:
                with eval_mode(model), torch.no_grad():
                    logits = logits_of(model(subset))
            except Exception as error:  # reported per input, never silently replaced
                text = str(error).strip().splitlines()
                message = f"{type(error).__name__}: {text[0] if text else ''}"
                for member in members:
                    errors[int(member)] = message
                continue
            seconds = time.perf_counter() - began
            prediction[members] = logits.argmax(1).cpu().numpy()
            latency[members] += seconds / len(members)
            flops[members] += self._per_input_flops(index, subset[:1])
        return RoutedResult(
            prediction=prediction,
            tier=tier,
            confidence=confidence,
            flops=flops,
            latency_s=latency,
            features=decided,
            errors=errors,
        )
