"""The shared argument and tensor checks.

Every check raises a :class:`~leanxai.core.errors.LeanXAIError` subclass that is also the built-in
type a Python user expects: :class:`~leanxai.core.errors.InputError` (a ``ValueError``) for a bad
value, :class:`~leanxai.core.errors.InputTypeError` (a ``TypeError``) for a wrong type. Messages
name the argument and the value in one line. The argument order is always ``(name, value)``.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from typing import Any

import torch

from leanxai.core.errors import InputError, InputTypeError

__all__ = [
    "choice",
    "finite_float",
    "fraction",
    "images",
    "instance",
    "int_pair",
    "maps",
    "non_negative_int",
    "optional_positive_int",
    "positive_float",
    "positive_int",
    "probability",
    "tensor",
]


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return type(value).__module__ == "numpy" and kind in ("i", "u")


def _is_real(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return type(value).__module__ == "numpy" and kind in ("i", "u", "f")


def instance(name: str, value: object, kind: type | tuple[type, ...]) -> Any:
    """``value`` if it is an instance of ``kind``, else an :class:`InputTypeError`."""
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise InputTypeError(f"{name} must be a {names}, got {type(value).__name__}")
    return value


def positive_int(name: str, value: object) -> int:
    """An int >= 1 (numpy ints too, bools refused)."""
    if not _is_int(value) or int(value) < 1:  # type: ignore[call-overload]
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def optional_positive_int(name: str, value: object) -> int | None:
    return None if value is None else positive_int(name, value)


def non_negative_int(name: str, value: object) -> int:
    """An int >= 0 (a seed, an index)."""
    if not _is_int(value) or int(value) < 0:  # type: ignore[call-overload]
        raise InputError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def finite_float(name: str, value: object) -> float:
    """Any finite real number (a value of another type is an :class:`InputTypeError`)."""
    if not _is_real(value):
        raise InputTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise InputError(f"{name} must be finite, got {value!r}")
    return number


def positive_float(name: str, value: object) -> float:
    """A finite real number > 0."""
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def fraction(name: str, value: object, *, low_open: bool = False, high_open: bool = False) -> float:
    """A real number in ``[0, 1]`` (ends excluded where asked)."""
    number = finite_float(name, value)
    low_bad = number <= 0 if low_open else number < 0
    high_bad = number >= 1 if high_open else number > 1
    if low_bad or high_bad:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise InputError(f"{name} must be in {interval}, got {value!r}")
    return number


def probability(name: str, value: object) -> float:
    """A probability strictly between 0 and 1."""
    return fraction(name, value, low_open=True, high_open=True)


def int_pair(name: str, value: object) -> tuple[int, int]:
    """An int or a pair of positive ints, as a pair."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (positive_int(name, value[0]), positive_int(name, value[1]))
    side = positive_int(name, value)
    return (side, side)


def choice(name: str, value: object, options: Sequence[str]) -> str:
    """One of ``options`` (exact match)."""
    if not isinstance(value, str) or value not in options:
        raise InputError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def tensor(
    name: str, value: object, *, dims: int | None = None, floating: bool = False
) -> torch.Tensor:
    """A tensor, optionally with ``dims`` dimensions and a floating dtype."""
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dims is not None and value.dim() != dims:
        raise InputError(f"{name} must have {dims} dimensions, got shape {tuple(value.shape)}")
    if floating and not value.dtype.is_floating_point:
        raise InputError(f"{name} must be a floating tensor, got dtype {value.dtype}")
    return value


def finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Refuse NaN and infinite values, naming the samples that hold them."""
    # One reduction first: a NaN or inf anywhere makes the sum non-finite. Only then (or on an
    # overflow of the sum) look at every element. The sum is tested as a Python number: one
    # tensor op fewer than torch.isfinite on it (cmath: int, float and complex sums alike).
    if not cmath.isfinite(value.sum().item()) and not bool(torch.isfinite(value).all()):
        bad = (~torch.isfinite(value)).reshape(value.shape[0], -1).any(dim=1).nonzero()[:, 0]
        raise InputError(f"{name} contain NaN or infinite values (samples {bad[:10].tolist()})")
    return value


def images(value: object, name: str = "inputs") -> torch.Tensor:
    """A ``(B, C, H, W)`` floating tensor with finite values and at least one sample."""
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 4:
        raise InputError(
            f"{name} must have shape (B, C, H, W), got {tuple(value.shape)}; "
            "add a batch dimension with inputs[None] for one image"
        )
    if not value.dtype.is_floating_point:
        raise InputError(f"{name} must be a floating tensor, got dtype {value.dtype}")
    if value.shape[0] == 0:
        raise InputError(f"{name} is an empty batch")
    return finite(name, value)


def maps(value: object, name: str = "heatmap", *, batch: int | None = None) -> torch.Tensor:
    """A ``(B, H, W)`` map (a ``(H, W)`` map becomes a batch of one); floating, finite.

    ``batch`` refuses a map whose batch size differs from the inputs'.
    """
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() == 2:
        value = value[None]
    if value.dim() != 3:
        raise InputError(f"{name} must have shape (B, H, W) or (H, W), got {tuple(value.shape)}")
    if batch is not None and value.shape[0] != batch:
        raise InputError(f"{name} has {value.shape[0]} maps for a batch of {batch} inputs")
    return value
