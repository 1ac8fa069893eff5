"""Layer-wise relevance propagation (LRP) down to the weights of a model, through any graph.

LRP (Bach et al., 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation", PLoS ONE 10(7)) redistributes a class score backwards. For a
linear or convolutional layer with inputs ``a_i``, weights ``w_ij`` and outputs
``z_j = sum_i a_i w_ij + b_j`` that received relevance ``R_j``, the epsilon rule gives

    R_i = sum_j a_i w_ij s_j,   s_j = R_j / (z_j + epsilon * sign(z_j)),

and the relevance that flows through the weight itself is the single term ``a_i w_ij s_j``.
Summed over the calibration samples (and, for a convolution, over the positions where the weight
is applied) this is the weight's relevance, the quantity that relevance-guided pruning and
quantisation rank weights by (cf. Yeom et al., 2021, "Pruning by explaining: A novel criterion for
deep neural network pruning", Pattern Recognition 115; Becking et al., 2022, "ECQx:
Explainability-Driven Quantization for Low-Bit and Sparse DNNs").

How: rules as modified gradients, the way Zennit does it (Anders et al., 2021, "Software for
Dataset-wide XAI: From Local Explanations to Global Insights with Zennit, CoRELAY, and ViRelAy").
Every tensor ``t`` of the forward pass carries a modified gradient ``g`` with ``R_t = t * g``.
During one forward pass a :class:`torch.overrides.TorchFunctionMode` gives each operation whose
rule differs from its gradient a backward that implements the rule: each Linear and convolution
call on a weight of the model (grouped and depthwise too; a convolution subclass with its own
padding is seen at the ``F.conv2d`` it calls), with a BatchNorm that reads its output folded in
for the duration of the call (never in place); pooling; elementwise activations; LayerNorm;
products of two relevance-carrying tensors. Everything else (residual additions,
concatenations, reshapes, slicing, ReLU, softmax) keeps its ordinary gradient, so any graph
of modules and functional code is followed by autograd, and a module that runs more than once
simply contributes once per call. One ``torch.autograd.grad`` call from the target logits to the
inputs then runs every rule; each rule adds its weight relevance ``w * grad`` (the terms
``a_i w_ij s_j``) into the result. Nothing is registered on, or left on, the model: the mode ends
with the forward, and module calls are only counted (:func:`leanxai.core.hooks.capture`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from leanxai.core import validate
from leanxai.core.errors import InputError, TargetError, UnsupportedLayerError
from leanxai.core.hooks import capture, eval_mode
from leanxai.core.models import logits_of
from leanxai.core.targets import resolve_target

__all__ = [
    "INPUTS_KEY",
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

INPUTS_KEY = "<inputs>"
"""Key of the relevance that reaches the model's inputs in :func:`conservation`'s result."""

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
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
# Modules with parameters whose computation the rules follow.
_SUPPORTED = (*_LINEAR, *_NORM, nn.LayerNorm)


def _methods(*names: str) -> set[Any]:
    """Functions and tensor methods of these names, as a TorchFunctionMode receives them."""
    found: set[Any] = set()
    for owner in (torch, torch.Tensor, torch._C.TensorBase):
        for name in names:
            value = getattr(owner, name, None)
            if value is not None:
                found.add(value)
    return found


_LINEAR_OPS: set[Any] = {F.linear, F.conv1d, F.conv2d, F.conv3d}
# Elementwise activations with f(0) = 0: relevance passes through unchanged (the identity rule).
_PASS_OPS: set[Any] = {
    F.silu,
    F.gelu,
    F.hardswish,
    F.hardtanh,
    F.relu6,
    F.elu,
    F.celu,
    F.selu,
    F.leaky_relu,
    F.mish,
    F.tanh,
    *_methods("tanh"),
}
_POOL_OPS: set[Any] = {
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
}
_PRODUCT_OPS: set[Any] = _methods(
    "mul", "multiply", "__mul__", "__rmul__", "matmul", "__matmul__", "bmm"
)
_BATCH_NORM_ARGS = (
    "input",
    "running_mean",
    "running_var",
    "weight",
    "bias",
    "training",
    "momentum",
    "eps",
)
_ATTENTION_ARGS = (
    "query",
    "key",
    "value",
    "attn_mask",
    "dropout_p",
    "is_causal",
    "scale",
    "enable_gqa",
)


@dataclass
class _Result:
    weights: dict[str, torch.Tensor]
    totals: dict[str, float]


@dataclass
class _Layer:
    """A Linear or Conv weight as one call used it, with the BatchNorm folded into it, if any."""

    key: str  # the weight's parameter name
    weight: torch.Tensor  # detached; folded
    bias: torch.Tensor | None  # detached; folded
    linear: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # the call without its bias
    conv: bool  # a convolution (output channels on axis 1)
    dense: bool  # a Linear layer on (B, C) inputs: the l2 reduction is then one matmul


@dataclass
class _Label:
    """The name under which an operation's total relevance is reported (its module, if any)."""

    name: str


@dataclass
class _State:
    """What one LRP pass accumulates."""

    rule: str
    epsilon: float
    gamma: float
    reduce: str
    weight_keys: dict[int, str]  # id(weight parameter) -> its name
    weights: dict[str, torch.Tensor]
    totals: dict[str, float]
    calls: dict[str, int] = field(default_factory=dict)  # weight name -> calls in this batch
    per_sample: dict[str, torch.Tensor] = field(default_factory=dict)  # l2 of repeated weights
    # Outputs of rule-wrapped Linear/Conv calls by id, so that a BatchNorm reading one can fold
    # into it; the tensors are kept so that ids stay unique while the forward runs.
    produced: dict[int, tuple[torch.Tensor, torch.Tensor, _Layer]] = field(default_factory=dict)
    labels: dict[int, tuple[torch.Tensor, _Label]] = field(default_factory=dict)

    def total(self, name: str, relevance: torch.Tensor) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + float(relevance.double().sum())


class _Relay(torch.autograd.Function):
    """An operation computed as usual whose backward is an LRP rule.

    ``compute(x)`` gives the value; ``rule(g, x, y)`` the modified gradient of ``x`` from the
    gradient ``g`` of the output, ``y`` a copy of the output (the network may change the output in
    place afterwards, a residual ``+=``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        compute: Callable[[torch.Tensor], torch.Tensor],
        rule: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        y = compute(x)
        ctx.rule = rule
        ctx.save_for_backward(x, y.clone())
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, y = ctx.saved_tensors
        return ctx.rule(g, x, y), None, None


def _add_bias(layer: _Layer, z: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return z
    if layer.conv:
        return z + bias.reshape(1, -1, *([1] * (z.dim() - 2)))
    return z + bias


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


def _per_sample_gradient(
    layer: _Layer, t: torch.Tensor, weight: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """``(B, *weight.shape)``: each sample's gradient of ``sum(z * s)`` with respect to the weight.

    For a Linear layer on ``(B, C)`` inputs this is the outer product ``s^T a``; with positions
    (a convolution, or a Linear layer on ``(B, L, C)``) it sums over the sample's positions.
    """

    def one(t1: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        pull = torch.func.vjp(lambda w: layer.linear(t1[None], w), weight)[1]
        gradient: torch.Tensor = pull(s1[None])[0]
        return gradient

    return torch.func.vmap(one)(t, s)


def _per_sample(
    layer: _Layer, terms: list[tuple[torch.Tensor, torch.Tensor]], s: torch.Tensor
) -> Iterator[torch.Tensor]:
    """Each sample's relevance of each weight, ``(b, *weight.shape)``, in chunks of samples that
    hold about 2**24 elements."""
    weight = layer.weight
    chunk = max(1, (1 << 24) // max(1, weight.numel()))
    for begin in range(0, s.shape[0], chunk):
        part = slice(begin, begin + chunk)
        per_sample = torch.zeros(
            (s[part].shape[0], *weight.shape), dtype=weight.dtype, device=weight.device
        )
        for t, w in terms:
            per_sample += w * _per_sample_gradient(layer, t[part], w, s[part].detach())
        yield per_sample


def _backward_linear(
    layer: _Layer,
    a: torch.Tensor,
    relevance: torch.Tensor,
    rule: str,
    epsilon: float,
    gamma: float,
    reduce: str,
    repeated: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The modified gradient of the layer's input, and the weight's relevance.

    ``R_a = a * g_a`` is the relevance of the input. The weight's relevance is reduced over the
    batch: ``reduce="sum"`` the signed sum over samples (and positions), ``"absolute"`` the sum of
    absolute values, ``"l2"`` the sum over samples of the square of each sample's relevance (the
    caller takes the square root once all batches are in); for a weight used by several calls
    (``repeated``) ``"l2"`` returns the per-sample relevances instead, as the third value, so that
    the caller adds the calls before squaring.
    """
    terms, rule_bias = _rule_terms(rule, a, layer.weight, layer.bias, gamma)
    with torch.enable_grad():
        leaves = [
            (t.detach().requires_grad_(True), w.detach().requires_grad_(True)) for t, w in terms
        ]
        z = layer.linear(*leaves[0])
        for t, w in leaves[1:]:
            z = z + layer.linear(t, w)
        s = relevance / _stabilise(_add_bias(layer, z.detach(), rule_bias), epsilon)
        grads = torch.autograd.grad(z, [x for pair in leaves for x in pair], grad_outputs=s)
    # R_i = a_i sum_j w_ij s_j. z+: a^+ (w^+ s) + a^- (w^- s) = a * (w^+ s where a >= 0, else w^- s)
    g_a = grads[0] if len(terms) == 1 else torch.where(a >= 0, grads[0], grads[2])
    weight_relevance = torch.zeros_like(layer.weight)
    for k, (_, w) in enumerate(terms):
        weight_relevance += w * grads[2 * k + 1]  # sum over samples of a_i w_ij s_j
    if reduce == "absolute":
        # |a_i w_ij s_j| = |w_ij| |a_i| |s_j|: the same correlation, of |a| with |s|.
        weight_relevance = torch.zeros_like(layer.weight)
        for t, w in terms:
            with torch.enable_grad():
                leaf = w.detach().requires_grad_(True)
                z_abs = layer.linear(t.abs(), leaf)
                (grad,) = torch.autograd.grad(z_abs, leaf, grad_outputs=s.abs())
            weight_relevance += w.abs() * grad
    elif reduce == "l2" and repeated:
        return g_a, weight_relevance, torch.cat(list(_per_sample(layer, terms, s)))
    elif reduce == "l2" and layer.dense:
        # One position per sample: sum_n (a_ni w_ij s_nj)^2 = w_ij^2 sum_n a_ni^2 s_nj^2, a
        # matmul. The z+ rule's two terms never share a sample's input (a_i >= 0 or a_i < 0),
        # so their squares add without cross terms.
        weight_relevance = torch.zeros_like(layer.weight)
        for t, w in terms:
            weight_relevance += w.square() * ((s.square()).T @ t.square())  # (out, in)
    elif reduce == "l2":
        weight_relevance = torch.zeros_like(layer.weight)
        for per_sample in _per_sample(layer, terms, s):
            weight_relevance += per_sample.square().sum(0)
    return g_a, weight_relevance, None


def _layer_rule(state: _State, layer: _Layer) -> Callable[..., torch.Tensor]:
    def rule(g: torch.Tensor, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        repeated = state.calls.get(layer.key, 0) > 1
        g_a, w_relevance, per_sample = _backward_linear(
            layer, a, z * g, state.rule, state.epsilon, state.gamma, state.reduce, repeated
        )
        if per_sample is not None:
            previous = state.per_sample.get(layer.key)
            state.per_sample[layer.key] = per_sample if previous is None else previous + per_sample
        else:
            state.weights[layer.key] += w_relevance
        state.total(layer.key.removesuffix("weight").removesuffix("."), a * g_a)
        return g_a

    return rule


def _epsilon_rule(
    state: _State, label: _Label, function: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[..., torch.Tensor]:
    """The epsilon rule through a whole operation by gradient times input (pooling, BatchNorm)."""

    def rule(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            out = function(leaf)
            s = y * g / _stabilise(y, state.epsilon)
            (grad,) = torch.autograd.grad(out, leaf, grad_outputs=s)
        state.total(label.name, x * grad)
        return grad

    return rule


def _pass_rule(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``R_x = R_y`` for an elementwise ``f`` with ``f(0) = 0``: the gradient times ``y / x``."""
    zero = x == 0
    return g * torch.where(zero, torch.zeros_like(x), y / torch.where(zero, torch.ones_like(x), x))


def _layer_norm_rule(
    shape: Sequence[int] | int, weight: torch.Tensor | None, eps: float
) -> Callable[..., torch.Tensor]:
    """LayerNorm with its standard deviation held constant: a linear map, by its gradient."""
    count = 1 if isinstance(shape, int) else len(shape)
    dims = tuple(range(-count, 0))

    def rule(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
        if weight is not None:
            scale = scale * weight.detach()
        centred_g = g * scale
        return centred_g - centred_g.mean(dims, keepdim=True)  # the gradient of x - mean(x)

    return rule


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _uniform(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A product of two relevance-carrying tensors: each gets half (AttnLRP's uniform rule)."""
    first = func(*[a.detach() if k == 1 else a for k, a in enumerate(args)], **kwargs)
    second = func(*[a.detach() if k == 0 else a for k, a in enumerate(args)], **kwargs)
    return 0.5 * (first + second)


def _attention(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """``scaled_dot_product_attention`` written out: its products get the uniform rule, the
    softmax its gradient (AttnLRP)."""
    values = dict(zip(_ATTENTION_ARGS, args, strict=False)) | kwargs
    q, k, v = values["query"], values["key"], values["value"]
    if values.get("enable_gqa") and q.shape[-3] != k.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
    scale = values.get("scale") or 1.0 / math.sqrt(q.shape[-1])
    scores = _uniform(torch.matmul, (q, k.transpose(-2, -1)), {}) * scale  # (..., L, S)
    mask = values.get("attn_mask")
    if values.get("is_causal"):
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    result: torch.Tensor = _uniform(torch.matmul, (torch.softmax(scores, -1), v), {})
    return result


class _LRPMode(TorchFunctionMode):
    """Gives each operation of a forward pass the backward of its LRP rule (see the module doc)."""

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is None or not x.requires_grad:
            return func(*args, **kwargs)
        if func in _LINEAR_OPS:
            return self._linear(func, x, args, kwargs)
        if func is F.batch_norm:
            return self._batch_norm(func, x, args, kwargs)
        if func in _PASS_OPS:
            kwargs.pop("inplace", None)  # an in-place activation runs out of place here
            rest = tuple(a for a in args[1:] if not isinstance(a, bool))
            return _Relay.apply(x, lambda a: func(a, *rest, **kwargs), _pass_rule)
        if func in _POOL_OPS and not kwargs.get("return_indices"):
            return self._epsilon(
                x, lambda a: func(a, *args[1:], **kwargs), getattr(func, "__name__", "pool")
            )
        if func is F.layer_norm:
            shape = _argument(args, kwargs, 1, "normalized_shape")
            weight = _argument(args, kwargs, 2, "weight")
            eps = _argument(args, kwargs, 4, "eps")
            rule = _layer_norm_rule(shape, weight, 1e-5 if eps is None else eps)
            return _Relay.apply(x, lambda a: func(a, *args[1:], **kwargs), rule)
        if func in _PRODUCT_OPS:
            if len(args) == 2 and isinstance(args[1], torch.Tensor) and args[1].requires_grad:
                return _uniform(func, args, kwargs)
            return func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            return _attention(args, kwargs)
        return func(*args, **kwargs)

    def _linear(
        self, func: Any, x: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        state = self.state
        weight = _argument(args, kwargs, 1, "weight")
        key = state.weight_keys.get(id(weight))
        if key is None:  # not a weight LRP scores (a Linear inside an opaque module)
            return func(*args, **kwargs)
        bias = _argument(args, kwargs, 2, "bias")
        rest = args[3:]
        extra = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
        layer = _Layer(
            key,
            weight.detach(),
            None if bias is None else bias.detach(),
            lambda a, w: func(a, w, None, *rest, **extra),
            conv=func is not F.linear,
            dense=func is F.linear and x.dim() == 2,
        )
        state.calls[key] = state.calls.get(key, 0) + 1
        output = _Relay.apply(
            x, lambda a: func(a, weight, bias, *rest, **extra), _layer_rule(state, layer)
        )
        state.produced[id(output)] = (output, x, layer)
        return output

    def _epsilon(
        self, x: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], name: str
    ) -> torch.Tensor:
        label = _Label(f"<{name}>")
        output: torch.Tensor = _Relay.apply(x, function, _epsilon_rule(self.state, label, function))
        self.state.labels[id(output)] = (output, label)
        return output

    def _batch_norm(
        self, func: Any, x: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        values = dict(zip(_BATCH_NORM_ARGS, args, strict=False)) | kwargs
        mean, var = values.get("running_mean"), values.get("running_var")
        if values.get("training") or mean is None or var is None:
            return func(*args, **kwargs)  # normalised by the batch: not a fixed map
        found = self.state.produced.get(id(x))
        if found is not None and found[0] is x:
            _, a, layer = found
            scale = torch.rsqrt(var.detach() + values.get("eps", 1e-5))
            if values.get("weight") is not None:
                scale = scale * values["weight"].detach()
            shift = -mean.detach() * scale
            if values.get("bias") is not None:
                shift = shift + values["bias"].detach()
            # BatchNorm works on axis 1: the layer's output axis, unless a Linear layer acts on
            # the last axis of a (B, L, C) input.
            if (layer.conv or layer.dense) and layer.weight.shape[0] == scale.numel():
                weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
                bias = shift if layer.bias is None else layer.bias * scale + shift
                folded = _Layer(layer.key, weight, bias, layer.linear, layer.conv, layer.dense)
                value = x.detach()
                # The value is the BatchNorm's own output; the backward skips the unfolded
                # layer and reaches its input through the folded one.
                return _Relay.apply(
                    a,
                    lambda _: func(value, *args[1:], **kwargs),
                    _layer_rule(self.state, folded),
                )
        return self._epsilon(x, lambda t: func(t, *args[1:], **kwargs), "batch_norm")


def _is_atomic(module: nn.Module) -> bool:
    return isinstance(module, _LINEAR + _NORM + _OPAQUE + (nn.LayerNorm,)) or not any(
        True for _ in module.children()
    )


def _atomic_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaves, supported layers and opaque modules: the modules whose calls LRP counts."""
    found: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module) -> None:
        if _is_atomic(module):
            found.append((name, module))
            return
        for child_name, child in module.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return found


def _unsupported(module: nn.Module) -> bool:
    if isinstance(module, _OPAQUE):
        return True
    if isinstance(module, _NORM):
        # Without running statistics a BatchNorm normalises by the batch, not a fixed affine map.
        return module.running_mean is None or module.running_var is None
    if isinstance(module, _SUPPORTED):
        return False
    return any(True for _ in module.parameters(recurse=False))


def _describe(name: str, module: nn.Module) -> str:
    return f"{name or '<model>'} ({type(module).__name__})"


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
    """The gradient that starts the propagation: ``R = logits * start`` is the target logit."""
    if isinstance(target, str):  # "all": every class starts from its own logit
        return torch.ones_like(logits)
    index = resolve_target(target, logits)[:, None]  # (B, 1)
    return torch.zeros_like(logits).scatter_(1, index, 1.0)


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


def _refuse_unsupported(
    model: nn.Module, modules: dict[str, nn.Module], called: Sequence[str], skip: bool
) -> None:
    unsupported = [_describe(n, modules[n]) for n in called if _unsupported(modules[n])]
    if unsupported and not skip:
        raise UnsupportedLayerError(
            f"no LRP rule covers these layers of {type(model).__name__}: "
            f"{', '.join(unsupported)}; supported are Linear, Conv1d/2d/3d (grouped and "
            "depthwise too), BatchNorm (with running statistics), LayerNorm and any module "
            "without parameters of its own. Pass skip_unsupported=True to pass relevance "
            "through them by their gradient and leave their weights out"
        )
    if unsupported:
        warnings.warn(
            f"no LRP rule covers {', '.join(unsupported)}: relevance passes through them by "
            "their gradient, and their weights get no relevance",
            stacklevel=4,
        )


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
    modules = dict(_atomic_modules(model))
    scored = {name: m for name, m in modules.items() if isinstance(m, _LINEAR)}
    weight_keys = {id(m.get_parameter("weight")): _key(name) for name, m in scored.items()}
    weights: dict[str, torch.Tensor] = {}
    totals: dict[str, float] = {}
    order: list[str] = []
    start_total = 0.0
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        for begin in range(0, n, batch_size):
            x = inputs[begin : begin + batch_size].to(device=device, dtype=dtype)
            x = x.clone().requires_grad_(True)
            b = x.shape[0]
            state = _State(rule, epsilon, gamma, reduce, weight_keys, weights, totals)
            with capture(model, [], inputs_of=list(modules)) as record, _LRPMode(state):
                logits = logits_of(model(x))
            if begin == 0:
                called = list(record.calls)  # insertion order is call order
                _refuse_unsupported(model, modules, called, skip_unsupported)
                if not state.calls:
                    raise UnsupportedLayerError(
                        f"{type(model).__name__} has no Linear or Conv layer on its forward path"
                    )
                for name in called:
                    if name in scored:
                        weights[_key(name)] = torch.zeros_like(scored[name].get_parameter("weight"))
                order = [*called, INPUTS_KEY]
            for name, output in record.output_of.items():
                found = state.labels.get(id(output))
                if found is not None and found[0] is output:
                    found[1].name = name
            batch_target = target[begin : begin + b] if isinstance(target, torch.Tensor) else target
            start = _start(logits.detach(), batch_target)
            start_total += float((logits.detach() * start).double().sum())
            (grad,) = torch.autograd.grad(logits, x, grad_outputs=start, allow_unused=True)
            state.total(INPUTS_KEY, x.detach() * (0 if grad is None else grad))
            for key, per_sample in state.per_sample.items():
                weights[key] += per_sample.square().sum(0)
            del state, record, logits
    if reduce == "l2":
        weights = {key: value.sqrt() for key, value in weights.items()}
    rank = {name: k for k, name in enumerate(order)}
    ordered = sorted(totals, key=lambda name: rank.get(name, len(order) - 0.5))
    logger.debug("LRP-%s over %d samples, %d weights", rule, n, len(weights))
    return _Result(weights, {LOGITS_KEY: start_total, **{k: totals[k] for k in ordered}})


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
        A classifier: any graph of modules and functional code (residual connections,
        concatenations, modules run several times, depthwise convolutions, transformers
        CNNs and ViTs; see Notes for each operation's rule). It is run in eval mode and left
        exactly as it was. HF ``ModelOutput`` results are read for their logits.
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
        For modules with parameters no rule covers (PReLU, Embedding, ...): with False, raise
        :class:`~leanxai.core.errors.UnsupportedLayerError` naming them; with True, warn, pass
        relevance through them by their gradient (times input) and leave their weights out of
        the result.

    Returns
    -------
    dict of str to torch.Tensor
        Weight parameter name (``"features.0.weight"``) -> relevance of the same shape, dtype and
        device, in forward order.

    Raises
    ------
    UnsupportedLayerError
        For modules with parameters of their own that no rule covers, or a model without a
        Linear or Conv layer on its forward path.
    InputError
        For empty or non-finite ``inputs``.
    TargetError
        For a target out of range or of the wrong length.
    ValueError
        For a bad ``rule``, ``reduce``, ``epsilon``, ``gamma`` or ``batch_size``.

    Notes
    -----
    Rules as modified gradients (see the module docstring): every tensor ``t`` carries ``g`` with
    ``R_t = t * g``, and one autograd call runs the rules. Per operation:

    - Linear, Conv1d/2d/3d (grouped, depthwise, subclasses with their own padding): the chosen
      rule. A BatchNorm (with running statistics) that reads such a layer's output is folded into
      it for the call (``w' = w gamma / sqrt(var + eps)``, ``b' = (b - mean) gamma /
      sqrt(var + eps) + beta``; Montavon et al., 2019, section 10.3.2); the relevance of ``w_ij``
      is then ``a_i w'_ij s_j``, and the rules act on ``w'``. Nothing is changed in place. Any
      other BatchNorm is an elementwise affine layer under the epsilon rule.
    - Additions (residual connections): their gradient, the z-rule ``R_a = a / (a + b) R``,
      conservative (checked by ``tests/test_compress_relevance_graph.py``). Concatenation,
      slicing, reshapes, Flatten, Dropout (eval), padding: their gradient, conservative.
    - ReLU: its gradient, which passes relevance through unchanged. ReLU6, SiLU/Swish, GELU,
      Hardswish, ELU, LeakyReLU, Mish, Tanh (functional or modules, shared or not): the identity
      rule, relevance passes through unchanged (``g * f(x) / x``). Sigmoid and softmax: their
      gradient (AttnLRP's rule for softmax).
    - Pooling (max, average, adaptive): the epsilon rule on the whole operation by gradient
      times input: max pooling gives each window's relevance to its winner, average pooling
      shares it in proportion to the inputs.
    - LayerNorm: the standard deviation held constant (Ali et al., 2022, "XAI for Transformers:
      Better Explanations through Conservative Propagation", ICML), a linear map by its
      gradient; its bias absorbs its share.
    - A product of two relevance-carrying tensors (attention's ``Q K^T`` and ``P V``, a
      squeeze-and-excitation gate): the uniform rule, half to each factor (Achtibat et al.,
      2024, "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for Transformers",
      ICML); ``scaled_dot_product_attention`` is written out so that this holds.
    - A module that runs several times contributes at every call; its weight's relevance is the
      sum over calls (for ``reduce="l2"`` a sample's calls are added before squaring).
    - Modules with parameters of their own that none of these covers (Embedding, PReLU,
      GroupNorm, RNNs, ``nn.MultiheadAttention``) are refused unless ``skip_unsupported``.

    Relevance is conserved layer by layer (up to epsilon) when no layer has a bias and every
    nonlinearity is a pass-through one; see :func:`conservation`. Deviation from Montavon et
    al.: one rule for all layers, and the ``zplus`` and ``gamma`` rules are applied to the first
    layer too, whatever the sign of its inputs. On chains of modules this gives exactly the
    relevances of leanxai before issue 22 (the literal references of
    ``tests/test_compress_relevance.py``).
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
    """Total relevance each rule passes to its input, summed over samples.

    A check of LRP's conservation property (Bach et al., 2015): without biases and with a small
    ``epsilon``, every value equals the start relevance. The arguments are those of
    :func:`weight_relevance`.

    Returns
    -------
    dict of str to float
        ``"<logits>"`` -> the total start relevance, then each Linear/Conv, pooling and unfolded
        BatchNorm module (in forward order; BatchNorms folded into their layer omitted) -> the
        total relevance it passes to its input over all its calls (pooling outside a module:
        ``"<max_pool2d>"`` and the like), and ``"<inputs>"`` -> the relevance that reaches the
        model's inputs.
    """
    result = _propagate(
        model, inputs, target, rule, epsilon, gamma, batch_size, skip_unsupported, "sum"
    )
    return result.totals
