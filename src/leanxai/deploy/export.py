"""One ONNX graph with the model and its Grad-CAM heatmap, checked against PyTorch before writing.

Why this is possible at all: ``aten::grad`` does not export, and a gradient traced once is baked
into the graph as a constant (the exported model then returns the same heatmap for every input).
Grad-CAM needs only ``d score / d A`` at the target layer, and for two kinds of heads that gradient
is a plain function of the forward pass:

- ``"forward"``: the layer is followed by global average pooling and one linear layer, so
  ``d logit_k / d A = W[k] / (h * w)`` at every position (Zhou et al., 2016; the same fact as
  :class:`leanxai.GradCAM`'s forward path). The graph gathers the predicted class's weight row.
- ``"piecewise-linear"``: the layer is followed by (average pooling,) a flatten and a chain of
  linear layers and ReLUs (VGG-style heads). For ``logits = W2 relu(W1 flatten(P A) + b1) + b2``
  the gradient is ``P^T unflatten(W1^T (relu'(z1) * W2[k]))``, built from the ReLU masks of this
  very forward pass with matrix products; deeper chains repeat the step.

Any other head is refused with one line that names its first unsupported module. Before anything
is written, the graph is run by onnxruntime on inputs that differ from the tracing example and
compared with :meth:`leanxai.GradCAM.explain`, so a constant cannot slip through.

The graph's input ``pixels`` is what the model takes (already resized and normalised); size,
normalisation and class names are stored as ONNX metadata (``leanxai.*`` keys) for the runner in
:mod:`leanxai.deploy.runtime`, which needs no PyTorch.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, LayerError, UnsupportedLayerError
from leanxai.core.hooks import capture, eval_mode, record_outputs
from leanxai.core.layers import find_head_linear
from leanxai.core.models import logits_of
from leanxai.explainers.base import Explanation, normalize_maps
from leanxai.explainers.cam import CAMExplainer, GradCAM, GradCAMPlusPlus
from leanxai.io import atomic_write_bytes, check_writable

__all__ = [
    "METADATA_PREFIX",
    "OUTPUTS",
    "CAMGraph",
    "CheckResult",
    "ExportReport",
    "Int8Report",
    "build_cam_graph",
    "compare_int8",
    "export_onnx",
    "heatmap_agreement",
    "onnx_bytes",
    "quantize_int8",
]

logger = logging.getLogger(__name__)

HeadKind = Literal["forward", "piecewise-linear"]
Int8Mode = Literal["static", "dynamic"]

OUTPUTS: tuple[str, ...] = ("logits", "target", "heatmap", "cam")
"""The graph's outputs, in order: ``(B, K)``, ``(B,)`` int64, ``(B, H, W)``, ``(B, h, w)``."""

TARGET_INPUT = "requested_target"
"""The optional second input: ``(B,)`` int64 classes to explain, negative for the predicted one."""

METADATA_PREFIX = "leanxai."

OPSET = 17
_METHODS: dict[str, type[CAMExplainer]] = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
_SUPPORTED = (
    "global average pooling + one linear layer, or average pooling, flatten, "
    "linear layers and ReLUs"
)
# Agreement required between onnxruntime and PyTorch before a file is written (the float graph).
_CHECK_ATOL = 1e-4


# -- the head, as steps the graph can run backwards ------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One module of a piecewise-linear head, with what the backward step needs."""

    kind: Literal["pool", "flatten", "linear", "relu", "identity"]
    name: str  # module name ("" for a flatten done in the model's forward, not by a module)
    shape: tuple[int, ...] = ()  # per-sample input shape (flatten: to unflatten the gradient)


@dataclass(frozen=True)
class _Head:
    kind: HeadKind
    layer: str
    linear: str  # the last linear layer (its weight rows are the class scores' gradients)
    steps: tuple[_Step, ...] = ()


def _head_modules(model: nn.Module, layer: str, example: torch.Tensor) -> list[tuple[str, Any]]:
    """The leaf modules that ran after ``layer`` finished, in order, with their output shapes."""
    with torch.no_grad(), record_outputs(model) as seen:
        logits_of(model(example))
    ends = [i for i, record in enumerate(seen) if record.name == layer]
    if len(ends) != 1:
        raise LayerError(f"layer {layer!r} ran {len(ends)} times in one forward pass")
    after = seen[ends[0] + 1 :]
    return [
        (record.name, record)
        for record in after
        if not any(True for _ in record.module.children())
        and not record.name.startswith(layer + ".")
    ]


def _unsupported(layer: str, name: str, module: nn.Module) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"cannot export the heatmap: the head after layer {layer!r} contains {name!r} "
        f"({type(module).__name__}); supported heads are {_SUPPORTED} (never a gradient traced "
        "once); choose another --layer or explain this model in PyTorch"
    )


def _piecewise_head(
    model: nn.Module, layer: str, example: torch.Tensor, activation_shape: tuple[int, ...]
) -> _Head:
    """Read a head of pooling, flatten, linear, ReLU and dropout modules, or refuse it."""
    steps: list[_Step] = []
    shape = activation_shape[1:]  # per sample, (C, h, w)
    for name, record in _head_modules(model, layer, example):
        module = record.module
        out = record.shape[1:] if record.shape is not None else None
        if isinstance(module, _PASS_THROUGH):
            steps.append(_Step("identity", name, shape))
        elif isinstance(module, _POOLS) and len(shape) == 3:
            steps.append(_Step("pool", name, shape))
        elif isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) == (1, -1):
            steps.append(_Step("flatten", name, shape))
        elif isinstance(module, nn.Linear):
            if len(shape) > 1:  # the model flattened in its forward, without a module
                steps.append(_Step("flatten", "", shape))
                shape = (int(np.prod(shape)),)
            steps.append(_Step("linear", name, shape))
        elif isinstance(module, nn.ReLU) and len(steps) > 0:
            steps.append(_Step("relu", name, shape))
        else:
            raise _unsupported(layer, name, module)
        if out is None:
            raise _unsupported(layer, name, module)
        shape = tuple(out)
    if not steps or steps[-1].kind != "linear":
        what = f"ends in {steps[-1].name!r}" if steps else "has no modules"
        raise UnsupportedLayerError(
            f"cannot export the heatmap: the head after layer {layer!r} {what}; supported heads "
            f"are {_SUPPORTED}, ending in the linear layer that gives the logits"
        )
    return _Head("piecewise-linear", layer, steps[-1].name, tuple(steps))


def _pool_matrix(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """``(h*w, oh*ow)`` matrix M with ``pool(A).flatten(2) == A.flatten(2) @ M`` (average pools
    are linear and act on each channel alike)."""
    _, height, width = shape
    basis = torch.eye(height * width, dtype=torch.float64).reshape(-1, 1, height, width)
    with torch.no_grad():
        pooled = module(basis)  # average pools hold no parameters: float64 runs as is
    return pooled.reshape(height * width, -1)


# -- the graph -------------------------------------------------------------------------------------


class CAMGraph(nn.Module):
    """The model and its CAM in one module, written with operators that ONNX exports.

    ``forward(pixels[, requested_target]) -> (logits, target, heatmap, cam)``, the four outputs
    of :data:`OUTPUTS`, equal to ``GradCAM(model, layer).explain(pixels, target)``. Build it with
    :func:`build_cam_graph`, which reads and checks the head; the forward registers hooks on the
    model through :func:`leanxai.core.hooks.capture` for the call only.
    """

    def __init__(
        self,
        model: nn.Module,
        head: _Head,
        explainer: CAMExplainer,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.explainer = explainer
        self.input_size = input_size
        self._relus = [step.name for step in head.steps if step.kind == "relu"]
        self._pools: dict[str, torch.Tensor] = {}

    def _gradient(self, activations: torch.Tensor, rows: torch.Tensor, record: Any) -> torch.Tensor:
        """``d logit_target / d A`` ``(B, C, h, w)`` for a piecewise-linear head."""
        grad = rows  # (B, n_last): the last linear layer's rows for each sample's target
        for step in reversed(self.head.steps[:-1]):
            if step.kind == "relu":
                grad = grad * (record.outputs[step.name] > 0).to(grad.dtype)
            elif step.kind == "linear":
                weight = _weight(self.model, step.name)  # (out, in)
                grad = grad @ weight.to(grad.dtype)  # (B, in)
            elif step.kind == "flatten":
                grad = grad.reshape((-1, *step.shape))
            elif step.kind == "pool":
                matrix = self._pools[step.name].to(grad.dtype)  # (h*w, oh*ow)
                channels, height, width = step.shape
                grad = (grad.flatten(2) @ matrix.T).reshape(-1, channels, height, width)
        return grad.reshape(activations.shape[0], *activations.shape[1:])

    def forward(
        self, pixels: torch.Tensor, requested_target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        layer = self.head.layer
        with capture(self.model, [layer, *self._relus]) as record:
            logits = logits_of(self.model(pixels))  # (B, K)
        activations = record.outputs[layer]  # (B, C, h, w)
        target = logits.argmax(dim=1)  # (B,)
        if requested_target is not None:
            requested = requested_target.to(target.dtype)
            target = torch.where(requested < 0, target, requested)
        weight = _weight(self.model, self.head.linear)  # (K, n)
        rows = weight[target].to(activations.dtype)  # (B, n)
        height, width = activations.shape[2], activations.shape[3]
        if self.head.kind == "forward":
            channel_weights = self.explainer.constant_gradient_weights(
                activations, rows / (height * width)
            )  # (B, C)
        else:
            gradients = self._gradient(activations, rows, record)  # (B, C, h, w)
            channel_weights = self.explainer.cam_weights(activations, gradients)  # (B, C)
        cam = torch.bmm(channel_weights[:, None, :], activations.flatten(2))  # (B, 1, h*w)
        cam = cam.relu().reshape(-1, height, width)  # (B, h, w)
        heatmap = F.interpolate(
            cam[:, None].float(), size=self.input_size, mode="bilinear", align_corners=False
        )[:, 0]
        heatmap = normalize_maps(heatmap)  # (B, H, W)
        return logits, target, heatmap, cam


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    linear = model.get_submodule(name)
    assert isinstance(linear, nn.Linear)
    return linear.weight


def _explainer(model: nn.Module, method: str, layer: str | nn.Module | None) -> CAMExplainer:
    from leanxai.explainers import registry

    name = registry.get(method, "cnn").name
    if name not in _METHODS:
        raise InputError(
            f"method must be one of {', '.join(_METHODS)} to export a heatmap, got {method!r}"
        )
    return _METHODS[name](model, layer)


def _examples(
    input_size: tuple[int, int], channels: int, count: int, seed: int, dtype: torch.dtype
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, channels, *input_size, generator=generator).to(dtype)


def _in_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return 3


def build_cam_graph(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    layer: str | nn.Module | None = None,
    method: str = "gradcam",
    seed: int = 0,
) -> CAMGraph:
    """Read the model's head after the target layer and build the :class:`CAMGraph`.

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits (or a transformers ``ModelOutput``), in eval mode
        (dropout off: the graph is exported for inference).
    input_size
        ``(H, W)`` of ``pixels``; the heatmap has this size.
    layer
        The target layer (``None``: as :class:`leanxai.GradCAM` finds it).
    method
        ``"gradcam"`` or ``"gradcam++"`` (aliases as in the registry).
    seed
        Seed of the random inputs used to read and check the head.

    Raises
    ------
    UnsupportedLayerError
        The head is neither global average pooling + one linear layer nor a chain of (average
        pooling,) flatten, linear layers and ReLUs; the message names its first other module.
    LayerError
        The layer does not exist or is not a ``(B, C, h, w)`` map that runs once.
    """
    input_size = validate.int_pair("input_size", input_size)
    explainer = _explainer(model, method, layer)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    examples = _examples(input_size, _in_channels(model), 2, seed, dtype)
    with eval_mode(model):
        reference = explainer.explain(examples)
        layer_name = str(reference.layer)
        if reference.path == "forward":
            head_linear = find_head_linear(model)
            if head_linear is None:  # pragma: no cover - the forward path found one
                raise LayerError("the forward path needs a linear head")
            head = _Head("forward", layer_name, head_linear)
        else:
            with torch.no_grad(), capture(model, [layer_name]) as record:
                model(examples)
            activation_shape = tuple(record.outputs[layer_name].shape)
            head = _piecewise_head(model, layer_name, examples, activation_shape)
        graph = CAMGraph(model, head, explainer, input_size)
        for step in head.steps:
            if step.kind == "pool":
                graph._pools[step.name] = _pool_matrix(model.get_submodule(step.name), step.shape)
        _check_graph(graph, examples, reference)
    return graph


def _check_graph(graph: CAMGraph, inputs: torch.Tensor, reference: Explanation) -> None:
    """The graph in PyTorch must give the explainer's maps: else the head was misread."""
    with torch.no_grad():
        logits, target, heatmap, _ = graph(inputs)
    scale = max(1.0, float(reference.logits.abs().max()))
    if (
        not torch.equal(target, reference.target)
        or float((logits - reference.logits).abs().max()) > 1e-5 * scale
        or float((heatmap - reference.heatmap).abs().max()) > _CHECK_ATOL
    ):
        raise UnsupportedLayerError(
            f"cannot export the heatmap: the head after layer {graph.head.layer!r} does more than "
            f"its modules show (a function in the model's forward), so its gradient cannot be "
            f"rebuilt from them; supported heads are {_SUPPORTED}"
        )


# -- ONNX ------------------------------------------------------------------------------------------


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise InputError("ONNX export needs onnx: pip install leanxai[deploy]") from error
    return onnx


def _session(model_bytes: bytes) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise InputError("ONNX export needs onnxruntime: pip install leanxai[deploy]") from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_bytes(
    graph: CAMGraph,
    *,
    target_input: bool = False,
    model_only: bool = False,
    metadata: Mapping[str, Any] | None = None,
    opset: int = OPSET,
) -> bytes:
    """Export ``graph`` (or, with ``model_only``, its model alone: output ``logits``) to ONNX.

    The batch dimension is dynamic; ``H`` and ``W`` are those of ``graph.input_size``. With
    ``target_input`` the graph takes a second input ``requested_target`` ``(B,)`` int64 whose
    negative entries mean the predicted class; it defaults to ``[-1]`` (an initializer), so callers
    that do not feed it get the predicted class.
    """
    onnx = _require_onnx()
    model = graph.model
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    example = _examples(graph.input_size, _in_channels(model), 2, 1, dtype)
    module: nn.Module = _LogitsOnly(model) if model_only else graph
    args: tuple[torch.Tensor, ...] = (example,)
    inputs = ["pixels"]
    outputs = ["logits"] if model_only else list(OUTPUTS)
    axes: dict[str, dict[int, str]] = {"pixels": {0: "batch"}}
    if target_input and not model_only:
        args = (example, torch.full((2,), -1, dtype=torch.int64))
        inputs.append(TARGET_INPUT)
        axes[TARGET_INPUT] = {0: "batch"}
    for name in outputs:
        axes[name] = {0: "batch"}
    buffer = io.BytesIO()
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        try:
            torch.onnx.export(
                module,
                args,
                buffer,  # type: ignore[arg-type]  # file objects work; the hint says paths
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        except RuntimeError as error:  # torch.onnx.errors.OnnxExporterError among them
            # The model itself does not export (an operator ONNX lacks): say so in one line.
            text = " ".join(str(error).split("[Caused by")[0].split())
            raise UnsupportedLayerError(
                f"torch.onnx cannot export {type(model).__name__} at input size "
                f"{graph.input_size}: {text[:300]}"
            ) from error
    proto = onnx.load_model_from_string(buffer.getvalue())
    if target_input and not model_only:
        # A graph input with an initializer of the same name is an input with a default value.
        default = onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), TARGET_INPUT)
        proto.graph.initializer.append(default)
        for value in proto.graph.input:
            if value.name == TARGET_INPUT:
                value.type.tensor_type.shape.dim[0].dim_param = "target_batch"
    if metadata:
        onnx.helper.set_model_props(
            proto, {METADATA_PREFIX + key: _json(value) for key, value in metadata.items()}
        )
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(pixels))


def _run(session: Any, pixels: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
    """All outputs of a CAM graph for ``pixels``, in batches."""
    names = [output.name for output in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(pixels), batch):
        values = session.run(None, {"pixels": pixels[start : start + batch]})
        for name, value in zip(names, values, strict=True):
            parts[name].append(value)
    return {name: np.concatenate(value) for name, value in parts.items()}


@dataclass(frozen=True)
class CheckResult:
    """How far onnxruntime's outputs are from PyTorch's explainer, on inputs never traced."""

    inputs: int
    logits: float  # largest absolute difference
    heatmap: float  # largest absolute difference (heatmaps lie in [0, 1])
    cam: float  # largest absolute difference relative to the largest CAM value
    targets_equal: bool


def _check_onnx(graph: CAMGraph, model_bytes: bytes, count: int, seed: int) -> CheckResult:
    dtype = next(
        (p.dtype for p in graph.model.parameters() if p.is_floating_point()), torch.float32
    )
    inputs = _examples(graph.input_size, _in_channels(graph.model), count, seed + 2, dtype)
    with eval_mode(graph.model):
        reference = graph.explainer.explain(inputs)
    got = _run(_session(model_bytes), inputs.float().numpy())
    assert reference.cam is not None
    expected_cam = reference.cam.float().numpy()
    return CheckResult(
        inputs=count,
        logits=float(np.abs(got["logits"] - reference.logits.float().numpy()).max()),
        heatmap=float(np.abs(got["heatmap"] - reference.heatmap.numpy()).max()),
        cam=float(np.abs(got["cam"] - expected_cam).max())
        / max(1e-12, float(np.abs(expected_cam).max())),
        targets_equal=bool(np.array_equal(got["target"], reference.target.numpy())),
    )


# -- int8 ------------------------------------------------------------------------------------------


def _explanation_nodes(proto: Any) -> list[str]:
    """Names of the nodes that the logits do not depend on (the CAM's operators)."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    needed: set[str] = set()
    stack = ["logits"]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in needed:
            continue
        needed.add(node.name)
        stack.extend(node.input)
    return [node.name for node in proto.graph.node if node.name not in needed]


def _named(proto: Any) -> Any:
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    return proto


def quantize_int8(
    model_bytes: bytes,
    calibration: np.ndarray | None = None,
    *,
    per_channel: bool = True,
) -> tuple[bytes, Int8Mode]:
    """Quantise a CAM graph's model to int8 with onnxruntime's tools; the CAM stays float.

    With ``calibration`` (``(N, C, H, W)`` float32 inputs as the model takes them) the
    quantisation is static (QDQ, per-channel int8 weights, int8 activations calibrated with
    min-max); without it, dynamic (int8 weights, activations quantised at run time). The operators
    that compute the heatmap from the activation are excluded, so the int8 heatmap is the float
    CAM of the int8 model's activation.

    Returns
    -------
    bytes, mode
        The quantised model and ``"static"`` or ``"dynamic"``.
    """
    onnx = _require_onnx()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    proto = _named(onnx.load_model_from_string(model_bytes))
    exclude = _explanation_nodes(proto)
    with tempfile.TemporaryDirectory(prefix="leanxai-int8-") as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        onnx.save_model(proto, str(source))
        if calibration is not None:
            data = np.ascontiguousarray(calibration, dtype=np.float32)

            class _Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self._batches = iter(data[i : i + 1] for i in range(len(data)))

                def get_next(self) -> dict[str, np.ndarray] | None:
                    batch = next(self._batches, None)
                    return None if batch is None else {"pixels": batch}

            quantize_static(
                str(source),
                str(target),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
            mode: Int8Mode = "static"
        else:
            quantize_dynamic(
                str(source),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                nodes_to_exclude=exclude,
            )
            mode = "dynamic"
        quantized = onnx.load_model(str(target))
    # Keep the float file's metadata, and say what was done.
    props = {p.key: p.value for p in proto.metadata_props}
    props[METADATA_PREFIX + "int8"] = mode
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, props)
    return bytes(quantized.SerializeToString()), mode


def heatmap_agreement(a: np.ndarray, b: np.ndarray, percent: float = 10.0) -> np.ndarray:
    """``(B,)`` IoU of the top-``percent`` regions of two ``(B, H, W)`` heatmaps.

    Regions are :func:`leanxai.threshold.top_percent`'s (SimplifyGradCAM); IoU is
    ``|A ∩ B| / |A ∪ B|`` as in :mod:`leanxai.evaluate.localization`, and 1 when both are empty.
    """
    from leanxai.threshold import top_percent

    kept_a = top_percent(torch.from_numpy(np.asarray(a, dtype=np.float32)), percent) > 0
    kept_b = top_percent(torch.from_numpy(np.asarray(b, dtype=np.float32)), percent) > 0
    inter = (kept_a & kept_b).flatten(1).sum(1).double()
    union = (kept_a | kept_b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), 1.0).numpy()


@dataclass(frozen=True)
class Int8Report:
    """How the int8 graph compares with the float one on the calibration inputs.

    ``accuracy_float``/``accuracy_int8`` are ``None`` without labels; ``agreement`` is the share
    of inputs whose predicted class is the same; ``heatmap_iou`` the mean IoU of the top-10%
    regions (of each graph's own explained class), ``heatmap_iou_min`` the worst input's.
    """

    mode: Int8Mode
    inputs: int
    agreement: float
    heatmap_iou: float
    heatmap_iou_min: float
    accuracy_float: float | None = None
    accuracy_int8: float | None = None
    float_bytes: int = 0
    int8_bytes: int = 0

    @property
    def accuracy_change(self) -> float | None:
        """Accuracy of int8 minus float, in points of accuracy (``None`` without labels)."""
        if self.accuracy_float is None or self.accuracy_int8 is None:
            return None
        return self.accuracy_int8 - self.accuracy_float


def compare_int8(
    float_bytes: bytes,
    int8_bytes: bytes,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    mode: Int8Mode = "static",
) -> Int8Report:
    """Run both graphs on ``inputs`` and report accuracy (with ``labels``), agreement and IoU."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    reference = _run(_session(float_bytes), inputs)
    quantized = _run(_session(int8_bytes), inputs)
    iou = heatmap_agreement(reference["heatmap"], quantized["heatmap"])
    accuracy_float = accuracy_int8 = None
    if labels is not None:
        labels = np.asarray(labels)
        accuracy_float = float((reference["target"] == labels).mean())
        accuracy_int8 = float((quantized["target"] == labels).mean())
    return Int8Report(
        mode=mode,
        inputs=len(inputs),
        agreement=float((reference["target"] == quantized["target"]).mean()),
        heatmap_iou=float(iou.mean()),
        heatmap_iou_min=float(iou.min()),
        accuracy_float=accuracy_float,
        accuracy_int8=accuracy_int8,
        float_bytes=len(float_bytes),
        int8_bytes=len(int8_bytes),
    )


# -- the one call ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: Path
    layer: str
    head: HeadKind
    method: str
    input_size: tuple[int, int]
    bytes: int
    check: CheckResult
    int8: Int8Report | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: tuple[int, int],
    layer: str | nn.Module | None = None,
    method: str = "gradcam",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    labels: Mapping[int, str] | None = None,
    target_input: bool = False,
    int8: bool = False,
    calibration: torch.Tensor | np.ndarray | None = None,
    calibration_labels: Sequence[int] | np.ndarray | None = None,
    check_inputs: int = 4,
    overwrite: bool = False,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` and its Grad-CAM heatmap as one ONNX graph, checked, to ``path``.

    Parameters
    ----------
    model
        The classifier (its head must be one of the two kinds in the module docstring).
    path
        The ``.onnx`` file; not replaced unless ``overwrite``. Nothing is written on any failure.
    input_size
        ``(H, W)`` of the graph's ``pixels`` input (the batch is dynamic).
    layer, method
        As for :class:`leanxai.GradCAM` (``"gradcam"`` or ``"gradcam++"``).
    mean, std, labels
        How ``[0, 1]`` RGB images are normalised for the model, and class names: stored as
        metadata for the runner (``None``: feed ``[0, 1]`` pixels; no names).
    target_input
        Add the optional input ``requested_target`` ``(B,)`` (negative: the predicted class).
    int8
        Write the int8 model instead of the float one (:func:`quantize_int8`: static with
        ``calibration``, else dynamic); ``ExportReport.int8`` compares the two.
    calibration
        ``(N, C, H, W)`` model inputs for static quantisation and for the comparison.
    calibration_labels
        ``(N,)`` true classes of ``calibration``: the comparison then reports accuracy.
    check_inputs
        How many random inputs (never the tracing example) the float graph is checked on.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False (checked before any work).
    UnsupportedLayerError
        The head cannot be exported (one line naming its first unsupported module).
    InputError
        A bad argument, onnx/onnxruntime missing, or the exported graph disagreeing with PyTorch
        (a bug; the file is not written).
    """
    path = Path(path)
    check_writable([path], overwrite)
    check_inputs = validate.positive_int("check_inputs", check_inputs)
    _require_onnx()
    if calibration_labels is not None and calibration is None:
        raise InputError("calibration_labels needs calibration inputs")
    graph = build_cam_graph(model, input_size, layer=layer, method=method, seed=seed)
    size = graph.input_size
    metadata: dict[str, Any] = {
        "format": "leanxai-cam/1",
        "input_size": list(size),
        "mean": list(mean) if mean is not None else None,
        "std": list(std) if std is not None else None,
        "labels": {str(k): v for k, v in (labels or {}).items()},
        "layer": graph.head.layer,
        "head": graph.head.kind,
        "method": graph.explainer.name,
        "outputs": list(OUTPUTS),
        "target_input": TARGET_INPUT if target_input else "",
    }
    float_bytes = onnx_bytes(graph, target_input=target_input, metadata=metadata)
    check = _check_onnx(graph, float_bytes, check_inputs, seed)
    if not check.targets_equal or check.heatmap > _CHECK_ATOL or check.cam > _CHECK_ATOL:
        raise InputError(
            f"the exported graph disagrees with PyTorch on {check.inputs} inputs (heatmap "
            f"{check.heatmap:.2g}, logits {check.logits:.2g}, targets equal: "
            f"{check.targets_equal}); not written: a bug, please report it"
        )
    data = float_bytes
    report_int8 = None
    if int8:
        inputs = None
        if calibration is not None:
            inputs = torch.as_tensor(calibration).float().numpy()
            if inputs.ndim != 4 or tuple(inputs.shape[2:]) != size:
                raise InputError(
                    f"calibration must be (N, C, {size[0]}, {size[1]}), got {tuple(inputs.shape)}"
                )
        data, mode = quantize_int8(float_bytes, inputs)
        compare_on = inputs
        if compare_on is None:
            compare_on = _examples(size, _in_channels(model), 16, seed + 3, torch.float32).numpy()
        labels_array = None if calibration_labels is None else np.asarray(calibration_labels)
        report_int8 = compare_int8(float_bytes, data, compare_on, labels_array, mode)
    atomic_write_bytes(path, data, overwrite=overwrite)
    logger.info("wrote %s (%d bytes)", path, len(data))
    return ExportReport(
        path=path,
        layer=graph.head.layer,
        head=graph.head.kind,
        method=graph.explainer.name,
        input_size=size,
        bytes=len(data),
        check=check,
        int8=report_int8,
        metadata={key: _json(value) for key, value in metadata.items()},
    )
