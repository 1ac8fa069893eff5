"""Explanations of vision transformers (ViT, DeiT, BEiT, Swin and plain ``nn.Module`` ViTs).

Three methods, registered for the ``vision_transformer`` family, all returning the
:class:`~leanxai.explainers.base.Explanation` the CNN methods return (``(B, H, W)`` heatmaps in
``[0, 1]``), so thresholds, overlays, the evaluation suite and the CLI work on them unchanged:

- :class:`TokenGradCAM`: Grad-CAM over a block's token states, the patch tokens laid out on their
  grid (class, distillation and register tokens dropped; Swin's merged grids recognised), with
  the exact forward path of :mod:`leanxai.explainers.cam` where the head mean-pools tokens into
  one linear layer;
- :class:`AttentionRollout` (Abnar & Zuidema, 2020);
- :class:`GradientWeightedRollout` (Chefer, Gur & Wolf, 2021).

No configuration: the patch grid is read from the patch embedding's output (the last convolution
before the first token sequence, so a convolutional stem is recognised), token counts are
factored into that grid (plus up to :data:`MAX_EXTRA_TOKENS` leading class/register tokens) or a
grid merged by Swin's patch merging, attention probabilities are read from the attention modules
(:mod:`leanxai.explainers.attention`; transformers models are switched to eager attention for the
call and restored), and what the head reads is checked on the model's own numbers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, LayerError, LeanXAIError
from leanxai.core.hooks import capture, eval_mode, module_calls, record_outputs
from leanxai.core.layers import ModuleTree, find_head_linear, module_tree, resolve_layer
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers import registry
from leanxai.explainers.attention import (
    AttentionCall,
    DenseLayout,
    HeadFusion,
    WindowLayout,
    attention_modules,
    attention_rollout,
    eager_attention,
    gradient_weighted_rollout,
)
from leanxai.explainers.base import Explainer, Explanation, check_images, normalize_maps_
from leanxai.explainers.baselines import RISE, IntegratedGradients, Occlusion
from leanxai.explainers.registry import register

__all__ = [
    "MAX_EXTRA_TOKENS",
    "AttentionRollout",
    "GradientWeightedRollout",
    "TokenGradCAM",
    "token_grid",
]

MAX_EXTRA_TOKENS = 8
"""Most leading non-patch tokens recognised (class, distillation and register tokens)."""

PathOption = Literal["auto", "forward", "autograd"]
Pooling = Literal["all", "patches", "token"]


def token_grid(
    tokens: int, patch_grid: tuple[int, int], name: str = "the layer"
) -> tuple[int, int, int]:
    """``(extra, h, w)``: ``tokens`` as ``extra`` leading tokens plus an ``h x w`` patch grid.

    The grid is the patch embedding's ``patch_grid`` (with up to :data:`MAX_EXTRA_TOKENS` extra
    tokens) or that grid halved by patch merging (rounding up, as Swin pads odd sides), without
    extra tokens.

    Raises
    ------
    LayerError
        When ``tokens`` is neither.
    """
    h0, w0 = patch_grid
    if 0 <= tokens - h0 * w0 <= MAX_EXTRA_TOKENS:
        return tokens - h0 * w0, h0, w0
    h, w, merged = h0, w0, []
    while h * w > tokens and (h > 1 or w > 1):
        h, w = -(-h // 2), -(-w // 2)
        merged.append(f"{h}x{w}")
        if h * w == tokens:
            return 0, h, w
    raise LayerError(
        f"{name} has {tokens} tokens, which is not the {h0}x{w0} patch grid plus at most "
        f"{MAX_EXTRA_TOKENS} class/register tokens, nor a merged grid "
        f"({', '.join(merged) or 'none'}): its tokens do not form a grid"
    )


def _square_grid(tokens: int) -> tuple[int, int] | None:
    """The patch grid of a model without a convolutional patch embedding: square, fewest extras."""
    for extra in range(MAX_EXTRA_TOKENS + 1):
        side = math.isqrt(tokens - extra) if tokens > extra else 0
        if side > 1 and side * side == tokens - extra:
            return side, side
    return None


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)) or (
        "Norm" in type(module).__name__
    )


@dataclass
class _Facts:
    """What one explainer learned about its model's structure at one input size."""

    tree: ModuleTree
    size: tuple[int, ...]
    patch_grid: tuple[int, int]
    stride: tuple[int, int]
    attention: list[str]
    last_token_layer: str | None
    default_layer: str | None
    pooling: Pooling | None = None  # what the head reads, once known
    verified: dict[str, bool] = field(default_factory=dict)


class _VisionTransformerExplainer(Explainer):
    """Shared mechanics: validation, discovery of the patch grid and layers, the model call."""

    name = "vision_transformer"

    def __init__(self, model: nn.Module, *, interpolate: bool = False, eval_mode: bool = True):
        super().__init__(model)
        self.interpolate = validate.instance("interpolate", interpolate, bool)
        self.eval_mode = eval_mode
        self._facts: _Facts | None = None

    # -- the model call ---------------------------------------------------------------------------

    def _call(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's ``(B, K)`` logits; an input size it cannot take is one clear line."""
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate else {}
        try:
            logits = logits_of(self.model(inputs, **kwargs))
        except LeanXAIError:
            raise
        except TypeError as error:
            if self.interpolate and "interpolate_pos_encoding" in str(error):
                raise InputError(
                    f"interpolate=True, but {type(self.model).__name__} has no "
                    "interpolate_pos_encoding option: resize the inputs to its size instead"
                ) from error
            raise
        except (RuntimeError, ValueError) as error:
            expected = _declared_size(self.model)
            if expected is not None and expected != tuple(inputs.shape[2:]):
                hint = (
                    "; pass interpolate=True to use its interpolation of position embeddings"
                    if _has_interpolation(self.model)
                    else ""
                )
                raise InputError(
                    f"{type(self.model).__name__} takes {expected[0]}x{expected[1]} inputs and "
                    f"cannot run on {inputs.shape[2]}x{inputs.shape[3]} (its position embeddings "
                    f"are for {expected[0]}x{expected[1]}): resize the inputs{hint}"
                ) from error
            raise
        if logits.shape[0] != inputs.shape[0]:
            raise InputError(
                f"the model returned {logits.shape[0]} rows of logits for a batch of "
                f"{inputs.shape[0]} inputs"
            )
        return logits

    # -- discovery --------------------------------------------------------------------------------

    def _discover(self, inputs: torch.Tensor, tree: ModuleTree) -> _Facts:
        """Patch grid, attention modules and token layers, learned once per tree and input size."""
        size = tuple(inputs.shape[1:])
        facts = self._facts
        if facts is not None and facts.tree == tree and facts.size == size:
            return facts
        # The facts depend on the input's size, not on the batch: one sample is enough, so a
        # first call (and leanxai.explain, which builds an explainer per call) pays two forward
        # passes of one image, not of the whole batch.
        inputs = inputs[:1]
        with torch.no_grad(), record_outputs(self.model) as seen:
            self._call(inputs)
        batch = inputs.shape[0]
        attention = attention_modules(self.model)
        patch_grid, stride = None, (1, 1)
        convolutions = [
            i
            for i, record in enumerate(seen)
            if isinstance(record.module, nn.Conv2d)
            and record.shape is not None
            and len(record.shape) == 4
            and record.shape[0] == batch
        ]
        if convolutions:
            # The patch embedding: the last convolution before the first token sequence (the
            # end of a convolutional stem, as in hybrid ViTs), else the first convolution.
            first_tokens = next(
                (
                    i
                    for i, r in enumerate(seen)
                    if r.shape is not None and len(r.shape) == 3 and r.shape[0] == batch
                ),
                len(seen),
            )
            stem = [i for i in convolutions if i < first_tokens]
            index = stem[-1] if stem else convolutions[0]
            shape, conv = seen[index].shape, seen[index].module
            assert shape is not None and isinstance(conv, nn.Conv2d)  # checked above
            patch_grid = (shape[2], shape[3])
            if index == convolutions[0]:
                stride = tuple(conv.stride)  # type: ignore[assignment]
            else:  # a stem: its overall stride, from the input's size
                stride = (-(-inputs.shape[2] // shape[2]), -(-inputs.shape[3] // shape[3]))
        if patch_grid is None:
            first = next(
                (r for r in seen if r.name in attention and r.input_shape is not None), None
            )
            grid = _square_grid(first.input_shape[-2]) if first and first.input_shape else None
            if grid is None:
                raise LayerError(
                    f"{type(self.model).__name__} has no convolutional patch embedding and its "
                    "token count is not a square grid plus class tokens: cannot lay tokens out "
                    "on the image"
                )
            patch_grid = grid
            side = inputs.shape[2] // grid[0], inputs.shape[3] // grid[1]
            stride = (max(1, side[0]), max(1, side[1]))
        last_token_layer = None
        for record in seen:
            if _is_token_record(record, batch, patch_grid):
                last_token_layer = record.name
        default = None
        if attention:
            block = attention[-1].rpartition(".")[0]
            prefix = block + "." if block else ""
            default = next(
                (
                    r.name
                    for r in seen
                    if r.name.startswith(prefix)
                    and _is_norm(r.module)
                    and _is_token_record(r, batch, patch_grid)
                ),
                None,
            )
        facts = _Facts(
            tree=tree,
            size=size,
            patch_grid=patch_grid,
            stride=stride,
            attention=attention,
            last_token_layer=last_token_layer,
            default_layer=default,
        )
        facts.pooling = "token"
        if last_token_layer is not None:
            with torch.no_grad(), capture(self.model, [last_token_layer]) as record:  # type: ignore[assignment]
                logits = self._call(inputs)
            facts.pooling = self._pooling(facts, record.outputs[last_token_layer], logits)  # type: ignore[attr-defined]
        self._facts = facts
        return facts

    def _pooling(self, facts: _Facts, tokens: torch.Tensor, logits: torch.Tensor) -> Pooling:
        """What the head reads of the last token layer: the mean of all tokens, of the patch
        tokens (then the forward path applies), or a token (the class token)."""
        name = find_head_linear(self.model)
        head = self.model.get_submodule(name) if name is not None else None
        if isinstance(head, nn.Linear) and tokens.dim() == 3:
            extra, _, _ = token_grid(tokens.shape[1], facts.patch_grid)
            candidates: list[tuple[Pooling, torch.Tensor]] = [("all", tokens)]
            if extra:
                candidates.append(("patches", tokens[:, extra:]))
            for pooling, kept in candidates:
                if _head_matches(head, kept.mean(dim=1), logits):
                    return pooling
        return "token"

    def _map(
        self, values: torch.Tensor, grid: tuple[int, int], facts: _Facts, size: torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cam`` ``(B, h, w)`` and the ``(B, H, W)`` heatmap: upsampled over the area the
        patches cover (a padded input's patches reach past its edge), cropped, normalised."""
        batch = values.shape[0]
        cam = values.reshape(batch, *grid)
        cover = (
            facts.patch_grid[0] * facts.stride[0],
            facts.patch_grid[1] * facts.stride[1],
        )
        if cover[0] < size[0] or cover[1] < size[1]:
            cover = (size[0], size[1])
        heatmap = F.interpolate(
            cam[:, None].float(), size=cover, mode="bilinear", align_corners=False
        )[:, 0, : size[0], : size[1]]
        return cam, normalize_maps_(heatmap.contiguous())


def _declared_size(model: nn.Module) -> tuple[int, int] | None:
    config = getattr(model, "config", None)
    for value in (
        getattr(config, "image_size", None),
        getattr(model, "image_size", None),
        getattr(model, "img_size", None),
    ):
        if isinstance(value, int):
            return value, value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return int(value[0]), int(value[1])
    return None


def _has_interpolation(model: nn.Module) -> bool:
    import inspect

    try:
        return "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _is_token_record(record: Any, batch: int, patch_grid: tuple[int, int]) -> bool:
    shape = record.shape
    if shape is None or len(shape) != 3 or shape[0] != batch:
        return False
    if record.input_shape is None or not record.input_shape or record.input_shape[0] != batch:
        return False
    if isinstance(record.module, (nn.Dropout, nn.Identity, nn.AdaptiveAvgPool1d)):
        return False
    try:
        token_grid(shape[1], patch_grid)
    except LayerError:
        return False
    return True


def _head_matches(head: nn.Linear, pooled: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether ``logits == head(pooled)`` on this batch (to float rounding)."""
    if head.in_features != pooled.shape[1] or head.out_features != logits.shape[1]:
        return False
    with torch.no_grad():
        predicted = F.linear(pooled.to(head.weight.dtype), head.weight, head.bias)
        error = float((predicted - logits).abs().amax())
        scale = float(logits.abs().amax())
    return error <= 1e-4 * scale + 1e-6


def _token_layer_error(layer: str, shape: tuple[int, ...], batch: int) -> LayerError:
    if len(shape) == 4:
        return LayerError(
            f"layer {layer!r} is not a token layer: it returns a {tuple(shape)} feature map; "
            "use method='gradcam' of the cnn family for convolutional layers, or a block's norm"
        )
    if len(shape) == 3 and shape[0] != batch:
        return LayerError(
            f"layer {layer!r} is not a token layer of the batch: it returns {tuple(shape)}, "
            f"{shape[0]} rows for {batch} inputs (windows?); choose a block or its norm"
        )
    return LayerError(
        f"layer {layer!r} is not a token layer: it returns shape {tuple(shape)}, not "
        "(batch, tokens, channels)"
    )


# -- token Grad-CAM --------------------------------------------------------------------------------


@register(
    "token_gradcam",
    families="vision_transformer",
    output="spatial map",
    backward="if needed",
    aliases=("gradcam", "grad_cam", "tokengradcam"),
    summary="Grad-CAM over a block's patch tokens; forward path for mean-pooled heads",
)
class TokenGradCAM(_VisionTransformerExplainer):
    """Grad-CAM (Selvaraju et al., 2017) over the token states of a transformer block.

    The layer's output ``(B, N, C)`` is split into its leading class/distillation/register tokens,
    which are dropped, and its patch tokens, laid out on their ``h x w`` grid; the channel weights
    are the mean over patch tokens of ``d score / d tokens`` and the map is the ReLU of the
    weighted sum, as for a ``(B, C, h, w)`` feature map. This is pytorch-grad-cam's recipe with
    its ``reshape_transform`` found from the model.

    Default layer. For a head that mean-pools the last tokens into one linear layer (Swin, GAP
    ViTs, BEiT without its pooling norm) it is the last token layer (Swin: the final norm, at the
    last stage's grid), where the exact forward path applies: the gradient of each class score is
    the class's weight row divided by the number of pooled tokens, so no backward pass runs;
    checked on every batch against the logits and once against autograd, as in
    :mod:`leanxai.explainers.cam`. A norm after the pooling (ConvNeXt-style, BEiT's pooler) is not
    linear and takes autograd. For a head that reads the class token, the patch tokens after the
    last block get no gradient at all (the class token is read before any of them is mixed in
    again), so their map is zero; the default is then the first norm of the last block (its
    input, normalised), where the last attention still mixes patch tokens into the class token.

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits or a transformers ``ModelOutput``.
    layer
        Dotted name or submodule of a token layer (output ``(B, N, C)``); ``None``: see above.
    path
        ``"auto"``, ``"forward"`` (a :class:`LayerError` when the head is not mean-pooling +
        linear) or ``"autograd"``.
    interpolate
        Pass ``interpolate_pos_encoding=True`` to a transformers model, so it takes inputs of
        another size than its position embeddings (its own interpolation).
    eval_mode
        Run the model in eval mode for the call, then restore every ``training`` flag.
    """

    name = "token_gradcam"

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        path: PathOption = "auto",
        interpolate: bool = False,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model, interpolate=interpolate, eval_mode=eval_mode)
        validate.choice("path", path, ("auto", "forward", "autograd"))
        self.layer = layer
        self.path = path

    def explain(self, inputs: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``inputs`` ``(B, C, H, W)`` for ``target`` (``None``: the predicted class).

        Returns
        -------
        Explanation
            ``heatmap`` ``(B, H, W)``, ``cam`` ``(B, h, w)`` on the layer's patch grid, ``layer``
            and ``path`` (``"forward"`` when no backward pass ran).

        Raises
        ------
        LayerError
            When the layer is not a token layer of the batch or its tokens do not form a grid.
        """
        inputs = check_images(inputs)
        tree = module_tree(self.model)
        with eval_mode(self.model, self.eval_mode, modules=tree[0]):
            facts = self._discover(inputs, tree)
            layer = self._layer(facts)
            graph = self.path == "autograd" or (
                self.path == "auto" and not facts.verified.get(layer)
            )
            tokens, logits = self._forward(inputs, layer, graph)
            extra, h, w = token_grid(tokens.shape[1], facts.patch_grid, f"layer {layer!r}")
            classes = resolve_target(target, logits.detach())
            weights = self._forward_weights(facts, layer, tokens, logits, classes)
            if weights is None:
                if not tokens.requires_grad:
                    tokens, logits = self._forward(inputs, layer, True)
                gradients = _gradient(tokens, logits, classes)
                weights = gradients[:, extra:].mean(dim=1)  # (B, C)
                path = "autograd"
            else:
                path = "forward"
            with torch.no_grad():
                patches = tokens.detach()[:, extra:]  # (B, h*w, C)
                values = torch.bmm(patches, weights[:, :, None].to(patches.dtype))[:, :, 0]
                cam, heatmap = self._map(values.relu_(), (h, w), facts, inputs.shape[2:])
        return Explanation(
            heatmap=heatmap,
            target=classes,
            logits=logits.detach(),
            method=self.name,
            cam=cam,
            layer=layer,
            path=path,  # type: ignore[arg-type]
        )

    def _layer(self, facts: _Facts) -> str:
        if self.layer is not None:
            return resolve_layer(self.model, self.layer)
        if facts.pooling in ("all", "patches") and facts.last_token_layer is not None:
            return facts.last_token_layer
        if facts.default_layer is None:
            raise LayerError(
                f"found no token layer in {type(self.model).__name__} to explain: pass "
                "layer=... (a block's norm, output (batch, tokens, channels))"
            )
        return facts.default_layer

    def _forward(
        self, inputs: torch.Tensor, layer: str, graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            with (
                torch.no_grad(),
                capture(self.model, [layer], grad_from=layer if graph else None) as record,
            ):
                logits = self._call(inputs)
        except LayerError as error:
            if "not a tensor" in str(error):
                raise LayerError(
                    f"layer {layer!r} is not a token layer: it does not return a tensor "
                    "(a block returning a tuple?); choose its norm or another module"
                ) from error
            raise
        calls = record.calls.get(layer, 0)
        if calls != 1:
            raise LayerError(
                f"layer {layer!r} ran {calls} times in one forward pass; choose a layer that "
                "runs once"
            )
        tokens = record.outputs[layer]
        batch = inputs.shape[0]
        if tokens.dim() != 3 or tokens.shape[0] != batch:
            raise _token_layer_error(layer, tuple(tokens.shape), batch)
        return tokens, logits

    def _forward_weights(
        self,
        facts: _Facts,
        layer: str,
        tokens: torch.Tensor,
        logits: torch.Tensor,
        classes: torch.Tensor,
    ) -> torch.Tensor | None:
        """``(B, C)`` Grad-CAM weights without a backward pass, or ``None``.

        Where ``logits == linear(mean(tokens))`` on this batch, the gradient of class ``k`` at
        every pooled token is ``W[k] / n`` (``n`` pooled tokens), and so is its mean over patch
        tokens. Verified once per layer against autograd on ``path="auto"``.
        """
        if self.path == "autograd" or facts.verified.get(layer) is False:
            return None
        rows, first = None, 0
        name = find_head_linear(self.model)
        head = self.model.get_submodule(name) if name is not None else None
        if isinstance(head, nn.Linear):
            extra, _, _ = token_grid(tokens.shape[1], facts.patch_grid)
            for first in (0, extra) if extra else (0,):
                kept = tokens.detach()[:, first:]
                if _head_matches(head, kept.mean(dim=1), logits.detach()):
                    rows = head.weight.detach().index_select(0, classes) / kept.shape[1]
                    break
        if rows is None:
            if self.path == "forward":
                raise LayerError(
                    f"path='forward' needs layer {layer!r} to be followed only by the mean over "
                    "tokens and one linear layer; use path='auto'"
                )
            return None
        if tokens.requires_grad:  # verify the analytic gradient once per layer
            exact = _gradient(tokens, logits, classes)
            constant = torch.zeros_like(exact)
            constant[:, first:] = rows[:, None, :]
            ok = torch.allclose(exact, constant, rtol=1e-3, atol=1e-6 * float(exact.abs().amax()))
            facts.verified[layer] = ok
            if not ok:
                return None
        return rows


def _gradient(tokens: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``d logits[b, classes[b]] / d tokens``, ``(B, N, C)``."""
    if not logits.requires_grad:
        raise LayerError(
            "the model's output does not depend on the token layer through a differentiable "
            "path; choose another layer"
        )
    with torch.enable_grad():
        score = logits.gather(1, classes[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, tokens, allow_unused=True)
    if gradients is None:
        raise LayerError("the model's output does not depend on the token layer")
    return gradients.detach()


# -- rollouts --------------------------------------------------------------------------------------


class _RolloutBase(_VisionTransformerExplainer):
    """Reads every attention block's probabilities in one forward pass."""

    gradients = False

    @contextlib.contextmanager
    def _recording(
        self, facts: _Facts
    ) -> Iterator[tuple[list[AttentionCall], dict[str, list[tuple[Any, Any]]]]]:
        from leanxai.explainers.attention import record_attention

        if not facts.attention:
            raise LayerError(
                f"found no attention module in {type(self.model).__name__} (nn.MultiheadAttention "
                "or a module named *Attention): cannot read its attention"
            )
        windowed = {}
        for name in facts.attention:
            parent = name.rpartition(".")[0]
            module = self.model.get_submodule(parent) if parent else self.model
            if hasattr(module, "shift_size") and hasattr(module, "window_size"):
                windowed[name] = parent
        with contextlib.ExitStack() as stack:
            stack.enter_context(eager_attention(self.model))
            calls = stack.enter_context(record_attention(self.model, facts.attention))
            blocks = {
                parent: stack.enter_context(module_calls(self.model, parent))
                for parent in windowed.values()
            }
            yield calls, {name: blocks[p] for name, p in windowed.items()}

    def _layouts(
        self,
        facts: _Facts,
        calls: list[AttentionCall],
        windowed: dict[str, list[tuple[Any, Any]]],
        batch: int,
    ) -> list[DenseLayout | WindowLayout]:
        layouts: list[DenseLayout | WindowLayout] = []
        seen: dict[str, int] = {}
        for call in calls:
            weights = call.weights
            rows, heads, n = weights.shape[0], weights.shape[1], weights.shape[-1]
            if rows % batch:
                raise LayerError(
                    f"module {call.name!r} returned attention of shape {tuple(weights.shape)}: "
                    f"{rows} rows is not a multiple of the batch ({batch}) times the windows"
                )
            if call.name not in windowed:
                if rows != batch:
                    raise LayerError(
                        f"module {call.name!r} returned attention for {rows} rows for a batch of "
                        f"{batch}; windows need a block with window_size and shift_size"
                    )
                token_grid(n, facts.patch_grid, f"attention module {call.name!r}")
                layouts.append(DenseLayout(n))
                continue
            index = seen.get(call.name, 0)
            seen[call.name] = index + 1
            block_input = windowed[call.name][index][0]
            parent = self.model.get_submodule(call.name.rpartition(".")[0])
            window = int(parent.window_size)  # type: ignore[arg-type]
            tokens = block_input.shape[1]
            _, h, w = token_grid(tokens, facts.patch_grid, f"the block of {call.name!r}")
            if window * window != n or rows != batch * (-(-h // window)) * (-(-w // window)):
                raise LayerError(
                    f"module {call.name!r} returned attention of shape {tuple(weights.shape)} "
                    f"with {heads} heads, which does not factor into windows of "
                    f"{window}x{window} over its {h}x{w} grid"
                )
            layouts.append(WindowLayout(h, w, window, int(parent.shift_size)))  # type: ignore[arg-type]
        if not layouts:
            raise LayerError(
                f"no attention module of {type(self.model).__name__} ran in the forward pass"
            )
        return layouts

    def _start(
        self, facts: _Facts, layout: DenseLayout | WindowLayout, batch: int, like: torch.Tensor
    ) -> torch.Tensor:
        """The row the head reads over the last block's tokens: the class token, or the mean."""
        tokens = layout.tokens
        start = like.new_zeros(batch, tokens)
        extra = 0 if isinstance(layout, WindowLayout) else token_grid(tokens, facts.patch_grid)[0]
        if facts.pooling == "token" and extra:
            start[:, 0] = 1.0
        elif facts.pooling == "patches" and extra:
            start[:, extra:] = 1.0 / (tokens - extra)
        else:
            start[:] = 1.0 / tokens
        return start

    def _explanation(
        self,
        facts: _Facts,
        vector: torch.Tensor,
        first: DenseLayout | WindowLayout,
        logits: torch.Tensor,
        classes: torch.Tensor,
        size: torch.Size,
    ) -> Explanation:
        if isinstance(first, WindowLayout):
            extra, h, w = 0, first.height, first.width
        else:
            extra, h, w = token_grid(first.tokens, facts.patch_grid)
        with torch.no_grad():
            cam, heatmap = self._map(vector[:, extra:].clamp(min=0), (h, w), facts, size)
        return Explanation(
            heatmap=heatmap,
            target=classes,
            logits=logits.detach(),
            method=self.name,
            cam=cam,
            layer=None,
            path="autograd" if self.gradients else "forward",
        )


@register(
    "rollout",
    families="vision_transformer",
    output="spatial map",
    backward="no",
    aliases=("attention_rollout",),
    summary="attention rollout (Abnar & Zuidema 2020), forward only",
)
class AttentionRollout(_RolloutBase):
    """Attention rollout (Abnar & Zuidema, ACL 2020).

    Each block's attention, fused over heads (mean, max or min), with the lowest
    ``discard_ratio`` of its entries zeroed and the identity added for the residual connection,
    rows normalised; the product over blocks, read from the row of the token the head reads (the
    class token; the mean over tokens for mean-pooled heads such as Swin's). For Swin, each
    block's windows are placed back on the token grid (shifts undone) and a merged token's
    relevance is shared equally by the four tokens it merged. The product is taken one row at a
    time from the last block back, so a call costs a forward pass plus ``O(N^2)`` per block.
    Deviation: the paper's ``0.5 A + 0.5 I`` is ``A + I`` here, the same after normalisation.

    Parameters
    ----------
    head_fusion
        ``"mean"`` (default), ``"max"`` or ``"min"`` over heads.
    discard_ratio
        Fraction in ``[0, 1)`` of each fused matrix's lowest entries set to zero (default 0).
    residual
        Add the identity before normalising (default ``True``).
    interpolate, eval_mode
        As in :class:`TokenGradCAM`.
    """

    name = "rollout"

    def __init__(
        self,
        model: nn.Module,
        *,
        head_fusion: HeadFusion = "mean",
        discard_ratio: float = 0.0,
        residual: bool = True,
        interpolate: bool = False,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model, interpolate=interpolate, eval_mode=eval_mode)
        self.head_fusion = validate.choice("head_fusion", head_fusion, ("mean", "max", "min"))
        self.discard_ratio = validate.fraction("discard_ratio", discard_ratio, high_open=True)
        self.residual = validate.instance("residual", residual, bool)

    def explain(self, inputs: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``inputs`` ``(B, C, H, W)``; ``target`` only names the class reported (rollout
        does not depend on the class)."""
        inputs = check_images(inputs)
        tree = module_tree(self.model)
        batch = inputs.shape[0]
        with eval_mode(self.model, self.eval_mode, modules=tree[0]):
            facts = self._discover(inputs, tree)
            with self._recording(facts) as (calls, windowed), torch.no_grad():
                logits = self._call(inputs)
            classes = resolve_target(target, logits)
            layouts = self._layouts(facts, calls, windowed, batch)
            with torch.no_grad():
                blocks = [
                    (c.weights.detach(), layout) for c, layout in zip(calls, layouts, strict=True)
                ]
                start = self._start(facts, layouts[-1], batch, calls[-1].weights)
                vector = attention_rollout(
                    blocks,
                    start,
                    head_fusion=self.head_fusion,  # type: ignore[arg-type]
                    discard_ratio=self.discard_ratio,
                    residual=self.residual,
                )
        return self._explanation(facts, vector, layouts[0], logits, classes, inputs.shape[2:])


@register(
    "grad_rollout",
    families="vision_transformer",
    output="spatial map",
    backward="yes",
    aliases=("gradient_weighted_rollout", "chefer", "generic_attention"),
    summary="gradient-weighted attention rollout (Chefer et al. 2021), one backward pass",
)
class GradientWeightedRollout(_RolloutBase):
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf, ICCV 2021).

    ``R = I``; for each block ``R += mean_heads((dA * A).clamp(min=0)) @ R``, where ``dA`` is the
    gradient of the explained class's logit with respect to the block's attention probabilities
    ``A``, all from one backward pass for the whole batch (the authors' code explains one image per
    call). The map is the row of the token the head reads (the class token; the mean over tokens for
    mean-pooled heads, where the paper has no rule), over the patch tokens. Swin's windows and
    merges are handled as in :class:`AttentionRollout`.

    Parameters
    ----------
    interpolate, eval_mode
        As in :class:`TokenGradCAM`.
    """

    name = "grad_rollout"
    gradients = True

    def __init__(
        self, model: nn.Module, *, interpolate: bool = False, eval_mode: bool = True
    ) -> None:
        super().__init__(model, interpolate=interpolate, eval_mode=eval_mode)

    def explain(self, inputs: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``inputs`` ``(B, C, H, W)`` for ``target`` (``None``: the predicted class)."""
        inputs = check_images(inputs)
        tree = module_tree(self.model)
        batch = inputs.shape[0]
        with eval_mode(self.model, self.eval_mode, modules=tree[0]):
            facts = self._discover(inputs, tree)
            leaf = inputs.detach().requires_grad_(True)  # a graph even when parameters are frozen
            with self._recording(facts) as (calls, windowed), torch.enable_grad():
                logits = self._call(leaf)
            classes = resolve_target(target, logits.detach())
            layouts = self._layouts(facts, calls, windowed, batch)
            weights = [call.weights for call in calls]
            reachable = [i for i, wt in enumerate(weights) if wt.requires_grad]
            if not logits.requires_grad or not reachable:
                raise LayerError(
                    "the model's output does not depend on its attention through a "
                    "differentiable path"
                )
            with torch.enable_grad():
                score = logits.gather(1, classes[:, None]).sum()
                found = torch.autograd.grad(
                    score, [weights[i] for i in reachable], allow_unused=True
                )
            gradients: list[torch.Tensor] = [torch.zeros_like(wt) for wt in weights]
            for i, gradient in zip(reachable, found, strict=True):
                if gradient is not None:
                    gradients[i] = gradient
            with torch.no_grad():
                blocks = [
                    (wt.detach(), g.detach(), layout)
                    for wt, g, layout in zip(weights, gradients, layouts, strict=True)
                ]
                start = self._start(facts, layouts[-1], batch, weights[-1].detach())
                vector = gradient_weighted_rollout(blocks, start)
        return self._explanation(
            facts, vector, layouts[0], logits.detach(), classes, inputs.shape[2:]
        )


# The model-agnostic baselines apply to vision transformers unchanged.
for _cls, _name, _backward, _summary in (
    (IntegratedGradients, "ig", "many", "Integrated Gradients (Captum), summed over channels"),
    (Occlusion, "occlusion", "no", "sliding-window occlusion (Captum), forward only"),
    (RISE, "rise", "no", "RISE random masks, forward only"),
):
    register(
        _name,
        families="vision_transformer",
        output="spatial map",
        backward=_backward,  # type: ignore[arg-type]
        summary=_summary,
    )(_cls)

# Rollout localises best on the zoo ViT and Swin at about one inference (README "Vision
# transformers"); token Grad-CAM failed on the Swin (IoU 0.047).
registry.set_default("vision_transformer", "rollout")
