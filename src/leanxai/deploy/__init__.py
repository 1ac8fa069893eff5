"""Explanations on edge runtimes: the model and its heatmap in one ONNX graph.

:func:`export_onnx` writes the graph (checked against :class:`leanxai.GradCAM` by onnxruntime
before anything is written); :mod:`leanxai.deploy.runtime` runs it with onnxruntime, NumPy and
Pillow only, and is a single file that runs without leanxai or PyTorch installed.
"""

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
