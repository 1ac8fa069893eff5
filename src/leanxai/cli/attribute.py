"""``leanxai attribute``: rank the input features of a sequence classifier.

``leanxai attribute --method deepactif --data basicmotions --out DIR`` ranks the features of a
built-in set's training sequences with the zoo's recurrent model (trained and cached on first
use); ``--data FILE.npy --model SPEC`` ranks ``(N, T, F)`` sequences with any model. Writes
``importance.csv`` (feature, importance, rank) and ``per_sample.npy`` ``(N, F)``.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import click

from leanxai.cli._common import cache_dir_option, fail

_DATASETS = {
    "basicmotions": "basic_motions",
    "japanesevowels": "japanese_vowels",
    "synthetic": "synthetic",
}
_KINDS = ("lstm", "gru", "bilstm")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_array(path: Path, what: str) -> Any:
    import numpy as np

    if not path.is_file():
        fail(f"{what} file {str(path)!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        fail(f"cannot read {what} {str(path)!r} as a .npy array: {_first_line(error)}")


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
    help="deepactif | ig | deeplift | shap | ablation",
)
@click.option(
    "--data",
    "data_spec",
    required=True,
    help="basicmotions | japanesevowels | synthetic (their training sets) | FILE.npy (N, T, F)",
)
@click.option("--mask", "mask_path", type=Path, default=None, help="(N, T) bool .npy for FILE.npy")
@click.option("--model", "model_spec", default=None, help="py:module:factory or file.pt2")
@click.option(
    "--weights", type=click.Path(dir_okay=False), help="state dict or .safetensors for py: specs"
)
@click.option(
    "--kind", default="lstm", show_default=True, help="built-in model: lstm | gru | bilstm"
)
@click.option("--mapping", default=None, help="DeepACTIF: input_term | candidate | gated")
@click.option("--aggregation", default=None, help="DeepACTIF: mean | mean_minus_std | inverse")
@click.option("--n-steps", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@cache_dir_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="replace existing output files")
def attribute(
    method: str,
    data_spec: str,
    mask_path: Path | None,
    model_spec: str | None,
    weights: str | None,
    kind: str,
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
    from leanxai.explainers.deepactif import (
        AGGREGATIONS,
        MAPPINGS,
        RANKING_METHODS,
        feature_ranking,
    )
    from leanxai.io import atomic_save_npy, atomic_write_text, check_writable

    method = method.lower()
    if method not in RANKING_METHODS:
        fail(f"unknown method {method!r}; use one of {', '.join(RANKING_METHODS)}")
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
    planned = [out_dir / "importance.csv", out_dir / "per_sample.npy"]
    try:
        check_writable(planned, overwrite)
    except LeanXAIError as error:
        fail(str(error))

    if builtin is not None:
        from leanxai.zoo import recurrent

        try:
            train, _ = recurrent.load_recurrent_data(builtin)
        except (ImportError, OSError, ValueError) as error:
            fail(f"cannot load {data_spec}: {_first_line(error)}")
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
            fail(f"cannot load the {kind} model for {data_spec}: {_first_line(error)}")
    else:
        from leanxai.core.models import load_model

        try:
            model = load_model(model_spec, weights).model
        except LeanXAIError as error:
            fail(str(error))

    start = time.perf_counter()
    try:
        result = feature_ranking(model, inputs, method, mask=mask, **options)
    except LeanXAIError as error:
        fail(str(error))
    except Exception as error:
        fail(f"{method} failed on {tuple(inputs.shape)} inputs: {_first_line(error)}")
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
        fail(str(error))
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
