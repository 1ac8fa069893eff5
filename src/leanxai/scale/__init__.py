"""Explain a whole image collection: streaming, resumable, nothing lost, in-process or on Ray.

:func:`explain_collection` lists a folder, a list of paths or a Parquet file of image bytes,
explains every image (Grad-CAM by default) and writes Parquet shards and ``summary.csv``;
:func:`latest_rows` reads the rows back, one per input. ``engine="ray"`` needs Ray Data
(``pip install 'leanxai[scale]'``), imported only when that engine runs.
"""

from __future__ import annotations

from leanxai.scale.collection import CollectionResult, explain_collection
from leanxai.scale.store import SUMMARY_FIELDS, latest_rows

__all__ = ["SUMMARY_FIELDS", "CollectionResult", "explain_collection", "latest_rows"]
