"""Paired comparisons of two methods scored on the same inputs (``docs/METRICS.md``, Statistics).

:func:`paired_test` runs the paired t-test and the Wilcoxon signed-rank test of scipy on the
per-input scores of two methods and reports the effect size and the number of pairs;
:func:`format_p` writes a p-value for a table. scipy is imported inside :func:`paired_test` (it
is in the ``all`` and ``dev`` extras).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from leanxai.core.errors import InputError, InputTypeError

__all__ = ["PairedTest", "format_p", "paired_test"]


@dataclass(frozen=True)
class PairedTest:
    """The result of :func:`paired_test`; every field is a plain Python number.

    Attributes
    ----------
    n
        Number of pairs tested (after dropping pairs with a NaN).
    mean_a, mean_b
        Means of ``a`` and ``b`` over those pairs.
    mean_diff
        Mean of ``a - b``.
    t, t_pvalue
        Statistic and two-sided p-value of the paired t-test (:func:`scipy.stats.ttest_rel`).
    w, w_pvalue
        Statistic and two-sided p-value of the Wilcoxon signed-rank test
        (:func:`scipy.stats.wilcoxon`, its defaults: zero differences dropped).
    effect_size
        Cohen's ``d_z = mean(a - b) / std(a - b, ddof=1)``.
    dropped
        Number of pairs dropped because ``a`` or ``b`` was NaN.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    t: float
    t_pvalue: float
    w: float
    w_pvalue: float
    effect_size: float
    dropped: int

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields as a flat ``dict`` for a CSV row or JSON."""
        return dataclasses.asdict(self)


def _vector(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        values = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputTypeError(
            f"{name} must be a tensor, array or list of numbers ({error})"
        ) from None
    if values.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {values.shape}")
    if np.isinf(values).any():
        raise InputError(f"{name} must not contain infinite values")
    return values


def paired_test(a: object, b: object) -> PairedTest:
    """Test whether paired scores ``a`` and ``b`` differ: paired t-test and Wilcoxon.

    Parameters
    ----------
    a, b : Tensor, ndarray or sequence of float
        One-dimensional scores of two methods on the same inputs, in the same order, of equal
        length. A pair with NaN in ``a`` or ``b`` is dropped and counted in ``dropped``.

    Returns
    -------
    PairedTest
        The number of pairs, the means, both tests and the effect size.

    Raises
    ------
    TypeError
        If ``a`` or ``b`` cannot be read as numbers.
    ValueError
        If they are not one-dimensional, differ in length, hold infinite values, or fewer than 2
        pairs remain after dropping NaN.

    Notes
    -----
    Degenerate differences, where scipy would warn or return NaN, are settled here:

    - all differences zero: ``t = w = 0``, both p-values 1 and effect size 0 (no evidence of
      any difference);
    - all differences equal and nonzero: ``t`` and the effect size are ``±inf`` and the t-test
      p-value is 0, the limit of the t-test as the spread vanishes (scipy's own result, without
      its precision warning); the Wilcoxon test is computed as usual.
    """
    import scipy.stats

    x, y = _vector(a, "a"), _vector(b, "b")
    if x.shape != y.shape:
        raise InputError(f"a and b must have the same length, got {x.shape[0]} and {y.shape[0]}")
    keep = ~(np.isnan(x) | np.isnan(y))
    dropped = int((~keep).sum())
    x, y = x[keep], y[keep]
    n = int(x.shape[0])
    if n < 2:
        raise InputError(
            f"paired_test needs at least 2 pairs without NaN, got {n} "
            f"({dropped} of {n + dropped} dropped for NaN)"
        )
    diff = x - y
    mean_diff = float(diff.mean())
    spread = float(diff.std(ddof=1))

    if not diff.any():
        t, t_pvalue, w, w_pvalue, effect = 0.0, 1.0, 0.0, 1.0, 0.0
    else:
        wilcoxon = scipy.stats.wilcoxon(x, y)
        w, w_pvalue = float(wilcoxon.statistic), float(wilcoxon.pvalue)
        if spread == 0.0:
            t = effect = math.copysign(math.inf, mean_diff)
            t_pvalue = 0.0
        else:
            ttest = scipy.stats.ttest_rel(x, y)
            t, t_pvalue = float(ttest.statistic), float(ttest.pvalue)
            effect = mean_diff / spread
    return PairedTest(
        n=n,
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        mean_diff=mean_diff,
        t=t,
        t_pvalue=t_pvalue,
        w=w,
        w_pvalue=w_pvalue,
        effect_size=effect,
        dropped=dropped,
    )


def format_p(p: float, digits: int = 3) -> str:
    """Write a p-value for a table: ``"<0.001"`` below ``10**-digits``, else ``"0.042"``.

    NaN gives ``"nan"``.
    """
    p = float(p)
    if math.isnan(p):
        return "nan"
    floor = 10.0**-digits
    if p < floor:
        return f"<{floor:.{digits}f}"
    return f"{p:.{digits}f}"
