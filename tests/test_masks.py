"""Tests of the VOC and COCO mask loaders, on tiny fixtures written here."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from leanxai.core.errors import InputError
from leanxai.data import ImageDataset, load_coco, load_voc
from leanxai.data.masks import VOC_CLASSES, VOC_VOID

H, W = 16, 20
PERSON, CAT, AEROPLANE = 15, 8, 1

# --------------------------------------------------------------------------------------------
# VOC fixture


def _palette_png(path: Path, indices: np.ndarray) -> None:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = np.random.default_rng(0).integers(0, 256, size=768).astype(np.uint8).tolist()
    image.putpalette(palette)
    image.save(path)


def _rgb(height: int = H, width: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _voc_item_a() -> tuple[np.ndarray, np.ndarray]:
    """Person in two instances (24 + 9 px) and one larger cat (28 px), with void edges."""
    classes = np.zeros((H, W), dtype=np.uint8)
    objects = np.zeros((H, W), dtype=np.uint8)
    classes[1:5, 1:7], objects[1:5, 1:7] = PERSON, 1  # 24 px
    classes[10:13, 2:5], objects[10:13, 2:5] = PERSON, 2  # 9 px
    classes[6:10, 10:17], objects[6:10, 10:17] = CAT, 3  # 28 px
    classes[5, 10:17] = objects[5, 10:17] = VOC_VOID  # a boundary, counted as nothing
    classes[0, :] = objects[0, :] = VOC_VOID
    return classes, objects


def _voc_item_e() -> tuple[np.ndarray, np.ndarray]:
    classes = np.zeros((H, W), dtype=np.uint8)
    classes[3:9, 4:15] = AEROPLANE
    return classes, (classes > 0).astype(np.uint8)


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (root / folder).mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)

    def item(name: str, classes: np.ndarray, objects: np.ndarray, suffix: str = ".jpg") -> None:
        Image.fromarray(_rgb(seed=len(name) + ord(name[0]))).save(
            root / "JPEGImages" / f"{name}{suffix}"
        )
        _palette_png(root / "SegmentationClass" / f"{name}.png", classes)
        _palette_png(root / "SegmentationObject" / f"{name}.png", objects)

    item("a", *_voc_item_a())
    empty = np.zeros((H, W), dtype=np.uint8)
    empty[4:8, 4:8] = VOC_VOID
    item("b", empty, empty)  # no object: only background and void
    item("c", *_voc_item_e())
    (root / "SegmentationClass" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    small = np.zeros((H - 2, W), dtype=np.uint8)
    small[2:5, 2:5] = CAT
    item("d", *_voc_item_e())
    _palette_png(root / "SegmentationClass" / "d.png", small)  # 20x14 mask, 20x16 image
    item("e", *_voc_item_e(), suffix=".png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("e\n\na\n")
    return root


def test_voc_object_masks_labels_and_skips(voc: Path) -> None:
    with pytest.warns(UserWarning, match="skipped 3 of 5"):
        data = load_voc(voc)
    assert isinstance(data, ImageDataset) and data.name == "voc"
    assert data.classes == VOC_CLASSES and len(VOC_CLASSES) == 21
    assert data.classes[0] == "background" and data.classes[PERSON] == "person"
    assert data.labels.tolist() == [PERSON, AEROPLANE]  # a: person has the largest class area
    _, objects_a = _voc_item_a()
    classes_e, _ = _voc_item_e()
    assert data.masks is not None
    # The largest person instance, not the cat (a larger single instance).
    assert torch.equal(data.masks[0], torch.from_numpy(objects_a == 1))
    assert torch.equal(data.masks[1], torch.from_numpy(classes_e == AEROPLANE))
    assert data.images.shape == (2, 3, H, W) and data.images.dtype == torch.float32
    # The PNG image of item e is read exactly; the JPEG of a approximately.
    expected_e = torch.from_numpy(_rgb(seed=1 + ord("e"))).permute(2, 0, 1).float() / 255
    assert torch.allclose(data.images[1], expected_e, atol=1e-6)
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    skipped = dict(data.skipped)
    assert set(skipped) == {"b", "c", "d"}
    assert "no object" in skipped["b"]
    assert str(voc / "SegmentationClass" / "c.png") in skipped["c"]
    assert "corrupt" in skipped["c"] or "not an image" in skipped["c"]
    assert "20x14" in skipped["d"] and "20x16" in skipped["d"]


def test_voc_class_masks(voc: Path) -> None:
    with pytest.warns(UserWarning):
        data = load_voc(voc, kind="class")
    classes_a, _ = _voc_item_a()
    assert data.masks is not None
    assert torch.equal(data.masks[0], torch.from_numpy(classes_a == PERSON))  # both instances
    assert int(data.masks[0].sum()) == 33


def test_voc_class_kind_needs_no_object_folder(voc: Path) -> None:
    for file in (voc / "SegmentationObject").iterdir():
        file.unlink()
    (voc / "SegmentationObject").rmdir()
    with pytest.warns(UserWarning):
        assert len(load_voc(voc, kind="class")) == 2
    with pytest.raises(InputError, match="SegmentationObject"):
        load_voc(voc, kind="object")


def test_voc_split_order_limit_and_no_warning(voc: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_voc(voc, split="train")
        assert data.labels.tolist() == [AEROPLANE, PERSON]  # the split file's order
        assert data.skipped == ()
        assert load_voc(voc, split="train", limit=1).labels.tolist() == [AEROPLANE]
        assert load_voc(voc, limit=1).labels.tolist() == [PERSON]  # a, the first id, loads
    with pytest.warns(UserWarning, match="skipped 3 of 5"):  # skipped items do not count
        assert load_voc(voc, limit=2).labels.tolist() == [PERSON, AEROPLANE]


def test_voc_resize(voc: Path) -> None:
    data = load_voc(voc, split="train", size=(8, 10))
    assert data.images.shape == (2, 3, 8, 10)
    assert data.masks is not None and data.masks.shape == (2, 8, 10)
    classes_e, _ = _voc_item_e()
    # Nearest at pixel centres: halving keeps every second pixel, starting at the second.
    assert torch.equal(data.masks[0], torch.from_numpy(classes_e[1::2, 1::2] == AEROPLANE))
    assert load_voc(voc, split="train", size=12).images.shape == (2, 3, 12, 12)


def test_voc_sizes_must_agree_without_size(voc: Path) -> None:
    classes, objects = _voc_item_e()
    Image.fromarray(_rgb(H, W + 4)).save(voc / "JPEGImages" / "f.jpg")
    _palette_png(voc / "SegmentationClass" / "f.png", np.pad(classes, ((0, 0), (0, 4))))
    _palette_png(voc / "SegmentationObject" / "f.png", np.pad(objects, ((0, 0), (0, 4))))
    (voc / "ImageSets" / "Segmentation" / "mixed.txt").write_text("a\nf\n")
    with pytest.raises(InputError, match="size="):
        load_voc(voc, split="mixed")
    assert load_voc(voc, split="mixed", size=16).images.shape == (2, 3, 16, 16)


def test_voc_strict_raises_item_errors(voc: Path) -> None:
    with pytest.raises(InputError, match=r"c\.png"):
        load_voc(voc, strict=True)
    (voc / "ImageSets" / "Segmentation" / "d.txt").write_text("d\n")
    with pytest.raises(InputError, match="mask is 20x14"):
        load_voc(voc, split="d", strict=True)
    # An image without objects is skipped, not an error, even when strict.
    (voc / "ImageSets" / "Segmentation" / "ab.txt").write_text("a\nb\n")
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        assert len(load_voc(voc, split="ab", strict=True)) == 1


def test_voc_bad_items(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "bad.txt").write_text("a\ng\nh\ni\nj\n")
    # j: a truncated JPEG.
    Image.fromarray(_rgb()).save(voc / "JPEGImages" / "j.jpg")
    payload = (voc / "JPEGImages" / "j.jpg").read_bytes()
    (voc / "JPEGImages" / "j.jpg").write_bytes(payload[: len(payload) // 2])
    _palette_png(voc / "SegmentationClass" / "j.png", _voc_item_e()[0])
    _palette_png(voc / "SegmentationObject" / "j.png", _voc_item_e()[1])
    # g: mask in RGB mode; h: image missing; i: a class index that is not a VOC class.
    Image.fromarray(_rgb()).save(voc / "JPEGImages" / "g.jpg")
    Image.fromarray(_rgb()).save(voc / "SegmentationClass" / "g.png")
    _palette_png(voc / "SegmentationClass" / "h.png", _voc_item_e()[0])
    Image.fromarray(_rgb()).save(voc / "JPEGImages" / "i.jpg")
    _palette_png(voc / "SegmentationClass" / "i.png", np.full((H, W), 42, dtype=np.uint8))
    _palette_png(voc / "SegmentationObject" / "i.png", np.ones((H, W), dtype=np.uint8))
    with pytest.warns(UserWarning, match="skipped 4 of 5"):
        data = load_voc(voc, split="bad")
    assert len(data) == 1
    skipped = dict(data.skipped)
    assert "mode RGB" in skipped["g"]
    assert "h.jpg" in skipped["h"] and "does not exist" in skipped["h"]
    assert "42" in skipped["i"]
    assert "j.jpg" in skipped["j"] and "truncated" in skipped["j"]


def test_voc_nothing_loaded(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "none.txt").write_text("b\nc\n")
    with pytest.raises(InputError, match="no image could be loaded") as error:
        load_voc(voc, split="none")
    assert "no object" in str(error.value) and "c.png" in str(error.value)


def test_voc_missing_paths(tmp_path: Path, voc: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match=re.escape(str(missing))):
        load_voc(missing)
    with pytest.raises(InputError, match=r"val\.txt"):
        load_voc(voc, split="val")
    (voc / "ImageSets" / "Segmentation" / "blank.txt").write_text("\n\n")
    with pytest.raises(InputError, match="no ids"):
        load_voc(voc, split="blank")
    bare = tmp_path / "bare"
    (bare / "JPEGImages").mkdir(parents=True)
    with pytest.raises(InputError, match="SegmentationClass"):
        load_voc(bare)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"kind": "instance"}, "kind"), ({"size": -1}, "size"), ({"limit": 0}, "limit")],
)
def test_voc_invalid_arguments(voc: Path, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        load_voc(voc, **kwargs)


# --------------------------------------------------------------------------------------------
# COCO fixture

CH, CW = 10, 12


def _rect(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((CH, CW), dtype=np.uint8)
    mask[top:bottom, left:right] = 1
    return mask


def _rle(mask: np.ndarray) -> dict[str, Any]:
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    flat = mask.ravel(order="F")  # column-major, as COCO's RLE
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": [CH, CW], "counts": [int(c) for c in counts]}


SQUARE_POLYGON = [[2, 2, 6, 2, 6, 6, 2, 6]]  # pycocotools fills rows and columns 2-5
DOG_MASK = _rect(1, 3, 6, 11)  # 40 px
BIRD_MASK = _rect(4, 0, 9, 3)  # 15 px
CROWD_MASK = _rect(0, 0, 10, 12)


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_rgb(CH, CW, seed=1)).save(images / "one.png")
    Image.fromarray(_rgb(CH, CW, seed=2)).save(images / "two.jpg", quality=95)
    Image.fromarray(_rgb(CH, CW, seed=3)).save(images / "three.png")
    Image.fromarray(_rgb(CH, CW, seed=5)).save(images / "five.png")
    Image.fromarray(_rgb(CH, CW, seed=6)).save(images / "six.png")
    data = {
        "images": [
            {"id": 2, "file_name": "two.jpg", "height": CH, "width": CW},
            {"id": 1, "file_name": "one.png", "height": CH, "width": CW},
            {"id": 3, "file_name": "three.png", "height": CH, "width": CW},
            {"id": 4, "file_name": "four.png", "height": CH, "width": CW},
            {"id": 5, "file_name": "five.png", "height": CH + 1, "width": CW},
            {"id": 6, "file_name": "six.png", "height": CH, "width": CW},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "segmentation": SQUARE_POLYGON},
            {"id": 11, "image_id": 1, "category_id": 7, "segmentation": _rle(DOG_MASK)},
            {
                "id": 12,
                "image_id": 2,
                "category_id": 9,
                "segmentation": _uncompressed_rle(BIRD_MASK),
            },
            {
                "id": 13,
                "image_id": 2,
                "category_id": 7,
                "iscrowd": 1,
                "segmentation": _uncompressed_rle(CROWD_MASK),
            },
            {
                "id": 14,
                "image_id": 3,
                "category_id": 3,
                "iscrowd": 1,
                "segmentation": _rle(CROWD_MASK),
            },
            {"id": 15, "image_id": 4, "category_id": 3, "segmentation": SQUARE_POLYGON},
            {"id": 16, "image_id": 5, "category_id": 3, "segmentation": SQUARE_POLYGON},
            {"id": 17, "image_id": 6, "category_id": 3, "segmentation": [[1, 2, 3]]},
        ],
        "categories": [
            {"id": 9, "name": "bird"},
            {"id": 3, "name": "cat"},
            {"id": 7, "name": "dog"},
        ],
    }
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    return images, annotations


def test_coco_labels_masks_and_skips(
    coco: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images, annotations = coco
    with pytest.warns(UserWarning, match="skipped 4 of 6"):
        data = load_coco(images, annotations)
    assert capsys.readouterr().out == ""  # pycocotools' progress prints are silenced
    assert data.name == "coco"
    assert data.classes == ("cat", "dog", "bird")  # categories in increasing id
    # Images in increasing id: one (dog RLE beats the cat polygon), two (bird; crowd ignored).
    assert data.labels.tolist() == [1, 2]
    assert data.masks is not None
    assert torch.equal(data.masks[0], torch.from_numpy(DOG_MASK.astype(bool)))
    assert torch.equal(data.masks[1], torch.from_numpy(BIRD_MASK.astype(bool)))
    assert data.images.shape == (2, 3, CH, CW)
    expected = torch.from_numpy(_rgb(CH, CW, seed=1)).permute(2, 0, 1).float() / 255
    assert torch.allclose(data.images[0], expected, atol=1e-6)
    skipped = dict(data.skipped)
    assert set(skipped) == {"three.png", "four.png", "five.png", "six.png"}
    assert "crowd" in skipped["three.png"]
    assert "four.png" in skipped["four.png"] and "does not exist" in skipped["four.png"]
    assert "12x11" in skipped["five.png"] and "12x10" in skipped["five.png"]
    assert "polygons" in skipped["six.png"]


def test_coco_category_ids_select_and_order(coco: tuple[Path, Path]) -> None:
    images, annotations = coco
    with pytest.warns(UserWarning):
        data = load_coco(images, annotations, category_ids=[9, 3])
    assert data.classes == ("bird", "cat")
    # Without dogs, image one's label is the cat, with the polygon's exact mask.
    assert data.labels.tolist() == [1, 0]
    assert data.masks is not None
    assert torch.equal(data.masks[0], torch.from_numpy(_rect(2, 2, 6, 6).astype(bool)))


def test_coco_limit_size_and_strict(coco: tuple[Path, Path]) -> None:
    images, annotations = coco
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_coco(images, annotations, limit=2, size=(5, 6))
    assert data.images.shape == (2, 3, 5, 6)
    assert data.masks is not None
    assert torch.equal(data.masks[0], torch.from_numpy(DOG_MASK[1::2, 1::2].astype(bool)))
    with pytest.raises(InputError, match=r"four\.png"):
        load_coco(images, annotations, strict=True)


def test_coco_rle_size_mismatch_and_bad_counts(coco: tuple[Path, Path]) -> None:
    images, annotations = coco
    data = json.loads(annotations.read_text())
    wrong = _rle(DOG_MASK)
    wrong["size"] = [CH, CW + 1]
    short = _uncompressed_rle(BIRD_MASK)
    short["counts"] = short["counts"][:-1]
    data["annotations"][1]["segmentation"] = wrong
    data["annotations"][2]["segmentation"] = short
    annotations.write_text(json.dumps(data))
    # One bad annotation makes its image a bad item; here no image is left.
    with pytest.raises(InputError, match="no image could be loaded") as error:
        load_coco(images, annotations, category_ids=[7, 9])
    assert "one.png" in str(error.value) and "RLE size" in str(error.value)
    assert "two.jpg" in str(error.value) and "sum to" in str(error.value)


def test_coco_nothing_loaded(coco: tuple[Path, Path]) -> None:
    images, annotations = coco
    data = json.loads(annotations.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] >= 3]
    annotations.write_text(json.dumps(data))
    with pytest.raises(InputError, match="no image could be loaded"):
        load_coco(images, annotations)


def test_coco_bad_files(tmp_path: Path, coco: tuple[Path, Path]) -> None:
    images, annotations = coco
    with pytest.raises(InputError, match=r"missing\.json"):
        load_coco(images, tmp_path / "missing.json")
    with pytest.raises(InputError, match="nowhere"):
        load_coco(tmp_path / "nowhere", annotations)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(InputError, match=r"broken\.json"):
        load_coco(images, broken)
    broken.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        load_coco(images, broken)
    broken.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(InputError, match="categories"):
        load_coco(images, broken)
    broken.write_text(json.dumps({"images": [{}], "annotations": [], "categories": []}))
    with pytest.raises(InputError, match=r"images\[0\]"):
        load_coco(images, broken)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"category_ids": [4]}, "category_ids"),
        ({"category_ids": [3, 3]}, "category_ids"),
        ({"category_ids": []}, "category_ids"),
        ({"size": (1, 2, 3)}, "size"),
        ({"limit": -1}, "limit"),
    ],
)
def test_coco_invalid_arguments(coco: tuple[Path, Path], kwargs: dict[str, Any], name: str) -> None:
    images, annotations = coco
    with pytest.raises(ValueError, match=name):
        load_coco(images, annotations, **kwargs)
