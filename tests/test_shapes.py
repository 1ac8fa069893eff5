"""Tests of the synthetic shapes data set."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from leanxai.data.shapes import CLASSES, ShapesData, make_shapes


def _ring(masks: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Pixels within ``width`` of a mask, outside it: ``(N, S, S)`` bool."""
    dilated = F.max_pool2d(masks[:, None].float(), 2 * width + 1, stride=1, padding=width)[:, 0]
    return dilated.bool() & ~masks


def _mean_over(images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean colour ``(N, 3)`` of ``images`` ``(N, 3, S, S)`` over ``region`` ``(N, S, S)``."""
    weights = region[:, None].float()
    return (images * weights).sum((2, 3)) / weights.sum((2, 3)).clamp(min=1)


def test_types_shapes_and_ranges() -> None:
    data = make_shapes(10, size=48, seed=1)
    assert isinstance(data, ShapesData)
    assert len(data) == 10
    assert data.images.shape == (10, 3, 48, 48)
    assert data.images.dtype == torch.float32
    assert data.labels.shape == (10,)
    assert data.labels.dtype == torch.int64
    assert data.masks.shape == (10, 48, 48)
    assert data.masks.dtype == torch.bool
    assert data.classes == CLASSES == ("circle", "square", "triangle", "cross")
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert torch.isfinite(data.images).all()


def test_frozen() -> None:
    data = make_shapes(4)
    with pytest.raises(AttributeError):
        data.labels = torch.zeros(4, dtype=torch.int64)  # type: ignore[misc]


def test_deterministic_for_a_seed() -> None:
    a, b = make_shapes(40, seed=7), make_shapes(40, seed=7)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)
    c = make_shapes(40, seed=8)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.masks, c.masks)


def test_knobs_draw_from_independent_streams() -> None:
    # Changing clutter or noise must not move the objects: each knob has its own stream.
    base = make_shapes(20, seed=3)
    other = make_shapes(20, seed=3, clutter=1.0, noise=0.0)
    assert torch.equal(base.labels, other.labels)
    assert torch.equal(base.masks, other.masks)
    assert not torch.equal(base.images, other.images)


def test_labels_balanced_and_all_classes_present() -> None:
    data = make_shapes(403, seed=2)
    counts = torch.bincount(data.labels, minlength=4)
    assert counts.min() >= 100 and counts.max() <= 101
    assert set(make_shapes(4, seed=5).labels.tolist()) == {0, 1, 2, 3}
    assert not torch.equal(data.labels[:8], torch.arange(8) % 4)  # shuffled


def test_masks_non_empty_sized_and_inside_the_image() -> None:
    size = 64
    data = make_shapes(200, size=size, seed=4)
    area = data.masks.float().mean((1, 2))  # (N,)
    assert (area > 0.01).all() and (area < 0.2).all()
    # Whole object inside: nothing on the border rows or columns.
    border = data.masks.clone()
    border[:, 1:-1, 1:-1] = False
    assert not border.any()
    # The object's extent is roughly 20-40 % of the side (wider for a rotated square).
    rows = data.masks.any(2)
    cols = data.masks.any(1)
    extent = torch.maximum(rows.sum(1), cols.sum(1)).float() / size
    assert extent.min() >= 0.1 and extent.max() <= 0.6
    assert extent.mean() > 0.2


def test_object_drawn_where_the_mask_says() -> None:
    # Without noise or clutter, the mask is one flat colour that stands out from its surroundings.
    data = make_shapes(100, seed=5, clutter=0.0, noise=0.0)
    inside = data.images.permute(0, 2, 3, 1)[data.masks]  # (P, 3)
    per_image = torch.repeat_interleave(torch.arange(100), data.masks.sum((1, 2)))
    colour = _mean_over(data.images, data.masks)  # (N, 3)
    assert torch.allclose(inside, colour[per_image], atol=1e-5)
    contrast = (colour - _mean_over(data.images, _ring(data.masks))).norm(dim=1)
    assert contrast.min() > 0.2


def test_object_visible_with_clutter_and_noise() -> None:
    data = make_shapes(200, seed=6)
    contrast = (
        (_mean_over(data.images, data.masks) - _mean_over(data.images, _ring(data.masks)))
        .norm(dim=1)
        .sort()
        .values
    )
    assert contrast[10] > 0.15  # 95 % of objects clearly differ from their surroundings


def test_clutter_adds_distractors_outside_the_object() -> None:
    plain = make_shapes(50, seed=9, clutter=0.0, noise=0.0)
    busy = make_shapes(50, seed=9, clutter=1.0, noise=0.0)
    # Distractors change the background, never the object.
    assert torch.equal(plain.masks, busy.masks)
    inside = plain.masks[:, None].expand_as(plain.images)
    assert torch.equal(plain.images[inside], busy.images[inside])
    assert (plain.images != busy.images)[~inside].float().mean() > 0.05


def test_colour_does_not_give_away_the_label() -> None:
    data = make_shapes(800, seed=10, clutter=0.0, noise=0.0)
    colour = _mean_over(data.images, data.masks)  # (N, 3)
    means = torch.stack([colour[data.labels == k].mean(0) for k in range(4)])  # (4, 3)
    assert (means.max(0).values - means.min(0).values).max() < 0.1


def test_noise_level() -> None:
    clean = make_shapes(20, seed=11, noise=0.0)
    noisy = make_shapes(20, seed=11, noise=0.05)
    residual = noisy.images - clean.images
    interior = (clean.images > 0.2) & (clean.images < 0.8)  # away from clipping
    assert residual[interior].std().item() == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": 4, "size": 8}, "size"),
        ({"n": 4, "seed": -1}, "seed"),
        ({"n": 4, "clutter": 1.5}, "clutter"),
        ({"n": 4, "noise": -0.1}, "noise"),
        ({"n": 4, "noise": float("nan")}, "noise"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_shapes(**kwargs)  # type: ignore[arg-type]
