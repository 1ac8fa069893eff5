"""Layer-wise relevance propagation (LRP) down to the weights of a model.

LRP (Bach et al., 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation", PLoS ONE 10(7)) redistributes a class score backwards, layer by
layer. For a linear or convolutional layer with inputs ``a_i``, weights ``w_ij`` and outputs
``z_j = sum_i a_i w_ij + b_j`` that received relevance ``R_j``, the epsilon rule gives

    R_i = sum_j a_i w_ij s_j,   s_j = R_j / (z_j + epsilon * sign(z_j)),

and the relevance that flows through the weight itself is the single term ``a_i w_ij s_j``.
Summed over the calibration samples (and, for a convolution, over the positions where the weight
is applied) this is the weight's relevance, the quantity that relevance-guided pruning and
quantisation rank weights by (cf. Yeom et al., 2021, "Pruning by explaining: A novel criterion for
deep neural network pruning", Pattern Recognition 115; Becking et al., 2022, "ECQx:
Explainability-Driven Quantization for Low-Bit and Sparse DNNs").

The computation is batched: one forward pass keeps each layer's input, and each layer's backward
step is one autograd call on detached copies of its input and weight ("gradient times input"),
which gives ``R_i`` and the ``(out, in, ...)`` weight relevance at once; there is no Python loop
over samples or weights. The model's own parameters, hooks, flags and gradients are never changed.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from leanxai.core import validate
from leanxai.core.errors import InputError, TargetError, UnsupportedLayerError
from leanxai.core.hooks import capture, eval_mode
from leanxai.core.models import logits_of
from leanxai.core.targets import resolve_target

__all__ = [
    "REDUCTIONS",
    "RULES",
    "LRPTarget",
    "Reduction",
    "Rule",
    "conservation",
    "weight_relevance",
]

logger = logging.getLogger(__name__)

Rule: TypeAlias = Literal["epsilon", "zplus", "gamma"]
RULES: tuple[str, ...] = ("epsilon", "zplus", "gamma")
"""The LRP rules :func:`weight_relevance` implements."""

Reduction: TypeAlias = Literal["sum", "absolute", "l2"]
REDUCTIONS: tuple[str, ...] = ("sum", "absolute", "l2")
"""How :func:`weight_relevance` reduces the per-sample relevances of a weight over samples."""

LRPTarget: TypeAlias = int | Sequence[int] | np.ndarray | torch.Tensor | str | None
"""``None`` (predicted class), an int, one int per sample, or ``"all"`` (every class)."""

LOGITS_KEY = "<logits>"
"""Key of the start relevance in the dictionary returned by :func:`conservation`."""

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PASS = (
    nn.ReLU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Flatten,
    nn.Unflatten,
)
_POOL = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
# Modules that compute with their children's parameters without calling them: never looked into.
_OPAQUE = (
    nn.RNNBase,
    nn.MultiheadAttention,
    nn.Transformer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)


@dataclass
class _Unit:
    """One module of the forward chain, as LRP sees it."""

    name: str
    module: nn.Module
    kind: str  # "linear", "pass", "pool", "norm" (a BatchNorm not folded) or "other"
    in_shape: tuple[int, ...]  # per sample
    norm: _BatchNorm | None = None  # a BatchNorm folded into this linear unit


@dataclass
class _Result:
    weights: dict[str, torch.Tensor]
    totals: dict[str, float]


def _kind(module: nn.Module) -> str:
    if isinstance(module, _LINEAR):
        return "linear"
    if isinstance(module, _NORM):
        # Without running statistics a BatchNorm normalises by the batch, not a fixed affine map.
        fixed = module.running_mean is not None and module.running_var is not None
        return "norm" if fixed else "other"
    if isinstance(module, _PASS):
        return "pass"
    if isinstance(module, _POOL):
        return "pool"
    return "other"


def _is_atomic(module: nn.Module) -> bool:
    if isinstance(module, _LINEAR + _NORM + _PASS + _POOL + _OPAQUE):
        return True
    if any(True for _ in module.parameters(recurse=False)):
        return True
    return not any(True for _ in module.children())


def _atomic_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules LRP treats as one step: supported layers, leaves, and anything opaque."""
    found: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        if _is_atomic(module):
            found.append((name, module))
            return
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return found


def _describe(name: str, module: nn.Module) -> str:
    return f"{name or '<model>'} ({type(module).__name__})"


def _same(produced: torch.Tensor, consumed: torch.Tensor) -> bool:
    """Whether ``consumed`` is ``produced``, up to a reshape that keeps the batch axis."""
    if produced.shape[:1] != consumed.shape[:1] or produced.numel() != consumed.numel():
        return False
    return torch.equal(produced.reshape(consumed.shape), consumed)


def _trace(
    model: nn.Module, x: torch.Tensor, skip_unsupported: bool
) -> tuple[list[_Unit], torch.Tensor]:
    """Find the chain of modules the forward runs, and check that it is a chain."""
    modules = dict(_atomic_modules(model))
    with capture(model, [], inputs_of=list(modules)) as record, torch.no_grad():
        logits = logits_of(model(x))
    called = list(record.calls)  # insertion order is call order
    repeated = [_describe(n, modules[n]) for n in called if record.calls[n] > 1]
    if repeated:
        raise UnsupportedLayerError(
            f"modules run more than once in one forward: {', '.join(repeated)}; weight_relevance "
            "supports models whose forward is a chain of modules that each run once"
        )
    unsupported = [_describe(n, modules[n]) for n in called if _kind(modules[n]) == "other"]
    if unsupported and not skip_unsupported:
        raise UnsupportedLayerError(
            f"no LRP rule covers these layers of {type(model).__name__}: "
            f"{', '.join(unsupported)}; supported are Linear, Conv1d/2d/3d, BatchNorm (with "
            "running statistics), ReLU, pooling, Flatten, Dropout and Identity. Pass "
            "skip_unsupported=True to pass relevance through them and leave their weights out"
        )
    if unsupported:
        warnings.warn(
            f"no LRP rule covers {', '.join(unsupported)}: relevance passes through them by "
            "gradient times input, and their weights get no relevance",
            stacklevel=4,
        )
    units: list[_Unit] = []
    produced, producer = x, "the inputs"
    for name in called:
        consumed, output = record.inputs.get(name), record.output_of.get(name)
        if consumed is None or output is None:
            raise UnsupportedLayerError(
                f"module {_describe(name, modules[name])} does not take and return one tensor; "
                "weight_relevance supports models whose forward is a chain of modules"
            )
        if not _same(produced, consumed):
            raise UnsupportedLayerError(
                f"the input of {_describe(name, modules[name])} is not {producer}: the forward "
                "computes something between them that is not a module (a functional call such "
                "as F.relu, a residual connection). weight_relevance supports models whose "
                "forward is a chain of modules; write such steps as modules"
            )
        units.append(_Unit(name, modules[name], _kind(modules[name]), tuple(consumed.shape[1:])))
        produced, producer = output, f"the output of {_describe(name, modules[name])}"
    if not units or not _same(produced, logits):
        raise UnsupportedLayerError(
            f"the logits of {type(model).__name__} are not {producer}; weight_relevance "
            "supports models whose forward is a chain of modules ending in the logits"
        )
    return _fold(units), logits


def _fold(units: list[_Unit]) -> list[_Unit]:
    """Fold each BatchNorm that directly follows a linear or convolutional layer into it."""
    folded: list[_Unit] = []
    for unit in units:
        previous = folded[-1] if folded else None
        if (
            unit.kind == "norm"
            and isinstance(unit.module, _BatchNorm)
            and previous is not None
            and previous.kind == "linear"
            and previous.norm is None
            # BatchNorm works on axis 1, which is the layer's output axis unless a Linear layer
            # acts on the last axis of a (B, L, C) input.
            and (not isinstance(previous.module, nn.Linear) or len(previous.in_shape) == 1)
            and getattr(
                previous.module, "out_features", getattr(previous.module, "out_channels", 0)
            )
            == unit.module.num_features
        ):
            previous.norm = unit.module
            continue
        folded.append(unit)
    return folded


def _effective(unit: _Unit) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight and bias of a linear unit with its BatchNorm folded in, detached."""
    weight = unit.module.get_parameter("weight").detach()
    own_bias = getattr(unit.module, "bias", None)
    bias = own_bias.detach() if isinstance(own_bias, torch.Tensor) else None
    norm = unit.norm
    if norm is None or norm.running_mean is None or norm.running_var is None:
        return weight, bias
    scale = torch.rsqrt(norm.running_var.detach() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.detach()
    shift = -norm.running_mean.detach() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.detach()
    weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    bias = shift if bias is None else bias * scale + shift
    return weight, bias


def _apply(module: nn.Module, a: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's map without bias, with another weight."""
    if isinstance(module, nn.Linear):
        return F.linear(a, weight)
    return module._conv_forward(a, weight, None)  # type: ignore[operator]


def _add_bias(module: nn.Module, z: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return z
    if isinstance(module, nn.Linear):
        return z + bias
    return z + bias.reshape(1, -1, *([1] * (z.dim() - 2)))


def _stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1``, so that it is never zero."""
    return torch.where(z >= 0, z + epsilon, z - epsilon)


def _rule_terms(
    rule: str, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gamma: float
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
    """The (input, weight) pairs whose contributions a rule sums, and its bias."""
    if rule == "epsilon":
        return [(a, weight)], bias
    if rule == "gamma":
        weight = weight + gamma * weight.clamp(min=0)
        bias = None if bias is None else bias + gamma * bias.clamp(min=0)
        return [(a, weight)], bias
    # zplus: the positive part of each contribution, (a_i w_ij)^+ = a^+ w^+ + a^- w^-, no bias.
    terms = [(a.clamp(min=0), weight.clamp(min=0))]
    if bool((a < 0).any()):
        terms.append((a.clamp(max=0), weight.clamp(max=0)))
    return terms, None


def _forward(
    unit: _Unit, a: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    if unit.kind == "linear" and weight is not None:
        return _add_bias(unit.module, _apply(unit.module, a, weight), bias)
    if unit.kind == "pass":
        return torch.relu(a) if isinstance(unit.module, nn.ReLU) else a
    # Through forward(), not __call__: the user's hooks must not run. A copy of the input, since
    # a module we know nothing about may work in place.
    return unit.module.forward(a.clone() if unit.kind == "other" else a)


def _per_sample_gradient(
    module: nn.Module, t: torch.Tensor, weight: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """``(B, *weight.shape)``: each sample's gradient of ``sum(z * s)`` with respect to the weight.

    For a Linear layer on ``(B, C)`` inputs this is the outer product ``s^T a``; with positions
    (a convolution, or a Linear layer on ``(B, L, C)``) it sums over the sample's positions.
    """

    def one(t1: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        pull = torch.func.vjp(lambda w: _apply(module, t1[None], w), weight)[1]
        gradient: torch.Tensor = pull(s1[None])[0]
        return gradient

    return torch.func.vmap(one)(t, s)


def _backward_linear(
    unit: _Unit,
    a: torch.Tensor,
    relevance: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rule: str,
    epsilon: float,
    gamma: float,
    reduce: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance of the layer's input, and of its weight reduced over the batch.

    ``reduce``: ``"sum"`` the signed sum over samples (and positions), ``"absolute"`` the sum of
    absolute values, ``"l2"`` the sum over samples of the square of each sample's relevance (the
    caller takes the square root once all batches are in).
    """
    terms, rule_bias = _rule_terms(rule, a, weight, bias, gamma)
    with torch.enable_grad():
        leaves = [
            (t.detach().requires_grad_(True), w.detach().requires_grad_(True)) for t, w in terms
        ]
        z = _apply(unit.module, *leaves[0])
        for t, w in leaves[1:]:
            z = z + _apply(unit.module, t, w)
        s = relevance / _stabilise(_add_bias(unit.module, z.detach(), rule_bias), epsilon)
        grads = torch.autograd.grad(z, [x for pair in leaves for x in pair], grad_outputs=s)
    relevance_in = torch.zeros_like(a)
    weight_relevance = torch.zeros_like(weight)
    for k, (t, w) in enumerate(terms):
        relevance_in += t * grads[2 * k]  # R_i = a_i sum_j w_ij s_j
        weight_relevance += w * grads[2 * k + 1]  # sum over samples of a_i w_ij s_j
    if reduce == "absolute":
        # |a_i w_ij s_j| = |w_ij| |a_i| |s_j|: the same correlation, of |a| with |s|.
        weight_relevance = torch.zeros_like(weight)
        for t, w in terms:
            with torch.enable_grad():
                leaf = w.detach().requires_grad_(True)
                z_abs = _apply(unit.module, t.abs(), leaf)
                (grad,) = torch.autograd.grad(z_abs, leaf, grad_outputs=s.abs())
            weight_relevance += w.abs() * grad
    elif reduce == "l2" and isinstance(unit.module, nn.Linear) and a.dim() == 2:
        # One position per sample: sum_n (a_ni w_ij s_nj)^2 = w_ij^2 sum_n a_ni^2 s_nj^2, a
        # matmul. The z+ rule's two terms never share a sample's input (a_i >= 0 or a_i < 0),
        # so their squares add without cross terms.
        weight_relevance = torch.zeros_like(weight)
        for t, w in terms:
            weight_relevance += w.square() * ((s.square()).T @ t.square())  # (out, in)
    elif reduce == "l2":
        # Per-sample weight gradients, in chunks of samples that hold about 2**24 elements.
        weight_relevance = torch.zeros_like(weight)
        chunk = max(1, (1 << 24) // max(1, weight.numel()))
        for begin in range(0, a.shape[0], chunk):
            part = slice(begin, begin + chunk)
            per_sample = torch.zeros(  # (b, *weight.shape): each sample's relevance of each weight
                (a[part].shape[0], *weight.shape), dtype=weight.dtype, device=weight.device
            )
            for t, w in terms:
                per_sample += w * _per_sample_gradient(unit.module, t[part], w, s[part].detach())
            weight_relevance += per_sample.square().sum(0)
    return relevance_in, weight_relevance


def _backward_module(
    unit: _Unit, a: torch.Tensor, relevance: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """The epsilon rule through a whole module by gradient times input (pooling, BatchNorm)."""
    with torch.enable_grad():
        leaf = a.detach().requires_grad_(True)
        z = unit.module.forward(leaf.clone())
        s = relevance / _stabilise(z.detach(), epsilon)
        (grad,) = torch.autograd.grad(z, leaf, grad_outputs=s)
    return a * grad


def _split_target(target: LRPTarget, n: int) -> LRPTarget | torch.Tensor:
    """Validate a per-sample target once, so that batches can slice it."""
    if target is None or isinstance(target, (int, np.integer)):
        return target
    if isinstance(target, str):
        if target != "all":
            raise TargetError(f"target must be None, an int, ints or 'all', got {target!r}")
        return target
    try:
        values = torch.as_tensor(target if torch.is_tensor(target) else np.asarray(target))
    except (TypeError, ValueError) as error:
        raise TargetError(f"target must be ints, got {target!r}") from error
    values = values.reshape(-1) if values.dim() == 0 else values
    if values.dim() != 1 or values.numel() != n:
        raise TargetError(
            f"target has {values.numel()} entries (shape {tuple(values.shape)}); "
            f"expected one per sample ({n})"
        )
    return values


def _start(logits: torch.Tensor, target: LRPTarget | torch.Tensor) -> torch.Tensor:
    if isinstance(target, str):  # "all": every class starts from its own logit
        return logits.clone()
    index = resolve_target(target, logits)[:, None]  # (B, 1)
    return torch.zeros_like(logits).scatter_(1, index, logits.gather(1, index))


def _check(
    model: nn.Module,
    inputs: torch.Tensor,
    rule: str,
    epsilon: float,
    gamma: float,
    batch_size: int,
) -> None:
    validate.instance("model", model, nn.Module)
    validate.tensor("inputs", inputs)
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise InputError(
            "inputs must be a non-empty batch (N, ...) with N >= 1, "
            f"got shape {tuple(inputs.shape)}"
        )
    if not inputs.dtype.is_floating_point:
        raise InputError(f"inputs must be floating point, got dtype {inputs.dtype}")
    if not bool(torch.isfinite(inputs).all()):
        raise InputError("inputs hold NaN or infinite values")
    validate.choice("rule", rule, RULES)
    validate.positive_float("epsilon", epsilon)
    if validate.finite_float("gamma", gamma) < 0:
        raise InputError(f"gamma must be a non-negative number, got {gamma!r}")
    validate.positive_int("batch_size", batch_size)


def _propagate(
    model: nn.Module,
    inputs: torch.Tensor,
    target: LRPTarget,
    rule: str,
    epsilon: float,
    gamma: float,
    batch_size: int,
    skip_unsupported: bool,
    reduce: str,
) -> _Result:
    _check(model, inputs, rule, epsilon, gamma, batch_size)
    if reduce not in REDUCTIONS:
        raise InputError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    n = inputs.shape[0]
    target = _split_target(target, n)
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else inputs.dtype
    device = parameter.device if parameter is not None else inputs.device
    with eval_mode(model), torch.no_grad():
        units: list[_Unit] = []
        effective: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        weights: dict[str, torch.Tensor] = {}
        totals: dict[str, float] = {}
        start_total = 0.0
        for begin in range(0, n, batch_size):
            x = inputs[begin : begin + batch_size].to(device=device, dtype=dtype)
            b = x.shape[0]
            if not units:
                units, logits = _trace(model, x, skip_unsupported)
                effective = {u.name: _effective(u) for u in units if u.kind == "linear"}
                if not effective:
                    raise UnsupportedLayerError(
                        f"{type(model).__name__} has no Linear or Conv layer on its forward path"
                    )
                weights = {
                    _key(u.name): torch.zeros_like(effective[u.name][0])
                    for u in units
                    if u.kind == "linear"
                }
                totals = {u.name: 0.0 for u in units}
            activations: list[torch.Tensor] = []
            out_shapes: list[torch.Size] = []
            h = x
            for unit in units:
                h = h.reshape(b, *unit.in_shape)
                activations.append(h)
                w, bias = effective.get(unit.name, (None, None))
                h = _forward(unit, h, w, bias)
                out_shapes.append(h.shape)
            replayed = h.reshape(b, -1)
            if begin == 0:
                _verify(model, replayed, logits)
            batch_target = target[begin : begin + b] if isinstance(target, torch.Tensor) else target
            relevance = _start(replayed, batch_target)
            start_total += float(relevance.double().sum())
            for unit, a, shape in zip(
                reversed(units), reversed(activations), reversed(out_shapes), strict=True
            ):
                relevance = relevance.reshape(shape)
                if unit.kind == "linear":
                    w, bias = effective[unit.name]
                    relevance, w_relevance = _backward_linear(
                        unit, a, relevance, w, bias, rule, epsilon, gamma, reduce
                    )
                    weights[_key(unit.name)] += w_relevance
                elif unit.kind != "pass":
                    relevance = _backward_module(unit, a, relevance, epsilon)
                totals[unit.name] += float(relevance.double().sum())
    if reduce == "l2":
        weights = {key: value.sqrt() for key, value in weights.items()}
    logger.debug("LRP-%s over %d samples through %d modules", rule, n, len(units))
    return _Result(weights, {LOGITS_KEY: start_total, **totals})


def _verify(model: nn.Module, replayed: torch.Tensor, logits: torch.Tensor) -> None:
    """The chain, replayed with BatchNorm folded, must give the model's logits."""
    scale = float(logits.abs().max()) + 1.0
    tolerance = math.sqrt(torch.finfo(logits.dtype).eps) * scale
    error = float((replayed - logits.to(replayed.dtype)).abs().max())
    if error > tolerance:
        raise UnsupportedLayerError(
            f"replaying the modules of {type(model).__name__} in order does not give its logits "
            f"(max difference {error:.3g}); its forward does more than run them as a chain"
        )


def _key(name: str) -> str:
    return f"{name}.weight" if name else "weight"


def weight_relevance(
    model: nn.Module,
    inputs: torch.Tensor,
    target: LRPTarget = None,
    *,
    rule: Rule = "epsilon",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    batch_size: int = 64,
    reduce: Reduction = "sum",
    skip_unsupported: bool = False,
) -> dict[str, torch.Tensor]:
    """LRP relevance of every Linear and Conv weight, summed over a calibration set.

    Relevance starts at the target class's logit and is propagated back with one LRP rule (Bach
    et al., 2015; rules as in Montavon et al., 2019, "Layer-Wise Relevance Propagation: An
    Overview", in *Explainable AI*, LNCS 11700). The relevance of weight ``w_ij`` of a layer with
    inputs ``a_i`` and pre-activations ``z_j`` is

        R(w_ij) = sum over samples (and positions) of a_i w_ij R_j / (z_j + epsilon sign(z_j)),

    with ``sign(0) = +1``, and the layer passes ``R_i = sum_j R(w_ij)`` (per sample) down.

    Parameters
    ----------
    model : nn.Module
        A classifier whose forward is a chain of modules each run once (``nn.Sequential``,
        :class:`~leanxai.zoo.SmallCNN`, ...); reshapes between modules (``x.flatten(1)``) are
        allowed. It is run in eval mode and left exactly as it was.
    inputs : torch.Tensor
        ``(N, ...)`` calibration inputs, ``N >= 1``; cast to the model's dtype.
    target : int, sequence of int, tensor, "all" or None, default None
        The class whose logit starts the propagation: ``None`` the predicted class, an int the
        same class for all samples, ``N`` ints one per sample. ``"all"``: every class starts from
        its own logit and the relevances are summed (LRP is linear in the start relevance, so this
        is one pass).
    rule : {"epsilon", "zplus", "gamma"}, default "epsilon"
        One rule for every layer. ``"epsilon"``: signed contributions ``a_i w_ij`` with the
        layer's bias in ``z_j``. ``"zplus"``: the z+ rule, only positive contributions
        ``(a_i w_ij)^+`` (``a_i w_ij^+`` for the non-negative inputs after a ReLU), bias ignored;
        its relevances have the sign of the start logit, so with a positive logit they are
        non-negative and the paper's "prune relevance <= 0" rule prunes only weights that
        contribute nothing. ``"gamma"``: weights and bias ``w + gamma w^+``.
    epsilon : float, default 1e-6
        The stabiliser, > 0. Larger values absorb relevance of weak or contradictory
        contributions.
    gamma : float, default 0.25
        The gamma rule's weight on positive parts, >= 0.
    batch_size : int, default 64
        Samples per forward and backward pass.
    reduce : {"sum", "absolute", "l2"}, default "sum"
        How the terms ``a_i w_ij s_j`` are reduced. ``"sum"``: the signed sum over samples and
        positions, the formula above. ``"absolute"``: the sum of ``|a_i w_ij s_j|`` over samples
        and positions, how much relevance flows through a weight, of either sign (samples do not
        cancel). ``"l2"``: the L2 norm over samples of each sample's relevance of the weight,
        ``sqrt(sum_n R_n(w_ij)^2)`` with ``R_n(w_ij)`` the sum over sample ``n``'s positions
        (a convolution's positions cancel within a sample, samples do not cancel); for a Linear
        layer on ``(N, C)`` inputs this is ``|w_ij| sqrt(sum_n a_ni^2 s_nj^2)``, one matmul.
        Convolutions use per-sample weight gradients (``torch.func.vmap``), memory about
        ``2**24`` elements per chunk of samples.
    skip_unsupported : bool, default False
        For modules no rule covers (LayerNorm, a Tanh, ...): with False, raise
        :class:`~leanxai.core.errors.UnsupportedLayerError` naming them; with True, warn, pass
        relevance through them by the epsilon rule applied to the whole module (gradient times
        input) and leave their weights out of the result.

    Returns
    -------
    dict of str to torch.Tensor
        Weight parameter name (``"features.0.weight"``) -> relevance of the same shape, dtype and
        device, in forward order.

    Raises
    ------
    UnsupportedLayerError
        For modules no rule covers, or a forward that is not a chain of modules.
    InputError
        For empty or non-finite ``inputs``.
    TargetError
        For a target out of range or of the wrong length.
    ValueError
        For a bad ``rule``, ``reduce``, ``epsilon``, ``gamma`` or ``batch_size``.

    Notes
    -----
    ReLU, Dropout (identity in eval mode), Identity and Flatten pass relevance through unchanged.
    Pooling layers are treated as one module with the epsilon rule by gradient times input: max
    pooling gives each window's relevance to its winner, average pooling shares it in proportion
    to the inputs. A BatchNorm that directly follows a Linear or Conv layer is folded into it
    (``w' = w gamma / sqrt(var + eps)``, ``b' = (b - mean) gamma / sqrt(var + eps) + beta``),
    as LRP implementations do (Montavon et al., 2019, section 10.3.2); the relevance of ``w_ij`` is
    then ``a_i w'_ij s_j``, and the rules act on ``w'``. Any other BatchNorm is an elementwise
    affine layer under the epsilon rule. The BatchNorm's own parameters get no relevance.
    Relevance is conserved layer by layer (up to epsilon) when no layer has a bias; see
    :func:`conservation`. Deviation from Montavon et al.: one rule for all layers, and the
    ``zplus`` and ``gamma`` rules are applied to the first layer too, whatever the sign of its
    inputs.
    """
    result = _propagate(
        model, inputs, target, rule, epsilon, gamma, batch_size, skip_unsupported, reduce
    )
    return result.weights


def conservation(
    model: nn.Module,
    inputs: torch.Tensor,
    target: LRPTarget = None,
    *,
    rule: Rule = "epsilon",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    batch_size: int = 64,
    skip_unsupported: bool = False,
) -> dict[str, float]:
    """Total relevance at the input of each module of the chain, summed over samples.

    A check of LRP's conservation property (Bach et al., 2015): without biases and with a small
    ``epsilon``, every value equals the start relevance. The arguments are those of
    :func:`weight_relevance`.

    Returns
    -------
    dict of str to float
        ``"<logits>"`` -> the total start relevance, then each module name (in forward order,
        BatchNorms folded into their layer omitted) -> the total relevance that module passes to
        its input.
    """
    result = _propagate(
        model, inputs, target, rule, epsilon, gamma, batch_size, skip_unsupported, "sum"
    )
    return result.totals
