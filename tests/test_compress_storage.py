"""The compressed file format: round trips, size on disk, and one clear error per broken file."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from leanxai.compress import (
    CompressedFileError,
    compress,
    load_compressed,
    plan_pruning,
    quantize_model,
    read_compressed,
    save_compressed,
    weight_scores,
)
from leanxai.core.errors import ModelLoadError, OutputExistsError
from leanxai.zoo import SmallCNN


def mlp(sizes=(6, 8, 5, 3), seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.fixture
def saved(tmp_path):
    model = mlp()
    inputs = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
    compressed = compress(model, inputs, sparsity=0.5, bits=(8, 4))
    path = tmp_path / "model.safetensors"
    save_compressed(compressed, path)
    return compressed, path


def test_round_trip_gives_the_fake_quantised_outputs(saved, monkeypatch):
    compressed, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = load_compressed(path)
    assert isinstance(loaded, nn.Sequential) and not loaded.training
    inputs = torch.randn(10, 6)
    assert torch.allclose(loaded(inputs), compressed.model(inputs), atol=1e-6)
    for key, value in compressed.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_small_cnn_round_trip_without_a_skeleton(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, in_channels=1, width=2).eval()
    inputs = torch.randn(4, 1, 16, 16)
    compressed = compress(model, inputs, prune="magnitude", sparsity=0.4, bits=(8, 2))
    path = tmp_path / "cnn.safetensors"
    save_compressed(compressed, path)
    header, _ = read_compressed(path)
    assert header["architecture"]["type"] == "SmallCNN"
    loaded = load_compressed(path)
    assert isinstance(loaded, SmallCNN)
    assert torch.allclose(loaded(inputs), compressed.model(inputs), atol=1e-5)


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_custom_models_load_into_a_skeleton(tmp_path):
    torch.manual_seed(1)
    model = Custom()
    compressed = quantize_model(model, 4)
    path = tmp_path / "custom.safetensors"
    save_compressed(compressed, path)
    with pytest.raises(ModelLoadError, match="pass model="):
        load_compressed(path)
    skeleton = Custom()
    before = {k: v.clone() for k, v in skeleton.state_dict().items()}
    inputs = torch.randn(5, 6)
    for given in (skeleton, Custom):
        loaded = load_compressed(path, model=given)
        assert torch.allclose(loaded(inputs), compressed.model(inputs), atol=1e-6)
    assert all(torch.equal(skeleton.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_compressed(path, model=mlp())


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8, 11, 16])
def test_every_bit_width_packs_and_unpacks(tmp_path, bits):
    model = mlp()
    compressed = quantize_model(model, bits)
    path = tmp_path / f"b{bits}.safetensors"
    save_compressed(compressed, path)
    loaded = load_compressed(path)
    for key, value in compressed.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    stored = load_file(path)
    codes = stored["0.weight::codes0"]
    expected = {8: torch.int8, 16: torch.int16}.get(bits, torch.uint8)
    assert codes.dtype == expected
    assert codes.numel() * codes.element_size() == (48 * bits + 7) // 8


@pytest.mark.parametrize(
    "share, encoding", [(0.0, "dense"), (0.5, "bitmask"), (0.95, "kept"), (0.01, "pruned")]
)
def test_the_smallest_mask_encoding_is_chosen(tmp_path, share, encoding):
    model = mlp(sizes=(40, 30, 3))
    plan = plan_pruning(weight_scores(model, criterion="magnitude"), sparsity=share)
    compressed = quantize_model(model, 8, plan=plan)
    path = tmp_path / "m.safetensors"
    save_compressed(compressed, path)
    header, _ = read_compressed(path)
    assert header["encodings"]["0.weight"]["mask"] == encoding
    loaded = load_compressed(path)
    assert torch.equal(loaded[0].weight, compressed.model[0].weight)


def test_pruned_mixed_precision_file_is_much_smaller_than_float32(tmp_path):
    model = mlp(sizes=(64, 128, 64, 10))
    compressed = compress(model, torch.randn(32, 64), sparsity=0.7, bits=(8, 4))
    size = save_compressed(compressed, tmp_path / "small.safetensors")
    assert size == os.path.getsize(tmp_path / "small.safetensors")
    save_file(model.state_dict(), tmp_path / "float32.safetensors")
    baseline = os.path.getsize(tmp_path / "float32.safetensors")
    assert size < 0.25 * baseline, (size, baseline)
    half = save_compressed(compressed, tmp_path / "half.safetensors", float_dtype=torch.float16)
    assert half < size


def test_plain_module_and_overwrite(tmp_path):
    model = mlp()
    path = tmp_path / "plain.safetensors"
    save_compressed(model, path)
    with pytest.raises(OutputExistsError, match="overwrite"):
        save_compressed(model, path)
    save_compressed(model, path, overwrite=True, float_dtype=torch.float16)
    loaded = load_compressed(path)
    inputs = torch.randn(3, 6)
    assert torch.allclose(loaded(inputs), model(inputs), atol=1e-2)
    assert [p.name for p in tmp_path.iterdir()] == ["plain.safetensors"]  # no temporary left


def test_truncated_file(saved):
    _, path = saved
    data = path.read_bytes()
    for keep in (len(data) - 10, len(data) // 2, 20, 4):
        path.write_bytes(data[:keep])
        with pytest.raises(CompressedFileError):
            load_compressed(path)


def test_flipped_bytes(saved):
    _, path = saved
    data = path.read_bytes()
    for position in (len(data) - 3, len(data) - 40, 12, 40):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x5A
        path.write_bytes(bytes(corrupt))
        with pytest.raises(CompressedFileError):
            load_compressed(path)


def edit_metadata(path, **changes):
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    metadata = json.loads(path.read_bytes()[8 : 8 + header_size])["__metadata__"]
    tensors = load_file(path)
    save_file(tensors, path, metadata={**metadata, **changes})


def test_edited_metadata_is_caught(saved):
    # A flipped byte inside a metadata string can leave valid JSON; the checksum covers it.
    _, path = saved
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    metadata = json.loads(path.read_bytes()[8 : 8 + header_size])["__metadata__"]
    edit_metadata(path, dtype="float16" if metadata["dtype"] != "float16" else "float32")
    with pytest.raises(CompressedFileError, match="checksum"):
        load_compressed(path)


def test_newer_format_version(saved):
    _, path = saved
    edit_metadata(path, format_version="3")
    with pytest.raises(CompressedFileError, match="newer format version"):
        load_compressed(path)


def test_other_files_are_refused(tmp_path, saved):
    _, path = saved
    edit_metadata(path, format="something.else")
    with pytest.raises(CompressedFileError, match="not a leanxai compressed model"):
        load_compressed(path)
    plain = tmp_path / "weights.safetensors"
    save_file(mlp().state_dict(), plain)
    with pytest.raises(CompressedFileError, match="not a leanxai compressed model"):
        load_compressed(plain)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(256))
    with pytest.raises(CompressedFileError):
        load_compressed(noise)
    with pytest.raises(CompressedFileError, match="cannot read"):
        load_compressed(tmp_path / "missing.safetensors")


def test_a_hostile_architecture_is_never_built(saved):
    _, path = saved
    edit_metadata(path, architecture=json.dumps({"type": "os.system", "args": {"command": "true"}}))
    with pytest.raises(CompressedFileError, match="architecture"):
        load_compressed(path)
