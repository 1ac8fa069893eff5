"""Photo crops of the EfficientNet-Lite0 fidelity benchmark (issue 22): shape, range, seeds."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("skimage")

from leanxai.experiments.compression import (
    LITE0_CALIBRATION_PHOTOS,
    LITE0_HELD_OUT_PHOTOS,
    photo_crops,
)


def test_calibration_and_held_out_photos_are_disjoint() -> None:
    assert not set(LITE0_CALIBRATION_PHOTOS) & set(LITE0_HELD_OUT_PHOTOS)


def test_crops_shape_range_and_seed() -> None:
    crops = photo_crops(("camera.png", "chelsea.png"), per_photo=3, size=32, seed=5)
    assert crops.shape == (6, 3, 32, 32)
    assert crops.min() >= 0.0 and crops.max() <= 1.0
    # camera.png is grey: its crops have three equal channels
    assert torch.equal(crops[0, 0], crops[0, 1])
    assert torch.equal(crops, photo_crops(("camera.png", "chelsea.png"), 3, size=32, seed=5))
    assert not torch.equal(crops, photo_crops(("camera.png", "chelsea.png"), 3, size=32, seed=6))
