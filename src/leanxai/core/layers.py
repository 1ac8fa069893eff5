"""Target-layer discovery and resolution by dotted name."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from leanxai.core.errors import LayerError
from leanxai.core.hooks import record_outputs

__all__ = ["find_head_linear", "find_target_layer", "resolve_layer"]

# Modules that belong to a classifier head even when their output is still 4-D.
_HEAD_TYPES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Flatten,
    nn.Identity,
)


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> str:
    """Return the dotted name of ``layer`` in ``model``.

    Parameters
    ----------
    model
        The model.
    layer
        A dotted name (``"resnet.encoder.stages.3"``) or a submodule of ``model``.

    Raises
    ------
    LayerError
        When the name does not exist or the module is not part of ``model``.
    """
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return name
        raise LayerError(f"layer {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str) or not layer:
        raise LayerError(f"layer must be a dotted module name or a module, got {layer!r}")
    if layer in names:
        return layer
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise LayerError(f"layer {layer!r} does not exist in {type(model).__name__}{hint}")


def find_target_layer(model: nn.Module, inputs: torch.Tensor) -> str:
    """Find the last module whose output is a spatial feature map ``(B, C, h, w)`` with ``h*w > 1``.

    Runs one forward pass on ``inputs`` under :func:`torch.no_grad` (the caller puts the model in
    eval mode); the whole batch, since exported programs may only accept the shape they were
    exported with. Calls are ordered by when they finish, so of several modules
    returning the same tensor the outermost wins (``features`` rather than ``features.11``).
    Adaptive pooling, dropout, flatten and identity modules count as part of the head.

    Raises
    ------
    LayerError
        When no module produces a 4-D output with more than one spatial position.
    """
    from leanxai.core.models import logits_of

    with torch.no_grad(), record_outputs(model) as seen:
        logits_of(model(inputs))
    candidates = [
        record.name
        for record in seen
        if record.shape is not None
        and len(record.shape) == 4
        and record.shape[2] * record.shape[3] > 1
        and not isinstance(record.module, _HEAD_TYPES)
    ]
    if not candidates:
        raise LayerError(
            f"{type(model).__name__} has no layer with a 4-D (B, C, H, W) output; "
            "CAM methods need a convolutional feature map (pass layer=... to choose one)"
        )
    return candidates[-1]


def find_head_linear(model: nn.Module) -> str | None:
    """The name of the last registered :class:`torch.nn.Linear`, the usual classifier head."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last
