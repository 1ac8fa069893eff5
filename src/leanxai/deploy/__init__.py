"""Explanations on edge runtimes: the model and its heatmap in one ONNX graph.

:func:`export_onnx` writes the graph (checked against :class:`leanxai.GradCAM` by onnxruntime
before anything is written); :mod:`leanxai.deploy.runtime` runs it with onnxruntime, NumPy and
Pillow only, and is a single file that runs without leanxai or PyTorch installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leanxai.deploy.export import (
        OUTPUTS,
        CAMGraph,
        ExportReport,
        Int8Report,
        build_cam_graph,
        compare_int8,
        export_onnx,
        heatmap_agreement,
        onnx_bytes,
        quantize_int8,
    )

__all__ = [
    "OUTPUTS",
    "CAMGraph",
    "ExportReport",
    "Int8Report",
    "build_cam_graph",
    "compare_int8",
    "export_onnx",
    "heatmap_agreement",
    "onnx_bytes",
    "quantize_int8",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m leanxai.deploy.runtime` imports no torch.
    if name in __all__:
        value = getattr(importlib.import_module("leanxai.deploy.export"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'leanxai.deploy' has no attribute {name!r}")
