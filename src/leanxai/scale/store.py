"""The output folder of a collection run: Parquet shards, a manifest, summary.csv.

Layout of ``out``::

    scale.json                 what produced the rows (model, method, threshold...): a rerun with
                               other settings is refused, the same settings resume
    shards/part-RRRR-SSSSSS.parquet
                               rows, written atomically (a hidden temporary file, then a link), so
                               a shard is complete or absent; RRRR counts runs, SSSSSS shards
    overlays/NAME-HASH.png     with ``overlays=True`` only
    summary.csv                the latest row of every input, written at the end of each run

The shards are an append-only log: a run adds rows and never rewrites one. An input explained
again (its content changed, or reading it failed and is retried) gets a newer row that supersedes
the older one; :func:`latest_rows` and ``summary.csv`` hold exactly one row per input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from leanxai.core.errors import InputError, OutputExistsError, one_line
from leanxai.io import atomic_write, atomic_write_text

__all__ = [
    "SUMMARY_FIELDS",
    "Store",
    "latest_rows",
]

SUMMARY_FIELDS = (
    "file",
    "class",
    "label",
    "score",
    "coverage",
    "time_s",
    "layer",
    "path",
    "output",
    "map",
    "status",
    "sha256",
)
"""``summary.csv``: the columns of ``leanxai explain``'s, then the content hash. ``map`` names the
shard that holds the row's ``cam``; ``status`` is ``ok`` or ``skipped: <reason>``."""

_SHARD = re.compile(r"^part-(\d{4,})-(\d{6,})\.parquet$")
_MANIFEST = "scale.json"


def _shard_order(path: Path) -> tuple[int, int]:
    match = _SHARD.match(path.name)
    assert match is not None  # only names that matched are listed
    return int(match.group(1)), int(match.group(2))


class Store:
    """The shards of one output folder: what is done, and where the next rows go."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.shard_dir = self.out / "shards"
        self.overlay_dir = self.out / "overlays"

    # -- what exists ---------------------------------------------------------------------------

    def shards(self) -> list[Path]:
        """Committed shards, oldest first (hidden temporary files are not shards)."""
        if not self.shard_dir.is_dir():
            return []
        found = [p for p in self.shard_dir.iterdir() if _SHARD.match(p.name)]
        return sorted(found, key=_shard_order)

    def prepare(self, settings: dict[str, Any], overwrite: bool) -> int:
        """Check ``out`` against ``settings`` and return this run's number.

        A folder without a manifest must hold no ``summary.csv``, shards or overlays (else
        :class:`OutputExistsError`, unless ``overwrite``); a folder with one resumes when the
        settings are the same and is refused otherwise. ``overwrite`` removes the earlier
        shards, overlays and summary first.
        """
        manifest = self.out / _MANIFEST
        if overwrite:
            self._clear()
        elif manifest.is_file():
            try:
                earlier = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise InputError(f"{manifest}: cannot read ({one_line(error)})") from error
            changed = sorted(
                k for k in set(settings) | set(earlier) if settings.get(k) != earlier.get(k)
            )
            if changed:
                shown = "; ".join(
                    f"{k}: {earlier.get(k)!r} then, {settings.get(k)!r} now" for k in changed
                )
                raise OutputExistsError(
                    f"{self.out} holds rows made with other settings ({shown}); resume with the "
                    "same settings, or write to another folder",
                    paths=[manifest],
                )
        else:
            existing = [
                p
                for p in (self.out / "summary.csv", self.shard_dir, self.overlay_dir)
                if p.exists()
            ]
            if existing:
                raise OutputExistsError(
                    f"{self.out} holds results that are not a collection run "
                    f"({', '.join(str(p) for p in existing)}); not replaced",
                    paths=existing,
                )
        text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        if not manifest.is_file() or overwrite:
            atomic_write_text(manifest, text, overwrite=True)
        runs = [_shard_order(p)[0] for p in self.shards()]
        return max(runs, default=-1) + 1

    def _clear(self) -> None:
        for path in self.shards():
            path.unlink()
        if self.overlay_dir.is_dir():
            for path in self.overlay_dir.glob("*.png"):
                path.unlink()
        for name in ("summary.csv", _MANIFEST):
            (self.out / name).unlink(missing_ok=True)

    def done_keys(self) -> np.ndarray:
        """Sorted ``S16`` resume keys of the rows written so far (inputs whose bytes were read)."""
        from leanxai.scale.read import KEY_BYTES, content_key

        keys: list[bytes] = []
        for shard in self.shards():
            table = _read(shard, ["file", "sha256"])
            for file, sha in zip(
                table.column("file").to_pylist(), table.column("sha256").to_pylist(), strict=True
            ):
                if sha:
                    keys.append(content_key(file, sha))
        return np.unique(np.array(keys, dtype=f"S{KEY_BYTES}"))

    # -- writing ----------------------------------------------------------------------------------

    def write_shard(self, table: Any, run: int, index: int) -> Path:
        """Write one shard atomically; a shard of that name is never replaced."""
        import pyarrow.parquet as pq

        path = self.shard_dir / f"part-{run:04d}-{index:06d}.parquet"

        def write(handle: Any) -> None:
            pq.write_table(table, handle, compression="zstd")

        return atomic_write(path, write, overwrite=False)

    def remove_temporaries(self) -> None:
        """Remove hidden temporary files a killed writer left (never a committed file)."""
        for folder in (self.shard_dir, self.overlay_dir):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)

    def write_summary(
        self, files: list[str], problems: list[tuple[str, str]]
    ) -> tuple[Path, dict[str, int], list[tuple[str, str]]]:
        """Write ``summary.csv``: ``problems``, then the latest row of each of ``files``.

        Rows stream from the shards to the file (atomically), never all in memory. Returns the
        path, counts ``{"ok", "skipped", "missing"}`` (``missing``: listed inputs without a row,
        which a correct run never leaves) and ``(file, reason)`` of the skipped inputs.
        """
        wanted = {file: k for k, file in enumerate(files)}
        counts = {"ok": 0, "skipped": len(problems), "missing": 0}
        failed = list(problems)
        found = np.zeros(len(files), dtype=bool)

        def write(handle: Any) -> None:
            text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
            writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS, restval="")
            writer.writeheader()
            for file, reason in problems:
                writer.writerow({"file": file, "status": f"skipped: {reason}"})
            for shard, row in latest_rows(self.out, wanted=wanted):
                found[wanted[row["file"]]] = True
                ok = row["status"] == "ok"
                counts["ok" if ok else "skipped"] += 1
                if not ok:
                    failed.append((row["file"], row["error"] or ""))
                writer.writerow(_summary_row(row, shard, self.shard_dir.parent))
            text.flush()
            text.detach()  # the handle is atomic_write's to close

        path = atomic_write(self.out / "summary.csv", write, overwrite=True)
        counts["missing"] = int((~found).sum())
        return path, counts, failed


def _summary_row(row: dict[str, Any], shard: Path, root: Path) -> dict[str, Any]:
    ok = row["status"] == "ok"
    return {
        "file": row["file"],
        "class": row["class"] if ok else "",
        "label": row["label"] or "" if ok else "",
        "score": f"{row['score']:.6f}" if ok else "",
        "coverage": f"{row['coverage']:.6f}" if ok else "",
        "time_s": f"{row['time_s']:.6f}" if ok else "",
        "layer": row["layer"] or "" if ok else "",
        "path": row["path"] or "" if ok else "",
        "output": row["output"] or "",
        "map": shard.relative_to(root).as_posix() if ok else "",
        "status": "ok" if ok else f"skipped: {row['error']}",
        "sha256": row["sha256"],
    }


def _read(shard: Path, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(str(shard), columns=columns)
    except Exception as error:  # a shard is written atomically: this is damage from outside
        raise InputError(
            f"{shard}: cannot read this shard ({one_line(error)}); move it away and rerun to "
            "explain its inputs again"
        ) from error


_ROWS_AT_ONCE = 1024  # rows of a shard turned into Python objects at a time

_ROW_COLUMNS = (
    "file",
    "sha256",
    "class",
    "label",
    "score",
    "coverage",
    "time_s",
    "layer",
    "path",
    "status",
    "error",
    "output",
)


def latest_rows(
    out: str | Path,
    *,
    wanted: dict[str, int] | None = None,
    columns: tuple[str, ...] = _ROW_COLUMNS,
    with_cam: bool = False,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The latest row of every input in ``out``'s shards, as ``(shard, row)``, shard by shard.

    Parameters
    ----------
    out : str or Path
        An output folder of :func:`leanxai.scale.explain_collection`.
    wanted : dict, optional
        Only these file ids (the keys).
    columns : tuple of str
        Columns of each row.
    with_cam : bool, default False
        Add ``cam``: the ``(h, w)`` float32 map at the layer's resolution (``cam_scale`` times the
        stored float16 values; ``None`` for a skipped input).

    Notes
    -----
    Two passes over the shards: the first reads the ``file`` column only and keeps, per input, the
    newest shard and row (8 bytes of hash each), the second yields those rows. Memory grows with
    the number of inputs by a few tens of bytes each, never with the maps.
    """
    store = Store(out)
    shards = store.shards()
    digests: list[np.ndarray] = []
    for shard in shards:
        names = _read(shard, ["file"]).column("file").to_pylist()
        digests.append(np.array([_digest(n) for n in names], dtype=np.uint64))
    if not digests:
        return
    sizes = np.array([d.size for d in digests])
    every = np.concatenate(digests)
    # The newest occurrence wins: unique over the reversed order gives each digest's last index.
    _, first_reversed = np.unique(every[::-1], return_index=True)
    keep = np.zeros(every.size, dtype=bool)
    keep[every.size - 1 - first_reversed] = True
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    read_columns = list(
        dict.fromkeys([*columns, "file", *(("cam", "cam_scale") if with_cam else ())])
    )
    for k, shard in enumerate(shards):
        mask = keep[offsets[k] : offsets[k + 1]]
        if not mask.any():
            continue
        table = _read(shard, read_columns)
        shape = _cam_shape(table.schema) if with_cam else None
        offset = 0
        for batch in table.to_batches(max_chunksize=_ROWS_AT_ONCE):
            rows = batch.to_pylist()
            kept_rows = mask[offset : offset + len(rows)]
            offset += len(rows)
            yield from _kept(shard, rows, kept_rows, wanted, shape)


def _kept(
    shard: Path,
    rows: list[dict[str, Any]],
    mask: np.ndarray,
    wanted: dict[str, int] | None,
    shape: tuple[int, int] | None,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    with_cam = shape is not None
    for row, kept in zip(rows, mask, strict=True):
        if not kept or (wanted is not None and row["file"] not in wanted):
            continue
        if with_cam:
            cam, scale = row.pop("cam"), row.pop("cam_scale")
            row["cam"] = (
                None
                if cam is None
                else (np.asarray(cam, dtype=np.float32) * np.float32(scale)).reshape(shape)
            )
        yield shard, row


def _digest(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little"
    )


def _cam_shape(schema: Any) -> tuple[int, int]:
    text = (schema.metadata or {}).get(b"leanxai.cam_shape", b"")
    height, _, width = text.decode().partition(",")
    return int(height), int(width)
