"""The only module that changes a user's model, always temporarily.

Every hook registered here is removed when its ``with`` block ends, whether the block succeeds, the
registration fails halfway, or the forward raises: registration goes through a
:class:`contextlib.ExitStack` that holds each handle's ``remove`` the moment it exists. The same
holds for the other temporary changes (``training`` flags, grad mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from leanxai.core.errors import InputError, LayerError

__all__ = [
    "Capture",
    "OutputRecord",
    "capture",
    "eval_mode",
    "input_of",
    "module_calls",
    "record_outputs",
    "rewrite_outputs",
]


@dataclass
class Capture:
    """What a :func:`capture` block recorded during the forward passes run inside it.

    Attributes
    ----------
    outputs
        Layer name -> the tensor the layer produced. A copy is kept, so an in-place operation that
        follows the layer (``ReLU(inplace=True)``) cannot change it.
    inputs
        Module name -> the first positional input the module received.
    output_of
        Module name -> the tensor the module returned (for the modules named in ``inputs_of``).
    calls
        Module name -> how many times it ran.
    """

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    output_of: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as error:
        raise LayerError(f"layer {name!r} does not exist in {type(model).__name__}") from error


@contextlib.contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str],
    *,
    inputs_of: Sequence[str] = (),
    grad_from: str | None = None,
) -> Iterator[Capture]:
    """Capture the outputs of ``layers`` (and the inputs of ``inputs_of``) during forward passes.

    Parameters
    ----------
    model
        The model; it is left exactly as it was when the block ends.
    layers
        Dotted names of the modules whose outputs to keep.
    inputs_of
        Dotted names of modules whose first input and output to keep (used to verify a model head).
    grad_from
        One of ``layers``. Its output is kept as a leaf tensor that requires grad, and grad mode is
        switched on from that point of the forward until ``model``'s forward returns (or raises),
        so that the caller can run the part of the network before the layer under
        :func:`torch.no_grad` and still take
        ``torch.autograd.grad(score, capture.outputs[grad_from])``; code after the forward inside
        the block runs in the caller's grad mode. The network continues with a copy of the leaf,
        so in-place operations after the layer are allowed.

    Yields
    ------
    Capture
        Filled in as forward passes run inside the block.
    """
    if grad_from is not None and grad_from not in layers:
        raise InputError(f"grad_from={grad_from!r} must be one of layers={list(layers)!r}")
    record = Capture()
    grad_was_enabled = torch.is_grad_enabled()
    # Grad mode before the layer switched it on, while the model's forward is between the two.
    switched: list[bool] = []

    def output_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            record.calls[name] = record.calls.get(name, 0) + 1
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor; "
                    "choose a layer whose output is a (B, C, H, W) feature map"
                )
            if name == grad_from:
                leaf = output.detach().requires_grad_(True)
                record.outputs[name] = leaf
                # Start recording here: nothing before the layer needs a graph. The model's own
                # forward hook (below) restores the grad mode when the forward ends.
                switched.append(torch.is_grad_enabled())
                torch.set_grad_enabled(True)
                return leaf.clone()
            # detach() only for an output in a graph: a copy of one that needs no grad has none.
            record.outputs[name] = (output.detach() if output.requires_grad else output).clone()
            return None

        return hook

    def input_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            record.calls[name] = record.calls.get(name, 0) + 1
            if args and isinstance(args[0], torch.Tensor):
                record.inputs[name] = args[0]
            if isinstance(output, torch.Tensor):
                record.output_of[name] = output

        return hook

    def forward_ended(module: nn.Module, args: Any, output: Any) -> None:
        while switched:
            torch.set_grad_enabled(switched.pop())

    with contextlib.ExitStack() as stack:
        if grad_from is not None:
            stack.callback(torch.set_grad_enabled, grad_was_enabled)  # if the forward never ends
            # always_call: runs when the forward raises too.
            handle = model.register_forward_hook(forward_ended, always_call=True)
            stack.callback(handle.remove)
        for name in layers:
            handle = _module(model, name).register_forward_hook(output_hook(name))
            stack.callback(handle.remove)
        for name in inputs_of:
            handle = _module(model, name).register_forward_hook(input_hook(name))
            stack.callback(handle.remove)
        yield record


@dataclass(frozen=True)
class OutputRecord:
    """One module call seen by :func:`record_outputs`, in the order the calls finished."""

    name: str
    module: nn.Module
    shape: tuple[int, ...] | None  # None when the output is not a tensor
    # Shape of the first tensor the module received (positional, then keyword); None when it
    # received none (a module that computes from its own parameters, like a position bias).
    input_shape: tuple[int, ...] | None = None


class _Reached(BaseException):
    """Raised by :func:`input_of`'s pre-hook to stop the forward pass at the module.

    A ``BaseException``, so a model's own ``except Exception`` cannot swallow it and run on.
    """


def input_of(model: nn.Module, name: str, *args: Any) -> tuple[Any, bool]:
    """Run ``model(*args)`` up to the module ``name`` and return the first input it receives.

    The forward pass stops when the module is called: neither the module nor anything after it
    runs. The pre-hook is removed when the call ends, whatever happens.

    Returns
    -------
    value, reached
        The module's first positional input, and whether the module was called at all (when it
        was not, the whole forward ran and ``value`` is ``None``).
    """
    seen: list[Any] = []

    def hook(module: nn.Module, hook_args: Any) -> None:
        seen.append(hook_args[0] if hook_args else None)
        raise _Reached

    handle = _module(model, name).register_forward_pre_hook(hook)
    try:
        model(*args)
    except _Reached:
        return seen[0], True
    finally:
        handle.remove()
    return None, False


@contextlib.contextmanager
def record_outputs(model: nn.Module) -> Iterator[list[OutputRecord]]:
    """Record the name and output shape of every submodule call, in the order the calls finish.

    Used by target-layer discovery. Nothing is kept but shapes (of each output and of the first
    tensor input).
    """
    seen: list[OutputRecord] = []

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            first = next(
                (value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)),
                None,
            )
            input_shape = tuple(first.shape) if first is not None else None
            seen.append(OutputRecord(name, module, shape, input_shape))

        return hook

    with contextlib.ExitStack() as stack:
        for name, module in model.named_modules():
            if name:
                handle = module.register_forward_hook(hook_for(name), with_kwargs=True)
                stack.callback(handle.remove)
        yield seen


@contextlib.contextmanager
def eval_mode(
    model: nn.Module, enabled: bool = True, modules: Sequence[nn.Module] | None = None
) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each ``training`` flag.

    ``modules``: every module of ``model`` when the caller has walked the tree already (see
    :func:`leanxai.core.layers.module_tree`), to spare a second walk.
    """
    if not enabled:
        yield model
        return
    if modules is None:
        modules = tuple(model.modules())
    if not any(module.training for module in modules):  # already in eval mode: nothing to undo
        yield model
        return
    flags = [(module, module.training) for module in modules]
    try:
        model.eval()  # through eval(), so that modules overriding train() are respected
        yield model
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def module_calls(model: nn.Module, name: str) -> Iterator[list[tuple[Any, Any]]]:
    """Record ``(first positional input, output)`` of each call of the module ``name`` in the block.

    Unlike :func:`capture`, any output type is kept as it is (a recurrent layer returns a tuple,
    its first element a tensor or a :class:`~torch.nn.utils.rnn.PackedSequence`); nothing is
    copied or changed. The hook is removed when the block ends, whatever happens.
    """
    calls: list[tuple[Any, Any]] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        calls.append((args[0] if args else None, output))

    handle = _module(model, name).register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


@contextlib.contextmanager
def rewrite_outputs(
    model: nn.Module, rewrites: dict[str, Callable[[nn.Module, Any, Any, Any], Any]]
) -> Iterator[None]:
    """Replace the outputs of modules during the block: ``rewrite(module, args, kwargs, output)``.

    Each rewrite returns what the module should return instead (``None`` keeps the output). Used
    to recompute an attention module's output from probabilities that autograd can reach (the
    probabilities :class:`torch.nn.MultiheadAttention` returns are a copy outside the graph). The
    hooks are removed when the block ends, whatever happens.
    """
    with contextlib.ExitStack() as stack:
        for name, rewrite in rewrites.items():

            def hook(
                module: nn.Module,
                args: Any,
                kwargs: Any,
                output: Any,
                rewrite: Callable[[nn.Module, Any, Any, Any], Any] = rewrite,
            ) -> Any:
                return rewrite(module, args, kwargs, output)

            handle = _module(model, name).register_forward_hook(hook, with_kwargs=True)
            stack.callback(handle.remove)
        yield
