"""Reading attention probabilities, and the rollouts computed from them.

Shared by the vision-transformer explainers and, later, the text-transformer ones: nothing here
knows about images except :class:`WindowLayout` (Swin's shifted windows).

Reading:

- :func:`eager_attention`: a transformers model that uses SDPA or flash attention returns no
  attention probabilities; switch every config in the model to ``"eager"`` for the block and
  restore each one afterwards, also after an error.
- :func:`attention_modules`: the modules that compute attention (``nn.MultiheadAttention`` and
  transformers' ``*Attention`` modules, the innermost of each nest).
- :func:`record_attention`: the probabilities ``(B', heads, N, N)`` each attention module computes
  during the block, as tensors autograd can reach (so ``torch.autograd.grad(score, weights)`` gives
  the gradient Chefer et al. use). ``nn.MultiheadAttention`` returns a copy outside the graph (and
  by default the mean over heads), so its output is recomputed from the same weights, literally
  (:func:`multihead_attention`), and the model continues with that.

Rollouts, written as products of a row vector with each block's token-mixing matrix from the last
block back to the first (``O(N^2)`` per block rather than the ``O(N^3)`` of the full matrix
product; the same numbers):

- attention rollout (Abnar & Zuidema, ACL 2020): ``A_hat = normalise_rows(fuse_heads(A) + I)``
  (``residual=True``; the factor 1/2 of the paper disappears in the normalisation),
  ``R = A_hat_L ... A_hat_1``;
- gradient-weighted rollout (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
  Explainability"): ``A_bar = mean_heads((dA * A).clamp(min=0))``, ``R = (I + A_bar_L) ... (I +
  A_bar_1)`` (their ``R = I; R += A_bar @ R`` per block).

The map is ``start @ R``: ``start`` the class token's one-hot row (or the mean of the tokens a
mean-pooled head reads).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, LayerError
from leanxai.core.hooks import module_calls, rewrite_outputs

__all__ = [
    "AttentionCall",
    "DenseLayout",
    "HeadFusion",
    "WindowLayout",
    "attention_modules",
    "attention_rollout",
    "discard_lowest",
    "eager_attention",
    "fuse_heads",
    "gradient_weighted_rollout",
    "multihead_attention",
    "record_attention",
    "rollout_matrix",
]

HeadFusion = Literal["mean", "max", "min"]


# -- reading -------------------------------------------------------------------------------------


def _configs(model: nn.Module) -> list[Any]:
    """Every distinct transformers config in ``model`` that names an attention implementation."""
    found: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            found.setdefault(id(config), config)
            for sub in _sub_configs(config):
                found.setdefault(id(sub), sub)
    return list(found.values())


def _sub_configs(config: Any) -> list[Any]:
    subs = []
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            subs.append(sub)
    return subs


def attention_implementation(model: nn.Module) -> str | None:
    """The attention implementation of a transformers ``model`` (``None`` for other models)."""
    configs = _configs(model)
    return configs[0]._attn_implementation if configs else None


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Make a transformers model compute attention eagerly (with probabilities) for the block.

    Each config's ``_attn_implementation`` is restored when the block ends, whatever happens.
    Models without a transformers config are left alone.
    """
    saved = [(config, config._attn_implementation) for config in _configs(model)]
    try:
        for config, implementation in saved:
            if implementation != "eager":
                config._attn_implementation = "eager"
        yield
    finally:
        for config, implementation in saved:
            if config._attn_implementation != implementation:
                config._attn_implementation = implementation


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention")


def attention_modules(model: nn.Module) -> list[str]:
    """Dotted names of the attention modules, in registration order, innermost of each nest.

    ``nn.MultiheadAttention`` and any module whose class name ends in ``Attention`` (transformers'
    ``ViTAttention``, ``SwinAttention``, ``BertSelfAttention``...); of an attention module that
    contains another (``ViTAttention`` around ``ViTSelfAttention`` in older transformers), only
    the inner one, which computes the probabilities.
    """
    names = [name for name, module in model.named_modules() if name and _is_attention(module)]
    inner = [n for n in names if not any(other.startswith(n + ".") for other in names)]
    return inner


@dataclass
class AttentionCall:
    """One call of an attention module seen by :func:`record_attention`.

    Attributes
    ----------
    name
        The module's dotted name.
    weights
        ``(B', heads, N, N)`` probabilities, in the graph when the forward recorded one.
    inputs
        The first positional input the module received (token states).
    """

    name: str
    weights: torch.Tensor
    inputs: Any


def multihead_attention(
    module: nn.MultiheadAttention, args: Any, kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.MultiheadAttention``'s forward written out: ``(output, probabilities (B, h, L, S))``.

    Supports separate or packed projections, ``batch_first``, ``key_padding_mask`` and
    ``attn_mask`` (boolean or additive); refuses ``add_bias_kv`` and ``add_zero_attn``, whose
    extra key changes the token count. Dropout on the probabilities applies in training mode.
    """
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    bound = dict(zip(names, args, strict=False))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    query, key, value = bound["query"], bound.get("key", bound["query"]), bound.get("value")
    value = key if value is None else value
    if module.bias_k is not None or module.add_zero_attn:
        raise LayerError(
            "cannot read attention from an nn.MultiheadAttention with add_bias_kv or "
            "add_zero_attn (its extra key is not a token)"
        )
    batched = query.dim() == 3
    if not batched:
        query, key, value = query[None], key[None], value[None]
    elif not module.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    embed, heads = module.embed_dim, module.num_heads
    head_dim = embed // heads
    if module._qkv_same_embed_dim:
        w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    b_q = b_k = b_v = None
    if module.in_proj_bias is not None:
        b_q, b_k, b_v = module.in_proj_bias.chunk(3)
    batch, length, _ = query.shape
    source = key.shape[1]
    q = F.linear(query, w_q, b_q).view(batch, length, heads, head_dim).transpose(1, 2)
    k = F.linear(key, w_k, b_k).view(batch, source, heads, head_dim).transpose(1, 2)
    v = F.linear(value, w_v, b_v).view(batch, source, heads, head_dim).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)  # (B, h, L, S)
    attn_mask = bound.get("attn_mask")
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=scores.dtype).masked_fill(
                attn_mask, float("-inf")
            )
        scores = scores + (
            attn_mask.view(batch, heads, length, source) if attn_mask.dim() == 3 else attn_mask
        )
    padding = bound.get("key_padding_mask")
    if padding is not None:
        if padding.dtype == torch.bool:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        else:
            scores = scores + padding[:, None, None, :]
    weights = scores.softmax(dim=-1)
    mixed = F.dropout(weights, module.dropout, training=module.training) @ v  # (B, h, L, d)
    output = F.linear(
        mixed.transpose(1, 2).reshape(batch, length, embed),
        module.out_proj.weight,
        module.out_proj.bias,
    )
    if not batched:
        output = output[0]
    elif not module.batch_first:
        output = output.transpose(0, 1)
    return output, weights


def _mha_rewrite(calls: list[AttentionCall], name: str) -> Callable[..., Any]:
    def rewrite(module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        assert isinstance(module, nn.MultiheadAttention)
        result, weights = multihead_attention(module, args, kwargs)
        calls.append(AttentionCall(name, weights, args[0] if args else kwargs.get("query")))
        need = kwargs.get("need_weights", args[4] if len(args) > 4 else True)
        if not need:
            return result, None
        average = kwargs.get("average_attn_weights", args[6] if len(args) > 6 else True)
        returned = weights.mean(dim=1) if average else weights
        return result, returned if result.dim() == 3 else returned[0]

    return rewrite


def _probabilities(output: Any) -> torch.Tensor | None:
    """The ``(B', heads, N, N)`` tensor an attention module returned, if any."""
    items = output if isinstance(output, (tuple, list)) else (output,)
    for item in items[1:]:
        if isinstance(item, torch.Tensor) and item.dim() == 4 and item.shape[-1] == item.shape[-2]:
            return item
    return None


@contextlib.contextmanager
def record_attention(model: nn.Module, names: Sequence[str]) -> Iterator[list[AttentionCall]]:
    """Record the attention probabilities of the modules ``names`` during the block.

    Yields a list filled in call order. Use inside :func:`eager_attention` for transformers
    models. After the forward, check each call with :func:`check_calls`.
    """
    calls: list[AttentionCall] = []
    mha = [n for n in names if isinstance(model.get_submodule(n), nn.MultiheadAttention)]
    others = [n for n in names if n not in mha]
    with contextlib.ExitStack() as stack:
        stack.enter_context(rewrite_outputs(model, {n: _mha_rewrite(calls, n) for n in mha}))
        seen = [(n, stack.enter_context(module_calls(model, n))) for n in others]
        yield calls
        for name, recorded in seen:
            for inputs, output in recorded:
                weights = _probabilities(output)
                if weights is None:
                    module = model.get_submodule(name)
                    raise LayerError(
                        f"cannot read attention probabilities from module {name!r} "
                        f"({type(module).__name__}): it returned no (batch, heads, N, N) "
                        "weights; its attention is computed where leanxai cannot see it "
                        "(a fused kernel?)"
                    )
                calls.append(AttentionCall(name, weights, inputs))
        # Call order: modules run in sequence; keep the order of the model's forward.
        order = {name: i for i, name in enumerate(names)}
        calls.sort(key=lambda call: order[call.name])


# -- head fusion and layouts ---------------------------------------------------------------------


def fuse_heads(weights: torch.Tensor, head_fusion: HeadFusion = "mean") -> torch.Tensor:
    """``(B, heads, N, N)`` -> ``(B, N, N)`` by the mean, max or min over heads."""
    validate.choice("head_fusion", head_fusion, ("mean", "max", "min"))
    if head_fusion == "mean":
        return weights.mean(dim=1)
    if head_fusion == "max":
        return weights.amax(dim=1)
    return weights.amin(dim=1)


def discard_lowest(matrices: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the lowest ``ratio`` of the entries of each ``(N, N)`` matrix (Abnar & Zuidema's
    "discard ratio", as in the widely used rollout code), a new tensor."""
    if ratio <= 0:
        return matrices
    flat = matrices.flatten(-2)
    count = int(flat.shape[-1] * ratio)
    if count == 0:
        return matrices
    lowest = flat.topk(count, dim=-1, largest=False).indices
    return flat.scatter(-1, lowest, 0.0).view_as(matrices)


def _rollout_step(fused: torch.Tensor, residual: bool) -> torch.Tensor:
    """``normalise_rows(fused + I)`` (or ``fused`` with normalised rows)."""
    if residual:
        fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    return fused / fused.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(fused.dtype).tiny)


@dataclass(frozen=True)
class DenseLayout:
    """Attention over the whole sequence: weights ``(B, heads, N, N)``."""

    tokens: int

    def matrices(self, weights: torch.Tensor, batch: int) -> torch.Tensor:
        return weights  # (B, heads, N, N)

    def left(self, vector: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """``vector (B, N) @ matrices (B, N, N)``."""
        return torch.bmm(vector.unsqueeze(1), matrices).squeeze(1)


@dataclass(frozen=True)
class WindowLayout:
    """Swin's shifted windows over an ``height x width`` token grid.

    Tokens are padded to a multiple of ``window``, rolled by ``-shift``, and split into windows;
    the weights are ``(B * windows, heads, window^2, window^2)``.
    """

    height: int
    width: int
    window: int
    shift: int

    @property
    def tokens(self) -> int:
        return self.height * self.width

    def _padded(self) -> tuple[int, int]:
        w = self.window
        return -(-self.height // w) * w, -(-self.width // w) * w

    def matrices(self, weights: torch.Tensor, batch: int) -> torch.Tensor:
        return weights  # (B * nW, heads, w^2, w^2)

    def left(self, vector: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """``vector (B, N)`` times the block's full token-mixing matrix, window by window."""
        batch = vector.shape[0]
        w = self.window
        height_pad, width_pad = self._padded()
        grid = vector.view(batch, self.height, self.width)
        grid = F.pad(grid, (0, width_pad - self.width, 0, height_pad - self.height))
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = (
            grid.view(batch, height_pad // w, w, width_pad // w, w)
            .transpose(2, 3)
            .reshape(-1, w * w)
        )  # (B * nW, w^2)
        mixed = torch.bmm(windows.unsqueeze(1), matrices).squeeze(1)  # (B * nW, w^2)
        grid = (
            mixed.view(batch, height_pad // w, width_pad // w, w, w)
            .transpose(2, 3)
            .reshape(batch, height_pad, width_pad)
        )
        if self.shift:
            grid = torch.roll(grid, shifts=(self.shift, self.shift), dims=(1, 2))
        return grid[:, : self.height, : self.width].reshape(batch, -1)


Layout = DenseLayout | WindowLayout


def _resize_vector(vector: torch.Tensor, source: Layout, target: Layout) -> torch.Tensor:
    """Carry a relevance vector from a block's tokens to the previous block's (Swin's patch
    merging: each merged token's relevance split equally among the tokens it merged)."""
    if source.tokens == target.tokens:
        return vector
    if not isinstance(source, WindowLayout) or not isinstance(target, WindowLayout):
        raise LayerError(
            f"the token count changes from {target.tokens} to {source.tokens} between attention "
            "blocks, and not by merging a token grid; rollout cannot follow it"
        )
    batch = vector.shape[0]
    fy = -(-target.height // source.height)
    fx = -(-target.width // source.width)
    grid = vector.view(batch, source.height, source.width)
    grid = grid.repeat_interleave(fy, dim=1).repeat_interleave(fx, dim=2) / (fy * fx)
    return grid[:, : target.height, : target.width].reshape(batch, -1)


def attention_rollout(
    blocks: Sequence[tuple[torch.Tensor, Layout]],
    start: torch.Tensor,
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    residual: bool = True,
) -> torch.Tensor:
    """``start @ A_hat_L @ ... @ A_hat_1`` (Abnar & Zuidema, 2020), ``(B, N_1)``.

    Parameters
    ----------
    blocks
        ``(weights, layout)`` of each attention block, first block first.
    start
        ``(B, N_L)`` row vector over the last block's tokens (the class token's one-hot row).
    head_fusion, discard_ratio, residual
        How heads are fused; the fraction of each fused matrix's lowest entries zeroed; whether
        the identity (the residual connection) is added before the rows are normalised.
    """
    validate.fraction("discard_ratio", discard_ratio, high_open=True)
    vector = start
    for index in range(len(blocks) - 1, -1, -1):
        weights, layout = blocks[index]
        fused = discard_lowest(fuse_heads(weights, head_fusion), discard_ratio)
        vector = layout.left(vector, _rollout_step(fused, residual))
        if index:
            vector = _resize_vector(vector, layout, blocks[index - 1][1])
    return vector


def gradient_weighted_rollout(
    blocks: Sequence[tuple[torch.Tensor, torch.Tensor, Layout]], start: torch.Tensor
) -> torch.Tensor:
    """``start @ (I + A_bar_L) @ ... @ (I + A_bar_1)`` (Chefer et al., 2021), ``(B, N_1)``.

    ``blocks`` holds ``(weights, gradients, layout)`` per block, first block first, with
    ``A_bar = mean_heads((gradients * weights).clamp(min=0))``.
    """
    vector = start
    for index in range(len(blocks) - 1, -1, -1):
        weights, gradients, layout = blocks[index]
        relevance = (gradients * weights).clamp_(min=0).mean(dim=1)
        vector = vector + layout.left(vector, relevance)
        if index:
            vector = _resize_vector(vector, layout, blocks[index - 1][2])
    return vector


def rollout_matrix(
    weights: Sequence[torch.Tensor],
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    residual: bool = True,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The full rollout matrix ``A_hat_L ... A_hat_1`` ``(B, N, N)`` for dense attention.

    For token sequences (every token's relevance over every other), where ``attention_mask``
    ``(B, N)`` (1 for tokens, 0 for padding) zeroes padding rows and columns before the rows are
    normalised. Costs ``O(N^3)`` per block; :func:`attention_rollout` gives one row for ``O(N^2)``.
    """
    if not weights:
        raise InputError("rollout needs at least one attention block")
    result = None
    for block in weights:
        fused = discard_lowest(fuse_heads(block, head_fusion), discard_ratio)
        if attention_mask is not None:
            keep = attention_mask.to(fused.dtype)
            fused = fused * keep[:, :, None] * keep[:, None, :]
        step = _rollout_step(fused, residual)
        result = step if result is None else step @ result
    assert result is not None
    return result
