"""Tests of the synthetic shapes data set."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leanxai.data.shapes import CLASSES, DIFFICULTY_PRESETS, ShapesData, make_shapes


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


# --------------------------------------------------------------------------------------------
# Difficulty knobs


def _digest(data: ShapesData) -> str:
    digest = hashlib.sha256()
    for tensor in (data.images, data.labels, data.masks):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_default_recipe_unchanged_bit_for_bit() -> None:
    # Hashes taken from the code before the difficulty knobs existed; a cached model relies on them.
    assert _digest(make_shapes(32, seed=3)) == (
        "d43497fa41b693d8d3027016f7d84fb37b3ed70b10b2d649f999722293a421d4"
    )
    # More than one chunk, other settings, and the knobs passed at their defaults explicitly.
    data = make_shapes(
        300,
        size=40,
        seed=11,
        clutter=0.9,
        noise=0.1,
        texture=0.0,
        contrast=1.0,
        occlusion=0.0,
        objects=1,
    )
    assert _digest(data) == "3c446e334cd701c167b80a179d2fe344fbb103fd2049cbc0eec3988f38432b84"


@pytest.mark.parametrize(
    "knobs",
    [{"texture": 0.2}, {"contrast": 0.5}, {"occlusion": 0.5}, {"objects": 3}],
)
def test_new_knobs_leave_labels_and_other_draws_alone(knobs: dict[str, float]) -> None:
    base = make_shapes(40, seed=12)
    other = make_shapes(40, seed=12, **knobs)  # type: ignore[arg-type]
    assert torch.equal(base.labels, other.labels)
    assert not torch.equal(base.images, other.images)
    if "occlusion" in knobs:
        assert (other.masks <= base.masks).all()  # visible part of the same object
    else:
        assert torch.equal(base.masks, other.masks)


@pytest.mark.parametrize(
    "knobs",
    [
        {"texture": 0.2},
        {"contrast": 0.3},
        {"occlusion": 0.6},
        {"objects": 4},
        {"difficulty": "hard"},
    ],
)
def test_new_knobs_deterministic_and_valid(knobs: dict[str, object]) -> None:
    a = make_shapes(30, size=32, seed=13, **knobs)  # type: ignore[arg-type]
    b = make_shapes(30, size=32, seed=13, **knobs)  # type: ignore[arg-type]
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    assert a.masks.any(dim=(1, 2)).all()  # the target is always visible somewhere


def test_texture_adds_high_frequency_everywhere() -> None:
    plain = make_shapes(20, seed=14, clutter=0.0, noise=0.0)
    textured = make_shapes(20, seed=14, clutter=0.0, noise=0.0, texture=0.2)
    residual = textured.images - plain.images  # (N, 3, S, S)
    interior = (plain.images > 0.25) & (plain.images < 0.75)  # away from clipping
    assert residual[interior].abs().max() <= 0.2 + 1e-5
    assert residual[interior].std() > 0.05
    # The same grey value on the three channels, inside and outside the object.
    inside = plain.masks[:, None].expand_as(residual) & interior
    assert residual[inside].abs().mean() > 0.03 and residual[~inside & interior].abs().mean() > 0.03

    # High frequency: neighbouring pixels differ far more than in the plain image.
    def roughness(images: torch.Tensor) -> float:
        return float((images[..., 1:] - images[..., :-1]).abs().mean())

    assert roughness(textured.images) > 5 * roughness(plain.images)


def test_contrast_scales_colour_difference() -> None:
    full = make_shapes(100, seed=15, clutter=0.0, noise=0.0)
    low = make_shapes(100, seed=15, clutter=0.0, noise=0.0, contrast=0.25)
    assert torch.equal(full.masks, low.masks)
    # Outside the object, nothing changes.
    outside = ~full.masks[:, None].expand_as(full.images)
    assert torch.equal(full.images[outside], low.images[outside])
    # Inside: the object colour is background + 0.25 * (colour - background).
    colour_full = _mean_over(full.images, full.masks)
    colour_low = _mean_over(low.images, low.masks)
    ring = _ring(full.masks)
    diff_full = (colour_full - _mean_over(full.images, ring)).norm(dim=1)
    diff_low = (colour_low - _mean_over(low.images, ring)).norm(dim=1)
    ratio = diff_low / diff_full
    assert ratio.median().item() == pytest.approx(0.25, abs=0.08)
    assert diff_low.min() > 0.02  # still visible


def test_occlusion_hides_part_of_the_object() -> None:
    whole = make_shapes(100, seed=16, noise=0.0)
    hidden = make_shapes(100, seed=16, noise=0.0, occlusion=0.5)
    area_whole = whole.masks.sum((1, 2)).float()
    area_hidden = hidden.masks.sum((1, 2)).float()
    assert (hidden.masks <= whole.masks).all()
    assert (area_hidden > 0).all()
    fraction = 1 - area_hidden / area_whole
    assert fraction.max() < 0.5 + 1e-6
    assert fraction.mean().item() == pytest.approx(0.25, abs=0.07)  # uniform in [0, 0.5)
    # The visible mask still shows the object's own colour; the hidden part does not.
    gone = whole.masks & ~hidden.masks
    changed = (whole.images != hidden.images).any(1)  # (N, S, S)
    assert changed[gone].all()
    assert not changed[hidden.masks].any()


def test_extra_objects_are_smaller_other_classes_and_outside_the_mask() -> None:
    one = make_shapes(60, seed=17, clutter=0.0, noise=0.0)
    many = make_shapes(60, seed=17, clutter=0.0, noise=0.0, objects=3)
    assert torch.equal(one.masks, many.masks)
    inside = one.masks[:, None].expand_as(one.images)
    assert torch.equal(one.images[inside], many.images[inside])  # the target is untouched
    changed = (one.images != many.images).any(1)  # (N, S, S): the distractors' pixels
    assert (changed.sum((1, 2)) > 0).all()
    # Placed apart from the target: no changed pixel touches it.
    assert not (changed & _ring(one.masks, width=1)).any()
    # Each distractor is smaller than the target: together two cover less than twice its area.
    assert (changed.sum((1, 2)) < 2 * one.masks.sum((1, 2))).all()


def test_extra_objects_are_of_other_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    from leanxai.data import shapes

    drawn: list[np.ndarray] = []
    render = shapes._render_shapes

    def recording(labels: np.ndarray, *args: object) -> np.ndarray:
        drawn.append(labels.copy())
        return render(labels, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shapes, "_render_shapes", recording)
    data = make_shapes(40, size=32, seed=20, objects=4)
    target, *extra = drawn  # one chunk: the target first, then one call per distractor slot
    assert np.array_equal(target, data.labels.numpy())
    assert len(extra) == 3
    for classes in extra:
        assert (classes != target).all()
    assert len(set(np.concatenate(extra).tolist())) == 4  # all classes appear as distractors


def test_difficulty_presets() -> None:
    assert set(DIFFICULTY_PRESETS) == {"easy", "medium", "hard"}
    for name, knobs in DIFFICULTY_PRESETS.items():
        explicit = make_shapes(12, size=32, seed=18, **knobs)  # type: ignore[arg-type]
        preset = make_shapes(12, size=32, seed=18, difficulty=name)
        assert torch.equal(explicit.images, preset.images), name
        assert torch.equal(explicit.masks, preset.masks), name
    # An explicit knob overrides the preset.
    hard = make_shapes(12, size=32, seed=18, difficulty="hard", noise=0.0)
    knobs = {**DIFFICULTY_PRESETS["hard"], "noise": 0.0}
    assert torch.equal(hard.images, make_shapes(12, size=32, seed=18, **knobs).images)  # type: ignore[arg-type]

    # Harder presets hide more of the object and blur it into its surroundings.
    def contrast(data: ShapesData) -> float:
        inner = _mean_over(data.images, data.masks)
        return float((inner - _mean_over(data.images, _ring(data.masks))).norm(dim=1).median())

    easy, medium, hard = (
        make_shapes(200, seed=19, difficulty=d) for d in ("easy", "medium", "hard")
    )
    assert contrast(easy) > contrast(medium) > contrast(hard)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"texture": -0.1}, "texture"),
        ({"texture": 1.5}, "texture"),
        ({"contrast": 0.0}, "contrast"),
        ({"contrast": 1.2}, "contrast"),
        ({"contrast": float("nan")}, "contrast"),
        ({"occlusion": 1.0}, "occlusion"),
        ({"occlusion": -0.2}, "occlusion"),
        ({"objects": 0}, "objects"),
        ({"objects": 9}, "objects"),
        ({"objects": 2.0}, "objects"),
        ({"objects": True}, "objects"),
        ({"difficulty": "extreme"}, "difficulty"),
        ({"difficulty": "hard", "clutter": 2.0}, "clutter"),
    ],
)
def test_invalid_knobs(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_shapes(4, **kwargs)  # type: ignore[arg-type]
