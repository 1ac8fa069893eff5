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

:func:`unroll_recurrent` runs an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` step by step from its weights,
a literal reference that the tests check against PyTorch's modules. The gated mappings do not
loop over time: they take every step's previous state from one fused run of the first layer and
compute all steps' gates at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from leanxai.core.errors import InputError, LayerError
from leanxai.core.hooks import capture, eval_mode, input_of
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers import registry

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
    "minmax",
    "unroll_recurrent",
]

logger = logging.getLogger(__name__)

Mapping = Literal["input_term", "candidate", "gated"]
Aggregation = Literal["mean", "mean_minus_std", "inverse"]
Norm = Literal["l1", "l2"]

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

RANKING_METHODS: tuple[str, ...] = ("deepactif", "ig", "deeplift", "shap", "ablation")
"""Method names of :func:`feature_ranking`."""

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


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
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= features:
            raise ValueError(f"k must be an int in 1..{features}, got {k!r}")
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
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if activations.dim() != 3:
        raise ValueError(f"activations must be (B, T, F), got shape {tuple(activations.shape)}")
    values = activations.detach().to(torch.float64).abs()  # (B, T, F)
    batch, steps, _ = values.shape
    if mask is not None and tuple(mask.shape) != (batch, steps):
        raise ValueError(f"mask must have shape (B, T) = {(batch, steps)}, got {tuple(mask.shape)}")
    if mask is not None and not bool(mask.any(dim=1).all()):
        raise ValueError("mask leaves a sequence with no valid step")
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


# -- the unrolled recurrence ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Direction:
    """One direction of one layer: its weights in the computation's dtype."""

    w_ih: torch.Tensor  # (G * H, F)
    w_hh: torch.Tensor  # (G * H, P)
    b_ih: torch.Tensor | None  # (G * H,)
    b_hh: torch.Tensor | None  # (G * H,)
    w_hr: torch.Tensor | None  # (P, H), LSTM projections only


def _direction(module: nn.RNNBase, layer: int, reverse: bool, dtype: torch.dtype) -> _Direction:
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")

    def get(name: str) -> torch.Tensor | None:
        value = getattr(module, name + suffix, None)
        return None if value is None else value.detach().to(dtype)

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    assert w_ih is not None and w_hh is not None
    return _Direction(w_ih, w_hh, get("bias_ih"), get("bias_hh"), get("weight_hr"))


def _weight_dtype(module: nn.RNNBase) -> torch.dtype:
    weight = module.weight_ih_l0
    assert isinstance(weight, torch.Tensor)
    return weight.dtype


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.linear(x, weight, bias)


def _step(
    mode: str, d: _Direction, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``(x (B, F), h (B, P), c (B, H)) -> (h', c')`` in PyTorch's equations."""
    gi = _linear(x, d.w_ih, d.b_ih)  # (B, G*H)
    gh = _linear(h, d.w_hh, d.b_hh)  # (B, G*H)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c_new = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h_new = o.sigmoid() * c_new.tanh()  # (B, H)
        if d.w_hr is not None:
            h_new = _linear(h_new, d.w_hr, None)  # (B, P)
        return h_new, c_new
    if mode == "GRU":
        gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
        r, z = (gi_r + gh_r).sigmoid(), (gi_z + gh_z).sigmoid()
        n = (gi_n + r * gh_n).tanh()
        return (1 - z) * n + z * h, c
    pre = gi + gh
    return (pre.tanh() if mode == "RNN_TANH" else pre.relu()), c


def _run_direction(
    module: nn.RNNBase,
    d: _Direction,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one direction over ``x (B, T, F)`` step by step; returns outputs ``(B, T, P)`` and
    the last state ``(B, P)``.

    At a masked step the state is carried over unchanged and the output is zero, so each
    sequence's valid steps are processed as a packed sequence would process them.
    """
    batch, steps, _ = x.shape
    width = d.w_hh.shape[1]
    h = x.new_zeros(batch, width)
    c = x.new_zeros(batch, module.hidden_size)
    outputs = x.new_zeros(batch, steps, width)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        h_new, c_new = _step(module.mode, d, x[:, t], h, c)
        if mask is not None:
            valid = mask[:, t, None]  # (B, 1)
            h_new = torch.where(valid, h_new, h)
            c_new = torch.where(valid, c_new, c)
        h, c = h_new, c_new
        outputs[:, t] = h if mask is None else h * mask[:, t, None]
    return outputs, h


# -- the gated mappings, vectorised over time steps -----------------------------------------------

# Elements of the local Jacobians of one block of sequences: small enough that a block's
# intermediates stay in cache, which matters more than fewer, larger tensor operations.
_JACOBIAN_BLOCK = 1 << 19


def _processing_order(mask: torch.Tensor | None, steps: int, reverse: bool) -> torch.Tensor | None:
    """``(B, T)`` int64: for each sequence, its valid steps in the order one direction reads
    them, then its masked steps; ``None`` for the forward direction without a mask."""
    if mask is None:
        if not reverse:
            return None
        return torch.arange(steps - 1, -1, -1)[None, :]  # (1, T)
    position = torch.arange(steps, device=mask.device)[None, :]  # (1, T)
    read = (steps - 1 - position) if reverse else position
    key = torch.where(mask, read, steps + position)  # (B, T)
    return key.argsort(dim=1, stable=True)


def _fused_states(module: nn.RNNBase, d: _Direction, x: torch.Tensor) -> torch.Tensor:
    """The hidden states ``(B, T, P)`` of one direction of one layer, run forward over ``x``
    ``(B, T, F)`` from a zero state in one call of PyTorch's fused kernel.

    ``torch.lstm``/``gru``/``rnn_tanh``/``rnn_relu`` are the kernels that ``nn.LSTM`` and its
    siblings call, here with the direction's weights as a one-layer, one-direction module would
    pass them: the user's module is not called again (so its hooks do not fire), and no copy of
    it is built (building one costs as much as the run on small inputs).
    """
    batch = x.shape[0]
    weights = [d.w_ih, d.w_hh]
    if d.b_ih is not None and d.b_hh is not None:
        weights += [d.b_ih, d.b_hh]
    if d.w_hr is not None:
        weights.append(d.w_hr)
    h0 = x.new_zeros(1, batch, d.w_hh.shape[1])
    # has_biases, num_layers, dropout, train, bidirectional, batch_first
    options = (d.b_ih is not None, 1, 0.0, False, False, True)
    with warnings.catch_warnings():
        # cuDNN's notice that the weights are not one flat buffer: they are copied per call.
        warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk")
        if module.mode == "LSTM":
            c0 = x.new_zeros(1, batch, module.hidden_size)
            return torch.lstm(x, (h0, c0), weights, *options)[0]
        run = {"GRU": torch.gru, "RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu}
        return run[module.mode](x, h0, weights, *options)[0]


def _linear_scan(decay: torch.Tensor, increment: torch.Tensor) -> torch.Tensor:
    """``c_t = decay_t c_{t-1} + increment_t`` from ``c_{-1} = 0`` for every ``t`` along
    dimension 1, by composing the affine steps in ``log2 T`` doubling rounds."""
    a, c = decay.clone(), increment.clone()
    shift, steps = 1, decay.shape[1]
    while shift < steps:
        # Element t holds the composition of steps t - shift + 1..t; prepend t - shift's.
        c[:, shift:] = torch.addcmul(c[:, shift:], a[:, shift:], c[:, :-shift])
        if 2 * shift < steps:
            a[:, shift:] = a[:, shift:] * a[:, :-shift]
        shift *= 2
    return c


def _shift_in_zero(states: torch.Tensor) -> torch.Tensor:
    """``(B, T, W)`` states at steps ``t`` -> the states at ``t - 1``, zero at ``t = 0``."""
    return torch.cat([states.new_zeros(states[:, :1].shape), states[:, :-1]], dim=1)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)`` as ``2 sigmoid(2x) - 1``: the same to rounding, and several times faster on
    CPU, where PyTorch's ``tanh`` is not vectorised as its ``sigmoid`` is."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


def _gate_coefficients(
    mode: str, d: _Direction, x: torch.Tensor, h_prev: torch.Tensor, mapping: str
) -> dict[int, torch.Tensor]:
    """``d h_t / d(W_ih x_t)`` at fixed previous state, diagonal in each gate block, for ``x``
    ``(B, T, F)`` and the previous states ``h_prev (B, T, P)``, all steps at once: gate block
    (in PyTorch's order) -> ``(B, T, H)``, leaving out the blocks that are zero (all but the
    candidate's for ``"candidate"``)."""
    gi = _linear(x, d.w_ih, d.b_ih)  # (B, T, G*H)
    gh = _linear(h_prev, d.w_hh, d.b_hh)  # (B, T, G*H)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=2)
        i, f, g, o = i.sigmoid(), f.sigmoid(), _tanh(g), o.sigmoid()
        c = _linear_scan(f, i * g)  # (B, T, H), c_t
        tanh_c = _tanh(c)
        dc = o * (1 - tanh_c**2)  # dh/dc
        a_g = dc * i * (1 - g**2)
        if mapping != "gated":
            return {2: a_g}
        a_i = dc * g * i * (1 - i)
        a_f = dc * _shift_in_zero(c) * f * (1 - f)
        a_o = tanh_c * o * (1 - o)
        return {0: a_i, 1: a_f, 2: a_g, 3: a_o}
    if mode == "GRU":
        gi_r, gi_z, gi_n = gi.chunk(3, dim=2)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=2)
        r, z = (gi_r + gh_r).sigmoid(), (gi_z + gh_z).sigmoid()
        n = _tanh(gi_n + r * gh_n)
        a_n = (1 - z) * (1 - n**2)
        if mapping != "gated":
            return {2: a_n}
        a_r = a_n * gh_n * r * (1 - r)
        a_z = (h_prev - n) * z * (1 - z)
        return {0: a_r, 1: a_z, 2: a_n}
    pre = gi + gh
    if mode == "RNN_TANH":
        return {0: 1 - _tanh(pre) ** 2}
    return {0: (pre > 0).to(pre.dtype)}


def _jacobian_norms(
    mode: str, d: _Direction, coefficients: dict[int, torch.Tensor], norm: Norm
) -> torch.Tensor:
    """``(B, T, F)``: ``||J_t[:, f]||`` over hidden units of the local Jacobians ``J_t =
    W_hr sum_g diag(coefficients[g]_t) W_ih[g]`` (``W_hr``: LSTM projections only)."""
    hidden, features = d.w_ih.shape[0] // _GATES[mode], d.w_ih.shape[1]
    # (G, F, H): each gate's input weights with the hidden units last, so that the sum over
    # them below runs over contiguous memory.
    weights = d.w_ih.view(_GATES[mode], hidden, features).transpose(1, 2).contiguous()
    jacobian: torch.Tensor | None = None  # (B, T, F, H), J_t transposed
    for gate, a in coefficients.items():
        if jacobian is None:
            jacobian = a[:, :, None, :] * weights[gate]
        else:
            jacobian.addcmul_(a[:, :, None, :], weights[gate])
    assert jacobian is not None
    if d.w_hr is not None:
        jacobian = jacobian @ d.w_hr.T  # (B, T, F, P)
    if norm == "l2":
        return jacobian.mul_(jacobian).sum(dim=3).sqrt_()
    return jacobian.abs_().sum(dim=3)


def _direction_scores(
    module: nn.RNNBase,
    d: _Direction,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    reverse: bool,
    mapping: str,
    norm: Norm,
) -> torch.Tensor:
    """Per-step scores ``(B, T, F)`` of one direction of the first layer, zero at masked steps.

    Each sequence's valid steps are gathered in the order the direction reads them and moved to
    the front, so one fused forward run from a zero state gives, at every valid step, the state
    a packed sequence would have there (what follows a sequence's last valid step cannot
    change it); the gates of all steps then follow from the previous states at once.
    """
    order = _processing_order(mask, x.shape[1], reverse)  # (B, T) or None
    read = x if order is None else x.gather(1, order[:, :, None].expand_as(x).to(x.device))
    h_prev = _shift_in_zero(_fused_states(module, d, read))  # (B, T, P)
    _, steps, features = x.shape
    block = max(1, _JACOBIAN_BLOCK // (steps * module.hidden_size * features))  # sequences
    sizes = [
        _jacobian_norms(
            module.mode, d, _gate_coefficients(module.mode, d, part, h_part, mapping), norm
        )
        for part, h_part in zip(read.split(block), h_prev.split(block), strict=True)
    ]
    scores = read.abs() * torch.cat(sizes)  # (B, T, F)
    if order is not None:
        index = order[:, :, None].expand_as(scores).to(scores.device)
        scores = torch.zeros_like(scores).scatter_(1, index, scores)
    return scores if mask is None else torch.where(mask[:, :, None], scores, 0.0)


def _check_recurrent(module: object, name: str = "module") -> nn.RNNBase:
    if not isinstance(module, nn.RNNBase) or module.mode not in _GATES:
        raise TypeError(f"{name} must be a torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    return module


def unroll_recurrent(
    module: nn.RNNBase,
    inputs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    num_layers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` step by step from its weights.

    The equivalent unrolled computation of the module in eval mode (no dropout between layers),
    from a zero initial state, batched over samples: torch operations on ``(B, H)`` per step, in
    PyTorch's gate order and equations. LSTM projections (``proj_size``) are supported.

    Parameters
    ----------
    module
        The recurrent module.
    inputs
        ``(B, T, F)`` or ``(T, B, F)`` as ``module.batch_first`` says.
    mask
        ``(B, T)`` bool, true at valid steps. Each direction then runs over each sequence's valid
        steps only (the state is carried over a masked step), which for right padding is exactly
        what the module computes for the corresponding :class:`PackedSequence`; outputs at
        masked steps are zero, as :func:`~torch.nn.utils.rnn.pad_packed_sequence` pads them.
    num_layers
        Run only the first ``num_layers`` layers (default: all).

    Returns
    -------
    output : torch.Tensor
        As the module's first output: ``(B, T, D * P)`` (or ``(T, B, D * P)``) for ``D``
        directions of width ``P`` (``proj_size`` or ``hidden_size``).
    h_n : torch.Tensor
        ``(L * D, B, P)``, the last state of each layer and direction, as the module's ``h_n``.
    """
    module = _check_recurrent(module)
    x = inputs if module.batch_first else inputs.transpose(0, 1)  # (B, T, F)
    layers = module.num_layers if num_layers is None else num_layers
    if not 1 <= layers <= module.num_layers:
        raise ValueError(f"num_layers must be in 1..{module.num_layers}, got {num_layers!r}")
    dtype = torch.promote_types(x.dtype, _weight_dtype(module))
    x = x.to(dtype)
    if mask is not None:
        mask = mask.to(device=x.device, dtype=torch.bool)
    finals = []
    with torch.no_grad():
        for layer in range(layers):
            outputs = []
            for reverse in (False, True)[: 2 if module.bidirectional else 1]:
                d = _direction(module, layer, reverse, dtype)
                out, h = _run_direction(module, d, x, mask, reverse)
                outputs.append(out)
                finals.append(h)
            x = torch.cat(outputs, dim=2)
    output = x if module.batch_first else x.transpose(0, 1)
    return output, torch.stack(finals)


# -- validation -----------------------------------------------------------------------------------


def _check_sequences(inputs: object, batch_first: bool) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
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
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero()[:, 0].tolist()
        raise InputError(f"inputs contain NaN or infinite values (samples {bad[:10]})")
    return x


def _check_mask(mask: object, batch: int, steps: int, device: torch.device) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch, steps):
        raise InputError(f"mask must have shape (B, T) = {(batch, steps)}, got {tuple(mask.shape)}")
    empty = (~mask.any(dim=1)).nonzero()[:, 0].tolist()
    if empty:
        raise InputError(f"mask leaves sequences of length zero (samples {empty[:10]})")
    return mask.to(device)


def _first_recurrent(model: nn.Module) -> tuple[str, nn.RNNBase] | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNBase) and module.mode in _GATES:
            return name, module
    return None


def _resolve_layout(model: nn.Module, batch_first: bool | None) -> bool:
    if batch_first is not None:
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be a bool or None, got {batch_first!r}")
        return batch_first
    found = _first_recurrent(model)
    return True if found is None else bool(found[1].batch_first)


def _unpack(inputs: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    padded, lengths = pad_packed_sequence(inputs, batch_first=True)  # (B, T, F), (B,)
    steps = padded.shape[1]
    mask = torch.arange(steps)[None, :] < lengths[:, None]  # (B, T)
    return padded, mask.to(padded.device)


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
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"layer must be a dotted module name or None, got {layer!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if mapping is not None and mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS} or None, got {mapping!r}")
        if norm not in ("l1", "l2"):
            raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
        if batch_first is not None and not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be a bool or None, got {batch_first!r}")
        self.model = model
        self.layer = layer
        self.aggregation: Aggregation = aggregation  # type: ignore[assignment]
        self.mapping: Mapping | None = mapping  # type: ignore[assignment]
        self.batch_first = batch_first
        self.norm: Norm = norm
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
                raise ValueError("mask must be None when inputs is a PackedSequence")
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
        if recurrent:
            assert isinstance(module, nn.RNNBase)
            if module.input_size != features:
                raise LayerError(
                    f"recurrent layer {name!r} reads input_size={module.input_size} values per "
                    f"step but inputs have F={features} features; DeepACTIF maps a layer that "
                    "reads the features, or name a layer whose output has F values per step"
                )
        with eval_mode(self.model, self.eval_mode), torch.no_grad():
            if recurrent:
                # The forward stops where the layer is called: the layer itself runs once, below.
                seen, reached = input_of(self.model, name, model_inputs)
                if not reached:
                    raise LayerError(f"layer {name!r} did not run in the forward pass")
                assert isinstance(module, nn.RNNBase)
                layer_inputs = x
                if isinstance(seen, torch.Tensor):
                    seen = seen if module.batch_first else seen.transpose(0, 1)
                    if tuple(seen.shape) != (batch, steps, features):
                        raise LayerError(
                            f"recurrent layer {name!r} receives {tuple(seen.shape)} (as (B, T, "
                            f"F)), not the inputs' {(batch, steps, features)}; check batch_first"
                        )
                    layer_inputs = seen
                else:  # a PackedSequence: same values as the padded inputs
                    logger.debug("layer %r received a PackedSequence; using the inputs", name)
                mapping: str = self.mapping or DEFAULT_MAPPING
                activations = _recurrent_scores(module, layer_inputs, mask, mapping, self.norm)
            else:
                if self.mapping is not None:
                    raise ValueError(
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


def _recurrent_scores(
    module: nn.RNNBase,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    mapping: str,
    norm: Norm,
) -> torch.Tensor:
    """Per-step scores ``(B, T, F)`` of the first layer of ``module`` for ``x (B, T, F)``."""
    dtype = torch.promote_types(x.dtype, _weight_dtype(module))
    x = x.to(dtype)
    directions = [
        _direction(module, 0, reverse, dtype)
        for reverse in (False, True)[: 2 if module.bidirectional else 1]
    ]
    if mapping == "input_term":
        # Summed over directions, like the gated mappings.
        size = sum(d.w_ih.norm(dim=0) for d in directions)  # (F,)
        scores = x.abs() * size
        return scores if mask is None else scores * mask[:, :, None]
    total = torch.zeros_like(x)
    with torch.no_grad():
        for reverse, d in zip((False, True), directions, strict=False):
            total += _direction_scores(module, d, x, mask, reverse, mapping, norm)
    return total


# -- baselines ------------------------------------------------------------------------------------


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
    """Seed torch's and NumPy's global generators for the block, then restore both: Captum's
    ``GradientShap`` draws its interpolation points with ``np.random.uniform``."""
    import numpy as np

    devices = [device.index or 0] if device.type == "cuda" else []
    state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def feature_ranking(
    model: nn.Module,
    inputs: torch.Tensor,
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
    - ``"deepactif"``: :class:`DeepACTIF` with ``options`` (``layer``, ``mapping``,
      ``aggregation``, ``norm``); no backward pass. It does not depend on a class: ``target``,
      ``n_steps``, ``n_samples``, ``n_baselines``, ``internal_batch_size`` and ``seed`` are
      not used, and the model is called as ``model(inputs)`` (see :class:`DeepACTIF`).

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
        Seed of GradientSHAP's sampling (torch's and NumPy's global generators are seeded for
        the call and restored afterwards, so the ranking is reproducible).
    **options
        Passed to :class:`DeepACTIF` (``method="deepactif"`` only).

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
    method = registry.get(method, "recurrent").name
    if method == "deepactif":
        return DeepACTIF(model, batch_first=batch_first, **options).attribute(inputs, mask)
    if options:
        raise TypeError(f"options {sorted(options)} apply to method='deepactif' only")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n_steps = _positive_int("n_steps", n_steps)
    n_samples = _positive_int("n_samples", n_samples)
    n_baselines = _positive_int("n_baselines", n_baselines)
    if internal_batch_size is not None:
        internal_batch_size = _positive_int("internal_batch_size", internal_batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    layout = _resolve_layout(model, batch_first)
    x = _check_sequences(inputs, layout).detach()  # (B, T, F)
    batch, steps, features = x.shape
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
        classes = resolve_target(target, logits)  # (B,)
        additional = extra if extra else None
        if method == "ig":
            attribution = attr.IntegratedGradients(forward).attribute(
                x.clone(),
                baselines=torch.zeros_like(x),
                target=classes,
                additional_forward_args=additional,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
            )
        elif method == "deeplift":
            attribution = attr.DeepLift(forward).attribute(
                x.clone(),
                baselines=torch.zeros_like(x),
                target=classes,
                additional_forward_args=additional,
            )
        elif method == "shap":
            with _seeded(seed, x.device):
                generator = torch.Generator().manual_seed(seed)
                pick = torch.randperm(batch, generator=generator)[: min(n_baselines, batch)]
                background = x[pick.to(x.device)].clone()  # (n, T, F)
                attribution = attr.GradientShap(forward).attribute(
                    x.clone(),
                    baselines=background,
                    n_samples=n_samples,
                    stdevs=0.0,
                    target=classes,
                    additional_forward_args=additional,
                )
        else:
            feature_mask = torch.arange(features, device=x.device).view(1, 1, features)
            with torch.no_grad():
                attribution = attr.FeatureAblation(forward).attribute(
                    x.clone(),
                    baselines=0.0,
                    target=classes,
                    additional_forward_args=additional,
                    feature_mask=feature_mask,
                    perturbations_per_eval=max(1, min(features, 16)),
                )
    importance, per_sample = aggregate(attribution.detach(), mask, "mean")
    return FeatureAttribution(
        importance=importance,
        per_sample=per_sample,
        ranking=_ranking(importance),
        method=method,
        aggregation="mean",
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
        return feature_ranking(
            self.model, inputs, self.method, target=target, mask=mask, **{**self.options, **options}
        )


_RANKING_SUMMARIES = {
    "deepactif": ("no", "DeepACTIF: gated first-layer activations, one forward pass"),
    "ig": ("many", "Integrated Gradients (Captum), mean |attribution| per feature"),
    "deeplift": ("yes", "DeepLIFT (Captum; gradient x input inside the recurrent layer)"),
    "shap": ("many", "GradientSHAP (Captum), background drawn from the inputs"),
    "ablation": ("no", "feature ablation (Captum), one forward pass per feature"),
}
for _name in RANKING_METHODS:
    _backward, _summary = _RANKING_SUMMARIES[_name]
    registry.register(
        _name,
        families="recurrent",
        output="feature ranking",
        backward=_backward,  # type: ignore[arg-type]
        summary=_summary,
    )(functools.partial(RankingMethod, _name))
