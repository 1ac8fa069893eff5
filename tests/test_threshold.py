"""Tests of leanxai.threshold against literal per-map NumPy implementations of each definition."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from leanxai import threshold
from leanxai.threshold import (
    coverage,
    dynamic,
    dynamic_threshold_values,
    from_spec,
    mass,
    multi_level,
    spec_label,
    top_percent,
)

DTYPES = [torch.float64, torch.float32]
CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
)


# --- literal references, one map at a time --------------------------------------------------------


def reference_top_percent(heatmap: np.ndarray, percent: float) -> np.ndarray:
    """SimplifyGradCAM: keep values >= the (100 - percent)th percentile and > 0."""
    level = np.percentile(heatmap.ravel(), 100 - percent)
    keep = (heatmap >= level) & (heatmap > 0)
    return np.where(keep, heatmap, 0)


def reference_dynamic(
    heatmap: np.ndarray, min_coverage: float, max_threshold: float, step: float
) -> tuple[np.ndarray, float]:
    """DynamicThreshold as a while loop, lowering the threshold until enough pixels are kept."""
    level = max_threshold
    while level > 0:
        keep = (heatmap >= level) & (heatmap > 0)
        if np.mean(keep) >= min_coverage:
            return np.where(keep, heatmap, 0), level
        level = round(level - step, 12)
    return np.where(heatmap > 0, heatmap, 0), 0.0


def reference_mass(heatmap: np.ndarray, fraction: float) -> np.ndarray:
    """Smallest top set holding `fraction` of the total, ties at the boundary kept together."""
    values = sorted((float(v) for v in heatmap.ravel()), reverse=True)
    total = sum(values)
    running = 0.0
    boundary = values[-1]
    for value in values:
        running += value
        if running >= fraction * total - 1e-6 * total:
            boundary = value
            break
    keep = (heatmap >= boundary) & (heatmap > 0)
    return np.where(keep, heatmap, 0)


def reference_multi_level(heatmap: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    grades = np.zeros(heatmap.shape, dtype=np.int64)
    for i, value in np.ndenumerate(heatmap):
        grades[i] = sum(1 for level in levels if value >= level)
    return grades


def random_maps(dtype: torch.dtype, batch: int = 6, seed: int = 0) -> Tensor:
    """Normalised maps of varied sparsity, with one all-zero map and one single-pixel map."""
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(batch, 7, 9, generator=generator, dtype=torch.float64)
    shift = torch.linspace(-1.5, 1.0, batch, dtype=torch.float64)[:, None, None]
    maps = (raw + shift).clamp(min=0)
    maps[0] = 0
    maps[1] = 0
    maps[1, 3, 4] = 0.7
    maps = maps / maps.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
    return maps.to(dtype)


def per_map(function: Callable[[np.ndarray], np.ndarray], heatmap: Tensor) -> np.ndarray:
    return np.stack([function(m) for m in heatmap.numpy()])


# --- top_percent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("percent", [1, 5, 10, 25, 33.3, 50, 90, 100])
def test_top_percent_matches_numpy_percentile(dtype: torch.dtype, percent: float) -> None:
    heatmap = random_maps(dtype)
    result = top_percent(heatmap, percent)
    expected = per_map(lambda m: reference_top_percent(m, percent), heatmap)
    np.testing.assert_array_equal(result.numpy(), expected)


def test_top_percent_keeps_about_percent_of_distinct_positive_values() -> None:
    heatmap = torch.linspace(0.01, 1.0, 100, dtype=torch.float64).reshape(10, 10)
    assert int(top_percent(heatmap, 10).count_nonzero()) == 10
    assert int(top_percent(heatmap, 25).count_nonzero()) == 25
    assert int(top_percent(heatmap, 100).count_nonzero()) == 100


def test_top_percent_position_is_exact_in_decimals() -> None:
    # n - 1 = 1000 and q = 0.667: the position 667 is an integer, so s[667] itself is kept.
    heatmap = torch.arange(1, 1002, dtype=torch.float64).reshape(7, 143) / 1001
    assert int(top_percent(heatmap, 33.3).count_nonzero()) == 1001 - 667


def test_top_percent_keeps_every_tie_at_the_threshold() -> None:
    heatmap = torch.tensor([[0.5, 0.5], [0.5, 0.1]])
    result = top_percent(heatmap, 25)
    torch.testing.assert_close(result, torch.tensor([[0.5, 0.5], [0.5, 0.0]]))


def test_top_percent_constant_map_keeps_everything() -> None:
    heatmap = torch.full((2, 4, 4), 0.3)
    assert torch.equal(top_percent(heatmap, 1), heatmap)


def test_top_percent_handles_more_than_quantile_limit() -> None:
    # torch.quantile refuses inputs above 2**24 elements; sorting per map does not.
    heatmap = torch.rand(257, 256, 256, generator=torch.Generator().manual_seed(1))
    assert heatmap.numel() > 2**24
    kept = coverage(top_percent(heatmap, 10))
    assert kept.shape == (257,)
    assert torch.all((kept - 0.1).abs() < 1e-3)


# --- dynamic -------------------------------------------------------------------------------------


DYNAMIC_SETTINGS = [
    (0.05, 0.5, 0.05),
    (0.2, 0.5, 0.05),
    (0.01, 0.9, 0.1),
    (0.3, 0.3, 0.07),
    (0.5, 0.5, 0.05),
    (1.0, 0.5, 0.05),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("min_coverage", "max_threshold", "step"), DYNAMIC_SETTINGS)
def test_dynamic_matches_literal_loop(
    dtype: torch.dtype, min_coverage: float, max_threshold: float, step: float
) -> None:
    heatmap = random_maps(dtype, batch=12)
    result = dynamic(heatmap, min_coverage, max_threshold, step)
    values = dynamic_threshold_values(heatmap, min_coverage, max_threshold, step)
    references = [reference_dynamic(m, min_coverage, max_threshold, step) for m in heatmap.numpy()]
    np.testing.assert_array_equal(result.numpy(), np.stack([r[0] for r in references]))
    expected_values = np.array([r[1] for r in references]).astype(values.numpy().dtype)
    np.testing.assert_array_equal(values.numpy(), expected_values)


def test_dynamic_reference_batch_exercises_several_thresholds() -> None:
    heatmap = random_maps(torch.float64, batch=12)
    chosen = {reference_dynamic(m, 0.2, 0.5, 0.05)[1] for m in heatmap.numpy()}
    assert 0.0 in chosen
    assert len(chosen) >= 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_grid_has_no_float_drift(dtype: torch.dtype) -> None:
    # 0.5 - 0.05 - 0.05 - 0.05 is 0.35000000000000003 in floats; the grid value is 0.35.
    heatmap = torch.full((4, 5), 0.32, dtype=dtype)
    heatmap[0, 0] = 0.35
    value = dynamic_threshold_values(heatmap, 0.05)
    assert value.shape == ()
    assert value.item() == torch.tensor(0.35, dtype=dtype).item()
    result = dynamic(heatmap, 0.05)
    assert int(result.count_nonzero()) == 1
    assert result[0, 0].item() == heatmap[0, 0].item()


def test_dynamic_grid_stops_above_zero() -> None:
    # Repeated subtraction leaves a stray candidate 6.9e-17; the exact grid ends at 0.05.
    assert threshold._grid(0.5, 0.05) == pytest.approx([0.5 - 0.05 * i for i in range(10)])
    assert len(threshold._grid(0.5, 0.05)) == 10
    assert len(threshold._grid(0.3, 0.07)) == 5
    heatmap = torch.full((3, 3), 1e-3, dtype=torch.float64)
    assert dynamic_threshold_values(heatmap).item() == 0.0
    assert torch.equal(dynamic(heatmap), heatmap)


def test_dynamic_candidate_rounding_to_zero_keeps_all_nonzero() -> None:
    # 1e-8 is below the smallest float16 subnormal, so the only candidate rounds to 0.
    heatmap = torch.tensor([[0.0, 0.5], [0.25, 0.0]], dtype=torch.float16)
    assert dynamic_threshold_values(heatmap, 0.5, max_threshold=1e-8, step=1e-8).item() == 0.0
    assert torch.equal(dynamic(heatmap, 0.75, max_threshold=1e-8, step=1e-8), heatmap)
    assert dynamic_threshold_values(heatmap.double(), 0.5, 1e-8, 1e-8).item() == 1e-8


def test_dynamic_picks_largest_threshold_with_enough_coverage() -> None:
    heatmap = torch.tensor([[0.9, 0.6, 0.42], [0.3, 0.2, 0.0]], dtype=torch.float64)
    # Coverage 1/3 needs 2 pixels, 1/2 needs 3, 5/6 needs 5; the zero pixel is never kept.
    assert dynamic_threshold_values(heatmap, 1 / 3).item() == 0.5
    assert dynamic_threshold_values(heatmap, 0.5).item() == pytest.approx(0.4)
    assert dynamic_threshold_values(heatmap, 5 / 6).item() == pytest.approx(0.2)
    assert dynamic_threshold_values(heatmap, 1.0).item() == 0.0
    np.testing.assert_array_equal(
        dynamic(heatmap, 0.5).numpy(), [[0.9, 0.6, 0.42], [0.0, 0.0, 0.0]]
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_coverage_count_is_exact(dtype: torch.dtype) -> None:
    # 0.07 * 100 is 7.000000000000001 in floats, yet 7 of 100 pixels reach coverage 0.07.
    heatmap = torch.full((10, 10), 0.3, dtype=dtype)
    heatmap.view(-1)[:7] = 0.45
    assert dynamic_threshold_values(heatmap, 0.07).item() == pytest.approx(0.45)
    assert coverage(dynamic(heatmap, 0.07)).item() == pytest.approx(0.07)
    # Just above 31/63, 31 of 63 pixels are not enough: 32 are needed.
    min_coverage = float(np.nextafter(31 / 63, 1.0))
    heatmap = torch.full((7, 9), 0.1, dtype=dtype)
    heatmap.view(-1)[:31] = 0.45
    heatmap.view(-1)[31] = 0.4
    value = dynamic_threshold_values(heatmap, min_coverage).item()
    assert value == pytest.approx(0.4)
    assert value == pytest.approx(reference_dynamic(heatmap.numpy(), min_coverage, 0.5, 0.05)[1])


def test_dynamic_meets_min_coverage_when_threshold_positive() -> None:
    heatmap = random_maps(torch.float32, batch=12)
    values = dynamic_threshold_values(heatmap, 0.2)
    kept = coverage(dynamic(heatmap, 0.2)).double()
    positive = values > 0
    assert positive.any()
    assert torch.all(kept[positive] >= 0.2 - 1e-7)


# --- mass ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.5, 0.8, 0.95, 1.0])
def test_mass_matches_literal_loop(dtype: torch.dtype, fraction: float) -> None:
    heatmap = random_maps(dtype)
    result = mass(heatmap, fraction)
    expected = per_map(lambda m: reference_mass(m, fraction), heatmap)
    np.testing.assert_array_equal(result.numpy(), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mass_holds_fraction_and_is_smallest(dtype: torch.dtype) -> None:
    heatmap = random_maps(dtype, batch=8)[2:]
    result = mass(heatmap, 0.6).double()
    total = heatmap.double().sum(dim=(1, 2))
    kept = result.sum(dim=(1, 2))
    assert torch.all(kept >= 0.6 * total * (1 - 1e-6))
    smallest_kept = torch.where(result > 0, result, torch.inf).amin(dim=(1, 2))
    assert torch.all(kept - smallest_kept < 0.6 * total)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("values", "fraction", "kept"),
    [
        ((0.9, 0.3, 0.2, 0.1), 0.8, 2),
        ((0.5, 0.4, 0.2, 0.1), 0.75, 2),
        ((0.4, 0.3, 0.2, 0.1), 0.4, 1),
    ],
)
def test_mass_exact_decimal_split(
    dtype: torch.dtype, values: tuple[float, ...], fraction: float, kept: int
) -> None:
    # In floats the top `kept` values sum to slightly less than fraction * total.
    heatmap = torch.tensor(values, dtype=dtype).reshape(2, 2)
    expected = heatmap.clone()
    expected.view(-1)[kept:] = 0
    assert torch.equal(mass(heatmap, fraction), expected)


def test_mass_keeps_ties_at_boundary_whatever_the_order() -> None:
    values = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.2, 0.1, 0.0, 0.0, 0.0], dtype=torch.float64)
    permutation = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    heatmap = values.reshape(3, 3)
    shuffled = values[permutation].reshape(3, 3)
    expected = torch.where(heatmap == 0.5, heatmap, 0.0)
    assert torch.equal(mass(heatmap, 0.3), expected)
    assert torch.equal(mass(shuffled, 0.3), torch.where(shuffled == 0.5, shuffled, 0.0))


def test_mass_constant_map_keeps_everything() -> None:
    heatmap = torch.full((3, 5), 0.25)
    assert torch.equal(mass(heatmap, 0.1), heatmap)


# --- multi_level ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("levels", [(0.25, 0.5, 0.75), (0.1,), (0.2, 0.4, 0.6, 0.8, 1.0)])
def test_multi_level_matches_literal_count(dtype: torch.dtype, levels: tuple[float, ...]) -> None:
    heatmap = random_maps(dtype)
    result = multi_level(heatmap, levels)
    assert result.dtype == torch.int64
    expected = per_map(lambda m: reference_multi_level(m, levels), heatmap)
    np.testing.assert_array_equal(result.numpy(), expected)
    assert result.max().item() == len(levels) or levels[-1] == 1.0


def test_multi_level_ties_reach_the_level() -> None:
    heatmap = torch.tensor([[0.0, 0.25, 0.3], [0.5, 0.75, 1.0]])
    np.testing.assert_array_equal(
        multi_level(heatmap, [0.25, 0.5, 0.75]).numpy(), [[0, 1, 1], [2, 3, 3]]
    )


@pytest.mark.parametrize(
    "levels",
    [(), (0.5, 0.5), (0.6, 0.4), (0.0, 0.5), (0.5, 1.5), (-0.1,), (0.2, float("nan"))],
)
def test_multi_level_rejects_bad_levels(levels: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="levels"):
        multi_level(torch.rand(3, 3), levels)


@pytest.mark.parametrize("levels", ["0.5", 0.5, (0.2, "0.5"), (True,)])
def test_multi_level_rejects_non_numbers(levels: object) -> None:
    with pytest.raises(TypeError, match="levels"):
        multi_level(torch.rand(3, 3), levels)  # type: ignore[arg-type]


# --- coverage ------------------------------------------------------------------------------------


def test_coverage_of_float_bool_and_int_maps() -> None:
    heatmap = torch.tensor([[[0.0, 0.2], [0.3, 0.0]], [[1.0, 1.0], [1.0, 0.5]]])
    expected = torch.tensor([0.5, 1.0])
    for x in (heatmap, heatmap > 0, multi_level(heatmap, [0.1]), heatmap.to(torch.int32)):
        result = coverage(x)
        assert result.dtype == torch.float32
        assert result.shape == (2,)
    assert torch.equal(coverage(heatmap), expected)
    assert torch.equal(coverage(heatmap > 0.25), torch.tensor([0.25, 1.0]))
    assert torch.equal(coverage(multi_level(heatmap, [0.6])), torch.tensor([0.0, 0.75]))
    assert torch.equal(coverage(heatmap.to(torch.int32)), torch.tensor([0.0, 0.75]))


def test_coverage_of_single_map_is_zero_dimensional() -> None:
    result = coverage(torch.tensor([[0.0, 0.0, 1.0]]))
    assert result.shape == ()
    assert result.item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("x", [torch.zeros(3), torch.zeros(1, 1, 2, 2), torch.zeros(2, 0, 3)])
def test_coverage_rejects_bad_shapes(x: Tensor) -> None:
    with pytest.raises(ValueError, match="x must"):
        coverage(x)


def test_coverage_rejects_non_tensor() -> None:
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        coverage(np.zeros((2, 2)))  # type: ignore[arg-type]


# --- shared behaviour of every threshold ---------------------------------------------------------


THRESHOLDS: dict[str, Callable[[Tensor], Tensor]] = {
    "top_percent": lambda h: top_percent(h, 10),
    "dynamic": lambda h: dynamic(h, 0.1),
    "mass": lambda h: mass(h, 0.5),
}


@pytest.mark.parametrize("name", list(THRESHOLDS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_map_stays_zero(name: str, dtype: torch.dtype) -> None:
    heatmap = torch.zeros(2, 4, 5, dtype=dtype)
    result = THRESHOLDS[name](heatmap)
    assert torch.equal(result, heatmap)
    assert torch.equal(coverage(result), torch.zeros(2))


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_single_nonzero_pixel_is_kept_alone(name: str) -> None:
    heatmap = torch.zeros(6, 6, dtype=torch.float64)
    heatmap[2, 3] = 0.4
    result = THRESHOLDS[name](heatmap)
    assert torch.equal(result, heatmap)
    assert coverage(result).item() == pytest.approx(1 / 36)


@pytest.mark.parametrize("name", list(THRESHOLDS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_equals_per_map(name: str, dtype: torch.dtype) -> None:
    function = THRESHOLDS[name]
    heatmap = random_maps(dtype, batch=8)
    batched = function(heatmap)
    singles = [function(m) for m in heatmap]
    assert all(single.shape == (7, 9) for single in singles)
    assert torch.equal(batched, torch.stack(singles))
    assert batched.count_nonzero() > 0


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_kept_values_unchanged_and_input_untouched(name: str) -> None:
    heatmap = random_maps(torch.float32)
    original = heatmap.clone()
    result = THRESHOLDS[name](heatmap)
    assert torch.equal(heatmap, original)
    kept = result != 0
    assert torch.equal(result[kept], heatmap[kept])
    assert 0 < int(kept.sum()) < int((heatmap > 0).sum())


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_output_device_and_dtype(device: str, dtype: torch.dtype) -> None:
    heatmap = random_maps(torch.float32).to(device=device, dtype=dtype)
    for function in THRESHOLDS.values():
        result = function(heatmap)
        assert result.device == heatmap.device
        assert result.dtype == dtype
        assert result.shape == heatmap.shape
    values = dynamic_threshold_values(heatmap)
    assert (values.device, values.dtype, values.shape) == (heatmap.device, dtype, (6,))
    levels = multi_level(heatmap, (0.5,))
    assert (levels.device, levels.dtype) == (heatmap.device, torch.int64)
    ratio = coverage(heatmap)
    assert (ratio.device, ratio.dtype) == (heatmap.device, torch.float32)


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_empty_batch(name: str) -> None:
    heatmap = torch.zeros(0, 3, 4)
    assert THRESHOLDS[name](heatmap).shape == (0, 3, 4)


# --- bad input -----------------------------------------------------------------------------------


FUNCTIONS: dict[str, Callable[[Tensor], object]] = {
    **THRESHOLDS,
    "dynamic_threshold_values": dynamic_threshold_values,
    "multi_level": lambda h: multi_level(h, (0.5,)),
    "none": from_spec("none"),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_rejects_non_tensor(name: str) -> None:
    with pytest.raises(TypeError, match=r"heatmap must be a torch\.Tensor"):
        FUNCTIONS[name](np.zeros((3, 3)))  # type: ignore[arg-type]


BAD_HEATMAPS = {
    "integer": (torch.ones(3, 3, dtype=torch.int64), "floating dtype"),
    "bool": (torch.ones(3, 3, dtype=torch.bool), "floating dtype"),
    "rank 1": (torch.ones(9), "shape"),
    "rank 4": (torch.ones(1, 1, 3, 3), "shape"),
    "empty": (torch.ones(2, 0, 3), "H >= 1"),
    "nan": (torch.tensor([[0.5, float("nan")]]), "NaN"),
    "inf": (torch.tensor([[0.5, float("inf")]]), "infinite"),
    "negative": (torch.tensor([[0.5, -0.1]]), ">= 0"),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("case", list(BAD_HEATMAPS))
def test_rejects_bad_heatmap(name: str, case: str) -> None:
    heatmap, message = BAD_HEATMAPS[case]
    with pytest.raises(ValueError, match="heatmap") as info:
        FUNCTIONS[name](heatmap)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda h: top_percent(h, 0), "percent"),
        (lambda h: top_percent(h, 100.5), "percent"),
        (lambda h: top_percent(h, float("nan")), "percent"),
        (lambda h: mass(h, 0), "fraction"),
        (lambda h: mass(h, 1.01), "fraction"),
        (lambda h: dynamic(h, 0), "min_coverage"),
        (lambda h: dynamic(h, 1.5), "min_coverage"),
        (lambda h: dynamic(h, 0.1, max_threshold=0), "max_threshold"),
        (lambda h: dynamic(h, 0.1, step=-0.1), "step"),
        (lambda h: dynamic(h, 0.1, step=float("inf")), "step"),
        (lambda h: dynamic_threshold_values(h, 0.1, step=1e-7), "step"),
    ],
)
def test_rejects_bad_parameters(call: Callable[[Tensor], Tensor], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call(torch.rand(4, 4))


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda h: top_percent(h, "10"), "percent"),  # type: ignore[arg-type]
        (lambda h: top_percent(h, True), "percent"),
        (lambda h: mass(h, None), "fraction"),  # type: ignore[arg-type]
        (lambda h: dynamic(h, "0.1"), "min_coverage"),  # type: ignore[arg-type]
    ],
)
def test_rejects_non_number_parameters(call: Callable[[Tensor], Tensor], argument: str) -> None:
    with pytest.raises(TypeError, match=argument):
        call(torch.rand(4, 4))


def test_errors_are_leanxai_errors() -> None:
    from leanxai.core.errors import LeanXAIError

    with pytest.raises(LeanXAIError):
        top_percent(torch.tensor([[-1.0]]), 10)
    with pytest.raises(LeanXAIError):
        from_spec("top:0")


# --- specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("top:10", lambda h: top_percent(h, 10)),
        ("top:2.5", lambda h: top_percent(h, 2.5)),
        (" TOP : 10 ", lambda h: top_percent(h, 10)),
        ("dynamic:0.2", lambda h: dynamic(h, 0.2)),
        ("dynamic", lambda h: dynamic(h, 0.05)),
        ("mass:0.8", lambda h: mass(h, 0.8)),
    ],
)
def test_from_spec_builds_the_named_threshold(
    spec: str, expected: Callable[[Tensor], Tensor]
) -> None:
    heatmap = random_maps(torch.float32)
    result = from_spec(spec)(heatmap)
    assert torch.equal(result, expected(heatmap))
    assert not torch.equal(result, heatmap)


def test_from_spec_none_is_identity() -> None:
    heatmap = random_maps(torch.float32)
    assert from_spec("none")(heatmap) is heatmap
    assert from_spec(" None ")(heatmap) is heatmap


@pytest.mark.parametrize(
    "spec",
    ["", "top", "top:", "top:abc", "top:0", "top:101", "top:nan", "top:inf", "mass:1.5",
     "mass:-0.1", "dynamic:0", "dynamic:", "foo:1", "none:1", "top:10:2", "gradcam"],
)  # fmt: skip
def test_from_spec_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="threshold spec") as info:
        from_spec(spec)
    message = str(info.value)
    assert "\n" not in message
    for form in ("none", "top:P", "dynamic", "mass:F"):
        assert form in message
    with pytest.raises(ValueError, match="threshold spec"):
        spec_label(spec)


def test_from_spec_rejects_non_string() -> None:
    with pytest.raises(TypeError, match="spec must be a str"):
        from_spec(10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("none", "none"),
        ("top:10", "top10"),
        ("TOP:10.0", "top10"),
        ("top:2.5", "top2.5"),
        ("dynamic", "dynamic0.05"),
        ("dynamic:0.05", "dynamic0.05"),
        ("mass:0.8", "mass0.8"),
        ("mass:0.80", "mass0.8"),
        ("top:12.345678", "top12.345678"),
    ],
)
def test_spec_label(spec: str, label: str) -> None:
    assert spec_label(spec) == label


def test_all_names_exported() -> None:
    assert set(threshold.__all__) == {
        "coverage",
        "dynamic",
        "dynamic_threshold_values",
        "from_spec",
        "mass",
        "multi_level",
        "spec_label",
        "temporal_windows",
        "top_k",
        "top_percent",
    }
    assert all(callable(getattr(threshold, name)) for name in threshold.__all__)
