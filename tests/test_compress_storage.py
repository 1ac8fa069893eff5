"""The compressed file format: round trips, size on disk, and one clear error per broken file."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from leanxai.compress import (
    CompressedFileError,
    compress,
    float32_size,
    load_compressed,
    plan_pruning,
    quantize_model,
    read_compressed,
    save_compressed,
    weight_scores,
)
from leanxai.compress.storage import describe_architecture
from leanxai.core.errors import InputError, LeanXAIError, ModelLoadError, OutputExistsError
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
    with pytest.raises(OutputExistsError, match="already exists; not replaced") as caught:
        save_compressed(model, path)
    assert caught.value.paths == (str(path),)
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


# Architectures through the protocol -------------------------------------------------------------


def rewrite_metadata(path, **changes):
    """Edit metadata and recompute the checksum, as a writer of that content would have."""
    from leanxai.compress.storage import _checksum

    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    metadata = json.loads(path.read_bytes()[8 : 8 + header_size])["__metadata__"]
    tensors = load_file(path)
    metadata = {key: value for key, value in {**metadata, **changes}.items() if key != "sha256"}
    metadata["sha256"] = _checksum(tensors, metadata)
    save_file(tensors, path, metadata=metadata)


def old_format_file(tmp_path, model, name="old.safetensors"):
    """A file as written before the registry: the zoo model's arguments, no module."""
    compressed = quantize_model(model, 4)
    path = tmp_path / name
    save_compressed(compressed, path)
    header, _ = read_compressed(path)
    legacy = {"type": header["architecture"]["type"], "args": header["architecture"]["args"]}
    rewrite_metadata(path, architecture=json.dumps(legacy))
    return compressed, path


def test_zoo_models_describe_themselves(tmp_path):
    from leanxai.zoo import VGGStyle
    from leanxai.zoo.recurrent import RecurrentClassifier

    torch.manual_seed(0)
    cases = [
        (VGGStyle(5, 1, width=2, image_size=32, hidden=8, dropout=0.25), torch.randn(2, 1, 32, 32)),
        (RecurrentClassifier(3, 4, hidden=5, kind="bigru", readout="mean"), torch.randn(2, 6, 3)),
    ]
    for model, inputs in cases:
        model.eval()
        compressed = quantize_model(model, 8)
        path = tmp_path / f"{type(model).__name__}.safetensors"
        save_compressed(compressed, path)
        header, _ = read_compressed(path)
        expected = {"type": type(model).__name__, "args": model.describe()}
        if isinstance(model, RecurrentClassifier):  # the zoo's CNNs imply their module
            expected["module"] = "leanxai.zoo.recurrent"
        assert header["architecture"] == expected
        loaded = load_compressed(path)
        assert type(loaded) is type(model) and loaded.describe() == model.describe()
        assert torch.allclose(loaded(inputs), compressed.model(inputs), atol=1e-5)


def test_zoo_cnn_files_keep_the_layout_written_before_the_registry(tmp_path):
    # Byte for byte what save_compressed wrote when storage imported the zoo, so the sizes the
    # README reports and older readers are unchanged.
    model = SmallCNN(num_classes=3, in_channels=1, width=2)
    path = tmp_path / "cnn.safetensors"
    save_compressed(quantize_model(model, 8), path)
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    metadata = json.loads(path.read_bytes()[8 : 8 + header_size])["__metadata__"]
    assert metadata["architecture"] == json.dumps(
        {"type": "SmallCNN", "args": {"num_classes": 3, "in_channels": 1, "width": 2}}
    )
    assert metadata["format_version"] == "2"


@pytest.mark.parametrize("kind", ["SmallCNN", "VGGStyle"])
def test_files_of_the_old_format_still_load(tmp_path, kind):
    from leanxai.zoo import VGGStyle

    torch.manual_seed(0)
    if kind == "SmallCNN":
        model = SmallCNN(num_classes=3, in_channels=1, width=2).eval()
    else:
        model = VGGStyle(5, 1, width=2, image_size=32, hidden=8, dropout=0.25).eval()
    compressed, path = old_format_file(tmp_path, model)
    assert "module" not in read_compressed(path)[0]["architecture"]
    loaded = load_compressed(path)
    assert type(loaded) is type(model)
    inputs = torch.randn(2, 1, 32, 32)
    assert torch.allclose(loaded(inputs), compressed.model(inputs), atol=1e-5)


def test_loading_imports_the_registering_module_lazily(tmp_path):
    from leanxai.zoo.recurrent import RecurrentClassifier

    torch.manual_seed(0)
    _, old = old_format_file(tmp_path, SmallCNN(num_classes=3, in_channels=1, width=2))
    recurrent = tmp_path / "recurrent.safetensors"
    save_compressed(quantize_model(RecurrentClassifier(3, 2, hidden=4), 8), recurrent)
    script = (
        "import sys\n"
        "import leanxai.compress as c\n"
        "assert 'leanxai.zoo' not in sys.modules\n"
        "model = c.load_compressed(sys.argv[1])\n"
        "print(type(model).__module__, type(model).__name__)\n"
    )
    for path, expected in (
        (old, ["leanxai.zoo.cnn", "SmallCNN"]),
        (recurrent, ["leanxai.zoo.recurrent", "RecurrentClassifier"]),
    ):
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == expected


@pytest.mark.parametrize(
    "module", ["os", "subprocess", "leanxai_evil", "leanxai", "leanxai.zoo.cnn; import os", ""]
)
def test_a_file_never_imports_a_module_outside_leanxai(saved, monkeypatch, module):
    _, path = saved
    imported = []
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name))
    rewrite_metadata(path, architecture=json.dumps({"type": "Evil", "args": {}, "module": module}))
    with pytest.raises(CompressedFileError, match="only modules of leanxai"):
        load_compressed(path)
    assert imported == []


def test_unknown_architectures_name_the_way_out(saved):
    _, path = saved
    rewrite_metadata(
        path, architecture=json.dumps({"type": "Gone", "args": {}, "module": "leanxai.gone"})
    )
    with pytest.raises(CompressedFileError, match=r"cannot import 'leanxai\.gone'"):
        load_compressed(path)
    rewrite_metadata(
        path, architecture=json.dumps({"type": "Gone", "args": {}, "module": "leanxai.zoo.cnn"})
    )
    with pytest.raises(CompressedFileError, match=r"not registered.*model="):
        load_compressed(path)
    rewrite_metadata(
        path,
        architecture=json.dumps(
            {"type": "SmallCNN", "args": {"bogus": 1}, "module": "leanxai.zoo.cnn"}
        ),
    )
    with pytest.raises(CompressedFileError, match="does not accept"):
        load_compressed(path)


def test_changed_or_derived_zoo_models_need_a_skeleton(tmp_path):
    from leanxai.zoo.tiers import build_tier

    class Derived(SmallCNN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -super().forward(x)

    swapped = SmallCNN(num_classes=3, in_channels=1, width=2)
    swapped.features[2] = nn.GELU()  # same state dict, another function
    for model in (
        Derived(num_classes=3, in_channels=1, width=2),
        swapped,
        build_tier("LIGHT", 3, 1),
        build_tier("TINY", 3, 1, stem=True),
    ):
        assert describe_architecture(model) is None
        path = tmp_path / "m.safetensors"
        save_compressed(model, path, overwrite=True)
        with pytest.raises(ModelLoadError, match="pass model="):
            load_compressed(path)
        loaded = load_compressed(path, model=model)
        assert type(loaded) is type(model)


def test_a_skeleton_is_used_even_when_the_file_describes_its_architecture(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, in_channels=1, width=2).eval()
    path = tmp_path / "cnn.safetensors"
    save_compressed(quantize_model(model, 8), path)
    calls = []

    def build() -> SmallCNN:
        calls.append(1)
        return SmallCNN(num_classes=3, in_channels=1, width=2)

    assert isinstance(load_compressed(path, model=build), SmallCNN) and calls == [1]


class Registered(nn.Module):
    def __init__(self, features: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.features, self.classes = features, classes
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def describe(self) -> dict[str, int]:
        return {"features": self.features, "classes": self.classes}


def test_an_architecture_registered_elsewhere_loads_once_registered(tmp_path):
    from leanxai.compress.architectures import register_architecture

    register_architecture("TestsRegistered", Registered)
    torch.manual_seed(0)
    model = Registered(4, 3)
    path = tmp_path / "registered.safetensors"
    save_compressed(quantize_model(model, 8), path)
    assert read_compressed(path)[0]["architecture"]["module"] == __name__
    loaded = load_compressed(path)
    assert type(loaded) is Registered and loaded.describe() == {"features": 4, "classes": 3}
    # A fresh process that has not imported this module is not allowed to import it.
    script = "import sys, leanxai.compress as c\nc.load_compressed(sys.argv[1])\n"
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "only modules of leanxai" in result.stderr


def test_a_describe_that_is_not_json_saves_without_an_architecture(tmp_path, caplog):
    from leanxai.compress.architectures import register_architecture

    class Odd(Registered):
        def describe(self) -> dict[str, object]:
            return {"features": 3, "classes": 2, "dtype": torch.float32}

    register_architecture("TestsOdd", Odd)
    with caplog.at_level("WARNING"):
        assert describe_architecture(Odd()) is None
    assert "cannot be described" in caplog.text


def test_float32_size_is_the_size_of_the_float32_file(tmp_path):
    model = SmallCNN(num_classes=3, in_channels=1, width=2).double()
    state = {
        k: v.float() if v.dtype.is_floating_point else v for k, v in model.state_dict().items()
    }
    save_file(state, tmp_path / "f32.safetensors")
    assert float32_size(model) == os.path.getsize(tmp_path / "f32.safetensors")


# Bit packing and code ranges -------------------------------------------------------------------


def test_pack_bits_refuses_values_outside_the_bit_range():
    from leanxai.compress.storage import _pack_bits, _unpack_bits

    values = np.array([0, 1, 14, 15])
    assert _unpack_bits(_pack_bits(values, 4), 4, 4).tolist() == values.tolist()
    for bad in ([0, 16], [-1, 3], [2**40]):
        with pytest.raises(InputError, match="do not fit in 4 bits"):
            _pack_bits(np.array(bad), 4)


@pytest.mark.parametrize("bits", [4, 8])
def test_codes_outside_their_range_are_refused_not_wrapped(tmp_path, bits):
    model = mlp()
    compressed = quantize_model(model, bits)
    key = "0.weight"
    quantized = compressed.weights[key]
    group = quantized.groups[0]
    codes = group.codes.clone()
    codes[0] = -(2 ** (bits - 1))  # one below the symmetric range
    broken = dataclasses.replace(
        quantized, groups=(dataclasses.replace(group, codes=codes), *quantized.groups[1:])
    )
    bad = dataclasses.replace(compressed, weights={**compressed.weights, key: broken})
    path = tmp_path / "bad.safetensors"
    with pytest.raises(InputError, match=rf"{bits}-bit codes must lie in"):
        save_compressed(bad, path)
    assert list(tmp_path.iterdir()) == []


# Files on disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_permissions_of_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        save_compressed(mlp(), tmp_path / "m.safetensors")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "m.safetensors").st_mode) == mode


def test_an_interrupted_save_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_compressed(mlp(seed=0), path)
    before = path.read_bytes()

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_compressed(mlp(seed=1), path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "call, kind",
    [
        (lambda saved, new: save_compressed("not a model", new), TypeError),
        (lambda saved, new: save_compressed(mlp(), new, float_dtype=torch.int8), ValueError),
        (lambda saved, new: load_compressed(saved, model=42), TypeError),
        (lambda saved, new: load_compressed(saved, model=lambda: 42), TypeError),
        (lambda saved, new: float32_size("not a model"), TypeError),
    ],
)
def test_bad_arguments_raise_leanxai_errors(saved, call, kind):
    _, path = saved
    with pytest.raises(LeanXAIError) as caught:
        call(path, path.with_name("other.safetensors"))
    assert isinstance(caught.value, kind)
    assert not path.with_name("other.safetensors").exists()
