"""Feature rankings of sequence classifiers by Captum's gradient and perturbation baselines.

:func:`feature_ranking` ``(model, inputs, method)`` ranks the input features of a sequence
classifier with DeepACTIF (:class:`~leanxai.explainers.deepactif.DeepACTIF`) or with one of the
baselines here, each one small function registered in :mod:`leanxai.explainers.registry` (family
``"recurrent"``, output ``"feature ranking"``) and found through it: Integrated Gradients,
DeepLIFT, GradientSHAP and feature ablation. Each baseline's attribution ``(B, T, F)`` of the
target logit is reduced to one score per feature by
:func:`~leanxai.explainers.deepactif.aggregate`.

Captum (``pip install leanxai[rnn]``) is imported when a baseline runs, never at import time.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from leanxai.core import validate
from leanxai.core.errors import InputTypeError
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers import registry
from leanxai.explainers.deepactif import (
    DeepACTIF,
    FeatureAttribution,
    RankingMethod,
    _check_mask,
    _check_sequences,
    _ranking,
    _resolve_layout,
    aggregate,
)

__all__ = ["RANKING_METHODS", "feature_ranking"]


class _SequenceLogits(nn.Module):
    """The model as Captum sees it: batch-first ``(B, T, F)`` inputs, ``(B, K)`` logits.

    Captum expands inputs along dimension 0, so a time-major model gets its layout back here.
    """

    def __init__(self, model: nn.Module, batch_first: bool) -> None:
        super().__init__()
        self.model = model
        self.batch_first = batch_first

    def forward(self, inputs: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
        x = inputs if self.batch_first else inputs.transpose(0, 1)
        return logits_of(self.model(x, *mask))


@contextlib.contextmanager
def _cudnn_disabled() -> Iterator[None]:
    """cuDNN off for the block: its RNN backward refuses to run in eval mode. Only the
    ``enabled`` flag is touched, and restored."""
    enabled = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = enabled


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's CPU generator and NumPy's global one for the block, then restore both.

    Captum's ``GradientShap`` draws its interpolation points and background samples with NumPy;
    its noise (zero here, ``stdevs=0``) is drawn on the inputs' device. The CPU and NumPy
    generators are seeded and restored by :mod:`~leanxai.explainers.baselines`' one helper; the
    generator of the inputs' CUDA device is only restored, never reseeded, and no other device's
    is touched.
    """
    from leanxai.explainers.baselines import _seeded as seeded

    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices), seeded(seed):
        yield


# -- the baselines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """What every baseline gets: the model as Captum sees it and what to attribute."""

    captum: Any  # the captum.attr module
    forward: _SequenceLogits
    x: torch.Tensor  # (B, T, F), detached
    target: torch.Tensor  # (B,) int64
    additional: tuple[torch.Tensor, ...] | None  # (mask,) when there is one
    n_steps: int
    n_samples: int
    n_baselines: int
    internal_batch_size: int | None
    seed: int


Attribution = Callable[[_Call], torch.Tensor]
"""A baseline: ``(B, T, F)`` attribution of the target logit."""


@dataclass(frozen=True)
class _Baseline:
    """A baseline as the registry holds it.

    Called as a registry factory, ``factory(model, **options)``, it binds a model (a
    :class:`~leanxai.explainers.deepactif.RankingMethod`); :func:`feature_ranking` runs
    ``attribution``.
    """

    name: str
    attribution: Attribution

    def __call__(self, model: nn.Module, **options: Any) -> RankingMethod:
        return RankingMethod(self.name, model, **options)


def _baseline(
    name: str, *, backward: registry.Backward, summary: str
) -> Callable[[Attribution], _Baseline]:
    """Register the decorated attribution as the recurrent feature ranking ``name``."""

    def decorate(attribution: Attribution) -> _Baseline:
        baseline = _Baseline(name, attribution)
        registry.register(
            name,
            families="recurrent",
            output="feature ranking",
            backward=backward,
            summary=summary,
        )(baseline)
        return baseline

    return decorate


@_baseline(
    "ig",
    backward="many",
    summary="Integrated Gradients (Captum), mean |attribution| per feature",
)
def _integrated_gradients(call: _Call) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al., 2017), zero baseline, ``n_steps`` points."""
    return call.captum.IntegratedGradients(call.forward).attribute(
        call.x.clone(),
        baselines=torch.zeros_like(call.x),
        target=call.target,
        additional_forward_args=call.additional,
        n_steps=call.n_steps,
        internal_batch_size=call.internal_batch_size,
    )


@_baseline(
    "deeplift",
    backward="yes",
    summary="DeepLIFT (Captum; gradient x input inside the recurrent layer)",
)
def _deeplift(call: _Call) -> torch.Tensor:
    """Captum's ``DeepLift`` (Shrikumar et al., 2017), zero baseline."""
    return call.captum.DeepLift(call.forward).attribute(
        call.x.clone(),
        baselines=torch.zeros_like(call.x),
        target=call.target,
        additional_forward_args=call.additional,
    )


@_baseline(
    "shap",
    backward="many",
    summary="GradientSHAP (Captum), background drawn from the inputs",
)
def _gradient_shap(call: _Call) -> torch.Tensor:
    """Captum's ``GradientShap``: ``n_samples`` points per input, background drawn from the
    inputs, no added noise; seeded by ``seed`` and the global generators restored."""
    batch = call.x.shape[0]
    with _seeded(call.seed, call.x.device):
        generator = torch.Generator().manual_seed(call.seed)
        pick = torch.randperm(batch, generator=generator)[: min(call.n_baselines, batch)]
        background = call.x[pick.to(call.x.device)].clone()  # (n, T, F)
        return call.captum.GradientShap(call.forward).attribute(
            call.x.clone(),
            baselines=background,
            n_samples=call.n_samples,
            stdevs=0.0,
            target=call.target,
            additional_forward_args=call.additional,
        )


@_baseline(
    "ablation",
    backward="no",
    summary="feature ablation (Captum), one forward pass per feature",
)
def _ablation(call: _Call) -> torch.Tensor:
    """Captum's ``FeatureAblation``: one group per feature across all steps, set to 0."""
    features = call.x.shape[2]
    feature_mask = torch.arange(features, device=call.x.device).view(1, 1, features)
    with torch.no_grad():
        return call.captum.FeatureAblation(call.forward).attribute(
            call.x.clone(),
            baselines=0.0,
            target=call.target,
            additional_forward_args=call.additional,
            feature_mask=feature_mask,
            perturbations_per_eval=max(1, min(features, 16)),
        )


RANKING_METHODS: tuple[str, ...] = (
    DeepACTIF.name,
    *(b.name for b in (_integrated_gradients, _deeplift, _gradient_shap, _ablation)),
)
"""Method names of :func:`feature_ranking` (the registry's feature rankings for ``recurrent``)."""


# -- the verb -------------------------------------------------------------------------------------


def feature_ranking(
    model: nn.Module,
    inputs: torch.Tensor | PackedSequence,
    method: str = "deepactif",
    target: Target = None,
    *,
    mask: torch.Tensor | None = None,
    batch_first: bool | None = None,
    n_steps: int = 50,
    n_samples: int = 20,
    n_baselines: int = 16,
    internal_batch_size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> FeatureAttribution:
    """Rank the input features of a sequence classifier with DeepACTIF or a Captum baseline.

    Each baseline's attribution ``(B, T, F)`` of the target logit is reduced to one score per
    feature as the mean absolute attribution over samples and valid steps
    (``aggregate(attribution, mask, "mean")``):

    - ``"ig"``: Integrated Gradients (Sundararajan et al., 2017), zero baseline, ``n_steps``
      Gauss-Legendre points;
    - ``"deeplift"``: Captum's ``DeepLift`` (Shrikumar et al., 2017), zero baseline. Captum's
      rescale rule replaces the gradient only of nonlinearities that are modules of their own
      (``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``...); the gates inside ``nn.LSTM``/``nn.GRU``
      are functional, so for a recurrent layer Captum silently falls back to plain gradients
      and the result is gradient x (input - baseline) there (checked in the tests);
    - ``"shap"``: Captum's ``GradientShap`` (expected gradients), ``n_samples`` random points
      between each input and baselines drawn from ``n_baselines`` samples of ``inputs``
      themselves (the background distribution), no added noise;
    - ``"ablation"``: Captum's ``FeatureAblation`` with one group per feature across all
      steps, set to 0 (the mean of standardised data): ``F + 1`` forward passes;
    - ``"deepactif"``: :class:`~leanxai.explainers.deepactif.DeepACTIF` with ``options``
      (``layer``, ``mapping``, ``aggregation``, ``norm``); no backward pass. It does not depend
      on a class: ``target``, ``n_steps``, ``n_samples``, ``n_baselines``,
      ``internal_batch_size`` and ``seed`` are not used, and the model is called as
      ``model(inputs)`` (see :class:`~leanxai.explainers.deepactif.DeepACTIF`).

    The method is looked up in :mod:`leanxai.explainers.registry` (any spelling it accepts).

    Parameters
    ----------
    model
        A sequence classifier returning ``(B, K)`` logits. With a ``mask``, the baselines call it
        as ``model(inputs, mask)`` (see :class:`~leanxai.zoo.recurrent.RecurrentClassifier`);
        otherwise as ``model(inputs)``.
    inputs
        ``(B, T, F)`` (or ``(T, B, F)``, see ``batch_first``).
    method
        One of :data:`RANKING_METHODS`.
    target
        ``None`` (the predicted class), an int, or one class per sample.
    mask
        ``(B, T)`` bool, true at valid steps.
    batch_first
        Layout of ``inputs``; ``None`` reads it from the first recurrent layer.
    n_steps
        Integrated Gradients' quadrature points.
    n_samples, n_baselines
        GradientSHAP's samples per input and size of its background set.
    internal_batch_size
        Integrated Gradients' scaled inputs per pass (``None``: all at once).
    seed
        Seed of GradientSHAP's sampling (torch's CPU and NumPy's global generators are seeded
        for the call and restored afterwards, so the ranking is reproducible).
    **options
        Passed to :class:`~leanxai.explainers.deepactif.DeepACTIF` (``method="deepactif"``
        only).

    Returns
    -------
    FeatureAttribution
        ``aggregation`` is ``"mean"`` for the baselines.

    Notes
    -----
    The model runs in eval mode and, for the gradient methods, with cuDNN switched off for the
    call (cuDNN's RNN backward does not run in eval mode); every flag is restored, also after an
    error, and no parameter gradient is left.
    """
    info = registry.get(method, "recurrent")
    if info.name == DeepACTIF.name:
        return DeepACTIF(model, batch_first=batch_first, **options).attribute(inputs, mask)
    baseline = info.factory
    if not isinstance(baseline, _Baseline):  # pragma: no cover - a registration bug
        raise RuntimeError(f"bug: recurrent method {info.name!r} is not a sequence baseline")
    if options:
        raise InputTypeError(f"options {sorted(options)} apply to method='deepactif' only")
    validate.instance("model", model, nn.Module)
    n_steps = validate.positive_int("n_steps", n_steps)
    n_samples = validate.positive_int("n_samples", n_samples)
    n_baselines = validate.positive_int("n_baselines", n_baselines)
    internal_batch_size = validate.optional_positive_int("internal_batch_size", internal_batch_size)
    seed = validate.non_negative_int("seed", seed)
    layout = _resolve_layout(model, batch_first)
    x = _check_sequences(inputs, layout).detach()  # (B, T, F)
    batch, steps, _ = x.shape
    mask = _check_mask(mask, batch, steps, x.device)
    extra = () if mask is None else (mask,)
    try:
        import captum.attr as attr
    except ImportError as error:  # pragma: no cover - captum is a declared extra
        raise ImportError("feature_ranking needs Captum: pip install leanxai[rnn]") from error
    forward = _SequenceLogits(model, layout)
    with eval_mode(model), _cudnn_disabled(), warnings.catch_warnings():
        # Captum's notices that it set requires_grad on its own copy and hooks on activations.
        warnings.filterwarnings("ignore", message=r".*required_grads has been set automatically")
        warnings.filterwarnings("ignore", message=r"(?s).*Setting forward, backward hooks")
        with torch.no_grad():
            logits = forward(x, *extra).detach()  # (B, K)
        call = _Call(
            captum=attr,
            forward=forward,
            x=x,
            target=resolve_target(target, logits),  # (B,)
            additional=extra if extra else None,
            n_steps=n_steps,
            n_samples=n_samples,
            n_baselines=n_baselines,
            internal_batch_size=internal_batch_size,
            seed=seed,
        )
        attribution = baseline.attribution(call)  # (B, T, F)
    importance, per_sample = aggregate(attribution.detach(), mask, "mean")
    return FeatureAttribution(
        importance=importance,
        per_sample=per_sample,
        ranking=_ranking(importance),
        method=info.name,
        aggregation="mean",
    )
