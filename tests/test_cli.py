"""The CLI through click's CliRunner: good files are explained, bad ones are named, exit codes."""

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

from leanxai.cli.main import main
from leanxai.zoo import demo_cnn

SPEC = "py:leanxai.zoo:demo_cnn"


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "demo.safetensors"
    save_file(demo_cnn().state_dict(), str(path))
    return path


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.random((30, 30)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    return folder


def _bad_files(folder: Path) -> list[Path]:
    (folder / "notes.png").write_text("this is not an image")
    (folder / "empty.jpg").write_bytes(b"")
    good = folder / "rgb.png"
    (folder / "truncated.png").write_bytes(good.read_bytes()[:200])
    return [folder / "notes.png", folder / "empty.jpg", folder / "truncated.png"]


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_explain_folder_with_good_and_bad_files(tmp_path, weights, image_dir):
    bad = _bad_files(image_dir)
    out = tmp_path / "out"
    result = run(
        "explain",
        str(image_dir),
        str(tmp_path / "missing.png"),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "64",
        "--threshold",
        "top:10",
        "--batch-size",
        "4",
        "--out",
        str(out),
    )
    assert result.exit_code == 3, result.output
    for path in [*bad, tmp_path / "missing.png"]:
        assert str(path) in result.stderr
    assert "Traceback" not in result.output
    good = ["cmyk", "deep", "gray", "palette", "rgb", "rgba"]
    for name in good:
        heatmap = np.load(out / f"{name}.npy")
        assert heatmap.shape == (64, 64) and heatmap.dtype == np.float32
        assert 0 <= heatmap.min() and heatmap.max() <= 1
        assert Image.open(out / f"{name}.png").mode == "RGB"
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    ok = {Path(r["file"]).stem: r for r in rows if r["status"] == "ok"}
    assert sorted(ok) == good
    assert all(0 < float(r["coverage"]) <= 0.2 for r in ok.values())  # top 10% (+ ties)
    assert all(0 <= int(r["class"]) < 4 and 0 < float(r["score"]) <= 1 for r in ok.values())
    assert all(r["output"] == f"{stem}.png" and r["map"] == f"{stem}.npy" for stem, r in ok.items())
    skipped = {r["file"]: r["status"] for r in rows if r["status"].startswith("skipped")}
    assert set(skipped) == {str(p) for p in [*bad, tmp_path / "missing.png"]}
    assert skipped[str(tmp_path / "missing.png")] == "skipped: does not exist"
    assert "explained 6 of 10 inputs" in result.stdout


def test_explain_names_missing_files_and_ignored_folder_files(tmp_path, weights, image_dir):
    (image_dir / "noext").write_bytes(b"not an image")
    (image_dir / "readme.txt").write_text("notes")
    out = tmp_path / "out"
    result = run(
        "explain",
        str(tmp_path / "nothere.jpg"),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--out",
        str(out),
    )
    assert result.exit_code == 3, result.output
    assert "explained 0 of 1 inputs" in result.stdout
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["file"], r["status"]) for r in rows] == [
        (str(tmp_path / "nothere.jpg"), "skipped: does not exist")
    ]
    folder = run(
        "explain",
        str(image_dir),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "64",
        "--out",
        str(tmp_path / "out2"),
    )
    assert "ignored 2 files that are not images: " in folder.stderr
    assert str(image_dir / "noext") in folder.stderr and "readme.txt" in folder.stderr


def test_explain_summary_maps_outputs_back_to_inputs(tmp_path, weights, image_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    source = next(p for p in sorted(image_dir.iterdir()) if p.stem == "rgb")
    (a / "x.png").write_bytes(source.read_bytes())
    (b / "x.png").write_bytes(source.read_bytes())
    out = tmp_path / "out"
    result = run(
        "explain",
        str(a),
        str(b),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "64",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    with open(out / "summary.csv") as handle:
        rows = {r["file"]: r for r in csv.DictReader(handle)}
    assert rows[str(a / "x.png")]["output"] == "x.png"
    assert rows[str(b / "x.png")]["output"] == "x-2.png"
    assert (out / "x-2.png").exists() and (out / "x-2.npy").exists()


def test_results_match_the_library(tmp_path, weights, image_dir):
    out = tmp_path / "out"
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "64",
        "--out",
        str(out),
        "--target",
        "2",
    )
    assert result.exit_code == 0, result.output
    from leanxai import GradCAM
    from leanxai.core.models import load_model
    from leanxai.data.images import load_image

    model = load_model(SPEC, weights).model
    expected = GradCAM(model).explain(load_image(image_dir / "rgb.png", (64, 64))[None], 2)
    assert np.allclose(np.load(out / "rgb.npy"), expected.heatmap[0].numpy(), atol=1e-6)


def test_refuses_to_overwrite(tmp_path, weights, image_dir):
    out = tmp_path / "out"
    args = [
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "64",
        "--out",
        str(out),
    ]
    assert run(*args).exit_code == 0
    before = (out / "rgb.npy").read_bytes()
    (out / "rgb.npy").write_bytes(b"mine")
    result = run(*args)
    assert result.exit_code == 1
    assert "already exist" in result.stderr and "--overwrite" in result.stderr
    assert "overwrite=True" not in result.stderr  # CLI terms only
    assert (out / "rgb.npy").read_bytes() == b"mine"
    assert run(*args, "--overwrite").exit_code == 0
    assert (out / "rgb.npy").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "features.99"], "does not exist"),
        (["--target", "7"], "out of range"),
        (["--threshold", "top:200"], "not in (0, 100]"),
        (["--threshold", "bogus"], "threshold"),
        (["--size", "0x3"], "SIZE"),
    ],
)
def test_one_line_errors(tmp_path, weights, image_dir, extra, message):
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "64",
        "--out",
        str(tmp_path / "o"),
        *extra,
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 2  # click usage errors add a hint line


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("py:leanxai.zoo:nope", "no callable"),
        ("py:not_a_module_xyz:f", "cannot import"),
        ("model.pkl", "refusing to unpickle"),
        ("whatever", "unknown model spec"),
        ("missing.pt2", "does not exist"),
    ],
)
def test_bad_model_specs(tmp_path, image_dir, spec, message):
    result = run("explain", str(image_dir), "--model", spec, "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_factory_that_raises(tmp_path, image_dir, monkeypatch):
    import leanxai.zoo

    def broken() -> None:
        raise KeyError("no such architecture")

    monkeypatch.setattr(leanxai.zoo, "broken_factory", broken, raising=False)
    result = run(
        "explain",
        str(image_dir),
        "--model",
        "py:leanxai.zoo:broken_factory",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 1
    assert "raised KeyError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_weights_that_do_not_fit(tmp_path, image_dir):
    path = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(path))
    result = run(
        "explain",
        str(image_dir),
        "--model",
        SPEC,
        "--weights",
        str(path),
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 1 and "do not fit" in result.stderr


def test_pickled_state_dict_is_loaded_safely(tmp_path, image_dir):
    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(demo_cnn().state_dict(), path)
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        SPEC,
        "--weights",
        str(path),
        "--size",
        "64",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    torch.save({"weights": demo_cnn()}, tmp_path / "evil.pt")  # an object, not tensors
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        SPEC,
        "--weights",
        str(tmp_path / "evil.pt"),
        "--out",
        str(tmp_path / "o2"),
    )
    assert result.exit_code == 1 and "cannot read weights" in result.stderr


def test_exported_program(tmp_path, image_dir):
    torch.manual_seed(0)
    model = demo_cnn().eval()
    path = tmp_path / "model.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        model, (torch.rand(2, 3, 64, 64),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(path))
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        str(path),
        "--size",
        "64",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    from leanxai import GradCAM
    from leanxai.data.images import load_image

    x = load_image(image_dir / "rgb.png", (64, 64))[None]
    expected = GradCAM(model).explain(x).heatmap[0].numpy()
    assert np.allclose(np.load(tmp_path / "o" / "rgb.npy"), expected, atol=1e-5)


def test_model_that_fails_on_the_input_is_one_line(tmp_path, image_dir):
    model = demo_cnn().eval()
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(2, 3, 64, 64),)), str(path))
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        str(path),
        "--size",
        "64",
        "--normalize",
        "none",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 1
    assert "the model failed on a batch of 1 images" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_transformers_folder(tmp_path, image_dir):
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        layer_type="basic",
        depths=[1, 1],
        hidden_sizes=[8, 16],
        embedding_size=8,
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "eel"},
        label2id={"cat": 0, "dog": 1, "eel": 2},
    )
    torch.manual_seed(0)
    folder = tmp_path / "hf"
    transformers.ResNetForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 48, "width": 48},
                "do_normalize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.25, 0.25, 0.25],
            }
        )
    )
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        f"hf:{folder}",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "o" / "rgb.npy").shape == (48, 48)
    with open(tmp_path / "o" / "summary.csv") as handle:
        row = next(csv.DictReader(handle))
    assert row["label"] in {"cat", "dog", "eel"} and row["path"] == "forward"


def test_demo_writes_its_report(tmp_path, monkeypatch):
    import leanxai.experiments.demo

    torch.manual_seed(0)
    info = {
        "classes": ["circle", "square", "triangle", "cross"],
        "input_size": [3, 64, 64],
        "held_out_accuracy": 0.5,
    }
    monkeypatch.setattr(
        leanxai.experiments.demo, "load_demo_model", lambda *a, **k: (demo_cnn().eval(), info)
    )
    out = tmp_path / "demo"
    result = run("demo", "--out", str(out), "--images", "3")
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.stdout
    html = (out / "index.html").read_text()
    assert "IoU" in html and "images/000-top10.png" in html
    # The real photos through the pretrained model, their classes in words (issue 20).
    assert "Egyptian cat" in html and "espresso" in html and 'type="range"' in html
    with open(out / "photos.csv") as handle:
        photos = list(csv.DictReader(handle))
    assert {r["label"] for r in photos if r["photo"] == "coffee.png"} == {"espresso"}
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 5
    assert all(0 <= float(r["iou"]) <= 1 for r in rows)
    assert run("demo", "--out", str(out), "--images", "3").exit_code == 1  # no silent overwrite
    assert run("demo", "--out", str(out), "--images", "3", "--overwrite").exit_code == 0


@pytest.mark.parametrize("method", ["occlusion", "guided_backprop", "ig"])
def test_explain_with_a_baseline(tmp_path, weights, image_dir, method):
    out = tmp_path / "out"
    result = run(
        "explain",
        str(image_dir / "rgb.png"),
        "--model",
        SPEC,
        "--weights",
        str(weights),
        "--size",
        "32",
        "--method",
        method,
        "--threshold",
        "top:10",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    heatmap = np.load(out / "rgb.npy")
    assert heatmap.shape == (32, 32) and 0.0 <= heatmap.min() and heatmap.max() == 1.0
    with open(out / "summary.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["status"] == "ok" and row["layer"] == ""


def test_layer_is_for_cam_methods_only(tmp_path, weights, image_dir):
    result = CliRunner().invoke(
        main,
        [
            "explain",
            str(image_dir / "rgb.png"),
            "--model",
            SPEC,
            "--weights",
            str(weights),
            "--method",
            "lime",
            "--layer",
            "features",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert "--layer applies to gradcam" in result.output


def test_explain_runs_a_one_channel_model_at_its_own_size(tmp_path):
    """`leanxai explain` on the MNIST CNN: RGB files become its one channel, at 32x32."""
    from safetensors.torch import save_file

    from leanxai.zoo.digits import mnist_cnn

    torch.manual_seed(0)
    weights = tmp_path / "mnist.safetensors"
    save_file(mnist_cnn().state_dict(), str(weights))
    image = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out"
    result = run(
        "explain",
        str(image),
        "--model",
        "py:leanxai.zoo.digits:mnist_cnn",
        "--weights",
        str(weights),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert np.load(out / "digit.npy").shape == (32, 32)
