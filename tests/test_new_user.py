"""What a new user hit (issue 24), each command as they typed it, through click's CliRunner: one
clear line and no traceback where the command cannot work, the fixed behaviour where it can."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from leanxai.cli.main import main

FACTORY = """
from torch import nn


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )
"""


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).eval()  # fmt: skip


@pytest.fixture(autouse=True)
def factory(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("new_user_factories")
    (folder / "new_user_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(folder))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    pixels = (np.random.default_rng(0).random((30, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result) -> bool:
    lines = [line for line in result.output.splitlines() if line.strip()]
    return (
        result.exit_code == 1
        and len(lines) == 1
        and lines[0].startswith("error: ")
        and "Traceback" not in result.output
    )


def test_weights_of_another_architecture(tmp_path):
    """Item 2: --weights of the shapes demo CNN for the MNIST CNN."""
    from leanxai.zoo.train import demo_cnn

    weights = tmp_path / "demo_cnn.safetensors"
    save_file(demo_cnn().state_dict(), str(weights))
    result = invoke(
        "compress", "--model", "py:leanxai.zoo.digits:mnist_cnn", "--weights", str(weights),
        "--data", "mnist", "--out", str(tmp_path / "o.lxc.safetensors"),
    )  # fmt: skip
    assert one_line_error(result), result.output
    assert "features.0.weight is (16, 3, 3, 3) in the file but (16, 1, 3, 3)" in result.output
    assert "size mismatch" not in result.output


def test_compress_refuses_pt2_in_help_and_in_one_line(tmp_path):
    """Item 5."""
    assert "not an exported .pt2" in " ".join(invoke("compress", "--help").output.split())
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(small_cnn(), (torch.randn(2, 3, 16, 16),)), str(path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32))
    result = invoke(
        "compress", "--model", str(path), "--data", str(tmp_path / "x.npy"),
        "--out", str(tmp_path / "o.lxc.safetensors"),
    )  # fmt: skip
    assert one_line_error(result), result.output
    assert "py:module:factory" in result.output
    assert "skip_unsupported" not in result.output


def test_missing_hf_folder(image, tmp_path):
    """Item 11: hf:./missing-folder."""
    result = invoke(
        "explain", str(image), "--model", "hf:./missing-folder", "--out", str(tmp_path / "o")
    )
    assert one_line_error(result), result.output
    assert "'./missing-folder' does not exist" in result.output
    assert "alphanumeric" not in result.output


def test_exported_program_states_its_input_size(image, tmp_path):
    """Item 11: a .pt2 exported at 48x40 is fed 48x40 images, not 224x224."""
    path = tmp_path / "model.pt2"
    example = (torch.randn(1, 3, 48, 40),)
    torch.export.save(torch.export.export(small_cnn(), example), str(path))
    out = tmp_path / "maps"
    result = invoke("explain", str(image), "--model", str(path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert np.load(out / "photo.npy").shape == (48, 40)


def test_compressed_file_is_a_model_spec(image, tmp_path):
    """Item 11: a file written by `leanxai compress` goes to --model of explain and compress."""
    weights = tmp_path / "cnn.safetensors"
    save_file(small_cnn().state_dict(), str(weights))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((20, 3, 16, 16), dtype=np.float32))
    compressed = tmp_path / "cnn.lxc.safetensors"
    common = ["--data", str(tmp_path / "x.npy"), "--finetune-steps", "0", "--bits", "8"]
    result = invoke(
        "compress", "--model", "py:new_user_models:small_cnn", "--weights", str(weights),
        "--out", str(compressed), *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    out = tmp_path / "maps"
    result = invoke("explain", str(image), "--model", str(compressed), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert np.load(out / "photo.npy").shape == (224, 224)

    again = tmp_path / "again.lxc.safetensors"
    result = invoke("compress", "--model", str(compressed), "--out", str(again), *common)
    assert result.exit_code == 0, result.output
    assert again.is_file()


def test_plain_weights_as_a_model_say_to_use_weights(image, tmp_path):
    weights = tmp_path / "cnn.safetensors"
    save_file(small_cnn().state_dict(), str(weights))
    result = invoke("explain", str(image), "--model", str(weights), "--out", str(tmp_path / "o"))
    assert one_line_error(result), result.output
    assert "--weights" in result.output
