"""leanxai: cheap, checked explanations of PyTorch models.

The top level exports the explainers, :class:`Explanation`, :func:`explain` and the
:mod:`~leanxai.threshold` functions. Importing it has no side effects.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The public names load on first use (PEP 562), so that `import leanxai.deploy.runtime` and
# other torch-free parts do not import torch through this package's __init__.
_EXPORTS = {
    "LIME": "leanxai.explainers.baselines",
    "RISE": "leanxai.explainers.baselines",
    "GuidedBackprop": "leanxai.explainers.baselines",
    "IntegratedGradients": "leanxai.explainers.baselines",
    "KernelSHAP": "leanxai.explainers.baselines",
    "Occlusion": "leanxai.explainers.baselines",
    "CAMExplainer": "leanxai.explainers.cam",
    "GradCAM": "leanxai.explainers.cam",
    "GradCAMPlusPlus": "leanxai.explainers.cam",
    "DeepACTIF": "leanxai.explainers.deepactif",
    "FeatureAttribution": "leanxai.explainers.deepactif",
    "Explainer": "leanxai.explainers.base",
    "Explanation": "leanxai.explainers.base",
}


def __getattr__(name: str) -> Any:
    if name == "threshold":
        value: Any = importlib.import_module("leanxai.threshold")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name == "METHODS":
        from leanxai.explainers import baselines, cam

        value = {
            "gradcam": cam.GradCAM,
            "gradcam++": cam.GradCAMPlusPlus,
            "rise": baselines.RISE,
            "lime": baselines.LIME,
            "kernelshap": baselines.KernelSHAP,
            "ig": baselines.IntegratedGradients,
            "occlusion": baselines.Occlusion,
            "guided_backprop": baselines.GuidedBackprop,
        }
    else:
        raise AttributeError(f"module 'leanxai' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def explain(
    model: nn.Module,
    inputs: Any,
    method: str | None = None,
    target: Target = None,
    *,
    family: str | None = None,
    **options: Any,
) -> Any:
    """Explain ``inputs`` in one call: detect the model's family, pick its method, explain.

    Parameters
    ----------
    model
        The classifier.
    inputs
        What the model takes: ``(B, C, H, W)`` images for a CNN, ``(B, T, F)`` sequences for a
        recurrent model, a PyG ``Data``/``Batch`` for a graph neural network...
    method
        A method of the registry for the family (``leanxai methods`` lists them); ``None`` picks
        the family's default (Grad-CAM for CNNs, DeepACTIF for recurrent models). Names match
        ignoring case, ``-`` and ``_``.
    target
        ``None`` for the predicted class, an int, or one class per sample.
    family
        Override detection (``"cnn"``, ``"recurrent"``...).
    **options
        Passed to the method (``layer=``, ``path=``...); for a graph model ``index=`` names the
        node to explain (node classification; ``None`` for graph classification) and the result
        is a PyG ``Explanation`` (``node_mask``, ``edge_mask``).

    Returns
    -------
    Explanation or FeatureAttribution
        What the method returns (see its ``output`` in the registry); its ``method`` and
        ``family`` say what ran.
    """
    from leanxai.core.families import detect
    from leanxai.explainers import registry

    family = detect(model, inputs, family)
    info = registry.get(method if method is not None else registry.default_method(family), family)
    index = options.pop("index", None) if info.output == "node/edge scores" else None
    explainer = info.factory(model, **options)
    if info.output == "feature ranking":
        result = explainer.attribute(inputs, target=target)
    elif info.output == "node/edge scores":  # a PyG Explanation (index: the node), not a dataclass
        result = explainer.explain(inputs, target, index=index)
        for one in result if isinstance(result, list) else [result]:
            one.family = family
        return result
    else:
        result = explainer.explain(inputs, target)
    return dataclasses.replace(result, family=family)
