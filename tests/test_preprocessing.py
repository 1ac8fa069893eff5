"""Preprocessing the user states (--mean/--std/--normalize, a py: factory's declaration), the one
notice when nothing is known, what summary.csv records, and overlays at the photo's own size
(issue 23)."""

from __future__ import annotations

import csv
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from leanxai.cli._common import NO_NORMALIZATION_NOTICE
from leanxai.cli.main import main
from leanxai.core.errors import ModelLoadError
from leanxai.core.models import IMAGENET_MEAN, IMAGENET_STD, load_model, normalized
from leanxai.data.images import load_image, load_image_and_original

# A model that needs ImageNet normalisation: class 0 scores the sum of the normalised channels
# after ReLU, class 1 a constant. A mid-grey photo is class 0 on raw [0, 1] pixels and class 1
# once normalised (its channels fall below the ImageNet means).
_FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class ImageNetToy(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(3, 2, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2, 2)
            with torch.no_grad():
                self.features.weight.zero_()
                self.features.weight[0, :, 1, 1] = 1.0
                self.features.bias.zero_()
                self.fc.weight.copy_(torch.eye(2))
                self.fc.bias.copy_(torch.tensor([0.0, 0.5]))

        def forward(self, x):
            return self.fc(self.pool(self.relu(self.features(x))).flatten(1))

    def build():
        return ImageNetToy()

    def declared():
        model = ImageNetToy()
        model.leanxai_normalize = "imagenet"
        model.input_size = (32, 32)
        return model

    def declared_custom():
        model = ImageNetToy()
        model.leanxai_normalize = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
        return model

    def declared_badly():
        model = ImageNetToy()
        model.leanxai_normalize = {"mean": (0.5,)}
        return model
    """
)


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    module = tmp_path / "factories"
    module.mkdir()
    (module / "imagenet_toy_23.py").write_text(_FACTORY)
    monkeypatch.syspath_prepend(str(module))
    yield "py:imagenet_toy_23"
    sys.modules.pop("imagenet_toy_23", None)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    grey = np.full((427, 640, 3), 110, dtype=np.uint8)  # 640x427 (WxH), like a landscape photo
    grey[100:300, 200:450] = rng.integers(90, 130, size=(200, 250, 3), dtype=np.uint8)
    Image.fromarray(grey).save(folder / "landscape.png")
    return folder


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_normalize_imagenet_gives_the_python_class_and_none_says_so(factory, photos, tmp_path):
    spec = f"{factory}:build"
    with_norm = run("explain", str(photos), "--model", spec, "--size", "32",
                    "--normalize", "imagenet", "--out", str(tmp_path / "a"))  # fmt: skip
    assert with_norm.exit_code == 0, with_norm.output
    assert NO_NORMALIZATION_NOTICE not in with_norm.stderr
    row = _rows(tmp_path / "a" / "summary.csv")[0]
    assert row["preprocessing"] == (
        "mean=0.485,0.456,0.406 std=0.229,0.224,0.225 (--normalize imagenet)"
    )

    model = load_model(spec).model
    image = load_image(photos / "landscape.png", size=(32, 32))
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        expected = int(model(((image - mean) / std)[None]).argmax(1))
        raw = int(model(image[None]).argmax(1))
    assert int(row["class"]) == expected == 1
    assert raw != expected  # the test means something: raw pixels give another class

    without = run("explain", str(photos), "--model", spec, "--size", "32",
                  "--out", str(tmp_path / "b"))  # fmt: skip
    assert without.exit_code == 0, without.output
    lines = [line for line in without.stderr.splitlines() if "normalisation" in line]
    assert lines == [NO_NORMALIZATION_NOTICE]
    row = _rows(tmp_path / "b" / "summary.csv")[0]
    assert int(row["class"]) == raw
    assert row["preprocessing"] == "none: RGB in [0, 1] (none given)"


def test_mean_std_options_and_a_declaring_factory(factory, photos, tmp_path):
    given = run("explain", str(photos), "--model", f"{factory}:build", "--size", "32",
                "--mean", "0.485,0.456,0.406", "--std", "0.229 0.224 0.225",
                "--out", str(tmp_path / "a"))  # fmt: skip
    assert given.exit_code == 0, given.output
    assert _rows(tmp_path / "a" / "summary.csv")[0]["class"] == "1"
    assert "(--mean/--std)" in _rows(tmp_path / "a" / "summary.csv")[0]["preprocessing"]

    declared = run("explain", str(photos), "--model", f"{factory}:declared",
                   "--out", str(tmp_path / "b"))  # fmt: skip
    assert declared.exit_code == 0, declared.output
    assert NO_NORMALIZATION_NOTICE not in declared.stderr
    row = _rows(tmp_path / "b" / "summary.csv")[0]
    assert row["class"] == "1"
    assert "leanxai_normalize" in row["preprocessing"]
    assert row["preprocessing"].startswith("mean=0.485,0.456,0.406 std=0.229,0.224,0.225")

    # The option wins over the declaration.
    forced = run("explain", str(photos), "--model", f"{factory}:declared", "--normalize", "none",
                 "--out", str(tmp_path / "c"))  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert _rows(tmp_path / "c" / "summary.csv")[0]["class"] == "0"

    loaded = load_model(f"{factory}:declared_custom")
    assert (loaded.mean, loaded.std) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    with pytest.raises(ModelLoadError, match="leanxai_normalize"):
        load_model(f"{factory}:declared_badly")


@pytest.mark.parametrize(
    "options",
    [
        ["--normalize", "imagenet", "--mean", "0,0,0", "--std", "1,1,1"],
        ["--mean", "0,0,0"],
        ["--mean", "0,0"],
        ["--std", "0,1,1", "--mean", "0,0,0"],
        ["--normalize", "zscore"],
    ],
)
def test_bad_normalization_options_are_usage_errors(factory, photos, tmp_path, options):
    result = run("explain", str(photos), "--model", f"{factory}:build", *options,
                 "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_normalized_module_reads_rgb():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    wrapped = normalized(model, IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(2, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(wrapped(x), model((x - mean) / std))
    assert normalized(model, None, None) is model


def test_overlay_keeps_the_photo_aspect_ratio(factory, photos, tmp_path):
    out = tmp_path / "out"
    result = run("explain", str(photos), "--model", f"{factory}:build", "--size", "32",
                 "--normalize", "none", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(out / "landscape.png") as png:
        assert png.size == (640, 427)  # (W, H): the photo's own size
    assert np.load(out / "landscape.npy").shape == (32, 32)  # the model-size map

    capped = run("explain", str(photos), "--model", f"{factory}:build", "--size", "32",
                 "--normalize", "none", "--overlay-size", "320", "--threshold", "top:20",
                 "--out", str(tmp_path / "capped"))  # fmt: skip
    assert capped.exit_code == 0, capped.output
    with Image.open(tmp_path / "capped" / "landscape.png") as png:
        width, height = png.size  # a panel: three tiles of 320x214 under a title strip
    assert width == 3 * 320 + 2 * 4 and 214 < height < 214 + 40


def test_load_image_and_original(photos):
    model_input, original = load_image_and_original(photos / "landscape.png", (32, 32))
    assert model_input.shape == (3, 32, 32) and original.shape == (3, 427, 640)
    torch.testing.assert_close(model_input, load_image(photos / "landscape.png", (32, 32)))
    _, small = load_image_and_original(photos / "landscape.png", (32, 32), max_side=100)
    assert small.shape == (3, 67, 100)


def test_export_metadata_records_the_options(factory, tmp_path):
    pytest.importorskip("onnxruntime")
    from leanxai.deploy.runtime import ExplainedModel

    path = tmp_path / "toy.onnx"
    result = run("export", "--model", f"{factory}:build", "--size", "16",
                 "--normalize", "imagenet", "--out", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "normalisation: mean=0.485,0.456,0.406" in result.output
    runtime = ExplainedModel(path)
    np.testing.assert_allclose(runtime.mean, IMAGENET_MEAN, rtol=1e-6)
    np.testing.assert_allclose(runtime.std, IMAGENET_STD, rtol=1e-6)
