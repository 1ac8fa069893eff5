"""Target-layer discovery and resolution by dotted name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from leanxai.core.errors import LayerError
from leanxai.core.hooks import OutputRecord, record_outputs

__all__ = [
    "Discovery",
    "ModuleTree",
    "TreeSnapshot",
    "discover_target_layer",
    "find_head_linear",
    "find_target_layer",
    "module_tree",
    "resolve_layer",
]

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


@dataclass(frozen=True)
class Discovery:
    """The layer :func:`discover_target_layer` picked, and whether it is the model's first.

    ``first`` is true when nothing but the input comes before the layer: when it returns, at most
    one module with parameters of its own has run (the layer itself, or the one module inside it),
    so its map shows the input more than the decision (a vision transformer's patch embedding).
    """

    name: str
    shape: tuple[int, ...]
    first: bool


def _is_spatial_map(record: OutputRecord, inputs: torch.Tensor) -> bool:
    """A ``(B, C, h, w)`` output of a module that received the batch: a feature map of ``inputs``.

    It must carry the inputs' batch size, and so must the module's input (a position bias computed
    from the module's own parameters has shape ``(1, heads, N, N)`` whatever the batch); its
    ``h x w`` must have more than one position and be no larger than the image.
    """
    shape, batch = record.shape, inputs.shape[0]
    return (
        shape is not None
        and len(shape) == 4
        and shape[0] == batch
        and record.input_shape is not None
        and len(record.input_shape) > 0
        and record.input_shape[0] == batch
        and shape[2] * shape[3] > 1
        and shape[2] <= inputs.shape[2]
        and shape[3] <= inputs.shape[3]
        and not isinstance(record.module, _HEAD_TYPES)
    )


def discover_target_layer(model: nn.Module, inputs: torch.Tensor) -> Discovery:
    """Find the last module whose output is a spatial feature map ``(B, C, h, w)`` of ``inputs``.

    Runs one forward pass on ``inputs`` under :func:`torch.no_grad` (the caller puts the model in
    eval mode); the whole batch, since exported programs may only accept the shape they were
    exported with. A candidate's output and the input it received both carry the inputs' batch
    size ``B``, and its ``h x w`` has more than one position and fits in the image. Calls are
    ordered by when they finish, so of several modules returning the same tensor the outermost
    wins (``features`` rather than ``features.11``). Adaptive pooling, dropout, flatten and
    identity modules count as part of the head.

    Raises
    ------
    LayerError
        When no module produces such a map.
    """
    from leanxai.core.models import logits_of

    with torch.no_grad(), record_outputs(model) as seen:
        logits_of(model(inputs))
    candidates = [index for index, record in enumerate(seen) if _is_spatial_map(record, inputs)]
    if not candidates:
        raise LayerError(
            f"{type(model).__name__} has no layer with a 4-D (B, C, H, W) output of the batch; "
            "CAM methods need a convolutional feature map (pass layer=... to choose one)"
        )
    index = candidates[-1]
    record = seen[index]
    # The first layer: at most one module with parameters of its own (the layer, or the one
    # module inside it) has run when the layer returns.
    learned = sum(
        any(parameter is not None for parameter in earlier.module._parameters.values())
        for earlier in seen[: index + 1]
    )
    assert record.shape is not None  # a candidate has a shape
    return Discovery(record.name, record.shape, learned <= 1)


def find_target_layer(model: nn.Module, inputs: torch.Tensor) -> str:
    """The name of the layer :func:`discover_target_layer` picks."""
    return discover_target_layer(model, inputs).name


def find_head_linear(model: nn.Module) -> str | None:
    """The name of the last registered :class:`torch.nn.Linear`, the usual classifier head."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


ModuleTree = tuple[tuple[nn.Module, ...], tuple[tuple[str, ...], ...]]
"""Every module of a model (the model first, each once) and each one's child names, in order."""


def module_tree(model: nn.Module) -> ModuleTree:
    """The model's modules and their child names: equal for two calls exactly when no submodule
    was added, removed, replaced or renamed in between.

    Modules compare by identity, and the tuple holds them, so an identity is never reused while the
    value is kept. One walk, cheaper than :meth:`torch.nn.Module.named_modules` (no name strings):
    callers use it both to validate what they cached about the model's structure and as the list
    of modules whose ``training`` flags to save.
    """
    modules = [model]
    names: list[tuple[str, ...]] = []
    seen = {id(model)}
    for module in modules:  # grows while we walk it: breadth first
        children = module._modules
        if not children:  # most modules are leaves
            names.append(())
            continue
        names.append(tuple(children))
        for child in children.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                modules.append(child)
    return tuple(modules), tuple(names)


class TreeSnapshot:
    """A model's :func:`module_tree`, kept with each module's ``(name, child)`` pairs, to re-check.

    :meth:`unchanged` says whether :func:`module_tree` would return the same value now, without
    building it again: the walk is a function of the root and of each reached module's
    ``_modules``, so when the root is the same object and every module reached last time still has
    the same ``(name, child)`` pairs in the same order (children compared by identity), the walk
    reaches the same modules in the same order with the same names. It is stricter than comparing
    two trees (a child moved between two names that both still exist counts as a change), never
    looser. The snapshot holds the modules, so no identity is reused while it is kept.

    Attributes
    ----------
    tree
        The :func:`module_tree` of the model when the snapshot was taken.
    modules
        ``tree[0]``: every module of the model, the model first, each once.
    """

    __slots__ = ("_children", "modules", "tree")

    def __init__(self, model: nn.Module) -> None:
        self.tree: ModuleTree = module_tree(model)
        self.modules: tuple[nn.Module, ...] = self.tree[0]
        self._children = [tuple(module._modules.items()) for module in self.modules]

    def unchanged(self, model: nn.Module) -> bool:
        """Whether ``model`` is the snapshot's model with the same module tree."""
        modules = self.modules
        return (
            modules[0] is model
            and [tuple(module._modules.items()) for module in modules] == self._children
        )
