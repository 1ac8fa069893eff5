"""``leanxai compress``: relevance-guided pruning and mixed-precision quantisation of a model.

``leanxai compress --model SPEC --data DATA --out FILE`` scores every weight with LRP on the
calibration inputs, prunes and quantises (:func:`leanxai.compress.compress`), writes the compact
file (:func:`leanxai.compress.save_compressed`), loads it back to check it, and prints the size of
the original (float32 safetensors) and of the compressed file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from leanxai.cli._common import fail, parse_size
from leanxai.compress import DEFAULT_CRITERION, DEFAULT_SCOPE, PRUNE_OPTIONS
from leanxai.core.errors import InputError

BUILT_IN_DATA = ("shapes", "mnist")


def _parse_bits(value: str) -> int | tuple[int, int] | None:
    text = value.strip().lower()
    if text in ("none", "float", "0"):
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not BITS or HIGH,LOW (e.g. 8 or 8,4)") from None
    if len(numbers) == 1:
        return numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise click.BadParameter(f"{value!r} is not BITS or HIGH,LOW (e.g. 8 or 8,4)")


def _first_channels(model: torch.nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return int(module.in_channels)
        if isinstance(module, torch.nn.Linear):
            return None
    return None


def _calibration(data: str, loaded: Any, count: int, size: tuple[int, int] | None) -> torch.Tensor:
    """Calibration inputs from a built-in data set, a .npy array or a folder of images."""
    if data.lower() in BUILT_IN_DATA:
        if data.lower() == "shapes":
            from leanxai.data.shapes import make_shapes

            return make_shapes(count, size=(size or (64, 64))[0], seed=0).images
        from leanxai.zoo.digits import mnist_split

        return mnist_split()[0].images[:count]
    path = Path(data)
    if not path.exists():
        fail(f"--data {data!r}: no such file or folder (nor one of {', '.join(BUILT_IN_DATA)})")
    if path.is_file() and path.suffix.lower() == ".npy":
        import numpy as np

        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            fail(f"--data {data!r} is not a readable .npy array: {str(error).splitlines()[0]}")
        if array.ndim < 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
            fail(f"--data {data!r} must hold a numeric (N, ...) array, got shape {array.shape}")
        return torch.from_numpy(np.ascontiguousarray(array[:count])).float()
    from leanxai.data.images import find_images, load_image

    files, problems = find_images([str(path)])
    model = loaded.model
    side = size or loaded.input_size or getattr(model, "input_size", None) or (224, 224)
    images = []
    for file in files[:count]:
        try:
            images.append(load_image(file, size=side))
        except InputError as error:
            click.echo(f"skipped {file}: {error}", err=True)
    for file, reason in problems:
        click.echo(f"skipped {file}: {reason}", err=True)
    if not images:
        fail(f"--data {data!r} holds no readable image")
    batch = torch.stack(images)  # (N, 3, H, W)
    mean = torch.tensor(loaded.mean or (0.0, 0.0, 0.0))[:, None, None]
    std = torch.tensor(loaded.std or (1.0, 1.0, 1.0))[:, None, None]
    batch = (batch - mean) / std
    if _first_channels(model) == 1:
        batch = batch.mean(1, keepdim=True)  # (N, 1, H, W)
    return batch


@click.command()
@click.option(
    "--model", "model_spec", required=True, help="hf:<repo|dir>, py:module:factory or file.pt2"
)
@click.option(
    "--weights", type=click.Path(dir_okay=False), help="state dict or .safetensors for py: specs"
)
@click.option(
    "--data",
    required=True,
    help="calibration inputs: a folder of images, a .npy array (N, ...), or shapes | mnist",
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
    help="calibration inputs used",
)
@click.option("--size", default=None, help="image input size SIZE or HxW (default: from the model)")
@click.option("--overwrite", is_flag=True, help="replace --out if it exists")
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
    finetune_steps: int | None,
    count: int,
    size: str | None,
    overwrite: bool,
) -> None:
    """Prune and quantise a model guided by LRP relevance; write a compact file."""
    import inspect

    from leanxai import compress as api
    from leanxai.compress.bench import float32_size
    from leanxai.core.errors import LeanXAIError
    from leanxai.core.models import load_model
    from leanxai.io import check_writable

    try:
        bits = _parse_bits(bits_spec)
        side = parse_size(size)
        check_writable([out_file], overwrite)
    except click.BadParameter as error:
        fail(str(error.message))
    except LeanXAIError as error:
        fail(str(error))
    if out_file.parent.exists() and not out_file.parent.is_dir():
        fail(f"cannot write {str(out_file)!r}: {str(out_file.parent)!r} is not a folder")
    try:
        loaded = load_model(model_spec, weights)
    except LeanXAIError as error:
        fail(str(error))
    inputs = _calibration(data, loaded, count, side)
    defaults = inspect.signature(api.compress).parameters
    options: dict[str, Any] = {
        "prune": None if prune == "none" else prune,
        "bits": bits,
        "rule": rule,
        "sparsity": defaults["sparsity"].default if sparsity is None else sparsity,
        "scope": scope,
    }
    if finetune_steps is not None:
        options["finetune_steps"] = finetune_steps
    model = loaded.model.eval()
    try:
        result = api.compress(model, inputs, **options)
        written = api.save_compressed(result, out_file, overwrite=overwrite)
        reloaded = api.load_compressed(out_file, model=model)
    except (LeanXAIError, ValueError, TypeError) as error:
        fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    except OSError as error:
        fail(f"cannot write {str(out_file)!r}: {error.strerror or error}")
    except RuntimeError as error:  # the model fails on the calibration inputs
        text = str(error).strip()
        first = text.splitlines()[0] if text else type(error).__name__
        fail(f"the model failed on the calibration inputs {tuple(inputs.shape)}: {first}")
    original = float32_size(model)
    with torch.no_grad():
        before = model(inputs[:256]).argmax(1)
        after = reloaded(inputs[:256]).argmax(1)
    agreement = float((before == after).float().mean())
    achieved = result.metadata.get("sparsity")
    click.echo(
        f"original (float32 safetensors): {original} bytes; compressed: {written} bytes "
        f"({1 - written / original:.1%} smaller)"
    )
    click.echo(
        f"pruned {0.0 if achieved is None else achieved:.1%} of weights ({options['prune']}"
        f"{', ' + scope if options['prune'] not in (None, 'nonpositive') else ''}), "
        f"bits {bits_spec}, {result.mean_bits:.2f} bits per weight; reloaded model agrees with "
        f"the original on {agreement:.1%} of {before.numel()} calibration inputs"
    )
    click.echo(f"wrote {out_file}")
