"""Symmetric integer quantisation of weights, uniform or mixed precision by relevance.

Each weight tensor is split into groups that share a bit width; each group is quantised
symmetrically per output channel: ``scale_c = max |w| / (2^(b-1) - 1)`` over the group's entries in
channel ``c``, ``code = round(w / scale_c)`` clamped to ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, and the
dequantised weight is ``code * scale_c``. Zero stays exactly zero, so pruned weights cost nothing
but their mask. Scales are float32.

Relevance-guided mixed precision follows the paper this project reproduces (issue 5): in each
layer, kept weights whose relevance lies above the median relevance of that layer's kept weights
get the high bit width, the rest the low one (cf. Becking et al., 2022, "ECQx:
Explainability-Driven Quantization for Low-Bit and Sparse DNNs", which also uses LRP relevance
to choose quantisation).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from leanxai.compress.prune import PrunePlan, apply_pruning, prunable_weights
from leanxai.core.errors import InputError, InputTypeError

__all__ = [
    "MIXED_BITS",
    "CompressedModel",
    "QuantGroup",
    "QuantizedTensor",
    "dequantize",
    "mixed_precision_plan",
    "quantize_model",
    "quantize_uniform",
]

logger = logging.getLogger(__name__)

MIXED_BITS: tuple[tuple[int, int], ...] = ((16, 8), (8, 4), (8, 2))
"""The (high, low) bit widths :func:`mixed_precision_plan` accepts."""

MIN_BITS, MAX_BITS = 2, 16


@dataclass(frozen=True)
class QuantGroup:
    """Entries of one weight tensor that share a bit width.

    Attributes
    ----------
    bits : int
        Bit width, 2..16.
    mask : torch.Tensor
        Bool, the weight's shape: which entries the group holds.
    codes : torch.Tensor
        ``(mask.sum(),)`` integer codes (int8 up to 8 bits, int16 above) of the held entries, in
        row-major order, each in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``.
    scales : torch.Tensor
        ``(C,)`` float32: one scale per output channel (``C = 1`` when not per channel).
    """

    bits: int
    mask: torch.Tensor
    codes: torch.Tensor
    scales: torch.Tensor


@dataclass(frozen=True)
class QuantizedTensor:
    """A weight tensor as integer codes and scales; entries in no group are zero (pruned).

    Attributes
    ----------
    shape : tuple of int
        The weight's shape.
    groups : tuple of QuantGroup
        Disjoint groups, high bit width first.
    dtype : torch.dtype
        The dtype :meth:`dequantize` returns.
    """

    shape: tuple[int, ...]
    groups: tuple[QuantGroup, ...]
    dtype: torch.dtype = torch.float32

    @property
    def keep(self) -> torch.Tensor:
        """Bool mask of the stored (not pruned) entries."""
        keep = torch.zeros(self.shape, dtype=torch.bool)
        for group in self.groups:
            keep |= group.mask.cpu()
        return keep

    @property
    def bits(self) -> torch.Tensor:
        """int8 tensor of the weight's shape: each entry's bit width, 0 where pruned."""
        bits = torch.zeros(self.shape, dtype=torch.int8)
        for group in self.groups:
            bits[group.mask.cpu()] = group.bits
        return bits

    def dequantize(self) -> torch.Tensor:
        """The weight the codes stand for."""
        return dequantize(self)


def _channels(shape: tuple[int, ...], per_channel: bool) -> int:
    return shape[0] if per_channel and len(shape) >= 1 else 1


def _check_bits(bits: int, name: str = "bits") -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise InputError(f"{name} must be in {MIN_BITS}..{MAX_BITS}, got {bits!r}")


def _quantize_group(
    weight: torch.Tensor, mask: torch.Tensor, bits: int, per_channel: bool
) -> QuantGroup:
    channels = _channels(tuple(weight.shape), per_channel)
    w = weight.detach().double().reshape(channels, -1)  # (C, n / C)
    m = mask.to(weight.device).reshape(channels, -1)
    qmax = 2 ** (bits - 1) - 1
    absmax = (w.abs() * m).amax(dim=1)  # (C,)
    # The scale is rounded to float32 before the codes are computed, so that codes * scale in
    # float32 is what a stored file gives back.
    scales = (absmax / qmax).float()
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(w / scales.double()[:, None]).clamp_(-qmax, qmax)
    code_dtype = torch.int8 if bits <= 8 else torch.int16
    return QuantGroup(
        bits=int(bits),
        mask=mask.detach().to(torch.bool).cpu().clone(),
        codes=codes[m].to(code_dtype).cpu(),
        scales=scales.cpu(),
    )


def quantize_uniform(
    weight: torch.Tensor,
    bits: int,
    per_channel: bool = True,
    mask: torch.Tensor | None = None,
) -> QuantizedTensor:
    """Symmetric uniform quantisation of a weight at one bit width.

    Parameters
    ----------
    weight : torch.Tensor
        The weight; axis 0 is the output channel.
    bits : int
        Bit width, 2..16 (2 bits is ternary: codes -1, 0, 1).
    per_channel : bool, default True
        One scale per output channel (axis 0) instead of one for the tensor.
    mask : torch.Tensor, optional
        Bool, the weight's shape: entries to keep; the others become zero and are not stored.

    Returns
    -------
    QuantizedTensor
        One group; ``.dequantize()`` gives the fake-quantised weight.

    Raises
    ------
    ValueError
        For ``bits`` outside 2..16 or a mask of another shape.
    """
    if not isinstance(weight, torch.Tensor) or not weight.dtype.is_floating_point:
        raise InputTypeError(f"weight must be a floating-point tensor, got {weight!r:.60}")
    _check_bits(bits)
    shape = tuple(weight.shape)
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool)
    if tuple(mask.shape) != shape or mask.dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor of shape {shape}, got {mask!r:.60}")
    group = _quantize_group(weight, mask, int(bits), per_channel)
    return QuantizedTensor(shape=shape, groups=(group,), dtype=weight.dtype)


def dequantize(quantized: QuantizedTensor) -> torch.Tensor:
    """The weight a :class:`QuantizedTensor` stands for: ``code * scale``, zero elsewhere.

    Computed in float32, then cast to ``quantized.dtype``.
    """
    out = torch.zeros(quantized.shape, dtype=torch.float32)
    for group in quantized.groups:
        channels = group.scales.numel()
        mask = group.mask.reshape(channels, -1)
        scale = group.scales.float()[:, None].expand(mask.shape)[mask]
        out.reshape(channels, -1)[mask] = group.codes.float() * scale
    return out.to(quantized.dtype)


def mixed_precision_plan(
    relevance: Mapping[str, torch.Tensor],
    keep_mask: Mapping[str, torch.Tensor] | PrunePlan | None = None,
    bits: tuple[int, int] = (8, 4),
) -> dict[str, torch.Tensor]:
    """Bit width per weight: high above the layer's median relevance of kept weights, else low.

    The rule of the paper this project reproduces (issue 5): in each layer, kept weights whose
    relevance is strictly above the median relevance of that layer's kept weights get
    ``bits[0]``, the other kept weights ``bits[1]``, pruned weights 0.

    One exception, as in :func:`~leanxai.compress.prune.scores_from_relevance`: in the output
    layer (the last entry of ``relevance``, forward order), a row through which no relevance
    flowed at all belongs to a class no calibration input targeted; its zero says nothing about
    the class, so its kept weights keep ``bits[0]`` and the layer's median is taken over the
    other rows. Without this, the 990 classes of an ImageNet classifier that 40 calibration crops
    never predicted all got ``bits[1]`` (issue 22). Where every class is targeted nothing
    changes.

    Parameters
    ----------
    relevance : Mapping of str to torch.Tensor
        Weight parameter name -> relevance (or any score) of the weight's shape.
    keep_mask : Mapping of str to torch.Tensor, PrunePlan or None
        Kept weights per name (a plan's masks); names absent are wholly kept. Default: all kept.
    bits : (16, 8), (8, 4) or (8, 2), default (8, 4)
        High and low bit widths.

    Returns
    -------
    dict of str to torch.Tensor
        Name -> int8 tensor of the weight's shape with values ``bits[0]``, ``bits[1]`` or 0,
        ready for :func:`quantize_model`.

    Raises
    ------
    ValueError
        For other bit pairs or masks of the wrong shape.
    """
    bits = tuple(bits)  # type: ignore[assignment]
    if bits not in MIXED_BITS:
        raise InputError(f"bits must be one of {MIXED_BITS}, got {bits!r}")
    masks = keep_mask.masks if isinstance(keep_mask, PrunePlan) else (keep_mask or {})
    high, low = bits
    plan: dict[str, torch.Tensor] = {}
    output = list(relevance)[-1] if relevance else None
    for name, value in relevance.items():
        value = value.detach().cpu()
        keep = masks.get(name)
        keep = torch.ones(value.shape, dtype=torch.bool) if keep is None else keep.cpu()
        if keep.shape != value.shape or keep.dtype != torch.bool:
            raise InputError(f"keep_mask[{name!r}] must be bool of shape {tuple(value.shape)}")
        out = torch.zeros(value.shape, dtype=torch.int8)
        untargeted = torch.zeros(value.shape, dtype=torch.bool)
        if name == output and value.dim() >= 1:
            flat = value.reshape(value.shape[0], -1) != 0
            untargeted = (~flat.any(1)).reshape((-1,) + (1,) * (value.dim() - 1)).expand_as(value)
        measured = keep & ~untargeted
        kept = value[measured]
        out[keep & untargeted] = high
        if kept.numel():
            median = float(np.median(kept.double().numpy()))
            out[measured] = low
            out[measured & (value.double() > median)] = high
        plan[name] = out
    return plan


@dataclass(frozen=True)
class CompressedModel:
    """A pruned and quantised model and what a file needs to store it.

    Attributes
    ----------
    model : nn.Module
        A copy of the original with every quantised weight replaced by its dequantised value
        (fake quantisation), in eval mode; use it to measure accuracy.
    weights : Mapping of str to QuantizedTensor
        Parameter name -> its integer codes and scales. Parameters not named (biases, BatchNorm,
        layers left out) are stored as floats.
    plan : PrunePlan or None
        The pruning plan, if any.
    metadata : Mapping of str to Any
        JSON-serialisable record of how the model was compressed.
    """

    model: nn.Module
    weights: Mapping[str, QuantizedTensor]
    plan: PrunePlan | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: torch.Tensor) -> Any:
        """Run the fake-quantised model."""
        return self.model(inputs)

    @property
    def mean_bits(self) -> float:
        """Mean bits per quantised weight entry, pruned entries counting 0 (codes only)."""
        total = sum(int(np.prod(q.shape)) for q in self.weights.values())
        used = sum(g.bits * g.codes.numel() for q in self.weights.values() for g in q.groups)
        return 0.0 if total == 0 else used / total


def quantize_model(
    model: nn.Module,
    bits: int | Mapping[str, torch.Tensor] = 8,
    *,
    plan: PrunePlan | None = None,
    per_channel: bool = True,
) -> CompressedModel:
    """Quantise a model's Linear and Conv weights, after pruning by ``plan`` if given.

    Parameters
    ----------
    model : nn.Module
        Left unchanged.
    bits : int or Mapping of str to torch.Tensor, default 8
        An int (2..16): every weight named by ``plan`` (default: every Linear and Conv weight)
        at that width, uniformly. A mapping, as :func:`mixed_precision_plan` returns: weight name
        -> bit width per entry (0 = pruned); each width forms a group with its own scales.
    plan : PrunePlan, optional
        Applied first (:func:`~leanxai.compress.apply_pruning`); pruned weights are not stored.
    per_channel : bool, default True
        One scale per output channel and group.

    Returns
    -------
    CompressedModel
        The fake-quantised copy and the quantised representation, for
        :func:`~leanxai.compress.save_compressed`.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if plan is not None and not isinstance(plan, PrunePlan):
        raise InputTypeError(f"plan must be a PrunePlan or None, got {type(plan).__name__}")
    compressed = apply_pruning(model, plan) if plan is not None else copy.deepcopy(model)
    parameters = dict(compressed.named_parameters())
    masks = dict(plan.masks) if plan is not None else {}
    if isinstance(bits, Mapping):
        widths = {name: value.detach().cpu().to(torch.int64) for name, value in bits.items()}
    else:
        _check_bits(bits)
        names = list(masks) if plan is not None else list(prunable_weights(compressed))
        widths = {
            name: torch.full(tuple(parameters[name].shape), int(bits), dtype=torch.int64)
            if name in parameters
            else torch.zeros(0, dtype=torch.int64)
            for name in names
        }
    quantized: dict[str, QuantizedTensor] = {}
    with torch.no_grad():
        for name, width in widths.items():
            if name not in parameters:
                raise InputError(f"bits names {name!r}, which is not a parameter of the model")
            weight = parameters[name]
            if tuple(width.shape) != tuple(weight.shape):
                raise InputError(
                    f"bits[{name!r}] has shape {tuple(width.shape)}, the weight "
                    f"{tuple(weight.shape)}"
                )
            if name in masks:
                width = width * masks[name].cpu()
            groups = []
            for value in sorted({int(v) for v in width.unique().tolist()} - {0}, reverse=True):
                _check_bits(value, f"bit width of {name!r}")
                groups.append(_quantize_group(weight, width == value, value, per_channel))
            quantized[name] = QuantizedTensor(tuple(weight.shape), tuple(groups), weight.dtype)
            weight.copy_(dequantize(quantized[name]).to(weight.device))
    compressed.eval()
    metadata: dict[str, Any] = {
        "bits": "mixed" if isinstance(bits, Mapping) else int(bits),
        "per_channel": per_channel,
        "pruning": None if plan is None else plan.method,
    }
    result = CompressedModel(model=compressed, weights=quantized, plan=plan, metadata=metadata)
    logger.debug("quantised %d weights, %.2f bits per entry", len(quantized), result.mean_bits)
    return result
