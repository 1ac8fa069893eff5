"""Run a leanxai ONNX file (model + heatmap in one graph) with onnxruntime, NumPy and Pillow only.

This file imports nothing from leanxai or PyTorch, so it can be copied alone to a board or a phone
build and run there::

    python runtime.py model.onnx photo.jpg --out explained/

(``python -c "import leanxai.deploy.runtime as r; print(r.__file__)"`` shows where it is; through
the package it can also be imported as :mod:`leanxai.deploy.runtime`, which needs leanxai and so
PyTorch.) The ONNX file says how to prepare an image: ``leanxai.input_size``, ``leanxai.mean``,
``leanxai.std`` and ``leanxai.labels`` in its metadata, written by
:func:`leanxai.deploy.export_onnx`.

Preprocessing: the image is made upright (EXIF), transparency is composited over white, it is
resized to the model's size with Pillow's bilinear filter (which antialiases when shrinking, like
leanxai's loader, though not to the last bit), scaled to ``[0, 1]`` and normalised. The overlay
uses a jet-like colormap computed in NumPy (no matplotlib on the device).

Output files are written to a temporary file and moved into place, and an existing file is not
replaced without ``--overwrite`` (the same rule as leanxai's atomic writer, which this file cannot
import).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ExplainedModel", "Result", "colorize", "main", "overlay"]

PREFIX = "leanxai."
TARGET_INPUT = "requested_target"


@dataclass(frozen=True)
class Result:
    """One explained image: the class, its name and probability, and the maps."""

    target: int
    label: str
    probability: float
    logits: np.ndarray  # (K,)
    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    cam: np.ndarray  # (h, w) at the target layer's resolution
    image: np.ndarray  # (H, W, 3) uint8, the resized input


class ExplainedModel:
    """An ONNX file written by ``leanxai export``, ready to explain images.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    threads
        onnxruntime's intra-op threads (1 by default: predictable on small boards).
    providers
        onnxruntime execution providers (default: the CPU).
    """

    def __init__(
        self, path: str | os.PathLike[str], threads: int = 1, providers: list[str] | None = None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # not the note that requested_target has a default
        self.session = ort.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = {
            key[len(PREFIX) :]: _parse(value)
            for key, value in raw.items()
            if key.startswith(PREFIX)
        }
        if "input_size" not in self.metadata:
            raise ValueError(f"{path}: no leanxai metadata; was it written by 'leanxai export'?")
        height, width = (int(v) for v in self.metadata["input_size"])
        self.input_size = (height, width)
        self.channels = int(self.session.get_inputs()[0].shape[1])
        self.mean = np.asarray(self.metadata.get("mean") or [0.0] * 3, dtype=np.float32)
        self.std = np.asarray(self.metadata.get("std") or [1.0] * 3, dtype=np.float32)
        self.labels = {int(k): str(v) for k, v in (self.metadata.get("labels") or {}).items()}
        self.accepts_target = self.metadata.get("target_input") == TARGET_INPUT

    def load_image(self, path: str | os.PathLike[str]) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB at the model's input size."""
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            image = image.convert("RGB")
            height, width = self.input_size
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8).copy()

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 -> ``(B, C, H, W)`` float32 pixels as the model expects."""
        pixels = images.astype(np.float32) / 255.0
        pixels = (pixels - self.mean) / self.std  # (B, H, W, 3)
        pixels = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))  # (B, 3, H, W)
        if self.channels == 1:
            pixels = pixels.mean(axis=1, keepdims=True)
        return pixels

    def run(self, pixels: np.ndarray, target: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph's outputs (``logits``, ``target``, ``heatmap``, ``cam``) for ``pixels``."""
        feeds: dict[str, np.ndarray] = {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)}
        if target is not None:
            if not self.accepts_target:
                raise ValueError(
                    "this file explains the predicted class only; export it with --target-input"
                )
            feeds[TARGET_INPUT] = np.asarray(target, dtype=np.int64).reshape(-1)
        names = [output.name for output in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feeds), strict=True))

    def explain(self, paths: list[str], target: int | None = None) -> list[Result]:
        """Explain image files, one batch."""
        images = np.stack([self.load_image(p) for p in paths])  # (B, H, W, 3)
        wanted = None if target is None else np.full(len(paths), target, dtype=np.int64)
        out = self.run(self.preprocess(images), wanted)
        logits = out["logits"].astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        results = []
        for i in range(len(paths)):
            k = int(out["target"][i])
            results.append(
                Result(
                    target=k,
                    label=self.labels.get(k, ""),
                    probability=float(probabilities[i, k]),
                    logits=out["logits"][i],
                    heatmap=out["heatmap"][i],
                    cam=out["cam"][i],
                    image=images[i],
                )
            )
        return results


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """``(H, W)`` in ``[0, 1]`` -> ``(H, W, 3)`` uint8 with a jet-like colormap (blue to red)."""
    x = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue
    rgb = np.clip(1.5 - np.abs(4.0 * x - centres), 0.0, 1.0)
    return np.rint(rgb * 255).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colored heatmap over an ``(H, W, 3)`` uint8 image of the same size."""
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(heatmap)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _write(path: Path, data: bytes, overwrite: bool) -> None:
    """Write to a temporary file beside ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the file appeared meanwhile
            os.unlink(temporary)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _png(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """``runtime.py MODEL.onnx IMAGE... --out DIR``: overlays, optional raw maps, one line each."""
    parser = argparse.ArgumentParser(
        prog="runtime.py", description="Explain images with a leanxai ONNX file (no PyTorch)."
    )
    parser.add_argument("model", help="the .onnx file written by 'leanxai export'")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--out", required=True, help="folder for <image>.png overlays")
    parser.add_argument("--target", type=int, default=None, help="class to explain")
    parser.add_argument("--npy", action="store_true", help="also write <image>.npy heatmaps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        model = ExplainedModel(args.model, threads=args.threads)
    except Exception as error:
        print(f"error: cannot load {args.model}: {error}", file=sys.stderr)
        return 1
    out = Path(args.out)
    planned = []
    for image in args.images:
        planned.append(out / f"{Path(image).stem}.png")
        if args.npy:
            planned.append(out / f"{Path(image).stem}.npy")
    existing = [str(p) for p in planned if p.exists()]
    if existing and not args.overwrite:
        print(f"error: {', '.join(existing)} exist; pass --overwrite to replace", file=sys.stderr)
        return 1
    failed = 0
    for image in args.images:
        try:
            (result,) = model.explain([image], target=args.target)
        except Exception as error:
            print(f"skipped {image}: {error}", file=sys.stderr)
            failed += 1
            continue
        stem = Path(image).stem
        _write(out / f"{stem}.png", _png(overlay(result.image, result.heatmap)), args.overwrite)
        if args.npy:
            _write(out / f"{stem}.npy", _npy(result.heatmap), args.overwrite)
        name = f" ({result.label})" if result.label else ""
        print(f"{image}: class {result.target}{name} p={result.probability:.4f} -> {stem}.png")
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
