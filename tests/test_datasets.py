"""Tests of ImageDataset, the shapes wrapper, and the packaged digits and MNIST loaders."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from leanxai.data import (
    ImageDataset,
    load_digits_images,
    load_mnist,
    make_shapes,
    shapes_dataset,
)
from leanxai.data.digits import INK_THRESHOLD

DIGITS = tuple(str(d) for d in range(10))


def _tiny(n: int = 12, classes: int = 3, masks: bool = True) -> ImageDataset:
    images = torch.rand(n, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    return ImageDataset(
        images=images,
        labels=torch.arange(n) % classes,
        masks=(images[:, 0] > 0.5) if masks else None,
        classes=tuple(f"c{k}" for k in range(classes)),
        name="tiny",
    )


# --------------------------------------------------------------------------------------------
# ImageDataset


def test_dataset_basics() -> None:
    data = _tiny()
    assert len(data) == 12
    with pytest.raises(AttributeError):
        data.name = "other"  # type: ignore[misc]
    assert data.skipped == ()


def test_subset_by_positions_and_boolean_mask() -> None:
    data = _tiny()
    part = data.subset([3, 0, -1])
    assert torch.equal(part.images, data.images[[3, 0, 11]])
    assert torch.equal(part.labels, data.labels[[3, 0, 11]])
    assert part.masks is not None and data.masks is not None
    assert torch.equal(part.masks, data.masks[[3, 0, 11]])
    assert part.classes == data.classes and part.name == "tiny"
    picked = data.subset(torch.arange(12) % 2 == 0)
    assert torch.equal(picked.labels, data.labels[::2])
    assert len(data.subset([])) == 0
    no_masks = _tiny(masks=False).subset(np.array([1, 2]))
    assert no_masks.masks is None and len(no_masks) == 2


@pytest.mark.parametrize("indices", [[12], [-13], [0.5], [[0, 1]], [True, False]])
def test_subset_rejects_bad_indices(indices: list[object]) -> None:
    with pytest.raises(ValueError, match="indices"):
        _tiny().subset(indices)  # type: ignore[arg-type]


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    data = _tiny(n=40, classes=4)  # 10 per class
    train, test = data.split(0.7, seed=1)
    assert len(train) == 28 and len(test) == 12
    assert torch.bincount(train.labels).tolist() == [7, 7, 7, 7]
    assert torch.bincount(test.labels).tolist() == [3, 3, 3, 3]
    # Disjoint and complete: every image lands in exactly one part.
    rows = torch.cat([train.images, test.images]).flatten(1)
    assert torch.unique(rows, dim=0).shape[0] == 40
    again_train, _ = data.split(0.7, seed=1)
    assert torch.equal(train.images, again_train.images)
    other_train, _ = data.split(0.7, seed=2)
    assert not torch.equal(train.images, other_train.images)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 0.01, 0.99])
def test_split_rejects_fractions_that_empty_a_part(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        _tiny().split(fraction)


def test_resize_images_bilinear_masks_nearest() -> None:
    data = _tiny()
    big = data.resize(10)
    assert big.images.shape == (12, 3, 10, 10)
    assert big.masks is not None and data.masks is not None
    # Nearest, doubling: each mask pixel becomes a 2x2 block.
    assert torch.equal(big.masks, data.masks.repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert big.images.min() >= 0 and big.images.max() <= 1
    assert data.resize((5, 7)).images.shape == (12, 3, 5, 7)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"images": torch.zeros(2, 5, 5)}, "images"),
        ({"images": torch.zeros(2, 3, 5, 5, dtype=torch.float64)}, "float32"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, "labels"),
        ({"labels": torch.zeros(2, dtype=torch.int32)}, "int64"),
        ({"labels": torch.tensor([0, 2])}, "labels"),
        ({"masks": torch.zeros(2, 4, 5, dtype=torch.bool)}, "masks"),
        ({"masks": torch.zeros(2, 5, 5)}, "bool"),
        ({"classes": ["a", "b"]}, "classes"),
    ],
)
def test_dataset_validation(change: dict[str, object], name: str) -> None:
    fields: dict[str, object] = {
        "images": torch.zeros(2, 3, 5, 5),
        "labels": torch.tensor([0, 1]),
        "masks": None,
        "classes": ("a", "b"),
        "name": "x",
    }
    fields.update(change)
    with pytest.raises(ValueError, match=name):
        ImageDataset(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Shapes


def test_shapes_dataset_wraps_make_shapes() -> None:
    data = shapes_dataset(20, size=32, seed=4, difficulty="medium")
    raw = make_shapes(20, size=32, seed=4, difficulty="medium")
    assert isinstance(data, ImageDataset) and data.name == "shapes"
    assert torch.equal(data.images, raw.images)
    assert torch.equal(data.labels, raw.labels)
    assert data.masks is not None and torch.equal(data.masks, raw.masks)
    assert data.classes == raw.classes
    train, test = data.split(0.5)
    assert len(train) + len(test) == 20


# --------------------------------------------------------------------------------------------
# Digits and MNIST


def _check_digits(data: ImageDataset, n: int, side: int, channels: int = 1) -> None:
    assert data.images.shape == (n, channels, side, side)
    assert data.images.dtype == torch.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert data.labels.dtype == torch.int64 and data.labels.shape == (n,)
    assert data.classes == DIGITS
    assert data.masks is not None and data.masks.shape == (n, side, side)
    assert data.masks.dtype == torch.bool
    area = data.masks.float().mean((1, 2))
    assert (area > 0.02).float().mean() > 0.95  # ink in nearly every image
    assert (area < 0.6).all()  # but never most of it


def test_load_digits_images_native() -> None:
    data = load_digits_images()
    _check_digits(data, 1797, 8)
    assert data.name == "digits"
    assert set(data.labels.tolist()) == set(range(10))
    # 16 grey levels, divided by 16.
    assert torch.equal(data.images * 16, (data.images * 16).round())
    # The ink mask: pixels above half of each image's brightest pixel.
    peak = data.images.amax((1, 2, 3))
    expected = data.images[:, 0] > INK_THRESHOLD * peak[:, None, None]
    assert torch.equal(data.masks, expected)  # type: ignore[arg-type]


def test_load_digits_images_subset_resize_and_channels() -> None:
    small = load_digits_images(n=50, seed=3)
    large = load_digits_images(n=100, seed=3)
    _check_digits(small, 50, 8)
    # A smaller n is a subset of a larger one, kept in file order.
    rows = {tuple(row.tolist()) for row in large.images.flatten(1)}
    assert all(tuple(row.tolist()) in rows for row in small.images.flatten(1))
    assert not torch.equal(small.images, load_digits_images(n=50, seed=4).images)

    big = load_digits_images(n=50, seed=3, size=32, channels=3)
    _check_digits(big, 50, 32, channels=3)
    assert torch.equal(big.images[:, 0], big.images[:, 2])
    assert torch.equal(big.labels, small.labels)
    # Masks resized by nearest neighbours: 8 -> 32 repeats each pixel 4 x 4.
    assert small.masks is not None and big.masks is not None
    assert torch.equal(big.masks, small.masks.repeat_interleave(4, 1).repeat_interleave(4, 2))
    # Bilinear images: the mean intensity is roughly preserved.
    assert torch.allclose(big.images.mean((1, 2, 3)), small.images.mean((1, 2, 3)), atol=0.02)


def test_load_mnist() -> None:
    data = load_mnist()
    _check_digits(data, 5000, 28)
    assert data.name == "mnist"
    assert torch.bincount(data.labels).tolist() == [500] * 10
    # Most MNIST backgrounds are exactly zero, and strokes reach full intensity.
    assert (data.images == 0).float().mean() > 0.7
    assert data.images.amax((1, 2, 3)).min() > 0.9


def test_load_mnist_options() -> None:
    data = load_mnist(n=64, size=(32, 36), seed=1, channels=3)
    assert data.images.shape == (64, 3, 32, 36)
    assert data.masks is not None and data.masks.shape == (64, 32, 36)
    assert data.masks.any(dim=(1, 2)).all()
    train, test = data.split(0.75, seed=0)
    assert len(train) + len(test) == 64
    assert set(test.labels.tolist()) <= set(data.labels.tolist()) and len(test) > 0
    again = load_mnist(n=64, seed=1)
    assert torch.equal(again.labels, data.labels)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": 1798}, "n"),
        ({"n": 1.5}, "n"),
        ({"size": 0}, "size"),
        ({"size": (8, 8, 8)}, "size"),
        ({"channels": 2}, "channels"),
    ],
)
def test_digits_invalid_arguments(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        load_digits_images(**kwargs)  # type: ignore[arg-type]


def test_importing_data_is_cheap() -> None:
    code = (
        "import sys, leanxai.data; "
        "print(sorted(m for m in ('sklearn', 'mlxtend', 'pycocotools') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
