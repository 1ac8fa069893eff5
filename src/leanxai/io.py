"""Safe output files: refuse to overwrite unless asked, and never leave a half-written file.

:func:`atomic_write` is the one writer: every output file of leanxai (reports, heatmaps,
compressed models, model caches, router files) goes through it or its wrappers here. It writes to
a hidden temporary file in the destination folder, created with the permissions the umask gives
(as :func:`open` would), and then moves it into place with :func:`os.replace` (or
:func:`os.link` when overwriting is not allowed, so a file that appears meanwhile is not
clobbered). A reader therefore sees either the old file or the complete new one; an exception
while writing (also :class:`KeyboardInterrupt`) removes the temporary file, and only a hard crash
can leave a hidden ``.<name>.<random>.tmp`` file, never a truncated output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from leanxai.core.errors import InputTypeError, OutputExistsError

__all__ = [
    "atomic_save_npy",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
]

_SHOWN = 5  # existing files named in an OutputExistsError before "and N more"


def check_writable(paths: Iterable[str | os.PathLike[str]], overwrite: bool) -> None:
    """Check that output files may be written, before any work is done.

    Parameters
    ----------
    paths : iterable of str or path-like
        Output files about to be written.
    overwrite : bool
        Whether existing files may be replaced.

    Raises
    ------
    OutputExistsError
        ``overwrite`` is False and some of ``paths`` exist (the first few are named, with the
        count of the rest; all of them are in its ``paths``), or a path is an existing folder
        (never replaced, even with ``overwrite``; ``paths`` is then empty).
    """
    existing: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            raise OutputExistsError(f"{path}: output path is an existing folder, not a file")
        if path.exists() or path.is_symlink():
            existing.append(path)
    if existing and not overwrite:
        raise _exists(existing)


def _exists(existing: list[Path]) -> OutputExistsError:
    shown = ", ".join(str(path) for path in existing[:_SHOWN])
    more = f" and {len(existing) - _SHOWN} more" if len(existing) > _SHOWN else ""
    noun = "file already exists" if len(existing) == 1 else "files already exist"
    return OutputExistsError(
        f"{len(existing)} output {noun}; not replaced: {shown}{more}", paths=existing
    )


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write bytes to a file atomically.

    Parameters
    ----------
    path : str or Path
        Destination file. Missing parent folders are created.
    data : bytes
        Content.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or ``path`` is a folder.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputTypeError(f"data must be bytes, got {type(data).__name__}")
    return atomic_write(path, lambda handle: handle.write(data), overwrite=overwrite)


def atomic_write_text(
    path: str | Path, text: str, *, overwrite: bool = False, encoding: str = "utf-8"
) -> Path:
    """Write text to a file atomically.

    Parameters
    ----------
    path : str or Path
        Destination file. Missing parent folders are created.
    text : str
        Content, written as is (no newline translation).
    overwrite : bool, default False
        Whether an existing file may be replaced.
    encoding : str, default "utf-8"
        Text encoding.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or ``path`` is a folder.
    """
    if not isinstance(text, str):
        raise InputTypeError(f"text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


def atomic_save_npy(
    path: str | Path, array: np.ndarray | torch.Tensor, *, overwrite: bool = False
) -> Path:
    """Save an array in NumPy ``.npy`` format atomically.

    Parameters
    ----------
    path : str or Path
        Destination file, used exactly as given (unlike :func:`numpy.save`, no ``.npy`` suffix is
        added). Missing parent folders are created.
    array : numpy.ndarray or torch.Tensor
        Array to save; a tensor is detached and moved to the CPU. Object arrays are refused
        (``allow_pickle=False``), so the file loads without pickle.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or ``path`` is a folder.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise InputTypeError(
            f"array must be a numpy.ndarray or torch.Tensor, got {type(array).__name__}"
        )
    if array.dtype.hasobject:
        raise InputTypeError("array must not have dtype object; it could only be saved with pickle")
    values = array

    def write(handle: BinaryIO) -> None:
        np.save(handle, values, allow_pickle=False)

    return atomic_write(path, write, overwrite=overwrite)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    overwrite: bool = False,
) -> Path:
    """Write a file atomically through a callback: the one writer every output goes through.

    ``write`` receives a binary file open on a new hidden temporary file beside ``path``
    (``.<name>.<random>.tmp``, created with mode ``0o666`` less the umask, as :func:`open`
    would); once it returns, the data are flushed to disk and the temporary file is moved to
    ``path``. If ``write`` raises anything (also :class:`KeyboardInterrupt`), the temporary file is
    removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or path-like
        Destination file. Missing parent folders are created.
    write : callable
        Called once with the open binary file; its return value is ignored.
    overwrite : bool, default False
        Whether an existing file may be replaced. Without it, a file that appears at ``path``
        while ``write`` runs is not clobbered either.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or ``path`` is a folder.
    InputTypeError
        ``write`` is not callable.
    """
    if not callable(write):
        raise InputTypeError(f"write must be callable, got {type(write).__name__}")
    path = Path(path)
    check_writable([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp: Path | None = None
    try:
        temp = _create_temp(path)
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _link_no_clobber(temp, path)
    finally:
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    return path


def _create_temp(path: Path) -> Path:
    """Create an empty hidden temp file beside ``path``, with permissions set by the umask."""
    for _ in range(100):
        temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            # 0o666 filtered by the umask, as for any file a user creates (mkstemp would use 0o600).
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", str(path))


def _link_no_clobber(temp: Path, path: Path) -> None:
    """Move ``temp`` to ``path`` unless ``path`` exists by now."""
    try:
        os.link(temp, path)
    except FileExistsError as error:
        raise _exists([path]) from error
    except OSError:
        # Hard links unsupported on this file system: fall back to check-then-replace.
        check_writable([path], overwrite=False)
        os.replace(temp, path)
