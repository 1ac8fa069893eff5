"""What every ``leanxai`` subcommand shares: exit codes, ``fail``, the error boundary and options.

Exit codes (documented in README.md, "Exit codes"):

==========  =====================================================================
code        meaning
==========  =====================================================================
0           done
1           nothing could be done: a bad model, data or value, outputs that exist
2           usage error: an unknown option or subcommand, a missing argument (click)
3           a batch finished, but some inputs were refused or skipped (named on stderr)
4           an internal error: a bug in leanxai (``--debug`` shows the traceback)
==========  =====================================================================
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from leanxai.core.errors import LeanXAIError, OutputExistsError, one_line

__all__ = [
    "EXIT_BUG",
    "EXIT_FAILED",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "NO_NORMALIZATION_NOTICE",
    "LeanXAIGroup",
    "cache_dir_option",
    "describe_normalization",
    "fail",
    "input_channels",
    "normalize_options",
    "note_ignored",
    "one_line",
    "out_dir_option",
    "output_names",
    "overwrite_option",
    "parse_size",
    "resolve_normalization",
    "size_option",
    "user_message",
    "weights_option",
]

EXIT_FAILED = 1
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_PARTIAL = 3
EXIT_BUG = 4

F = TypeVar("F", bound=Callable[..., Any])


def user_message(error: BaseException | str) -> str:
    """One line for a user: the error's first line, in command-line terms."""
    if isinstance(error, str):
        return one_line(Exception(error))
    message = one_line(error)
    if isinstance(error, OutputExistsError) and getattr(error, "paths", True):
        message += "; pass --overwrite to replace"
    return message


def fail(message: BaseException | str) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit :data:`EXIT_FAILED`.

    ``message`` is a text or a library error (:func:`user_message` phrases it).
    """
    click.echo(f"error: {user_message(message)}", err=True)
    sys.exit(EXIT_FAILED)


class LeanXAIGroup(click.Group):
    """The error boundary of the command line.

    A :class:`~leanxai.core.errors.LeanXAIError` escaping a subcommand is a user error: one line,
    exit 1. Any other exception is a bug: one line that says so, exit 4, and the traceback only
    with ``leanxai --debug``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except LeanXAIError as error:
            if _debug(ctx):
                raise
            fail(error)
        except KeyboardInterrupt:
            raise
        except Exception as error:
            if _debug(ctx):
                traceback.print_exc()
                sys.exit(EXIT_BUG)
            click.echo(
                f"error: internal error, a bug in leanxai ({type(error).__name__}: "
                f"{one_line(error)}); rerun with 'leanxai --debug ...' for the traceback",
                err=True,
            )
            sys.exit(EXIT_BUG)


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.params or {}).get("debug"))


def note_ignored(ignored: list[Path]) -> None:
    """Name, in one line on stderr, the files inside given folders that are not images."""
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:5]) + (
            f" and {len(ignored) - 5} more" if len(ignored) > 5 else ""
        )
        noun = "file that is not an image" if len(ignored) == 1 else "files that are not images"
        click.echo(f"ignored {len(ignored)} {noun}: {shown}", err=True)


def input_channels(model: Any) -> int | None:
    """Channels the model's first convolution reads (``None``: not known, e.g. a first Linear)."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return int(module.in_channels)
        if isinstance(module, torch.nn.Linear):
            return None
    return None


def parse_size(value: str | None) -> tuple[int, int] | None:
    """``"224"`` or ``"224x192"`` (``HxW``) to a pair; ``None`` stays ``None``."""
    if value is None:
        return None
    parts = value.lower().replace("x", ",").split(",")
    try:
        numbers = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not SIZE or HxW (e.g. 224 or 224x224)") from None
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) < 8:
        raise click.BadParameter(f"{value!r} must be SIZE or HxW with sides >= 8")
    return numbers[0], numbers[1]


def output_names(files: list[Path]) -> list[str]:
    """A distinct, readable output stem per input file (``x``, ``x-2``...)."""
    names: list[str] = []
    used: set[str] = set()
    for path in files:
        stem = path.stem or "image"
        name, k = stem, 2
        while name in used:
            name, k = f"{stem}-{k}", k + 1
        used.add(name)
        names.append(name)
    return names


# -- shared options: one name and one help text each -----------------------------------------------


def weights_option(function: F) -> F:
    return click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="state dict (.pt, loaded with weights_only) or .safetensors for a py: model",
    )(function)


def size_option(function: F) -> F:
    return click.option(
        "--size",
        default=None,
        help="model input size SIZE or HxW (default: from the model, else 224)",
    )(function)


def out_dir_option(function: F) -> F:
    return click.option(
        "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path)
    )(function)


def overwrite_option(function: F) -> F:
    return click.option("--overwrite", is_flag=True, help="replace existing output files")(function)


def cache_dir_option(function: F) -> F:
    return click.option(
        "--cache-dir",
        "cache_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="where trained models are cached (default: $LEANXAI_CACHE or ~/.cache/leanxai)",
    )(function)


NO_NORMALIZATION_NOTICE = "note: no normalisation given; inputs are RGB in [0, 1]"
"""What a command prints once on stderr when nothing says how the model's input is normalised."""


def _three_numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    parts = [p for p in value.replace(",", " ").split() if p]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not three numbers (e.g. 0.485,0.456,0.406)"
        ) from None
    if len(numbers) != 3 or not all(n == n and abs(n) != float("inf") for n in numbers):
        raise click.BadParameter(f"{value!r} is not three finite numbers (R,G,B)")
    if param.name == "std" and not all(n > 0 for n in numbers):
        raise click.BadParameter(f"{value!r}: every std must be > 0")
    return numbers


def normalize_options(function: F) -> F:
    """``--mean``, ``--std`` and ``--normalize``: how the model expects its RGB input normalised.

    Resolve them with :func:`resolve_normalization` once the model is loaded.
    """
    function = click.option(
        "--normalize",
        type=click.Choice(["imagenet", "none"]),
        default=None,
        help="the model's input normalisation: imagenet mean/std, or none (RGB in [0, 1]); "
        "default: the model's own (hf: preprocessor_config.json, zoo:, a py: factory's "
        "leanxai_normalize), else none with a note",
    )(function)
    function = click.option(
        "--std",
        callback=_three_numbers,
        default=None,
        metavar="R,G,B",
        help="per-channel std the model's input is divided by (with --mean)",
    )(function)
    return click.option(
        "--mean",
        callback=_three_numbers,
        default=None,
        metavar="R,G,B",
        help="per-channel mean subtracted from RGB in [0, 1] (with --std)",
    )(function)


def resolve_normalization(
    loaded: Any,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    normalize: str | None,
) -> str:
    """Settle ``loaded.mean``/``loaded.std`` from the options, and say what was applied.

    The options win over what the model knows (``loaded.normalization``); with neither, the
    inputs stay RGB in ``[0, 1]`` and :data:`NO_NORMALIZATION_NOTICE` is printed once on stderr.
    Returns one line for the summary CSV, the report and export metadata, e.g.
    ``"mean=0.485,0.456,0.406 std=0.229,0.224,0.225 (--normalize imagenet)"``.
    """
    from leanxai.core.models import IMAGENET_MEAN, IMAGENET_STD

    if normalize is not None and (mean is not None or std is not None):
        raise click.UsageError("--normalize and --mean/--std exclude each other; give one")
    if (mean is None) != (std is None):
        raise click.UsageError("--mean and --std go together; give both (or --normalize)")
    if normalize == "imagenet":
        loaded.mean, loaded.std, source = IMAGENET_MEAN, IMAGENET_STD, "--normalize imagenet"
    elif normalize == "none":
        loaded.mean, loaded.std, source = None, None, "--normalize none"
    elif mean is not None:
        loaded.mean, loaded.std, source = mean, std, "--mean/--std"
    elif getattr(loaded, "normalization", None) is not None:
        source = str(loaded.normalization)
    else:
        loaded.mean, loaded.std, source = None, None, "none given"
        click.echo(NO_NORMALIZATION_NOTICE, err=True)
    return describe_normalization(loaded.mean, loaded.std, source)


def describe_normalization(
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None, source: str
) -> str:
    """One line: what the model's input went through, and who said so."""
    if mean is None and std is None:
        return f"none: RGB in [0, 1] ({source})"

    def numbers(values: tuple[float, ...] | None, default: float) -> str:
        return ",".join(f"{v:g}" for v in (values or (default,) * 3))

    return f"mean={numbers(mean, 0.0)} std={numbers(std, 1.0)} ({source})"
