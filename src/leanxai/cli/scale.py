"""``leanxai explain SOURCE --engine local|ray``: a whole collection, streaming and resumable.

Parses nothing itself: ``leanxai explain`` hands its options here when ``--engine`` is given, and
this calls :func:`leanxai.scale.explain_collection`. Rerunning the same command over the same
``--out`` resumes: inputs already written are not explained again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from leanxai.cli._common import EXIT_PARTIAL, fail, note_ignored, parse_size
from leanxai.core.errors import LeanXAIError

__all__ = ["explain_collection_command"]


def explain_collection_command(
    inputs: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    layer: str | None,
    method: str,
    threshold_spec: str,
    target: int | None,
    size: str | None,
    batch_size: int,
    out_dir: Path,
    overwrite: bool,
    engine: str,
    address: str | None,
    workers: int | None,
    overlays: bool,
) -> None:
    """Run :func:`leanxai.scale.explain_collection` for ``leanxai explain --engine``."""
    from tqdm import tqdm

    from leanxai.scale import explain_collection

    try:
        input_size = parse_size(size)
    except click.BadParameter as error:
        fail(error)
    if engine == "local" and (address is not None or (workers or 1) > 1):
        fail("--address and --workers apply to --engine ray")
    bar = tqdm(desc="explaining", unit="image", disable=None)
    try:
        result = explain_collection(
            list(inputs),
            model_spec,
            out_dir,
            method=method,
            threshold=threshold_spec,
            engine=engine,
            address=address,
            batch_size=batch_size,
            workers=workers,
            weights=weights,
            layer=layer,
            target=target,
            size=input_size,
            overlays=overlays,
            overwrite=overwrite,
            progress=bar.update,
        )
    except LeanXAIError as error:
        fail(error)
    except ImportError as error:
        fail(str(error))
    finally:
        bar.close()
    note_ignored(result.ignored)
    reused = f", {result.reused} from an earlier run" if result.reused else ""
    click.echo(
        f"explained {result.ok} of {result.total} inputs ({result.written} rows written"
        f"{reused}) with {result.engine} in {result.seconds:.1f} s; wrote {result.summary}"
    )
    for file, reason in result.failed[:20]:
        message = reason if reason.startswith(file) else f"{file}: {reason}"
        click.echo(f"skipped {message}", err=True)
    if len(result.failed) > 20:
        click.echo(f"skipped {len(result.failed) - 20} more (status in summary.csv)", err=True)
    if result.failed:
        sys.exit(EXIT_PARTIAL)
