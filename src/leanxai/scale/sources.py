"""What a collection holds, in fixed units of work, and how a unit's raw bytes are read.

A source is a folder (walked recursively, as ``leanxai explain`` walks one), an image file, a text
file of paths (``.txt`` or ``.lst``: one path a line, relative paths taken from the list's folder,
blank lines and ``#`` comments ignored), or a Parquet file whose rows hold image bytes. Several
sources may be given together.

The listing is cut into *units*: ``batch_size`` consecutive files, or one Parquet row group. A
unit is read, explained and committed as a whole, always with the same members, so a resumed run
explains every image in the same batch as an uninterrupted one and gives the same bits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leanxai.core.errors import InputError, one_line
from leanxai.data.images import find_images, ignored_files

__all__ = [
    "LIST_SUFFIXES",
    "PARQUET_SUFFIXES",
    "Listing",
    "content_key",
    "list_source",
    "read_unit",
]

LIST_SUFFIXES: frozenset[str] = frozenset({".txt", ".lst"})
PARQUET_SUFFIXES: frozenset[str] = frozenset({".parquet", ".pq"})
_ID_COLUMNS = ("path", "file", "filename", "name", "id")
KEY_BYTES = 16
"""Bytes of a row's resume key (``blake2b`` of the file id and the content's SHA-256)."""


@dataclass
class Listing:
    """A collection, listed: its units of work, every input's id, and what could not be listed.

    ``units`` are JSON strings (small, and the same in every engine); ``files`` the id of every
    input in listing order (a path as given, or ``parquet#row`` / the Parquet id column);
    ``problems`` ``(path, reason)`` for sources that yield nothing; ``ignored`` files inside
    folders that are not images.
    """

    units: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def content_key(file: str, sha256: str) -> bytes:
    """The resume key of one input: its id and its content, in :data:`KEY_BYTES` bytes."""
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    digest.update(file.encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(sha256.encode("ascii"))
    return digest.digest()


def list_source(source: str | Path | Sequence[str | Path], batch_size: int) -> Listing:
    """List ``source`` (see the module docstring) into units of ``batch_size`` files.

    Raises
    ------
    InputError
        A Parquet file that cannot be read or holds no image-bytes column, a list file that
        cannot be read.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise InputError("source is empty; give a folder, a list of paths or a Parquet file")
    listing = Listing()
    images: list[str | Path] = []  # folders and image files, walked as `leanxai explain` does

    def flush_images() -> None:
        if not images:
            return
        files, problems = find_images(list(images))
        listing.problems.extend((str(p), reason) for p, reason in problems)
        listing.ignored.extend(ignored_files(list(images)))
        _add_files(listing, [str(p) for p in files], batch_size)
        images.clear()

    for raw in sources:
        path = Path(raw)
        suffix = path.suffix.lower()
        if path.is_file() and suffix in PARQUET_SUFFIXES:
            flush_images()
            _add_parquet(listing, path)
        elif path.is_file() and suffix in LIST_SUFFIXES:
            flush_images()
            listed = _read_list(path)
            files, problems = find_images(listed) if listed else ([], [])
            if not listed:
                listing.problems.append((str(path), "list of paths is empty"))
            listing.problems.extend((str(p), reason) for p, reason in problems)
            _add_files(listing, [str(p) for p in files], batch_size)
        else:
            images.append(raw)
    flush_images()
    return listing


def _add_files(listing: Listing, files: list[str], batch_size: int) -> None:
    seen = set(listing.files)
    files = [f for f in files if f not in seen]
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        group = len(listing.units)
        listing.units.append(json.dumps({"group": group, "kind": "files", "files": chunk}))
    listing.files.extend(files)


def _read_list(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the list of paths ({one_line(error)})") from error
    entries: list[Path] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries


def _parquet_columns(path: Path, schema: Any) -> tuple[str, str | None, str | None]:
    """``(bytes column, struct field holding the bytes or None, id column or None)``."""
    import pyarrow as pa

    binary: list[tuple[str, str | None]] = []
    for item in schema:
        if pa.types.is_binary(item.type) or pa.types.is_large_binary(item.type):
            binary.append((item.name, None))
        elif pa.types.is_struct(item.type):
            for child in item.type:
                if child.name == "bytes" and (
                    pa.types.is_binary(child.type) or pa.types.is_large_binary(child.type)
                ):
                    binary.append((item.name, "bytes"))  # a Hugging Face datasets Image column
    if len(binary) != 1:
        names = ", ".join(f"{item.name}: {item.type}" for item in schema)
        what = "no column" if not binary else "several columns"
        raise InputError(
            f"{path}: {what} of image bytes (binary, or a struct with a binary 'bytes' field) "
            f"among its columns ({names})"
        )
    ids = [
        item.name
        for item in schema
        if item.name.lower() in _ID_COLUMNS
        and (pa.types.is_string(item.type) or pa.types.is_large_string(item.type))
    ]
    return binary[0][0], binary[0][1], ids[0] if ids else None


def _add_parquet(listing: Listing, path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(str(path))
        column, child, id_column = _parquet_columns(path, handle.schema_arrow)
        first = 0
        for group in range(handle.num_row_groups):
            rows = handle.metadata.row_group(group).num_rows
            if id_column is not None:
                ids = handle.read_row_group(group, columns=[id_column]).column(0).to_pylist()
                files = [
                    str(value) if value is not None else f"{path}#{first + k}"
                    for k, value in enumerate(ids)
                ]
            else:
                files = [f"{path}#{first + k}" for k in range(rows)]
            unit = {
                "group": len(listing.units),
                "kind": "parquet",
                "source": str(path),
                "row_group": group,
                "column": column,
                "child": child,
                "files": files,
            }
            listing.units.append(json.dumps(unit))
            listing.files.extend(files)
            first += rows
    except InputError:
        raise
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
        raise InputError(f"{path}: cannot read as Parquet ({one_line(error)})") from error


def _contains(done: np.ndarray | None, key: bytes) -> bool:
    if done is None or done.size == 0:
        return False
    k = int(np.searchsorted(done, np.array(key, dtype=done.dtype)))
    return k < done.size and bytes(done[k]) == key


def read_unit(unit: str, done: np.ndarray | None = None) -> dict[str, Any]:
    """Read the raw bytes of one unit, hash them, and drop the inputs already done.

    Parameters
    ----------
    unit : str
        One of :attr:`Listing.units`.
    done : numpy.ndarray, optional
        Sorted ``S16`` array of :func:`content_key` of inputs written by an earlier run.

    Returns
    -------
    dict
        ``group`` (int), and lists ``files``, ``sha256`` (``""`` when unreadable), ``data``
        (``None`` when unreadable), ``error`` (``None`` when read) of the inputs still to do.
        Nothing is raised for a bad input: it is a row with its error.
    """
    spec = json.loads(unit)
    files: list[str] = list(spec["files"])
    data: list[bytes | None]
    errors: list[str | None]
    if spec["kind"] == "parquet":
        data, errors = _read_parquet_unit(spec)
    else:
        data, errors = [], []
        for file in files:
            content, error = _read_file(file)
            data.append(content)
            errors.append(error)
    result: dict[str, Any] = {
        "group": int(spec["group"]),
        "files": [],
        "sha256": [],
        "data": [],
        "error": [],
    }
    for file, content, error in zip(files, data, errors, strict=True):
        sha = hashlib.sha256(content).hexdigest() if content is not None else ""
        if content is not None and _contains(done, content_key(file, sha)):
            continue
        result["files"].append(file)
        result["sha256"].append(sha)
        result["data"].append(content)
        result["error"].append(error)
    return result


def _read_file(file: str) -> tuple[bytes | None, str | None]:
    path = Path(file)
    try:
        with open(path, "rb") as handle:
            return handle.read(), None
    except FileNotFoundError:
        return None, f"{file}: file does not exist"
    except IsADirectoryError:
        return None, f"{file}: is a folder, not an image file"
    except OSError as error:
        return None, f"{file}: cannot read file ({one_line(error)})"


def _read_parquet_unit(spec: dict[str, Any]) -> tuple[list[bytes | None], list[str | None]]:
    import pyarrow.parquet as pq

    files: list[str] = spec["files"]
    try:
        table = pq.ParquetFile(spec["source"]).read_row_group(
            spec["row_group"], columns=[spec["column"]]
        )
        values: Iterable[Any] = table.column(0).to_pylist()
    except Exception as error:  # the whole row group is unreadable: every row says so
        reason = (
            f"cannot read row group {spec['row_group']} of {spec['source']} ({one_line(error)})"
        )
        return [None] * len(files), [f"{file}: {reason}" for file in files]
    data: list[bytes | None] = []
    errors: list[str | None] = []
    for file, value in zip(files, values, strict=True):
        if spec["child"] is not None and isinstance(value, dict):
            value = value.get(spec["child"])
        if value is None:
            data.append(None)
            errors.append(f"{file}: no image bytes (null)")
        else:
            data.append(bytes(value))
            errors.append(None)
    return data, errors
