"""User-facing exception types.

Every error a user can cause derives from :class:`LeanXAIError` and from the built-in type a Python
user would expect (``ValueError`` or ``TypeError``), so ``except ValueError`` keeps working. The CLI
prints ``str(error)`` as one line and exits non-zero.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


class LeanXAIError(Exception):
    """Base class of every error leanxai raises on purpose."""


class InputError(LeanXAIError, ValueError):
    """Inputs that cannot be explained: wrong shape, NaN, unreadable image."""


class LayerError(LeanXAIError, ValueError):
    """A target layer that does not exist or does not produce a usable feature map."""


class TargetError(LeanXAIError, ValueError):
    """A target class that is out of range or of the wrong shape."""


class ModelOutputError(LeanXAIError, TypeError):
    """A model whose output holds no logits."""


class ModelLoadError(LeanXAIError, ValueError):
    """A model spec that cannot be loaded (missing file, unsafe format, bad factory)."""


class OutputExistsError(LeanXAIError, FileExistsError):
    """An output file exists and overwriting was not asked for.

    The message says what exists and that it was not replaced, without saying how to allow it
    (a Python caller passes ``overwrite=True``, the CLI ``--overwrite``). ``paths`` holds the
    existing files that allowing it would replace; it is empty when that would not help (the
    output path is an existing folder).
    """

    def __init__(self, message: str, *, paths: Iterable[str | os.PathLike[str]] = ()) -> None:
        super().__init__(message)
        self.paths: tuple[str, ...] = tuple(str(path) for path in paths)


class UnsupportedLayerError(LeanXAIError, ValueError):
    """A model with layers (or a forward) that a relevance rule does not cover; names them."""


class InputTypeError(LeanXAIError, TypeError):
    """An argument of the wrong type (a list where a tensor is needed, a str for an int)."""


def one_line(error: BaseException) -> str:
    """The first non-empty line of ``str(error)``, or the exception's type name when it is empty.

    The CLI and every report use this to show an error as one line; it never raises.
    """
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


class LayerWarning(UserWarning):
    """A target layer whose map may mislead (the model's first layer shows the input more than the
    decision)."""
