"""Small reference convolutional networks.

:class:`SmallCNN` ends in global average pooling and one linear layer, the structure under which
Grad-CAM equals CAM (Zhou et al., 2016, "Learning Deep Features for Discriminative Localization";
Selvaraju et al., 2017, "Grad-CAM"). :class:`VGGStyle` has a VGG head (Simonyan and Zisserman,
2015) of two linear layers over a flattened 7x7 map, where it does not, so explainers must take
their autograd path. Both use ``ReLU(inplace=True)`` right after convolutions, as torchvision's
models do, which explainers must cope with.

Both describe themselves (``describe()``: their constructor's arguments) and are registered with
:func:`leanxai.compress.architectures.register_architecture`, so a compressed file of either
loads without a skeleton.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leanxai.compress.architectures import register_architecture
from leanxai.core import validate
from leanxai.core.errors import InputError

__all__ = ["SmallCNN", "VGGStyle"]


def _check_positive(name: str, value: int) -> None:
    validate.positive_int(name, value)


def _conv_block(in_channels: int, out_channels: int, *, batch_norm: bool) -> list[nn.Module]:
    if batch_norm:
        return [
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Four conv blocks, global average pooling and one linear layer.

    ``features`` is conv3x3-BatchNorm-ReLU blocks of widths ``width, 2*width, 4*width,
    4*width``, with 2x2 max pooling after the first three, so a 64x64 input gives an 8x8 map.
    The last ReLU (``features[-1]``, in place) is the natural Grad-CAM target layer; since only
    ``pool`` and ``classifier`` follow it, Grad-CAM there equals CAM.

    Parameters
    ----------
    num_classes : int, default 4
        Number of outputs.
    in_channels : int, default 3
        Number of input channels.
    width : int, default 32
        Channels of the first block; later blocks use 2x and 4x.

    Notes
    -----
    Accepts any input of side at least 8 (32 or more is sensible); the output is ``(B,
    num_classes)`` logits.
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        _check_positive("num_classes", num_classes)
        _check_positive("in_channels", in_channels)
        _check_positive("width", width)
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        channels = in_channels
        for i, out in enumerate(widths):
            layers += _conv_block(channels, out, batch_norm=True)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C, H/8, W/8)
        x = self.pool(x).flatten(1)  # (B, C)
        return self.classifier(x)  # (B, K)

    def describe(self) -> dict[str, Any]:
        """The constructor's arguments, as JSON values (the ``Describable`` protocol)."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "width": self.width,
        }


# Convolutions per stage and their width as a multiple of ``width`` (VGG-11, configuration "A").
_VGG_STAGES: tuple[tuple[int, ...], ...] = ((1,), (2,), (4, 4), (8, 8), (8, 8))


class VGGStyle(nn.Module):
    """A VGG-11-like network with a two-layer fully connected head.

    ``features`` holds eight conv3x3-ReLU layers in five stages of widths ``width, 2*width,
    4*width, 8*width, 8*width``, with 2x2 max pooling after the stages; ``avgpool`` adapts the
    map to 7x7 and ``classifier`` is Flatten, Linear, ReLU, Dropout, Linear.

    Parameters
    ----------
    num_classes : int, default 10
        Number of outputs.
    in_channels : int, default 3
        Number of input channels.
    width : int, default 64
        Channels of the first stage.
    image_size : int, default 224
        The input side the network is meant for. It sets the number of max-pooling stages so that
        the last feature map is about 7x7 at that size: five at 224 (as in VGG), three at 64, two
        at 32. Other sizes still work.
    hidden : int, default 512
        Width of the hidden linear layer (VGG uses 4096).
    dropout : float, default 0.5
        Dropout probability before the last linear layer.

    Notes
    -----
    Deviations from VGG-11 (Simonyan and Zisserman, 2015): a narrower head (``hidden=512``, one
    hidden layer instead of two) and a number of pooling stages that depends on ``image_size``.
    Accepts any input of side at least ``2 ** n_pools`` (32 for every ``image_size``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        image_size: int = 224,
        *,
        hidden: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_positive("num_classes", num_classes)
        _check_positive("in_channels", in_channels)
        _check_positive("width", width)
        _check_positive("hidden", hidden)
        if validate.positive_int("image_size", image_size) < 8:
            raise InputError(f"image_size must be an int >= 8, got {image_size!r}")
        dropout = validate.fraction("dropout", dropout, high_open=True)
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        self.hidden, self.dropout = hidden, dropout
        self.image_size = image_size
        self.n_pools = min(len(_VGG_STAGES), max(1, round(math.log2(image_size / 7))))
        layers: list[nn.Module] = []
        channels = in_channels
        for i, stage in enumerate(_VGG_STAGES):
            for multiple in stage:
                layers += _conv_block(channels, multiple * width, batch_norm=False)
                channels = multiple * width
            if i < self.n_pools:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 8*width, H/2**n_pools, W/2**n_pools)
        x = self.avgpool(x)  # (B, 8*width, 7, 7)
        return self.classifier(x)  # (B, K)

    def describe(self) -> dict[str, Any]:
        """The constructor's arguments, as JSON values (the ``Describable`` protocol)."""
        return {
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "width": self.width,
            "image_size": self.image_size,
            "hidden": self.hidden,
            "dropout": self.dropout,
        }


register_architecture("SmallCNN", SmallCNN)
register_architecture("VGGStyle", VGGStyle)
