"""DeepACTIF: rank the input features of a recurrent network by its activations.

DeepACTIF (B. W. Hosp, "DeepACTIF: Efficient Feature Attribution via Activation Traces in Neural
Sequence Models", arXiv:2509.19362, 2025) scores each input feature of an LSTM from the
activations of one forward pass, with no backward pass and no input perturbation, and aggregates
the per-step scores over time steps and samples with an *inverse-weighted* rule that favours
features whose activation is strong and stable over those that are strong but noisy. The rule is
implemented here as ``aggregation="inverse"``, beside plain means, and with several explicit ways
of mapping the network's activations back to input features.

Two public verbs:

- :class:`DeepACTIF` ``(model).attribute(inputs, mask=None)`` -> :class:`FeatureAttribution`;
- :func:`feature_ranking` ``(model, inputs, method)``: the same result type for DeepACTIF and for
  the gradient and perturbation baselines (Integrated Gradients, DeepLIFT, GradientSHAP and
  feature ablation, through Captum), each reduced to one score per feature.

This module is the method: the result, the aggregation, the input checks and :class:`DeepACTIF`.
The recurrent maths (the mappings' gates and Jacobians, and :func:`unroll_recurrent`, a literal
step-by-step reference that the tests check against PyTorch's modules) live in
:mod:`leanxai.explainers.recurrent_math`; the Captum baselines and :func:`feature_ranking` in
:mod:`leanxai.explainers.sequence_baselines`. Both are re-exported here.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError, LayerError
from leanxai.core.hooks import capture, eval_mode, input_of
from leanxai.core.targets import Target
from leanxai.explainers import registry
from leanxai.explainers.recurrent_math import (
    Norm,
    _check_recurrent,
    _first_recurrent,
    _recurrent_scores,
    unroll_recurrent,
)

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_AGGREGATION",
    "DEFAULT_MAPPING",
    "MAPPINGS",
    "RANKING_METHODS",
    "DeepACTIF",
    "FeatureAttribution",
    "RankingMethod",
    "aggregate",
    "feature_ranking",
    "front_end_scores",
    "minmax",
    "unroll_recurrent",
]

logger = logging.getLogger(__name__)

Mapping = Literal["input_term", "candidate", "gated"]
Aggregation = Literal["mean", "mean_minus_std", "inverse"]

MAPPINGS: tuple[str, ...] = ("input_term", "candidate", "gated")
"""Mappings from a recurrent layer's activations to its input features (see :class:`DeepACTIF`)."""

AGGREGATIONS: tuple[str, ...] = ("mean", "mean_minus_std", "inverse")
"""Aggregations of ``|A|`` over time steps and samples (see :func:`aggregate`)."""

# Chosen by benchmarks/deepactif.py (results/deepactif.md): over 3 data sets x LSTM/GRU/BiLSTM x
# k = 10..50% x 5 seeds, retraining on gated/mean's top-k features scores best of the nine
# mapping x aggregation pairs (mean test accuracy 0.841; every other pair lower, Wilcoxon
# p < 0.05 over 225 pairs); the paper's inverse rule scores 0.682-0.824 (0.725 with gated), far
# behind the plain mean with every mapping. input_term/mean
# recovers one more informative feature on the synthetic set (42/42 vs 40/42) but loses on
# JapaneseVowels. The one place to change them.
DEFAULT_MAPPING: Mapping = "gated"
DEFAULT_AGGREGATION: Aggregation = "mean"


# -- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureAttribution:
    """One importance score per input feature, and how it was obtained.

    Attributes
    ----------
    importance
        ``(F,)`` float64, higher is more important.
    per_sample
        ``(B, F)`` float64: each sample's mean absolute score over its valid time steps (for
        every aggregation; the aggregation applies to ``importance`` only).
    ranking
        ``(F,)`` int64, the feature indices by decreasing ``importance`` (ties: lower index first).
    method
        ``"deepactif"``, ``"ig"``, ``"deeplift"``, ``"shap"`` or ``"ablation"``.
    aggregation
        The aggregation over steps and samples (``"mean"`` for the baselines).
    mapping
        DeepACTIF's mapping from activations to features (``"layer"`` when the activations are a
        named layer's output); ``None`` for the baselines.
    layer
        Dotted name of the module whose activations were used (DeepACTIF).
    family
        The model family (always ``"recurrent"`` today).
    """

    importance: torch.Tensor
    per_sample: torch.Tensor
    ranking: torch.Tensor
    method: str
    aggregation: str
    mapping: str | None = None
    layer: str | None = None
    family: str = "recurrent"

    def top(self, k: int) -> torch.Tensor:
        """The ``k`` most important feature indices, ``(k,)`` int64, best first."""
        features = int(self.ranking.numel())
        if validate.positive_int("k", k) > features:
            raise InputError(f"k must be an int in 1..{features}, got {k!r}")
        return self.ranking[:k]

    def __len__(self) -> int:
        return int(self.importance.numel())


def _ranking(importance: torch.Tensor) -> torch.Tensor:
    return torch.sort(importance, descending=True, stable=True).indices.to(torch.int64)


# -- aggregation ----------------------------------------------------------------------------------


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Rescale a vector to ``[0, 1]``: ``(v - min v) / (max v - min v)``; a constant vector -> 0."""
    low, high = values.min(), values.max()
    span = high - low
    if not bool(span > 0):
        return torch.zeros_like(values)
    return (values - low) / span


def aggregate(
    activations: torch.Tensor,
    mask: torch.Tensor | None = None,
    aggregation: Aggregation | str = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aggregate per-step feature scores ``|A|`` over time steps and samples.

    Let ``a_f`` and ``s_f`` be the mean and the (population, ``ddof=0``) standard deviation of
    ``|A[b, t, f]|`` over all valid ``(b, t)`` (``mask`` true; every step when ``mask`` is
    ``None``), so a long sequence weighs more than a short one. Then:

    - ``"mean"``: ``score_f = a_f``, the mean absolute activation;
    - ``"mean_minus_std"``: ``score_f = a_f - s_f``, a penalty for unstable activation in the
      activation's own units (the ranking does not change when ``A`` is scaled);
    - ``"inverse"``, DeepACTIF's inverse-weighted rule: ``score_f = (minmax(a)_f + 1 -
      minmax(s)_f) / 2``, with :func:`minmax` over the features (a constant vector maps to zeros,
      so constant ``s`` leaves ``(minmax(a) + 1) / 2``). Strong (high ``a``) and stable (low
      ``s``) features score near 1.

    Parameters
    ----------
    activations
        ``(B, T, F)`` per-step scores; the absolute value is taken here.
    mask
        ``(B, T)`` bool, true at valid steps; ``None``: all steps.
    aggregation
        ``"mean"``, ``"mean_minus_std"`` or ``"inverse"``.

    Returns
    -------
    importance : torch.Tensor
        ``(F,)`` float64.
    per_sample : torch.Tensor
        ``(B, F)`` float64, each sample's mean of ``|A|`` over its valid steps.
    """
    validate.choice("aggregation", aggregation, AGGREGATIONS)
    validate.tensor("activations", activations)
    if activations.dim() != 3:
        raise InputError(f"activations must be (B, T, F), got shape {tuple(activations.shape)}")
    values = activations.detach().to(torch.float64).abs()  # (B, T, F)
    batch, steps, _ = values.shape
    if mask is not None:
        validate.tensor("mask", mask)
        if tuple(mask.shape) != (batch, steps):
            raise InputError(
                f"mask must have shape (B, T) = {(batch, steps)}, got {tuple(mask.shape)}"
            )
        if not bool(mask.any(dim=1).all()):
            raise InputError("mask leaves a sequence with no valid step")
    if mask is None:
        weights = torch.ones(batch, steps, dtype=torch.float64, device=values.device)
    else:
        weights = mask.to(device=values.device, dtype=torch.float64)  # (B, T)
    counts = weights.sum(dim=1, keepdim=True)  # (B, 1)
    weighted = values * weights[:, :, None]
    per_sample = weighted.sum(dim=1) / counts  # (B, F)
    total = weights.sum()
    mean = weighted.sum(dim=(0, 1)) / total  # (F,)
    if aggregation == "mean":
        return mean, per_sample
    variance = (((values - mean) ** 2) * weights[:, :, None]).sum(dim=(0, 1)) / total
    std = variance.sqrt()  # (F,)
    if aggregation == "mean_minus_std":
        return mean - std, per_sample
    return (minmax(mean) + 1 - minmax(std)) / 2, per_sample


# -- validation -----------------------------------------------------------------------------------


def _check_sequences(inputs: object, batch_first: bool) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise InputTypeError(
            f"inputs must be a torch.Tensor or a PackedSequence, got {type(inputs).__name__}"
        )
    layout = "(B, T, F)" if batch_first else "(T, B, F)"
    if inputs.dim() != 3:
        raise InputError(
            f"inputs must have shape {layout}, got {tuple(inputs.shape)}; "
            "add a batch dimension with inputs[None] for one sequence"
        )
    if not inputs.dtype.is_floating_point:
        raise InputError(f"inputs must be a floating tensor, got dtype {inputs.dtype}")
    x = inputs if batch_first else inputs.transpose(0, 1)  # (B, T, F)
    batch, steps, features = x.shape
    if batch == 0:
        raise InputError("inputs is an empty batch")
    if steps == 0:
        raise InputError(f"inputs has sequences of length zero (shape {tuple(inputs.shape)})")
    if features == 0:
        raise InputError(f"inputs has zero features (shape {tuple(inputs.shape)})")
    return validate.finite("inputs", x)


def _check_mask(mask: object, batch: int, steps: int, device: torch.device) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise InputTypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch, steps):
        raise InputError(f"mask must have shape (B, T) = {(batch, steps)}, got {tuple(mask.shape)}")
    empty = (~mask.any(dim=1)).nonzero()[:, 0].tolist()
    if empty:
        raise InputError(f"mask leaves sequences of length zero (samples {empty[:10]})")
    return mask.to(device)


def _check_batch_first(batch_first: object) -> bool | None:
    if batch_first is not None and not isinstance(batch_first, bool):
        raise InputTypeError(f"batch_first must be a bool or None, got {batch_first!r}")
    return batch_first


def _resolve_layout(model: nn.Module, batch_first: bool | None) -> bool:
    if batch_first is not None:
        _check_batch_first(batch_first)
        return batch_first
    found = _first_recurrent(model)
    return True if found is None else bool(found[1].batch_first)


def _unpack(inputs: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    padded, lengths = pad_packed_sequence(inputs, batch_first=True)  # (B, T, F), (B,)
    steps = padded.shape[1]
    mask = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
    return padded, mask.to(padded.device)


# -- Front ends -----------------------------------------------------------------------------------

# Elementwise activations a front end may apply before the recurrent layer, recognised by value.
_FRONT_ACTIVATIONS: dict[str, Any] = {
    "identity": lambda t: t,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
    "relu6": F.relu6,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,
}


def _front_end(model: nn.Module, features: int, width: int) -> list[tuple[str, nn.Module]]:
    """Linear(F, width) and Conv1d(F, width) modules: candidate front ends of a recurrent layer."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shape = (module.in_features, module.out_features)
        elif isinstance(module, nn.Conv1d):
            shape = (module.in_channels, module.out_channels)
        else:
            continue
        if shape == (features, width):
            found.append((name, module))
    return found


def front_end_scores(
    scores: torch.Tensor, inputs: torch.Tensor, front: nn.Linear | nn.Conv1d
) -> torch.Tensor:
    """Map per-step scores of a recurrent layer's input units back to the input features.

    The front end's pre-activation ``p[t, k] = sum_(s, f) W[k, f, t - s] x[s, f] + b[k]`` is
    linear in the inputs: feature ``f`` at step ``s`` adds exactly ``c = W[k, f, t - s] x[s, f]``
    (a Linear layer: ``s = t`` only). Each unit's score ``scores[b, t, k]`` is shared among the
    inputs in proportion to ``|c|`` (the z-rule of LRP on absolute contributions; the bias takes
    no share), so the scores' total is kept. An elementwise activation between the front end and
    the recurrent layer multiplies every contribution to a unit by the same local slope, which
    cancels in the shares; a unit it switches off reads 0, and DeepACTIF's score of it is 0. With
    an identity front end this is the identity: today's mapping.

    Parameters
    ----------
    scores
        ``(B, T, U)`` non-negative scores of the recurrent layer's ``U`` inputs.
    inputs
        ``(B, T, F)`` the model's inputs.
    front
        ``nn.Linear(F, U)`` acting on each step, or ``nn.Conv1d(F, U)`` over time with stride 1,
        zero padding and ``T`` output steps.

    Returns
    -------
    torch.Tensor
        ``(B, T, F)`` non-negative per-step feature scores.
    """
    magnitude = inputs.abs()
    weight = front.weight.detach().abs().to(inputs.dtype)
    if isinstance(front, nn.Linear):
        total = magnitude @ weight.T  # (B, T, U): sum_f |W_kf x_f|
        ratio = torch.where(total > 0, scores / total.clamp_min(1e-30), 0.0)
        return magnitude * (ratio @ weight)
    if front.padding_mode != "zeros" or front.stride != (1,) or isinstance(front.padding, str):
        if not (isinstance(front.padding, str) and front.padding == "same"):
            raise LayerError(
                f"front end {front} must be a Conv1d with stride 1 and zero padding "
                "('same' or numeric) for DeepACTIF to map its scores back"
            )
    padding = front.padding
    if isinstance(padding, str):  # "same": PyTorch pads (d (k - 1)) // 2 before
        padding = ((front.dilation[0] * (front.kernel_size[0] - 1)) // 2,)
    magnitude_t = magnitude.transpose(1, 2)  # (B, F, T)
    total = F.conv1d(magnitude_t, weight, None, 1, padding, front.dilation, front.groups)
    ratio = scores.transpose(1, 2)  # (B, U, T)
    if total.shape[-1] != ratio.shape[-1]:
        raise LayerError(
            f"front end {front} gives {total.shape[-1]} steps from {inputs.shape[1]}; DeepACTIF "
            "maps a Conv1d front end that keeps the number of steps"
        )
    ratio = torch.where(total > 0, ratio / total.clamp_min(1e-30), 0.0)
    back = F.conv_transpose1d(ratio, weight, None, 1, padding, 0, front.groups, front.dilation)
    steps = magnitude_t.shape[-1]
    if back.shape[-1] < steps:  # even kernels with "same": the last input steps reach nothing
        back = F.pad(back, (0, steps - back.shape[-1]))
    return (magnitude_t * back[..., :steps]).transpose(1, 2)


def _front_pre_activation(
    name: str,
    front: nn.Module,
    received: Any,
    produced: Any,
    x: torch.Tensor,
    batch_first: bool,
) -> torch.Tensor:
    """The front end's output as ``(B, T, U)``, after checking that it read the inputs."""
    if not isinstance(received, torch.Tensor) or not isinstance(produced, torch.Tensor):
        raise LayerError(f"front end {name!r} did not run on the inputs in the forward pass")
    if isinstance(front, nn.Conv1d):
        read, out = received.transpose(1, 2), produced.transpose(1, 2)  # (B, T, .)
    elif batch_first:
        read, out = received, produced
    else:
        read, out = received.transpose(0, 1), produced.transpose(0, 1)
    if tuple(read.shape) != tuple(x.shape) or not torch.equal(read, x):
        raise LayerError(
            f"front end {name!r} does not read the inputs as they are (it receives "
            f"{tuple(received.shape)}); DeepACTIF maps a Linear or Conv1d that reads the features"
        )
    return out


def _front_activation(pre: torch.Tensor, seen: torch.Tensor, name: str) -> str:
    """Which elementwise activation turns the front end's output into the recurrent input."""
    if pre.shape == seen.shape:
        for activation, function in _FRONT_ACTIVATIONS.items():
            if torch.allclose(function(pre), seen, rtol=1e-5, atol=1e-6):
                return activation
    raise LayerError(
        f"the recurrent layer's input is not an elementwise activation of front end {name!r}'s "
        f"output (known: {', '.join(_FRONT_ACTIVATIONS)}); DeepACTIF maps a Linear or Conv1d "
        "front end, optionally followed by one of those"
    )


# -- DeepACTIF ------------------------------------------------------------------------------------


class DeepACTIF:
    """DeepACTIF: feature importance of a recurrent network from one forward pass.

    The first recurrent layer (the first ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` in
    ``model.named_modules()``, or the one named by ``layer``) reads the features directly: its
    gate pre-activations are ``W_ih x_t + W_hh h_{t-1} + b``, linear in the input, so feature
    ``f`` at step ``t`` adds exactly ``W_ih[:, f] x[t, f]`` to them. ``mapping`` says how that
    term becomes a per-step score ``A[b, t, f] >= 0``:

    - ``"input_term"``: ``|x[t, f]| * ||W_ih[:, f]||_2``, the size of the feature's exact term
      in all gate pre-activations (all gates stacked), a static weighting of the input;
    - ``"candidate"``: the first-order contribution of ``x[t, f]`` to ``h_t`` along the path
      through the candidate only, at the step's own gate values. LSTM (gates ``i, f, g, o``;
      ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``):
      ``|x[t, f]| * || o_t (1 - tanh(c_t)^2) i_t (1 - g_t^2) W_ig[:, f] ||``; GRU (``h_t = (1 -
      z) n + z h_{t-1}``, ``n = tanh(W_in x + b_in + r (W_hn h_{t-1} + b_hn))``):
      ``|x[t, f]| * || (1 - z_t)(1 - n_t^2) W_in[:, f] ||``;
    - ``"gated"``: the full first-order term ``|x[t, f]| * || J_t[:, f] ||`` with ``J_t = d h_t /
      d x_t`` at fixed ``(h_{t-1}, c_{t-1})``, the step's local Jacobian, which adds to the
      candidate path the paths through the gates: for an LSTM ``J = diag(o (1 - tanh^2 c)) [
      diag(i (1 - g^2)) W_ig + diag(g i (1 - i)) W_ii + diag(c_{t-1} f (1 - f)) W_if ] +
      diag(tanh(c) o (1 - o)) W_io``; for a GRU ``J = diag((1 - z)(1 - n^2)) [W_in + diag((W_hn
      h_{t-1} + b_hn) r (1 - r)) W_ir] + diag((h_{t-1} - n) z (1 - z)) W_iz``. It is the
      first-order Taylor term of the hidden state in the step's own input: how much of the
      feature's exact pre-activation term the gates let through to ``h_t`` at that step. It
      does not follow the input's effect into later steps.

    For an ``nn.RNN`` both gated mappings are ``|x| * || act'(pre) * W_ih[:, f] ||``. With LSTM
    projections the Jacobian is multiplied by ``W_hr``. The norm over hidden units is ``norm``.
    Bidirectional layers: the scores of the two directions are added (each with its own
    weights and gates; the backward direction runs from each sequence's last valid step).
    Stacked layers: only the first layer sees the input, so only its weights and gates are
    used. The gates come from the input the layer receives, captured from ``model(inputs)``,
    whose forward stops there: the first layer then runs on it, from a zero state, as one call of
    PyTorch's fused recurrent kernel per direction with that layer's weights (under
    :func:`torch.no_grad`; the module itself is not called again), which gives every step's
    previous state ``h_{t-1}``; the gates of all steps then follow at once from ``W_ih x_t +
    b_ih + W_hh h_{t-1} + b_hh``, and an LSTM's cell states from their linear recurrence
    ``c_t = f_t c_{t-1} + i_t g_t`` in ``log2 T`` vectorised rounds. No Python loop runs over
    time steps.

    When ``layer`` names a module that is not recurrent, ``A`` is that module's output, which
    must have the inputs' shape (e.g. a ``Linear(F, F)`` input projection), captured during the
    forward pass; ``mapping`` is then reported as ``"layer"``.

    ``A`` is aggregated over valid steps and samples by ``aggregation`` (:func:`aggregate`);
    ``"inverse"`` is the paper's inverse-weighted rule.

    Parameters
    ----------
    model
        Maps ``inputs`` to ``(B, K)`` logits; called once, as ``model(inputs)``, in eval mode
        (for a recurrent layer, only up to that layer).
    layer
        Dotted name of the module whose activations to use (default: the first recurrent layer).
    aggregation
        ``"mean"``, ``"mean_minus_std"`` or ``"inverse"`` (default :data:`DEFAULT_AGGREGATION`).
    mapping
        ``"input_term"``, ``"candidate"`` or ``"gated"`` (default :data:`DEFAULT_MAPPING`).
    batch_first
        Layout of ``inputs``: ``(B, T, F)`` when true, ``(T, B, F)`` when false; ``None`` reads
        ``batch_first`` from the first recurrent layer (``True`` if there is none).
    norm
        ``"l2"`` or ``"l1"``, the norm over hidden units of the gated mappings.
    eval_mode
        Run the forward pass in eval mode (then restore every ``training`` flag).

    Notes
    -----
    Deviations from the paper: the mappings from activations to features are ours, defined
    through the exact linear input term of the first recurrent layer as above; and the default
    aggregation is the plain mean, not the paper's inverse-weighted rule, which ranked features
    markedly worse in ``benchmarks/deepactif.py`` (retraining on the top-k features of three
    data sets and three recurrent models; ``aggregation="inverse"`` selects the paper's rule).
    The ``mask`` makes the recurrence skip padded steps (as packing would; gaps inside a
    sequence are skipped too); the model's own forward pass is only used to capture the
    recurrent layer's input, and stops there (a pre-hook ends it when the layer is called, so
    neither the layer nor anything after it runs). Cost: the model's layers before the first
    recurrent layer, one fused pass of that layer, and no more; ``O(B T F H)`` memory for the
    local Jacobians, bounded by processing the sequences in blocks.
    """

    name = "deepactif"

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        aggregation: Aggregation | str = DEFAULT_AGGREGATION,
        mapping: Mapping | str | None = None,
        batch_first: bool | None = None,
        *,
        norm: Norm | str = "l2",
        eval_mode: bool = True,
    ) -> None:
        validate.instance("model", model, nn.Module)
        if layer is not None and not isinstance(layer, str):
            raise InputTypeError(f"layer must be a dotted module name or None, got {layer!r}")
        validate.choice("aggregation", aggregation, AGGREGATIONS)
        if mapping is not None:
            validate.choice("mapping", mapping, MAPPINGS)
        validate.choice("norm", norm, ("l1", "l2"))
        _check_batch_first(batch_first)
        self.model = model
        self.layer = layer
        self.aggregation: Aggregation = aggregation  # type: ignore[assignment]
        self.mapping: Mapping | None = mapping  # type: ignore[assignment]
        self.batch_first = batch_first
        self.norm: Norm = norm  # type: ignore[assignment]
        self.eval_mode = eval_mode

    def __repr__(self) -> str:
        return (
            f"DeepACTIF({type(self.model).__name__}, layer={self.layer!r}, "
            f"mapping={self.mapping or DEFAULT_MAPPING!r}, aggregation={self.aggregation!r})"
        )

    def _target(self) -> tuple[str, nn.Module]:
        """The module whose activations are used, with its name."""
        if self.layer is None:
            found = _first_recurrent(self.model)
            if found is None:
                raise LayerError(
                    f"{type(self.model).__name__} has no nn.LSTM, nn.GRU or nn.RNN; name a layer "
                    "whose output has one value per input feature with layer="
                )
            return found
        try:
            module = self.model.get_submodule(self.layer)
        except AttributeError as error:
            raise LayerError(
                f"layer {self.layer!r} does not exist in {type(self.model).__name__}"
            ) from error
        if isinstance(module, nn.RNNBase):
            _check_recurrent(module, f"layer {self.layer!r}")
        return self.layer, module

    def attribute(
        self, inputs: torch.Tensor | PackedSequence, mask: torch.Tensor | None = None
    ) -> FeatureAttribution:
        """Rank the input features of ``inputs``.

        Parameters
        ----------
        inputs
            ``(B, T, F)`` (or ``(T, B, F)``, see ``batch_first``) floating tensor on the model's
            device, or a :class:`~torch.nn.utils.rnn.PackedSequence` (then ``mask`` must be
            ``None``; the mask comes from the sequence lengths).
        mask
            ``(B, T)`` bool, true at valid steps: padded steps are left out of the recurrence
            and of the aggregation.

        Returns
        -------
        FeatureAttribution
            ``importance`` ``(F,)``, ``per_sample`` ``(B, F)`` and ``ranking``.

        Raises
        ------
        InputError
            Inputs of the wrong rank or dtype, NaN or infinite values, sequences of length zero,
            or a mask of the wrong shape or dtype.
        LayerError
            No recurrent layer and no ``layer``, a ``layer`` that does not exist, or activations
            whose width is not the number of features.
        """
        name, module = self._target()
        recurrent = isinstance(module, nn.RNNBase)
        if isinstance(inputs, PackedSequence):
            if mask is not None:
                raise InputError("mask must be None when inputs is a PackedSequence")
            model_inputs: Any = inputs
            x, mask = _unpack(inputs)
            if not x.dtype.is_floating_point:
                raise InputError(f"inputs must be floating, got dtype {x.dtype}")
            x = _check_sequences(x, batch_first=True)
            batch_first = True
        else:
            batch_first = (
                self.batch_first
                if self.batch_first is not None
                else (
                    bool(module.batch_first)
                    if isinstance(module, nn.RNNBase)
                    else _resolve_layout(self.model, None)
                )
            )
            x = _check_sequences(inputs, batch_first)  # (B, T, F)
            model_inputs = inputs
        batch, steps, features = x.shape
        mask = _check_mask(mask, batch, steps, x.device)
        front: tuple[str, nn.Module] | None = None
        if recurrent:
            assert isinstance(module, nn.RNNBase)
            if module.input_size != features:
                candidates = _front_end(self.model, features, module.input_size)
                if len(candidates) != 1:
                    found = f" (candidates: {', '.join(n for n, _ in candidates)})" * bool(
                        candidates
                    )
                    raise LayerError(
                        f"recurrent layer {name!r} reads input_size={module.input_size} values "
                        f"per step but inputs have F={features} features, and no single "
                        f"Linear({features}, {module.input_size}) or Conv1d front end maps one "
                        f"to the other{found}; name a layer whose output has F values per step"
                    )
                front = candidates[0]
        with eval_mode(self.model, self.eval_mode), torch.no_grad():
            if recurrent:
                # The forward stops where the layer is called: the layer itself runs once, below.
                watched = [front[0]] if front is not None else []
                with capture(self.model, [], inputs_of=watched) as record:
                    seen, reached = input_of(self.model, name, model_inputs)
                if not reached:
                    raise LayerError(f"layer {name!r} did not run in the forward pass")
                assert isinstance(module, nn.RNNBase)
                layer_inputs = x
                width = features if front is None else module.input_size
                if isinstance(seen, torch.Tensor):
                    seen = seen if module.batch_first else seen.transpose(0, 1)
                    if tuple(seen.shape) != (batch, steps, width):
                        raise LayerError(
                            f"recurrent layer {name!r} receives {tuple(seen.shape)} (as (B, T, "
                            f"F)), not {(batch, steps, width)}; check batch_first"
                        )
                    layer_inputs = seen
                elif front is not None:
                    raise LayerError(
                        f"recurrent layer {name!r} received a {type(seen).__name__}; DeepACTIF "
                        "maps a front end for padded tensor inputs (pass a mask)"
                    )
                else:  # a PackedSequence: same values as the padded inputs
                    logger.debug("layer %r received a PackedSequence; using the inputs", name)
                mapping: str = self.mapping or DEFAULT_MAPPING
                activations = _recurrent_scores(module, layer_inputs, mask, mapping, self.norm)
                if front is not None:  # (B, T, U) scores of the layer's inputs -> (B, T, F)
                    front_name, front_module = front
                    pre = _front_pre_activation(
                        front_name,
                        front_module,
                        record.inputs.get(front_name),
                        record.output_of.get(front_name),
                        x,
                        batch_first,
                    )
                    _front_activation(pre, layer_inputs, front_name)
                    assert isinstance(front_module, (nn.Linear, nn.Conv1d))
                    activations = front_end_scores(activations, x, front_module)
            else:
                if self.mapping is not None:
                    raise InputError(
                        f"mapping={self.mapping!r} applies to a recurrent layer; layer "
                        f"{name!r} is a {type(module).__name__}, whose output is used as is"
                    )
                with capture(self.model, [name]) as record:
                    self.model(model_inputs)
                if name not in record.outputs:
                    raise LayerError(f"layer {name!r} did not run in the forward pass")
                output = record.outputs[name]
                shape = (batch, steps, features) if batch_first else (steps, batch, features)
                if tuple(output.shape) != shape:
                    raise LayerError(
                        f"layer {name!r} outputs {tuple(output.shape)}; DeepACTIF needs one "
                        f"activation per input feature and step, {shape}"
                    )
                activations = output if batch_first else output.transpose(0, 1)
                mapping = "layer"
        importance, per_sample = aggregate(activations, mask, self.aggregation)
        return FeatureAttribution(
            importance=importance,
            per_sample=per_sample,
            ranking=_ranking(importance),
            method=self.name,
            aggregation=self.aggregation,
            mapping=mapping,
            layer=name,
        )


class RankingMethod:
    """A feature-ranking method of the registry bound to a model.

    ``RankingMethod("ig", model).attribute(inputs, mask)`` is
    ``feature_ranking(model, inputs, "ig", mask=mask)``; options given here are passed on.
    """

    def __init__(self, method: str, model: nn.Module, **options: Any) -> None:
        self.method = method
        self.model = model
        self.options = options

    def attribute(
        self,
        inputs: torch.Tensor | PackedSequence,
        mask: torch.Tensor | None = None,
        target: Target = None,
        **options: Any,
    ) -> FeatureAttribution:
        # feature_ranking is imported at the bottom of this module (it builds on this one).
        return feature_ranking(
            self.model, inputs, self.method, target=target, mask=mask, **{**self.options, **options}
        )


registry.register(
    DeepACTIF.name,
    families="recurrent",
    output="feature ranking",
    backward="no",
    summary="DeepACTIF: gated first-layer activations, one forward pass",
)(functools.partial(RankingMethod, DeepACTIF.name))

# The baselines build on the names above (the result, the aggregation, the input checks,
# RankingMethod), so they are imported, and register themselves, after them; this module
# re-exports them so that one import serves both (_SequenceLogits for benchmarks/deepactif.py).
from leanxai.explainers.sequence_baselines import (  # noqa: E402
    RANKING_METHODS,
    feature_ranking,
)
from leanxai.explainers.sequence_baselines import _SequenceLogits as _SequenceLogits  # noqa: E402
