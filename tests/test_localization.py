"""Tests of leanxai.evaluate.localization against literal per-pixel NumPy implementations."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import Tensor

from leanxai.core.errors import InputError
from leanxai.evaluate.localization import PointingGame, localization, pointing_game, pr_curve

# The module itself, whatever leanxai.evaluate re-exports under the same name.
localization_module = importlib.import_module("leanxai.evaluate.localization")

METRICS = ("iou", "dice", "precision", "recall", "boundary_f1")
SEEDS = [0, 1, 2, 3]
CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
)


# --- literal references, one sample at a time, float64, loops over pixels ------------------------


def ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def reference_boundary(region: np.ndarray) -> list[tuple[int, int]]:
    """Region pixels with a 4-neighbour outside the region; outside the image = the edge pixel."""
    height, width = region.shape
    pixels = []
    for i in range(height):
        for j in range(width):
            if not region[i, j]:
                continue
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ni = min(max(i + di, 0), height - 1)
                nj = min(max(j + dj, 0), width - 1)
                if not region[ni, nj]:
                    pixels.append((i, j))
                    break
    return pixels


def matched_share(
    source: list[tuple[int, int]], target: list[tuple[int, int]], tolerance: float
) -> float:
    matched = 0
    for i, j in source:
        if any(math.hypot(i - p, j - q) <= tolerance for p, q in target):
            matched += 1
    return ratio(matched, len(source))


def reference_localization(kept: np.ndarray, mask: np.ndarray, tolerance: float) -> dict:
    height, width = mask.shape
    inter = union = size_k = size_m = 0
    for i in range(height):
        for j in range(width):
            k, m = bool(kept[i, j]), bool(mask[i, j])
            inter += k and m
            union += k or m
            size_k += k
            size_m += m
    if size_m == 0:
        return {name: math.nan for name in METRICS} | {"valid": False}
    boundary_k, boundary_m = reference_boundary(kept), reference_boundary(mask)
    b_precision = matched_share(boundary_k, boundary_m, tolerance)
    b_recall = matched_share(boundary_m, boundary_k, tolerance)
    f1 = ratio(2 * b_precision * b_recall, b_precision + b_recall)
    if size_k and not boundary_k and not boundary_m:  # both the whole image
        f1 = 1.0
    return {
        "iou": ratio(inter, union),
        "dice": ratio(2 * inter, size_k + size_m),
        "precision": ratio(inter, size_k),
        "recall": ratio(inter, size_m),
        "boundary_f1": f1,
        "valid": True,
    }


def reference_pointing(heatmap: np.ndarray, mask: np.ndarray, tolerance: float) -> tuple:
    """(hit, valid): the first maximum in raster order within `tolerance` of a mask pixel."""
    height, width = heatmap.shape
    best, peak = -math.inf, (0, 0)
    for i in range(height):
        for j in range(width):
            if heatmap[i, j] > best:
                best, peak = heatmap[i, j], (i, j)
    nearest = math.inf
    for i in range(height):
        for j in range(width):
            if mask[i, j]:
                nearest = min(nearest, math.hypot(i - peak[0], j - peak[1]))
    valid = nearest < math.inf
    return valid and nearest <= tolerance, valid


def reference_pr(heatmap: np.ndarray, mask: np.ndarray) -> tuple[float, list[float]]:
    """AP = sum_n (R_n - R_{n-1}) P_n over the distinct values, descending; interpolated curve."""
    values = sorted({float(v) for v in heatmap.ravel()}, reverse=True)
    positives = sum(bool(v) for v in mask.ravel())
    if positives == 0:
        return math.nan, [math.nan] * 101
    points = []
    ap, previous_recall = 0.0, 0.0
    for level in values:
        tp = fp = 0
        for score, label in zip(heatmap.ravel(), mask.ravel(), strict=True):
            if score >= level:
                tp += bool(label)
                fp += not label
        precision, recall = tp / (tp + fp), tp / positives
        ap += (recall - previous_recall) * precision
        previous_recall = recall
        points.append((recall, precision))
    curve = [max(p for r, p in points if r >= k / 100) for k in range(101)]
    return ap, curve


# --- random inputs -------------------------------------------------------------------------------


def random_region(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A union of rectangles with a few flipped pixels."""
    region = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        top, left = rng.integers(0, height), rng.integers(0, width)
        region[top : top + rng.integers(1, 6), left : left + rng.integers(1, 6)] = True
    return region ^ (rng.random((height, width)) < 0.05)


def random_pairs(seed: int, batch: int = 8, height: int = 9, width: int = 11) -> tuple:
    """Kept regions and masks, with an empty mask, an empty region, K = M and whole images."""
    rng = np.random.default_rng(seed)
    kept = np.stack([random_region(rng, height, width) for _ in range(batch)])
    mask = np.stack([random_region(rng, height, width) for _ in range(batch)])
    mask[0] = False
    kept[1] = False
    kept[2] = mask[2]
    kept[3] = mask[3] = True
    mask[4] = True
    kept[5] = True
    return torch.from_numpy(kept), torch.from_numpy(mask)


def random_heatmaps(seed: int, batch: int = 6, height: int = 7, width: int = 8) -> Tensor:
    """Heatmaps with ties: values rounded to quarters in half the maps."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(batch, height, width, generator=generator, dtype=torch.float64)
    maps[::2] = torch.round(maps[::2] * 4) / 4
    return maps


# --- localization: known answers -----------------------------------------------------------------


def shapes() -> Tensor:
    masks = torch.zeros(4, 12, 12, dtype=torch.bool)
    masks[0, 3:8, 2:9] = True  # inside
    masks[1, :5, :4] = True  # touching two borders
    masks[2] = True  # the whole image
    masks[3, 6, 6] = True  # one pixel
    return masks


def test_kept_equal_to_mask_scores_one() -> None:
    masks = shapes()
    result = localization(masks, masks)
    for name in METRICS:
        assert torch.equal(result[name], torch.ones(4)), name
    assert result["valid"].all()


def test_disjoint_region_scores_zero() -> None:
    kept = torch.zeros(2, 16, 16)
    mask = torch.zeros(2, 16, 16)
    kept[:, 1:4, 1:4] = 1
    mask[:, 10:14, 10:14] = 1  # boundaries at least 6 px apart
    result = localization(kept, mask, tolerance=2)
    for name in METRICS:
        assert torch.equal(result[name], torch.zeros(2)), name
    assert result["valid"].all()


def test_boundary_within_tolerance_matches() -> None:
    # The same square shifted right by 2 px: every boundary pixel has a partner 2 px away.
    kept = torch.zeros(12, 12, dtype=torch.bool)
    mask = torch.zeros(12, 12, dtype=torch.bool)
    kept[3:8, 2:7] = True
    mask[3:8, 4:9] = True
    assert localization(kept, mask, tolerance=2)["boundary_f1"].item() == 1.0
    assert localization(kept, mask, tolerance=1)["boundary_f1"].item() < 1.0


def test_image_border_is_not_a_boundary() -> None:
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, :, :3] = True  # left half: only column 2 is a boundary
    boundary = localization_module._boundary(mask)[0]
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[:, 2] = True
    assert torch.equal(boundary, expected)


def test_empty_mask_is_excluded_and_empty_kept_scores_zero() -> None:
    kept = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    kept[0, 1:3, 1:3] = True  # sample 0: mask empty
    mask[1, 1:3, 1:3] = True  # sample 1: kept empty
    result = localization(kept, mask)
    assert result["valid"].tolist() == [False, True]
    for name in METRICS:
        assert math.isnan(result[name][0].item()), name
        assert result[name][1].item() == 0.0, name


def test_single_map_is_a_batch_of_one() -> None:
    mask = shapes()[0]
    result = localization(mask.float(), mask.to(torch.uint8))
    assert all(result[name].shape == (1,) for name in (*METRICS, "valid"))
    assert result["iou"].dtype == torch.float32


# --- localization: against the literal reference -------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tolerance", [0, 1, 1.5, 2, 3])
def test_localization_matches_literal_loops(seed: int, tolerance: float) -> None:
    kept, mask = random_pairs(seed)
    result = localization(kept, mask, tolerance=tolerance)
    for b in range(kept.shape[0]):
        expected = reference_localization(kept[b].numpy(), mask[b].numpy(), tolerance)
        assert result["valid"][b].item() == expected["valid"]
        for name in METRICS:
            np.testing.assert_allclose(
                result[name][b].item(), expected[name], rtol=1e-6, err_msg=f"{name}, sample {b}"
            )


def test_batch_equals_per_sample() -> None:
    kept, mask = random_pairs(5)
    batched = localization(kept, mask)
    for b in range(kept.shape[0]):
        single = localization(kept[b], mask[b])
        for name in (*METRICS, "valid"):
            torch.testing.assert_close(
                single[name], batched[name][b : b + 1], rtol=0, atol=0, equal_nan=True
            )


def test_large_tolerance_matches_everything() -> None:
    kept, mask = random_pairs(1)
    result = localization(kept, mask, tolerance=1e6)
    for b in range(kept.shape[0]):
        expected = reference_localization(kept[b].numpy(), mask[b].numpy(), 1e6)
        np.testing.assert_allclose(result["boundary_f1"][b].item(), expected["boundary_f1"])


# --- pointing game -------------------------------------------------------------------------------


def single_pixel_mask(size: int = 40, at: tuple[int, int] = (5, 5)) -> Tensor:
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, at[0], at[1]] = True
    return mask


def peak_at(y: int, x: int, size: int = 40) -> Tensor:
    heatmap = torch.rand(1, size, size, generator=torch.Generator().manual_seed(0)) * 0.5
    heatmap[0, y, x] = 1.0
    return heatmap


def test_pointing_game_empty_mask_is_excluded_not_a_hit() -> None:
    heatmap = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[1] = True
    result = pointing_game(heatmap, mask)
    assert isinstance(result, PointingGame)
    assert result.hits.tolist() == [False, True, False]
    assert result.valid.tolist() == [False, True, False]
    assert result.excluded == 2
    assert result.accuracy == 1.0


def test_pointing_game_all_masks_empty_has_nan_accuracy() -> None:
    result = pointing_game(torch.rand(2, 4, 4), torch.zeros(2, 4, 4))
    assert not result.hits.any()
    assert math.isnan(result.accuracy)
    assert result.excluded == 2


def test_pointing_game_peak_inside_mask_is_a_hit() -> None:
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, 5:10, 5:10] = True
    assert pointing_game(peak_at(7, 8, 20), mask, tolerance=0).hits.item()


@pytest.mark.parametrize(
    ("peak", "hit"),
    [
        ((5, 20), True),  # 15 px right: exactly the tolerance
        ((5, 21), False),  # 16 px: tolerance + 1
        ((14, 17), True),  # (9, 12): Euclidean 15
        ((17, 15), False),  # (12, 10): Euclidean 15.6
    ],
)
def test_pointing_game_tolerance_is_euclidean_and_inclusive(
    peak: tuple[int, int], hit: bool
) -> None:
    result = pointing_game(peak_at(*peak), single_pixel_mask(), tolerance=15)
    assert result.hits.item() is hit
    assert result.accuracy == float(hit)


def test_pointing_game_ties_point_at_first_maximum_in_raster_order() -> None:
    heatmap = torch.zeros(1, 6, 6)
    heatmap[0, 1, 4] = heatmap[0, 4, 1] = 1.0
    first = torch.zeros(1, 6, 6, dtype=torch.bool)
    first[0, 1, 4] = True
    second = torch.zeros(1, 6, 6, dtype=torch.bool)
    second[0, 4, 1] = True
    assert pointing_game(heatmap, first, tolerance=0).hits.item()
    assert not pointing_game(heatmap, second, tolerance=0).hits.item()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tolerance", [0, 1, 2.5, 4])
def test_pointing_game_matches_literal_loops(seed: int, tolerance: float) -> None:
    heatmap = random_heatmaps(seed) - 0.5  # any sign, with ties
    _, mask = random_pairs(seed, batch=6, height=7, width=8)
    result = pointing_game(heatmap, mask, tolerance=tolerance)
    expected = [
        reference_pointing(h, m, tolerance)
        for h, m in zip(heatmap.numpy(), mask.numpy(), strict=True)
    ]
    assert result.hits.tolist() == [hit for hit, _ in expected]
    assert result.valid.tolist() == [valid for _, valid in expected]
    valid_hits = [hit for hit, valid in expected if valid]
    assert result.accuracy == pytest.approx(sum(valid_hits) / len(valid_hits))
    assert result.excluded == len(expected) - len(valid_hits)


# --- pr_curve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_pr_curve_matches_literal_loops_and_sklearn(seed: int) -> None:
    heatmap = random_heatmaps(seed)
    _, mask = random_pairs(seed, batch=6, height=7, width=8)
    result = pr_curve(heatmap, mask)
    assert result.recall_grid.shape == (101,)
    assert result.precision.shape == (6, 101)
    for b in range(6):
        ap, curve = reference_pr(heatmap[b].numpy(), mask[b].numpy())
        assert result.valid[b].item() == (not math.isnan(ap))
        np.testing.assert_allclose(result.aupr[b].item(), ap, rtol=1e-6)
        np.testing.assert_allclose(result.precision[b].numpy(), curve, rtol=1e-6)
        if result.valid[b]:
            sklearn_ap = average_precision_score(
                mask[b].numpy().ravel(), heatmap[b].numpy().ravel()
            )
            np.testing.assert_allclose(result.aupr[b].item(), sklearn_ap, rtol=1e-6)


def test_pr_curve_perfect_and_constant_heatmaps() -> None:
    mask = shapes()[:2]
    perfect = pr_curve(mask.double(), mask)
    assert torch.equal(perfect.aupr, torch.ones(2))
    assert torch.equal(perfect.precision, torch.ones(2, 101))
    constant = pr_curve(torch.full((2, 12, 12), 0.3), mask)  # one threshold: everything
    share = mask.flatten(1).double().mean(1).float()
    torch.testing.assert_close(constant.aupr, share)
    torch.testing.assert_close(constant.precision, share[:, None].expand(2, 101))


def test_pr_curve_empty_mask_is_nan() -> None:
    mask = torch.zeros(2, 5, 5)
    mask[1, 2, 2] = 1
    result = pr_curve(torch.rand(2, 5, 5), mask)
    assert result.valid.tolist() == [False, True]
    assert math.isnan(result.aupr[0].item())
    assert torch.isnan(result.precision[0]).all()
    assert not torch.isnan(result.precision[1]).any()


def test_recall_grid() -> None:
    grid = pr_curve(torch.rand(1, 3, 3), torch.ones(1, 3, 3)).recall_grid
    torch.testing.assert_close(grid, torch.linspace(0, 1, 101))


# --- devices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_outputs_on_input_device(device: str) -> None:
    kept, mask = random_pairs(0)
    kept, mask = kept.to(device), mask.to(device)
    heatmap = random_heatmaps(0, batch=8, height=9, width=11).to(device)
    result = localization(kept, mask)
    assert all(result[name].device == kept.device for name in result)
    game = pointing_game(heatmap, mask)
    assert game.hits.device == game.valid.device == kept.device
    curve = pr_curve(heatmap, mask)
    assert curve.aupr.device == curve.precision.device == kept.device
    cpu = localization(kept.cpu(), mask.cpu())
    for name in result:
        torch.testing.assert_close(result[name].cpu(), cpu[name], equal_nan=True)
    torch.testing.assert_close(
        curve.aupr.cpu(), pr_curve(heatmap.cpu(), mask.cpu()).aupr, equal_nan=True
    )


# --- bad input -----------------------------------------------------------------------------------


def test_shape_mismatch_names_both_arguments() -> None:
    with pytest.raises(InputError, match=r"kept and mask must have the same shape.*\(2, 4, 4\)"):
        localization(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))
    with pytest.raises(InputError, match="heatmap and mask"):
        pointing_game(torch.zeros(4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(InputError, match="heatmap and mask"):
        pr_curve(torch.zeros(2, 4, 4), torch.zeros(3, 4, 4))


@pytest.mark.parametrize("argument", ["kept", "mask"])
def test_non_binary_map_is_rejected(argument: str) -> None:
    good = torch.zeros(2, 4, 4)
    bad = torch.zeros(2, 4, 4)
    bad[0, 0, 0] = 2
    args = {"kept": good, "mask": good, argument: bad}
    message = rf"{argument} must be binary \(bool or 0/1\), got values in \[0, 2\]"
    with pytest.raises(InputError, match=message):
        localization(args["kept"], args["mask"])


def test_non_binary_mask_rejected_everywhere() -> None:
    mask = torch.full((3, 3), 0.5)
    for call in (pointing_game, pr_curve):
        with pytest.raises(InputError, match=r"mask must be binary .*\[0\.5, 0\.5\]"):
            call(torch.rand(3, 3), mask)


def test_nan_is_rejected_with_the_argument_named() -> None:
    nan = torch.zeros(3, 3)
    nan[1, 1] = math.nan
    with pytest.raises(InputError, match="kept must not contain NaN"):
        localization(nan, torch.zeros(3, 3))
    with pytest.raises(InputError, match="mask must not contain NaN"):
        localization(torch.zeros(3, 3), nan)
    for call in (pointing_game, pr_curve):
        with pytest.raises(InputError, match="heatmap must be finite, got 1 NaN"):
            call(nan, torch.ones(3, 3))
        with pytest.raises(InputError, match="mask must not contain NaN"):
            call(torch.zeros(3, 3), nan)


@pytest.mark.parametrize("tolerance", [-1, -0.5, math.inf, math.nan])
def test_bad_tolerance(tolerance: float) -> None:
    with pytest.raises(InputError, match="tolerance"):
        localization(torch.ones(3, 3), torch.ones(3, 3), tolerance=tolerance)
    with pytest.raises(InputError, match="tolerance"):
        pointing_game(torch.rand(3, 3), torch.ones(3, 3), tolerance=tolerance)


def test_bad_types_and_shapes() -> None:
    with pytest.raises(TypeError, match=r"kept must be a torch\.Tensor"):
        localization(np.ones((3, 3)), torch.ones(3, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tolerance"):
        localization(torch.ones(3, 3), torch.ones(3, 3), tolerance="2")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="kept must have shape"):
        localization(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))
    with pytest.raises(InputError, match="heatmap must have a floating dtype"):
        pr_curve(torch.ones(3, 3, dtype=torch.int64), torch.ones(3, 3))
