"""The read step: a unit of work's raw bytes, hashed, without the inputs already done.

Ray runs this module's :func:`read_batch` in its read tasks, so it imports nothing heavy (no
torch): a read task starts in a fraction of a second and leaves the CPUs to the explain actors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from leanxai.core.errors import one_line

__all__ = ["KEY_BYTES", "content_key", "read_batch", "read_schema", "read_unit"]

KEY_BYTES = 16
"""Bytes of a row's resume key (``blake2b`` of the file id and the content's SHA-256)."""


def content_key(file: str, sha256: str) -> bytes:
    """The resume key of one input: its id and its content, in :data:`KEY_BYTES` bytes."""
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    digest.update(file.encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(sha256.encode("ascii"))
    return digest.digest()


def _contains(done: np.ndarray | None, key: bytes) -> bool:
    if done is None or done.size == 0:
        return False
    # Compared as numpy values: bytes(done[k]) would drop a key's trailing NUL bytes.
    query = np.array(key, dtype=done.dtype)
    k = int(np.searchsorted(done, query))
    return k < done.size and bool(done[k] == query)


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


def read_schema() -> Any:
    """The Arrow schema of :func:`read_batch`'s rows (one row per unit)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("group", pa.int64()),
            ("files", pa.list_(pa.string())),
            ("sha256", pa.list_(pa.string())),
            ("data", pa.list_(pa.large_binary())),
            ("error", pa.list_(pa.string())),
        ]
    )


def read_batch(table: Any, done: np.ndarray) -> Any:
    """Ray's read step: each unit of ``table["unit"]`` to its raw bytes (one row per unit)."""
    import pyarrow as pa

    rows = [read_unit(unit, done) for unit in table.column("unit").to_pylist()]
    return pa.Table.from_pylist(rows, schema=read_schema())
