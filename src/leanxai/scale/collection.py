"""Explain a whole image collection: streaming, resumable, nothing lost, in-process or on Ray.

One pipeline, two engines. The driver lists the collection into units of work
(:mod:`leanxai.scale.sources`); each unit is *read* (raw bytes, hashed, inputs already done
dropped), *explained* (decoded and explained in the map step, :class:`~leanxai.scale.worker.
UnitExplainer`, the model loaded once per process) and *committed* by the driver into atomic
Parquet shards (:mod:`leanxai.scale.store`). ``engine="local"`` runs the three steps in this
process; ``engine="ray"`` runs read and explain as Ray Data operators (read tasks, then
``map_batches`` over a pool of actors) and streams their output to the driver, which only writes
shards: it never holds more than a few units of rows, whatever the collection's size.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError

__all__ = ["CollectionResult", "explain_collection"]

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
_READ_CPUS = 0.25  # Ray CPUs of one read task: reading is I/O and hashing, never the bottleneck
_READ_TASKS = 2  # read tasks at once: enough to keep the actors fed, few processes to start


@dataclass(frozen=True)
class CollectionResult:
    """What :func:`explain_collection` did.

    Attributes
    ----------
    out, summary
        The output folder and its ``summary.csv``.
    total
        Inputs in the collection, plus sources that yielded nothing (a missing path).
    ok, skipped
        Inputs whose latest row is explained / skipped (bad files, missing paths).
    written
        Rows this run wrote; ``reused`` inputs had their row from an earlier run.
    failed
        ``(input, reason)`` of every skipped input.
    seconds, engine, workers
        Wall time of the run, the engine, its explain processes.
    """

    out: Path
    summary: Path
    total: int
    ok: int
    skipped: int
    written: int
    reused: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1


def _model_identity(model: Any, weights: str | Path | None) -> str:
    """How the manifest names the model: its spec, or a module's class and a hash of its state."""
    if isinstance(model, nn.Module):
        import hashlib

        digest = hashlib.sha256()
        for key, tensor in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"module:{type(model).__qualname__}:{digest.hexdigest()[:16]}"
    text = str(model)
    return f"{text} weights={weights}" if weights is not None else text


def explain_collection(
    source: str | Path | Sequence[str | Path],
    model: str | Path | nn.Module,
    out: str | Path,
    method: str = "gradcam",
    threshold: str | None = None,
    engine: str = "local",
    address: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    *,
    weights: str | Path | None = None,
    layer: str | None = None,
    target: int | None = None,
    size: tuple[int, int] | None = None,
    overlays: bool = False,
    overwrite: bool = False,
    shard_rows: int = 1024,
    shard_seconds: float = 60.0,
    device: str | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CollectionResult:
    """Explain every image of a collection into Parquet shards and ``summary.csv``.

    Parameters
    ----------
    source : str, Path or sequence of them
        Folders (recursive), image files, text files of paths (``.txt``/``.lst``), Parquet files
        with an image-bytes column (see :mod:`leanxai.scale.sources`).
    model : str, Path or torch.nn.Module
        A model spec for :func:`leanxai.core.models.load_model` (``zoo:``, ``hf:``, ``py:``,
        ``.pt2``, ``.lxc.safetensors``) or a module (sent to every Ray worker).
    out : str or Path
        Output folder (:mod:`leanxai.scale.store`). A folder from an earlier run with the same
        settings is resumed: inputs whose file id and content hash have a row are not explained
        again.
    method : str, default "gradcam"
        A CNN method from the registry.
    threshold : str, optional
        A spec for :func:`leanxai.threshold.from_spec` (default ``"none"``); sets ``coverage``.
    engine : {"local", "ray"}
        ``"local"``: this process, no Ray. ``"ray"``: Ray Data, on the cluster at ``address``
        (``None``: start a local one and stop it at the end; ``"auto"``; ``"ray://host:port"``).
        Both give the same rows, bit for bit (the same units, the same batches).
    batch_size : int, default 32
        Images per unit of work and per model batch.
    workers : int, optional
        Ray: explain actors (default: the cluster's CPUs less one, at least 1). Each actor gets
        an equal share of the CPUs minus a reserve for the read tasks, so the pool cannot starve
        them, and one GPU share when the cluster has GPUs.
    weights, layer, target, size
        As for ``leanxai explain``: weights for a ``py:`` spec, the target layer, the class to
        explain (default: predicted), the model input size (default: the model's, else 224).
    overlays : bool, default False
        Also write ``overlays/*.png`` (at scale they dominate the bytes written).
    overwrite : bool, default False
        Replace the results of an earlier run instead of resuming it.
    shard_rows, shard_seconds : int, float
        A shard is written when this many rows are ready, or this long after the last one, and
        at the end (also when the run is interrupted): rows not in a shard are explained again
        by a resumed run, rows in one never are. The rows waiting for their shard are the
        driver's only memory that grows with the work done (about 40 KB each as Arrow tables of
        one unit), so ``shard_rows`` bounds it.
    device : str, optional
        Local engine: ``"cpu"`` or ``"cuda"`` (default: CUDA when available). Ray: the actor's
        assigned GPU, else the CPU.
    threads : int, optional
        torch threads of each explaining process (Ray: per actor, default its CPU share; local:
        default torch's own). On a machine shared with other jobs one thread is often fastest.
    progress : callable, optional
        Called with the number of inputs finished after each unit arrives.

    Returns
    -------
    CollectionResult

    Raises
    ------
    InputError
        Bad arguments, a source that cannot be read, an output folder holding other settings'
        rows (:class:`~leanxai.core.errors.OutputExistsError`).
    ImportError
        ``engine="ray"`` without Ray installed (``pip install 'leanxai[scale]'``).
    """
    from leanxai import threshold as thresholds
    from leanxai.explainers import registry
    from leanxai.scale.sources import list_source
    from leanxai.scale.store import Store
    from leanxai.scale.worker import Settings

    started = time.perf_counter()
    engine = validate.choice("engine", engine, ENGINES)
    batch_size = validate.positive_int("batch_size", batch_size)
    shard_rows = validate.positive_int("shard_rows", shard_rows)
    if workers is not None:
        workers = validate.positive_int("workers", workers)
    if threads is not None:
        threads = validate.positive_int("threads", threads)
    if engine == "local" and (address is not None or (workers is not None and workers > 1)):
        raise InputError(
            "address and workers > 1 apply to engine='ray'; the local engine is one process"
        )
    spec = "none" if threshold is None else str(threshold)
    thresholds.from_spec(spec)  # a bad spec fails before any work
    method = registry.get(method, "cnn").name
    if size is not None:
        size = validate.int_pair("size", size)
    if engine == "ray":
        _import_ray()

    store = Store(out)
    listing = list_source(source, batch_size)
    identity = {
        "model": _model_identity(model, weights),
        "method": method,
        "threshold": spec.strip().lower(),
        "layer": layer,
        "target": target,
        "size": list(size) if size is not None else None,
    }
    run = store.prepare(identity, overwrite)
    store.remove_temporaries()
    done = store.done_keys()
    settings = Settings(
        model=model,
        weights=None if weights is None else str(weights),
        method=method,
        layer=layer,
        threshold=spec,
        target=target,
        size=size,
        batch_size=batch_size,
        overlays=str(store.overlay_dir) if overlays else None,
    )
    committer = _Committer(store, run, shard_rows, shard_seconds, progress)
    try:
        if engine == "local":
            used = 1
            _run_local(listing.units, settings, done, committer, device, threads)
        else:
            used = _run_ray(listing.units, settings, done, committer, address, workers, threads)
    finally:
        committer.flush()  # what is complete is written, also when the run is interrupted
        store.remove_temporaries()
    summary, counts, failed = store.write_summary(listing.files, listing.problems)
    if counts["missing"]:
        # Every unit's rows are committed whole or not at all, and each unit was run: an input
        # without a row is a lost row, a bug, not a bad input.
        raise RuntimeError(
            f"{counts['missing']} of {len(listing.files)} inputs have no row in {store.shard_dir}; "
            "rerun with the same arguments to finish them"
        )
    return CollectionResult(
        out=store.out,
        summary=summary,
        total=len(listing.files) + len(listing.problems),
        ok=counts["ok"],
        skipped=counts["skipped"],
        written=committer.written,
        reused=len(listing.files) - committer.written,
        failed=failed,
        ignored=listing.ignored,
        seconds=time.perf_counter() - started,
        engine=engine,
        workers=used,
    )


class _Committer:
    """The driver's end of the stream: whole units into atomic shards, each unit once."""

    def __init__(
        self,
        store: Any,
        run: int,
        shard_rows: int,
        shard_seconds: float,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.store, self.run = store, run
        self.shard_rows, self.shard_seconds = shard_rows, shard_seconds
        self.progress = progress
        self.partial: dict[int, list[Any]] = {}  # unit -> its tables so far (Ray may split one)
        self.ready: list[Any] = []
        self.ready_rows = 0
        self.seen: set[int] = set()
        self.shards = 0
        self.written = 0
        self.last = time.monotonic()

    def add(self, table: Any) -> None:
        import pyarrow.compute as pc

        if table.num_rows == 0:
            return
        groups = np.unique(table.column("group").to_numpy())
        for group in map(int, groups):
            part = table if len(groups) == 1 else table.filter(pc.equal(table["group"], group))
            if group in self.seen:
                logger.warning("unit %d arrived twice; its second copy is dropped", group)
                continue
            self.partial.setdefault(group, []).append(part)
            rows = sum(t.num_rows for t in self.partial[group])
            if rows >= int(part.column("group_rows")[0].as_py()):
                self.seen.add(group)
                parts = self.partial.pop(group)
                self.ready.extend(parts)
                self.ready_rows += rows
                if self.progress is not None:
                    self.progress(rows)
        if self.ready_rows >= self.shard_rows or time.monotonic() - self.last >= self.shard_seconds:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.ready:
            return
        table = pa.concat_tables(self.ready).drop_columns(["group", "group_rows"])
        self.store.write_shard(table, self.run, self.shards)
        self.shards += 1
        self.written += table.num_rows
        self.ready, self.ready_rows = [], 0
        self.last = time.monotonic()


def _run_local(
    units: list[str],
    settings: Any,
    done: np.ndarray,
    committer: _Committer,
    device: str | None,
    threads: int | None,
) -> None:
    import torch

    from leanxai.scale.read import read_unit
    from leanxai.scale.worker import UnitExplainer

    if not units:
        return
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    before = torch.get_num_threads()
    try:  # the caller's thread setting is theirs: restored after the run
        explainer = UnitExplainer(settings, threads=threads, device=device)
        for unit in units:
            committer.add(explainer.explain_unit(read_unit(unit, done)))
    finally:
        torch.set_num_threads(before)


# -- Ray -------------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ImportError("engine='ray' needs Ray Data: pip install 'leanxai[scale]'") from error
    return ray


def actor_share(cpus: float, workers: int) -> tuple[float, int]:
    """Ray CPUs to reserve per explain actor, and its torch threads, for ``workers`` actors.

    The actors leave a reserve (half a CPU up to 4 CPUs, one above) for the read tasks: a pool
    that reserves every CPU starves them and the run never starts (seen on 2 cores). A share of
    one or more is a whole number, as Ray requires.
    """
    reserve = 0.5 if cpus <= 4 else 1.0
    share = max(0.05, (cpus - reserve) / workers)
    share = float(math.floor(share)) if share >= 1 else round(share, 2)
    threads = max(1, int(cpus // workers))
    return share, threads


def _run_ray(
    units: list[str],
    settings: Any,
    done: np.ndarray,
    committer: _Committer,
    address: str | None,
    workers: int | None,
    threads: int | None,
) -> int:
    ray = _import_ray()
    from leanxai.scale.read import read_batch
    from leanxai.scale.worker import UnitExplainer

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1.0))
        gpus = float(resources.get("GPU", 0.0))
        count = workers or max(1, int(cpus) - 1)
        share, default_threads = actor_share(cpus, count)
        if not units:
            return count
        dataset = ray.data.from_items(
            [{"unit": unit} for unit in units], override_num_blocks=min(len(units), 10_000)
        )
        dataset = dataset.map_batches(
            read_batch,
            fn_kwargs={"done": done},
            batch_size=None,
            batch_format="pyarrow",
            num_cpus=_READ_CPUS,
            compute=ray.data.TaskPoolStrategy(size=_READ_TASKS),
        )
        dataset = dataset.map_batches(
            UnitExplainer,
            fn_constructor_args=(settings, threads or default_threads),
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=count),
            num_cpus=share,
            num_gpus=min(1.0, gpus / count) if gpus else None,
        )
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            committer.add(table)
        return count
    finally:
        if started_here:
            ray.shutdown()
