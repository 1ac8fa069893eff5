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
  once per explainer by comparing with the autograd gradient.
- ``"autograd"``: ``torch.autograd.grad(score, A)``, never ``backward()``, with the network before
  the layer run without a graph: no parameter gradients and nothing below the layer is recorded.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core.errors import LayerError
from leanxai.core.hooks import Capture, capture, eval_mode
from leanxai.core.layers import find_head_linear, find_target_layer, resolve_layer
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers.base import Explainer, Explanation, check_images, normalize_maps
from leanxai.explainers.registry import register

__all__ = ["CAMExplainer", "GradCAM", "GradCAMPlusPlus"]

PathOption = Literal["auto", "forward", "autograd"]


class CAMExplainer(Explainer):
    """Shared engine of the CAM methods; subclasses override :meth:`cam_weights` only.

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits (or a transformers ``ModelOutput``).
    layer
        Dotted name or submodule of the target layer; ``None`` picks the last module with a spatial
        4-D output (see :func:`leanxai.core.layers.find_target_layer`).
    path
        ``"auto"`` (default) uses the forward-only path where it is exact and autograd elsewhere;
        ``"forward"`` insists on it (a :class:`LayerError` when the head is not GAP + linear);
        ``"autograd"`` always takes the gradient.
    eval_mode
        Run the model in eval mode during the call (then restore every ``training`` flag), so that
        dropout is off and batch-norm statistics are not updated.
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
        if path not in ("auto", "forward", "autograd"):
            raise ValueError(f"path must be 'auto', 'forward' or 'autograd', got {path!r}")
        self.layer = layer
        self.path = path
        self.eval_mode = eval_mode
        # Caches of facts about the model, never state on it.
        self._layer_name: str | None = None
        self._head_name: str | None = None
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

    # -- the engine -----------------------------------------------------------------------------

    def _target_layer(self, inputs: torch.Tensor) -> str:
        if self.layer is not None:
            return resolve_layer(self.model, self.layer)
        if self._layer_name is None:
            with torch.no_grad():
                self._layer_name = find_target_layer(self.model, inputs)
        return self._layer_name

    def _head(self) -> str | None:
        if self._head_name is None:
            self._head_name = find_head_linear(self.model) or ""
        return self._head_name or None

    def _run(self, inputs: torch.Tensor, layer: str, graph: bool) -> tuple[Capture, torch.Tensor]:
        with (
            torch.no_grad(),
            capture(
                self.model,
                [layer],
                grad_from=layer if graph else None,
            ) as record,
        ):
            logits = logits_of(self.model(inputs))
        if record.calls.get(layer, 0) != 1:
            raise LayerError(
                f"layer {layer!r} ran {record.calls.get(layer, 0)} times in one forward pass; "
                "choose a layer that runs exactly once"
            )
        activations = record.outputs[layer]
        if activations.dim() != 4:
            raise LayerError(
                f"layer {layer!r} returns shape {tuple(activations.shape)}; CAM methods need a "
                "(B, C, h, w) feature map"
            )
        return record, logits

    def _head_gradient(
        self, record: Capture, layer: str, head: str | None, logits: torch.Tensor
    ) -> torch.Tensor | None:
        """The head's ``(K, C)`` weight when ``logits == linear(mean_hw(A))`` on this batch.

        One hook (the target layer) and one small matrix product: the logits the model returned
        must equal the last linear layer applied to the spatial mean of the activation.
        """
        if head is None:
            return None
        linear = self.model.get_submodule(head)
        activations = record.outputs[layer].detach()  # (B, C, h, w)
        if (
            not isinstance(linear, nn.Linear)
            or linear.in_features != activations.shape[1]
            or linear.out_features != logits.shape[1]
        ):
            return None
        logits = logits.detach()
        predicted = F.linear(activations.mean(dim=(2, 3)), linear.weight, linear.bias)  # (B, K)
        infinity = float("inf")
        error, scale = torch.stack(
            [torch.dist(predicted, logits, infinity), torch.linalg.vector_norm(logits, infinity)]
        ).tolist()
        if not error <= 1e-4 * scale + 1e-6:  # also False for NaN
            return None
        return linear.weight.detach()  # (K, C); the gradient is W[k] / (h * w)

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
            With ``heatmap``, ``cam``, ``target``, ``logits``, ``layer`` and ``path``.
        """
        inputs = check_images(inputs)
        with eval_mode(self.model, self.eval_mode):
            layer = self._target_layer(inputs)
            head = self._head() if self.path != "autograd" else None
            verified = self._forward_verified.get(layer)
            graph = self.path == "autograd" or (self.path == "auto" and not verified)
            record, logits = self._run(inputs, layer, graph)
            classes = resolve_target(target, logits.detach())
            head_grad = None
            if self.path != "autograd" and verified is not False:
                head_grad = self._head_gradient(record, layer, head, logits)
            if self.path == "forward" and head_grad is None:
                raise LayerError(
                    f"path='forward' needs layer {layer!r} to be followed only by global average "
                    "pooling and one linear layer; use path='auto'"
                )
            activations = record.outputs[layer]  # (B, C, h, w)
            gradients = None
            rows = None
            if head_grad is not None:
                height, width = activations.shape[2:]
                rows = head_grad[classes] / (height * width)  # (B, C)
                gradients = rows[:, :, None, None].expand_as(activations)
                if graph and self.path == "auto":
                    # Verify once per layer that the analytic gradient is the true one.
                    exact = self._autograd_gradient(activations, logits, classes)
                    ok = torch.allclose(
                        exact, gradients, rtol=1e-3, atol=1e-6 * float(exact.abs().amax())
                    )
                    self._forward_verified[layer] = ok
                    if not ok:
                        gradients = exact
                        head_grad = None
            if gradients is None:
                if not activations.requires_grad:  # the forward path failed a check: redo
                    record, logits = self._run(inputs, layer, graph=True)
                    activations = record.outputs[layer]
                gradients = self._autograd_gradient(activations, logits, classes)
            with torch.no_grad():
                activations = activations.detach()
                if head_grad is not None and rows is not None:
                    weights = self.constant_gradient_weights(activations, rows)  # (B, C)
                else:
                    weights = self.cam_weights(activations, gradients)  # (B, C)
                batch, channels, height, width = activations.shape
                cam = torch.bmm(weights[:, None, :], activations.reshape(batch, channels, -1))
                cam = cam.relu_().view(batch, height, width)  # (B, h, w)
                heatmap = F.interpolate(
                    cam[:, None].float(),
                    size=inputs.shape[2:],
                    mode="bilinear",
                    align_corners=False,
                )[:, 0]
                heatmap = normalize_maps(heatmap)  # bilinear keeps it >= 0
        return Explanation(
            heatmap=heatmap,
            target=classes,
            logits=logits.detach(),
            method=self.name,
            cam=cam,
            layer=layer,
            path="forward" if head_grad is not None else "autograd",
        )

    @staticmethod
    def _autograd_gradient(
        activations: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        if not logits.requires_grad:
            raise LayerError(
                "the model's output does not depend on the target layer through a differentiable "
                "path; choose another layer"
            )
        # Samples are independent in eval mode, so the sum of the selected scores gives each
        # sample's own gradient in one call.
        score = logits.gather(1, classes[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, activations, allow_unused=True)
        if gradients is None:
            raise LayerError("the model's output does not depend on the target layer")
        return gradients.detach()


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
