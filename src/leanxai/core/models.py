"""Load a model from a spec, and normalise what models return.

Specs:

- an :class:`torch.nn.Module` (returned as it is);
- ``hf:<repo id or local folder>``: a transformers image classifier
  (``AutoModelForImageClassification.from_pretrained``; local folders are read offline);
- ``py:<module>:<factory>``: a function that returns a module, with optional ``weights`` from a
  ``.safetensors`` file or a state dict read with ``torch.load(weights_only=True)``;
- a path to an exported program (``.pt2``, :func:`torch.export.save`).

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

__all__ = ["LoadedModel", "load_model", "logits_of"]


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
    """

    model: nn.Module
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: dict[int, str] = field(default_factory=dict)


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
    local = Path(source).is_dir()
    try:
        model = AutoModelForImageClassification.from_pretrained(source, local_files_only=local)
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(f"cannot load {spec!r}: {message}") from error
    loaded = LoadedModel(model, labels={int(k): v for k, v in model.config.id2label.items()})
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
    return loaded


def _from_exported(path: Path) -> nn.Module:
    try:
        program = torch.export.load(str(path))
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(f"cannot load exported program {str(path)!r}: {message}") from error
    try:
        # Keeps the original module hierarchy, so layers can be named as in the source model.
        return torch.export.unflatten(program)
    except Exception:
        return program.module()


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
        loaded = LoadedModel(_from_factory(text, weights))
    else:
        path = Path(text)
        if path.suffix == ".pt2":
            if not path.is_file():
                raise ModelLoadError(f"exported program {text!r} does not exist")
            loaded = LoadedModel(_from_exported(path))
        elif path.suffix in {".pt", ".pth", ".pkl", ".bin"}:
            raise ModelLoadError(
                f"refusing to unpickle {text!r}: a pickled model can run arbitrary code. "
                "Use py:module:factory with --weights (a state dict or .safetensors), or a .pt2"
            )
        else:
            raise ModelLoadError(
                f"unknown model spec {text!r}; use hf:<repo or folder>, py:module:factory, "
                "or an exported program file.pt2"
            )
    loaded.model.eval()
    return loaded
