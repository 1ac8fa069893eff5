"""Load a model from a spec, and normalise what models return.

Specs:

- an :class:`torch.nn.Module` (returned as it is);
- ``hf:<repo id or local folder>``: a transformers image classifier
  (``AutoModelForImageClassification.from_pretrained``; local folders are read offline);
- ``py:<module>:<factory>``: a function that returns a module, with optional ``weights`` from a
  ``.safetensors`` file or a state dict read with ``torch.load(weights_only=True)``;
- a path to an exported program (``.pt2``, :func:`torch.export.save`); its input size is read
  from the example input it was exported with;
- a compressed model file written by :func:`leanxai.compress.save_compressed`
  (``.lxc.safetensors``), for the architectures the file describes (Sequentials of standard layers
  and the zoo's models).
- ``zoo:<name>``: a pretrained model that ships inside an installed package
  (:func:`leanxai.zoo.pretrained`, e.g. ``zoo:efficientnet_lite0``), with its preprocessing and
  class names.

Normalisation: ``hf:`` folders give theirs in ``preprocessor_config.json``, ``zoo:`` models know
theirs, and a ``py:`` factory may declare it as an attribute of the module it returns,
``leanxai_normalize``: ``"imagenet"``, ``"none"`` (the model reads RGB in ``[0, 1]``) or a mapping
``{"mean": (r, g, b), "std": (r, g, b)}``. :attr:`LoadedModel.normalization` says where the
``mean`` and ``std`` came from; ``None`` means nothing is known (``.pt2`` files, compressed files,
modules, factories that declare nothing).

Unpickling arbitrary objects is never done: a whole pickled model (``torch.save(model)``) is
refused.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanxai.core.errors import ModelLoadError, ModelOutputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "load_model", "logits_of", "normalized"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def logits_of(output: Any) -> torch.Tensor:
    """Return the ``(B, K)`` logits from a model output.

    Accepts a tensor, a transformers ``ModelOutput`` (or any object with ``.logits``), a mapping
    with a ``"logits"`` key, or a tuple/list whose first element is the logits.

    Raises
    ------
    ModelOutputError
        When no 2-D logits tensor can be found.
    """
    logits: Any = output
    if not isinstance(logits, torch.Tensor):
        if isinstance(output, Mapping) and "logits" in output:
            logits = output["logits"]
        elif hasattr(output, "logits"):
            logits = output.logits
        elif isinstance(output, (tuple, list)) and output:
            logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise ModelOutputError(
            f"the model returned {type(output).__name__}, which holds no logits tensor; "
            "wrap it so that it returns (B, K) class scores"
        )
    if logits.dim() != 2:
        raise ModelOutputError(
            f"the model returned a tensor of shape {tuple(logits.shape)}; "
            "expected (B, K) class scores"
        )
    return logits


@dataclass
class LoadedModel:
    """A model and what is known about its expected input.

    ``input_size`` is ``(H, W)``; ``mean`` and ``std`` normalise ``[0, 1]`` RGB inputs (``None``:
    feed ``[0, 1]`` images as they are); ``labels`` maps class index to name when known.
    ``normalization`` says where ``mean`` and ``std`` came from (``None``: nothing is known, so
    inputs are RGB in ``[0, 1]`` unless the caller says otherwise).
    """

    model: nn.Module
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: dict[int, str] = field(default_factory=dict)
    normalization: str | None = None


class _Normalized(nn.Module):
    """``model((x - mean) / std)``, then the mean over channels for a one-channel model."""

    def __init__(
        self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], gray: bool
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None])
        self.gray = gray

    def forward(self, inputs: torch.Tensor) -> Any:
        mean = self.get_buffer("mean").to(inputs.dtype)
        std = self.get_buffer("std").to(inputs.dtype)
        normalized = (inputs - mean) / std  # (B, 3, H, W)
        return self.model(normalized.mean(1, keepdim=True) if self.gray else normalized)


def normalized(
    model: nn.Module,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    *,
    gray: bool = False,
) -> nn.Module:
    """A module that reads RGB in ``[0, 1]`` and feeds ``model`` what it expects.

    Metrics that perturb pixels (deletion with a black substrate, insertion from a blur) then
    perturb the photo, not its normalised values. ``gray``: the model reads one channel, the mean
    of the normalised RGB channels. With no ``mean``/``std`` and no ``gray`` the model itself is
    returned.
    """
    if mean is None and std is None and not gray:
        return model
    return _Normalized(model, tuple(mean or (0.0, 0.0, 0.0)), tuple(std or (1.0, 1.0, 1.0)), gray)


def _declared_normalization(model: nn.Module, spec: str) -> LoadedModel:
    """The ``leanxai_normalize`` attribute of a factory's module (see the module docstring)."""
    loaded = LoadedModel(model)
    declared = getattr(model, "leanxai_normalize", None)
    if declared is None:
        return loaded
    where = f"leanxai_normalize of {spec!r}"
    if isinstance(declared, str) and declared.lower() in ("imagenet", "none"):
        if declared.lower() == "imagenet":
            loaded.mean, loaded.std = IMAGENET_MEAN, IMAGENET_STD
        loaded.normalization = f"{declared.lower()} ({where})"
        return loaded
    if not isinstance(declared, Mapping) or set(declared) != {"mean", "std"}:
        raise ModelLoadError(
            f"{where} must be 'imagenet', 'none' or {{'mean': (r, g, b), 'std': (r, g, b)}}, "
            f"got {declared!r}"
        )
    try:
        mean = tuple(float(v) for v in declared["mean"])
        std = tuple(float(v) for v in declared["std"])
    except (TypeError, ValueError):
        raise ModelLoadError(f"{where}: mean and std must be numbers, got {declared!r}") from None
    if len(mean) != 3 or len(std) != 3 or not all(v > 0 for v in std):
        raise ModelLoadError(f"{where}: mean and std need 3 values each, std > 0; got {declared!r}")
    loaded.mean, loaded.std, loaded.normalization = mean, std, where
    return loaded


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(f"cannot read weights {str(path)!r}: {message}") from error
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelLoadError(f"weights {str(path)!r} are not a state dict of tensors")
    return dict(state)


def _from_factory(spec: str, weights: str | Path | None) -> nn.Module:
    parts = spec[len("py:") :].split(":")
    if len(parts) != 2 or not all(parts):
        raise ModelLoadError(f"model spec {spec!r} must look like py:package.module:factory")
    module_name, factory_name = parts
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelLoadError(f"cannot import {module_name!r} for model spec {spec!r}") from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ModelLoadError(f"{module_name!r} has no callable {factory_name!r}")
    try:
        model = factory()
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(f"{spec!r} raised {type(error).__name__}: {message}") from error
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = _load_state_dict(Path(weights))
        expected = model.state_dict()
        for key, tensor in expected.items():  # the model's order: the first layer first
            if key in state and tuple(state[key].shape) != tuple(tensor.shape):
                raise ModelLoadError(
                    f"weights {str(weights)!r} do not fit {spec!r}: {key} is "
                    f"{tuple(state[key].shape)} in the file but {tuple(tensor.shape)} in the "
                    "model (weights of another architecture?)"
                )
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModelLoadError(
                f"weights {str(weights)!r} do not fit {spec!r}: "
                f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:2]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]})"
            )
    return model


def _from_hf(spec: str) -> LoadedModel:
    try:
        from transformers import AutoModelForImageClassification
    except ImportError as error:
        raise ModelLoadError(
            "hf: model specs need transformers: pip install leanxai[hf]"
        ) from error
    source = spec[len("hf:") :]
    path = Path(source).expanduser()
    local = path.is_dir()
    if not local and (path.exists() or _looks_like_a_path(source)):
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise ModelLoadError(
            f"cannot load {spec!r}: the folder {source!r} {what} (hf: takes a folder saved with "
            "save_pretrained, or a Hugging Face repo id such as google/vit-base-patch16-224)"
        )
    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(path) if local else source, local_files_only=local
        )
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if not local:
            message += f" (nor is there a local folder {source!r})"
        raise ModelLoadError(f"cannot load {spec!r}: {message}") from error
    loaded = LoadedModel(model, labels={int(k): v for k, v in model.config.id2label.items()})
    image_size = getattr(model.config, "image_size", None)
    if isinstance(image_size, int) and image_size > 0:
        loaded.input_size = (image_size, image_size)
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        loaded.input_size = (int(image_size[0]), int(image_size[1]))
    source = str(path) if local else source
    config_path = Path(source) / "preprocessor_config.json"
    if local and config_path.is_file():
        config = json.loads(config_path.read_text())
        size = config.get("size")
        if isinstance(size, Mapping) and "height" in size and "width" in size:
            loaded.input_size = (int(size["height"]), int(size["width"]))
        elif isinstance(size, Mapping) and "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            loaded.input_size = (edge, edge)
        if config.get("do_normalize", True) and "image_mean" in config:
            loaded.mean = tuple(float(v) for v in config["image_mean"])
            loaded.std = tuple(float(v) for v in config["image_std"])
            loaded.normalization = f"{config_path}"
        elif not config.get("do_normalize", True):
            loaded.normalization = f"none ({config_path}: do_normalize false)"
    return loaded


def _looks_like_a_path(source: str) -> bool:
    """A repo id is ``name`` or ``owner/name``; ``./x``, ``~/x``, ``/x``, ``a/b/c`` are folders."""
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or "\\" in source
        or source.endswith("/")
    )


def _example_size(program: Any) -> tuple[int, int] | None:
    """``(H, W)`` of the image an exported program was exported with, if its first input is one."""
    example = getattr(program, "example_inputs", None)
    args = example[0] if isinstance(example, tuple) and example else ()
    first = args[0] if isinstance(args, (tuple, list)) and args else None
    if isinstance(first, torch.Tensor) and first.dim() == 4:  # (B, C, H, W)
        return int(first.shape[2]), int(first.shape[3])
    return None


def _from_exported(path: Path) -> LoadedModel:
    try:
        program = torch.export.load(str(path))
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(f"cannot load exported program {str(path)!r}: {message}") from error
    try:
        # Keeps the original module hierarchy, so layers can be named as in the source model.
        module: nn.Module = torch.export.unflatten(program)
    except Exception:
        module = program.module()
    return LoadedModel(module, input_size=_example_size(program))


def _from_compressed(path: Path) -> LoadedModel:
    # A model file, not a mechanism: the compressed format is read by the package that writes it.
    from leanxai.compress.storage import CompressedFileError, load_compressed

    try:
        model = load_compressed(path)
    except CompressedFileError as error:
        if not path.name.endswith(".lxc.safetensors"):
            raise ModelLoadError(
                f"{str(path)!r} is not a compressed leanxai model ({error}); a .safetensors file "
                "of plain weights goes with py:module:factory and --weights FILE"
            ) from error
        raise
    except ModelLoadError as error:
        raise ModelLoadError(
            f"{str(path)!r} does not describe its architecture (a custom module), so it cannot be "
            "a model spec; load it in Python with leanxai.compress.load_compressed(path, "
            "model=your_module)"
        ) from error
    return LoadedModel(model)


def load_model(spec: str | Path | nn.Module, weights: str | Path | None = None) -> LoadedModel:
    """Load a model from ``spec`` (see the module docstring) and put it in eval mode.

    Raises
    ------
    ModelLoadError
        With one line saying what is wrong with the spec, the file or the weights.
    """
    if isinstance(spec, nn.Module):
        return LoadedModel(spec)
    text = str(spec)
    if text.startswith("hf:"):
        if weights is not None:
            raise ModelLoadError("--weights applies to py: specs; hf: folders hold their weights")
        loaded = _from_hf(text)
    elif text.startswith("py:"):
        loaded = _declared_normalization(_from_factory(text, weights), text)
    elif text.startswith("zoo:"):
        if weights is not None:
            raise ModelLoadError(f"--weights applies to py: specs; {text!r} holds its weights")
        # A model and its verified weights, not a mechanism: the zoo knows its files (issue 20).
        from leanxai.zoo.pretrained import pretrained

        loaded = pretrained(text[len("zoo:") :])
        if loaded.mean is not None and loaded.normalization is None:
            loaded.normalization = f"{text} (its training preprocessing)"
    else:
        path = Path(text)
        if weights is not None:
            raise ModelLoadError(
                f"--weights applies to py: specs; {text!r} holds its weights (drop --weights)"
            )
        if path.suffix == ".pt2":
            if not path.is_file():
                raise ModelLoadError(f"exported program {text!r} does not exist")
            loaded = _from_exported(path)
        elif path.suffix == ".safetensors":
            if not path.is_file():
                raise ModelLoadError(f"compressed model {text!r} does not exist")
            loaded = _from_compressed(path)
        elif path.suffix in {".pt", ".pth", ".pkl", ".bin"}:
            raise ModelLoadError(
                f"refusing to unpickle {text!r}: a pickled model can run arbitrary code. "
                "Use py:module:factory with --weights (a state dict or .safetensors), or a .pt2"
            )
        else:
            raise ModelLoadError(
                f"unknown model spec {text!r}; use zoo:efficientnet_lite0, hf:<repo or folder>, "
                "py:module:factory, an exported program file.pt2 or a compressed "
                "file.lxc.safetensors"
            )
    loaded.model.eval()
    return loaded
