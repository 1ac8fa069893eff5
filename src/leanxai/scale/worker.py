"""The map step: decode a unit's bytes and explain its images, with a model loaded once.

:class:`UnitExplainer` is the callable class Ray Data's ``map_batches`` runs in each actor (and the
local engine runs in-process): its constructor loads the model and builds the explainer once; each
call takes read units (:func:`leanxai.scale.sources.read_unit`) and returns one Arrow row per input.
A file that does not decode is a row with ``status="skipped"`` and its error, as in
``leanxai explain``; a model-level error (a bad layer or target) raises, since it fails every
batch alike.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanxai.core.errors import InputError, LeanXAIError

__all__ = ["Settings", "UnitExplainer", "overlay_name", "schema"]


@dataclass(frozen=True)
class Settings:
    """What an explainer in the map step needs; plain values, sent to every actor."""

    model: Any  # a spec (str) or an nn.Module
    weights: str | None = None
    method: str = "gradcam"
    layer: str | None = None
    threshold: str = "none"
    target: int | None = None
    size: tuple[int, int] | None = None
    batch_size: int = 32
    overlays: str | None = None  # folder for overlay PNGs, or None


def overlay_name(file: str) -> str:
    """A distinct overlay file name for an input id: its stem and 8 hex digits of the id."""
    stem = Path(file.split("#", 1)[0]).stem or "image"
    digest = hashlib.blake2b(file.encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()
    return f"{stem}-{digest}.png"


def schema(cam_size: int, cam_shape: tuple[int, int], method: str) -> Any:
    """The Arrow schema of every row the map step returns."""
    import pyarrow as pa

    fields = [
        ("file", pa.string()),
        ("sha256", pa.string()),
        ("group", pa.int64()),
        ("group_rows", pa.int64()),
        ("class", pa.int64()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("coverage", pa.float64()),
        ("time_s", pa.float64()),
        ("layer", pa.string()),
        ("path", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("output", pa.string()),
        ("cam", pa.list_(pa.float16(), cam_size)),
        ("cam_scale", pa.float32()),
    ]
    metadata = {"leanxai.cam_shape": f"{cam_shape[0]},{cam_shape[1]}", "leanxai.method": method}
    return pa.schema(fields, metadata=metadata)


def _input_channels(model: nn.Module) -> int | None:
    # As leanxai.cli._common.input_channels (the library may not import the CLI).
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(module.in_channels)
        if isinstance(module, nn.Linear):
            return None
    return None


class UnitExplainer:
    """Load the model once; explain read units.

    Parameters
    ----------
    settings : Settings
        Model, method, threshold and the rest.
    threads : int, optional
        ``torch.set_num_threads`` for this process (Ray actors: their share of the CPUs).
    device : str, optional
        ``"cuda"`` puts the model and the batches there; default: the GPU Ray assigned to this
        actor, else the CPU.
    """

    def __init__(
        self, settings: Settings, threads: int | None = None, device: str | None = None
    ) -> None:
        from leanxai import threshold
        from leanxai.core.models import load_model
        from leanxai.explainers import registry

        if threads is not None:
            torch.set_num_threads(threads)
        if device is None:
            device = "cuda" if _ray_gpu_assigned() and torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.settings = settings
        loaded = load_model(settings.model, settings.weights)
        self.model = loaded.model.to(self.device)
        self.labels = loaded.labels
        self.side = (
            settings.size
            or loaded.input_size
            or getattr(self.model, "input_size", None)
            or (224, 224)
        )
        self.side = (int(self.side[0]), int(self.side[1]))
        self.mean = torch.tensor(loaded.mean or (0.0, 0.0, 0.0))[:, None, None]
        self.std = torch.tensor(loaded.std or (1.0, 1.0, 1.0))[:, None, None]
        self.gray = _input_channels(self.model) == 1
        self.method = registry.get(settings.method, "cnn").name
        cam = self.method in ("gradcam", "gradcam++")
        if settings.layer is not None and not cam:
            raise InputError(f"layer applies to gradcam and gradcam++, not {self.method}")
        options = {"layer": settings.layer} if cam else None
        self.explainer = registry.create(self.method, self.model, "cnn", options=options)
        self.apply_threshold = threshold.from_spec(settings.threshold)
        self.coverage = threshold.coverage
        self.plain = settings.threshold.strip().lower() == "none"
        # One image of zeros: the map's shape at the layer (rows of a unit with no good image
        # still carry the column's fixed size), and the model is checked before any real work.
        probe = self._explain(torch.zeros(1, 3, *self.side))
        stored = probe.cam if probe.cam is not None else probe.heatmap
        self.cam_shape = (int(stored.shape[1]), int(stored.shape[2]))
        self.schema = schema(self.cam_shape[0] * self.cam_shape[1], self.cam_shape, self.method)

    def _explain(self, images: torch.Tensor) -> Any:
        batch = (images - self.mean) / self.std  # (B, 3, H, W)
        if self.gray:
            batch = batch.mean(1, keepdim=True)  # (B, 1, H, W)
        return self.explainer.explain(batch.to(self.device), target=self.settings.target)

    def __call__(self, batch: Any) -> Any:
        """Explain a batch of read units (an Arrow table or a dict of columns) into rows."""
        import pyarrow as pa

        units = batch.to_pylist() if isinstance(batch, pa.Table) else _rows_of(batch)
        tables = [self.explain_unit(unit) for unit in units]
        return pa.concat_tables(tables) if tables else self.schema.empty_table()

    def explain_unit(self, unit: dict[str, Any]) -> Any:
        """One unit (:func:`~leanxai.scale.sources.read_unit`'s dict) to an Arrow table."""
        import pyarrow as pa

        from leanxai.data.images import decode_image

        files: list[str] = list(unit["files"])
        n = len(files)
        rows: dict[str, list[Any]] = {name: [None] * n for name in self.schema.names}
        rows["file"] = files
        rows["sha256"] = list(unit["sha256"])
        rows["group"] = [int(unit["group"])] * n
        rows["group_rows"] = [n] * n
        rows["status"] = ["skipped"] * n
        rows["error"] = list(unit["error"])
        cams = np.zeros((n, self.cam_shape[0] * self.cam_shape[1]), dtype=np.float16)
        good: list[tuple[int, torch.Tensor]] = []
        for k, (file, data, error) in enumerate(
            zip(files, unit["data"], unit["error"], strict=True)
        ):
            if error is not None:
                continue
            try:
                good.append((k, decode_image(data, file, size=self.side)))
            except InputError as problem:
                rows["error"][k] = str(problem)
        for start in range(0, len(good), self.settings.batch_size):
            chunk = good[start : start + self.settings.batch_size]
            self._explain_chunk(chunk, files, rows, cams)
        mask = np.array([status != "ok" for status in rows["status"]], dtype=bool)
        rows["cam"] = pa.FixedSizeListArray.from_arrays(
            pa.array(cams.reshape(-1), type=pa.float16()), cams.shape[1], mask=pa.array(mask)
        )
        return pa.table(rows, schema=self.schema)

    def _explain_chunk(
        self,
        chunk: list[tuple[int, torch.Tensor]],
        files: list[str],
        rows: dict[str, list[Any]],
        cams: np.ndarray,
    ) -> None:
        images = torch.stack([image for _, image in chunk])  # (B, 3, H, W)
        start = time.perf_counter()
        try:
            explanation = self._explain(images)
        except LeanXAIError:
            raise  # a bad layer or target fails every batch alike: the run stops
        except Exception as error:
            text = str(error).strip()
            first = text.splitlines()[0] if text else type(error).__name__
            raise RuntimeError(
                f"the model failed on a batch of {len(chunk)} images of {self.side}: {first}"
            ) from error
        heatmap = explanation.heatmap.detach().float().cpu()  # (B, H, W)
        kept = self.apply_threshold(heatmap)
        covered = self.coverage(kept)
        stored = explanation.cam if explanation.cam is not None else explanation.heatmap
        stored = stored.detach().float().cpu().flatten(1)  # (B, h*w)
        peaks = stored.amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)  # (B,)
        probabilities = explanation.probabilities.detach().float().cpu()
        targets = explanation.target.detach().cpu()
        seconds = (time.perf_counter() - start) / len(chunk)
        for i, (k, image) in enumerate(chunk):
            index = int(targets[i])
            rows["class"][k] = index
            rows["label"][k] = self.labels.get(index, "")
            rows["score"][k] = float(probabilities[i])
            rows["coverage"][k] = float(covered[i])
            rows["time_s"][k] = seconds
            rows["layer"][k] = explanation.layer
            rows["path"][k] = explanation.path
            rows["status"][k] = "ok"
            rows["error"][k] = None
            # float16 keeps 3 significant digits of a map divided by its peak; the peak is kept
            # in float32 beside it, so cam = cam_scale * cam holds the layer's values.
            cams[k] = (stored[i] / peaks[i]).numpy().astype(np.float16)
            rows["cam_scale"][k] = float(peaks[i])
            if self.settings.overlays is not None:
                rows["output"][k] = self._overlay(files[k], image, heatmap[i], kept[i])

    def _overlay(
        self, file: str, image: torch.Tensor, heatmap: torch.Tensor, kept: torch.Tensor
    ) -> str:
        from leanxai.viz.overlay import save_overlay, save_panel

        assert self.settings.overlays is not None
        name = overlay_name(file)
        path = Path(self.settings.overlays) / name
        # A retried unit (a worker was killed) writes the same picture again: replace it.
        if self.plain:
            save_overlay(path, image, heatmap, overwrite=True)
        else:
            save_panel(path, image, heatmap, kept, overwrite=True)
        return f"overlays/{name}"


def _rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(batch)
    count = len(batch[keys[0]]) if keys else 0
    return [{key: batch[key][i] for key in keys} for i in range(count)]


def _ray_gpu_assigned() -> bool:
    """Whether Ray gave this process a GPU (False outside Ray, or without Ray installed)."""
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized() and ray.get_gpu_ids())
