"""Tests of the reference architectures, the training loop and the cached demo model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import leanxai.zoo.train as train_module
from leanxai.data.shapes import make_shapes
from leanxai.zoo import (
    SmallCNN,
    VGGStyle,
    demo_cnn,
    fit_classifier,
    load_demo_model,
    train_demo_model,
)
from leanxai.zoo.train import RECIPE_VERSION, _random_dihedral

WEIGHTS = f"demo_cnn-{RECIPE_VERSION}.safetensors"
METADATA = f"demo_cnn-{RECIPE_VERSION}.json"


# --------------------------------------------------------------------------------------------
# Architectures


@pytest.mark.parametrize("size", [32, 48, 64, 65, 100])
def test_small_cnn_output_shapes(size: int) -> None:
    model = SmallCNN(num_classes=5, in_channels=1, width=4).eval()
    x = torch.rand(2, 1, size, size)  # (B, C, H, W)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    assert features.ndim == 4 and features.shape[:2] == (2, 16)
    assert features.shape[2:] == (size // 8, size // 8)
    assert logits.shape == (2, 5)


def test_small_cnn_structure_is_cam_compatible() -> None:
    model = SmallCNN()
    assert isinstance(model.features, nn.Sequential)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 4
    assert any(isinstance(m, nn.MaxPool2d) for m in model.features)
    last = model.features[-1]
    assert isinstance(last, nn.ReLU) and last.inplace
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == convs[-1].out_channels
    # Logits are exactly the linear head applied to the global average of the last feature map.
    model.eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        pooled = model.features(x).mean((2, 3))  # (B, C)
        assert torch.allclose(model(x), model.classifier(pooled), atol=1e-5)


@pytest.mark.parametrize(
    ("image_size", "size"), [(224, 32), (224, 70), (64, 32), (64, 64), (32, 48)]
)
def test_vgg_style_output_shapes(image_size: int, size: int) -> None:
    model = VGGStyle(num_classes=3, in_channels=1, width=4, image_size=image_size, hidden=16)
    model.eval()
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    assert features.ndim == 4 and features.shape[1] == 32
    assert logits.shape == (2, 3)


def test_vgg_style_structure() -> None:
    model = VGGStyle()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5 == model.n_pools
    relus = [m for m in model.features if isinstance(m, nn.ReLU)]
    assert len(relus) == 8 and all(r.inplace for r in relus)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d) and model.avgpool.output_size == (7, 7)
    head = list(model.classifier)
    assert isinstance(head[0], nn.Flatten)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert len(linears) == 2 and linears[0].in_features == 512 * 7 * 7
    assert linears[-1].out_features == 10
    assert any(isinstance(m, nn.Dropout) for m in head)
    assert VGGStyle(image_size=64).n_pools == 3
    assert VGGStyle(image_size=32).n_pools == 2


def test_vgg_style_default_224_forward() -> None:
    model = VGGStyle().eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 224, 224))
        assert model.features(torch.rand(1, 3, 224, 224)).shape == (1, 512, 7, 7)
    assert logits.shape == (1, 10)


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (SmallCNN, {"num_classes": 0}, "num_classes"),
        (SmallCNN, {"width": -1}, "width"),
        (SmallCNN, {"in_channels": 1.5}, "in_channels"),
        (VGGStyle, {"num_classes": 0}, "num_classes"),
        (VGGStyle, {"image_size": 4}, "image_size"),
        (VGGStyle, {"dropout": 1.0}, "dropout"),
        (VGGStyle, {"hidden": 0}, "hidden"),
    ],
)
def test_invalid_arguments(factory: type[nn.Module], kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        factory(**kwargs)


# --------------------------------------------------------------------------------------------
# Training loop


def test_fit_classifier_decreases_the_loss() -> None:
    data = make_shapes(32, size=32, seed=0, clutter=0.0, noise=0.0)
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    model.eval()
    rng_state = torch.get_rng_state()
    losses = fit_classifier(model, data.images, data.labels, epochs=25, batch_size=32, lr=1e-2)
    assert len(losses) == 25
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    assert not model.training  # the flag is restored
    assert torch.equal(torch.get_rng_state(), rng_state)  # shuffling uses a private generator
    assert all(p.is_contiguous() for p in model.parameters())


def test_fit_classifier_channels_last_and_augmentation() -> None:
    data = make_shapes(40, size=32, seed=1)
    model = SmallCNN(width=4)
    losses = fit_classifier(
        model,
        data.images,
        data.labels,
        epochs=2,
        batch_size=16,
        flip_and_rotate=True,
        channels_last=True,
    )
    assert len(losses) == 4  # 40 // 16 = 2 full batches per epoch
    assert model.training
    assert all(p.is_contiguous() for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr")],
)
def test_fit_classifier_invalid_arguments(kwargs: dict[str, Any], name: str) -> None:
    model = SmallCNN(width=2)
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        fit_classifier(model, torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.int64), **kwargs)
    with pytest.raises(ValueError, match="labels"):
        fit_classifier(model, torch.rand(4, 3, 32, 32), torch.zeros(3, dtype=torch.int64), epochs=1)


def test_random_dihedral_applies_a_symmetry_to_each_image() -> None:
    x = torch.rand(16, 2, 5, 5)
    out = _random_dihedral(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for image, result in zip(x, out, strict=True):
        candidates = []
        for transposed in (image, image.transpose(-1, -2)):
            for k in range(4):
                candidates.append(torch.rot90(transposed, k, (-2, -1)))
        assert any(torch.equal(result, c) for c in candidates)


def test_train_demo_model_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="seed"):
        train_demo_model(seed=-1)
    with pytest.raises(ValueError, match="epochs"):
        train_demo_model(epochs=0)


# --------------------------------------------------------------------------------------------
# The cached demo model. Trained once for the whole module (about 45 s on two CPU cores).


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SmallCNN, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("cache")
    model, metadata = load_demo_model(directory, progress=False)
    return directory, model, metadata


def _fail_training(**kwargs: Any) -> Any:
    raise AssertionError("the cached demo model should have been loaded, not retrained")


def _fake_training(calls: list[dict[str, Any]]) -> Any:
    def fake(**kwargs: Any) -> tuple[SmallCNN, dict[str, Any]]:
        calls.append(kwargs)
        return demo_cnn().eval(), {"recipe_version": RECIPE_VERSION, "held_out_accuracy": 0.0}

    return fake


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return model.state_dict()


def test_demo_model_trains_well_and_is_cached(
    demo_cache: tuple[Path, SmallCNN, dict[str, Any]],
) -> None:
    directory, model, metadata = demo_cache
    assert isinstance(model, SmallCNN) and not model.training
    assert metadata["held_out_accuracy"] >= 0.85
    assert metadata["recipe_version"] == RECIPE_VERSION
    assert metadata["seed"] == 0
    assert metadata["classes"] == ["circle", "square", "triangle", "cross"]
    assert metadata["input_size"] == [3, 64, 64]
    assert metadata["training_seconds"] > 0
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS, METADATA])
    assert json.loads((directory / METADATA).read_text()) == metadata
    # The model really classifies held-out shapes.
    held_out = make_shapes(200, seed=123)
    with torch.no_grad():
        accuracy = (model(held_out.images).argmax(1) == held_out.labels).float().mean()
    assert accuracy >= 0.8


def test_second_load_hits_the_cache(
    demo_cache: tuple[Path, SmallCNN, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, model, metadata = demo_cache
    monkeypatch.setattr(train_module, "train_demo_model", _fail_training)
    again, again_metadata = load_demo_model(directory, progress=False)
    assert again is not model and not again.training
    assert again_metadata == metadata
    for name, tensor in _state(model).items():
        assert torch.equal(tensor, _state(again)[name]), name
    # The environment variable names the cache when no directory is given.
    monkeypatch.setenv("LEANXAI_CACHE", str(directory))
    from_env, _ = load_demo_model(progress=False)
    assert torch.equal(from_env.classifier.weight, model.classifier.weight)


def test_cached_weights_load_into_the_factory(
    demo_cache: tuple[Path, SmallCNN, dict[str, Any]],
) -> None:
    directory, model, _ = demo_cache
    fresh = demo_cnn()
    fresh.load_state_dict(load_file(directory / WEIGHTS), strict=True)
    fresh.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def _copy_cache(source: Path, target: Path) -> None:
    target.mkdir()
    for name in (WEIGHTS, METADATA):
        (target / name).write_bytes((source / name).read_bytes())


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "sha", "json", "no_json"])
def test_corrupt_cache_is_retrained(
    demo_cache: tuple[Path, SmallCNN, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    directory = tmp_path / "cache"
    _copy_cache(demo_cache[0], directory)
    weights, metadata = directory / WEIGHTS, directory / METADATA
    if damage == "garbage":
        weights.write_bytes(b"not a safetensors file" * 10)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "sha":
        content = json.loads(metadata.read_text())
        metadata.write_text(json.dumps({**content, "weights_sha256": "0" * 64}))
    elif damage == "json":
        metadata.write_text("{not json")
    else:
        metadata.unlink()

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(train_module, "train_demo_model", _fake_training(calls))
    with caplog.at_level(logging.WARNING, logger="leanxai.zoo.train"):
        model, meta = load_demo_model(directory, progress=False)
    assert len(calls) == 1
    assert any("retraining" in r.getMessage() for r in caplog.records)
    assert meta["held_out_accuracy"] == 0.0
    # The retrained model replaced the damaged cache, and nothing temporary is left behind.
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS, METADATA])
    monkeypatch.setattr(train_module, "train_demo_model", _fail_training)
    again, _ = load_demo_model(directory, progress=False)
    assert torch.equal(again.classifier.weight, model.classifier.weight)


def test_retrain_overwrites_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(train_module, "train_demo_model", _fake_training(calls))
    first, _ = load_demo_model(tmp_path, progress=False)
    second, _ = load_demo_model(tmp_path, progress=False, retrain=True)
    assert len(calls) == 2
    assert calls[0] == {"progress": False}
    assert not torch.equal(first.classifier.weight, second.classifier.weight)
    monkeypatch.setattr(train_module, "train_demo_model", _fail_training)
    cached, _ = load_demo_model(tmp_path, progress=False)
    assert torch.equal(cached.classifier.weight, second.classifier.weight)


def test_unwritable_cache_still_returns_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(train_module, "train_demo_model", _fake_training(calls))
    with caplog.at_level(logging.WARNING, logger="leanxai.zoo.train"):
        model, _ = load_demo_model(blocker / "cache", progress=False)
    assert isinstance(model, SmallCNN) and len(calls) == 1
    assert any("could not write" in r.getMessage() for r in caplog.records)


def test_default_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEANXAI_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(train_module, "train_demo_model", _fake_training(calls))
    load_demo_model(progress=False)
    assert (tmp_path / ".cache" / "leanxai" / WEIGHTS).is_file()
