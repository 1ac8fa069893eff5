"""``leanxai.core.models.load_model``: each kind of spec, and one clear line for each bad one
(issue 24: weights of another architecture, a missing hf: folder, input sizes the model states,
compressed files as specs)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from leanxai.core.errors import ModelLoadError
from leanxai.core.models import load_model


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )  # fmt: skip


def test_weights_of_another_architecture_name_the_tensor_and_both_shapes(tmp_path):
    from leanxai.zoo.digits import mnist_cnn
    from leanxai.zoo.train import demo_cnn

    path = tmp_path / "demo.safetensors"
    save_file(demo_cnn().state_dict(), str(path))
    with pytest.raises(ModelLoadError) as caught:
        load_model("py:leanxai.zoo.digits:mnist_cnn", path)
    message = str(caught.value)
    expected = tuple(mnist_cnn().state_dict()["features.0.weight"].shape)
    assert "features.0.weight" in message
    assert f"{(16, 3, 3, 3)} in the file but {expected} in the model" in message
    assert "\n" not in message


def test_a_missing_hf_folder_is_named():
    for spec in ("hf:./missing-folder", "hf:~/nowhere/model", "hf:a/b/c"):
        with pytest.raises(ModelLoadError, match="does not exist") as caught:
            load_model(spec)
        assert "alphanumeric" not in str(caught.value)


def test_hf_file_is_not_a_folder(tmp_path):
    file = tmp_path / "config.json"
    file.write_text("{}")
    with pytest.raises(ModelLoadError, match="is a file, not a folder"):
        load_model(f"hf:{file}")


def test_hf_input_size_comes_from_the_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(str(tmp_path))
    loaded = load_model(f"hf:{tmp_path}")
    assert loaded.input_size == (32, 32)


def test_exported_program_input_size_is_its_example_input(tmp_path):
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(cnn().eval(), (torch.randn(1, 3, 48, 40),)), str(path))
    loaded = load_model(path)
    assert loaded.input_size == (48, 40)
    assert loaded.model(torch.randn(1, 3, 48, 40)).shape == (1, 2)


def test_compressed_file_is_a_model_spec(tmp_path):
    from leanxai.compress import compress, save_compressed

    torch.manual_seed(0)
    model = cnn().eval()
    path = tmp_path / "cnn.lxc.safetensors"
    save_compressed(compress(model, prune=None, bits=8), path)
    loaded = load_model(str(path))
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(loaded.model(x), model(x), atol=0.05)
    assert not loaded.model.training


def test_compressed_zoo_model_needs_no_skeleton(tmp_path):
    from leanxai.compress import compress, save_compressed
    from leanxai.zoo.digits import mnist_cnn

    torch.manual_seed(0)
    path = tmp_path / "mnist.lxc.safetensors"
    save_compressed(compress(mnist_cnn().eval(), prune=None, bits=8), path)
    assert load_model(path).model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_plain_weights_are_not_a_model_spec(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(cnn().state_dict(), str(path))
    with pytest.raises(ModelLoadError, match="--weights") as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


def test_custom_compressed_module_says_how_to_load_it(tmp_path):
    from leanxai.compress import compress, save_compressed

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    path = tmp_path / "custom.lxc.safetensors"
    save_compressed(compress(Custom(), prune=None, bits=8), path)
    with pytest.raises(ModelLoadError, match="load_compressed"):
        load_model(path)


def test_missing_and_unknown_specs(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nothere.lxc.safetensors")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nothere.pt2")
    with pytest.raises(ModelLoadError, match=r"lxc\.safetensors"):
        load_model("model.onnx")
    with pytest.raises(ModelLoadError, match="--weights applies to py:"):
        load_model(tmp_path / "x.pt2", weights=tmp_path / "w.safetensors")
