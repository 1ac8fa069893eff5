"""A compact file format for compressed models, on safetensors; loading never runs code.

Layout of a file (a safetensors file, so its header is JSON and its tensors raw bytes):

``__metadata__`` (strings):

- ``format``: ``"leanxai.compressed"``; ``format_version``: an integer, :data:`FORMAT_VERSION`. A
  file of a newer version is refused with a clear error.
- ``architecture``: JSON, a safe description of the module to rebuild, or ``null``. For an
  ``nn.Sequential`` of standard layers, a list of ``{"type": "Linear", "args": {...}}`` (nested
  Sequentials allowed); for a model of a registered architecture (:mod:`.architectures`: the
  zoo's models), ``{"type": <registered name>, "args": <its describe()>, "module": <the module
  that registers it>}``. The zoo's ``SmallCNN`` and ``VGGStyle`` omit ``module`` (it is
  ``leanxai.zoo.cnn``), as every file did before the registry, so their files are unchanged.
  Only allow-listed ``torch.nn`` layers and registered architectures are ever built, and only a
  module of leanxai is ever imported to register one. Anything else is ``null`` and loading
  needs a ``model`` skeleton.
- ``encodings``: JSON, state-dict key -> how it is stored (below); ``dtype``: the model's float
  dtype; ``sha256``: hash of every tensor's name and bytes and (from format version 2) of the
  other metadata entries, so flipped bytes are caught in the header as well as in the data.

Tensors, for a state-dict key ``k``:

- a quantised weight: ``k::mask`` (the kept entries as a little-endian packed bitmask, or as
  ``k::index`` indices of the kept or of the pruned entries, whichever is smallest; nothing when
  all are kept), ``k::group`` (with two or more bit widths: each kept entry's group, packed
  bits), then per group ``i``: ``k::codes{i}`` (int8 at 8 bits, int16 at 16 bits, otherwise
  offset codes bit-packed into uint8) and ``k::scales{i}`` (float32 per output channel);
- anything else (biases, BatchNorm parameters and statistics, unquantised weights): ``k`` as
  float16 or float32 (``float_dtype``), integer buffers as they are.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from leanxai.compress.architectures import architecture_of, build_architecture
from leanxai.compress.quantize import CompressedModel, QuantGroup, QuantizedTensor, dequantize
from leanxai.core.errors import InputError, InputTypeError, ModelLoadError
from leanxai.io import atomic_write_bytes, check_writable

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CompressedFileError",
    "describe_architecture",
    "float32_size",
    "load_compressed",
    "read_compressed",
    "save_compressed",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "leanxai.compressed"
FORMAT_VERSION = 2
"""Bumped whenever a change would make older readers misread a file."""

_FLOAT_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
_DTYPE_NAMES = {
    torch.float16: "float16",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
}


class CompressedFileError(ModelLoadError):
    """A compressed model file that is corrupt, truncated, of another format or a newer version."""


# Allowed layer types for rebuilt Sequentials, with the constructor arguments taken from a module.
def _conv_args(m: Any) -> dict[str, Any]:
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "dilation": m.dilation,
        "groups": m.groups,
        "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }


def _norm_args(m: Any) -> dict[str, Any]:
    return {
        "num_features": m.num_features,
        "eps": m.eps,
        "momentum": m.momentum,
        "affine": m.affine,
        "track_running_stats": m.track_running_stats,
    }


def _max_pool_args(m: Any) -> dict[str, Any]:
    return {
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "dilation": m.dilation,
        "ceil_mode": m.ceil_mode,
    }


def _avg_pool_args(m: Any) -> dict[str, Any]:
    return {
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "ceil_mode": m.ceil_mode,
        "count_include_pad": m.count_include_pad,
    }


def _no_args(m: Any) -> dict[str, Any]:
    return {}


_LAYERS: dict[str, tuple[type[nn.Module], Callable[[Any], dict[str, Any]]]] = {
    "Linear": (
        nn.Linear,
        lambda m: {
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
        },
    ),
    "Conv1d": (nn.Conv1d, _conv_args),
    "Conv2d": (nn.Conv2d, _conv_args),
    "BatchNorm1d": (nn.BatchNorm1d, _norm_args),
    "BatchNorm2d": (nn.BatchNorm2d, _norm_args),
    "ReLU": (nn.ReLU, _no_args),
    "LeakyReLU": (nn.LeakyReLU, lambda m: {"negative_slope": m.negative_slope}),
    "Tanh": (nn.Tanh, _no_args),
    "Sigmoid": (nn.Sigmoid, _no_args),
    "GELU": (nn.GELU, lambda m: {"approximate": m.approximate}),
    "Identity": (nn.Identity, _no_args),
    "Dropout": (nn.Dropout, lambda m: {"p": m.p}),
    "Flatten": (nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim}),
    "MaxPool1d": (nn.MaxPool1d, _max_pool_args),
    "MaxPool2d": (nn.MaxPool2d, _max_pool_args),
    "AvgPool1d": (nn.AvgPool1d, _avg_pool_args),
    "AvgPool2d": (nn.AvgPool2d, _avg_pool_args),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d, lambda m: {"output_size": m.output_size}),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, lambda m: {"output_size": m.output_size}),
}


# Architectures whose module a file does not record: the zoo's CNNs, which files named before
# the registry existed. Their descriptions keep that layout byte for byte, so their file sizes
# (the README's compression figures) and older readers are unchanged.
_IMPLIED_MODULES = {"SmallCNN": "leanxai.zoo.cnn", "VGGStyle": "leanxai.zoo.cnn"}


def _describe(model: nn.Module) -> dict[str, Any] | None:
    registered = architecture_of(model)
    if registered is not None:
        entry, arguments = registered
        description = {"type": entry.name, "args": _jsonable(arguments)}
        if _IMPLIED_MODULES.get(entry.name) != entry.module:
            description["module"] = entry.module
        return description
    if type(model) is nn.Sequential:
        layers = [_describe(child) for child in model]
        if any(layer is None for layer in layers):
            return None
        return {"type": "Sequential", "layers": layers}
    for name, (cls, args) in _LAYERS.items():
        if type(model) is cls:
            return {"type": name, "args": _jsonable(args(model))}
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _untuple(value: Any) -> Any:
    return tuple(_untuple(v) for v in value) if isinstance(value, list) else value


def _build(description: Any) -> nn.Module:
    """A module from a description: allow-listed layers and registered architectures only.

    Raises ValueError (a ``ModelLoadError`` for architectures) for anything else; nothing is
    evaluated, and only a module of leanxai is ever imported (see :mod:`.architectures`).
    """
    if not isinstance(description, dict) or not isinstance(description.get("type"), str):
        raise ValueError(f"not a layer description: {description!r:.80}")
    kind = description["type"]
    if kind == "Sequential":
        layers = description.get("layers")
        if not isinstance(layers, list):
            raise ValueError("a Sequential description needs a list of layers")
        return nn.Sequential(*[_build(layer) for layer in layers])
    args = description.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"arguments of {kind} must be a mapping")
    args = {str(k): _untuple(v) for k, v in args.items()}
    if kind in _LAYERS:
        return _LAYERS[kind][0](**args)
    module = description.get("module", _IMPLIED_MODULES.get(kind))
    return build_architecture(kind, args, module)


def describe_architecture(model: nn.Module) -> dict[str, Any] | None:
    """A JSON description from which :func:`load_compressed` can rebuild ``model``, or None.

    Covers ``nn.Sequential`` of standard layers (Linear, Conv1d/2d, BatchNorm1d/2d, ReLU,
    LeakyReLU, Tanh, Sigmoid, GELU, Identity, Dropout, Flatten, max/average/adaptive-average
    pooling; nested Sequentials, which may hold registered architectures), a single such layer,
    and models of a registered architecture (see :mod:`leanxai.compress.architectures`; the
    zoo's ``SmallCNN``, ``VGGStyle`` and ``RecurrentClassifier``). The description is checked
    by rebuilding it from its JSON form and comparing the module tree (names and types) and the
    state-dict keys and shapes; None when it does not match (a zoo model whose layers were
    changed after construction) or the model is anything else.
    """
    try:
        description = _describe(model)
        if description is None:
            return None
        description = json.loads(json.dumps(description))
    except (TypeError, ValueError) as error:  # describe() gave something that is not JSON
        logger.warning("%s cannot be described: %s", type(model).__name__, error)
        return None
    try:
        rebuilt = _build(description)
    except (TypeError, ValueError) as error:
        logger.debug("architecture description does not rebuild: %s", error)
        return None
    return description if _same_structure(model, rebuilt) else None


def _same_structure(model: nn.Module, rebuilt: nn.Module) -> bool:
    ours = [(name, type(module)) for name, module in model.named_modules()]
    theirs = [(name, type(module)) for name, module in rebuilt.named_modules()]
    if ours != theirs:
        return False
    ours_state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs_state = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    return ours_state == theirs_state


def float32_size(model: nn.Module) -> int:
    """Bytes of the model's state dict as a float32 safetensors file: the reference size.

    Floating-point tensors are cast to float32, other tensors kept; the size is that of the file
    :func:`safetensors.torch.save_file` would write, computed without writing one.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    state = {
        key: (value.float() if value.dtype.is_floating_point else value).detach().cpu().contiguous()
        for key, value in model.state_dict().items()
    }
    return len(save_safetensors(state))


# Bit packing ------------------------------------------------------------------------------------


def _pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative ints below ``2**width`` as a little-endian bit stream in uint8.

    Values outside ``[0, 2**width)`` are refused, never wrapped into the range.
    """
    values = np.asarray(values).reshape(-1)
    if values.size and (int(values.min()) < 0 or int(values.max()) >= 2**width):
        raise InputError(
            f"values from {int(values.min())} to {int(values.max())} do not fit in {width} bits "
            f"(0 to {2**width - 1})"
        )
    bits = (values.astype(np.uint32)[:, None] >> np.arange(width, dtype=np.uint32)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little")  # (n * width / 8,)


def _unpack_bits(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    if packed.size != (count * width + 7) // 8:
        raise ValueError(f"{count} values of {width} bits need {(count * width + 7) // 8} bytes")
    bits = np.unpackbits(packed, count=count * width, bitorder="little").reshape(count, width)
    return (bits.astype(np.int64) << np.arange(width, dtype=np.int64)).sum(axis=1)


def _index_dtype(count: int) -> torch.dtype:
    if count <= 2**8:
        return torch.uint8
    if count <= 2**15:
        return torch.int16
    return torch.int32


def _encode_quantized(key: str, q: QuantizedTensor) -> tuple[dict[str, Any], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    keep = q.keep.reshape(-1)
    n, kept = keep.numel(), int(keep.sum())
    index_dtype = _index_dtype(n)
    width = torch.empty((), dtype=index_dtype).element_size()
    options = {"bitmask": (n + 7) // 8, "kept": kept * width, "pruned": (n - kept) * width}
    mask_encoding = "dense" if kept == n else min(options, key=lambda k: options[k])
    if mask_encoding == "bitmask":
        tensors[f"{key}::mask"] = torch.from_numpy(
            np.packbits(keep.numpy().astype(np.uint8), bitorder="little")
        )
    elif mask_encoding in ("kept", "pruned"):
        where = keep if mask_encoding == "kept" else ~keep
        tensors[f"{key}::index"] = torch.nonzero(where).reshape(-1).to(index_dtype)
    groups = [g for g in q.groups if g.codes.numel()]
    group_width = max(1, int(np.ceil(np.log2(len(groups))))) if len(groups) > 1 else 0
    if group_width:
        assignment = torch.zeros(n, dtype=torch.int64)
        for i, g in enumerate(groups):
            assignment[g.mask.reshape(-1)] = i
        tensors[f"{key}::group"] = torch.from_numpy(
            _pack_bits(assignment[keep].numpy(), group_width)
        )
    group_info = []
    for i, g in enumerate(groups):
        _check_codes(key, i, g)
        if g.bits == 8:
            codes = g.codes.to(torch.int8)
        elif g.bits == 16:
            codes = g.codes.to(torch.int16)
        else:
            offset = g.codes.to(torch.int64).numpy() + (2 ** (g.bits - 1) - 1)
            codes = torch.from_numpy(_pack_bits(offset, g.bits))
        tensors[f"{key}::codes{i}"] = codes
        tensors[f"{key}::scales{i}"] = g.scales.float().contiguous()
        group_info.append({"bits": g.bits, "count": g.codes.numel(), "channels": g.scales.numel()})
    encoding = {
        "kind": "quantized",
        "shape": list(q.shape),
        "dtype": _DTYPE_NAMES.get(q.dtype, "float32"),
        "mask": mask_encoding,
        "kept": kept,
        "group_bits": group_width,
        "groups": group_info,
    }
    return encoding, tensors


def _check_codes(key: str, index: int, group: QuantGroup) -> None:
    """Refuse codes outside a group's symmetric range rather than store them wrapped."""
    if not isinstance(group.bits, int) or not 2 <= group.bits <= 16:
        raise InputError(f"group {index} of {key!r} has {group.bits!r} bits; 2 to 16 are stored")
    limit = 2 ** (group.bits - 1) - 1
    codes = group.codes
    if codes.numel() and (int(codes.min()) < -limit or int(codes.max()) > limit):
        raise InputError(
            f"group {index} of {key!r}: {group.bits}-bit codes must lie in [{-limit}, {limit}], "
            f"got {int(codes.min())} to {int(codes.max())}"
        )


def _decode_quantized(key: str, encoding: Mapping[str, Any], tensors: Mapping[str, Any]) -> Any:
    shape = tuple(int(d) for d in encoding["shape"])
    n = int(np.prod(shape, dtype=np.int64))
    kept = int(encoding["kept"])
    mask_encoding = encoding["mask"]
    if mask_encoding == "dense":
        keep = torch.ones(n, dtype=torch.bool)
    elif mask_encoding == "bitmask":
        packed = tensors[f"{key}::mask"].numpy()
        if packed.size != (n + 7) // 8:
            raise ValueError(f"mask of {key!r} has {packed.size} bytes for {n} entries")
        keep = torch.from_numpy(
            np.unpackbits(packed, count=n, bitorder="little").astype(bool).copy()
        )
    elif mask_encoding in ("kept", "pruned"):
        index = tensors[f"{key}::index"].to(torch.int64)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"index of {key!r} out of range")
        keep = torch.zeros(n, dtype=torch.bool)
        keep[index] = True
        if mask_encoding == "pruned":
            keep = ~keep
    else:
        raise ValueError(f"unknown mask encoding {mask_encoding!r} of {key!r}")
    if int(keep.sum()) != kept:
        raise ValueError(f"mask of {key!r} keeps {int(keep.sum())} entries, the header {kept}")
    infos = encoding["groups"]
    group_width = int(encoding["group_bits"])
    if group_width:
        assignment = _unpack_bits(tensors[f"{key}::group"].numpy(), group_width, kept)
    else:
        assignment = np.zeros(kept, dtype=np.int64)
    kept_positions = torch.nonzero(keep).reshape(-1)
    groups = []
    for i, info in enumerate(infos):
        bits, count = int(info["bits"]), int(info["count"])
        raw = tensors[f"{key}::codes{i}"]
        if bits in (8, 16):
            codes = raw.to(torch.int64)
        else:
            offset = _unpack_bits(raw.numpy(), bits, count)
            codes = torch.from_numpy(offset - (2 ** (bits - 1) - 1))
        member = torch.zeros(n, dtype=torch.bool)
        member[kept_positions[torch.from_numpy(assignment == i)]] = True
        if codes.numel() != count or int(member.sum()) != count:
            raise ValueError(f"group {i} of {key!r} does not hold {count} codes")
        scales = tensors[f"{key}::scales{i}"].float()
        if scales.numel() != int(info["channels"]) or (shape and n % scales.numel()):
            raise ValueError(f"scales of group {i} of {key!r} do not fit shape {list(shape)}")
        groups.append(
            QuantGroup(
                bits=bits,
                mask=member.reshape(shape),
                codes=codes.to(torch.int8 if bits <= 8 else torch.int16),
                scales=scales,
            )
        )
    dtype = _FLOAT_DTYPES.get(encoding["dtype"], torch.float32)
    return QuantizedTensor(shape=shape, groups=tuple(groups), dtype=dtype)


def _checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> str:
    """sha256 of the tensors and, from format version 2, of the metadata but the hash itself."""
    digest = hashlib.sha256()
    if metadata is not None:
        entries = {key: value for key, value in metadata.items() if key != "sha256"}
        digest.update(json.dumps(entries, sort_keys=True).encode("utf-8") + b"\0")
    for name in sorted(tensors):
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_compressed(
    model: CompressedModel | nn.Module,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    float_dtype: torch.dtype = torch.float32,
) -> int:
    """Write a compressed model to a safetensors file; return its size on disk in bytes.

    Parameters
    ----------
    model : CompressedModel or nn.Module
        From :func:`~leanxai.compress.compress` or :func:`~leanxai.compress.quantize_model`:
        quantised weights are stored as packed integer codes, pruned entries as a mask. A plain
        module is stored with every tensor in ``float_dtype``.
    path : str or path-like
        The file to write (conventionally ``.lxc.safetensors``), with the permissions the umask
        gives. Written through :func:`leanxai.io.atomic_write`, so a failed or interrupted write
        leaves neither a partial file under ``path`` nor a temporary file, and an existing file
        as it was.
    overwrite : bool, default False
        Replace an existing file.
    float_dtype : torch.float16 or torch.float32, default torch.float32
        Storage dtype of the tensors that are not quantised (biases, BatchNorm).

    Returns
    -------
    int
        ``os.path.getsize(path)``.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False (before any work), or is a folder.
    InputError
        For quantised weights that are not in the model or whose codes lie outside their bit
        range, or a ``float_dtype`` other than float16 and float32.
    InputTypeError
        For a ``model`` that is neither a CompressedModel nor an nn.Module.
    """
    if isinstance(model, CompressedModel):
        module, quantized = model.model, dict(model.weights)
    elif isinstance(model, nn.Module):
        module, quantized = model, {}
    else:
        raise InputTypeError(
            f"model must be a CompressedModel or nn.Module, got {type(model).__name__}"
        )
    if float_dtype not in (torch.float16, torch.float32):
        raise InputError(f"float_dtype must be torch.float16 or torch.float32, got {float_dtype}")
    target = Path(path)
    check_writable([target], overwrite)
    state = module.state_dict()
    unknown = sorted(set(quantized) - set(state))
    if unknown:
        raise InputError(f"quantised weights {unknown} are not in the model's state dict")
    tensors: dict[str, torch.Tensor] = {}
    encodings: dict[str, Any] = {}
    model_dtype = "float32"
    for key, value in state.items():
        if key in quantized:
            encoding, parts = _encode_quantized(key, quantized[key])
            tensors.update(parts)
        elif value.dtype.is_floating_point:
            encoding = {"kind": "float", "dtype": _DTYPE_NAMES.get(value.dtype, "float32")}
            tensors[key] = value.detach().to(device="cpu", dtype=float_dtype).contiguous()
        else:
            encoding = {"kind": "raw"}
            tensors[key] = value.detach().cpu().contiguous()
        if value.dtype.is_floating_point:
            model_dtype = _DTYPE_NAMES.get(value.dtype, "float32")
        encodings[key] = encoding
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps(describe_architecture(module)),
        "encodings": json.dumps(encodings, separators=(",", ":")),
        "dtype": model_dtype,
    }
    metadata["sha256"] = _checksum(tensors, metadata)
    atomic_write_bytes(target, save_safetensors(tensors, metadata=metadata), overwrite=overwrite)
    size = os.path.getsize(target)
    logger.info("wrote %s (%d bytes, %d quantised weights)", target, size, len(quantized))
    return size


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Header metadata and tensors, with every way a file can be broken as CompressedFileError."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CompressedFileError(f"cannot read {str(path)!r}: {error}") from error
    name = repr(str(path))
    if len(data) < 8:
        raise CompressedFileError(f"{name} is not a compressed model: too short ({len(data)} B)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise CompressedFileError(
            f"{name} is truncated or not a safetensors file: its header claims {header_size} "
            f"bytes, the file has {len(data) - 8} after the size"
        )
    try:
        header = json.loads(data[8 : 8 + header_size].decode("utf-8"))
        metadata = header.get("__metadata__") or {}
    except (UnicodeDecodeError, ValueError, AttributeError) as error:
        raise CompressedFileError(f"{name} has a corrupt header: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise CompressedFileError(
            f"{name} is not a leanxai compressed model (format {metadata.get('format')!r}, "
            f"expected {FORMAT_NAME!r})"
            if isinstance(metadata, dict)
            else f"{name} has corrupt metadata"
        )
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError as error:
        raise CompressedFileError(f"{name} has no valid format_version") from error
    if version > FORMAT_VERSION:
        raise CompressedFileError(
            f"{name} was written by a newer format version ({version}); this leanxai reads "
            f"versions up to {FORMAT_VERSION}: upgrade leanxai"
        )
    if version < 1:
        raise CompressedFileError(f"{name} has an invalid format_version {version}")
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as error:
        raise CompressedFileError(f"{name} is corrupt or truncated: {error}") from error
    if _checksum(tensors, metadata if version >= 2 else None) != metadata.get("sha256"):
        raise CompressedFileError(
            f"{name} is corrupt: its tensors and metadata do not match their checksum"
        )
    return metadata, tensors


def read_compressed(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decoded contents of a compressed file, without building a module.

    Returns
    -------
    header : dict
        ``format_version``, ``architecture`` (dict or None), ``encodings``, ``dtype``.
    state : dict
        State-dict key -> a :class:`QuantizedTensor` for quantised weights, a tensor otherwise.

    Raises
    ------
    CompressedFileError
        For a file that is corrupt, truncated, of another format or of a newer version.
    """
    target = Path(path)
    metadata, tensors = _read(target)
    try:
        architecture = json.loads(metadata["architecture"])
        encodings = json.loads(metadata["encodings"])
        state: dict[str, Any] = {}
        for key, encoding in encodings.items():
            kind = encoding["kind"]
            if kind == "quantized":
                state[key] = _decode_quantized(key, encoding, tensors)
            elif kind == "float":
                dtype = _FLOAT_DTYPES.get(encoding["dtype"], torch.float32)
                state[key] = tensors[key].to(dtype)
            elif kind == "raw":
                state[key] = tensors[key]
            else:
                raise ValueError(f"unknown encoding {kind!r} of {key!r}")
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CompressedFileError(
            f"{str(target)!r} is corrupt: its tensors do not match their encodings ({error})"
        ) from error
    header = {
        "format_version": int(metadata["format_version"]),
        "architecture": architecture,
        "encodings": encodings,
        "dtype": metadata.get("dtype", "float32"),
    }
    return header, state


def load_compressed(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | Callable[[], nn.Module] | None = None,
) -> nn.Module:
    """Load a file written by :func:`save_compressed` into a working module.

    Nothing in the file is executed: tensors come from safetensors, and the module is either
    rebuilt from the file's architecture description (allow-listed ``torch.nn`` layers and
    registered architectures only, see :mod:`leanxai.compress.architectures`; the module that
    registers one is imported only if it is part of leanxai) or is the ``model`` given.

    Parameters
    ----------
    path : str or path-like
        The file.
    model : nn.Module, callable returning one, or None
        A skeleton of the architecture: a module (a deep copy is loaded; the module itself is
        not changed) or a factory. Required when the file holds no architecture description
        (any model other than a Sequential of standard layers or a registered architecture),
        and used instead of the description when given.

    Returns
    -------
    nn.Module
        In eval mode, with dequantised weights: its outputs equal those of the
        fake-quantised :attr:`CompressedModel.model` up to float rounding (exactly, for
        float32 storage of the unquantised tensors of a float32 model).

    Raises
    ------
    CompressedFileError
        For a file that is corrupt, truncated, of another format or of a newer version.
    ModelLoadError
        When no skeleton is given and the file does not describe its architecture, or the
        skeleton does not fit the file.
    InputTypeError
        For a ``model`` that is not a module, a factory of one or None.
    """
    header, state = read_compressed(path)
    if model is None:
        if header["architecture"] is None:
            raise ModelLoadError(
                f"{str(path)!r} does not describe its architecture (a custom module); pass "
                "model= a module or a function that builds one"
            )
        try:
            module = _build(header["architecture"])
        except (TypeError, ValueError) as error:
            raise CompressedFileError(
                f"cannot rebuild the architecture {str(path)!r} describes: {error}"
            ) from error
        module = module.to(_FLOAT_DTYPES.get(header["dtype"], torch.float32))
    elif isinstance(model, nn.Module):
        module = copy.deepcopy(model)
    elif callable(model):
        module = model()
        if not isinstance(module, nn.Module):
            raise InputTypeError(f"model() must return an nn.Module, got {type(module).__name__}")
    else:
        raise InputTypeError(f"model must be an nn.Module, a factory or None, got {model!r:.60}")
    tensors = {
        key: dequantize(value) if isinstance(value, QuantizedTensor) else value
        for key, value in state.items()
    }
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ModelLoadError(
            f"the tensors of {str(path)!r} do not fit {type(module).__name__}: {error}"
        ) from error
    return module.eval()
