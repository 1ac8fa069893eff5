"""The Explainer interface and the Explanation it returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputTypeError
from leanxai.core.targets import Target

__all__ = ["Explainer", "Explanation", "check_images", "normalize_maps", "normalize_maps_"]

Path = Literal["forward", "autograd"]


@dataclass(frozen=True)
class Explanation:
    """The result of :meth:`Explainer.explain`.

    Attributes
    ----------
    heatmap
        ``(B, H, W)`` float32 in ``[0, 1]`` at the input size, each map divided by its maximum (an
        all-zero map stays zero).
    target
        ``(B,)`` int64, the class explained for each sample.
    logits
        ``(B, K)`` the model's output for the inputs.
    method
        The method's name (``"gradcam"``).
    cam
        ``(B, h, w)`` at the target layer's resolution, after ReLU, before normalisation (CAM
        methods; ``None`` for others).
    layer
        Dotted name of the target layer (CAM methods).
    path
        ``"forward"`` when no backward pass ran (exact for global-average-pool + linear heads),
        ``"autograd"`` otherwise.
    family
        The model family the method was chosen for (see :mod:`leanxai.core.families`).
    """

    heatmap: torch.Tensor
    target: torch.Tensor
    logits: torch.Tensor
    method: str
    cam: torch.Tensor | None = None
    layer: str | None = None
    path: Path = "autograd"
    family: str = "cnn"

    @property
    def probabilities(self) -> torch.Tensor:
        """``(B,)`` softmax probability of the explained class."""
        probs = self.logits.float().softmax(dim=1)
        return probs.gather(1, self.target[:, None])[:, 0]

    def __len__(self) -> int:
        return int(self.heatmap.shape[0])


class Explainer(abc.ABC):
    """Base class: constructed with a model and options only; one verb, :meth:`explain`.

    Nothing is registered on the model in ``__init__``; hooks live for one call.
    """

    name: str = "explainer"

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    @abc.abstractmethod
    def explain(self, inputs: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``inputs`` ``(B, C, H, W)`` for ``target`` (``None``: the predicted class)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


def check_images(inputs: object, name: str = "inputs") -> torch.Tensor:
    """Validate a ``(B, C, H, W)`` floating tensor with finite values."""
    return validate.images(inputs, name)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Divide each ``(B, H, W)`` map by its maximum; all-zero maps stay zero."""
    return maps / _peaks(maps)


def normalize_maps_(maps: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_maps` in place, for maps the caller owns (one allocation less per call)."""
    return maps.div_(_peaks(maps))


def _peaks(maps: torch.Tensor) -> torch.Tensor:
    """Each map's maximum, ``(B, 1, ...)``, at least the dtype's smallest normal number."""
    peak = maps.amax(dim=tuple(range(1, maps.dim())), keepdim=True)
    return peak.clamp_min_(torch.finfo(maps.dtype).tiny)
