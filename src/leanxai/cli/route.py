"""``leanxai route``: train and evaluate the built-in router, and route image files.

``leanxai route INPUTS... --out DIR`` routes images; ``leanxai route train`` and ``leanxai route
eval`` are subcommands. A :class:`click.Group` that falls back to the ``run`` command when the
first argument is not a subcommand's name makes both spellings work.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from leanxai.cli._common import (
    EXIT_PARTIAL,
    cache_dir_option,
    fail,
    note_ignored,
    output_names,
)
from leanxai.core.errors import InputError, LeanXAIError

DATASET_CHOICE = click.Choice(["mnist", "shapes"])


class _DefaultGroup(click.Group):
    """A group whose first argument, when not a subcommand, goes to the ``run`` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            first = args[0]
            visible = [name for name, c in self.commands.items() if not c.hidden]
            close = difflib.get_close_matches(first, visible, n=1, cutoff=0.6)
            if close and not Path(first).exists() and not Path(first).suffix:
                raise click.UsageError(
                    f"no such subcommand {first!r} (did you mean {close[0]!r}?); "
                    "image files and folders to route must exist",
                    ctx,
                )
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup)
def route() -> None:
    """Explanation-guided routing: send each input to the smallest tier that will get it right.

    \b
    leanxai route INPUTS... --out DIR   route image files; decisions.csv, SHAP and radar charts
    leanxai route train                 train the tiers and the router (cached)
    leanxai route eval [--json]         every policy on held-out data
    """


def _load(dataset: str, cache_dir: str | None, retrain: bool = False) -> Any:
    from leanxai.experiments.routing import load_routing

    try:
        return load_routing(dataset, cache_dir, retrain=retrain)
    except (OSError, LeanXAIError) as error:
        fail(f"cannot load the {dataset} routing system: {error}")


@route.command()
@click.option("--dataset", type=DATASET_CHOICE, default="mnist", show_default=True)
@cache_dir_option
@click.option("--retrain", is_flag=True, help="retrain the router (tiers stay cached)")
def train(dataset: str, cache_dir: str | None, retrain: bool) -> None:
    """Train (or load) the tiers and the router, and print the operating point."""
    routing = _load(dataset, cache_dir, retrain)
    meta = routing.metadata
    click.echo(
        f"{dataset}: router trained on {meta.get('n_router', '?')} inputs the tiers never saw "
        f"(labels per tier {meta.get('label_counts', '?')}); operating points: tau="
        f"{routing.router.tau:g} alone, tau={routing.escalate_tau} with escalation "
        f"thresholds (TINY/LIGHT/MEDIUM) {_thresholds(routing.escalate)}; cascade "
        f"{_thresholds(routing.cascade)}"
    )


def _thresholds(values: Any) -> str:
    """``0.9/0.9/0.7`` for per-tier thresholds, ``none`` for ``None``."""
    if values is None:
        return "none"
    return "/".join(f"{float(v):g}" for v in values)


def _format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['dataset']}: {result['n']} held-out inputs; tau={result['tau']:g}; with "
        f"escalation tau={result['escalate_tau']}, thresholds "
        f"{_thresholds(result['escalate'])}; cascade {_thresholds(result.get('cascade'))}",
        f"{'policy':34} {'accuracy':>8} {'MFLOPs':>8} {'vs HEAVY':>8} {'ms b1':>7} {'ms b32':>7}"
        "  tier mix (T/L/M/H)",
    ]
    for row in result["policies"]:
        b1 = "" if row["latency_ms_b1"] is None else f"{row['latency_ms_b1']:.2f}"
        b32 = "" if row["latency_ms_b32"] is None else f"{row['latency_ms_b32']:.3f}"
        mix = "/".join(f"{share:.2f}" for share in row["tier_mix"])
        lines.append(
            f"{row['name']:34} {row['accuracy']:8.4f} {row['mean_flops'] / 1e6:8.2f} "
            f"{row['relative_flops']:8.1%} {b1:>7} {b32:>7}  {mix}"
        )
    return "\n".join(lines)


@route.command(name="eval")
@click.option("--dataset", type=DATASET_CHOICE, default="mnist", show_default=True)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--no-latency", is_flag=True, help="skip timing the pipelines")
def evaluate(dataset: str, cache_dir: str | None, as_json: bool, no_latency: bool) -> None:
    """Accuracy, FLOPs (probe included) and latency of every policy on held-out data."""
    from leanxai.experiments.routing import evaluate_routing

    routing = _load(dataset, cache_dir)
    result = evaluate_routing(routing, latency=not no_latency, progress=not as_json)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(_format_table(result))


@route.command(name="run", hidden=True)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", type=DATASET_CHOICE, default="mnist", show_default=True)
@cache_dir_option
@click.option("--no-escalate", is_flag=True, help="run only the routed tier")
@click.option("--overwrite", is_flag=True, help="replace existing output files")
def run(
    inputs: tuple[str, ...],
    out_dir: Path,
    dataset: str,
    cache_dir: str | None,
    no_escalate: bool,
    overwrite: bool,
) -> None:
    """Route images; write decisions.csv and, per image, a SHAP bar chart and a radar chart."""
    import numpy as np
    import torch

    from leanxai.data.images import find_images, ignored_files, load_image
    from leanxai.io import atomic_write_bytes, atomic_write_text, check_writable
    from leanxai.route.features import FEATURE_NAMES
    from leanxai.route.router import TIERS
    from leanxai.route.why import explain_decisions, radar_chart, shap_bar_chart

    files, problems = find_images(list(inputs))
    note_ignored(ignored_files(list(inputs)))
    names = output_names(files)
    planned = [out_dir / "decisions.csv"]
    for name in names:
        planned += [out_dir / f"{name}_shap.png", out_dir / f"{name}_radar.png"]
    try:
        check_writable(planned, overwrite)
    except LeanXAIError as error:
        fail(error)
    routing = _load(dataset, cache_dir)
    channels, height, width = routing.input_size
    failed: list[tuple[str, str]] = [(str(p), reason) for p, reason in problems]
    loaded: list[tuple[Path, str, torch.Tensor]] = []
    for path, name in zip(files, names, strict=True):
        try:
            image = load_image(path, size=(height, width))
        except InputError as error:
            failed.append((str(path), str(error)))
            continue
        if channels == 1:
            image = image.mean(0, keepdim=True)
        loaded.append((path, name, image))
    rows: list[dict[str, Any]] = [
        {"file": path, "status": f"skipped: {reason}"} for path, reason in failed
    ]
    if loaded:
        batch = torch.stack([image for _, _, image in loaded])
        classifier = routing.classifier(escalate=not no_escalate)
        try:
            result = classifier.predict(batch)
            shap_values = explain_decisions(
                routing.router, result.features, routing.training_features
            )
        except LeanXAIError as error:
            fail(error)
        profiles, low, high = routing.profiles()
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"cannot create output folder {str(out_dir)!r}: {error.strerror or error}")
        for i, (path, name, _) in enumerate(loaded):
            row: dict[str, Any] = {"file": str(path)}
            tier = int(result.tier[i])
            row.update(
                routed_tier=TIERS[int(result.routed[i])] if result.routed is not None else "",
                tier=TIERS[tier],
                prediction=int(result.prediction[i]),
                label=(
                    routing.classes[int(result.prediction[i])] if result.prediction[i] >= 0 else ""
                ),
                router_confidence=f"{float(result.confidence[i]):.4f}",
                flops=int(result.flops[i]),
                latency_ms=f"{float(result.latency_s[i]) * 1e3:.3f}",
                expected_tier=f"{float(shap_values.output[i]):.4f}",
            )
            for j, feature in enumerate(FEATURE_NAMES):
                row[feature] = f"{float(result.features[i, j]):.5f}"
                row[f"shap_{feature}"] = f"{float(shap_values.values[i, j]):.5f}"
            if i in result.errors:
                row["status"] = f"failed: {result.errors[i]}"
                failed.append((str(path), result.errors[i]))
            else:
                row["status"] = "ok"
            title = f"{path.name}: routed to {row['routed_tier']}, answered by {TIERS[tier]}"
            atomic_write_bytes(
                out_dir / f"{name}_shap.png",
                shap_bar_chart(shap_values.values[i], title=title),
                overwrite=overwrite,
            )
            atomic_write_bytes(
                out_dir / f"{name}_radar.png",
                radar_chart(result.features[i], profiles, low, high, title=title),
                overwrite=overwrite,
            )
            rows.append(row)
    else:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"cannot create output folder {str(out_dir)!r}: {error.strerror or error}")
    fields = [
        "file", "status", "routed_tier", "tier", "prediction", "label", "router_confidence",
        "flops", "latency_ms", "expected_tier",
        *FEATURE_NAMES, *(f"shap_{f}" for f in FEATURE_NAMES),
    ]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "decisions.csv", buffer.getvalue(), overwrite=overwrite)
    done = sum(row["status"] == "ok" for row in rows)
    mean_flops = np.mean([int(r["flops"]) for r in rows if r["status"] == "ok"] or [0])
    click.echo(
        f"routed {done} of {len(files)} images ({mean_flops / 1e6:.2f} MFLOPs each on average, "
        f"probe included); wrote {out_dir / 'decisions.csv'} and the charts beside it"
    )
    for path_text, reason in failed:
        message = reason if reason.startswith(path_text) else f"{path_text}: {reason}"
        click.echo(f"skipped {message}", err=True)
    if failed:
        sys.exit(EXIT_PARTIAL)
