"""The routing tiers: four CAM-friendly CNNs of growing size and data of varying difficulty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from leanxai import GradCAM
from leanxai.core.errors import InputError
from leanxai.zoo import tiers
from leanxai.zoo.tiers import (
    CORRUPTIONS,
    DIFFICULTIES,
    TIERS,
    build_tier,
    corrupted_mnist,
    load_tiers,
    mixed_shapes,
    tier_correct,
    tier_data,
    train_tier,
)
from leanxai.zoo.train import TRAINING_THREADS, deterministic_training

_RANGES = {
    "TINY": (5_000, 20_000),
    "LIGHT": (60_000, 150_000),
    "MEDIUM": (350_000, 700_000),
    "HEAVY": (1_500_000, 3_000_000),
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("in_channels", "num_classes", "size"), [(3, 4, 64), (1, 10, 32)])
def test_parameter_counts_grow_within_ranges(in_channels: int, num_classes: int, size: int) -> None:
    counts = []
    for tier in TIERS:
        model = build_tier(tier, num_classes, in_channels).eval()
        count = _count(model)
        low, high = _RANGES[tier]
        assert low <= count <= high, (tier, count)
        counts.append(count)
        with torch.no_grad():
            out = model(torch.rand(2, in_channels, size, size))
        assert out.shape == (2, num_classes)
    assert counts == sorted(counts) and len(set(counts)) == 4


@pytest.mark.parametrize("tier", TIERS)
def test_every_tier_ends_in_relu_gap_linear(tier: str) -> None:
    torch.manual_seed(0)
    model = build_tier(tier, 4, 3).eval()
    assert isinstance(model.features[-1], nn.ReLU)
    assert isinstance(model.classifier, nn.Linear)
    explanation = GradCAM(model).explain(torch.rand(2, 3, 64, 64))
    assert explanation.path == "forward"
    assert explanation.heatmap.shape == (2, 64, 64)


def test_build_tier_rejects_unknown_tier() -> None:
    with pytest.raises(ValueError, match="tier"):
        build_tier("HUGE", 4, 3)


def test_mixed_shapes_is_deterministic_and_mixed() -> None:
    data = mixed_shapes(31, seed=3, size=32)
    again = mixed_shapes(31, seed=3, size=32)
    assert data.images.shape == (31, 3, 32, 32) and data.masks.shape == (31, 32, 32)
    assert data.labels.shape == (31,) and len(data.difficulty) == 31
    assert torch.equal(data.images, again.images) and data.difficulty == again.difficulty
    # Ten bins at severities 0.05 ... 0.95, the first one of 4 images, the rest of 3.
    levels = sorted(data.severity.tolist())
    assert levels.count(levels[0]) == 4 and len(set(levels)) == 10
    assert levels[0] == pytest.approx(0.05) and levels[-1] == pytest.approx(0.95)
    assert [data.difficulty.count(d) for d in DIFFICULTIES] == [10, 12, 9]
    assert data.severity[:10].unique().numel() > 1  # shuffled
    for name, level in zip(data.difficulty, data.severity.tolist(), strict=True):
        assert DIFFICULTIES.index(name) == min(int(3 * level), 2)
    # Harder images are busier: less of the image is the flat gradient background.
    easy = data.images[data.severity < 0.2]
    hard = data.images[data.severity > 0.8]
    roughness = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert roughness(hard) > roughness(easy)
    other = mixed_shapes(31, seed=4, size=32)
    assert not torch.equal(data.images, other.images)


def _digits(n: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(n, 1, 32, 32)
    images[:, :, 8:24, 12:20] = torch.rand(n, 1, 16, 8, generator=generator) * 0.5 + 0.5
    labels = torch.arange(n) % 10
    return images, labels, images[:, 0] > 0.5


def test_corrupted_mnist_is_deterministic_and_corrupts() -> None:
    images, labels, masks = _digits()
    data = corrupted_mnist(images, labels, masks, seed=1)
    again = corrupted_mnist(images, labels, masks, seed=1)
    assert torch.equal(data.images, again.images) and data.difficulty == again.difficulty
    assert data.images.shape == images.shape and data.masks.shape == masks.shape
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert set(data.difficulty) <= set(CORRUPTIONS) and len(set(data.difficulty)) >= 5
    changed = (data.images - images).abs().flatten(1).amax(1) > 1e-3
    for i, name in enumerate(data.difficulty):
        assert bool(changed[i]) == (name != "clean"), name
        assert (float(data.severity[i]) == 0.0) == (name == "clean")
    assert torch.equal(data.labels, labels)
    assert not torch.equal(corrupted_mnist(images, labels, masks, seed=2).images, data.images)
    # Inputs are left alone.
    assert torch.equal(images, _digits()[0])


def test_train_tier_small_run_reports_accuracy() -> None:
    model, metadata = train_tier(
        "mnist", "TINY", progress=False, n_train=64, n_held_out=60, epochs=1
    )
    assert not model.training
    assert metadata["n_train"] == 64 and metadata["n_held_out"] == 60
    assert metadata["parameters"] == _count(model)
    assert 0.0 <= metadata["held_out_accuracy"] <= 1.0
    assert set(metadata["held_out_accuracy_by_difficulty"]) <= set(CORRUPTIONS)


def test_load_tiers_caches_every_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def quick(dataset: str, tier: str, **kwargs: Any) -> Any:
        calls.append(tier)
        return train_tier(dataset, tier, n_train=16, n_held_out=8, epochs=1, **kwargs)

    monkeypatch.setattr(tiers, "train_tier", quick)
    zoo = load_tiers("mnist", tmp_path, progress=False)
    assert list(zoo) == list(TIERS) and calls == list(TIERS)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 8 and all(n.startswith("tier_mnist_") for n in names)
    again = load_tiers("mnist", tmp_path, progress=False)
    assert calls == list(TIERS)  # nothing retrained
    for tier in TIERS:
        first, second = zoo[tier][0].state_dict(), again[tier][0].state_dict()
        assert all(torch.equal(first[k], second[k]) for k in first)
        assert again[tier][1]["tier"] == tier


def test_tier_correct_marks_each_model() -> None:
    inputs = torch.rand(5, 3)
    labels = torch.tensor([0, 1, 0, 1, 0])
    right = nn.Linear(3, 2)
    nn.init.zeros_(right.weight)
    with torch.no_grad():
        right.bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0
    correct = tier_correct([right], inputs, labels)
    assert correct.shape == (5, 1)
    assert correct[:, 0].tolist() == [True, False, True, False, True]


def test_extra_sets_add_fresh_images_to_one_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    recipe = dataclasses.replace(
        tiers._RECIPES["shapes"], size=32, n_train=20, n_held_out=10, easy_epochs=0
    )
    monkeypatch.setattr(tiers, "_RECIPES", {"shapes": recipe})
    tiers._tier_data.cache_clear()
    seen: dict[str, torch.Tensor] = {}

    def record(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kwargs: Any) -> None:
        seen[kwargs["desc"]] = images

    monkeypatch.setattr(tiers, "fit_classifier", record)
    try:
        _, light = train_tier("shapes", "LIGHT", progress=False)
        _, tiny = train_tier("shapes", "TINY", progress=False)
        base = tier_data("shapes", "train").images
    finally:
        tiers._tier_data.cache_clear()
    assert recipe.extra_sets == {"LIGHT": 2}
    assert light["n_train"] == 60 and tiny["n_train"] == 20
    images = seen["shapes LIGHT (all)"]
    assert torch.equal(images[:20], base) and torch.equal(seen["shapes TINY (all)"], base)
    # Two further sets, each drawn with its own seed: no image repeats a training image.
    flat = images.flatten(1)
    assert torch.cdist(flat[20:], flat[:20]).min() > 0
    assert torch.cdist(flat[20:40], flat[40:]).min() > 0
    assert tiers.tier_version("shapes", "LIGHT") != tiers.tier_version("shapes", "TINY")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_train_tier_is_deterministic_whatever_the_callers_threads() -> None:
    """Two trainings with the same seed give the same weights bit for bit, also when the caller
    runs at another thread count; the caller's settings are left as they were."""
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    runs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            model, metadata = train_tier(
                "mnist", "LIGHT", progress=False, n_train=96, n_held_out=8, epochs=2
            )
            assert torch.get_num_threads() == threads
            assert not torch.are_deterministic_algorithms_enabled()
        finally:
            torch.set_num_threads(before[0])
        assert metadata["deterministic"] and metadata["torch_threads"] == TRAINING_THREADS
        runs.append(_state(model))
    first, second = runs
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    # Training changed the weights (the comparison is not between two untrained models).
    untrained = build_tier("LIGHT", 10, 1).state_dict()
    assert not torch.equal(first["classifier.weight"], untrained["classifier.weight"])
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_deterministic_training_restores_settings_after_an_error() -> None:
    threads = torch.get_num_threads()
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    with pytest.raises(KeyError), deterministic_training(threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        raise KeyError("inside")
    assert torch.get_num_threads() == threads
    assert (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    ) == flags


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_deterministic_training_refuses_bad_thread_counts(threads: Any) -> None:
    before = torch.get_num_threads()
    with pytest.raises(InputError, match="threads"), deterministic_training(threads=threads):
        pass  # pragma: no cover
    assert torch.get_num_threads() == before
