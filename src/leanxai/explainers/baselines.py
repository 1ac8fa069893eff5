"""Baseline explainers behind the :class:`Explainer` interface: Captum adapters and RISE.

Every explainer here has two verbs:

- :meth:`AttributionExplainer.attribute` returns the raw, signed attribution ``(B, C, H, W)``
  (``(B, 1, H, W)`` for RISE, whose masks are shared by all channels);
- :meth:`AttributionExplainer.explain` reduces it to a heatmap and returns an
  :class:`~leanxai.explainers.base.Explanation`, so the thresholds and metrics apply to all
  methods alike.

The reduction is the same for every method: the sum over channels of the *positive* part of the
attribution (evidence for the class), ``heatmap = sum_c max(a_c, 0)``, each map then divided by
its maximum (an all-zero map stays zero).

All methods explain the target's logit, except RISE, which follows its paper and weights masks by
the target's softmax probability. Gradient methods (:class:`IntegratedGradients`,
:class:`GuidedBackprop`) report ``path="autograd"``; perturbation methods (:class:`Occlusion`,
:class:`LIME`, :class:`KernelSHAP`, :class:`RISE`) run forward passes only, without a graph, and
report ``path="forward"``.

Captum (``pip install leanxai[baselines]``) is imported when a Captum-backed method runs, never at
import time. The model is run in eval mode for the call and every ``training`` flag restored;
nothing is left on it (Captum's guided-backprop hooks are removed in its own ``finally``, and we
check it in the tests); random methods draw from a private seeded stream and leave the global
torch and NumPy generators as they were.
"""

from __future__ import annotations

import abc
import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers.base import Explainer, Explanation, Path, check_images, normalize_maps
from leanxai.explainers.registry import register

__all__ = [
    "BASELINES",
    "LIME",
    "RISE",
    "AttributionExplainer",
    "GuidedBackprop",
    "IntegratedGradients",
    "KernelSHAP",
    "Occlusion",
    "generate_masks",
    "grid_segments",
    "reduce_attribution",
    "slic_segments",
]

Segments = Literal["slic", "grid"]


# -- validation -----------------------------------------------------------------------------------


_positive_int = validate.positive_int
_optional_positive_int = validate.optional_positive_int
_positive_float = validate.positive_float
_finite_float = validate.finite_float
_required_pair = validate.int_pair


def _int_seed(value: object) -> int:
    return validate.non_negative_int("seed", value)


def _pair(name: str, value: object) -> tuple[int, int] | None:
    """``None``, an int or a pair of positive ints."""
    return None if value is None else validate.int_pair(name, value)


def _import_captum_attr() -> Any:
    try:
        import captum.attr
    except ImportError as error:  # pragma: no cover - captum is a declared extra
        raise ImportError("this explainer needs Captum: pip install leanxai[baselines]") from error
    return captum.attr


class _Logits(nn.Module):
    """The model with its output normalised to ``(B, K)`` logits, for Captum's forward function.

    Wrapping does not change the user's model; Captum's guided backprop walks ``modules()`` of
    this wrapper, which are the user's modules.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(inputs))


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator and NumPy's global one for the block, then restore both.

    Captum's LIME and KernelSHAP sample on the CPU generator (and its ``DataLoader`` draws a base
    seed from it), whatever the inputs' device, so that is the only torch generator touched.
    """
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(numpy_state)


# -- the shared engine ----------------------------------------------------------------------------


class AttributionExplainer(Explainer):
    """Shared engine: run the model once, resolve targets, attribute, reduce to a heatmap.

    Subclasses implement :meth:`_attribute` only.

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits (or a transformers ``ModelOutput``).
    eval_mode
        Run the model in eval mode during the call (then restore every ``training`` flag).
    """

    name = "attribution"
    path: Path = "autograd"

    def __init__(self, model: nn.Module, *, eval_mode: bool = True) -> None:
        super().__init__(model)
        self.eval_mode = eval_mode

    @abc.abstractmethod
    def _attribute(self, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Raw attribution for validated ``inputs`` and ``(B,)`` classes, model in eval mode."""

    def _run(
        self, inputs: torch.Tensor, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = check_images(inputs)
        with eval_mode(self.model, self.eval_mode):
            with torch.no_grad():
                logits = logits_of(self.model(inputs)).detach()  # (B, K)
            classes = resolve_target(target, logits)  # (B,)
            attribution = self._attribute(inputs.detach(), classes)
        return attribution.detach(), logits, classes

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        """The raw signed attribution of ``target`` for ``inputs``.

        Parameters
        ----------
        inputs
            ``(B, C, H, W)`` floating tensor on the model's device.
        target
            ``None`` (the predicted class), an int, or one class per sample.

        Returns
        -------
        torch.Tensor
            ``(B, C, H, W)`` in the inputs' dtype (``(B, 1, H, W)`` for RISE).
        """
        attribution, _, _ = self._run(inputs, target)
        return attribution

    def explain(self, inputs: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``inputs`` for ``target``.

        The heatmap is ``sum_c max(attribution_c, 0)``, each map divided by its maximum.

        Parameters
        ----------
        inputs
            ``(B, C, H, W)`` floating tensor on the model's device.
        target
            ``None`` (the predicted class), an int, or one class per sample.

        Returns
        -------
        Explanation
            ``heatmap`` ``(B, H, W)`` float32 in ``[0, 1]``, ``target``, ``logits``, ``method``
            and ``path``; ``cam`` and ``layer`` are ``None``.
        """
        attribution, logits, classes = self._run(inputs, target)
        return Explanation(
            heatmap=reduce_attribution(attribution),
            target=classes,
            logits=logits,
            method=self.name,
            path=self.path,
        )


def reduce_attribution(attribution: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` attribution -> ``(B, H, W)`` float32 heatmap in ``[0, 1]``.

    The sum over channels of the positive part, each map divided by its maximum.
    """
    dtype = torch.promote_types(attribution.dtype, torch.float32)
    maps = attribution.to(dtype).clamp_min(0).sum(dim=1)  # (B, H, W)
    return normalize_maps(maps).float()


# -- gradient methods -----------------------------------------------------------------------------


@register(
    "ig",
    families="cnn",
    output="spatial map",
    backward="many",
    aliases=("integrated_gradients", "integratedgradients"),
    summary="Integrated Gradients (Captum), summed over channels",
)
class IntegratedGradients(AttributionExplainer):
    """Integrated Gradients (Sundararajan et al., ICML 2017), through Captum.

    ``(x - x') * integral_0^1 d logit_t(x' + a (x - x')) / dx da``, with Captum's Gauss-Legendre
    quadrature over ``steps`` points. For a model linear in its input this is exactly
    ``(x - x') * w_t`` (completeness).

    Parameters
    ----------
    model
        The classifier.
    baseline
        The reference ``x'``: a number or a tensor that broadcasts to the inputs (default 0).
    steps
        Number of quadrature points.
    internal_batch_size
        Scaled inputs per forward/backward pass (``None``: all ``B * steps`` at once).
    eval_mode
        Run the model in eval mode for the call.
    """

    name = "ig"
    path: Path = "autograd"

    def __init__(
        self,
        model: nn.Module,
        *,
        baseline: float | torch.Tensor = 0.0,
        steps: int = 32,
        internal_batch_size: int | None = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model, eval_mode=eval_mode)
        if not isinstance(baseline, torch.Tensor):
            baseline = _finite_float("baseline", baseline)
        self.baseline = baseline
        self.steps = _positive_int("steps", steps)
        self.internal_batch_size = _optional_positive_int(
            "internal_batch_size", internal_batch_size
        )

    def _attribute(self, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        attr = _import_captum_attr()
        try:
            baseline = (
                torch.as_tensor(self.baseline, dtype=inputs.dtype, device=inputs.device)
                .detach()
                .broadcast_to(inputs.shape)
            )
        except RuntimeError as error:
            shape = tuple(self.baseline.shape) if isinstance(self.baseline, torch.Tensor) else ()
            raise InputError(
                f"baseline of shape {shape} does not broadcast to inputs {tuple(inputs.shape)}"
            ) from error
        method = attr.IntegratedGradients(_Logits(self.model), multiply_by_inputs=True)
        return method.attribute(
            inputs,
            baselines=baseline,
            target=classes,
            n_steps=self.steps,
            internal_batch_size=self.internal_batch_size,
        )


@register(
    "guided_backprop",
    families="cnn",
    output="spatial map",
    backward="yes",
    aliases=("guidedbackprop",),
    summary="Guided Backpropagation (Captum)",
)
class GuidedBackprop(AttributionExplainer):
    """Guided backpropagation (Springenberg et al., ICLR workshop 2015), through Captum.

    The gradient of the target logit with respect to the input, where every ``nn.ReLU`` module
    passes back only positive gradients. ReLUs applied as functions (``F.relu``, ``torch.relu``)
    are not modified, as in Captum. In-place ReLUs work: Captum's hook hands each ReLU a copy of
    its input. Captum registers its hooks on the model's ReLU modules for the call and removes
    them in a ``finally``.
    """

    name = "guided_backprop"
    path: Path = "autograd"

    def _attribute(self, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        attr = _import_captum_attr()
        method = attr.GuidedBackprop(_Logits(self.model))
        # A copy that requires grad, so that Captum does not switch on requires_grad of a
        # tensor it was given (and warn that it did).
        leaf = inputs.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            return method.attribute(leaf, target=classes).detach()


# -- perturbation methods -------------------------------------------------------------------------


@register(
    "occlusion",
    families="cnn",
    output="spatial map",
    backward="no",
    summary="sliding-window occlusion (Captum), forward only",
)
class Occlusion(AttributionExplainer):
    """Occlusion (Zeiler and Fergus, ECCV 2014), through Captum.

    A ``window`` patch of every channel is set to ``baseline`` at steps of ``stride``; each
    position's attribution is ``logit_t(x) - logit_t(x occluded)``, averaged over the windows that
    cover it. Windows at the right and bottom edges are cut to the image. The attribution is the
    same on every channel, so the heatmap is ``C`` times it, before normalisation. Captum returns
    float32 whatever the model's dtype (it divides by the window counts in float32); we cast back
    to the inputs' dtype, but the precision is float32's.

    Parameters
    ----------
    model
        The classifier.
    window
        Side of the square patch, or ``(height, width)``; default ``max(2, side // 8)`` of the
        shorter image side.
    stride
        Step between patches (int or pair); default ``window`` (no overlap). At most ``window``.
    baseline
        The value occluded pixels take.
    perturbations_per_eval
        Occluded copies of each image per forward pass.
    """

    name = "occlusion"
    path: Path = "forward"

    def __init__(
        self,
        model: nn.Module,
        *,
        window: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        baseline: float = 0.0,
        perturbations_per_eval: int = 64,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model, eval_mode=eval_mode)
        self.window = _pair("window", window)
        self.stride = _pair("stride", stride)
        self.baseline = _finite_float("baseline", baseline)
        self.perturbations_per_eval = _positive_int(
            "perturbations_per_eval", perturbations_per_eval
        )

    def _shapes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.window is None:
            side = max(2, min(height, width) // 8)
            window = (min(side, height), min(side, width))
        else:
            window = self.window
            if window[0] > height or window[1] > width:
                raise InputError(f"window {window} is larger than the image ({height}, {width})")
        stride = window if self.stride is None else self.stride
        if stride[0] > window[0] or stride[1] > window[1]:
            raise InputError(f"stride {stride} must not exceed window {window}")
        return window, stride

    def _attribute(self, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        attr = _import_captum_attr()
        channels, height, width = inputs.shape[1:]
        window, stride = self._shapes(height, width)
        method = attr.Occlusion(_Logits(self.model))
        with torch.no_grad():
            attribution = method.attribute(
                inputs,
                sliding_window_shapes=(channels, *window),
                strides=(channels, *stride),
                baselines=self.baseline,
                target=classes,
                perturbations_per_eval=self.perturbations_per_eval,
            )
        # Captum sums in the model's dtype but divides by the window counts in float32.
        return attribution.to(inputs.dtype)


def grid_segments(height: int, width: int, cells: int | tuple[int, int] = 8) -> torch.Tensor:
    """``(H, W)`` int64 labels of ``cells x cells`` near-equal rectangles, row-major from 0."""
    rows_cols = _required_pair("cells", cells)
    rows, cols = min(rows_cols[0], height), min(rows_cols[1], width)
    row = torch.arange(height) * rows // height  # (H,)
    col = torch.arange(width) * cols // width  # (W,)
    return row[:, None] * cols + col[None, :]


def slic_segments(
    image: torch.Tensor, n_segments: int = 50, compactness: float = 10.0
) -> torch.Tensor:
    """``(H, W)`` int64 SLIC superpixels (Achanta et al., 2012) of one ``(C, H, W)`` image.

    Uses :func:`skimage.segmentation.slic` with ``start_label=0`` and ``channel_axis=0`` on the
    image min-max scaled to ``[0, 1]`` (so that ``compactness`` means the same for normalised
    inputs); labels are renumbered ``0..n-1``.
    """
    try:
        from skimage.segmentation import slic
    except ImportError as error:  # pragma: no cover - scikit-image is a declared extra
        raise ImportError(
            "segments='slic' needs scikit-image: pip install leanxai[baselines]"
        ) from error
    array = image.detach().double().cpu().numpy()
    low, high = float(array.min()), float(array.max())
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    labels = slic(
        array,
        n_segments=n_segments,
        compactness=compactness,
        start_label=0,
        channel_axis=0,
    )
    return _renumber(torch.from_numpy(np.ascontiguousarray(labels)).long())


def _renumber(labels: torch.Tensor) -> torch.Tensor:
    _, inverse = torch.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).long()


class _SurrogateExplainer(AttributionExplainer):
    """LIME and KernelSHAP: a linear surrogate on superpixels, one image at a time.

    Captum fits one surrogate per example whatever the batch (and warns for batches), so we loop
    over images ourselves, each with its own feature mask and the same seed: an image's result does
    not depend on the others in the batch. Forward passes are batched by
    ``perturbations_per_eval``.
    """

    path: Path = "forward"

    def __init__(
        self,
        model: nn.Module,
        *,
        segments: Segments | torch.Tensor = "slic",
        n_segments: int = 50,
        compactness: float = 10.0,
        cells: int | tuple[int, int] = 8,
        n_samples: int = 200,
        baseline: float = 0.0,
        perturbations_per_eval: int = 64,
        seed: int = 0,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model, eval_mode=eval_mode)
        if isinstance(segments, torch.Tensor):
            if segments.dim() not in (2, 3) or segments.dtype.is_floating_point:
                raise InputError(
                    "segments must be 'slic', 'grid', or an integer tensor (H, W) or (B, H, W), "
                    f"got a {segments.dtype} tensor of shape {tuple(segments.shape)}"
                )
        elif segments not in ("slic", "grid"):
            raise InputError(f"segments must be 'slic', 'grid' or a label tensor, got {segments!r}")
        self.segments = segments
        self.n_segments = _positive_int("n_segments", n_segments)
        self.compactness = _positive_float("compactness", compactness)
        self.cells = _required_pair("cells", cells)
        self.n_samples = _positive_int("n_samples", n_samples)
        self.baseline = _finite_float("baseline", baseline)
        self.perturbations_per_eval = _positive_int(
            "perturbations_per_eval", perturbations_per_eval
        )
        self.seed = _int_seed(seed)

    def feature_mask(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` int64 superpixel labels, ``0..n_b-1`` per image, on the inputs' device."""
        inputs = check_images(inputs)
        batch, _, height, width = inputs.shape
        if isinstance(self.segments, torch.Tensor):
            labels = self.segments.to(inputs.device)
            if labels.shape[-2:] != (height, width) or (
                labels.dim() == 3 and labels.shape[0] not in (1, batch)
            ):
                raise InputError(
                    f"segments of shape {tuple(labels.shape)} do not fit inputs "
                    f"{tuple(inputs.shape)}; expected (H, W) or (B, H, W)"
                )
            labels = labels.expand(batch, height, width)
            return torch.stack([_renumber(label) for label in labels])
        if self.segments == "grid":
            grid = grid_segments(height, width, self.cells).to(inputs.device)
            return grid.expand(batch, height, width).clone()
        masks = []
        for index, image in enumerate(inputs):
            labels = slic_segments(image, self.n_segments, self.compactness)
            if int(labels.max()) < 1:
                # SLIC merges the fragments it finds in noise-like images into one segment.
                side = max(2, round(math.sqrt(self.n_segments)))
                warnings.warn(
                    f"SLIC found a single segment in image {index}; using a {side}x{side} grid "
                    "for it (raise compactness, or pass segments='grid')",
                    stacklevel=5,  # the caller of explain() or attribute()
                )
                labels = grid_segments(height, width, side)
            masks.append(labels)
        return torch.stack(masks).to(inputs.device)

    @abc.abstractmethod
    def _method(self, attr: Any, forward: nn.Module) -> Any:
        """The Captum attribution object."""

    def _attribute(self, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        attr = _import_captum_attr()
        masks = self.feature_mask(inputs)  # (B, H, W)
        forward = _Logits(self.model)
        maps = []
        for image, label, target in zip(inputs, masks, classes.tolist(), strict=True):
            if int(label.max()) < 1:
                raise InputError(
                    f"{self.name} needs at least 2 segments per image, got 1; "
                    "use more segments or cells"
                )
            with _seeded(self.seed), torch.no_grad():
                coefficients = self._method(attr, forward).attribute(
                    image[None],
                    baselines=self.baseline,
                    target=target,
                    feature_mask=label[None, None],  # (1, 1, H, W): shared by the channels
                    n_samples=self.n_samples,
                    perturbations_per_eval=self.perturbations_per_eval,
                )
            maps.append(coefficients.to(inputs.dtype))  # (1, C, H, W)
        return torch.cat(maps)


def _lime_kernel(width: float) -> Callable[..., float]:
    """lime_image's sample weight: ``sqrt(exp(-d^2 / width^2))``, ``d`` the cosine distance of the
    binary sample from the all-ones vector (the original image)."""

    def similarity(
        original: torch.Tensor, perturbed: torch.Tensor, sample: torch.Tensor, **kwargs: Any
    ) -> float:
        kept = float(sample.sum())
        features = sample.numel()
        distance = 1.0 - math.sqrt(kept / features)  # cosine distance to the all-ones vector
        return math.sqrt(math.exp(-(distance**2) / width**2))

    return similarity


@register(
    "lime",
    families="cnn",
    output="spatial map",
    backward="no",
    summary="LIME on superpixels (Captum), forward only",
)
class LIME(_SurrogateExplainer):
    """LIME (Ribeiro et al., KDD 2016) on superpixels, through Captum's ``Lime``.

    Each of ``n_samples`` samples keeps every superpixel with probability 1/2 and sets the others
    to ``baseline``; a weighted ridge regression of the target logit on the binary samples gives
    one coefficient per superpixel. We follow the authors' ``lime_image`` rather than Captum's
    defaults: ridge with ``alpha=1`` (Captum: lasso, ``alpha=0.01``, which zeroes most
    superpixels for small logit changes) and weights ``sqrt(exp(-d^2 / kernel_width^2))`` with
    ``d`` the cosine distance of the binary sample from all-ones (Captum: distance in input
    space). Deviation from ``lime_image``: the logit, not the probability, is explained.

    Parameters
    ----------
    model
        The classifier.
    segments
        ``"slic"`` (default), ``"grid"`` or a label tensor ``(H, W)`` or ``(B, H, W)``. SLIC
        merges noise-like images into one segment; such an image gets a
        ``sqrt(n_segments)``-per-side grid instead, with a warning.
    n_segments, compactness
        SLIC's parameters (:func:`slic_segments`).
    cells
        Cells per side for ``segments="grid"`` (int or pair).
    n_samples
        Perturbed samples per image.
    baseline
        The value of switched-off superpixels.
    perturbations_per_eval
        Samples per forward pass.
    seed
        Seed of the sampling; the global generators are left as they were.
    kernel_width
        Width of the exponential kernel on the cosine distance.
    """

    name = "lime"

    def __init__(
        self,
        model: nn.Module,
        *,
        segments: Segments | torch.Tensor = "slic",
        n_segments: int = 50,
        compactness: float = 10.0,
        cells: int | tuple[int, int] = 8,
        n_samples: int = 200,
        baseline: float = 0.0,
        perturbations_per_eval: int = 64,
        seed: int = 0,
        kernel_width: float = 0.25,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(
            model,
            segments=segments,
            n_segments=n_segments,
            compactness=compactness,
            cells=cells,
            n_samples=n_samples,
            baseline=baseline,
            perturbations_per_eval=perturbations_per_eval,
            seed=seed,
            eval_mode=eval_mode,
        )
        self.kernel_width = _positive_float("kernel_width", kernel_width)

    def _method(self, attr: Any, forward: nn.Module) -> Any:
        from captum._utils.models.linear_model import SkLearnRidge

        return attr.Lime(
            forward,
            interpretable_model=SkLearnRidge(alpha=1.0),
            similarity_func=_lime_kernel(self.kernel_width),
        )


@register(
    "kernelshap",
    families="cnn",
    output="spatial map",
    backward="no",
    aliases=("kernel_shap",),
    summary="Kernel SHAP on superpixels (Captum), forward only",
)
class KernelSHAP(_SurrogateExplainer):
    """Kernel SHAP (Lundberg and Lee, NeurIPS 2017) on superpixels, through Captum's ``KernelShap``.

    Coalitions of superpixels are sampled from the Shapley kernel (the empty and full coalitions
    first, with a very large weight) and a linear regression of the target logit on them gives
    each superpixel's Shapley value estimate. Absent superpixels take ``baseline``.

    Parameters are those of :class:`LIME`, without ``kernel_width``.
    """

    name = "kernelshap"

    def _method(self, attr: Any, forward: nn.Module) -> Any:
        return attr.KernelShap(forward)


# -- RISE -----------------------------------------------------------------------------------------


def _draw_grids(
    n: int, cells: int, p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(n, cells, cells)`` binary grids and ``(n, 2)`` shifts as fractions of a cell."""
    grids = (torch.rand(n, cells, cells, generator=generator, dtype=torch.float64) < p).float()
    shifts = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    return grids, shifts


def _render(
    grids: torch.Tensor,
    shifts: torch.Tensor,
    size: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> torch.Tensor:
    """Upsample grids bilinearly to ``(cells + 1) * cell`` and crop ``size`` at the shifts."""
    height, width = size
    count, cells = grids.shape[0], grids.shape[-1]
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    grids = grids.to(device=device, dtype=torch.promote_types(dtype, torch.float32))
    up = F.interpolate(
        grids[:, None],
        size=((cells + 1) * cell_h, (cells + 1) * cell_w),
        mode="bilinear",
        align_corners=False,
    )[:, 0]  # (n, (cells + 1) * cell_h, (cells + 1) * cell_w)
    offsets = (shifts * torch.tensor([cell_h, cell_w], dtype=shifts.dtype)).long()
    offsets = offsets.to(up.device)  # (n, 2), in [0, cell)
    rows = offsets[:, 0, None] + torch.arange(height, device=up.device)  # (n, H)
    cols = offsets[:, 1, None] + torch.arange(width, device=up.device)  # (n, W)
    index = torch.arange(count, device=up.device)[:, None, None]
    masks = up[index, rows[:, :, None], cols[:, None, :]]  # (n, H, W)
    return masks.clamp_(0, 1).to(dtype)  # interpolating 0s and 1s can round to 1 + eps


def generate_masks(
    n: int,
    cells: int,
    p: float,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """RISE's random masks (Petsiuk et al., BMVC 2018), ``(n, H, W)`` in ``[0, 1]``.

    Each mask is a ``cells x cells`` grid of independent Bernoulli(``p``) cells, upsampled
    bilinearly to ``((cells + 1) * ceil(H / cells), (cells + 1) * ceil(W / cells))`` and cropped
    to ``(H, W)`` at a random shift of less than one cell in each direction. Deviation from the
    authors' code: ``F.interpolate`` (``align_corners=False``) clamps at the border where their
    ``skimage`` resize reflects, which changes only the outermost half cell.

    Random numbers come from ``generator`` (a CPU :class:`torch.Generator`; ``None``: the global
    one), so masks are identical on every device. :class:`RISE` draws the same numbers in the same
    order, so ``generate_masks(..., torch.Generator().manual_seed(seed))`` gives RISE's masks.
    """
    n = _positive_int("n", n)
    cells = _positive_int("cells", cells)
    p = _probability(p)
    size = (_positive_int("size[0]", size[0]), _positive_int("size[1]", size[1]))
    grids, shifts = _draw_grids(n, cells, p, generator)
    return _render(grids, shifts, size, dtype, device)


def _probability(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 < p < 1:
        raise InputError(f"p must be a probability in (0, 1), got {p!r}")
    return float(p)


@register(
    "rise",
    families="cnn",
    output="spatial map",
    backward="no",
    summary="RISE random masks, forward only",
)
class RISE(AttributionExplainer):
    """RISE: Randomized Input Sampling for Explanation (Petsiuk et al., BMVC 2018).

    ``S = 1 / (N p) * sum_i P_t(x * M_i) M_i`` over ``N`` random masks (:func:`generate_masks`),
    with ``P_t`` the softmax probability of the target class. Forward passes only, batched over
    masks (``batch_size`` masked images per pass) with no autograd graph. All images of a batch
    use the same masks, drawn from a private generator seeded with ``seed`` (the global generators
    are not touched), so results are reproducible and do not depend on ``batch_size``.

    Parameters
    ----------
    model
        The classifier.
    n_masks
        Number of masks ``N``.
    cells
        Grid cells per side before upsampling.
    p
        Probability that a cell is kept.
    batch_size
        Masked images per forward pass.
    seed
        Seed of the masks.
    masks
        Precomputed masks ``(N, H, W)`` (``n_masks``, ``cells`` and ``seed`` are then unused;
        ``p`` still normalises).
    """

    name = "rise"
    path: Path = "forward"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 2000,
        cells: int = 7,
        p: float = 0.5,
        batch_size: int = 128,
        seed: int = 0,
        masks: torch.Tensor | None = None,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model, eval_mode=eval_mode)
        self.n_masks = _positive_int("n_masks", n_masks)
        self.cells = _positive_int("cells", cells)
        self.p = _probability(p)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.seed = _int_seed(seed)
        if masks is not None:
            if not isinstance(masks, torch.Tensor):
                raise InputTypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
            if masks.dim() != 3 or masks.shape[0] == 0 or not masks.dtype.is_floating_point:
                raise InputError(
                    "masks must be a non-empty floating tensor (N, H, W), got "
                    f"{masks.dtype} of shape {tuple(masks.shape)}"
                )
        self.masks = masks

    def _mask_batches(
        self, size: tuple[int, int], dtype: torch.dtype, device: torch.device
    ) -> Iterator[torch.Tensor]:
        if self.masks is not None:
            if tuple(self.masks.shape[1:]) != size:
                raise InputError(
                    f"masks of shape {tuple(self.masks.shape)} do not fit images of size {size}"
                )
            masks = self.masks.to(device=device, dtype=dtype)
            for start in range(0, masks.shape[0], self.batch_size):
                yield masks[start : start + self.batch_size]
            return
        generator = torch.Generator().manual_seed(self.seed)
        grids, shifts = _draw_grids(self.n_masks, self.cells, self.p, generator)
        # Rendered one batch at a time: N full-size masks can be large (2000 x 224^2 floats).
        for start in range(0, self.n_masks, self.batch_size):
            stop = start + self.batch_size
            yield _render(grids[start:stop], shifts[start:stop], size, dtype, device)

    def _attribute(self, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = inputs.shape
        dtype = torch.promote_types(inputs.dtype, torch.float32)
        saliency = torch.zeros(batch, height * width, dtype=dtype, device=inputs.device)
        count = 0
        with torch.no_grad():
            for masks in self._mask_batches((height, width), inputs.dtype, inputs.device):
                count += masks.shape[0]
                flat = masks.reshape(masks.shape[0], -1).to(dtype)  # (n, H*W)
                for b in range(batch):
                    masked = inputs[b] * masks[:, None]  # (n, C, H, W)
                    logits = logits_of(self.model(masked))
                    probs = logits.to(dtype).softmax(dim=1)[:, classes[b]]  # (n,)
                    saliency[b] += probs @ flat
        saliency /= count * self.p
        return saliency.view(batch, 1, height, width).to(inputs.dtype)


BASELINES: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (IntegratedGradients, GuidedBackprop, Occlusion, KernelSHAP, LIME, RISE)
}
"""The baseline explainer classes by name (each is also in the registry)."""
