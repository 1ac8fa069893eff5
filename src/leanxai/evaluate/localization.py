"""Localisation against ground truth: overlap, boundary agreement, pointing game, PR curves.

Every function takes a batch of ``(B, H, W)`` maps (an ``(H, W)`` map is a batch of one and gives
results of shape ``(1,)``), works on the inputs' device with vectorised torch operations, and
returns per-sample results. The definitions follow ``docs/METRICS.md``:

- :func:`localization` compares a kept region ``K`` (a thresholded heatmap) with a binary mask
  ``M``: IoU, Dice, precision, recall and boundary F1.
- :func:`pointing_game` asks whether the heatmap's maximum lies on (or near) the mask.
- :func:`pr_curve` sweeps every threshold of the heatmap against the mask and reports the average
  precision with an interpolated curve for plotting.

A sample whose mask is empty cannot be localised: it is excluded (``valid`` is ``False`` and its
metrics are NaN), never scored as a success or a failure.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from leanxai.core.errors import InputError, InputTypeError

__all__ = ["PRCurve", "PointingGame", "localization", "pointing_game", "pr_curve"]

_GRID_POINTS = 101


# --- validation ---------------------------------------------------------------------------------


def _check_rank(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise InputError(f"{name} must have shape (B, H, W) or (H, W), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise InputError(f"{name} must have H >= 1 and W >= 1, got shape {tuple(x.shape)}")
    return x if x.dim() == 3 else x.unsqueeze(0)


def _binary(x: object, name: str) -> Tensor:
    """Check a binary map (bool, or numbers that are all 0 or 1) and return it as bool (B, H, W)."""
    batch = _check_rank(x, name)
    if batch.dtype == torch.bool:
        return batch
    if batch.is_complex():
        raise InputError(f"{name} must be binary (bool or 0/1), got dtype {batch.dtype}")
    if batch.is_floating_point():
        nan = int(torch.isnan(batch).sum())
        if nan:
            raise InputError(f"{name} must not contain NaN, got {nan} NaN values")
    if batch.numel() and not bool(((batch == 0) | (batch == 1)).all()):
        low, high = float(batch.min()), float(batch.max())
        raise InputError(f"{name} must be binary (bool or 0/1), got values in [{low:g}, {high:g}]")
    return batch != 0


def _heatmap(x: object, name: str = "heatmap") -> Tensor:
    batch = _check_rank(x, name)
    if not batch.is_floating_point():
        raise InputError(f"{name} must have a floating dtype, got {batch.dtype}")
    not_finite = int((~torch.isfinite(batch)).sum())
    if not_finite:
        raise InputError(f"{name} must be finite, got {not_finite} NaN or infinite values")
    return batch


def _same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise InputError(
            f"{name_a} and {name_b} must have the same shape, got {name_a} {tuple(a.shape)} "
            f"and {name_b} {tuple(b.shape)}"
        )


def _tolerance(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(
            f"tolerance must be a real number, got {type(value).__name__} {value!r}"
        )
    result = float(value)
    if not math.isfinite(result) or result < 0:
        raise InputError(f"tolerance must be a finite number >= 0, got {value!r}")
    return result


# --- helpers ------------------------------------------------------------------------------------


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` in float64 with ``0 / 0 := 0``."""
    num, den = num.to(torch.float64), den.to(torch.float64)
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def _f1(precision: Tensor, recall: Tensor) -> Tensor:
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-300), 0.0)


def _boundary(region: Tensor) -> Tensor:
    """Pixels of ``region`` ``(B, H, W)`` with a 4-neighbour outside it (replicate padding)."""
    up = torch.cat([region[:, :1], region[:, :-1]], dim=1)
    down = torch.cat([region[:, 1:], region[:, -1:]], dim=1)
    left = torch.cat([region[:, :, :1], region[:, :, :-1]], dim=2)
    right = torch.cat([region[:, :, 1:], region[:, :, -1:]], dim=2)
    return region & ~(up & down & left & right)


def _near(maps: Tensor, tolerance: float) -> Tensor:
    """Pixels within Euclidean distance ``tolerance`` of a True pixel of ``maps`` ``(N, H, W)``.

    A dilation with a disk: a convolution of the 0/1 map with the disk's indicator. Products and
    sums of 0/1 values are exact in float32 (and in TF32), so ``> 0.5`` is an exact test.
    """
    height, width = maps.shape[-2:]
    # Offsets beyond the image's extent never matter; this bounds the kernel for a huge tolerance.
    radius = min(math.floor(tolerance), max(height, width) - 1)
    if radius == 0:
        return maps
    offsets = torch.arange(-radius, radius + 1, device=maps.device)
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2  # (k, k) int64, exact
    disk = (squared <= tolerance**2).to(torch.float32)[None, None]  # (1, 1, k, k)
    counts = F.conv2d(maps[:, None].to(torch.float32), disk, padding=radius)  # (N, 1, H, W)
    return counts[:, 0] > 0.5


# --- overlap and boundary -----------------------------------------------------------------------


def localization(kept: Tensor, mask: Tensor, tolerance: float = 2) -> dict[str, Tensor]:
    """Compare kept regions with ground-truth masks: IoU, Dice, precision, recall, boundary F1.

    With ``K`` the kept region and ``M`` the mask of one sample (``docs/METRICS.md``):
    ``IoU = |K ∩ M| / |K ∪ M|``, ``Dice = 2 |K ∩ M| / (|K| + |M|)``,
    ``precision = |K ∩ M| / |K|``, ``recall = |K ∩ M| / |M|``, and boundary F1, the F1 score of
    the boundary pixels of ``K`` and ``M`` matched within ``tolerance`` pixels.

    Parameters
    ----------
    kept : Tensor
        ``(B, H, W)`` or ``(H, W)`` binary region: bool, or numbers that are all 0 or 1 (for
        example ``top_percent(heatmap, 10) > 0``).
    mask : Tensor
        Ground truth, binary, of the same shape as ``kept``.
    tolerance : float, default 2
        Largest Euclidean distance, in pixels, at which two boundary pixels match; ``>= 0``.

    Returns
    -------
    dict of str to Tensor
        ``"iou"``, ``"dice"``, ``"precision"``, ``"recall"``, ``"boundary_f1"``: ``(B,)`` float32;
        ``"valid"``: ``(B,)`` bool, whether the mask is non-empty. All on the inputs' device;
        shape ``(1,)`` for ``(H, W)`` inputs.

    Raises
    ------
    TypeError
        If ``kept`` or ``mask`` is not a tensor, or ``tolerance`` is not a real number.
    ValueError
        If the shapes differ or are not ``(B, H, W)``/``(H, W)``, a map is not binary or holds
        NaN, or ``tolerance`` is negative or not finite.

    Notes
    -----
    Boundary: the pixels of a region with at least one 4-neighbour outside the region. A
    neighbour outside the image counts as equal to the edge pixel (replicate padding), so the image
    border is not itself a boundary: a region touching the border has no boundary along it. A
    non-empty region without boundary pixels is therefore the whole image.

    Boundary precision is the share of ``K``'s boundary pixels within ``tolerance`` of a boundary
    pixel of ``M``, boundary recall the share of ``M``'s boundary pixels within ``tolerance`` of
    one of ``K``, and boundary F1 ``= 2 P R / (P + R)``. Matching is a dilation of each boundary
    map with a disk of radius ``tolerance`` (a convolution), batched on the device.

    Conventions:

    - A sample with an empty mask is excluded: all five metrics are NaN and ``valid`` is False.
    - Any other ratio ``0 / 0`` is 0. So an empty ``K`` (with a non-empty ``M``) scores 0 on all
      five metrics, and a boundary precision or recall without boundary pixels to measure is 0.
    - The one exception: when ``K`` and ``M`` are both the whole image, neither has a boundary and
      boundary F1 is 1, so that ``K = M`` always scores 1 on all five metrics.

    Counts are exact integers; the ratios are computed in float64 and returned as float32.
    """
    tolerance = _tolerance(tolerance)
    k = _binary(kept, "kept")
    m = _binary(mask, "mask")
    _same_shape(kept, mask, "kept", "mask")

    size_k = k.flatten(1).sum(1)  # (B,)
    size_m = m.flatten(1).sum(1)
    inter = (k & m).flatten(1).sum(1)
    union = (k | m).flatten(1).sum(1)
    valid = size_m > 0

    boundary_k, boundary_m = _boundary(k), _boundary(m)  # (B, H, W)
    near = _near(torch.cat([boundary_k, boundary_m]), tolerance)
    near_k, near_m = near[: k.shape[0]], near[k.shape[0] :]
    edge_k = boundary_k.flatten(1).sum(1)
    edge_m = boundary_m.flatten(1).sum(1)
    b_precision = _ratio((boundary_k & near_m).flatten(1).sum(1), edge_k)
    b_recall = _ratio((boundary_m & near_k).flatten(1).sum(1), edge_m)
    boundary_f1 = _f1(b_precision, b_recall)
    whole = (size_k > 0) & valid & (edge_k == 0) & (edge_m == 0)
    boundary_f1 = torch.where(whole, 1.0, boundary_f1)

    metrics = {
        "iou": _ratio(inter, union),
        "dice": _ratio(2 * inter, size_k + size_m),
        "precision": _ratio(inter, size_k),
        "recall": _ratio(inter, size_m),
        "boundary_f1": boundary_f1,
    }
    out = {name: torch.where(valid, v, math.nan).to(torch.float32) for name, v in metrics.items()}
    out["valid"] = valid
    return out


# --- pointing game ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointingGame:
    """The result of :func:`pointing_game`.

    Attributes
    ----------
    hits
        ``(B,)`` bool: the heatmap's maximum lies within the tolerance of the mask. Always False
        for an excluded sample.
    valid
        ``(B,)`` bool: the mask is non-empty.
    accuracy
        Hits among the valid samples divided by the number of valid samples; NaN if none is valid.
    excluded
        Number of samples excluded for an empty mask.
    """

    hits: Tensor
    valid: Tensor
    accuracy: float
    excluded: int


def pointing_game(heatmap: Tensor, mask: Tensor, tolerance: float = 15) -> PointingGame:
    """Score a hit when the heatmap's maximum lies within ``tolerance`` pixels of the mask.

    Parameters
    ----------
    heatmap : Tensor
        ``(B, H, W)`` or ``(H, W)`` float, finite; any sign.
    mask : Tensor
        Binary ground truth (bool or 0/1) of the same shape.
    tolerance : float, default 15
        Largest Euclidean distance, in pixels, from the maximum to the nearest mask pixel for a
        hit; ``>= 0`` (0: the maximum must lie on the mask).

    Returns
    -------
    PointingGame
        Per-sample ``hits`` and ``valid`` on the inputs' device, ``accuracy`` and ``excluded``.

    Raises
    ------
    TypeError
        If an input is not a tensor or ``tolerance`` is not a real number.
    ValueError
        If the shapes differ, ``heatmap`` is not floating or holds NaN or infinite values,
        ``mask`` is not binary, or ``tolerance`` is negative or not finite.

    Notes
    -----
    The pointing game of Zhang et al. (2016, "Top-down neural attention by excitation backprop")
    with the tolerance counted in pixels of the map (their 15 px). When the maximum is tied, the
    first maximal pixel in raster order (row by row, left to right) is the one pointed at; this is
    computed explicitly, not left to :func:`torch.argmax`. A sample with an empty mask is excluded
    (``docs/METRICS.md``): never a hit, not in ``accuracy``'s numerator or denominator, counted in
    ``excluded``. The distance to the mask is exact: the smallest squared distance from the peak
    to every mask pixel, in integers.
    """
    tolerance = _tolerance(tolerance)
    maps = _heatmap(heatmap)
    m = _binary(mask, "mask")
    _same_shape(heatmap, mask, "heatmap", "mask")
    batch, height, width = maps.shape
    flat = maps.flatten(1)  # (B, n)
    index = torch.arange(height * width, device=maps.device)
    peak_value = flat.amax(dim=1, keepdim=True)  # (B, 1)
    peak = torch.where(flat == peak_value, index, height * width).amin(dim=1)  # (B,) first max
    peak_y, peak_x = peak // width, peak % width

    rows = torch.arange(height, device=maps.device)
    cols = torch.arange(width, device=maps.device)
    squared = (rows[None, :, None] - peak_y[:, None, None]) ** 2 + (
        cols[None, None, :] - peak_x[:, None, None]
    ) ** 2  # (B, H, W) int64
    far = (height + width) ** 2  # larger than any squared distance in the image
    nearest = torch.where(m, squared, far).flatten(1).amin(dim=1)  # (B,)

    valid = m.flatten(1).any(dim=1)
    hits = valid & (nearest.to(torch.float64) <= tolerance**2)
    count = int(valid.sum())
    accuracy = float(hits.sum()) / count if count else math.nan
    return PointingGame(hits=hits, valid=valid, accuracy=accuracy, excluded=batch - count)


# --- precision-recall ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PRCurve:
    """The result of :func:`pr_curve`.

    Attributes
    ----------
    aupr
        ``(B,)`` float32 average precision of each heatmap against its mask; NaN for an empty
        mask.
    recall_grid
        ``(101,)`` float32 recalls ``0, 0.01, ..., 1``.
    precision
        ``(B, 101)`` float32 interpolated precision at each recall of ``recall_grid``; NaN rows for
        empty masks.
    valid
        ``(B,)`` bool: the mask is non-empty.
    """

    aupr: Tensor
    recall_grid: Tensor
    precision: Tensor
    valid: Tensor


def pr_curve(heatmap: Tensor, mask: Tensor) -> PRCurve:
    """Sweep every threshold of each heatmap against its mask: average precision and PR curve.

    Each distinct value ``t`` of a heatmap, in decreasing order, is a threshold: the pixels with
    ``x >= t`` are predicted positive, giving precision ``P_n`` and recall ``R_n`` against the
    mask. The average precision is ``AP = sum_n (R_n - R_{n-1}) P_n`` with ``R_0 = 0``.

    Parameters
    ----------
    heatmap : Tensor
        ``(B, H, W)`` or ``(H, W)`` float, finite; any sign.
    mask : Tensor
        Binary ground truth (bool or 0/1) of the same shape.

    Returns
    -------
    PRCurve
        ``aupr``, ``recall_grid``, ``precision`` and ``valid`` on the inputs' device.

    Raises
    ------
    TypeError
        If an input is not a tensor.
    ValueError
        If the shapes differ, ``heatmap`` is not floating or holds NaN or infinite values, or
        ``mask`` is not binary.

    Notes
    -----
    ``aupr`` is exactly the definition of :func:`sklearn.metrics.average_precision_score`: tied
    values form one threshold (one step of the curve), and there is no interpolation. It is the
    area under the step curve; the trapezoidal area would be optimistic.

    The curve for plotting is the interpolated precision ``p(r) = max {P_n : R_n >= r}`` over the
    operating points ``(R_n, P_n)`` of the thresholds above, at the 101 recalls ``r = k / 100``.
    No artificial point ``(R, P) = (0, 1)`` is added, so ``p(0)`` is the best precision any
    threshold reaches.

    A sample with an empty mask has no recall: its ``aupr`` and precision row are NaN and
    ``valid`` is False. The computation is one sort per batch (along each map) and cumulative
    sums, in float64; results are returned as float32.
    """
    maps = _heatmap(heatmap)
    m = _binary(mask, "mask")
    _same_shape(heatmap, mask, "heatmap", "mask")
    flat = maps.flatten(1)  # (B, n)
    batch, n = flat.shape
    device = flat.device

    values, order = torch.sort(flat, dim=1, descending=True)
    labels = m.flatten(1).gather(1, order).to(torch.int64)  # (B, n) in decreasing score order
    true_pos = labels.cumsum(dim=1)  # (B, n)
    positives = true_pos[:, -1:]  # (B, 1)
    valid = positives[:, 0] > 0

    # Only the last position of each run of tied values is an operating point; every position
    # takes the counts of the end of its run.
    index = torch.arange(n, device=device).expand(batch, n)
    is_end = torch.ones_like(labels, dtype=torch.bool)
    is_end[:, :-1] = values[:, :-1] != values[:, 1:]
    run_end = torch.where(is_end, index, n).flip(1).cummin(dim=1).values.flip(1)  # (B, n)
    tp_end = true_pos.gather(1, run_end).to(torch.float64)
    precision_end = tp_end / (run_end + 1).to(torch.float64)  # (B, n)
    recall_end = tp_end / positives.clamp_min(1).to(torch.float64)

    # sum_n (R_n - R_{n-1}) P_n: each positive pixel adds 1 / |M| of recall at its run's end.
    aupr = (labels * precision_end).sum(dim=1) / positives[:, 0].clamp_min(1)

    grid = torch.arange(_GRID_POINTS, dtype=torch.float64, device=device) / (_GRID_POINTS - 1)
    best_after = torch.where(is_end, precision_end, 0.0).flip(1).cummax(dim=1).values.flip(1)
    first = torch.searchsorted(recall_end.contiguous(), grid.expand(batch, -1).contiguous())
    interpolated = best_after.gather(1, first.clamp(max=n - 1))  # (B, 101)

    return PRCurve(
        aupr=torch.where(valid, aupr, math.nan).to(torch.float32),
        recall_grid=grid.to(torch.float32),
        precision=torch.where(valid[:, None], interpolated, math.nan).to(torch.float32),
        valid=valid,
    )
