"""Pruning plans: which weights to keep, chosen by relevance or by a baseline criterion.

A :class:`PrunePlan` is data only, a keep mask per weight parameter, so the same plan can be
inspected, saved as JSON, applied to copies of a model, and handed to the quantiser and the file
format. :func:`plan_pruning` makes one from per-weight scores (:func:`weight_scores`), and
:func:`apply_pruning` applies it to a copy of a model.

Two methods:

- ``"nonpositive"``: the rule of the relevance-guided compression paper this project reproduces
  (GitHub issue 5): prune every weight whose (signed) LRP relevance on the calibration set is
  zero or negative. The sparsity is whatever the relevance gives. (LRP relevance as a pruning
  criterion: Yeom et al., 2021, "Pruning by explaining", Pattern Recognition 115.)
- ``"sparsity"``: prune a given share of weights, lowest score first, per layer or globally.
"""

from __future__ import annotations

import base64
import copy
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from torch import nn

from leanxai.compress.relevance import LRPTarget, Reduction, Rule, weight_relevance
from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError

__all__ = [
    "CRITERIA",
    "METHODS",
    "RELEVANCE_CRITERIA",
    "Criterion",
    "PrunePlan",
    "apply_pruning",
    "plan_pruning",
    "prunable_weights",
    "reduction_of",
    "scores_from_relevance",
    "sparsity",
    "weight_scores",
]

logger = logging.getLogger(__name__)

Criterion: TypeAlias = Literal[
    "relevance_tempered",
    "relevance_magnitude",
    "relevance_l2",
    "relevance",
    "signed_relevance",
    "magnitude",
    "random",
]
CRITERIA: tuple[str, ...] = (
    "relevance_tempered",
    "relevance_magnitude",
    "relevance_l2",
    "relevance",
    "signed_relevance",
    "magnitude",
    "random",
)
"""Scores :func:`weight_scores` computes (see :data:`leanxai.compress.DEFAULT_CRITERION`)."""

RELEVANCE_CRITERIA: tuple[str, ...] = CRITERIA[:5]
"""The criteria computed from LRP relevance (they need calibration inputs)."""

METHODS: tuple[str, ...] = ("nonpositive", "sparsity")
"""Pruning methods of :func:`plan_pruning`."""

PLAN_FORMAT = "leanxai.prune_plan"
PLAN_VERSION = 1

_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _pack_mask(mask: torch.Tensor) -> str:
    bits = np.packbits(mask.detach().cpu().numpy().reshape(-1).astype(np.uint8), bitorder="little")
    return base64.b64encode(bits.tobytes()).decode("ascii")


def _unpack_mask(text: str, shape: Sequence[int]) -> torch.Tensor:
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    if raw.size != (count + 7) // 8:
        raise InputError(f"a packed mask of shape {list(shape)} needs {(count + 7) // 8} bytes")
    bits = np.unpackbits(raw, count=count, bitorder="little").astype(bool)
    return torch.from_numpy(bits.reshape(tuple(shape)))


@dataclass(frozen=True)
class PrunePlan:
    """Which weights of a model to keep.

    Attributes
    ----------
    masks : Mapping of str to torch.Tensor
        Weight parameter name -> boolean tensor of the weight's shape, True where the weight is
        kept. Parameters not named are left as they are.
    method : str
        ``"nonpositive"``, ``"sparsity"`` or ``"custom"``.
    sparsity : float
        The requested share of pruned weights (units, when structured); for ``"nonpositive"``
        the share that resulted. See :attr:`achieved_sparsity` for the share of weights.
    criterion : str or None
        Name of the score the plan ranks by (``"relevance"``, ``"magnitude"``, ...), for the
        record.
    scope : {"layer", "global"}
        Whether the share was applied per layer or over all named weights together.
    structured : bool
        Whether whole output units (rows of a Linear weight, filters of a Conv) were pruned;
        :func:`apply_pruning` then also zeroes their bias.
    metadata : Mapping of str to Any
        JSON-serialisable extras.
    """

    masks: Mapping[str, torch.Tensor]
    method: str = "custom"
    sparsity: float = 0.0
    criterion: str | None = None
    scope: str = "layer"
    structured: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, mask in self.masks.items():
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise InputTypeError(f"masks[{name!r}] must be a bool tensor, got {mask!r:.60}")

    @property
    def achieved_sparsity(self) -> float:
        """Share of the named weights the plan prunes."""
        total = sum(mask.numel() for mask in self.masks.values())
        kept = sum(int(mask.sum()) for mask in self.masks.values())
        return 0.0 if total == 0 else 1.0 - kept / total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form: masks as little-endian packed bits in base64."""
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "method": self.method,
            "sparsity": self.sparsity,
            "criterion": self.criterion,
            "scope": self.scope,
            "structured": self.structured,
            "metadata": dict(self.metadata),
            "masks": {
                name: {"shape": list(mask.shape), "bits": _pack_mask(mask)}
                for name, mask in self.masks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrunePlan:
        """The plan :meth:`to_dict` gave.

        Raises
        ------
        ValueError
            If ``data`` is not a prune plan of a version this leanxai reads.
        """
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise InputError(f"data is not a leanxai prune plan (format {PLAN_FORMAT!r})")
        version = data.get("version")
        if not isinstance(version, int) or version > PLAN_VERSION:
            raise InputError(
                f"prune plan version {version!r} is newer than this leanxai reads "
                f"({PLAN_VERSION}); upgrade leanxai"
            )
        try:
            masks = {
                str(name): _unpack_mask(entry["bits"], [int(d) for d in entry["shape"]])
                for name, entry in data["masks"].items()
            }
            return cls(
                masks=masks,
                method=str(data["method"]),
                sparsity=float(data["sparsity"]),
                criterion=None if data.get("criterion") is None else str(data["criterion"]),
                scope=str(data.get("scope", "layer")),
                structured=bool(data.get("structured", False)),
                metadata=dict(data.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(f"data is not a valid prune plan: {error}") from error


def reduction_of(criterion: str) -> Reduction:
    """The ``reduce`` of :func:`~leanxai.compress.weight_relevance` a relevance criterion uses."""
    if criterion == "signed_relevance":
        return "sum"
    return "l2" if criterion in ("relevance_l2", "relevance_tempered") else "absolute"


TEMPER_EXPONENT = 0.5
"""The exponent ``gamma`` of ``"relevance_tempered"``: chosen from 0.1, 0.25 and 0.5 as the best
mean accuracy gain over global magnitude pruning on seeds 0-4 of the dense network (50/70/90 %
sparsity, with and without fine-tuning) in an exploration before ``benchmarks/compression.py``
measured it on every seed and model."""


def _median(values: torch.Tensor) -> torch.Tensor:
    """The median of a non-empty tensor, the mean of the two middle values when their number is
    even (``torch.median`` returns the lower one)."""
    ordered = values.flatten().sort().values
    middle = (len(ordered) - 1) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle] + ordered[middle + 1]) / 2


def _untargeted_units(flow: torch.Tensor) -> torch.Tensor:
    """A bool mask of ``flow``'s shape, True on every weight of an output unit (row of a Linear
    weight, filter of a Conv) through which no relevance flowed."""
    rows = ~(flow.reshape(flow.shape[0], -1) > 0).any(1)  # (units,)
    return rows.reshape((-1,) + (1,) * (flow.dim() - 1)).expand(flow.shape)


def scores_from_relevance(
    criterion: str, relevance: Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """A relevance criterion's scores from :func:`~leanxai.compress.weight_relevance` computed
    with ``reduce=reduction_of(criterion)`` (see :func:`weight_scores`).

    For ``"relevance_tempered"``, the last entry of ``relevance`` is taken as the output layer
    (:func:`~leanxai.compress.weight_relevance` returns forward order, the order
    :func:`plan_pruning` also assumes). LRP starts from the explained class's logit only, so a
    row of that layer whose class no calibration input targeted (with the default target: no
    input was predicted as it) receives no relevance at all. That zero is not a measurement but
    a consequence of the choice of target: the calibration says nothing about the class. Such
    rows score their magnitude (relevance ratio 1, the layer's typical relevance), and the
    layer's median is taken over the targeted rows only. Without this, a 1,000-class ImageNet
    classifier calibrated on 40 crops that predict 10 classes had 990 rows at zero, a layer
    median of zero and 99.2 % of its weights pruned at 40 % global sparsity (issue 22).

    Hidden layers keep their zeros: there a unit with no relevance on any calibration input was
    observed and contributed nothing to any explained decision (a ReLU that never fired), which
    is what relevance pruning is meant to find. Where every class is targeted at least once (as
    with class-balanced calibration of the dense, MNIST and shapes models of
    ``benchmarks/compression.py``), the scores are those of the rule without this fallback,
    bit for bit.
    """
    weights = dict(model.named_parameters())
    if criterion == "relevance_magnitude":
        return {
            name: value * weights[name].detach().abs().to(value.dtype)
            for name, value in relevance.items()
        }
    if criterion != "relevance_tempered":
        return dict(relevance)
    output = next(reversed(list(relevance)), None)
    scores = {}
    for name, value in relevance.items():
        magnitude = weights[name].detach().abs().to(value.dtype)
        alive = magnitude > 0
        # relevance_l2 / |w| = sqrt(sum_n a_ni^2 s_nj^2): relevance per unit of weight.
        flow = torch.where(alive, value / torch.where(alive, magnitude, 1.0), 0.0)
        untargeted = _untargeted_units(flow) if name == output else torch.zeros_like(alive)
        observed = alive & ~untargeted
        typical = _median(flow[observed]) if observed.any() else flow.new_tensor(1.0)
        typical = typical.clamp_min(torch.finfo(flow.dtype).tiny)
        ratio = torch.where(untargeted, 1.0, flow / typical)
        scores[name] = magnitude * ratio**TEMPER_EXPONENT
    return scores


def prunable_weights(model: nn.Module) -> dict[str, torch.nn.Parameter]:
    """The weights of every Linear and Conv layer, by parameter name, in module order."""
    return {
        (f"{name}.weight" if name else "weight"): module.get_parameter("weight")
        for name, module in model.named_modules()
        if isinstance(module, _PRUNABLE)
    }


def weight_scores(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    criterion: Criterion = "relevance",
    target: LRPTarget = None,
    rule: Rule = "epsilon",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    batch_size: int = 64,
    seed: int = 0,
    skip_unsupported: bool = False,
) -> dict[str, torch.Tensor]:
    """A score per weight of every Linear and Conv layer; pruning removes low scores first.

    Parameters
    ----------
    model : nn.Module
        The model; left unchanged.
    inputs : torch.Tensor, optional
        Calibration inputs, needed by the relevance criteria.
    criterion : str, default "relevance"
        ``"relevance_tempered"``: ``|w_ij| (rho_ij / median rho of the layer) ^ gamma`` with
        ``rho_ij = sqrt(sum_n a_ni^2 s_nj^2)``, the L2 relevance below per unit of weight, and
        ``gamma =`` :data:`TEMPER_EXPONENT`: magnitude, modulated by how much relevance flows
        through the connection compared with the rest of its layer; made for
        ``scope="global"`` (the layer median makes layers comparable), the default of
        :func:`~leanxai.compress.compress`. Rows of the output layer whose class no
        calibration input targeted carry no relevance and score ``|w_ij|`` (ratio 1); the
        output layer's median is taken over the other rows (see
        :func:`scores_from_relevance`).
        ``"relevance_magnitude"``: the absolute relevance below times ``|w|``, i.e.
        ``|w_ij|^2 sum |a_i| |s_j|``: relevance weighted by magnitude, the best per-layer
        relevance criterion of ``benchmarks/compression.py``. ``"relevance_l2"``: the L2 norm
        over samples of each sample's relevance of the weight,
        ``sqrt(sum_n (a_ni w_ij s_nj)^2) = |w_ij| sqrt(sum_n a_ni^2 s_nj^2)`` (``reduce="l2"`` of
        :func:`~leanxai.compress.weight_relevance`), Wanda's ``|w| ||a||_2`` (Sun et al., 2024)
        with LRP's relevance per unit of output ``s_j = R_j / z_j`` in the norm.
        ``"relevance"``: LRP relevance summed over samples as ``sum |a_i w_ij s_j|``, how much
        relevance flows through the weight (``reduce="absolute"``).
        ``"signed_relevance"``: the signed sum, the paper's quantity. ``"magnitude"``:
        ``|w|``. ``"random"``: uniform noise from ``seed``, a baseline. ``target="all"`` with a
        relevance criterion gives all-class relevance.
    target, rule, epsilon, gamma, batch_size, skip_unsupported
        As in :func:`~leanxai.compress.weight_relevance`.
    seed : int, default 0
        Seed of the ``"random"`` criterion (a private generator).

    Returns
    -------
    dict of str to torch.Tensor
        Weight parameter name -> scores of the weight's shape, in forward (relevance) or module
        order.
    """
    if criterion in RELEVANCE_CRITERIA:
        if inputs is None:
            raise InputError(f"criterion={criterion!r} needs calibration inputs; got inputs=None")
        relevance = weight_relevance(
            model,
            inputs,
            target,
            rule=rule,
            epsilon=epsilon,
            gamma=gamma,
            batch_size=batch_size,
            reduce=reduction_of(criterion),
            skip_unsupported=skip_unsupported,
        )
        return scores_from_relevance(criterion, relevance, model)
    weights = prunable_weights(model)
    if criterion == "magnitude":
        return {name: weight.detach().abs().clone() for name, weight in weights.items()}
    if criterion == "random":
        generator = torch.Generator().manual_seed(seed)
        return {
            name: torch.rand(weight.shape, generator=generator, dtype=torch.float64)
            for name, weight in weights.items()
        }
    raise InputError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """A bool mask over ``scores`` (1-D) that is False at the ``count`` lowest (ties by index)."""
    keep = torch.ones(scores.shape, dtype=torch.bool)
    if count > 0:
        order = torch.sort(scores.detach().double().cpu(), stable=True).indices
        keep[order[:count]] = False
    return keep


EMPTIED_SHARE = 0.1
""":func:`plan_pruning` with ``scope="global"`` warns when a layer keeps less than this share of
the share the whole plan keeps (at 40 % sparsity: a layer that keeps under 6 % of its weights)."""


def _warn_emptied(masks: Mapping[str, torch.Tensor]) -> None:
    """Warn about layers a global ranking all but empties (issue 22: a 1,000-class classifier
    lost 99.2 % of its weights at 40 % global sparsity)."""
    total = sum(mask.numel() for mask in masks.values())
    kept = sum(int(mask.sum()) for mask in masks.values()) / max(total, 1)
    emptied = {
        name: 1.0 - float(mask.float().mean())
        for name, mask in masks.items()
        if mask.numel() and float(mask.float().mean()) < EMPTIED_SHARE * kept
    }
    if emptied:
        worst = sorted(emptied.items(), key=lambda item: -item[1])
        listed = ", ".join(f"{name} ({share:.1%})" for name, share in worst[:3])
        if len(worst) > 3:
            listed += f" and {len(worst) - 3} more layers"
        warnings.warn(
            f"global pruning removes almost all weights of {listed} while the model keeps "
            f"{kept:.1%} overall: their scores are on another scale than the other layers'. "
            'Consider scope="layer", another criterion or a lower sparsity',
            stacklevel=3,
        )


def plan_pruning(
    scores: Mapping[str, torch.Tensor],
    *,
    method: Literal["nonpositive", "sparsity"] = "sparsity",
    sparsity: float = 0.7,
    scope: Literal["layer", "global"] = "layer",
    structured: bool = False,
    protect: Iterable[str] | None = None,
    criterion: str | None = None,
) -> PrunePlan:
    """Decide which weights to prune from per-weight scores.

    Parameters
    ----------
    scores : Mapping of str to torch.Tensor
        Weight parameter name -> score of the weight's shape, from :func:`weight_scores` or
        :func:`~leanxai.compress.weight_relevance`; low scores are pruned first.
    method : {"nonpositive", "sparsity"}, default "sparsity"
        ``"nonpositive"``: the paper's rule, prune weights whose score is <= 0 (meant for signed
        relevance; with the z+ rule, which gives non-negative relevance, it prunes only weights
        that carry none). ``"sparsity"``: prune the share ``sparsity``, lowest scores first.
    sparsity : float, default 0.7
        Share to prune with ``method="sparsity"``, in ``[0, 1]``; rounded to whole weights (or
        units) per layer or over all.
    scope : {"layer", "global"}, default "layer"
        ``"layer"``: each layer loses the same share, so no layer is emptied by the scale of
        another's scores. ``"global"``: one ranking over all layers; relevance and magnitude
        scales differ between layers, so this tends to empty some layers.
    structured : bool, default False
        Prune whole output units (rows of a Linear weight, output filters of a Conv) ranked by
        the sum of their weights' scores (absolute relevance summed, with the default criterion).
        Each layer keeps at least one unit, and the units of protected layers are never pruned.
    protect : iterable of str, optional
        Layers (weight names) whose output units structured pruning never removes. Default: the
        last entry of ``scores``, the output layer in forward order. Ignored when not structured.
    criterion : str, optional
        Name of the score, recorded in the plan.

    Returns
    -------
    PrunePlan
        Keep masks for every entry of ``scores``.

    Raises
    ------
    ValueError
        For an unknown ``method`` or ``scope``, a ``sparsity`` outside ``[0, 1]``, empty
        ``scores``, or a protected name not in ``scores``.
    """
    validate.choice("method", method, METHODS)
    validate.choice("scope", scope, ("layer", "global"))
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise InputTypeError(f"sparsity must be a float, got {sparsity!r}")
    sparsity = validate.fraction("sparsity", sparsity)
    if not scores:
        raise InputError("scores is empty: no weight to plan for")
    for name, value in scores.items():
        if not isinstance(value, torch.Tensor) or value.dim() < 1:
            raise InputTypeError(f"scores[{name!r}] must be a tensor with at least one axis")
    names = list(scores)
    protected = {names[-1]} if protect is None else set(protect)
    unknown = sorted(protected - set(names))
    if structured and unknown:
        raise InputError(f"protect names weights not in scores: {unknown}")
    # Rank units (rows) when structured, single weights otherwise.
    flat: dict[str, torch.Tensor] = {}
    for name, value in scores.items():
        value = value.detach().double().cpu()
        flat[name] = value.reshape(value.shape[0], -1).sum(1) if structured else value.reshape(-1)
    candidates = [n for n in names if not (structured and n in protected)]
    keep: dict[str, torch.Tensor] = {n: torch.ones(flat[n].shape, dtype=torch.bool) for n in names}
    if method == "nonpositive":
        for name in candidates:
            keep[name] = flat[name] > 0
    elif scope == "layer":
        for name in candidates:
            keep[name] = _lowest(flat[name], round(sparsity * flat[name].numel()))
    elif candidates:
        pooled = torch.cat([flat[n] for n in candidates])
        total = round(sparsity * pooled.numel())
        pooled_keep = _lowest(pooled, total)
        sizes = [flat[n].numel() for n in candidates]
        for name, part in zip(candidates, pooled_keep.split(sizes), strict=True):
            keep[name] = part.clone()
    masks: dict[str, torch.Tensor] = {}
    for name, value in scores.items():
        unit_keep = keep[name]
        if structured and not bool(unit_keep.any()):
            unit_keep = unit_keep.clone()
            unit_keep[int(flat[name].argmax())] = True  # a layer keeps at least one unit
        if structured:
            shape = (value.shape[0],) + (1,) * (value.dim() - 1)
            mask = unit_keep.reshape(shape).expand(value.shape).clone()
        else:
            mask = unit_keep.reshape(value.shape)
        masks[name] = mask.to(value.device)
    if method == "nonpositive":
        units = [keep[n] for n in candidates]
        total_units = sum(k.numel() for k in units)
        sparsity = 0.0 if total_units == 0 else 1.0 - sum(int(k.sum()) for k in units) / total_units
    if method == "sparsity" and scope == "global":
        _warn_emptied(masks)
    plan = PrunePlan(
        masks=masks,
        method=method,
        sparsity=float(sparsity),
        criterion=criterion,
        scope=scope,
        structured=structured,
        metadata={"protected": sorted(protected)} if structured else {},
    )
    logger.debug("pruning plan %s: %.3f of weights pruned", method, plan.achieved_sparsity)
    return plan


def apply_pruning(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """A deep copy of ``model`` with the weights the plan prunes set to zero.

    Parameters
    ----------
    model : nn.Module
        Left unchanged.
    plan : PrunePlan
        Its mask names must be parameters of ``model`` with the masks' shapes. For a structured
        plan the bias entries of pruned units are zeroed too (a following BatchNorm's shift is
        left, so such a unit outputs a constant rather than vanishing).

    Returns
    -------
    nn.Module
        The pruned copy, with the original's ``training`` flags.

    Raises
    ------
    ValueError
        If a mask names no parameter of ``model`` or has another shape.
    """
    if not isinstance(plan, PrunePlan):
        raise InputTypeError(f"plan must be a PrunePlan, got {type(plan).__name__}")
    parameters = dict(model.named_parameters())
    for name, mask in plan.masks.items():
        if name not in parameters:
            raise InputError(f"plan names {name!r}, which is not a parameter of the model")
        if tuple(mask.shape) != tuple(parameters[name].shape):
            raise InputError(
                f"plan mask for {name!r} has shape {tuple(mask.shape)}, the parameter "
                f"{tuple(parameters[name].shape)}"
            )
    pruned = copy.deepcopy(model)
    copied = dict(pruned.named_parameters())
    with torch.no_grad():
        for name, mask in plan.masks.items():
            weight = copied[name]
            weight.masked_fill_(~mask.to(weight.device), 0)
            bias_name = name[: -len("weight")] + "bias" if name.endswith("weight") else None
            if plan.structured and bias_name in copied:
                dead = ~mask.reshape(mask.shape[0], -1).any(1)
                copied[bias_name].masked_fill_(dead.to(weight.device), 0)
    return pruned


def sparsity(model: nn.Module, names: Iterable[str] | None = None) -> float:
    """Share of exactly zero entries among a model's Linear and Conv weights.

    Parameters
    ----------
    model : nn.Module
        The model.
    names : iterable of str, optional
        Parameter names to count instead (any parameters).

    Returns
    -------
    float
        Zero entries over all entries, 0.0 when there are none.
    """
    if names is None:
        tensors = list(prunable_weights(model).values())
    else:
        names = list(names)
        parameters = dict(model.named_parameters())
        missing = [n for n in names if n not in parameters]
        if missing:
            raise InputError(f"names holds parameters the model does not have: {missing}")
        tensors = [parameters[n] for n in names]
    total = sum(t.numel() for t in tensors)
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return 0.0 if total == 0 else zeros / total
