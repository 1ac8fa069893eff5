"""Time-series data: the synthetic set's design, aeon's sets as shipped, standardisation, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from leanxai.data.timeseries import (
    SeriesData,
    load_basic_motions,
    load_japanese_vowels,
    make_informative_series,
    standardize,
)


def test_informative_series_layout_and_determinism() -> None:
    data = make_informative_series(80, seed=3, length=12)
    assert data.inputs.shape == (80, 12, 8) and data.inputs.dtype == torch.float32
    assert data.labels.dtype == torch.int64 and data.mask is None
    assert torch.bincount(data.labels).tolist() == [20, 20, 20, 20]
    assert data.informative == (0, 2, 4, 6)
    assert data.feature_names == (
        "stable_0", "distractor_0", "noisy_0", "irrelevant_0",
        "stable_1", "distractor_1", "noisy_1", "irrelevant_1",
    )  # fmt: skip
    flat = data.inputs.double().reshape(-1, 8)
    torch.testing.assert_close(flat.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.std(0, correction=0), torch.ones(8, dtype=torch.float64))
    again = make_informative_series(80, seed=3, length=12)
    assert torch.equal(again.inputs, data.inputs) and torch.equal(again.labels, data.labels)
    other = make_informative_series(80, seed=4, length=12)
    assert other.feature_names == data.feature_names and not torch.equal(other.inputs, data.inputs)


def test_class_signal_is_in_the_informative_features_only() -> None:
    data = make_informative_series(400, seed=0)
    level = data.inputs.double().mean(dim=1)  # (N, F): each sequence's time average
    bits = torch.stack([(data.labels >> k) & 1 for k in (0, 1)], dim=1).double() * 2 - 1
    for f, name in enumerate(data.feature_names):
        bit = int(name.split("_")[1]) % 2
        correlation = float(torch.corrcoef(torch.stack([level[:, f], bits[:, bit]]))[0, 1])
        if f in data.informative:
            assert correlation > 0.8, (name, correlation)
        else:
            assert abs(correlation) < 0.15, (name, correlation)
    # Stable features are steadier over time than noisy ones, distractors swing the most.
    spread = data.inputs.double().std(dim=1).mean(dim=0)  # (F,)
    assert spread[0] < spread[2] and spread[4] < spread[6]
    assert spread[0] < spread[1] and spread[4] < spread[5]


def test_informative_series_errors() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        make_informative_series(10, n_classes=1)
    with pytest.raises(ValueError, match="informative"):
        make_informative_series(10, n_stable=0, n_noisy=0)
    with pytest.raises(ValueError, match="noise"):
        make_informative_series(10, noise=-1.0)
    with pytest.raises(ValueError, match="n "):
        make_informative_series(0)


def test_standardize_with_mask_uses_valid_steps_only() -> None:
    x = torch.arange(24, dtype=torch.float64).reshape(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out, (mean, std) = standardize(x, mask)
    valid = x[mask]  # (6, 3)
    np.testing.assert_allclose(mean.numpy(), valid.numpy().mean(0))
    np.testing.assert_allclose(std.numpy(), valid.numpy().std(0))
    assert torch.equal(out[~mask], torch.zeros(2, 3))
    again, _ = standardize(x, mask, statistics=(mean, std))
    assert torch.equal(again, out)


def test_split_is_stratified_and_subset_keeps_metadata() -> None:
    data = make_informative_series(40, seed=0, length=5)
    train, test = data.split(0.75, seed=1)
    assert len(train) == 32 and len(test) == 8
    assert torch.bincount(test.labels).tolist() == [2, 2, 2, 2]
    assert train.informative == data.informative and train.classes == data.classes
    assert isinstance(data.subset([3, 1]), SeriesData)
    assert torch.equal(data.subset([3, 1]).inputs, data.inputs[[3, 1]])
    with pytest.raises(ValueError, match="train_fraction"):
        data.split(1.0)


aeon = pytest.importorskip("aeon.datasets")


def test_basic_motions_as_shipped() -> None:
    train, test = load_basic_motions()
    assert train.inputs.shape == (40, 100, 6) and test.inputs.shape == (40, 100, 6)
    assert train.inputs.dtype == torch.float32 and train.mask is None
    assert train.classes == ("badminton", "running", "standing", "walking")
    assert sorted(torch.bincount(train.labels).tolist()) == [10, 10, 10, 10]
    flat = train.inputs.double().reshape(-1, 6)
    torch.testing.assert_close(flat.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.std(0, correction=0), torch.ones(6, dtype=torch.float64))
    raw, labels = aeon.load_basic_motions(split="test")
    assert [test.classes[i] for i in test.labels.tolist()] == [str(v) for v in labels]
    # The test set is standardised with the training set's statistics.
    raw_train, _ = aeon.load_basic_motions(split="train")
    mean = raw_train.mean(axis=(0, 2))[None, None, :]
    std = raw_train.std(axis=(0, 2))[None, None, :]
    expected = (raw.transpose(0, 2, 1) - mean) / std
    np.testing.assert_allclose(test.inputs.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_japanese_vowels_padding_and_mask() -> None:
    train, test = load_japanese_vowels()
    assert len(train) == 270 and len(test) == 370
    assert train.inputs.shape[2] == 12 and train.mask is not None and test.mask is not None
    assert train.classes == tuple(str(i) for i in range(1, 10))
    raw, _ = aeon.load_japanese_vowels(split="train")
    assert train.lengths.tolist() == [a.shape[1] for a in raw]
    assert torch.equal(train.mask, torch.arange(train.inputs.shape[1]) < train.lengths[:, None])
    assert torch.equal(train.inputs[~train.mask], torch.zeros(int((~train.mask).sum()), 12))
    valid = train.inputs[train.mask].double()
    zeros = torch.zeros(12, dtype=torch.float64)
    torch.testing.assert_close(valid.mean(0), zeros, atol=1e-6, rtol=0)


def test_missing_aeon_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(ImportError, match=r"leanxai\[rnn\]"):
        load_basic_motions()
    with pytest.raises(ImportError, match=r"leanxai\[rnn\]"):
        load_japanese_vowels()
