"""Symmetric quantisation against a literal reference; the median rule; compress() in one call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leanxai.compress import (
    DEFAULT_CRITERION,
    DEFAULT_SPARSITY,
    compress,
    dequantize,
    mixed_precision_plan,
    plan_pruning,
    quantize_model,
    quantize_uniform,
    sparsity,
    weight_relevance,
)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def reference_quantize(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel: scale = max |w| / (2^(b-1) - 1), code = round(w / scale)."""
    qmax = 2 ** (bits - 1) - 1
    codes = np.zeros(weight.shape, dtype=np.int64)
    scales = np.zeros(weight.shape[0], dtype=np.float32)
    for c in range(weight.shape[0]):
        row = weight[c].reshape(-1)
        largest = max(abs(float(v)) for v in row)
        scales[c] = np.float32(largest / qmax) if largest > 0 else np.float32(1.0)
        for k, value in enumerate(row):
            code = round(float(value) / float(scales[c]))
            codes[c].reshape(-1)[k] = min(max(code, -qmax), qmax)
    return codes, scales


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12, 16])
def test_uniform_matches_literal_reference(bits):
    weight = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(bits))
    weight[2] = 0.0  # an all-zero channel keeps a usable scale
    quantized = quantize_uniform(weight, bits)
    codes, scales = reference_quantize(weight.double().numpy(), bits)
    (group,) = quantized.groups
    assert group.codes.dtype == (torch.int8 if bits <= 8 else torch.int16)
    assert np.array_equal(group.codes.numpy().astype(np.int64), codes.reshape(-1))
    assert np.array_equal(group.scales.numpy(), scales)
    restored = dequantize(quantized)
    assert restored.dtype == weight.dtype
    assert bool((restored[2] == 0).all())
    step = torch.from_numpy(scales).reshape(4, 1, 1, 1)
    assert bool(((restored - weight).abs() <= step / 2 + 1e-6).all())
    if bits >= 8:
        assert float((restored - weight).abs().max()) < 0.02


def test_per_tensor_scale_and_mask():
    weight = torch.tensor([[0.5, -1.0, 0.25], [4.0, 0.0, -2.0]])
    mask = torch.tensor([[True, False, True], [True, True, False]])
    quantized = quantize_uniform(weight, 4, per_channel=False, mask=mask)
    (group,) = quantized.groups
    assert group.scales.shape == (1,)
    assert float(group.scales[0]) == pytest.approx(4.0 / 7)
    assert group.codes.tolist() == [1, 0, 7, 0]  # 0.5/0.571 rounds to 1; pruned entries absent
    restored = quantized.dequantize()
    assert float(restored[0, 1]) == 0.0 and float(restored[1, 2]) == 0.0
    assert torch.equal(quantized.keep, mask)


def test_bit_width_validation():
    weight = torch.randn(2, 2)
    for bits in (1, 17):
        with pytest.raises(ValueError, match="bits"):
            quantize_uniform(weight, bits)
    with pytest.raises(TypeError, match="bits"):
        quantize_uniform(weight, True)
    with pytest.raises(ValueError, match="mask"):
        quantize_uniform(weight, 8, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bits must be one of"):
        mixed_precision_plan({"w": weight}, None, (8, 8))
    with pytest.raises(ValueError, match="bits must be one of"):
        mixed_precision_plan({"w": weight}, None, (4, 2))


@pytest.mark.parametrize("bits", [(16, 8), (8, 4), (8, 2)])
def test_mixed_precision_splits_kept_weights_at_the_layer_median(bits):
    relevance = {
        "a.weight": torch.tensor([[5.0, -1.0, 3.0], [2.0, 4.0, 0.5]]),
        "b.weight": torch.tensor([[1.0, 2.0]]),
    }
    keep = {"a.weight": torch.tensor([[True, False, True], [True, True, True]])}
    plan = mixed_precision_plan(relevance, keep, bits)
    high, low = bits
    # Kept relevances of layer a: 5, 3, 2, 4, 0.5; median 3; strictly above: 5 and 4.
    assert plan["a.weight"].tolist() == [[high, 0, low], [low, high, low]]
    # Layer b: median 1.5; only 2 is above it.
    assert plan["b.weight"].tolist() == [[low, high]]


def test_quantize_model_with_a_mixed_plan(state_guard):
    model = mlp()
    unchanged = state_guard(model)
    inputs = torch.randn(16, 6)
    relevance = weight_relevance(model, inputs, reduce="absolute")
    plan = plan_pruning(relevance, sparsity=0.5)
    widths = mixed_precision_plan(relevance, plan, (8, 4))
    compressed = quantize_model(model, widths, plan=plan)
    unchanged()
    for name, quantized in compressed.weights.items():
        assert [g.bits for g in quantized.groups] == [8, 4]
        assert torch.equal(quantized.bits, widths[name])
        assert torch.equal(compressed.model.get_parameter(name), quantized.dequantize())
        assert torch.equal(quantized.keep, plan.masks[name])
    assert sparsity(compressed.model) == pytest.approx(plan.achieved_sparsity, abs=0.02)
    assert compressed.mean_bits == pytest.approx(0.5 * 6, abs=0.3)
    assert torch.equal(compressed(inputs), compressed.model(inputs))


def test_quantize_model_uniform_and_errors():
    model = mlp()
    compressed = quantize_model(model, 8)
    assert list(compressed.weights) == ["0.weight", "2.weight", "4.weight"]
    inputs = torch.randn(8, 6)
    assert torch.allclose(compressed.model(inputs), model(inputs), atol=0.05)
    with pytest.raises(ValueError, match="not a parameter"):
        quantize_model(model, {"9.weight": torch.full((2, 2), 8)})
    with pytest.raises(ValueError, match="shape"):
        quantize_model(model, {"0.weight": torch.full((2, 2), 8)})
    with pytest.raises(ValueError, match="bit width"):
        quantize_model(model, {"0.weight": torch.full((8, 6), 1)})


def test_compress_nonpositive_is_the_papers_rule(state_guard):
    model = mlp().double()
    unchanged = state_guard(model)
    inputs = torch.randn(32, 6, dtype=torch.float64)
    compressed = compress(model, inputs, prune="nonpositive", bits=(8, 4))
    unchanged()
    relevance = weight_relevance(model, inputs)
    assert compressed.plan is not None and compressed.plan.method == "nonpositive"
    for name, value in relevance.items():
        assert torch.equal(compressed.plan.masks[name], value > 0)
        bits = compressed.weights[name].bits
        kept = value[value > 0]
        median = float(np.median(kept.numpy()))
        assert torch.equal(bits > 4, (value > median) & (value > 0))


def test_compress_defaults_and_options():
    model = mlp()
    inputs = torch.randn(16, 6)
    default = compress(model, inputs)
    assert default.plan is not None and default.plan.criterion == DEFAULT_CRITERION
    assert default.metadata["prune"] == DEFAULT_CRITERION
    assert default.plan.achieved_sparsity == pytest.approx(DEFAULT_SPARSITY, abs=0.02)
    magnitude = compress(model, prune="magnitude", sparsity=0.5, bits=8)
    assert magnitude.plan is not None and magnitude.plan.criterion == "magnitude"
    assert all([g.bits for g in q.groups] == [8] for q in magnitude.weights.values())
    pruned_only = compress(model, inputs, bits=None, sparsity=0.7)
    assert pruned_only.weights == {}
    assert sparsity(pruned_only.model) == pytest.approx(0.7, abs=0.02)
    with pytest.raises(ValueError, match="calibration inputs"):
        compress(model)
    with pytest.raises(ValueError, match="prune"):
        compress(model, inputs, prune="biggest")
