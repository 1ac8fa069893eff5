"""Safe output files: refuse to overwrite unless asked, and never leave a half-written file.

Every writer here writes to a temporary file in the destination folder and then moves it into place
with :func:`os.replace` (or :func:`os.link` when overwriting is not allowed, so a file that
appears meanwhile is not clobbered). A reader therefore sees either the old file or the complete
new one, and a crash leaves at most a hidden ``.<name>.<random>.tmp`` file, never a truncated
output.
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

from leanxai.core.errors import OutputExistsError

__all__ = ["atomic_save_npy", "atomic_write_bytes", "atomic_write_text", "check_writable"]

_SHOWN = 5  # existing files named in an OutputExistsError before "and N more"


def check_writable(paths: Iterable[str | Path], overwrite: bool) -> None:
    """Check that output files may be written, before any work is done.

    Parameters
    ----------
    paths : iterable of str or Path
        Output files about to be written.
    overwrite : bool
        Whether existing files may be replaced.

    Raises
    ------
    OutputExistsError
        ``overwrite`` is False and some of ``paths`` exist (the first few are named, with the
        count of the rest), or a path is an existing folder (never replaced, even with
        ``overwrite``).
    """
    existing: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            raise OutputExistsError(f"{path}: output path is an existing folder, not a file")
        if path.exists() or path.is_symlink():
            existing.append(path)
    if existing and not overwrite:
        shown = ", ".join(str(path) for path in existing[:_SHOWN])
        more = f" and {len(existing) - _SHOWN} more" if len(existing) > _SHOWN else ""
        noun = "file already exists" if len(existing) == 1 else "files already exist"
        raise OutputExistsError(
            f"{len(existing)} output {noun}: {shown}{more}; "
            "pass overwrite=True (--overwrite) to replace"
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
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _atomic_write(path, lambda handle: handle.write(data), overwrite)


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
        raise TypeError(f"text must be a str, got {type(text).__name__}")
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
        raise TypeError(
            f"array must be a numpy.ndarray or torch.Tensor, got {type(array).__name__}"
        )
    if array.dtype.hasobject:
        raise TypeError("array must not have dtype object; it could only be saved with pickle")
    values = array

    def write(handle: BinaryIO) -> None:
        np.save(handle, values, allow_pickle=False)

    return _atomic_write(path, write, overwrite)


def _atomic_write(path: str | Path, write: Callable[[BinaryIO], object], overwrite: bool) -> Path:
    path = Path(path)
    check_writable([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _create_temp(path)
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _link_no_clobber(temp, path)
    finally:
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
        raise OutputExistsError(
            f"1 output file already exists: {path}; pass overwrite=True (--overwrite) to replace"
        ) from error
    except OSError:
        # Hard links unsupported on this file system: fall back to check-then-replace.
        check_writable([path], overwrite=False)
        os.replace(temp, path)
