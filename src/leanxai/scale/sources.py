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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanxai.core.errors import InputError, one_line
from leanxai.data.images import find_images, ignored_files

__all__ = [
    "LIST_SUFFIXES",
    "PARQUET_SUFFIXES",
    "Listing",
    "list_source",
]

LIST_SUFFIXES: frozenset[str] = frozenset({".txt", ".lst"})
PARQUET_SUFFIXES: frozenset[str] = frozenset({".parquet", ".pq"})
_ID_COLUMNS = ("path", "file", "filename", "name", "id")


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
