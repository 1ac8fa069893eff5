"""Which family a model belongs to, so :func:`leanxai.explain` can pick a method and a layer.

:func:`detect` asks each registered detector in turn (most specific first) and answers the first
family that claims the model: ``"cnn"``, ``"recurrent"``, and the families added by their own
modules (``"vision_transformer"``, ``"text"``, ``"graph"``) through :func:`register_detector`.
A detector looks at module types, a transformers ``config.model_type`` and the inputs' shapes; it
never runs the model. ``family=`` overrides detection (checked against the known names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from leanxai.core.errors import InputError, InputTypeError

__all__ = ["FAMILIES", "Detector", "detect", "known_families", "register_detector"]

Detector = Callable[[nn.Module, Any], bool]
"""``detector(model, inputs) -> bool``; ``inputs`` may be ``None`` (model only)."""


@dataclass(frozen=True)
class _Entry:
    family: str
    detector: Detector
    priority: int


_DETECTORS: list[_Entry] = []

FAMILIES: tuple[str, ...] = ("cnn", "vision_transformer", "text", "recurrent", "graph")
"""Every family name leanxai knows (a family may have no detector installed yet)."""


def register_detector(family: str, detector: Detector, priority: int = 50) -> None:
    """Add ``detector`` for ``family``; lower ``priority`` is asked first.

    The built-in CNN detector has priority 100 (a model with convolutions may be a vision
    transformer with a patch embedding or a recurrent model with a convolutional front end, so
    those are asked first).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    _DETECTORS[:] = [e for e in _DETECTORS if not (e.family == family and e.detector is detector)]
    _DETECTORS.append(_Entry(family, detector, priority))
    _DETECTORS.sort(key=lambda e: e.priority)


def known_families() -> tuple[str, ...]:
    """Families that have a detector, in the order they are asked."""
    return tuple(dict.fromkeys(e.family for e in _DETECTORS))


def _model_type(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    value = getattr(config, "model_type", None)
    return value if isinstance(value, str) else None


def _shape(inputs: Any) -> tuple[int, ...] | None:
    shape = getattr(inputs, "shape", None)
    return tuple(shape) if shape is not None else None


def _is_recurrent(model: nn.Module, inputs: Any) -> bool:
    if not any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return False
    from torch.nn.utils.rnn import PackedSequence

    if inputs is None or isinstance(inputs, PackedSequence):
        return True
    shape = _shape(inputs)
    return shape is not None and len(shape) == 3


_CNN_MODEL_TYPES = frozenset(
    {
        "resnet",
        "mobilenet_v1",
        "mobilenet_v2",
        "efficientnet",
        "convnext",
        "convnextv2",
        "regnet",
        "van",
        "bit",
        "poolformer",
        "levit",
    }
)


def _is_cnn(model: nn.Module, inputs: Any) -> bool:
    model_type = _model_type(model)
    if model_type is not None and model_type not in _CNN_MODEL_TYPES:
        return False
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    shape = _shape(inputs)
    return inputs is None or (shape is not None and len(shape) == 4)


def _is_graph(model: nn.Module, inputs: Any) -> bool:
    # By class name, so that core does not import torch_geometric.
    if not any(
        any(cls.__name__ == "MessagePassing" for cls in type(m).__mro__) for m in model.modules()
    ):
        return False
    return inputs is None or (hasattr(inputs, "x") and hasattr(inputs, "edge_index"))


_VISION_TRANSFORMER_MODEL_TYPES = frozenset(
    {"vit", "deit", "beit", "data2vec-vision", "dinov2", "vit_msn", "vit_mae", "swin", "swinv2"}
)


def _is_vision_transformer(model: nn.Module, inputs: Any) -> bool:
    shape = _shape(inputs)
    if inputs is not None and (shape is None or len(shape) != 4):
        return False
    model_type = _model_type(model)
    if model_type is not None:
        return model_type in _VISION_TRANSFORMER_MODEL_TYPES
    # A plain module: self-attention over patches (a convolutional patch embedding or image
    # inputs). Self-attention is nn.MultiheadAttention or a module named *Attention with query,
    # key and value projections (three linear layers, or one packed qkv layer), which a CNN's
    # squeeze-excitation or CBAM "attention" does not have.
    modules = list(model.modules())
    attention = any(_is_self_attention(m) for m in modules)
    return attention and (inputs is not None or any(isinstance(m, nn.Conv2d) for m in modules))


def _is_self_attention(module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return True
    if not type(module).__name__.endswith("Attention"):
        return False
    linears = [m for m in module.children() if isinstance(m, nn.Linear)]
    return len(linears) >= 3 or any(m.out_features == 3 * m.in_features for m in linears)


def _is_text(model: nn.Module, inputs: Any) -> bool:
    # A transformers *ForSequenceClassification encoder with token ids in: a BatchEncoding or a
    # mapping with input_ids, or a (B, T) / (T,) integer tensor.
    if not type(model).__name__.endswith("ForSequenceClassification"):
        return False
    model_type = _model_type(model)
    if model_type is None or model_type in _VISION_TRANSFORMER_MODEL_TYPES:
        return False
    if inputs is None:
        return True
    if isinstance(inputs, Mapping):
        return "input_ids" in inputs
    dtype = getattr(inputs, "dtype", None)
    shape = _shape(inputs)
    return (
        shape is not None
        and len(shape) in (1, 2)
        and dtype is not None
        and not dtype.is_floating_point
        and not dtype.is_complex
    )


register_detector("graph", _is_graph, priority=30)
register_detector("text", _is_text, priority=50)
register_detector("recurrent", _is_recurrent, priority=40)
register_detector("vision_transformer", _is_vision_transformer, priority=60)
register_detector("cnn", _is_cnn, priority=100)


def detect(model: nn.Module, inputs: Any = None, family: str | None = None) -> str:
    """The family of ``model`` given ``inputs``, or ``family`` when one is given.

    Raises
    ------
    InputError
        When no detector claims the model (the message names the families leanxai knows), or
        ``family`` is not a known family name.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if family is not None:
        if family not in FAMILIES:
            raise InputError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
        return family
    for entry in _DETECTORS:
        if entry.detector(model, inputs):
            return entry.family
    shape = _shape(inputs)
    described = f" with inputs of shape {shape}" if shape is not None else ""
    model_type = _model_type(model)
    kind = f"{type(model).__name__}" + (f" (model_type {model_type!r})" if model_type else "")
    raise InputError(
        f"cannot tell which kind of model {kind} is{described}; leanxai knows "
        f"{', '.join(known_families())}: pass family= (or --family) to say which"
    )
