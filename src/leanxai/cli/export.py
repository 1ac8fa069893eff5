"""``leanxai export``: the model and its Grad-CAM heatmap in one ONNX graph (issue 19)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from leanxai.cli._common import (
    fail,
    normalize_options,
    note_ignored,
    overwrite_option,
    parse_size,
    resolve_normalization,
    size_option,
    weights_option,
)
from leanxai.core.errors import InputError, LeanXAIError, one_line

RUNNER_NAME = "leanxai_runtime.py"


def _labels_of(files: list[Path], folder: Path, names: dict[int, str]) -> np.ndarray | None:
    """True classes from class subfolders named by index (``3/``) or by the model's label."""
    by_name = {name: index for index, name in names.items()}
    labels = []
    for file in files:
        parts = file.relative_to(folder).parts
        if len(parts) < 2:
            return None
        name = parts[0]
        if name.isdigit():
            labels.append(int(name))
        elif name in by_name:
            labels.append(by_name[name])
        else:
            return None
    return np.asarray(labels, dtype=np.int64)


def _calibration(
    folder: str, size: tuple[int, int], mean: object, std: object, count: int, names: dict[int, str]
) -> tuple[object, np.ndarray | None, str]:
    """Normalised inputs ``(N, 3, H, W)`` from a folder, its labels if it has them, a summary."""
    import torch

    from leanxai.data.images import find_images, ignored_files, load_image

    files, problems = find_images([folder])
    note_ignored(ignored_files([folder]))
    for path, reason in problems:
        fail(f"--calibration {str(path)!r}: {reason}")
    # An even spread over the folder's sorted files, so every class subfolder is represented.
    chosen = np.unique(np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int))
    files = [files[i] for i in chosen]
    images, kept = [], []
    for file in files:
        try:
            images.append(load_image(file, size=size))
            kept.append(file)
        except InputError as error:
            click.echo(f"skipped {one_line(error)}", err=True)
    if not images:
        fail(f"--calibration {folder!r} holds no readable image")
    batch = torch.stack(images)  # (N, 3, H, W) in [0, 1]
    batch = (batch - torch.tensor(mean or (0.0, 0.0, 0.0))[:, None, None]) / torch.tensor(
        std or (1.0, 1.0, 1.0)
    )[:, None, None]
    labels = _labels_of(kept, Path(folder), names)
    what = f"{len(kept)} images of {folder}" + (
        " with class labels" if labels is not None else " (no class subfolders: no accuracy)"
    )
    return batch, labels, what


def _size_text(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@click.command("export")
@click.option(
    "--model", "model_spec", required=True, help="hf:<repo|dir>, py:module:factory, .pt2 or .lxc"
)
@weights_option
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help=".onnx"
)
@click.option("--layer", default=None, help="dotted name of the target layer (default: found)")
@click.option(
    "--method",
    type=click.Choice(["gradcam", "gradcam++"], case_sensitive=False),
    default="gradcam",
    show_default=True,
)
@click.option("--int8", is_flag=True, help="quantise to int8 (static with --calibration)")
@click.option(
    "--calibration",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="folder of images for int8 calibration; class subfolders (index or label) add accuracy",
)
@click.option(
    "--calibration-count",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="images drawn from --calibration",
)
@click.option(
    "--target-input",
    is_flag=True,
    help="add the optional input requested_target (B,) (negative: the predicted class)",
)
@click.option("--with-runner", is_flag=True, help=f"also write {RUNNER_NAME} beside the model")
@size_option
@normalize_options
@overwrite_option
def export(
    model_spec: str,
    weights: str | None,
    out: Path,
    layer: str | None,
    method: str,
    int8: bool,
    calibration: str | None,
    calibration_count: int,
    target_input: bool,
    with_runner: bool,
    size: str | None,
    overwrite: bool,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    normalize: str | None = None,
) -> None:
    """Export a model and its heatmap as one ONNX graph that runs without PyTorch.

    Inputs: pixels (B, 3, H, W), normalised as the model expects. Outputs: logits (B, K),
    target (B,), heatmap (B, H, W) in [0, 1] and cam (B, h, w). Size, normalisation and class
    names are stored as metadata (the normalisation: the model's own, or --normalize/--mean/--std).
    The graph is checked against PyTorch's Grad-CAM with
    onnxruntime before it is written; a head that cannot be exported writes nothing.
    """
    from leanxai.core.models import load_model
    from leanxai.deploy import export_onnx, runtime
    from leanxai.io import atomic_write_bytes, check_writable

    if calibration is not None and not int8:
        fail("--calibration applies to --int8")
    if out.suffix.lower() != ".onnx":
        fail(f"--out must end in .onnx, got {str(out)!r}")
    runner = out.parent / RUNNER_NAME
    try:
        input_size = parse_size(size)
        check_writable([out, *([runner] if with_runner else [])], overwrite)
        loaded = load_model(model_spec, weights)
    except (LeanXAIError, click.BadParameter) as error:
        fail(error)
    click.echo(f"normalisation: {resolve_normalization(loaded, mean, std, normalize)}")
    model = loaded.model
    side = input_size or loaded.input_size or getattr(model, "input_size", None) or (224, 224)
    if isinstance(side, int):
        side = (side, side)
    inputs = labels = None
    if calibration is not None:
        inputs, labels, described = _calibration(
            calibration, tuple(side), loaded.mean, loaded.std, calibration_count, loaded.labels
        )
        click.echo(f"calibration: {described}")
    try:
        report = export_onnx(
            model,
            out,
            input_size=tuple(side),
            layer=layer,
            method=method.lower(),
            mean=loaded.mean,
            std=loaded.std,
            labels=loaded.labels,
            target_input=target_input,
            int8=int8,
            calibration=inputs,  # type: ignore[arg-type]
            calibration_labels=labels,
            overwrite=overwrite,
        )
        if with_runner:
            source = Path(runtime.__file__).read_bytes()
            atomic_write_bytes(runner, source, overwrite=overwrite)
    except LeanXAIError as error:
        fail(error)
    check = report.check
    click.echo(
        f"wrote {out} ({_size_text(report.bytes)}): {report.method} at {report.layer!r}, "
        f"{report.head} head, input {side[0]}x{side[1]}, dynamic batch"
    )
    click.echo(
        f"checked against PyTorch on {check.inputs} random inputs: logits within "
        f"{check.logits:.1e}, heatmaps within {check.heatmap:.1e}, same targets"
    )
    if report.int8 is not None:
        q = report.int8
        accuracy = ""
        if q.accuracy_float is not None and q.accuracy_int8 is not None:
            change = 100 * (q.accuracy_int8 - q.accuracy_float)
            accuracy = (
                f"; accuracy {q.accuracy_float:.3f} -> {q.accuracy_int8:.3f} ({change:+.1f} points)"
            )
        on = "calibration images" if inputs is not None else "random inputs (no --calibration)"
        click.echo(
            f"int8 ({q.mode}): {_size_text(q.float_bytes)} -> {_size_text(q.int8_bytes)}; on "
            f"{q.inputs} {on}: same prediction for {q.agreement:.1%}{accuracy}; heatmap top-10% "
            f"IoU with float {q.heatmap_iou:.3f} mean, {q.heatmap_iou_min:.3f} worst"
        )
    if with_runner:
        click.echo(f"wrote {runner} (needs onnxruntime, numpy, pillow; no PyTorch)")
