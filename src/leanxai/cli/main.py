"""The ``leanxai`` command: a thin click layer over the public API.

Failures print one line and exit non-zero: 1 when nothing could be done (bad model, bad option,
outputs that exist), 2 when a batch finished but some inputs were refused or skipped.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import click
import torch

from leanxai.cli._common import (
    EXIT_PARTIAL,
    LeanXAIGroup,
    cache_dir_option,
    fail,
    input_channels,
    normalize_options,
    note_ignored,
    output_names,
    parse_size,
    resolve_normalization,
)
from leanxai.core.errors import InputError, LeanXAIError, one_line

DEFAULT_IMAGE_MODEL = "zoo:efficientnet_lite0"
"""The model ``leanxai explain`` uses for images when ``--model`` is not given (issue 20)."""
_NAMED_ROWS = 10


@click.group(cls=LeanXAIGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leanxai")
@click.option("--debug", is_flag=True, help="show the traceback of an internal error")
def main(debug: bool) -> None:
    """leanxai: cheap, checked explanations of PyTorch models.

    Exit codes: 0 done; 1 nothing could be done (bad model, data, value; outputs exist);
    2 usage error; 3 some inputs of a batch failed (named on stderr); 4 internal error (a bug).
    """


@main.command()
@click.argument("inputs", nargs=-1, required=False)
@click.option("--text", "texts", multiple=True, help="a text to explain (hf: text classifiers)")
@click.option(
    "--model",
    "model_spec",
    default=None,
    help="zoo:NAME, hf:<repo|dir>, py:module:factory or file.pt2 (images default to "
    f"{DEFAULT_IMAGE_MODEL}: EfficientNet-Lite0 pretrained on ImageNet)",
)
@click.option(
    "--weights", type=click.Path(dir_okay=False), help="state dict or .safetensors for py: specs"
)
@click.option("--layer", default=None, help="dotted name of the target layer (default: found)")
@click.option(
    "--method",
    default="gradcam",
    show_default=True,
    help="a method of the model's family from `leanxai methods` (baselines are slower)",
)
@click.option(
    "--threshold",
    "threshold_spec",
    default="none",
    show_default=True,
    help="none | top:P | dynamic:MIN_COVERAGE | mass:FRACTION",
)
@click.option("--target", type=int, default=None, help="class to explain (default: predicted)")
@click.option(
    "--size", default=None, help="model input size SIZE or HxW (default: from the model, else 224)"
)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="replace existing output files")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="a whole collection (folders, path lists, Parquet) to resumable Parquet shards",
)
@click.option("--address", default=None, help="--engine ray: auto or ray://HOST:PORT")
@click.option("--workers", type=click.IntRange(1, 4096), default=None, help="--engine ray: actors")
@click.option("--overlays", is_flag=True, help="--engine: also write overlay PNGs")
@normalize_options
@click.option(
    "--overlay-size",
    type=click.IntRange(8, 100_000),
    default=1024,
    show_default=True,
    help="longest side of the overlay PNGs: photos are drawn at their own size and aspect "
    "ratio, scaled down to this when larger (the .npy keeps the model-size map)",
)
def explain(
    inputs: tuple[str, ...],
    texts: tuple[str, ...],
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
    engine: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    overlays: bool = False,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    normalize: str | None = None,
    overlay_size: int = 1024,
) -> None:
    """Explain images (files or folders) and write overlays, raw maps and summary.csv.

    Each image is explained at the model's input size; its overlay PNG is drawn on the photo at
    its own size and aspect ratio (longest side at most --overlay-size), and NAME.npy keeps the
    heatmap at the model's input size. summary.csv records the normalisation applied.

    Series: when every input ends in .npy, the sequences are explained with a recurrent method
    (time x feature maps). Graphs: graph.pt[:NODE,...] holds a PyG Data. Texts: --text or .txt
    files of one text per line, with a text classifier (--model hf:DIR). Collections:
    --engine local|ray.
    """
    # Texts, graphs and series have their own default method and threshold: pass on only what
    # the user gave.
    source = click.get_current_context().get_parameter_source
    default = click.core.ParameterSource.DEFAULT
    given_method = None if source("method") == default else method
    given_threshold = None if source("threshold_spec") == default else threshold_spec
    if texts or (inputs and all(str(p).lower().endswith(".txt") for p in inputs)):
        from leanxai.cli.text import explain_texts

        explain_texts(
            inputs, texts, model_spec, given_method, given_threshold, target, batch_size,
            out_dir, overwrite,
        )  # fmt: skip
        return
    if not inputs:
        raise click.UsageError("Missing argument 'INPUTS...' (or --text)")
    from leanxai.cli.graphs import explain_graphs, is_graph_input

    graphs = all(is_graph_input(p) for p in inputs)
    series = all(str(p).lower().endswith(".npy") for p in inputs)
    if model_spec is None and (graphs or series):
        fail(f"--model is required for {'graphs' if graphs else 'series'}")
    if model_spec is None:  # images: the embedded pretrained model
        model_spec = DEFAULT_IMAGE_MODEL
    if graphs:  # graph.pt[:node,...]: a PyG Data
        explain_graphs(
            inputs, model_spec, weights, given_method, layer, given_threshold, target, out_dir,
            overwrite,
        )  # fmt: skip
        return
    if series:
        from leanxai.cli.sequences import explain_series

        explain_series(
            inputs, model_spec, weights, given_method, layer, given_threshold, target,
            batch_size, out_dir, overwrite,
        )  # fmt: skip
        return
    if engine is not None or address is not None or workers is not None or overlays:
        from leanxai.cli.scale import explain_collection_command

        if engine is None:
            fail("--address, --workers and --overlays apply to --engine local|ray")
        if mean is not None or std is not None or normalize is not None:
            fail("--mean, --std and --normalize do not apply to --engine yet; run without --engine")
        explain_collection_command(
            inputs, model_spec, weights, layer, method, threshold_spec, target, size,
            batch_size, out_dir, overwrite, engine, address, workers, overlays,
        )  # fmt: skip
        return
    from tqdm import tqdm

    from leanxai import threshold
    from leanxai.core.families import detect
    from leanxai.core.models import load_model
    from leanxai.data.images import find_images, ignored_files, load_image_and_original
    from leanxai.explainers import registry
    from leanxai.io import atomic_save_npy, atomic_write_text, check_writable
    from leanxai.viz.overlay import save_overlay, save_panel

    try:
        # The model's family decides the method's entry (below); a name no image family knows
        # fails here, before the model loads.
        _image_method(method)
        apply_threshold = threshold.from_spec(threshold_spec)
        input_size = parse_size(size)
    except (LeanXAIError, click.BadParameter) as error:
        fail(error)
    files, problems = find_images(list(inputs))
    note_ignored(ignored_files(list(inputs)))
    names = output_names(files)
    planned = [out_dir / "summary.csv"]
    for name in names:
        planned += [out_dir / f"{name}.png", out_dir / f"{name}.npy"]
    try:
        check_writable(planned, overwrite)
        loaded = load_model(model_spec, weights)
    except LeanXAIError as error:
        fail(error)
    preprocessing = resolve_normalization(loaded, mean, std, normalize)
    model = loaded.model
    side = input_size or loaded.input_size or getattr(model, "input_size", None) or (224, 224)
    shift = torch.tensor(loaded.mean or (0.0, 0.0, 0.0))[:, None, None]  # (3, 1, 1)
    scale = torch.tensor(loaded.std or (1.0, 1.0, 1.0))[:, None, None]
    # A one-channel model (digits) reads the mean of the RGB channels, as `leanxai compress` does.
    gray = input_channels(model) == 1
    try:  # a vision transformer gets its own methods; anything else is explained as a CNN
        family = detect(model, torch.zeros(1, 1 if gray else 3, *side))
    except InputError:  # detection cannot place it: explained as a CNN, as before
        family = "cnn"
    family = family if family == "vision_transformer" else "cnn"
    method = registry.get(method, family).name
    cam = method in ("gradcam", "gradcam++", "token_gradcam")
    if layer is not None and not cam:
        fail(f"--layer applies to gradcam, gradcam++ and token_gradcam, not {method}")
    explainer = registry.create(method, model, family, options={"layer": layer} if cam else None)

    failed: list[tuple[str, str]] = [(str(p), reason) for p, reason in problems]
    rows: list[dict[str, Any]] = [{"file": p, "status": f"skipped: {r}"} for p, r in failed]
    pending: list[tuple[Path, str, torch.Tensor, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = (torch.stack([image for _, _, image, _ in pending]) - shift) / scale  # (B, 3, H, W)
        if gray:
            batch = batch.mean(1, keepdim=True)  # (B, 1, H, W)
        start = time.perf_counter()
        try:
            explanation = explainer.explain(batch, target=target)
        except LeanXAIError as error:
            # A model-level problem (bad layer, bad target) fails every batch alike: stop.
            fail(error)
        except Exception as error:
            text = str(error).strip()
            first = text.splitlines()[0] if text else type(error).__name__
            fail(f"the model failed on a batch of {len(pending)} images of {side}: {first}")
        seconds = (time.perf_counter() - start) / len(pending)
        kept = apply_threshold(explanation.heatmap)
        covered = threshold.coverage(kept)
        for i, (path, name, _, photo) in enumerate(pending):
            heatmap = explanation.heatmap[i]  # (H, W) at the model's input size, kept so in .npy
            atomic_save_npy(out_dir / f"{name}.npy", heatmap.numpy(), overwrite=overwrite)
            # Drawn on the photo itself: the overlay functions resize the map to it.
            if threshold_spec.strip().lower() == "none":
                save_overlay(out_dir / f"{name}.png", photo, heatmap, overwrite=overwrite)
            else:
                save_panel(out_dir / f"{name}.png", photo, heatmap, kept[i], overwrite=overwrite)
            index = int(explanation.target[i])
            rows.append(
                {
                    "file": str(path),
                    "class": index,
                    "label": loaded.labels.get(index, ""),
                    "score": f"{float(explanation.probabilities[i]):.6f}",
                    "coverage": f"{float(covered[i]):.6f}",
                    "time_s": f"{seconds:.6f}",
                    "layer": explanation.layer,
                    "path": explanation.path,
                    "output": f"{name}.png",
                    "map": f"{name}.npy",
                    "preprocessing": preprocessing,
                    "status": "ok",
                }
            )
        pending.clear()

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create output folder {str(out_dir)!r}: {error.strerror or error}")
    for path, name in tqdm(
        list(zip(files, names, strict=True)), desc="explaining", unit="image", disable=None
    ):
        try:
            image, photo = load_image_and_original(path, size=side, max_side=overlay_size)
        except InputError as error:
            failed.append((str(path), str(error)))
            rows.append({"file": str(path), "status": f"skipped: {error}"})
            continue
        pending.append((path, name, image, photo))
        if len(pending) == batch_size:
            flush()
    flush()

    fields = [
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
        "preprocessing",
        "status",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "summary.csv", buffer.getvalue(), overwrite=overwrite)
    done = sum(row["status"] == "ok" for row in rows)
    total = len(files) + len(problems)
    click.echo(f"explained {done} of {total} inputs; wrote {out_dir / 'summary.csv'}")
    named = [row for row in rows if row["status"] == "ok" and row["label"]]
    for row in named[:_NAMED_ROWS]:  # the class in words, for the first few images
        click.echo(f"  {row['file']}: {row['label']} ({float(row['score']):.2f})")
    if len(named) > _NAMED_ROWS:
        click.echo(f"  ... {len(named) - _NAMED_ROWS} more in summary.csv")
    for path_text, reason in failed:
        message = reason if reason.startswith(path_text) else f"{path_text}: {reason}"
        click.echo(f"skipped {message}", err=True)
    if failed:
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("leanxai-demo"),
    show_default=True,
)
@click.option("--images", "count", type=click.IntRange(1, 256), default=16, show_default=True)
@cache_dir_option
@click.option("--overwrite", is_flag=True, help="replace existing output files")
def demo(out_dir: Path, count: int, cache_dir: str | None, overwrite: bool) -> None:
    """Explain real photos with pretrained EfficientNet-Lite0, then held-out shapes with the demo
    CNN (trained once, cached); write one self-contained report."""
    from leanxai.experiments.demo import run_demo

    try:
        report = run_demo(
            out_dir, count=count, cache_dir=cache_dir, overwrite=overwrite, echo=click.echo
        )
    except LeanXAIError as error:
        fail(error)
    click.echo(f"report: {report}")


IMAGE_FAMILIES = ("cnn", "vision_transformer")
"""The families `leanxai explain` takes image files for."""


def _image_method(method: str) -> None:
    """Refuse a method that no image family has, naming those they have."""
    from leanxai.core.errors import InputError
    from leanxai.explainers import registry

    for family in IMAGE_FAMILIES:
        try:
            registry.get(method, family)
            return
        except InputError:
            continue
    known = sorted({n for f in IMAGE_FAMILIES for n in registry.names(f)})
    raise InputError(f"unknown method {method!r} for images; choose from {', '.join(known)}")


def _parse_settings(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``method.option=value`` strings to ``{method: {option: value}}``; values as JSON if they
    parse (numbers, true/false, lists), else as strings."""
    import json

    settings: dict[str, dict[str, Any]] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option:
            raise click.BadParameter(
                f"{text!r} is not METHOD.OPTION=VALUE (e.g. lime.n_samples=500)"
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        settings.setdefault(method.strip(), {})[option.strip()] = value
    return settings


def _split_list(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="one data set, 8 images, short curves (about a minute)")
@click.option("--methods", default=None, help="comma-separated (default: all eight)")
@click.option(
    "--thresholds",
    default=None,
    help="comma-separated specs (default: none, top:1, top:5, top:10, top:20, dynamic, mass:0.8)",
)
@click.option("--datasets", default=None, help="comma-separated: shapes, mnist")
@click.option(
    "--n",
    "count",
    type=click.IntRange(1, 10_000),
    default=None,
    help="images per data set (default 64; 8 with --quick)",
)
@click.option(
    "--steps",
    type=click.IntRange(1, 1000),
    default=None,
    help="deletion/insertion steps (default 32; 16 with --quick)",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="METHOD.OPTION=VALUE",
    help="a method's option, e.g. lime.n_samples=500 (repeatable)",
)
@click.option("--seed", type=int, default=0, show_default=True)
@cache_dir_option
@click.option("--overwrite", is_flag=True, help="replace the files of an earlier run")
@click.option(
    "--model",
    "model_spec",
    default=None,
    help="your model (zoo:, hf:, py:module:factory, file.pt2), with --images and one of "
    "--masks, --voc, --coco, --boxes; instead of the built-in data sets",
)
@click.option(
    "--weights", type=click.Path(dir_okay=False), help="state dict or .safetensors for py: specs"
)
@click.option(
    "--images", "images_dir", type=click.Path(), default=None, help="--model: folder of images"
)
@click.option(
    "--masks",
    "masks_dir",
    type=click.Path(),
    default=None,
    help="folder of masks named as the images (NAME.png or NAME_mask.png; non-zero = object)",
)
@click.option(
    "--voc", "voc_dir", type=click.Path(), default=None, help="a PASCAL VOC folder (no --images)"
)
@click.option(
    "--coco", "coco_file", type=click.Path(), default=None, help="COCO instances JSON of --images"
)
@click.option(
    "--boxes",
    "boxes_file",
    type=click.Path(),
    default=None,
    help="CSV with columns file,class,x0,y0,x1,y1 (pixels; class may be empty)",
)
@click.option(
    "--size", default=None, help="model input size SIZE or HxW (default: from the model, else 224)"
)
@normalize_options
def benchmark(
    out_dir: Path,
    quick: bool,
    methods: str | None,
    thresholds: str | None,
    datasets: str | None,
    count: int | None,
    steps: int | None,
    settings: tuple[str, ...],
    seed: int,
    cache_dir: str | None,
    overwrite: bool,
    model_spec: str | None = None,
    weights: str | None = None,
    images_dir: str | None = None,
    masks_dir: str | None = None,
    voc_dir: str | None = None,
    coco_file: str | None = None,
    boxes_file: str | None = None,
    size: str | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    normalize: str | None = None,
) -> None:
    """Score every method at every threshold against ground-truth masks and the model.

    Writes results.csv, paired_tests.csv, results.json, plots/*.png and report.html to --out.
    With --model, runs on your model and images with --masks, --voc, --coco or --boxes; bad or
    unmatched files are named on stderr and skipped. Exits 3 if any method failed on any data
    set (recorded in the CSV and the report) or any file was skipped.
    """
    from leanxai.experiments.methods import BenchmarkConfig, run_benchmark

    user = _user_benchmark(
        model_spec, weights, images_dir, masks_dir, voc_dir, coco_file, boxes_file, size,
        mean, std, normalize, datasets, count if count is not None else (8 if quick else 64),
    )  # fmt: skip

    changes: dict[str, Any] = {"seed": seed}
    for name, value in (
        ("methods", _split_list(methods)),
        ("thresholds", _split_list(thresholds)),
        ("datasets", _split_list(datasets)),
        ("n", count),
        ("steps", steps),
    ):
        if value is not None:
            changes[name] = value
    try:
        changes["method_options"] = _parse_settings(settings)
        config = BenchmarkConfig.quick(**changes) if quick else BenchmarkConfig(**changes)
        config.check()
        idle = set(config.method_options) - set(config.methods)
        if idle:
            click.echo(f"note: --set for method(s) not run, ignored: {sorted(idle)}", err=True)
        result = run_benchmark(
            config,
            out_dir,
            overwrite=overwrite,
            cache_dir=cache_dir,
            user_data=[user[0]] if user else (),
        )
    except (LeanXAIError, click.BadParameter) as error:
        fail(error)
    except OSError as error:
        fail(f"cannot write to {str(out_dir)!r}: {error.strerror or error}")
    click.echo(f"results: {result.files['results']}")
    click.echo(f"report:  {result.files['report']}")
    for failure in result.failures:
        click.echo(
            f"failed: {failure['method']} on {failure['dataset']}: {failure['error']}", err=True
        )
    skipped = user[1] if user else ()
    for name, reason in skipped:
        click.echo(f"skipped {name}: {reason}", err=True)
    if skipped:
        click.echo(f"skipped {len(skipped)} file(s); see above", err=True)
    if result.failed or skipped:
        sys.exit(EXIT_PARTIAL)


def _user_benchmark(
    model_spec: str | None,
    weights: str | None,
    images_dir: str | None,
    masks_dir: str | None,
    voc_dir: str | None,
    coco_file: str | None,
    boxes_file: str | None,
    size: str | None,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    normalize: str | None,
    datasets: str | None,
    count: int,
) -> tuple[Any, tuple[tuple[str, str], ...]] | None:
    """``benchmark --model``: the user's model and data as a benchmark data set (issue 23), and
    the files skipped; ``None`` without ``--model``."""
    sources = {"--masks": masks_dir, "--voc": voc_dir, "--coco": coco_file, "--boxes": boxes_file}
    given = [name for name, value in sources.items() if value is not None]
    user_only = [*given, *(["--images"] if images_dir else []), *(["--weights"] if weights else [])]
    if model_spec is None:
        if user_only or mean is not None or std is not None or normalize is not None or size:
            raise click.UsageError(
                "--images, --masks, --voc, --coco, --boxes, --weights, --size, --mean, --std and "
                "--normalize go with --model (your model on your data)"
            )
        return None
    if datasets is not None:
        raise click.UsageError("--datasets names built-in sets; with --model give your data")
    if len(given) != 1:
        raise click.UsageError("--model needs exactly one of --masks, --voc, --coco, --boxes")
    if (images_dir is None) != (given[0] == "--voc"):
        raise click.UsageError(
            "--voc reads the images in its JPEGImages (no --images)"
            if images_dir is not None
            else f"{given[0]} needs --images DIR"
        )
    from leanxai.core.models import load_model
    from leanxai.data import user
    from leanxai.experiments.methods import user_benchmark_data

    try:
        input_size = parse_size(size)
        loaded = load_model(model_spec, weights)
    except (LeanXAIError, click.BadParameter) as error:
        fail(error)
    preprocessing = resolve_normalization(loaded, mean, std, normalize)
    model = loaded.model
    side = input_size or loaded.input_size or getattr(model, "input_size", None) or (224, 224)
    side = (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))
    try:
        if masks_dir is not None:
            data = user.load_mask_folder(str(images_dir), masks_dir, side)
        elif boxes_file is not None:
            data = user.load_boxes(str(images_dir), boxes_file, side)
        elif coco_file is not None:
            data = user.load_coco_file(str(images_dir), coco_file, side)
        else:
            data = user.load_voc_folder(str(voc_dir), side)
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(
            str(images_dir or voc_dir)).resolve().name) or "user"  # fmt: skip
        prepared = user_benchmark_data(
            name,
            model,
            data,
            count,
            labels=loaded.labels,
            mean=loaded.mean,
            std=loaded.std,
            gray=input_channels(model) == 1,
            preprocessing=preprocessing,
        )
    except LeanXAIError as error:
        fail(error)
    except Exception as error:  # the model does not run on these images
        fail(f"the model failed on the images of {side}: {one_line(error)}")
    return prepared, data.skipped


@main.command()
@click.option("--family", default=None, help="only the methods of this model family")
def methods(family: str | None) -> None:
    """List the explanation methods: name, model families, output, backward pass or not."""
    from leanxai.core.families import FAMILIES
    from leanxai.explainers import registry

    if family is not None and family not in FAMILIES:
        fail(f"--family must be one of {', '.join(FAMILIES)}, got {family!r}")
    entries = sorted(registry.methods(family), key=lambda info: FAMILIES.index(info.family))
    header = ("method", "family", "output", "backward", "")
    table = [header] + [(i.name, i.family, i.output, i.backward, i.summary) for i in entries]
    widths = [max(len(row[k]) for row in table) for k in range(4)]
    for row in table:
        cells = [row[k].ljust(widths[k]) for k in range(4)]
        click.echo("  ".join([*cells, row[4]]).rstrip())


def _register_subcommands() -> None:
    from leanxai.cli.attribute import attribute
    from leanxai.cli.compress import compress
    from leanxai.cli.export import export
    from leanxai.cli.route import route

    for command in (attribute, compress, export, route):
        main.add_command(command)


_register_subcommands()

if __name__ == "__main__":
    main()
