"""Class activation maps: Grad-CAM and Grad-CAM++ at nearly the cost of inference.

Grad-CAM (Selvaraju et al., ICCV 2017) weights each channel ``c`` of the target layer's activation
``A`` by the spatial mean of ``d score / d A_c`` and keeps the positive part of the weighted sum.
Grad-CAM++ (Chattopadhyay et al., WACV 2018) weights the positive gradients per position with the
closed-form coefficients that hold for an exponential score, as in the reference implementations.

Two exact ways to get the gradient:

- ``"forward"``: when the layer is followed only by global average pooling and one linear layer,
  ``d logit_k / d A = W[k] / (h * w)`` everywhere, so no backward pass is needed and Grad-CAM equals
  CAM (Zhou et al., 2016). leanxai detects this by checking, on every batch, that the last linear
  layer's input equals the spatial mean of ``A`` and its output equals the logits, and verifies it
  once per layer by comparing with the autograd gradient (again whenever a submodule of the model
  is added, removed, replaced or renamed).
- ``"autograd"``: ``torch.autograd.grad(score, A)``, never ``backward()``, with the network before
  the layer run without a graph: no parameter gradients and nothing below the layer is recorded.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, LayerError, LayerWarning, ModelOutputError
from leanxai.core.hooks import capture, eval_mode
from leanxai.core.layers import (
    TreeSnapshot,
    discover_target_layer,
    find_head_linear,
    resolve_layer,
)
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers.base import Explainer, Explanation, check_images, normalize_maps_
from leanxai.explainers.registry import register

__all__ = ["CAMExplainer", "GradCAM", "GradCAMPlusPlus"]

PathOption = Literal["auto", "forward", "autograd"]

_NO_CONTEXT = contextlib.nullcontext()  # stateless: one instance serves every call
_upsample_bilinear = torch._C._nn.upsample_bilinear2d  # what F.interpolate runs for "bilinear"


class _StructureFacts:
    """What an explainer learned about its model's module tree; valid while the tree is equal.

    Only structure is kept (names, the head module), never anything computed from parameter
    values: the head's weight rows are read on every call, so weights edited in place (even through
    ``.data``, which no version counter sees) cannot make a cached fact wrong.
    """

    __slots__ = ("head", "head_known", "layer", "layer_argument", "snapshot")

    def __init__(self, snapshot: TreeSnapshot) -> None:
        self.snapshot = snapshot
        self.layer: str | None = None  # resolved or discovered for ``layer_argument``
        self.layer_argument: str | nn.Module | None = None
        self.head: nn.Linear | None = None
        self.head_known = False


class CAMExplainer(Explainer):
    """Shared engine of the CAM methods; subclasses override :meth:`cam_weights` only.

    One call runs four steps: the forward pass (logits and the target layer's activations), the
    gradient source (the forward path's constant weight rows, or autograd), the channel weights
    (:meth:`cam_weights`), and the map (ReLU, bilinear upsampling, normalisation).

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits (or a transformers ``ModelOutput``).
    layer
        Dotted name or submodule of the target layer; ``None`` picks the last module with a spatial
        4-D output of the batch (see :func:`leanxai.core.layers.discover_target_layer`), with a
        :class:`~leanxai.core.errors.LayerWarning` when that is the model's first layer.
    path
        ``"auto"`` (default) uses the forward-only path where it is exact and autograd elsewhere;
        ``"forward"`` insists on it (a :class:`LayerError` when the head is not GAP + linear);
        ``"autograd"`` always takes the gradient.
    eval_mode
        Run the model in eval mode during the call (then restore every ``training`` flag), so that
        dropout is off and batch-norm statistics are not updated.

    Notes
    -----
    Called inside :func:`torch.no_grad` or :func:`torch.inference_mode`, the explainer enables
    what the gradient needs for the call only; the one case it cannot serve is a model that holds
    inference tensors after the target layer (an :class:`InputError` says so).
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        path: PathOption = "auto",
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model)
        validate.choice("path", path, ("auto", "forward", "autograd"))
        self.layer = layer
        self.path = path
        self.eval_mode = eval_mode
        # Facts about the model's structure, checked against its module tree on every call; never
        # state on the model.
        self._facts: _StructureFacts | None = None
        self._forward_verified: dict[str, bool] = {}

    # -- the override point ---------------------------------------------------------------------

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """Channel weights ``(B, C)`` from activations and gradients, both ``(B, C, h, w)``."""
        raise NotImplementedError

    def constant_gradient_weights(
        self, activations: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """Channel weights when the gradient is ``rows[:, :, None, None]`` at every position.

        The forward path's case; override when the method has a cheaper closed form.
        """
        return self.cam_weights(activations, rows[:, :, None, None].expand_as(activations))

    # -- one call -------------------------------------------------------------------------------

    def explain(self, inputs: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``inputs`` for ``target``.

        Parameters
        ----------
        inputs
            ``(B, C, H, W)`` floating tensor on the model's device.
        target
            ``None`` (the predicted class), an int, or one class per sample.

        Returns
        -------
        Explanation
            With ``heatmap``, ``cam``, ``target``, ``logits``, ``layer`` and ``path``; one map per
            input.

        Raises
        ------
        LayerError
            When the target layer does not give one ``(h, w)`` map per input with ``h * w > 1``.
        """
        inputs = check_images(inputs)
        facts = self._structure_facts()
        modules = facts.snapshot.modules
        # eval_mode restores what it changed; with every module in eval mode already (the usual
        # case) there is nothing to change, and its context manager is skipped.
        switch = self.eval_mode and any(module.training for module in modules)
        with eval_mode(self.model, modules=modules) if switch else _NO_CONTEXT:
            layer, discovered_first = self._target_layer(facts, inputs)
            if discovered_first:
                warnings.warn(
                    LayerWarning(
                        f"the target layer {layer!r} is the model's first layer (nothing but the "
                        "input comes before it): its map reflects the input more than the "
                        "decision; pass layer=... to choose a deeper one"
                    ),
                    stacklevel=2,
                )
            graph = self.path == "autograd" or (
                self.path == "auto" and not self._forward_verified.get(layer)
            )
            with _outside_inference_mode(self.path != "forward"):
                activations, logits = self._forward(inputs, layer, graph)
                classes = resolve_target(target, logits)  # int64: never part of a graph
                rows, gradients = self._gradient_source(
                    facts, inputs, layer, activations, logits, classes
                )
            weights = self._weights(activations, rows, gradients)  # (B, C)
            cam, heatmap = _map(weights, activations, inputs.shape[2:])
        return Explanation(
            heatmap=heatmap,
            target=classes,
            logits=logits.detach() if logits.requires_grad else logits,
            method=self.name,
            cam=cam,
            layer=layer,
            path="forward" if rows is not None else "autograd",
        )

    # -- the steps ------------------------------------------------------------------------------

    def _structure_facts(self) -> _StructureFacts:
        """The cached facts when the module tree is the one they were learned on, else fresh ones.

        The snapshot's first module is the model itself, so a new model
        (``explainer.model = ...``) also starts afresh.
        """
        facts = self._facts
        if facts is None or not facts.snapshot.unchanged(self.model):
            facts = self._facts = _StructureFacts(TreeSnapshot(self.model))
            self._forward_verified = {}
        return facts

    def _target_layer(self, facts: _StructureFacts, inputs: torch.Tensor) -> tuple[str, bool]:
        """The layer's dotted name, and whether it was just discovered to be the model's first."""
        if facts.layer is not None and facts.layer_argument is self.layer:
            return facts.layer, False
        if self.layer is not None:
            name, first = resolve_layer(self.model, self.layer), False
        else:
            with torch.no_grad():
                discovery = discover_target_layer(self.model, inputs)
            name, first = discovery.name, discovery.first
        facts.layer, facts.layer_argument = name, self.layer
        return name, first

    def _forward(
        self, inputs: torch.Tensor, layer: str, graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K)`` and the layer's activations ``(B, C, h, w)``, one pass.

        With ``graph``, the activations are a leaf that requires grad and the logits depend on it;
        nothing before the layer is recorded.
        """
        try:
            with (
                torch.no_grad(),
                capture(self.model, [layer], grad_from=layer if graph else None) as record,
            ):
                logits = logits_of(self.model(inputs))
        except RuntimeError as error:
            if graph and "inference tensor" in str(error).lower():
                raise _inference_tensor_error(self.model, inputs, layer) from error
            raise
        calls = record.calls.get(layer, 0)
        if calls != 1:
            raise LayerError(
                f"layer {layer!r} ran {calls} times in one forward pass; "
                "choose a layer that runs exactly once"
            )
        activations = record.outputs[layer]
        batch = inputs.shape[0]
        if activations.dim() != 4:
            raise LayerError(
                f"layer {layer!r} returns shape {tuple(activations.shape)}; CAM methods need a "
                "(B, C, h, w) feature map"
            )
        if activations.shape[0] != batch:
            raise LayerError(
                f"layer {layer!r} returns shape {tuple(activations.shape)}, {activations.shape[0]} "
                f"maps for a batch of {batch} inputs; choose a layer whose output is a "
                "(B, C, h, w) feature map of the batch"
            )
        if activations.shape[2] == 1 and activations.shape[3] == 1:
            raise LayerError(
                f"layer {layer!r} returns a 1x1 map (shape {tuple(activations.shape)}); a 1x1 map "
                "cannot localise: choose an earlier layer"
            )
        if logits.shape[0] != batch:
            raise ModelOutputError(
                f"the model returned logits of shape {tuple(logits.shape)} for a batch of {batch} "
                "inputs; expected one row per input"
            )
        return activations, logits

    def _gradient_source(
        self,
        facts: _StructureFacts,
        inputs: torch.Tensor,
        layer: str,
        activations: torch.Tensor,
        logits: torch.Tensor,
        classes: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(rows, None)`` on the forward path, ``(None, gradients)`` on the autograd path.

        ``rows`` ``(B, C)``: the gradient of each sample's class score, constant over positions.
        ``gradients`` ``(B, C, h, w)``. On ``path="auto"`` the forward path is checked once per
        layer (and module tree) against autograd; it is taken only while that check held.
        """
        rows = None
        if self.path != "autograd" and self._forward_verified.get(layer) is not False:
            rows = self._head_rows(facts, activations, logits, classes)
        if self.path == "forward" and rows is None:
            raise LayerError(
                f"path='forward' needs layer {layer!r} to be followed only by global average "
                "pooling and one linear layer; use path='auto'"
            )
        if rows is not None:
            if not activations.requires_grad:  # verified, or path="forward"
                return rows, None
            # Verify once per layer that the analytic gradient is the true one.
            exact = _autograd_gradient(activations, logits, classes)
            constant = rows[:, :, None, None].expand_as(exact)
            ok = torch.allclose(exact, constant, rtol=1e-3, atol=1e-6 * float(exact.abs().amax()))
            self._forward_verified[layer] = ok
            return (rows, None) if ok else (None, exact)
        if not activations.requires_grad:  # the forward path failed this batch's check: redo
            activations, logits = self._forward(inputs, layer, graph=True)
        return None, _autograd_gradient(activations, logits, classes)

    def _head(self, facts: _StructureFacts) -> nn.Linear | None:
        if not facts.head_known:
            name = find_head_linear(self.model)
            head = self.model.get_submodule(name) if name is not None else None
            facts.head = head if isinstance(head, nn.Linear) else None
            facts.head_known = True
        return facts.head

    def _head_rows(
        self,
        facts: _StructureFacts,
        activations: torch.Tensor,
        logits: torch.Tensor,
        classes: torch.Tensor,
    ) -> torch.Tensor | None:
        """``W[k] / (h * w)`` per sample when ``logits == linear(mean_hw(A))`` on this batch.

        Checked on every batch (the structure is cached, the numbers never): the logits the model
        returned must equal the last linear layer applied to the spatial mean of the activation.
        """
        if self.path == "autograd":
            return None
        linear = self._head(facts)
        _, channels, height, width = activations.shape
        if (
            linear is None
            or linear.in_features != channels
            or linear.out_features != logits.shape[1]
        ):
            return None
        with torch.no_grad():
            predicted = F.linear(activations.mean(dim=(2, 3)), linear.weight, linear.bias)
            # max |predicted - logits| and max |logits| in one reduction and one sync (the
            # infinity norm is max |x|, exactly, and NaN when x holds one).
            error, scale = torch.linalg.vector_norm(
                torch.stack((predicted.sub_(logits), logits)), ord=math.inf, dim=(1, 2)
            ).tolist()
            if not error <= 1e-4 * scale + 1e-6:  # also False for NaN
                return None
            # The gradient of logit k is W[k] / (h * w) at every position.
            return linear.weight.index_select(0, classes).div_(height * width)  # (B, C)

    def _weights(
        self,
        activations: torch.Tensor,
        rows: torch.Tensor | None,
        gradients: torch.Tensor | None,
    ) -> torch.Tensor:
        """Channel weights ``(B, C)`` through the method's override point."""
        if rows is not None and not activations.requires_grad:
            # The forward path: nothing here can join a graph (the rows were read under no_grad).
            return self.constant_gradient_weights(activations, rows)
        with torch.no_grad():
            activations = activations.detach()
            if rows is not None:
                return self.constant_gradient_weights(activations, rows)
            assert gradients is not None
            return self.cam_weights(activations, gradients)


def _map(
    weights: torch.Tensor, activations: torch.Tensor, size: torch.Size
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cam`` ``(B, h, w)`` (ReLU of the weighted sum) and ``heatmap`` ``(B, H, W)`` in [0, 1]."""
    batch, channels, height, width = activations.shape
    # detach() only where a graph could form (the autograd path): one op fewer per call otherwise.
    if activations.requires_grad:
        activations = activations.detach()
    if weights.requires_grad:
        weights = weights.detach()
    flat = activations.reshape(batch, channels, height * width)
    cam = torch.bmm(weights.unsqueeze(1), flat).relu_()  # (B, 1, h * w)
    small = cam.view(batch, 1, height, width)
    if small.dtype != torch.float32:
        small = small.float()
    # F.interpolate(small, size, mode="bilinear", align_corners=False) is this kernel behind
    # ~40 lines of argument checks that cannot fail here: the same values, less Python per call.
    heatmap = _upsample_bilinear(small, size, False, None)  # (B, 1, H, W), >= 0: convex weights
    return cam.view(batch, height, width), normalize_maps_(heatmap.reshape(batch, *size))


def _autograd_gradient(
    activations: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """``d logits[b, classes[b]] / d activations``, ``(B, C, h, w)``, whatever the grad mode."""
    if not logits.requires_grad:
        raise LayerError(
            "the model's output does not depend on the target layer through a differentiable "
            "path; choose another layer"
        )
    # Samples are independent in eval mode, so the sum of the selected scores gives each
    # sample's own gradient in one call. enable_grad: the caller may be inside torch.no_grad().
    with torch.enable_grad():
        score = logits.gather(1, classes[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, activations, allow_unused=True)
    if gradients is None:
        raise LayerError("the model's output does not depend on the target layer")
    return gradients.detach()


def _outside_inference_mode(leave: bool) -> contextlib.AbstractContextManager[object]:
    """Leave :func:`torch.inference_mode` for the block when it is on and ``leave`` is true.

    Autograd cannot record in inference mode; tensors made there (the inputs too) can still be
    read by a forward pass outside it, which is all the explainer does with them.
    """
    if leave and torch.is_inference_mode_enabled():
        return torch.inference_mode(False)
    return _NO_CONTEXT


def _inference_tensor_error(model: nn.Module, inputs: torch.Tensor, layer: str) -> InputError:
    """One line for a graph that meets inference tensors: which ones, and what to do."""
    for kind, named in (("parameter", model.named_parameters), ("buffer", model.named_buffers)):
        for name, tensor in named():
            if tensor.is_inference():
                return InputError(
                    f"the model holds inference tensors (its {kind} {name!r} was created under "
                    "torch.inference_mode()); autograd cannot take the gradient at layer "
                    f"{layer!r} through them: create or load the model outside "
                    "torch.inference_mode() (or use path='forward' for a global-average-pool + "
                    "linear head)"
                )
    if inputs.is_inference():
        return InputError(
            "inputs are inference tensors (created under torch.inference_mode()); the model "
            "changes them in place, which autograd cannot record: pass inputs.clone()"
        )
    return InputError(
        "the model uses inference tensors (created under torch.inference_mode()) after layer "
        f"{layer!r}; the gradient cannot pass through them: create them outside "
        "torch.inference_mode()"
    )


@register(
    "gradcam",
    families="cnn",
    output="spatial map",
    backward="if needed",
    aliases=("grad_cam",),
    summary="Grad-CAM; exact forward path (no backward) for global-average-pool + linear heads",
)
class GradCAM(CAMExplainer):
    """Grad-CAM (Selvaraju et al., 2017): channel weight = spatial mean of the gradient.

    Examples
    --------
    >>> explanation = GradCAM(model).explain(images)  # doctest: +SKIP
    >>> explanation.heatmap.shape  # (B, H, W), in [0, 1]  # doctest: +SKIP
    """

    name = "gradcam"

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        return gradients.mean(dim=(2, 3))  # (B, C)

    def constant_gradient_weights(
        self, activations: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        return rows  # the spatial mean of a constant


@register(
    "gradcam++",
    families="cnn",
    output="spatial map",
    backward="if needed",
    aliases=("gradcampp", "gradcamplusplus"),
    summary="Grad-CAM++ (closed form); the same forward path as Grad-CAM",
)
class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++ (Chattopadhyay et al., 2018).

    Uses the closed form for an exponential score, as the authors' code and pytorch-grad-cam do:
    ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)``, weight ``= sum_ij alpha * relu(g)``, where ``g`` is
    the gradient of the class score. Deviation: we evaluate ``alpha`` as ``1 / (2 + sum_ij(A) g)``,
    which is the same wherever ``g != 0``, without the ``eps`` those implementations add to the
    denominator; with small gradients (``W / (h*w)`` on the forward path is ~1e-4) that ``eps``
    dominates ``g^2`` and changes the map.
    """

    name = "gradcam++"

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        denominator = 2 + sum_activations * gradients  # (B, C, h, w)
        usable = (gradients != 0) & (denominator != 0)
        alpha = torch.where(usable, 1 / torch.where(usable, denominator, 1.0), 0.0)
        return (alpha * torch.relu(gradients)).sum(dim=(2, 3))  # (B, C)
