"""Faithfulness: does the model's own behaviour agree with the explanation?

Deletion and insertion (Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018), completeness of a kept region, and max-sensitivity (Yeh et al.,
"On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019). Definitions follow
``docs/METRICS.md``; every function here asks the model, never another explanation.

All functions are batched: the ``B * (steps + 1)`` perturbed images of a deletion curve are run
``batch_size`` at a time, so a whole data set can be passed at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leanxai.core.errors import InputError, InputTypeError
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers.base import Explainer, Explanation, check_images

__all__ = [
    "Completeness",
    "Curve",
    "blur",
    "completeness",
    "deletion",
    "deletion_curve",
    "insertion",
    "insertion_curve",
    "max_relative_change",
    "max_sensitivity",
    "perturbed_explanations",
    "pixel_order",
]

Substrate: TypeAlias = Literal["zero", "blur", "mean"] | float | Tensor

# Insertion's start (docs/METRICS.md): a Gaussian blur with kernel 11 and sigma 5.
_BLUR_KERNEL = 11
_BLUR_SIGMA = 5.0


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve.

    Attributes
    ----------
    fractions
        ``(S + 1,)`` float64, the fraction of pixels removed (deletion) or inserted (insertion)
        at each step, from 0 to 1.
    probabilities
        ``(B, S + 1)`` float32 (float64 for a float64 model), the softmax probability of
        ``target`` after each step.
    target
        ``(B,)`` int64, the class followed (the prediction on the unmodified inputs by default).
    """

    fractions: Tensor
    probabilities: Tensor
    target: Tensor

    @property
    def area(self) -> Tensor:
        """``(B,)`` trapezoid area under the curve on ``[0, 1]``."""
        x = self.fractions.to(self.probabilities.device, torch.float64)
        y = self.probabilities.double()
        return torch.trapezoid(y, x, dim=1).to(self.probabilities.dtype)


@dataclass(frozen=True)
class Completeness:
    """What the model still sees when only the kept region is shown.

    Attributes
    ----------
    score
        ``(B,)`` the probability of ``target`` on the masked input divided by its probability on
        the original input. Not clipped: a region can be more convincing than the whole image.
    kept_fraction
        ``(B,)`` the fraction of pixels kept. A method that keeps everything scores 1 trivially,
        so read ``score`` beside it.
    probability, masked_probability
        ``(B,)`` the two probabilities behind ``score``.
    target
        ``(B,)`` int64, the class followed.
    """

    score: Tensor
    kept_fraction: Tensor
    probability: Tensor
    masked_probability: Tensor
    target: Tensor


# --------------------------------------------------------------------------------------------
# Checks and substrates


def _check_heatmap(heatmap: object, inputs: Tensor) -> Tensor:
    if not isinstance(heatmap, Tensor):
        raise InputTypeError(f"heatmap must be a torch.Tensor, got {type(heatmap).__name__}")
    if heatmap.dim() == 4 and heatmap.shape[1] == 1:
        heatmap = heatmap[:, 0]
    batch, _, height, width = inputs.shape
    if heatmap.dim() != 3 or tuple(heatmap.shape) != (batch, height, width):
        raise InputError(
            f"heatmap has shape {tuple(heatmap.shape)} but inputs have shape "
            f"{tuple(inputs.shape)}; expected heatmap of shape {(batch, height, width)} "
            "(one map per input, at the input's size)"
        )
    if heatmap.dtype == torch.bool:
        heatmap = heatmap.float()
    if not heatmap.dtype.is_floating_point:
        heatmap = heatmap.float()
    if not bool(torch.isfinite(heatmap).all()):
        raise InputError("heatmap contains NaN or infinite values")
    return heatmap.to(inputs.device)


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def blur(inputs: Tensor, kernel: int = _BLUR_KERNEL, sigma: float = _BLUR_SIGMA) -> Tensor:
    """Gaussian blur of ``(B, C, H, W)`` images, per channel, reflect padding at the borders."""
    radius = kernel // 2
    offsets = torch.arange(kernel, dtype=torch.float64) - radius
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(inputs.device, inputs.dtype)
    channels = inputs.shape[1]
    mode = "reflect" if min(inputs.shape[-2:]) > radius else "replicate"
    padded = F.pad(inputs, (radius, radius, radius, radius), mode=mode)
    horizontal = weights.view(1, 1, 1, kernel).expand(channels, 1, 1, kernel)
    vertical = weights.view(1, 1, kernel, 1).expand(channels, 1, kernel, 1)
    out = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(out, vertical, groups=channels)


def _substrate(substrate: Substrate, inputs: Tensor, name: str = "substrate") -> Tensor:
    """The image that replaces removed pixels, shaped like ``inputs``."""
    if isinstance(substrate, Tensor):
        try:
            return torch.broadcast_to(substrate.to(inputs.device, inputs.dtype), inputs.shape)
        except RuntimeError as error:
            raise InputError(
                f"{name} of shape {tuple(substrate.shape)} does not broadcast to inputs of "
                f"shape {tuple(inputs.shape)}"
            ) from error
    if isinstance(substrate, (int, float)) and not isinstance(substrate, bool):
        return torch.full_like(inputs, float(substrate))
    if substrate == "zero":
        return torch.zeros_like(inputs)
    if substrate == "blur":
        return blur(inputs)
    if substrate == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    raise InputError(
        f"{name} must be 'zero', 'blur', 'mean', a number or a tensor, got {substrate!r}"
    )


def pixel_order(heatmap: Tensor, tie_seed: int = 0) -> Tensor:
    """Pixels of each map by decreasing saliency, ``(B, H * W)`` int64 flat indices.

    Ties (a thresholded map is zero on most of the image) are broken by one fixed random
    permutation of the pixels drawn from ``tie_seed``, the same for every map, so that equal
    values are removed in no spatial pattern, and never in raster order, which would delete the
    top rows first.
    """
    flat = heatmap.flatten(1)
    generator = torch.Generator().manual_seed(tie_seed)
    perm = torch.randperm(flat.shape[1], generator=generator).to(flat.device)
    ranked = torch.argsort(flat[:, perm], dim=1, descending=True, stable=True)
    return perm[ranked]


def _steps_pixels(pixels: int, steps: int) -> Tensor:
    """How many pixels are changed after each of the ``steps`` steps: ``floor(k * HW / S)``."""
    return torch.arange(steps + 1, dtype=torch.int64) * pixels // steps


def _probabilities(model: nn.Module, images: Tensor, target: Tensor) -> Tensor:
    """Softmax probability of ``target``, in float32 or in the logits' dtype if wider."""
    logits = logits_of(model(images))
    if logits.dtype != torch.float64:
        logits = logits.float()
    return logits.softmax(dim=1).gather(1, target[:, None])[:, 0]


def _resolve(model: nn.Module, inputs: Tensor, target: Target, batch_size: int) -> Tensor:
    """``(B,)`` probabilities on ``inputs`` and the target they follow."""
    chunks = [
        logits_of(model(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)
    ]
    logits = torch.cat(chunks)
    return resolve_target(target, logits)


# --------------------------------------------------------------------------------------------
# Deletion and insertion


def _curve(
    model: nn.Module,
    inputs: Tensor,
    heatmap: Tensor,
    target: Target,
    steps: int,
    start: Substrate,
    insert: bool,
    batch_size: int,
    tie_seed: int,
) -> Curve:
    inputs = check_images(inputs)
    heatmap = _check_heatmap(heatmap, inputs)
    _check_int(steps, "steps", 1)
    _check_int(batch_size, "batch_size", 1)
    batch, _, height, width = inputs.shape
    pixels = height * width
    counts = _steps_pixels(pixels, steps).to(inputs.device)  # (S+1,)
    order = pixel_order(heatmap, tie_seed)  # (B, HW)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=order.device).expand(batch, -1))
    with torch.inference_mode(), eval_mode(model):
        resolved = _resolve(model, inputs, target, batch_size)
        other = _substrate(start, inputs, "substrate")
        # Deletion goes from the image to the substrate; insertion from the substrate to the
        # image. Either way, pixel p shows the "late" image once rank[p] < count[k].
        early, late = (other, inputs) if insert else (inputs, other)
        total = batch * (steps + 1)
        chunks = []
        for begin in range(0, total, batch_size):
            index = torch.arange(begin, min(begin + batch_size, total), device=inputs.device)
            sample, step = index // (steps + 1), index % (steps + 1)
            changed = rank[sample] < counts[step][:, None]  # (n, HW)
            changed = changed.view(-1, 1, height, width)
            images = torch.where(changed, late[sample], early[sample])
            chunks.append(_probabilities(model, images, resolved[sample]))
    fractions = counts.cpu().double() / pixels
    return Curve(fractions, torch.cat(chunks).view(batch, steps + 1), resolved)


def deletion_curve(
    model: nn.Module,
    inputs: Tensor,
    heatmap: Tensor,
    target: Target = None,
    steps: int = 32,
    substrate: Substrate = "zero",
    batch_size: int = 256,
    tie_seed: int = 0,
) -> Curve:
    """The deletion curve: remove pixels in decreasing saliency, follow the class probability.

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits; run in eval mode, unchanged afterwards.
    inputs
        ``(B, C, H, W)`` images.
    heatmap
        ``(B, H, W)`` saliency at the input's size (any scale; only the order matters).
    target
        The class whose softmax probability is followed; ``None`` for the class predicted on
        the unmodified inputs.
    steps
        The curve has ``steps + 1`` points; after step ``k``, ``floor(k * H * W / steps)``
        pixels have been replaced.
    substrate
        What replaces a removed pixel: ``"zero"`` (default), ``"blur"``, ``"mean"`` (each
        image's channel means), a number, or a tensor broadcastable to ``inputs``.
    batch_size
        Perturbed images per forward pass.
    tie_seed
        Seed of the permutation that breaks ties in the heatmap (see :func:`pixel_order`).

    Returns
    -------
    Curve
        Fractions removed, probabilities ``(B, steps + 1)``, target; ``.area`` is the score.
    """
    return _curve(model, inputs, heatmap, target, steps, substrate, False, batch_size, tie_seed)


def insertion_curve(
    model: nn.Module,
    inputs: Tensor,
    heatmap: Tensor,
    target: Target = None,
    steps: int = 32,
    substrate: Substrate = "blur",
    batch_size: int = 256,
    tie_seed: int = 0,
) -> Curve:
    """The insertion curve: start from ``substrate`` (a blurred copy: Gaussian, kernel 11,
    sigma 5) and copy the original pixels back in decreasing saliency.

    Parameters are those of :func:`deletion_curve`; ``substrate`` is the starting image.
    """
    return _curve(model, inputs, heatmap, target, steps, substrate, True, batch_size, tie_seed)


def deletion(
    model: nn.Module,
    inputs: Tensor,
    heatmap: Tensor,
    target: Target = None,
    steps: int = 32,
    substrate: Substrate = "zero",
    batch_size: int = 256,
    tie_seed: int = 0,
) -> Tensor:
    """Deletion score, ``(B,)``: area under :func:`deletion_curve`. Lower is better."""
    return deletion_curve(
        model, inputs, heatmap, target, steps, substrate, batch_size, tie_seed
    ).area


def insertion(
    model: nn.Module,
    inputs: Tensor,
    heatmap: Tensor,
    target: Target = None,
    steps: int = 32,
    substrate: Substrate = "blur",
    batch_size: int = 256,
    tie_seed: int = 0,
) -> Tensor:
    """Insertion score, ``(B,)``: area under :func:`insertion_curve`. Higher is better."""
    return insertion_curve(
        model, inputs, heatmap, target, steps, substrate, batch_size, tie_seed
    ).area


# --------------------------------------------------------------------------------------------
# Completeness


def completeness(
    model: nn.Module,
    inputs: Tensor,
    heatmap: Tensor,
    target: Target = None,
    substrate: Substrate = "zero",
    batch_size: int = 256,
) -> Completeness:
    """The share of the class probability that remains when only the kept region is shown.

    The kept region is where ``heatmap > 0``: pass a thresholded map (for example
    ``threshold.top_percent(heatmap, 10)``); the rest is replaced by ``substrate``.

    Parameters
    ----------
    model, inputs, target, substrate, batch_size
        As in :func:`deletion_curve`.
    heatmap
        ``(B, H, W)``; non-zero where kept.

    Returns
    -------
    Completeness
        ``score`` (probability with the region only / probability on the input, not clipped)
        with ``kept_fraction`` beside it.
    """
    inputs = check_images(inputs)
    heatmap = _check_heatmap(heatmap, inputs)
    _check_int(batch_size, "batch_size", 1)
    kept = heatmap > 0  # (B, H, W)
    with torch.inference_mode(), eval_mode(model):
        resolved = _resolve(model, inputs, target, batch_size)
        other = _substrate(substrate, inputs)
        masked = torch.where(kept[:, None], inputs, other)
        full, part = [], []
        for begin in range(0, len(inputs), batch_size):
            part_target = resolved[begin : begin + batch_size]
            full.append(_probabilities(model, inputs[begin : begin + batch_size], part_target))
            part.append(_probabilities(model, masked[begin : begin + batch_size], part_target))
    probability, masked_probability = torch.cat(full), torch.cat(part)
    score = masked_probability / probability.clamp_min(torch.finfo(probability.dtype).tiny)
    return Completeness(
        score=score,
        kept_fraction=kept.flatten(1).float().mean(dim=1),
        probability=probability,
        masked_probability=masked_probability,
        target=resolved,
    )


# --------------------------------------------------------------------------------------------
# Max-sensitivity


def max_sensitivity(
    explainer: Explainer,
    inputs: Tensor,
    target: Target = None,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
    postprocess: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Max-sensitivity (Yeh et al., 2019): the largest relative change of the explanation under
    small input noise.

    For each of ``samples`` draws of uniform noise ``e`` in the L-infinity ball of ``radius``,
    ``||E(x + e) - E(x)|| / ||E(x)||`` with the Frobenius norm of the heatmaps; the score is the
    maximum over draws. The perturbed inputs are explained for the same class as ``x``. Lower is
    better. When ``E(x)`` is all zero the ratio is 0 if ``E(x + e)`` is also zero, else ``inf``.

    Parameters
    ----------
    explainer
        Any :class:`~leanxai.Explainer`.
    inputs
        ``(B, C, H, W)`` images.
    target
        Class to explain; ``None`` for the predicted class of the unperturbed input.
    radius
        Half-width of the noise, in input units (inputs in ``[0, 1]``: 0.02 is 2 % of the range).
    samples
        Number of noise draws.
    seed
        Seed of the noise; the global random state is not touched.
    postprocess
        Applied to every heatmap before comparing, e.g. a threshold
        (``lambda h: threshold.top_percent(h, 10)``).

    Returns
    -------
    Tensor
        ``(B,)`` float32.
    """
    post = postprocess if postprocess is not None else (lambda h: h)
    reference, perturbed = perturbed_explanations(explainer, inputs, target, radius, samples, seed)
    return max_relative_change(post(reference.heatmap), [post(h) for h in perturbed])


def perturbed_explanations(
    explainer: Explainer,
    inputs: Tensor,
    target: Target = None,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
) -> tuple[Explanation, list[Tensor]]:
    """The explanation of ``inputs`` and the heatmaps of ``samples`` noisy copies.

    The pieces of :func:`max_sensitivity`, for callers that compare several post-processings
    (thresholds) of the same explanations without explaining again. The noisy copies are
    explained for the class of the unperturbed explanation.

    Returns
    -------
    reference : Explanation
        The explanation of ``inputs``.
    heatmaps : list of Tensor
        ``samples`` heatmaps ``(B, H, W)``.
    """
    if not hasattr(explainer, "explain"):
        raise InputTypeError(
            f"explainer must have an explain() method, got {type(explainer).__name__}"
        )
    inputs = check_images(inputs)
    _check_int(samples, "samples", 1)
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius >= 0:
        raise InputError(f"radius must be a number >= 0, got {radius!r}")
    if not math.isfinite(radius):
        raise InputError(f"radius must be finite, got {radius!r}")
    reference = explainer.explain(inputs, target)
    generator = torch.Generator().manual_seed(seed)
    heatmaps = []
    for _ in range(samples):
        noise = torch.rand(inputs.shape, generator=generator, dtype=torch.float64)
        noise = ((2 * noise - 1) * radius).to(inputs.device, inputs.dtype)
        heatmaps.append(explainer.explain(inputs + noise, reference.target).heatmap)
    return reference, heatmaps


def max_relative_change(base: Tensor, perturbed: list[Tensor]) -> Tensor:
    """``max_i ||perturbed_i - base|| / ||base||`` per map, Frobenius norm, ``(B,)`` float32.

    An all-zero ``base`` gives 0 where the perturbed map is also zero, else ``inf``.
    """
    flat = base.float().flatten(1)  # (B, HW)
    norm = flat.norm(dim=1)
    worst = torch.zeros(len(flat), device=flat.device)
    for heatmap in perturbed:
        change = (heatmap.float().flatten(1) - flat).norm(dim=1)
        ratio = torch.where(
            norm > 0,
            change / norm.clamp_min(torch.finfo(torch.float32).tiny),
            torch.where(change > 0, torch.inf, 0.0),
        )
        worst = torch.maximum(worst, ratio)
    return worst
