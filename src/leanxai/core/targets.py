"""Which output to explain: the predicted class, or one class per sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch

from leanxai.core import validate
from leanxai.core.errors import TargetError

__all__ = ["Target", "resolve_target", "top_k"]

Target: TypeAlias = int | Sequence[int] | np.ndarray | torch.Tensor | None


def resolve_target(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """Turn ``target`` into one class index per sample.

    Parameters
    ----------
    target
        ``None`` for the predicted class (argmax of ``logits``); an int for the same class for
        every sample; a sequence, array or tensor of ``B`` ints for one class per sample.
    logits
        ``(B, K)`` model output.

    Returns
    -------
    torch.Tensor
        ``(B,)`` int64 on the device of ``logits``.

    Raises
    ------
    TargetError
        When a class is out of ``[0, K)``, the number of targets is not ``B``, or they are not ints.
    """
    batch, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool):
        raise TargetError(f"target must be an int or a sequence of ints, got {target!r}")
    if isinstance(target, (int, np.integer)):
        indices = torch.full((batch,), int(target), dtype=torch.int64, device=logits.device)
    else:
        try:
            values = torch.as_tensor(np.asarray(target) if not torch.is_tensor(target) else target)
        except (TypeError, ValueError) as error:
            raise TargetError(f"target must be ints, got {target!r}") from error
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise TargetError(f"target must be integer class indices, got dtype {values.dtype}")
        values = values.reshape(-1) if values.dim() == 0 else values
        if values.dim() != 1 or values.numel() != batch:
            raise TargetError(
                f"target has {values.numel()} entries (shape {tuple(values.shape)}); "
                f"expected one per sample ({batch})"
            )
        indices = values.to(device=logits.device, dtype=torch.int64)
    bad = (indices < 0) | (indices >= classes)
    if bool(bad.any()):
        first = int(indices[bad][0])
        raise TargetError(
            f"target class {first} is out of range for a model with {classes} classes "
            f"(valid: 0..{classes - 1})"
        )
    return indices


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest-scoring classes per sample, ``(B, k)`` int64, best first."""
    k = validate.positive_int("k", k)
    if k > logits.shape[1]:
        raise TargetError(f"k={k} must be in 1..{logits.shape[1]}")
    return logits.topk(k, dim=1).indices
