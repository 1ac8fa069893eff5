"""leanxai: cheap, checked explanations of PyTorch models.

The top level exports the explainers, :class:`Explanation`, :func:`explain` and the
:mod:`~leanxai.threshold` functions. Importing it has no side effects.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from leanxai import threshold
from leanxai.core.targets import Target
from leanxai.explainers.base import Explainer, Explanation
from leanxai.explainers.baselines import (
    LIME,
    RISE,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
)
from leanxai.explainers.cam import CAMExplainer, GradCAM, GradCAMPlusPlus
from leanxai.explainers.deepactif import DeepACTIF, FeatureAttribution

__version__ = "0.1.0"

__all__ = [
    "LIME",
    "METHODS",
    "RISE",
    "CAMExplainer",
    "DeepACTIF",
    "Explainer",
    "Explanation",
    "FeatureAttribution",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "IntegratedGradients",
    "KernelSHAP",
    "Occlusion",
    "explain",
    "threshold",
]

METHODS: dict[str, type[Explainer]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "gradcampp": GradCAMPlusPlus,
    "rise": RISE,
    "lime": LIME,
    "kernelshap": KernelSHAP,
    "ig": IntegratedGradients,
    "integratedgradients": IntegratedGradients,
    "occlusion": Occlusion,
    "guidedbackprop": GuidedBackprop,
}
"""Method names for :func:`explain` and the CLI; ``-`` and ``_`` are ignored when matching."""


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str = "gradcam",
    target: Target = None,
    **options: Any,
) -> Explanation:
    """Explain ``inputs`` with ``method`` in one call.

    Parameters
    ----------
    model
        The classifier.
    inputs
        ``(B, C, H, W)`` images.
    method
        One of :data:`METHODS`: ``"gradcam"``, ``"gradcam++"``, and the baselines ``"rise"``,
        ``"lime"``, ``"kernelshap"``, ``"ig"``, ``"occlusion"``, ``"guided_backprop"``.
    target
        ``None`` for the predicted class, an int, or one class per sample.
    **options
        Passed to the explainer (``layer=``, ``path=``...).
    """
    key = method.lower().replace("-", "").replace("_", "") if isinstance(method, str) else method
    if key not in METHODS:
        raise ValueError(f"method {method!r} is not one of {sorted(METHODS)}")
    return METHODS[key](model, **options).explain(inputs, target)
