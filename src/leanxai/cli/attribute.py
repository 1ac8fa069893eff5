"""``leanxai attribute``: rank the input features of a sequence classifier.

``leanxai attribute --method deepactif --data basicmotions --out DIR`` ranks the features of a
built-in set's training sequences with the zoo's recurrent model (trained and cached on first
use); ``--data FILE.npy --model SPEC`` ranks ``(N, T, F)`` sequences with any model. Writes
``importance.csv`` (feature, importance, rank) and ``per_sample.npy`` ``(N, F)``.

The methods are the registry's feature rankings for recurrent models
(``registry.names("recurrent", output="feature ranking")``). With ``--mask``, DeepACTIF leaves
padded steps out of its aggregation and calls ``model(x)``; the other methods also pass the mask
to the model, as ``model(x, mask)``, so the model's ``forward`` must take it.
"""

from __future__ import annotations

import csv
import inspect
import io
import time
from pathlib import Path
from typing import Any

import click

from leanxai.cli._common import (
    cache_dir_option,
    fail,
    one_line,
    overwrite_option,
    weights_option,
)

_DATASETS = {
    "basicmotions": "basic_motions",
    "japanesevowels": "japanese_vowels",
    "synthetic": "synthetic",
}
_KINDS = ("lstm", "gru", "bilstm")


_MODEL_HELP = (
    "py:module:factory (with --weights) or a compressed .lxc.safetensors; not an exported .pt2 "
    "(the methods need the model's recurrent layers, which export flattens)"
)


def _ranking_method(name: str) -> str:
    """The registry's canonical name of a feature ranking for recurrent models, or one line."""
    from leanxai.core.errors import InputError
    from leanxai.explainers import registry

    known = registry.names("recurrent", output="feature ranking")
    try:
        info = registry.get(name, "recurrent")
    except InputError:
        fail(f"unknown method {name!r} for --method; choose from {', '.join(known)}")
    if info.output != "feature ranking":
        fail(
            f"--method {name!r} gives a {info.output}, not a feature ranking; choose from "
            f"{', '.join(known)}"
        )
    return info.name


def _takes_mask(model: Any) -> bool:
    """Whether ``model(x, mask)`` binds to the model's ``forward``."""
    import torch

    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to read (a builtin): let the call decide
        return True
    try:
        signature.bind(torch.empty(0), torch.empty(0))
    except TypeError:
        return False
    return True


def _load_array(path: Path, what: str) -> Any:
    import numpy as np

    if not path.is_file():
        fail(f"{what} file {str(path)!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        fail(f"cannot read {what} {str(path)!r} as a .npy array: {one_line(error)}")


def _sequences(path: Path, mask_path: Path | None) -> tuple[Any, Any]:
    """``(N, T, F)`` float32 inputs and an optional ``(N, T)`` bool mask from .npy files."""
    import numpy as np
    import torch

    array = _load_array(path, "data")
    if array.ndim != 3 or 0 in array.shape:
        fail(f"data {str(path)!r} must be a non-empty (N, T, F) array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        fail(f"data {str(path)!r} must hold numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=(1, 2)))
        fail(f"data {str(path)!r} contains NaN or infinite values (sequences {rows[:10].tolist()})")
    inputs = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if mask_path is None:
        return inputs, None
    mask = _load_array(mask_path, "mask")
    if mask.shape != array.shape[:2] or mask.dtype != np.bool_:
        fail(
            f"mask {str(mask_path)!r} must be a bool (N, T) = {array.shape[:2]} array, got "
            f"{mask.dtype} {mask.shape}"
        )
    return inputs, torch.from_numpy(mask)


@click.command()
@click.option(
    "--method",
    default="deepactif",
    show_default=True,
    help="a feature ranking for recurrent models from `leanxai methods --family recurrent`",
)
@click.option(
    "--data",
    "data_spec",
    required=True,
    help="basicmotions | japanesevowels | synthetic (their training sets) | FILE.npy (N, T, F)",
)
@click.option(
    "--mask",
    "mask_path",
    type=Path,
    default=None,
    help="(N, T) bool .npy for FILE.npy, true at valid steps. DeepACTIF leaves the other steps "
    "out; the other methods also call the model as model(x, mask), so its forward must take it",
)
@click.option("--model", "model_spec", default=None, help=_MODEL_HELP)
@weights_option
@click.option(
    "--kind", default="lstm", show_default=True, help="built-in model: lstm | gru | bilstm"
)
@click.option(
    "--layer",
    default=None,
    help="DeepACTIF: dotted name of the layer whose activations rank the features "
    "(default: the first recurrent layer)",
)
@click.option("--mapping", default=None, help="DeepACTIF: input_term | candidate | gated")
@click.option("--aggregation", default=None, help="DeepACTIF: mean | mean_minus_std | inverse")
@click.option("--n-steps", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@cache_dir_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@overwrite_option
def attribute(
    method: str,
    data_spec: str,
    mask_path: Path | None,
    model_spec: str | None,
    weights: str | None,
    kind: str,
    layer: str | None,
    mapping: str | None,
    aggregation: str | None,
    n_steps: int,
    top: int,
    cache_dir: str | None,
    out_dir: Path,
    overwrite: bool,
) -> None:
    """Rank the input features of a recurrent sequence classifier (DeepACTIF or a baseline)."""
    import torch

    from leanxai.core.errors import LeanXAIError
    from leanxai.explainers.deepactif import AGGREGATIONS, MAPPINGS, feature_ranking
    from leanxai.io import atomic_save_npy, atomic_write_text, check_writable

    method = _ranking_method(method)
    if kind not in _KINDS:
        fail(f"unknown kind {kind!r}; use one of {', '.join(_KINDS)}")
    options: dict[str, Any] = {}
    for name, value, allowed in (
        ("mapping", mapping, MAPPINGS),
        ("aggregation", aggregation, AGGREGATIONS),
    ):
        if value is None:
            continue
        if method != "deepactif":
            fail(f"--{name} applies to --method deepactif, not {method}")
        if value not in allowed:
            fail(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        options[name] = value
    if layer is not None:
        if method != "deepactif":
            fail(f"--layer applies to --method deepactif, not {method}")
        options["layer"] = layer
    if method == "ig":
        options["n_steps"] = n_steps
    builtin = _DATASETS.get(data_spec.lower())
    if builtin is None and not data_spec.endswith(".npy"):
        fail(f"--data must be {', '.join(_DATASETS)} or a .npy file, got {data_spec!r}")
    if builtin is None and model_spec is None:
        fail("--model is required with a .npy data file")
    if model_spec is not None and kind != "lstm":
        fail("--kind applies to the built-in models, not to --model")
    if mask_path is not None and builtin is not None:
        fail("--mask applies to a .npy data file; the built-in sets carry their own")
    if model_spec is not None and model_spec.lower().endswith(".pt2"):
        fail(
            f"--model {model_spec!r}: attribute cannot take an exported .pt2 program (the "
            "methods need the model's recurrent layers, which export flattens); give the model "
            "as py:module:factory with --weights"
        )
    planned = [out_dir / "importance.csv", out_dir / "per_sample.npy"]
    try:
        check_writable(planned, overwrite)
    except LeanXAIError as error:
        fail(error)

    if builtin is not None:
        from leanxai.zoo import recurrent

        try:
            train, _ = recurrent.load_recurrent_data(builtin)
        except (ImportError, OSError, ValueError) as error:
            fail(f"cannot load {data_spec}: {one_line(error)}")
        inputs, mask, names = train.inputs, train.mask, list(train.feature_names)
    else:
        inputs, mask = _sequences(Path(data_spec), mask_path)
        names = [f"feature_{i}" for i in range(inputs.shape[2])]
    model: torch.nn.Module
    if model_spec is None:
        assert builtin is not None
        click.echo(f"loading the {kind} model for {data_spec} (trained on first use)...")
        try:
            model, _ = recurrent.load_recurrent_model(builtin, kind, cache_dir=cache_dir)
        except (OSError, ValueError) as error:
            fail(f"cannot load the {kind} model for {data_spec}: {one_line(error)}")
    else:
        from leanxai.core.models import load_model

        try:
            model = load_model(model_spec, weights).model
        except LeanXAIError as error:
            fail(error)
    if mask is not None and method != "deepactif" and not _takes_mask(model):
        fail(
            f"--mask with --method {method}: the model is called as model(x, mask), but its "
            f"forward{inspect.signature(model.forward)} takes no mask; give a model whose "
            "forward takes (x, mask), or use --method deepactif, or leave out --mask"
        )

    start = time.perf_counter()
    try:
        result = feature_ranking(model, inputs, method, mask=mask, **options)
    except LeanXAIError as error:
        # DeepACTIF's advice names its keyword argument; the CLI's option is --layer.
        fail(one_line(error).replace("with layer=", "with --layer"))
    except RuntimeError as error:  # the model fails on the sequences (shapes, dtypes)
        fail(f"{method} failed on {tuple(inputs.shape)} inputs: {one_line(error)}")
    seconds = time.perf_counter() - start

    rank = {int(f): r + 1 for r, f in enumerate(result.ranking)}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["feature", "importance", "rank"])
    for f, name in enumerate(names):
        writer.writerow([name, f"{float(result.importance[f]):.9g}", rank[f]])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "importance.csv", buffer.getvalue(), overwrite=overwrite)
        atomic_save_npy(out_dir / "per_sample.npy", result.per_sample.numpy(), overwrite=overwrite)
    except LeanXAIError as error:
        fail(error)
    except OSError as error:
        fail(f"cannot write to {str(out_dir)!r}: {error.strerror or error}")

    label = method
    if method == "deepactif":
        label = f"deepactif ({result.mapping}/{result.aggregation})"
    click.echo(
        f"{label}: ranked {len(names)} features of {inputs.shape[0]} sequences in {seconds:.3f} s"
    )
    for r, f in enumerate(result.ranking[:top].tolist(), start=1):
        click.echo(f"{r:3d}. {names[f]:24} {float(result.importance[f]):.6g}")
    click.echo(f"wrote {out_dir / 'importance.csv'} and {out_dir / 'per_sample.npy'}")
