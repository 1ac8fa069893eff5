"""Per-input explanations of recurrent classifiers: which time steps, and which features.

Every method here returns a :class:`SequenceExplanation`: a ``(B, T, F)`` time x feature map of
one input's evidence for the explained class, the ``(B, T)`` time map, the mask of valid steps,
the target and the logits. Padded steps (a ``mask`` or a
:class:`~torch.nn.utils.rnn.PackedSequence`) get no importance, so a sequence alone and the same
sequence padded in a batch get the same map.

Methods, registered for the family ``"recurrent"`` with output ``"time x feature map"``. Naming
scheme: a recurrent method that returns a per-input map ends in ``_map``; the bare names
(``deepactif``, ``ig``, ``deeplift``, ``shap``, ``ablation``) stay the data-set feature rankings
of :mod:`leanxai.explainers.deepactif`.

- ``deepactif_map`` (:class:`DeepACTIFMap`, the family's default): DeepACTIF's gated mapping
  (Hosp, 2025; see :class:`~leanxai.explainers.deepactif.DeepACTIF`), per input and per step,
  not aggregated; forward only;
- ``gxi_map`` (:class:`GradientXInput`): gradient x input, one backward pass;
- ``ig_map`` (:class:`SequenceIntegratedGradients`): Integrated Gradients (Captum);
- ``occlusion_map`` (:class:`TemporalOcclusion`): a window slid over time, per feature and over
  all features, forward only.

The gradient methods start the graph at the input (no parameter gradient is computed or left)
and, on CUDA, switch cuDNN off for the call only: cuDNN's RNN backward refuses to run in eval
mode, and switching the model to train mode instead would change its dropout.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError, LayerError
from leanxai.core.hooks import eval_mode, module_calls
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers import registry
from leanxai.explainers.deepactif import (
    DEFAULT_MAPPING,
    MAPPINGS,
    _check_batch_first,
    _check_mask,
    _check_sequences,
    _unpack,
)
from leanxai.explainers.recurrent_math import (
    _check_recurrent,
    _direction,
    _first_recurrent,
    _fused_states,
    _gated_map_scores,
    _processing_order,
    _recurrent_scores,
    _weight_dtype,
)

__all__ = [
    "DeepACTIFMap",
    "GradientXInput",
    "SequenceExplanation",
    "SequenceIntegratedGradients",
    "TemporalOcclusion",
]


# -- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceExplanation:
    """Where in a sequence, and in which feature, the evidence for a class lies.

    Attributes
    ----------
    attribution
        ``(B, T, F)`` the method's score of each step and feature, in the computation's floating
        dtype (the inputs' and the model's, promoted), zero at padded steps. Signed for
        gradient x input, Integrated Gradients and occlusion (positive: evidence for the class),
        ``>= 0`` for DeepACTIF.
    time_map
        ``(B, T)`` ``>= 0``, each step's importance: the sum over features of
        ``|attribution|``, except for occlusion, where it is ``|drop of the score|`` when all
        features of a window are occluded together. Zero at padded steps.
    mask
        ``(B, T)`` bool, true at valid steps (all true without a mask).
    target
        ``(B,)`` int64, the class explained.
    logits
        ``(B, K)`` the model's output for the inputs.
    method
        The registry name (``"deepactif_map"``...).
    family
        ``"recurrent"``.
    """

    attribution: torch.Tensor
    time_map: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    logits: torch.Tensor
    method: str
    family: str = "recurrent"

    @property
    def heatmap(self) -> torch.Tensor:
        """``(B, T, F)`` ``|attribution|``: the time x feature map, ``>= 0``."""
        return self.attribution.abs()

    @property
    def probabilities(self) -> torch.Tensor:
        """``(B,)`` softmax probability of the explained class."""
        probs = self.logits.float().softmax(dim=1)
        return probs.gather(1, self.target[:, None])[:, 0]

    def __len__(self) -> int:
        return int(self.attribution.shape[0])


# -- inputs and the model call --------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    """Validated inputs: batch-first ``x (B, T, F)``, the mask, and how the model takes them."""

    x: torch.Tensor  # (B, T, F), detached
    mask: torch.Tensor | None  # (B, T) bool
    packed: bool  # the model takes a PackedSequence
    batch_first: bool  # the model's layout

    @property
    def valid(self) -> torch.Tensor:
        if self.mask is None:
            return torch.ones(self.x.shape[:2], dtype=torch.bool, device=self.x.device)
        return self.mask


def _layout(model: nn.Module, batch_first: bool | None) -> bool:
    if batch_first is not None:
        return batch_first
    found = _first_recurrent(model)
    return True if found is None else bool(found[1].batch_first)


def _prepare(model: nn.Module, inputs: object, mask: object, batch_first: bool | None) -> _Batch:
    if isinstance(inputs, PackedSequence):
        if mask is not None:
            raise InputError("mask must be None when inputs is a PackedSequence")
        x, packed_mask = _unpack(inputs)
        if not x.dtype.is_floating_point:
            raise InputError(f"inputs must be floating, got dtype {x.dtype}")
        x = _check_sequences(x, batch_first=True)
        return _Batch(x.detach(), packed_mask, True, _layout(model, batch_first))
    layout = _layout(model, batch_first)
    x = _check_sequences(inputs, layout).detach()  # (B, T, F)
    checked = _check_mask(mask, x.shape[0], x.shape[1], x.device)
    return _Batch(x, checked, False, layout)


def _call(
    model: nn.Module, batch: _Batch, x: torch.Tensor, rows: torch.Tensor | None = None
) -> Any:
    """The model's raw output for batch-first ``x``, whose rows are ``batch``'s rows ``rows``
    (all when ``None``): with a mask the model is called as ``model(x, mask)``, for packed
    inputs as ``model(PackedSequence)``, otherwise as ``model(x)``."""
    mask = batch.mask
    if mask is not None and rows is not None:
        mask = mask[rows]
    laid = x if batch.batch_first else x.transpose(0, 1)
    if mask is None:
        return model(laid)
    if batch.packed:
        lengths = mask.sum(dim=1).cpu()
        return model(
            pack_padded_sequence(laid, lengths, batch_first=batch.batch_first, enforce_sorted=False)
        )
    return model(laid, mask)


def _logits(
    model: nn.Module, batch: _Batch, x: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    logits = logits_of(_call(model, batch, x, rows))
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise InputError(
            f"the model must return (B, K) logits for {x.shape[0]} sequences, got shape "
            f"{tuple(logits.shape)}"
        )
    return logits


@contextlib.contextmanager
def _backward_ready(device: torch.device) -> Iterator[None]:
    """cuDNN off for the block on CUDA (its RNN backward refuses eval mode); its flags are
    restored, also after an error. Nothing changes on other devices."""
    if device.type != "cuda":
        yield
        return
    with torch.backends.cudnn.flags(enabled=False):
        yield


def _result(
    method: str,
    attribution: torch.Tensor,
    batch: _Batch,
    target: torch.Tensor,
    logits: torch.Tensor,
    time_map: torch.Tensor | None = None,
) -> SequenceExplanation:
    valid = batch.valid
    attribution = attribution.detach()
    if batch.mask is not None:  # without one every step is valid: nothing to zero
        attribution = torch.where(valid[:, :, None], attribution, 0.0)
    if time_map is None:
        time_map = attribution.abs().sum(dim=2)
    time_map = time_map.detach()
    if batch.mask is not None:
        time_map = torch.where(valid, time_map, 0.0)
    return SequenceExplanation(
        attribution=attribution,
        time_map=time_map,
        mask=valid,
        target=target,
        logits=logits.detach(),
        method=method,
    )


class _SequenceExplainer:
    """What the sequence explainers share: the model, the layout and the one verb."""

    name = "sequence"

    def __init__(self, model: nn.Module, batch_first: bool | None = None) -> None:
        validate.instance("model", model, nn.Module)
        self.model = model
        self.batch_first = _check_batch_first(batch_first)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"

    def explain(
        self,
        inputs: torch.Tensor | PackedSequence,
        target: Target = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> SequenceExplanation:
        """Explain ``inputs`` for ``target`` (``None``: the predicted class).

        Parameters
        ----------
        inputs
            ``(B, T, F)`` (or ``(T, B, F)`` for a time-major model, see ``batch_first``)
            floating tensor, or a :class:`~torch.nn.utils.rnn.PackedSequence` (the model is then
            called with a packed sequence, and ``mask`` must be ``None``).
        target
            ``None``, an int, or one class per sequence.
        mask
            ``(B, T)`` bool, true at valid steps; the model is then called as
            ``model(inputs, mask)``.

        Returns
        -------
        SequenceExplanation
        """
        batch = _prepare(self.model, inputs, mask, self.batch_first)
        with eval_mode(self.model):
            return self._explain(batch, target)

    def _explain(self, batch: _Batch, target: Target) -> SequenceExplanation:
        raise NotImplementedError


# -- DeepACTIF per input --------------------------------------------------------------------------


def _map_scores(
    module: nn.RNNBase,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    states: torch.Tensor | None,
    mapping: str,
    norm: str,
) -> torch.Tensor:
    """DeepACTIF's per-step scores ``(B, T, F)`` of the first layer of ``module``: the same
    numbers as :func:`~leanxai.explainers.recurrent_math._recurrent_scores` (to rounding).

    ``states`` ``(B, T, D * P)``: the first layer's outputs from the model's own forward pass
    (zero at padded steps), which then need not be computed again; ``None``: one fused run per
    direction. The L2 norms come from
    :func:`~leanxai.explainers.recurrent_math._gated_map_scores`.
    """
    dtype = torch.promote_types(x.dtype, _weight_dtype(module))
    x = x.to(dtype)
    if mapping == "input_term" or norm != "l2" or module.proj_size > 0:
        return _recurrent_scores(module, x, mask, mapping, norm)  # type: ignore[arg-type]
    total: torch.Tensor | None = None
    directions = 2 if module.bidirectional else 1
    steps = x.shape[1]
    for reverse in (False, True)[:directions]:
        d = _direction(module, 0, reverse, dtype)
        # Without a mask the backward direction reads the steps in reverse: a flip, cheaper
        # than the gather and scatter that a mask's per-sequence orders need.
        flip = reverse and mask is None
        order = None if flip else _processing_order(mask, steps, reverse)
        if flip:
            read = x.flip(1)
        else:
            read = x if order is None else x.gather(1, order[:, :, None].expand_as(x).to(x.device))
        if states is None:
            run = _fused_states(module, d, read)  # (B, T, P)
        else:
            width = d.w_hh.shape[1]
            own = states[:, :, width * int(reverse) : width * (int(reverse) + 1)].to(dtype)
            # The backward direction's state at step t is the state of a run over the reversed
            # valid steps after reading t, so gathering in the read order gives that run.
            if flip:
                run = own.flip(1)
            elif order is None:
                run = own
            else:
                run = own.gather(1, order[:, :, None].expand_as(own).to(own.device))
        scores = _gated_map_scores(module.mode, d, read, run, mapping)  # (B, T, F)
        if flip:
            scores = scores.flip(1)
        elif order is not None:
            index = order[:, :, None].expand_as(scores).to(scores.device)
            scores = torch.zeros_like(scores).scatter_(1, index, scores)
        if mask is not None:
            scores = torch.where(mask[:, :, None], scores, 0.0)
        total = scores if total is None else total.add_(scores)
    assert total is not None
    return total


def _reusable_states(module: nn.RNNBase, output: Any, batch: _Batch) -> torch.Tensor | None:
    """The first layer's outputs ``(B, T, D * P)`` from the module's own call, when they are the
    states DeepACTIF's recurrence would compute: one layer, and either packed sequences or no
    mask. ``None`` otherwise (a mask the module did not see: it ran over the padding)."""
    if module.num_layers != 1 or not isinstance(output, tuple) or not output:
        return None
    first = output[0]
    steps = batch.x.shape[1]
    if isinstance(first, PackedSequence):
        padded, _ = pad_packed_sequence(first, batch_first=True, total_length=steps)
        return padded
    if batch.mask is not None or not isinstance(first, torch.Tensor):
        return None
    return first if module.batch_first else first.transpose(0, 1)


@registry.register(
    "deepactif_map",
    families="recurrent",
    output="time x feature map",
    backward="no",
    aliases=("deepactif_per_input",),
    summary="DeepACTIF per input: gated first-layer scores per step and feature, forward only",
)
class DeepACTIFMap(_SequenceExplainer):
    """DeepACTIF per input: each step's and feature's score, not aggregated.

    The scores are those of :class:`~leanxai.explainers.deepactif.DeepACTIF` before its
    aggregation (``A[b, t, f] = |x[t, f]| * ||J_t[:, f]||`` for the default ``"gated"``
    mapping, ``J_t`` the first recurrent layer's local Jacobian ``d h_t / d x_t``), so
    ``attribution.sum((0, 1)) / (number of valid steps)`` is DeepACTIF's ``"mean"`` importance
    and ``attribution.sum(1) / lengths`` its ``per_sample``. They do not depend on the class:
    the target only names what the logits say.

    Cost: one forward pass of the model, which also yields the logits; a hook keeps the first
    recurrent layer's input and, for a one-layer module called without a mask or with a
    :class:`~torch.nn.utils.rnn.PackedSequence`, its outputs, the previous states of every step,
    so the layer is not run again (otherwise once more, fused, from its weights). The gates of
    all steps then follow from one matrix product, and the L2 norms of the Jacobians' columns
    from a matrix product of the gates' coefficients' pairwise products (see
    :func:`~leanxai.explainers.recurrent_math._gated_map_scores`), never forming the ``(B, T,
    F, H)`` Jacobians. That is still several times the model's own forward pass on small
    recurrent classifiers: the gates of every step must be computed again (the fused kernel does
    not return them), which alone costs about as many operations as the recurrent layer's
    forward (see the README's cost notes).

    Parameters
    ----------
    model
        A recurrent classifier; its first ``nn.LSTM``/``nn.GRU``/``nn.RNN`` must read the
        features.
    layer
        Dotted name of that layer (default: the first recurrent module).
    mapping
        ``"gated"`` (default), ``"candidate"`` or ``"input_term"`` (see DeepACTIF).
    norm
        ``"l2"`` or ``"l1"`` over hidden units.
    batch_first
        Layout of tensor inputs (default: the recurrent layer's).
    """

    name = "deepactif_map"

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        mapping: str | None = None,
        norm: str = "l2",
        batch_first: bool | None = None,
    ) -> None:
        super().__init__(model, batch_first)
        if layer is not None and not isinstance(layer, str):
            raise InputTypeError(f"layer must be a dotted module name or None, got {layer!r}")
        if mapping is not None:
            validate.choice("mapping", mapping, MAPPINGS)
        validate.choice("norm", norm, ("l1", "l2"))
        self.layer = layer
        self.mapping = mapping or DEFAULT_MAPPING
        self.norm = norm

    def _module(self) -> tuple[str, nn.RNNBase]:
        if self.layer is None:
            found = _first_recurrent(self.model)
            if found is None:
                raise LayerError(f"{type(self.model).__name__} has no nn.LSTM, nn.GRU or nn.RNN")
            return found
        try:
            module = self.model.get_submodule(self.layer)
        except AttributeError as error:
            raise LayerError(
                f"layer {self.layer!r} does not exist in {type(self.model).__name__}"
            ) from error
        return self.layer, _check_recurrent(module, f"layer {self.layer!r}")

    def _explain(self, batch: _Batch, target: Target) -> SequenceExplanation:
        name, module = self._module()
        batch_size, steps, features = batch.x.shape
        if module.input_size != features:
            raise LayerError(
                f"recurrent layer {name!r} reads input_size={module.input_size} values per step "
                f"but inputs have F={features} features"
            )
        with torch.no_grad(), module_calls(self.model, name) as calls:
            logits = _logits(self.model, batch, batch.x)
        if not calls:
            raise LayerError(f"layer {name!r} did not run in the forward pass")
        seen, output = calls[0]
        layer_inputs = batch.x
        if isinstance(seen, torch.Tensor):
            seen = seen if module.batch_first else seen.transpose(0, 1)
            if tuple(seen.shape) != (batch_size, steps, features):
                raise LayerError(
                    f"recurrent layer {name!r} receives {tuple(seen.shape)} (as (B, T, F)), "
                    f"not the inputs' {(batch_size, steps, features)}; check batch_first"
                )
            layer_inputs = seen
        states = _reusable_states(module, output, batch)
        with torch.no_grad():
            scores = _map_scores(module, layer_inputs, batch.mask, states, self.mapping, self.norm)
        return _result(self.name, scores, batch, resolve_target(target, logits), logits)


# -- gradient methods -----------------------------------------------------------------------------


@registry.register(
    "gxi_map",
    families="recurrent",
    output="time x feature map",
    backward="yes",
    aliases=("gradient_x_input", "input_x_gradient"),
    summary="gradient x input per step and feature, one backward pass from the input",
)
class GradientXInput(_SequenceExplainer):
    """Gradient x input: ``x[t, f] * d y_c / d x[t, f]`` (Shrikumar et al., 2016).

    The graph starts at a detached copy of the inputs: ``torch.autograd.grad`` takes the
    target logits' gradient with respect to that copy only, so no parameter gradient is computed
    or stored. On CUDA, cuDNN is switched off for the call (and its flags restored): its RNN
    backward does not run in eval mode, and the model stays in eval mode (dropout off).
    """

    name = "gxi_map"

    def _explain(self, batch: _Batch, target: Target) -> SequenceExplanation:
        x = batch.x.clone().requires_grad_(True)
        with _backward_ready(x.device), torch.enable_grad():
            logits = _logits(self.model, batch, x)
            classes = resolve_target(target, logits.detach())
            score = logits.gather(1, classes[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, x)
        return _result(self.name, gradient * batch.x, batch, classes, logits)


@registry.register(
    "ig_map",
    families="recurrent",
    output="time x feature map",
    backward="many",
    aliases=("integrated_gradients_map",),
    summary="Integrated Gradients (Captum) per step and feature, zero baseline",
)
class SequenceIntegratedGradients(_SequenceExplainer):
    """Integrated Gradients (Sundararajan et al., 2017) through Captum, per step and feature.

    Zero baseline (the mean of standardised data), ``n_steps`` Gauss-Legendre points, the graph
    started at the scaled inputs; cuDNN off on CUDA for the call, as for
    :class:`GradientXInput`. Captum is imported when the method runs
    (``pip install leanxai[rnn]``).
    """

    name = "ig_map"

    def __init__(
        self,
        model: nn.Module,
        n_steps: int = 32,
        internal_batch_size: int | None = None,
        batch_first: bool | None = None,
    ) -> None:
        super().__init__(model, batch_first)
        self.n_steps = validate.positive_int("n_steps", n_steps)
        self.internal_batch_size = validate.optional_positive_int(
            "internal_batch_size", internal_batch_size
        )

    def _explain(self, batch: _Batch, target: Target) -> SequenceExplanation:
        try:
            from captum.attr import IntegratedGradients
        except ImportError as error:  # pragma: no cover - captum is a declared extra
            raise ImportError("ig_map needs Captum: pip install leanxai[rnn]") from error
        with torch.no_grad():
            logits = _logits(self.model, batch, batch.x)
        classes = resolve_target(target, logits)

        def forward(x: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
            rows = _Batch(x, mask[0] if mask else None, batch.packed, batch.batch_first)
            return _logits(self.model, rows, x)

        extra = None if batch.mask is None else (batch.mask,)
        with _backward_ready(batch.x.device), torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*required_grads has been set automatically"
            )
            attribution = IntegratedGradients(forward).attribute(
                batch.x.clone(),
                baselines=torch.zeros_like(batch.x),
                target=classes,
                additional_forward_args=extra,
                n_steps=self.n_steps,
                internal_batch_size=self.internal_batch_size,
            )
        return _result(self.name, attribution, batch, classes, logits)


# -- temporal occlusion ---------------------------------------------------------------------------


def _windows(lengths: list[int], window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(sample, start, width)`` of every occlusion window: starts ``0, stride, ...`` while the
    window fits inside the sample's valid steps, plus the window that ends at its last valid step;
    one window of all its steps when the sample is shorter than ``window``."""
    found: list[tuple[int, int, int]] = []
    for b, length in enumerate(lengths):
        width = min(window, length)
        starts = list(range(0, length - width + 1, stride))
        if starts[-1] != length - width:
            starts.append(length - width)
        found.extend((b, s, width) for s in starts)
    return found


@registry.register(
    "occlusion_map",
    families="recurrent",
    output="time x feature map",
    backward="no",
    aliases=("temporal_occlusion", "occlusion"),
    summary="temporal occlusion: a window slid over time, per feature and over all features",
)
class TemporalOcclusion(_SequenceExplainer):
    """Temporal occlusion: the drop of the target logit when a window of steps is replaced.

    A window of ``window`` steps slides over each sequence's valid steps with ``stride``
    (the last window ends at the last valid step; windows never reach into padding, so a
    sequence alone and padded in a batch are occluded alike). For each window, each feature
    alone (``attribution``) and all features together (``time_map``) are replaced by
    ``baseline``; a step's score is the mean drop ``y_c(x) - y_c(x')`` over the windows that
    cover it, as in Captum's ``Occlusion`` (Zeiler and Fergus, 2014). Forward passes only:
    ``(windows per sequence) x (F + 1)`` perturbed sequences, run ``batch_size`` at a time.

    Parameters
    ----------
    model
        The classifier.
    window, stride
        Window length and step, in time steps.
    baseline
        ``"mean"``: each sequence's own mean of each feature over its valid steps (default);
        ``"zero"``; or a number.
    per_feature
        Occlude each feature alone as well (``F`` times more passes). When false only the
        all-feature windows run: ``attribution`` is then zero and ``time_map`` holds the result.
    batch_size
        Perturbed sequences per forward pass.
    """

    name = "occlusion_map"

    def __init__(
        self,
        model: nn.Module,
        window: int = 5,
        stride: int = 1,
        baseline: str | float = "mean",
        per_feature: bool = True,
        batch_size: int = 512,
        batch_first: bool | None = None,
    ) -> None:
        super().__init__(model, batch_first)
        self.window = validate.positive_int("window", window)
        self.stride = validate.positive_int("stride", stride)
        if isinstance(baseline, str):
            validate.choice("baseline", baseline, ("mean", "zero"))
        else:
            validate.finite_float("baseline", baseline)
        self.baseline = baseline
        self.per_feature = bool(per_feature)
        self.batch_size = validate.positive_int("batch_size", batch_size)

    def _substitute(self, batch: _Batch) -> torch.Tensor:
        """``(B, F)`` the value that replaces each feature of each sequence."""
        x = batch.x
        if self.baseline == "mean":
            valid = batch.valid.to(x.dtype)[:, :, None]  # (B, T, 1)
            return (x * valid).sum(dim=1) / valid.sum(dim=1)
        value = 0.0 if self.baseline == "zero" else float(self.baseline)
        return torch.full((x.shape[0], x.shape[2]), value, dtype=x.dtype, device=x.device)

    def _explain(self, batch: _Batch, target: Target) -> SequenceExplanation:
        x = batch.x
        batch_size, steps, features = x.shape
        with torch.no_grad():
            logits = _logits(self.model, batch, x)
            classes = resolve_target(target, logits)
            reference = logits.gather(1, classes[:, None])[:, 0]  # (B,)
            substitute = self._substitute(batch)
            lengths = batch.valid.sum(dim=1).tolist()
            windows = torch.tensor(_windows(lengths, self.window, self.stride), device=x.device)
            groups = list(range(features)) if self.per_feature else []
            groups.append(features)  # all features
            group = torch.tensor(groups, device=x.device)
            # Every (window, group) pair: sample, start, width, group.
            rows = torch.cat(
                [windows.repeat_interleave(len(groups), 0), group.repeat(len(windows))[:, None]],
                dim=1,
            )
            time_index = torch.arange(steps, device=x.device)
            feature_index = torch.arange(features, device=x.device)
            sums = torch.zeros(batch_size, steps, features + 1, dtype=x.dtype, device=x.device)
            counts = torch.zeros_like(sums)
            for chunk in rows.split(self.batch_size):
                sample, start, width, which = chunk.unbind(1)
                in_time = (time_index >= start[:, None]) & (time_index < (start + width)[:, None])
                in_group = (feature_index == which[:, None]) | (which[:, None] == features)
                occluded = in_time[:, :, None] & in_group[:, None, :]  # (R, T, F)
                perturbed = torch.where(occluded, substitute[sample][:, None, :], x[sample])
                score = _logits(self.model, batch, perturbed, sample).gather(
                    1, classes[sample][:, None]
                )[:, 0]
                drop = (reference[sample] - score).to(x.dtype)  # (R,)
                column = which.clamp_max(features)
                cover = in_time.to(x.dtype)  # (R, T)
                flat = (sample * steps)[:, None] * (features + 1) + (
                    time_index[None, :] * (features + 1) + column[:, None]
                )  # (R, T) indices into sums viewed flat
                sums.view(-1).index_add_(0, flat.reshape(-1), (cover * drop[:, None]).reshape(-1))
                counts.view(-1).index_add_(0, flat.reshape(-1), cover.reshape(-1))
        means = sums / counts.clamp_min(1)
        attribution = means[:, :, :features]
        time_map = means[:, :, features].abs()
        return _result(self.name, attribution, batch, classes, logits, time_map)
