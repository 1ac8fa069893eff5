"""A user's own images with ground truth for the methods benchmark (issue 23).

Four layouts, each loaded as :class:`MaskedImages` at the model's input size:

- :func:`load_mask_folder`: a folder of images and a folder of masks matched by file name
  (``photo.jpg`` and ``photo.png``, or ``photo_mask.png``); any non-zero mask pixel is object;
- :func:`load_boxes`: a CSV of boxes ``file, class, x0, y0, x1, y1`` (pixels of the image as
  stored; ``x1``/``y1`` exclusive) turned into box masks;
- :func:`load_voc_folder` and :func:`load_coco_file`: PASCAL VOC and COCO through
  :func:`leanxai.data.masks.load_voc` and :func:`leanxai.data.masks.load_coco`.

Bad items never stop a load: an unreadable image, a missing, unreadable, empty or wrongly sized
mask, a bad CSV row, a mask without its image are listed in ``skipped`` as ``(name, reason)``.
A load that keeps nothing raises :class:`~leanxai.core.errors.InputError`.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from leanxai.core.errors import InputError
from leanxai.data.datasets import ImageDataset
from leanxai.data.images import IMAGE_EXTENSIONS, find_images, load_image

__all__ = [
    "BOX_COLUMNS",
    "MaskedImages",
    "load_boxes",
    "load_coco_file",
    "load_mask_folder",
    "load_voc_folder",
]

BOX_COLUMNS: tuple[str, ...] = ("file", "class", "x0", "y0", "x1", "y1")
"""The header of a boxes CSV."""


@dataclass(frozen=True)
class MaskedImages:
    """Images with one ground-truth mask each, and the class each shows when known.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, 3, H, W)`` float32 RGB in ``[0, 1]``, resized to the model's input size.
    masks : torch.Tensor
        ``(N, H, W)`` bool, resized with nearest-neighbour interpolation.
    classes : tuple of (str or None)
        Per image, the class name (or index, as text) the ground truth says it shows; ``None``
        where the data names none (then the model's prediction is explained).
    files : tuple of str
        Per image, its file (or item) name.
    skipped : tuple of (str, str)
        ``(name, reason)`` of every item left out.
    source : str
        What was read, for the report.
    """

    images: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str | None, ...]
    files: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    source: str


def _resize(
    image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    if tuple(image.shape[1:]) != size:
        image = F.interpolate(
            image[None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
    if tuple(mask.shape) != size:
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0] > 0.5
    return image, mask.bool()


def _assemble(
    items: list[tuple[str, torch.Tensor, torch.Tensor, str | None]],
    skipped: list[tuple[str, str]],
    source: str,
) -> MaskedImages:
    if not items:
        shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:5])
        raise InputError(f"{source}: no image with a usable mask ({len(skipped)} skipped: {shown})")
    return MaskedImages(
        images=torch.stack([image for _, image, _, _ in items]),  # (N, 3, H, W)
        masks=torch.stack([mask for _, _, mask, _ in items]),  # (N, H, W)
        classes=tuple(label for _, _, _, label in items),
        files=tuple(name for name, _, _, _ in items),
        skipped=tuple(skipped),
        source=source,
    )


def _read_mask(path: Path) -> torch.Tensor:
    """Non-zero pixels of a mask image as ``(H, W)`` bool, as stored (no EXIF rotation)."""
    try:
        with Image.open(path) as image:
            image.load()
            values = np.asarray(image.convert("L"))
    except UnidentifiedImageError as error:
        raise InputError(f"{path}: mask is not an image") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InputError(f"{path}: corrupt or truncated mask ({error})") from error
    return torch.from_numpy(values > 0)


def _check_folder(path: str | Path, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{what} {str(folder)!r} is not a folder")
    return folder


def load_mask_folder(images: str | Path, masks: str | Path, size: tuple[int, int]) -> MaskedImages:
    """Images and masks matched by file name: ``masks/<stem>.<ext>`` or ``<stem>_mask.<ext>``.

    A mask must have its image's size (width and height as stored); any non-zero pixel is
    object. No class is known, so the model's prediction is explained.
    """
    image_dir = _check_folder(images, "--images")
    mask_dir = _check_folder(masks, "--masks")
    files, problems = find_images([image_dir])
    skipped = [(str(path), reason) for path, reason in problems]
    by_stem: dict[str, Path] = {}
    for path in sorted(mask_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            stem = path.stem[: -len("_mask")] if path.stem.endswith("_mask") else path.stem
            by_stem.setdefault(stem, path)
    used: set[str] = set()
    items: list[tuple[str, torch.Tensor, torch.Tensor, str | None]] = []
    for path in files:
        mask_path = by_stem.get(path.stem)
        if mask_path is None:
            skipped.append(
                (str(path), f"no mask {path.stem}.png (or {path.stem}_mask.png) in {mask_dir}")
            )
            continue
        used.add(path.stem)
        try:
            image = load_image(path, size=None)  # (3, H, W)
            mask = _read_mask(mask_path)  # (H, W)
        except InputError as error:
            skipped.append((str(path), str(error)))
            continue
        if tuple(mask.shape) != tuple(image.shape[1:]):
            skipped.append(
                (
                    str(path),
                    f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image "
                    f"is {image.shape[2]}x{image.shape[1]}",
                )
            )
            continue
        if not bool(mask.any()):
            skipped.append((str(path), f"mask {mask_path} is empty"))
            continue
        items.append((str(path), *_resize(image, mask, size), None))
    for stem, mask_path in by_stem.items():
        if stem not in used:
            skipped.append((str(mask_path), f"no image named {stem}.* in {image_dir}"))
    return _assemble(items, skipped, f"{image_dir} with masks from {mask_dir}")


def load_boxes(images: str | Path, boxes: str | Path, size: tuple[int, int]) -> MaskedImages:
    """Images with boxes from a CSV ``file, class, x0, y0, x1, y1``, as box masks.

    ``file`` is a path relative to ``images`` (or its name); ``class`` a class name or index of
    the model (empty: explain the prediction). An image with several boxes gets the union of the
    boxes of its first row's class. Coordinates are pixels of the stored image, clipped to it.
    """
    image_dir = _check_folder(images, "--images")
    csv_path = Path(boxes)
    if not csv_path.is_file():
        raise InputError(f"--boxes {str(csv_path)!r} is not a file")
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = tuple(rows[0].keys()) if rows else ()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"--boxes {str(csv_path)!r}: cannot read CSV ({error})") from error
    missing = [c for c in BOX_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"--boxes {str(csv_path)!r} needs the columns {', '.join(BOX_COLUMNS)}; "
            f"missing {', '.join(missing)}"
        )
    skipped: list[tuple[str, str]] = []
    boxes_of: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for line, row in enumerate(rows, start=2):
        name = (row.get("file") or "").strip()
        try:
            x0, y0, x1, y1 = (float(row[c]) for c in ("x0", "y0", "x1", "y1"))
        except (TypeError, ValueError):
            skipped.append((f"{csv_path}:{line}", f"bad box row {dict(row)!r}"))
            continue
        if not name or not (x1 > x0 and y1 > y0):
            skipped.append((f"{csv_path}:{line}", f"bad box row {dict(row)!r}"))
            continue
        boxes_of.setdefault(name, []).append(((row.get("class") or "").strip(), x0, y0, x1, y1))
    items: list[tuple[str, torch.Tensor, torch.Tensor, str | None]] = []
    for name, file_boxes in boxes_of.items():
        path = image_dir / name
        if not path.is_file():
            skipped.append((str(path), f"no such image in {image_dir} (listed in {csv_path})"))
            continue
        try:
            image = load_image(path, size=None)  # (3, H, W)
        except InputError as error:
            skipped.append((str(path), str(error)))
            continue
        height, width = image.shape[1:]
        label = file_boxes[0][0]
        mask = torch.zeros(height, width, dtype=torch.bool)
        for box_class, x0, y0, x1, y1 in file_boxes:
            if box_class != label:
                continue
            top, bottom = max(0, round(y0)), min(height, round(y1))
            left, right = max(0, round(x0)), min(width, round(x1))
            mask[top:bottom, left:right] = True
        if not bool(mask.any()):
            skipped.append((str(path), "its boxes lie outside the image"))
            continue
        items.append((str(path), *_resize(image, mask, size), label or None))
    return _assemble(items, skipped, f"{image_dir} with boxes from {csv_path}")


def _from_dataset(dataset: ImageDataset, size: tuple[int, int], source: str) -> MaskedImages:
    if dataset.masks is None:
        raise InputError(f"{source}: the data set has no masks")
    items: list[tuple[str, torch.Tensor, torch.Tensor, str | None]] = []
    for i in range(len(dataset.images)):
        image, mask = _resize(dataset.images[i], dataset.masks[i].bool(), size)
        items.append((f"{dataset.name}[{i}]", image, mask, dataset.classes[int(dataset.labels[i])]))
    return _assemble(items, list(dataset.skipped), source)


def load_voc_folder(root: str | Path, size: tuple[int, int]) -> MaskedImages:
    """A PASCAL VOC folder (``JPEGImages``, ``SegmentationClass``, ``SegmentationObject``):
    the largest object of each image, with its class name."""
    from leanxai.data.masks import load_voc

    with warnings.catch_warnings():  # skipped items are returned and named by the caller
        warnings.simplefilter("ignore", UserWarning)
        dataset = load_voc(root, size=size)
    return _from_dataset(dataset, size, f"VOC folder {root}")


def load_coco_file(
    images: str | Path, annotations: str | Path, size: tuple[int, int]
) -> MaskedImages:
    """COCO instances: the largest object of each image, with its category name."""
    from leanxai.data.masks import load_coco

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = load_coco(images, annotations, size=size)
    return _from_dataset(dataset, size, f"COCO {annotations} on {images}")
