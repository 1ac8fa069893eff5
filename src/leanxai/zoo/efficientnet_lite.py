"""EfficientNet-Lite0 (Tan & Le, 2019; the Lite variants of TensorFlow's reference code, 2020).

Written here rather than taken from ``efficientnet-lite-pytorch`` (ml-illustrated, one release,
0.1.0, 2020), whose architecture the published PyTorch weights were converted for. That package
is a lightly edited copy of ``efficientnet_pytorch`` that its author calls "not thoroughly
tested"; reading its source decided it:

- its own weight loader calls ``torch.load`` without ``weights_only`` (arbitrary unpickling) and
  checks with ``assert``; ``from_pretrained`` without a path downloads from a URL;
- ``forward`` prints on one of its code paths and the model object carries CoreML/ONNX
  converters;
- one activation module is shared by every call in a block, so a hook on it fires several times
  per forward pass, which makes the activations unaddressable as CAM target layers;
- the rest is 700 lines of generic EfficientNet configuration for a network that is 16 blocks.

This module is that network alone: the same parameter names (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` and their batch norms,
``_conv_head``, ``_bn1``, ``_fc``), so the published state dict loads as it is, each ReLU6 its
own module, and TensorFlow's "SAME" padding (asymmetric for stride 2 on even sizes) computed for
the input it gets. Lite differs from EfficientNet-B0 in: ReLU6 instead of swish, no
squeeze-and-excitation, stem and head not scaled. Stochastic depth (drop connect) is a training
device and is left out: this module is for inference with the published weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0", "MBConvBlock", "SamePaddingConv2d"]

# TensorFlow's batch norm settings: momentum 0.99 there is 0.01 in PyTorch's convention.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expansion, input channels, output channels), from
# efficientnet/lite/efficientnet_lite_builder.py; Lite0 scales neither width nor depth.
_LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class SamePaddingConv2d(nn.Conv2d):
    """A :class:`torch.nn.Conv2d` with TensorFlow's ``padding="SAME"``.

    The output is ``ceil(size / stride)``; the padding that takes is split with the smaller half
    before (top, left), as TensorFlow does, and computed from each input's size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        height, width = x.shape[-2:]
        pads = []
        for size, kernel, stride in zip(
            (width, height), self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck (Sandler et al., 2018) without squeeze-and-excitation.

    1x1 expansion (skipped when ``expansion == 1``), depthwise ``kernel x kernel`` convolution with
    ``stride``, 1x1 linear projection; the input is added when shape allows (stride 1, same
    channels).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expansion = expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = x
        if self.expansion != 1:
            y = self._expand_act(self._bn0(self._expand_conv(y)))
        y = self._depthwise_act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for ``(B, 3, 224, 224)`` ImageNet inputs (any size >= 32 runs).

    Stem (3x3 stride 2, 32 channels), 16 MBConv blocks, 1x1 head to 1280 channels with ReLU6
    (``_head_act``, the last feature map: CAM's target layer), global average pooling, dropout,
    one linear layer (``_fc``). Because the head is pooling and one linear layer, Grad-CAM on
    ``_head_act`` takes the forward path (no backward pass).

    Parameters
    ----------
    num_classes : int, default 1000
    dropout : float, default 0.2
        Before ``_fc``; inactive in eval mode.
    """

    input_size = (224, 224)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout = dropout
        self._conv_stem = SamePaddingConv2d(3, 32, 3, 2)
        self._bn0 = _batch_norm(32)
        self._stem_act = nn.ReLU6()
        blocks = []
        for repeats, kernel, stride, expansion, channels_in, channels_out in _LITE0_STAGES:
            for index in range(repeats):
                blocks.append(
                    MBConvBlock(
                        channels_in if index == 0 else channels_out,
                        channels_out,
                        kernel,
                        stride if index == 0 else 1,
                        expansion,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _batch_norm(1280)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, K)
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        x = self._avg_pooling(x).flatten(1)  # (B, 1280)
        return self._fc(self._dropout(x))

    def describe(self) -> dict[str, Any]:
        """The constructor's arguments, as JSON values (the ``Describable`` protocol)."""
        return {"num_classes": self.num_classes, "dropout": self.dropout}
