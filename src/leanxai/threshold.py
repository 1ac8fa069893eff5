"""Thresholds of heatmaps: keep the important part of a map, zero the rest.

Every function here is a pure, batched function of a heatmap: it takes a float tensor of shape
``(B, H, W)`` or ``(H, W)`` with values ``>= 0`` (usually each map divided by its maximum, so in
``[0, 1]``), works on the heatmap's device with vectorised torch operations only, and returns a
tensor of the same rank. The thresholding functions return the heatmap with the kept values
unchanged and every other value set to 0; a pixel of value 0 is never kept, so an all-zero map
stays all-zero.

The two thresholds of the paper are :func:`top_percent` (SimplifyGradCAM) and :func:`dynamic`
(DynamicThreshold). :func:`mass` keeps the smallest top set holding a share of the map's total
importance, :func:`multi_level` grades pixels against several levels, and :func:`coverage` measures
what a threshold kept. :func:`from_spec` turns a command-line string such as ``"top:10"`` into one
of these functions and :func:`spec_label` names it for file names.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import torch
from torch import Tensor

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError

__all__ = [
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
]

# Relative slack of `mass`: the top set may hold this share of the total less than asked, so that a
# split that is exact in decimals (0.4 + 0.3 of 1.0 for fraction 0.7) is not lost to rounding.
_MASS_RTOL = 1e-6

# Most candidate thresholds `dynamic` accepts; a finer grid is almost surely a mistaken `step`.
_MAX_GRID = 100_000

_SPEC_FORMS = "none, top:P (0 < P <= 100), dynamic[:C] (0 < C <= 1), mass:F (0 < F <= 1)"

_DEFAULT_MIN_COVERAGE = 0.05


# --- validation ---------------------------------------------------------------------------------


def _as_batch(heatmap: object, name: str = "heatmap") -> tuple[Tensor, bool]:
    """Check a heatmap and return it as ``(B, H, W)`` with whether a batch axis was added."""
    if not isinstance(heatmap, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(heatmap).__name__}")
    if not heatmap.is_floating_point():
        raise InputError(f"{name} must have a floating dtype, got {heatmap.dtype}")
    if heatmap.dim() not in (2, 3):
        raise InputError(
            f"{name} must have shape (B, H, W) or (H, W), got shape {tuple(heatmap.shape)}"
        )
    if heatmap.shape[-1] == 0 or heatmap.shape[-2] == 0:
        raise InputError(f"{name} must have H >= 1 and W >= 1, got shape {tuple(heatmap.shape)}")
    not_finite = int((~torch.isfinite(heatmap)).sum())
    if not_finite:
        raise InputError(f"{name} must be finite, got {not_finite} NaN or infinite values")
    negative = int((heatmap < 0).sum())
    if negative:
        raise InputError(
            f"{name} must be >= 0, got {negative} negative values (min {float(heatmap.min()):g})"
        )
    if heatmap.dim() == 2:
        return heatmap.unsqueeze(0), True
    return heatmap, False


def _real(value: object, name: str) -> float:
    return validate.finite_float(name, value)


def _in_unit_interval(value: object, name: str, upper: float = 1.0) -> float:
    """Return ``value`` as a float in ``(0, upper]``, or raise naming ``name``."""
    result = _real(value, name)
    if not 0.0 < result <= upper:
        raise InputError(f"{name} must be in (0, {upper:g}], got {value!r}")
    return result


def _positive(value: object, name: str) -> float:
    result = _real(value, name)
    if result <= 0.0:
        raise InputError(f"{name} must be > 0, got {value!r}")
    return result


def _keep(heatmap: Tensor, boundary: Tensor) -> Tensor:
    """Keep the values ``>= boundary`` (one per map, shape ``(B,)``) that are also ``> 0``."""
    keep = (heatmap >= boundary[:, None, None]) & (heatmap > 0)  # (B, H, W)
    return heatmap.masked_fill(~keep, 0)


def _restore(result: Tensor, squeezed: bool) -> Tensor:
    return result.squeeze(0) if squeezed else result


# --- SimplifyGradCAM ----------------------------------------------------------------------------


def top_percent(heatmap: Tensor, percent: float) -> Tensor:
    """Keep the values at or above each map's ``(100 - percent)``-th percentile.

    This is SimplifyGradCAM of the paper: the threshold of each map is the
    ``(100 - percent)``-th percentile of its ``H * W`` values, with linear interpolation between
    order statistics (the default of :func:`numpy.percentile` and :func:`torch.quantile`). Values
    ``>= threshold`` and ``> 0`` are kept, every other value is set to 0.

    Parameters
    ----------
    heatmap : Tensor
        Float tensor of shape ``(B, H, W)`` or ``(H, W)``, finite, ``>= 0``.
    percent : float
        Share of pixels to keep, in percent, in ``(0, 100]``.

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``heatmap``: kept values unchanged, the rest 0.

    Raises
    ------
    TypeError
        If ``heatmap`` is not a tensor or ``percent`` is not a real number.
    ValueError
        If ``heatmap`` is not a finite, non-negative float tensor of rank 2 or 3, or ``percent``
        is outside ``(0, 100]``.

    Notes
    -----
    Ties: every value equal to the threshold is kept, so a constant nonzero map keeps all its
    pixels and more than ``percent`` percent may be kept. Zeros are never kept, so fewer may be
    kept; an all-zero map stays all-zero. ``percent = 100`` keeps every nonzero pixel.

    With ``n = H * W`` values sorted ascending as ``s[0] <= ... <= s[n - 1]`` and
    ``q = (100 - percent) / 100``, the interpolated percentile lies in ``(s[i - 1], s[i]]`` for
    ``i = ceil(q * (n - 1))``, so ``x >= percentile`` holds exactly when ``x >= s[i]``. The index
    ``i`` is computed in exact rational arithmetic from the decimal value of ``percent`` and the
    comparison is made with ``s[i]`` itself, so no rounding of the position or of the
    interpolation can add or drop a pixel. The order
    statistic comes from :func:`torch.sort` along the flattened map, which, unlike
    :func:`torch.quantile`, has no limit on the input size.
    """
    percent = _in_unit_interval(percent, "percent", upper=100.0)
    batch, squeezed = _as_batch(heatmap)
    flat = batch.flatten(1)  # (B, n)
    n = flat.shape[1]
    position = (100 - Fraction(repr(percent))) / 100 * (n - 1)
    index = math.ceil(position)
    boundary = torch.sort(flat, dim=1).values[:, index]  # (B,)
    return _restore(_keep(batch, boundary), squeezed)


# --- DynamicThreshold ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _grid(max_threshold: float, step: float) -> tuple[float, ...]:
    """Candidate thresholds ``max_threshold - i * step > 0``, largest first.

    The arithmetic is exact on the decimal values the user wrote (``repr``), so ``0.5 - 3 * 0.05``
    is ``0.35`` and ``0.5 - 10 * 0.05`` is 0 (not a candidate), unlike repeated float subtraction.
    """
    top = Fraction(repr(max_threshold))
    delta = Fraction(repr(step))
    count = math.ceil(top / delta)
    if count > _MAX_GRID:
        raise InputError(
            f"step={step!r} gives {count} candidate thresholds below max_threshold="
            f"{max_threshold!r}; at most {_MAX_GRID} are allowed"
        )
    return tuple(float(top - i * delta) for i in range(count))


def _dynamic_thresholds(
    batch: Tensor, min_coverage: float, max_threshold: float, step: float
) -> Tensor:
    """Thresholds of :func:`dynamic_threshold_values` for a checked ``(B, H, W)`` batch."""
    min_coverage = _in_unit_interval(min_coverage, "min_coverage")
    max_threshold = _positive(max_threshold, "max_threshold")
    step = _positive(step, "step")
    flat = batch.flatten(1)  # (B, n)
    n = flat.shape[1]

    # Fewest kept pixels k with k / n >= min_coverage, in the float arithmetic of the definition.
    k = max(1, min(n, math.ceil(min_coverage * n)))
    while k > 1 and (k - 1) / n >= min_coverage:
        k -= 1
    while k < n and k / n < min_coverage:
        k += 1

    # Ascending candidates in the heatmap's dtype; one that rounds to 0 picks the fallback 0.
    grid = torch.tensor(_grid(max_threshold, step)[::-1], dtype=batch.dtype, device=batch.device)
    kth_largest = torch.sort(flat, dim=1, descending=True).values[:, k - 1].contiguous()  # (B,)
    # Candidates <= the k-th largest value keep >= k pixels; the largest of them is the threshold.
    below = torch.searchsorted(grid, kth_largest, right=True)  # (B,)
    zero = torch.zeros((), dtype=batch.dtype, device=batch.device)
    return torch.where(below > 0, grid[(below - 1).clamp(min=0)], zero)


def dynamic_threshold_values(
    heatmap: Tensor,
    min_coverage: float = _DEFAULT_MIN_COVERAGE,
    max_threshold: float = 0.5,
    step: float = 0.05,
) -> Tensor:
    """Return the threshold :func:`dynamic` picks for each map.

    The candidates are ``t_i = max_threshold - i * step`` for ``i = 0, 1, ...`` while
    ``t_i > 0``. The threshold of a map is the largest candidate ``t`` whose coverage, the share
    of the map's ``H * W`` pixels with ``x >= t`` and ``x > 0``, is ``>= min_coverage``; if no
    candidate reaches ``min_coverage`` it is 0, which keeps every nonzero pixel.

    Parameters
    ----------
    heatmap : Tensor
        Float tensor of shape ``(B, H, W)`` or ``(H, W)``, finite, ``>= 0``.
    min_coverage : float, default 0.05
        Smallest share of pixels to keep, in ``(0, 1]``.
    max_threshold : float, default 0.5
        First (largest) candidate threshold, ``> 0``.
    step : float, default 0.05
        Distance between candidates, ``> 0``.

    Returns
    -------
    Tensor
        Shape ``(B,)`` (0-d for an ``(H, W)`` heatmap), dtype and device of ``heatmap``.

    Raises
    ------
    TypeError
        If ``heatmap`` is not a tensor or a parameter is not a real number.
    ValueError
        If ``heatmap`` is invalid (see :func:`top_percent`), a parameter is out of range, or the
        grid has more than 100 000 candidates.

    Notes
    -----
    The grid is computed exactly on the decimal values of ``max_threshold`` and ``step`` (so the
    defaults give the 10 candidates 0.5, 0.45, ..., 0.05 and never a stray ``6.9e-17``), then
    each candidate is rounded to the heatmap's dtype, exactly as comparing the heatmap with a
    Python float does; a candidate that rounds to 0 means the fallback 0. Coverage is
    ``count / (H * W)`` in Python float arithmetic.

    Coverage only falls as the threshold rises, so instead of the paper's loop over candidates
    this finds, for each map, the ``k``-th largest value ``v`` (``k`` the fewest pixels that
    reach ``min_coverage``) and returns the largest candidate ``<= v``.
    """
    batch, squeezed = _as_batch(heatmap)
    return _restore(_dynamic_thresholds(batch, min_coverage, max_threshold, step), squeezed)


def dynamic(
    heatmap: Tensor,
    min_coverage: float = _DEFAULT_MIN_COVERAGE,
    max_threshold: float = 0.5,
    step: float = 0.05,
) -> Tensor:
    """Keep the values at or above a per-map threshold lowered until enough pixels are kept.

    This is DynamicThreshold of the paper, vectorised: the threshold of each map is the largest
    of ``max_threshold, max_threshold - step, ...`` (all ``> 0``) that keeps at least
    ``min_coverage`` of the map's pixels, or 0 when none does (see
    :func:`dynamic_threshold_values`, which returns the thresholds). Values ``>= threshold`` and
    ``> 0`` are kept, every other value is set to 0.

    Parameters
    ----------
    heatmap : Tensor
        Float tensor of shape ``(B, H, W)`` or ``(H, W)``, finite, ``>= 0``.
    min_coverage : float, default 0.05
        Smallest share of pixels to keep, in ``(0, 1]``.
    max_threshold : float, default 0.5
        First (largest) candidate threshold, ``> 0``.
    step : float, default 0.05
        Distance between candidates, ``> 0``.

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``heatmap``: kept values unchanged, the rest 0.

    Raises
    ------
    TypeError
        If ``heatmap`` is not a tensor or a parameter is not a real number.
    ValueError
        If ``heatmap`` or a parameter is invalid (see :func:`dynamic_threshold_values`).

    Notes
    -----
    Ties: every value equal to the chosen threshold is kept. A map whose values all lie above
    ``max_threshold`` keeps all of them. When no candidate reaches ``min_coverage`` (for
    example, too few nonzero pixels) every nonzero pixel is kept; an all-zero map stays all-zero.
    The paper's loop subtracts ``step`` in floating point, which can leave a tiny positive extra
    candidate (subtracting 0.05 ten times from 0.5 leaves ``6.9e-17``, not 0); here the grid is
    exact, see :func:`dynamic_threshold_values`.
    """
    batch, squeezed = _as_batch(heatmap)
    thresholds = _dynamic_thresholds(batch, min_coverage, max_threshold, step)  # (B,)
    return _restore(_keep(batch, thresholds), squeezed)


# --- mass ---------------------------------------------------------------------------------------


def mass(heatmap: Tensor, fraction: float) -> Tensor:
    """Keep the smallest set of top values that holds ``fraction`` of each map's total.

    The values of each map are sorted in descending order and summed cumulatively; ``k`` is the
    smallest count whose top-``k`` sum is ``>= fraction * total`` (less a relative slack of
    ``1e-6 * total`` for rounding), and the boundary ``v`` is the ``k``-th largest value. Values
    ``>= v`` and ``> 0`` are kept, every other value is set to 0.

    Parameters
    ----------
    heatmap : Tensor
        Float tensor of shape ``(B, H, W)`` or ``(H, W)``, finite, ``>= 0``.
    fraction : float
        Share of the total importance to keep, in ``(0, 1]``.

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``heatmap``: kept values unchanged, the rest 0.

    Raises
    ------
    TypeError
        If ``heatmap`` is not a tensor or ``fraction`` is not a real number.
    ValueError
        If ``heatmap`` is invalid (see :func:`top_percent`) or ``fraction`` is outside ``(0, 1]``.

    Notes
    -----
    Ties: every value equal to the boundary is kept with it, so the kept set does not depend on
    the order of equal values and may hold more than ``fraction`` of the total (a constant map
    keeps everything). ``fraction = 1`` keeps every nonzero pixel; an all-zero map stays
    all-zero. Sums are accumulated in float64 (float32 on MPS, which has no float64).
    This selection is not from the paper.
    """
    fraction = _in_unit_interval(fraction, "fraction")
    batch, squeezed = _as_batch(heatmap)
    flat = batch.flatten(1)  # (B, n)
    ordered = torch.sort(flat, dim=1, descending=True).values  # (B, n)
    accumulate = torch.float32 if flat.device.type == "mps" else torch.float64
    cumulative = ordered.to(accumulate).cumsum(dim=1)  # (B, n)
    total = cumulative[:, -1:]  # (B, 1)
    target = fraction * total - _MASS_RTOL * total
    # Cumulative sums never decrease, so those below the target are exactly the first k - 1.
    k = (cumulative < target).sum(dim=1).clamp(max=flat.shape[1] - 1)  # (B,) = k - 1
    boundary = ordered.gather(1, k[:, None]).squeeze(1)  # (B,)
    return _restore(_keep(batch, boundary), squeezed)


# --- levels and coverage ------------------------------------------------------------------------


def multi_level(heatmap: Tensor, levels: Sequence[float]) -> Tensor:
    """Grade each pixel by how many of the increasing ``levels`` it reaches.

    Parameters
    ----------
    heatmap : Tensor
        Float tensor of shape ``(B, H, W)`` or ``(H, W)``, finite, ``>= 0``.
    levels : sequence of float
        Strictly increasing thresholds in ``(0, 1]``, for example ``(0.25, 0.5, 0.75)``.

    Returns
    -------
    Tensor
        int64 tensor of the shape and device of ``heatmap``: at each pixel the number of levels
        ``l`` with ``x >= l``, from 0 (below the first level, including every zero) to
        ``len(levels)``.

    Raises
    ------
    TypeError
        If ``heatmap`` is not a tensor, ``levels`` is not a sequence or a level is not a real
        number.
    ValueError
        If ``heatmap`` is invalid (see :func:`top_percent`), ``levels`` is empty, not strictly
        increasing, or has a level outside ``(0, 1]``.

    Notes
    -----
    Ties: a value equal to a level reaches it. Levels are rounded to the heatmap's dtype before
    comparing, as comparing with a Python float does. Not from the paper.
    """
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
        raise InputTypeError(f"levels must be a sequence of floats, got {type(levels).__name__}")
    if len(levels) == 0:
        raise InputError("levels must hold at least one level, got an empty sequence")
    values = [_in_unit_interval(level, f"levels[{i}]") for i, level in enumerate(levels)]
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InputError(f"levels must be strictly increasing, got {tuple(levels)!r}")
    batch, squeezed = _as_batch(heatmap)
    grades = torch.zeros(batch.shape, dtype=torch.int64, device=batch.device)  # (B, H, W)
    for level in values:  # a handful of levels, each a vectorised comparison
        grades += batch >= level
    return _restore(grades, squeezed)


def coverage(x: Tensor) -> Tensor:
    """Return the share of nonzero elements of each map.

    Parameters
    ----------
    x : Tensor
        Tensor of shape ``(B, H, W)`` or ``(H, W)`` of any dtype: a thresholded heatmap, a bool
        mask or the output of :func:`multi_level`.

    Returns
    -------
    Tensor
        float32 tensor of shape ``(B,)`` (0-d for an ``(H, W)`` input) on the device of ``x``:
        the number of nonzero elements divided by ``H * W``, in ``[0, 1]``.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor.
    ValueError
        If ``x`` is not of rank 2 or 3 or has ``H * W = 0``.

    Notes
    -----
    NaN counts as nonzero.
    """
    if not isinstance(x, Tensor):
        raise InputTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise InputError(f"x must have shape (B, H, W) or (H, W), got shape {tuple(x.shape)}")
    pixels = x.shape[-1] * x.shape[-2]
    if pixels == 0:
        raise InputError(f"x must have H >= 1 and W >= 1, got shape {tuple(x.shape)}")
    counts = torch.count_nonzero(x, dim=(-2, -1))  # (B,) or ()
    return (counts.to(torch.float64) / pixels).to(torch.float32)


# --- command-line specs -------------------------------------------------------------------------


def _parse_spec(spec: object) -> tuple[str, float | None]:
    """Split a spec into its kind and its checked parameter (``None`` for ``"none"``)."""
    if not isinstance(spec, str):
        raise InputTypeError(f"spec must be a str, got {type(spec).__name__}")

    def bad(reason: str = "") -> InputError:
        detail = f" ({reason})" if reason else ""
        return InputError(
            f"threshold spec {spec!r} is not valid{detail}; use one of: {_SPEC_FORMS}"
        )

    kind, sep, argument = spec.strip().partition(":")
    kind = kind.strip().lower()
    argument = argument.strip()
    if kind == "none" and not sep:
        return kind, None
    if kind == "dynamic" and not sep:
        return kind, _DEFAULT_MIN_COVERAGE
    if kind not in ("top", "dynamic", "mass") or not argument:
        raise bad()
    try:
        value = float(argument)
    except ValueError:
        raise bad(f"{argument!r} is not a number") from None
    upper = 100.0 if kind == "top" else 1.0
    if not (math.isfinite(value) and 0.0 < value <= upper):
        raise bad(f"{argument} is not in (0, {upper:g}]")
    return kind, value


def from_spec(spec: str) -> Callable[[Tensor], Tensor]:
    """Return the threshold function a command-line string names.

    Parameters
    ----------
    spec : str
        One of ``"none"`` (no threshold), ``"top:P"`` (:func:`top_percent` with ``percent=P``,
        ``0 < P <= 100``), ``"dynamic"`` or ``"dynamic:C"`` (:func:`dynamic` with
        ``min_coverage=C``, ``0 < C <= 1``, default 0.05, other parameters at their defaults) or
        ``"mass:F"`` (:func:`mass` with ``fraction=F``, ``0 < F <= 1``). Case and surrounding
        spaces are ignored.

    Returns
    -------
    Callable[[Tensor], Tensor]
        A function of a heatmap. For ``"none"`` it checks the heatmap as the others do and
        returns it unchanged (the same tensor object).

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        If ``spec`` is not one of the forms above; the one-line message lists them.

    Examples
    --------
    >>> import torch
    >>> from_spec("top:50")(torch.tensor([[0.1, 0.4], [0.2, 0.8]]))
    tensor([[0.0000, 0.4000],
            [0.0000, 0.8000]])
    """
    kind, value = _parse_spec(spec)
    chosen: Callable[[Tensor], Tensor]
    if value is None:

        def chosen(heatmap: Tensor) -> Tensor:
            _as_batch(heatmap)
            return heatmap

    elif kind == "top":
        chosen = functools.partial(top_percent, percent=value)
    elif kind == "dynamic":
        chosen = functools.partial(dynamic, min_coverage=value)
    else:
        chosen = functools.partial(mass, fraction=value)
    return chosen


def spec_label(spec: str) -> str:
    """Return a short name of a threshold spec, fit for file names.

    The label is the kind followed by the parameter in its shortest exact decimal form (Python's
    ``repr`` without a trailing ``.0``), so equal specs get equal labels and different ones
    different labels: ``"top:10"`` and ``"TOP:10.0"`` give ``"top10"``, ``"dynamic"`` and
    ``"dynamic:0.05"`` give ``"dynamic0.05"``, ``"mass:0.8"`` gives ``"mass0.8"`` and ``"none"``
    gives ``"none"``.

    Parameters
    ----------
    spec : str
        A spec accepted by :func:`from_spec`.

    Returns
    -------
    str
        Letters, digits, ``.``, ``-`` and ``+`` only.

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        If ``spec`` is not valid (see :func:`from_spec`).
    """
    kind, value = _parse_spec(spec)
    if value is None:
        return kind
    text = repr(value)
    return f"{kind}{text.removesuffix('.0')}"


# --- time ---------------------------------------------------------------------------------------


def temporal_windows(
    time_map: Tensor, percent: float, min_run: int = 1, *, mask: Tensor | None = None
) -> Tensor:
    """Keep the top steps of each time map, then close the gaps shorter than ``min_run``.

    The ``k = ceil(percent / 100 * n)`` steps with the highest values are kept (``n`` the
    number of valid steps; ties go to the earlier step; a step of value 0 is never kept). A gap
    between two kept steps, a run of unkept valid steps, is then filled when it is shorter than
    ``min_run`` steps, so the kept region is a few contiguous windows rather than scattered
    steps. Steps outside ``mask`` are never kept, and never filled.

    Parameters
    ----------
    time_map : Tensor
        ``(B, T)`` or ``(T,)`` float, finite, ``>= 0``.
    percent : float
        Share of the valid steps to keep before closing gaps, in ``(0, 100]``.
    min_run : int
        Gaps of fewer than ``min_run`` steps are closed (1: none is).
    mask : Tensor, optional
        ``(B, T)`` or ``(T,)`` bool, true at valid steps.

    Returns
    -------
    Tensor
        bool, the shape of ``time_map``: true at kept steps.
    """
    percent = _in_unit_interval(percent, "percent", upper=100.0)
    min_run = validate.positive_int("min_run", min_run)
    if not isinstance(time_map, Tensor):
        raise InputTypeError(f"time_map must be a torch.Tensor, got {type(time_map).__name__}")
    if time_map.dim() not in (1, 2):
        raise InputError(f"time_map must have shape (B, T) or (T,), got {tuple(time_map.shape)}")
    batch, _ = _as_batch(
        time_map[..., None] if time_map.dim() == 2 else time_map[:, None], "time_map"
    )
    values = batch[..., 0]  # (B, T)
    steps = values.shape[1]
    if mask is None:
        valid = torch.ones_like(values, dtype=torch.bool)
    else:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise InputTypeError("mask must be a bool torch.Tensor")
        if tuple(mask.shape) != tuple(time_map.shape):
            raise InputError(
                f"mask must have the shape of time_map {tuple(time_map.shape)}, got "
                f"{tuple(mask.shape)}"
            )
        valid = mask.reshape(values.shape).to(values.device)
    counts = valid.sum(dim=1)  # (B,)
    k = torch.ceil(counts.to(torch.float64) * (percent / 100)).to(torch.int64)  # (B,)
    position = torch.arange(steps, device=values.device)
    # Rank by value (descending), earlier step first among ties; invalid steps last.
    ranked = torch.where(valid, values, torch.full_like(values, -1.0))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (B, T)
    rank = torch.empty_like(order).scatter_(1, order, position.expand_as(order))
    kept = (rank < k[:, None]) & valid & (values > 0)  # (B, T)
    if min_run > 1:
        marked = torch.where(kept, position, torch.full_like(position, -1).expand_as(kept))
        previous = marked.cummax(dim=1).values  # last kept step at or before t, -1: none
        flipped = torch.where(kept, steps - 1 - position, torch.full_like(position, -1))
        following = steps - 1 - flipped.flip(1).cummax(dim=1).values.flip(1)  # T: none
        gap = following - previous - 1
        closable = (previous >= 0) & (following < steps) & (gap < min_run)
        kept = kept | (closable & valid)
    return kept[0] if time_map.dim() == 1 else kept


# --- tokens -------------------------------------------------------------------------------------


def top_k(values: Tensor, k: int, *, mask: Tensor | None = None) -> Tensor:
    """Keep the ``k`` highest positive values of each row (tokens, steps), within ``mask``.

    The ranking is the one of :func:`temporal_windows` (ties go to the earlier position; a value
    of 0 is never kept, and positions outside ``mask`` never are), with a count instead of a
    share: ``k`` of them, or all valid ones when a row has fewer.

    Parameters
    ----------
    values : Tensor
        ``(B, T)`` or ``(T,)`` float, finite, ``>= 0``.
    k : int
        How many to keep per row, at least 1.
    mask : Tensor, optional
        ``(B, T)`` or ``(T,)`` bool, true at valid positions.

    Returns
    -------
    Tensor
        bool, the shape of ``values``: true at kept positions.
    """
    k = validate.positive_int("k", k)
    if not isinstance(values, Tensor):
        raise InputTypeError(f"values must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() not in (1, 2):
        raise InputError(f"values must have shape (B, T) or (T,), got {tuple(values.shape)}")
    batch, _ = _as_batch(values[..., None] if values.dim() == 2 else values[:, None], "values")
    rows = batch[..., 0]  # (B, T)
    steps = rows.shape[1]
    if mask is None:
        valid = torch.ones_like(rows, dtype=torch.bool)
    else:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise InputTypeError("mask must be a bool torch.Tensor")
        if tuple(mask.shape) != tuple(values.shape):
            raise InputError(
                f"mask must have the shape of values {tuple(values.shape)}, got {tuple(mask.shape)}"
            )
        valid = mask.reshape(rows.shape).to(rows.device)
    # Rank by value (descending), earlier position first among ties; invalid positions last.
    ranked = torch.where(valid, rows, torch.full_like(rows, -1.0))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (B, T)
    position = torch.arange(steps, device=rows.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, position)
    kept = (rank < k) & valid & (rows > 0)
    return kept[0] if values.dim() == 1 else kept
