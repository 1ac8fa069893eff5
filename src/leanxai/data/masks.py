"""Load user image data with segmentation masks: PASCAL VOC folders and COCO annotation files.

Both loaders turn each image into one classification item: a label, the class of the largest
object, and a mask of that object, the ground truth that localisation metrics compare heatmaps
against. They return an :class:`~leanxai.data.datasets.ImageDataset` whose images can be batched.

Bad items do not stop a load. A file that is missing, corrupt or disagrees with its image in size
is skipped; so is an image without any object. Every skipped item is listed in the data set's
``skipped`` field as ``(name, reason)`` and summarised in one warning; ``strict=True`` raises the
first item error instead. A load that keeps nothing raises :class:`~leanxai.core.errors.InputError`
with the first reasons.

Images are read as stored, ignoring any EXIF orientation tag, because masks and annotations are
drawn on the stored pixel grid (torchvision and pycocotools read them the same way).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from leanxai.core.errors import InputError
from leanxai.data.datasets import ImageDataset, _check_size, _resize_images, _resize_masks

__all__ = ["VOC_CLASSES", "VOC_VOID", "load_coco", "load_voc"]

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 21 PASCAL VOC class names, in the order of their index in the class PNGs."""

VOC_VOID = 255
"""Index of VOC's boundary and "difficult" pixels, counted as not-object."""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png")

# Exceptions Pillow's decoders raise on corrupt data.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)

# How many skipped items a warning or an error message names.
_SHOWN = 5


class _NoObject(Exception):
    """An item without any object: skipped, but not an error even with ``strict=True``."""


# --------------------------------------------------------------------------------------------
# PASCAL VOC


def load_voc(
    root: str | Path,
    split: str | None = None,
    kind: str = "object",
    size: int | tuple[int, int] | None = None,
    limit: int | None = None,
    *,
    strict: bool = False,
) -> ImageDataset:
    """Load a PASCAL VOC segmentation folder as labelled images with object masks.

    Parameters
    ----------
    root : str or Path
        The folder that holds ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``,
        ``SegmentationObject/<id>.png`` (needed for ``kind="object"`` only) and, for ``split``,
        ``ImageSets/Segmentation/<split>.txt`` (e.g. ``VOCdevkit/VOC2012``). The PNGs are palette
        (mode ``P``) or grey (``L``) images whose pixel index is the class (0 background, 1-20
        the classes of :data:`VOC_CLASSES`) or the instance id (0 background, 1, 2, ... one per
        object); 255 (:data:`VOC_VOID`, object boundaries and "difficult" regions) counts as
        not-object, in the label's area and in the mask.
    split : str, optional
        Name of a list in ``ImageSets/Segmentation`` ("train", "val", "trainval"); its ids are
        loaded in its order. ``None`` loads every ``SegmentationClass/*.png``, sorted by id.
    kind : {"object", "class"}, default "object"
        The label is always the class with the largest area in the class PNG (ties: the lower
        index). The mask is the largest instance of that class, found through the object PNG
        (each instance's class is the most common class index under it), for ``"object"``;
        every pixel of that class, for ``"class"``.
    size : int or (int, int), optional
        Resize images (bilinear, antialiased) and masks (nearest) to this side or ``(H, W)``.
        Needed when the images differ in size, as VOC's do.
    limit : int, optional
        Stop once this many images are loaded (skipped ones do not count).
    strict : bool, default False
        Raise the first item error instead of skipping the item.

    Returns
    -------
    ImageDataset
        Named ``"voc"``, classes :data:`VOC_CLASSES` (labels are 1-20, never 0), ``skipped``
        as described in the module docstring.

    Raises
    ------
    InputError
        ``root``, a required folder or the split file is missing; the split lists no ids;
        nothing could be loaded; images differ in size and ``size`` is ``None``; with
        ``strict=True``, any bad item.
    ValueError
        ``kind``, ``size`` or ``limit`` is invalid.
    """
    if kind not in ("object", "class"):
        raise InputError(f'kind must be "object" or "class", got {kind!r}')
    shape = _check_size(size)
    limit = _check_limit(limit)
    root = Path(root)
    _require_folder(root, "VOC root folder")
    image_dir = _require_folder(root / "JPEGImages", "VOC image folder")
    class_dir = _require_folder(root / "SegmentationClass", "VOC class mask folder")
    object_dir = (
        _require_folder(root / "SegmentationObject", "VOC object mask folder")
        if kind == "object"
        else None
    )
    if split is not None:
        ids = _read_split(root / "ImageSets" / "Segmentation" / f"{split}.txt")
    else:
        ids = sorted(path.stem for path in class_dir.glob("*.png") if path.is_file())
        if not ids:
            raise InputError(f"{class_dir}: holds no .png class masks")

    items: list[tuple[torch.Tensor, int, torch.Tensor]] = []
    skipped: list[tuple[str, str]] = []
    for item_id in ids:
        if limit is not None and len(items) >= limit:
            break
        try:
            image, label, mask = _voc_item(item_id, image_dir, class_dir, object_dir)
        except _NoObject as reason:
            skipped.append((item_id, str(reason)))
            continue
        except InputError as error:
            if strict:
                raise
            skipped.append((item_id, str(error)))
            continue
        items.append(_sized(image, label, mask, shape))
    return _assemble(items, skipped, VOC_CLASSES, "voc", str(root), tried=len(items) + len(skipped))


def _voc_item(
    item_id: str, image_dir: Path, class_dir: Path, object_dir: Path | None
) -> tuple[torch.Tensor, int, torch.Tensor]:
    candidates = [image_dir / f"{item_id}{suffix}" for suffix in _IMAGE_SUFFIXES]
    image_path = next((path for path in candidates if path.is_file()), candidates[0])
    image = _read_rgb(image_path)  # (3, H, W)
    class_path = class_dir / f"{item_id}.png"
    classes = _read_index_png(class_path)  # (H, W)
    _check_same_size(class_path, classes.shape, image_path, image.shape[1:])
    bad = (classes >= len(VOC_CLASSES)) & (classes != VOC_VOID)
    if bad.any():
        raise InputError(
            f"{class_path}: class index {int(classes[bad][0])} is not a VOC class "
            f"(0-{len(VOC_CLASSES) - 1} or {VOC_VOID})"
        )
    area = np.bincount(classes.ravel(), minlength=256)[1 : len(VOC_CLASSES)]
    if not area.any():
        raise _NoObject("no object: only background and void pixels")
    label = int(area.argmax()) + 1
    if object_dir is None:
        mask = classes == label
    else:
        object_path = object_dir / f"{item_id}.png"
        instances = _read_index_png(object_path)
        _check_same_size(object_path, instances.shape, image_path, image.shape[1:])
        mask = _largest_instance(instances, classes, label, object_path)
    return image, label, torch.from_numpy(mask)


def _largest_instance(
    instances: np.ndarray, classes: np.ndarray, label: int, path: Path
) -> np.ndarray:
    """Mask of the largest instance whose most common class index is ``label``."""
    best: np.ndarray | None = None
    best_area = 0
    for instance in np.unique(instances):
        if instance in (0, VOC_VOID):
            continue
        pixels = instances == instance
        under = classes[pixels]
        under = under[(under != 0) & (under != VOC_VOID)]
        if under.size == 0 or int(np.bincount(under).argmax()) != label:
            continue
        area = int(pixels.sum())
        if area > best_area:
            best, best_area = pixels, area
    if best is None:
        raise InputError(
            f"{path}: no instance of class {VOC_CLASSES[label]!r} (index {label}), "
            "though the class mask has one"
        )
    return best


def _read_split(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: split file does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read split file ({_one_line(error)})") from error
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: split file lists no ids")
    return ids


# --------------------------------------------------------------------------------------------
# COCO


def load_coco(
    images_dir: str | Path,
    annotations_json: str | Path,
    size: int | tuple[int, int] | None = None,
    limit: int | None = None,
    category_ids: Sequence[int] | None = None,
    *,
    strict: bool = False,
) -> ImageDataset:
    """Load COCO instance annotations as labelled images with object masks.

    Parameters
    ----------
    images_dir : str or Path
        Folder of the images, named by the ``file_name`` of each entry of ``images``.
    annotations_json : str or Path
        A COCO instances file: ``images`` (``id``, ``file_name``, ``height``, ``width``),
        ``annotations`` (``id``, ``image_id``, ``category_id``, ``segmentation`` as polygons,
        uncompressed or compressed RLE, optional ``iscrowd``) and ``categories`` (``id``,
        ``name``). Read with pycocotools.
    size : int or (int, int), optional
        Resize images (bilinear, antialiased) and masks (nearest) to this side or ``(H, W)``.
        Needed when the images differ in size.
    limit : int, optional
        Stop once this many images are loaded (skipped ones do not count). Images are visited
        in increasing ``id``.
    category_ids : sequence of int, optional
        Categories to keep, in label order; annotations of other categories are ignored.
        ``None`` keeps every category, in increasing ``id``.
    strict : bool, default False
        Raise the first item error instead of skipping the item.

    Returns
    -------
    ImageDataset
        Named ``"coco"``. Per image, the largest non-crowd annotation of a kept category (area
        measured on its decoded mask; ties: the first in the file) gives the label, the
        position of its category in the kept categories, and the mask (``annToMask``).
        ``classes`` are the kept categories' names. Images without such an annotation are
        skipped (see the module docstring).

    Raises
    ------
    InputError
        A path is missing; the file is not JSON or not COCO-shaped; nothing could be loaded;
        images differ in size and ``size`` is ``None``; with ``strict=True``, any bad item.
    ValueError
        ``size``, ``limit`` or ``category_ids`` is invalid.
    """
    shape = _check_size(size)
    limit = _check_limit(limit)
    images_dir = _require_folder(Path(images_dir), "COCO image folder")
    json_path = Path(annotations_json)
    coco = _read_coco(json_path)

    categories = sorted(coco.cats)
    if category_ids is not None:
        if isinstance(category_ids, (str, bytes)) or not isinstance(category_ids, Sequence):
            raise InputError(f"category_ids must be a sequence of ints, got {category_ids!r}")
        unknown = [c for c in category_ids if c not in coco.cats]
        if unknown:
            raise InputError(f"category_ids not in {json_path}: {unknown!r}")
        if len(set(category_ids)) != len(category_ids):
            raise InputError(f"category_ids has repeats: {list(category_ids)!r}")
        if not category_ids:
            raise InputError("category_ids is empty")
        categories = list(category_ids)
    index_of = {category: index for index, category in enumerate(categories)}
    classes = tuple(str(coco.cats[category].get("name", category)) for category in categories)

    items: list[tuple[torch.Tensor, int, torch.Tensor]] = []
    skipped: list[tuple[str, str]] = []
    for image_id in sorted(coco.imgs, key=_sort_key):
        if limit is not None and len(items) >= limit:
            break
        info = coco.imgs[image_id]
        name = str(info.get("file_name", image_id)) if isinstance(info, dict) else str(image_id)
        try:
            image, label, mask = _coco_item(coco, image_id, images_dir, json_path, index_of)
        except _NoObject as reason:
            skipped.append((name, str(reason)))
            continue
        except InputError as error:
            if strict:
                raise
            skipped.append((name, str(error)))
            continue
        items.append(_sized(image, label, mask, shape))
    return _assemble(
        items, skipped, classes, "coco", str(json_path), tried=len(items) + len(skipped)
    )


def _read_coco(path: Path) -> Any:
    """Parse and index a COCO file, quietly (pycocotools prints progress)."""
    from pycocotools.coco import COCO

    if not path.is_file():
        raise InputError(f"{path}: annotation file does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON file ({_one_line(error)})") from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{path}: expected a list under {key!r}, as in a COCO instances file")
    for key, fields in (
        ("images", ("id",)),
        ("annotations", ("id", "image_id", "category_id", "segmentation")),
        ("categories", ("id",)),
    ):
        for position, entry in enumerate(data[key]):
            if not isinstance(entry, dict) or any(field not in entry for field in fields):
                raise InputError(
                    f"{path}: {key}[{position}] must be an object with {', '.join(fields)}"
                )
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: malformed COCO annotations ({_one_line(error)})") from error
    return coco


def _coco_item(
    coco: Any,
    image_id: Any,
    images_dir: Path,
    json_path: Path,
    index_of: dict[Any, int],
) -> tuple[torch.Tensor, int, torch.Tensor]:
    info = coco.imgs[image_id]
    file_name, height, width = info.get("file_name"), info.get("height"), info.get("width")
    if not isinstance(file_name, str) or not file_name:
        raise InputError(f"{json_path}: image {image_id!r} has no file_name")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise InputError(f"{json_path}: image {file_name!r} needs positive int height and width")
    annotations = [
        ann
        for ann in coco.imgToAnns.get(image_id, [])
        if ann["category_id"] in index_of and not ann.get("iscrowd", 0)
    ]
    if not annotations:
        raise _NoObject("no non-crowd annotation of a kept category")
    image_path = images_dir / file_name
    image = _read_rgb(image_path)  # (3, H, W)
    _check_same_size(json_path, (height, width), image_path, image.shape[1:], what="annotation")

    best: np.ndarray | None = None
    best_label, best_area = -1, 0
    for ann in annotations:
        mask = _annotation_mask(coco, ann, height, width, json_path, file_name)
        area = int(mask.sum())
        if area > best_area:
            best, best_label, best_area = mask, index_of[ann["category_id"]], area
    if best is None:
        raise _NoObject("every annotation has an empty mask")
    return image, best_label, torch.from_numpy(best)


def _annotation_mask(
    coco: Any, ann: dict[str, Any], height: int, width: int, json_path: Path, file_name: str
) -> np.ndarray:
    """Decode one annotation to an ``(H, W)`` bool mask, checking its format first."""
    where = f"{json_path}: annotation {ann.get('id')!r} of {file_name!r}"
    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        if not segmentation or not all(_is_polygon(p) for p in segmentation):
            raise InputError(
                f"{where}: polygons must be lists of at least 3 (x, y) pairs of finite numbers"
            )
    elif isinstance(segmentation, dict):
        counts, rle_size = segmentation.get("counts"), segmentation.get("size")
        if list(rle_size or ()) != [height, width]:
            raise InputError(
                f"{where}: RLE size {rle_size!r} differs from the image's [{height}, {width}]"
            )
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise InputError(f"{where}: RLE counts must be non-negative ints")
            if sum(counts) != height * width:
                raise InputError(
                    f"{where}: RLE counts sum to {sum(counts)}, not height * width = "
                    f"{height * width}"
                )
        elif not isinstance(counts, (str, bytes)):
            raise InputError(f"{where}: RLE counts must be a list of ints or a string")
    else:
        raise InputError(f"{where}: segmentation must be polygons or RLE")
    try:
        # pycocotools' decoder raises a numpy 2 DeprecationWarning on every call, which the user
        # cannot act on (and which would become an error under -W error).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = coco.annToMask(ann)
    # pycocotools raises bare Exception (and ValueError) on data it cannot decode; the item is
    # reported and skipped, not the load.
    except Exception as error:
        raise InputError(f"{where}: cannot decode segmentation ({_one_line(error)})") from error
    if mask.shape != (height, width):
        raise InputError(f"{where}: mask is {mask.shape}, image is {(height, width)}")
    return np.asarray(mask, dtype=bool)


def _is_polygon(polygon: object) -> bool:
    return (
        isinstance(polygon, list)
        and len(polygon) >= 6
        and len(polygon) % 2 == 0
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in polygon
        )
    )


def _sort_key(image_id: Any) -> tuple[int, Any]:
    # Ids are ints in COCO; other types sort after them, by their text.
    if isinstance(image_id, int):
        return (0, image_id)
    return (1, str(image_id))


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be None or a positive int, got {limit!r}")
    return limit


def _require_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        reason = "is not a folder" if path.exists() else "does not exist"
        raise InputError(f"{path}: {what} {reason}")
    return path


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _read_rgb(path: Path) -> torch.Tensor:
    """An image file as ``(3, H, W)`` float32 in ``[0, 1]``, as stored (no EXIF rotation)."""
    if not path.is_file():
        raise InputError(f"{path}: image file does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except UnidentifiedImageError as error:
        raise InputError(f"{path}: not an image (or a format Pillow cannot read)") from error
    except _DECODE_ERRORS as error:
        raise InputError(f"{path}: corrupt or truncated image ({_one_line(error)})") from error
    if rgb.width == 0 or rgb.height == 0:
        raise InputError(f"{path}: image has no pixels")
    array = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _read_index_png(path: Path) -> np.ndarray:
    """A palette (``P``) or grey (``L``) PNG's pixel indices, ``(H, W)`` uint8."""
    if not path.is_file():
        raise InputError(f"{path}: mask file does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            indices = np.array(image) if mode in ("P", "L") else None
    except UnidentifiedImageError as error:
        raise InputError(f"{path}: not an image (or a format Pillow cannot read)") from error
    except _DECODE_ERRORS as error:
        raise InputError(f"{path}: corrupt or truncated mask ({_one_line(error)})") from error
    if indices is None:
        raise InputError(
            f"{path}: mask must be a palette (P) or grey (L) image of indices, got mode {mode}"
        )
    return indices.astype(np.uint8)


def _check_same_size(
    mask_path: Path,
    mask_shape: Sequence[int],
    image_path: Path,
    image_shape: Sequence[int],
    what: str = "mask",
) -> None:
    if tuple(mask_shape) != tuple(image_shape):
        mh, mw = mask_shape
        ih, iw = image_shape
        raise InputError(
            f"{mask_path}: {what} is {mw}x{mh} (WxH) but image {image_path} is {iw}x{ih}"
        )


def _sized(
    image: torch.Tensor, label: int, mask: torch.Tensor, shape: tuple[int, int] | None
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Resize one item now, so that only resized images are kept in memory."""
    if shape is None:
        return image, label, mask
    return _resize_images(image[None], shape)[0], label, _resize_masks(mask[None], shape)[0]


def _assemble(
    items: list[tuple[torch.Tensor, int, torch.Tensor]],
    skipped: list[tuple[str, str]],
    classes: tuple[str, ...],
    name: str,
    source: str,
    tried: int,
) -> ImageDataset:
    shown = "; ".join(f"{item}: {reason}" for item, reason in skipped[:_SHOWN])
    more = f"; and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    if not items:
        detail = f" Skipped {len(skipped)}: {shown}{more}" if skipped else ""
        raise InputError(f"{source}: no image could be loaded.{detail}")
    first = items[0][0].shape
    for position, (image, _, _) in enumerate(items):
        if image.shape != first:
            raise InputError(
                f"{source}: images differ in size ({first[2]}x{first[1]} and "
                f"{image.shape[2]}x{image.shape[1]} at item {position}); pass size=(H, W) to "
                "resize them"
            )
    if skipped:
        warnings.warn(
            f"{source}: skipped {len(skipped)} of {tried} images ({shown}{more}); "
            "see the data set's skipped field",
            stacklevel=3,
        )
    return ImageDataset(
        images=torch.stack([image for image, _, _ in items]),  # (N, 3, H, W)
        labels=torch.tensor([label for _, label, _ in items], dtype=torch.int64),
        masks=torch.stack([mask for _, _, mask in items]),  # (N, H, W)
        classes=classes,
        name=name,
        skipped=tuple(skipped),
    )
