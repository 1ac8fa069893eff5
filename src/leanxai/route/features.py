"""Complexity features of an input, read off one cheap explanation by a small probe model.

A router decides from these features whether the small model suffices or a larger tier is needed.
Every feature is a batched tensor function (no loop over samples); each column is documented in
:func:`complexity_features` precisely enough to be reimplemented literally (the tests do so in
float64 NumPy).

:class:`FeatureExtractor` (and its one-shot form :func:`probe_features`) runs the probe **once**:
it uses :class:`~leanxai.explainers.cam.GradCAM` and reads the target layer's activations through
GradCAM's public override point (:meth:`~leanxai.explainers.cam.CAMExplainer.cam_weights`), which
receives exactly the activations of that same pass. No hook beyond GradCAM's own is registered and
no second forward pass is run, so the cost is that of one Grad-CAM call: one forward pass on the
forward path (global-average-pool + linear heads), plus one ``autograd.grad`` from the target layer
to the logits otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core.errors import InputError, InputTypeError
from leanxai.core.targets import Target
from leanxai.explainers.base import Explanation, check_images
from leanxai.explainers.cam import GradCAM, PathOption

__all__ = ["FEATURE_NAMES", "FeatureExtractor", "complexity_features", "probe_features"]

FEATURE_NAMES: tuple[str, ...] = (
    "attention_entropy",
    "saliency_sparsity",
    "gradient_magnitude",
    "feature_variance",
    "spatial_complexity",
    "confidence_margin",
    "activation_sparsity",
)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32; float64 stays float64 (exact tests, no precision lost)."""
    return torch.promote_types(dtype, torch.float32) if dtype.is_floating_point else torch.float32


def _check_batch(tensor: torch.Tensor, name: str, batch: int, dims: int | None = None) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if dims is not None and tensor.dim() != dims:
        raise InputError(f"{name} must have {dims} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.dim() < 1 or tensor.shape[0] != batch:
        raise InputError(
            f"{name} has batch size {tensor.shape[0] if tensor.dim() else None} but inputs has "
            f"batch size {batch}; explanation and inputs must describe the same samples"
        )


def attention_entropy(maps: torch.Tensor) -> torch.Tensor:
    """``(B,)`` normalised Shannon entropy of ``(B, h, w)`` non-negative maps.

    ``p = map / sum(map)``; ``H = -sum p log p / log(h*w)`` (``0 log 0 = 0``), in ``[0, 1]``. An
    all-zero map, or a map with a single cell, gives 1 (uninformative, as a uniform map).
    """
    flat = maps.flatten(1).to(_work_dtype(maps.dtype)).clamp_min(0)  # (B, n)
    cells = flat.shape[1]
    total = flat.sum(dim=1, keepdim=True)  # (B, 1)
    if cells < 2:
        return torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
    p = flat / total.clamp_min(torch.finfo(flat.dtype).tiny)
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), 0.0)
    entropy = -plogp.sum(dim=1) / math.log(cells)
    return torch.where(total[:, 0] > 0, entropy.clamp(0.0, 1.0), 1.0)


def gini(maps: torch.Tensor) -> torch.Tensor:
    """``(B,)`` Gini coefficient of the non-negative values of each map (Hurley & Rickard, 2009).

    With the ``N`` values sorted ascending ``c_(1) <= ... <= c_(N)``:
    ``G = 1 - 2 * sum_k (c_(k) / ||c||_1) * (N - k + 1/2) / N``. 0 for equal values, ``1 - 1/N``
    for a single non-zero value. An all-zero map gives 0 (as a uniform one).
    """
    flat = maps.flatten(1).to(_work_dtype(maps.dtype)).clamp_min(0)  # (B, N)
    count = flat.shape[1]
    values = flat.sort(dim=1).values
    total = values.sum(dim=1)  # (B,)
    k = torch.arange(1, count + 1, dtype=values.dtype, device=values.device)
    weights = (count - k + 0.5) / count  # (N,)
    g = 1 - 2 * (values * weights).sum(dim=1) / total.clamp_min(torch.finfo(values.dtype).tiny)
    return torch.where(total > 0, g, 0.0)


def gradient_magnitude(maps: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean absolute forward difference of ``(B, H, W)`` maps.

    ``(mean |m[:, :, 1:] - m[:, :, :-1]| + mean |m[:, 1:, :] - m[:, :-1, :]|) / 2``; a direction
    of size 1 has no differences and contributes 0.
    """
    maps = maps.to(_work_dtype(maps.dtype))
    zero = torch.zeros(maps.shape[0], dtype=maps.dtype, device=maps.device)
    dx = (maps[:, :, 1:] - maps[:, :, :-1]).abs().mean(dim=(1, 2)) if maps.shape[2] > 1 else zero
    dy = (maps[:, 1:, :] - maps[:, :-1, :]).abs().mean(dim=(1, 2)) if maps.shape[1] > 1 else zero
    return (dx + dy) / 2


def sobel_magnitude(inputs: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean Sobel gradient magnitude of the grayscale image (mean over channels).

    ``g = mean_c(x)``, replicate-padded by one pixel (so a constant image scores exactly 0, also at
    the border); ``G_x = K * g``, ``G_y = K^T * g`` with the unnormalised Sobel kernel
    ``K = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` (cross-correlation, as ``conv2d``; evaluated in its
    separable form); the feature is ``mean_ij sqrt(G_x^2 + G_y^2)``. It scales with the image's
    value range.
    """
    dtype = _work_dtype(inputs.dtype)
    gray = inputs.to(dtype).mean(dim=1)  # (B, H, W)
    gray = F.pad(gray[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # (B, H + 2, W + 2)
    # Separable form, [1, 2, 1] smoothing of a [-1, 0, 1] difference: the difference of a constant
    # is exactly 0 in floating point, where the 3x3 sum of six terms is not.
    dx = gray[:, :, 2:] - gray[:, :, :-2]  # (B, H + 2, W)
    dy = gray[:, 2:, :] - gray[:, :-2, :]  # (B, H, W + 2)
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]  # (B, H, W)
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]  # (B, H, W)
    grads = torch.stack([gx, gy], dim=1)  # (B, 2, H, W)
    return grads.square().sum(dim=1).sqrt().mean(dim=(1, 2))


def confidence_margin(logits: torch.Tensor) -> torch.Tensor:
    """``(B,)`` top-1 minus top-2 softmax probability; 1 when there is a single class."""
    probs = logits.to(_work_dtype(logits.dtype)).softmax(dim=1)
    if probs.shape[1] < 2:
        return torch.ones(probs.shape[0], dtype=probs.dtype, device=probs.device)
    top = probs.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def activation_sparsity(activations: torch.Tensor) -> torch.Tensor:
    """``(B,)`` share of units ``<= 0`` among the ``C*h*w`` (all non-batch) units of each sample.

    After a ReLU this is the share of exact zeros; before one, the share the ReLU would zero.
    """
    return (activations.flatten(1) <= 0).to(_work_dtype(activations.dtype)).mean(dim=1)


def complexity_features(
    explanation: Explanation,
    inputs: torch.Tensor,
    activations: torch.Tensor | None = None,
) -> torch.Tensor:
    """Seven complexity features per sample, columns in the order of :data:`FEATURE_NAMES`.

    Parameters
    ----------
    explanation
        A probe's explanation of ``inputs`` (Grad-CAM or any method with a heatmap and logits).
    inputs
        ``(B, C, H, W)`` finite images, the ones explained.
    activations
        ``(B, ...)`` the probe's activations at the CAM layer (``(B, C, h, w)``), from the same
        pass; ``None`` makes the ``activation_sparsity`` column NaN (use :func:`probe_features`,
        which always supplies them).

    Returns
    -------
    torch.Tensor
        ``(B, 7)`` float32 on ``inputs.device``:

        0. ``attention_entropy``: normalised Shannon entropy of the raw CAM ``explanation.cam``
           (the heatmap when the method has no CAM) as a distribution over its ``n = h*w`` cells,
           ``p = cam / sum(cam)``, ``-sum p log p / log n`` in ``[0, 1]``; an all-zero map (or
           ``n = 1``) gives 1, uninformative like a uniform map.
        1. ``saliency_sparsity``: Gini coefficient of the heatmap values (Hurley & Rickard, 2009,
           "Comparing measures of sparsity"), ``1 - 2 sum_k c_(k)/||c||_1 (N - k + 1/2)/N`` over
           the ascending values; in ``[0, 1 - 1/N]``; an all-zero heatmap gives 0.
        2. ``gradient_magnitude``: mean of ``mean|dx|`` and ``mean|dy|``, the forward differences
           of the heatmap along width and height (a direction of size 1 contributes 0); high for
           fragmented explanations.
        3. ``feature_variance``: population variance (``ddof=0``) of the heatmap values.
        4. ``spatial_complexity``: mean Sobel gradient magnitude of the grayscale image (channel
           mean), replicate-padded, unnormalised kernel ``[[-1,0,1],[-2,0,2],[-1,0,1]]`` and its
           transpose; 0 for a constant image.
        5. ``confidence_margin``: top-1 minus top-2 softmax probability of ``explanation.logits``
           (1 with a single class).
        6. ``activation_sparsity``: share of ``activations`` units ``<= 0`` over ``C*h*w``.

    Raises
    ------
    InputError
        Non-finite or malformed ``inputs``, or an explanation or activations whose batch size
        differs from that of ``inputs``.
    TypeError
        ``explanation`` is not an :class:`Explanation`.
    """
    if not isinstance(explanation, Explanation):
        raise InputTypeError(
            f"explanation must be an Explanation, got {type(explanation).__name__}"
        )
    inputs = check_images(inputs)
    batch = inputs.shape[0]
    device = inputs.device
    _check_batch(explanation.heatmap, "explanation.heatmap", batch, dims=3)
    _check_batch(explanation.logits, "explanation.logits", batch, dims=2)
    maps = explanation.cam if explanation.cam is not None else explanation.heatmap
    if explanation.cam is not None:
        _check_batch(explanation.cam, "explanation.cam", batch, dims=3)
    heatmap = explanation.heatmap.to(device)
    hdtype = _work_dtype(heatmap.dtype)

    columns = [
        attention_entropy(maps.to(device)),
        gini(heatmap),
        gradient_magnitude(heatmap),
        heatmap.flatten(1).to(hdtype).var(dim=1, correction=0),
        sobel_magnitude(inputs),
        confidence_margin(explanation.logits.to(device)),
    ]
    if activations is None:
        columns.append(torch.full((batch,), float("nan"), device=device))
    else:
        _check_batch(activations, "activations", batch)
        if activations.dim() < 2:
            raise InputError(
                f"activations must have shape (B, C, h, w), got {tuple(activations.shape)}"
            )
        columns.append(activation_sparsity(activations.to(device)))
    return torch.stack([column.float() for column in columns], dim=1)  # (B, 7)


class _RecordingGradCAM(GradCAM):
    """GradCAM that keeps the activations handed to its override point during one call."""

    recorded: torch.Tensor | None = None  # set per instance during a call

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        self.recorded = activations
        return super().cam_weights(activations, gradients)

    def constant_gradient_weights(
        self, activations: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        self.recorded = activations
        return super().constant_gradient_weights(activations, rows)


class FeatureExtractor:
    """Complexity features from one Grad-CAM pass of a probe model.

    Parameters
    ----------
    probe
        The small classifier whose explanation is read.
    layer
        Its CAM layer (dotted name or module); ``None`` finds the last spatial feature map.
    path
        GradCAM's path option: ``"auto"`` (default), ``"forward"`` or ``"autograd"``.
    eval_mode
        Run the probe in eval mode during the call (flags restored afterwards).

    Notes
    -----
    Cost: one Grad-CAM call, that is one forward pass of the probe (plus ``autograd.grad`` from the
    CAM layer when the head is not global-average-pool + linear). The CAM layer's activations are
    those GradCAM's override point receives in that same pass; nothing else is registered on the
    probe and the probe is left unchanged. Layer discovery and the forward-path check are cached
    in the extractor, so reuse one extractor across batches.

    Examples
    --------
    >>> features, explanation = FeatureExtractor(probe).extract(images)  # doctest: +SKIP
    >>> features.shape  # (B, 7), columns FEATURE_NAMES  # doctest: +SKIP
    """

    def __init__(
        self,
        probe: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        path: PathOption = "auto",
        eval_mode: bool = True,
    ) -> None:
        self.probe = probe
        self.layer = layer
        self._explainer = _RecordingGradCAM(probe, layer, path=path, eval_mode=eval_mode)

    def extract(
        self, inputs: torch.Tensor, target: Target = None
    ) -> tuple[torch.Tensor, Explanation]:
        """Return ``(features (B, 7) float32, explanation)`` for ``inputs`` ``(B, C, H, W)``."""
        inputs = check_images(inputs)
        explainer = self._explainer
        explainer.recorded = None
        try:
            explanation = explainer.explain(inputs, target)
            activations = explainer.recorded
        finally:
            explainer.recorded = None  # hold no batch between calls
        if activations is None:  # pragma: no cover - GradCAM always calls its override point
            raise RuntimeError("GradCAM did not report the CAM layer's activations")
        return complexity_features(explanation, inputs, activations), explanation

    __call__ = extract

    def __repr__(self) -> str:
        return f"FeatureExtractor({type(self.probe).__name__}, layer={self.layer!r})"


def probe_features(
    probe: nn.Module,
    inputs: torch.Tensor,
    *,
    layer: str | nn.Module | None = None,
    target: Target = None,
) -> tuple[torch.Tensor, Explanation]:
    """One-shot :meth:`FeatureExtractor.extract`: ``(features (B, 7), explanation)``."""
    return FeatureExtractor(probe, layer).extract(inputs, target)
