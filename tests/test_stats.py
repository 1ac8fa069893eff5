"""Tests of leanxai.evaluate.stats against scipy and hand computations."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from leanxai.core.errors import InputError
from leanxai.evaluate.stats import PairedTest, format_p, paired_test

A = [0.62, 0.71, 0.55, 0.80, 0.67, 0.59, 0.74, 0.69, 0.58, 0.77, 0.64, 0.70]
B = [0.60, 0.65, 0.57, 0.72, 0.61, 0.60, 0.69, 0.62, 0.55, 0.70, 0.66, 0.63]


def test_matches_scipy_on_known_data() -> None:
    result = paired_test(A, B)
    t = scipy.stats.ttest_rel(A, B)
    w = scipy.stats.wilcoxon(A, B)
    d = np.subtract(A, B)
    assert result.n == 12
    assert result.dropped == 0
    assert result.mean_a == pytest.approx(np.mean(A))
    assert result.mean_b == pytest.approx(np.mean(B))
    assert result.mean_diff == pytest.approx(d.mean())
    assert result.t == pytest.approx(t.statistic)
    assert result.t_pvalue == pytest.approx(t.pvalue)
    assert result.w == pytest.approx(w.statistic)
    assert result.w_pvalue == pytest.approx(w.pvalue)
    assert result.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    # d_z and t are tied: t = d_z * sqrt(n).
    assert result.t == pytest.approx(result.effect_size * math.sqrt(12))
    assert result.t > 0 and result.t_pvalue < 0.05


def test_tensor_array_and_list_inputs_agree() -> None:
    expected = paired_test(A, B)
    assert paired_test(np.array(A), np.array(B)) == expected
    exact = paired_test(torch.tensor(A, dtype=torch.float64), torch.tensor(B, dtype=torch.float64))
    assert exact == expected
    # float32 tensors are read as their float32 values: close, but ranks of near-ties may move.
    single = paired_test(torch.tensor(A), torch.tensor(B))
    assert (single.n, single.dropped) == (12, 0)
    assert single.t == pytest.approx(expected.t, rel=1e-4)


def test_nan_pairs_are_dropped_and_counted() -> None:
    a = [*A, math.nan, 0.5, math.nan]
    b = [*B, 0.4, math.nan, math.nan]
    result = paired_test(a, b)
    assert result.dropped == 3
    assert result.n == 12
    clean = paired_test(A, B)
    assert dataclass_values(result, "dropped") == dataclass_values(clean, "dropped")


def dataclass_values(result: PairedTest, leave_out: str) -> dict[str, float | int]:
    values = result.to_dict()
    del values[leave_out]
    return values


def test_all_differences_zero() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_test([0.3, 0.5, 0.7], [0.3, 0.5, 0.7])
    assert (result.t, result.t_pvalue, result.w, result.w_pvalue) == (0.0, 1.0, 0.0, 1.0)
    assert result.effect_size == 0.0
    assert result.mean_diff == 0.0


def test_constant_nonzero_difference() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_test([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert result.t == math.inf and result.effect_size == math.inf
    assert result.t_pvalue == 0.0
    assert result.w_pvalue == pytest.approx(scipy.stats.wilcoxon([1.0] * 5).pvalue)


@pytest.mark.parametrize(
    ("a", "b"),
    [([], []), ([1.0], [2.0]), ([1.0, math.nan, 3.0], [2.0, 1.0, math.nan])],
)
def test_fewer_than_two_pairs(a: list[float], b: list[float]) -> None:
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_test(a, b)


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="same length, got 3 and 2"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InputError, match="a must be one-dimensional"):
        paired_test([[1.0, 2.0]], [1.0, 2.0])
    with pytest.raises(InputError, match="b must not contain infinite"):
        paired_test([1.0, 2.0], [1.0, math.inf])
    with pytest.raises(TypeError, match="a must be"):
        paired_test(["x", "y"], [1.0, 2.0])


def test_to_dict_is_json_ready() -> None:
    values = paired_test(A, B).to_dict()
    assert list(values) == [
        "n",
        "mean_a",
        "mean_b",
        "mean_diff",
        "t",
        "t_pvalue",
        "w",
        "w_pvalue",
        "effect_size",
        "dropped",
    ]
    assert all(type(v) in (int, float) for v in values.values())
    assert json.loads(json.dumps(values)) == values


def test_result_is_frozen() -> None:
    result = paired_test(A, B)
    with pytest.raises(AttributeError):
        result.n = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0, "<0.001"),
        (0.00099, "<0.001"),
        (0.001, "0.001"),
        (0.0421, "0.042"),
        (0.5, "0.500"),
        (1.0, "1.000"),
        (math.nan, "nan"),
    ],
)
def test_format_p(p: float, text: str) -> None:
    assert format_p(p) == text


def test_format_p_digits() -> None:
    assert format_p(0.00042, digits=4) == "0.0004"
    assert format_p(0.00004, digits=4) == "<0.0001"
