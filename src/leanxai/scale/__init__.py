"""Explain a whole image collection: streaming, resumable, nothing lost, in-process or on Ray.

:func:`explain_collection` lists a folder, a list of paths or a Parquet file of image bytes,
explains every image (Grad-CAM by default) and writes Parquet shards and ``summary.csv``;
:func:`latest_rows` reads the rows back, one per input. ``engine="ray"`` needs Ray Data
(``pip install 'leanxai[scale]'``), imported only when that engine runs.

The names are imported on first use, so that Ray's read tasks, which import
:mod:`leanxai.scale.read`, do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leanxai.scale.collection import CollectionResult, explain_collection
    from leanxai.scale.store import SUMMARY_FIELDS, latest_rows

__all__ = ["SUMMARY_FIELDS", "CollectionResult", "explain_collection", "latest_rows"]

_WHERE = {
    "CollectionResult": "leanxai.scale.collection",
    "explain_collection": "leanxai.scale.collection",
    "SUMMARY_FIELDS": "leanxai.scale.store",
    "latest_rows": "leanxai.scale.store",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'leanxai.scale' has no attribute {name!r}")
