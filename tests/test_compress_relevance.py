"""weight_relevance against a literal float64 implementation of the LRP equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leanxai.compress import conservation, weight_relevance
from leanxai.core.errors import InputError, TargetError, UnsupportedLayerError
from leanxai.zoo import SmallCNN

EPSILON = 0.01  # large enough that the stabiliser matters in the comparison
GAMMA = 0.25


# The reference: every sum of the equations as an explicit loop, in float64 -----------------------


def contribution(a: float, w: float, rule: str) -> float:
    """The term a_i w_ij the rule sums (z+: its positive part; gamma: w + gamma w+)."""
    if rule == "epsilon":
        return a * w
    if rule == "gamma":
        return a * (w + GAMMA * max(w, 0.0))
    return max(a * w, 0.0)  # zplus


def rule_bias(b: float, rule: str) -> float:
    if rule == "epsilon":
        return b
    if rule == "gamma":
        return b + GAMMA * max(b, 0.0)
    return 0.0  # zplus ignores the bias


def stabilise(z: float) -> float:
    return z + EPSILON * (1.0 if z >= 0 else -1.0)


def dense_forward(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    batch, (outputs, inputs) = a.shape[0], w.shape
    z = np.zeros((batch, outputs))
    for n in range(batch):
        for j in range(outputs):
            z[n, j] = sum(a[n, i] * w[j, i] for i in range(inputs)) + b[j]
    return z


def dense_lrp(a, w, b, relevance, rule):
    """R_i = sum_j c_ij s_j and R(w_ij) = sum_n c_ij s_j, s_j = R_j / (z_j + eps sign z_j).

    Also the sum of |c_ij s_j| and the L2 norm over samples of c_ij s_j.
    """
    batch, (outputs, inputs) = a.shape[0], w.shape
    r_in = np.zeros_like(a)
    r_w = np.zeros_like(w)
    r_w_abs = np.zeros_like(w)
    r_w_squares = np.zeros_like(w)
    for n in range(batch):
        for j in range(outputs):
            z = sum(contribution(a[n, i], w[j, i], rule) for i in range(inputs))
            s = relevance[n, j] / stabilise(z + rule_bias(b[j], rule))
            for i in range(inputs):
                term = contribution(a[n, i], w[j, i], rule) * s
                r_in[n, i] += term
                r_w[j, i] += term
                r_w_abs[j, i] += abs(term)
                r_w_squares[j, i] += term * term
    return r_in, r_w, r_w_abs, np.sqrt(r_w_squares)


def conv_forward(a, w, b, pad):
    batch, channels, height, width = a.shape
    outputs, _, k, _ = w.shape
    out_h, out_w = height + 2 * pad - k + 1, width + 2 * pad - k + 1
    z = np.zeros((batch, outputs, out_h, out_w))
    for n in range(batch):
        for o in range(outputs):
            for y in range(out_h):
                for x in range(out_w):
                    total = b[o]
                    for c in range(channels):
                        for dy in range(k):
                            for dx in range(k):
                                iy, ix = y + dy - pad, x + dx - pad
                                if 0 <= iy < height and 0 <= ix < width:
                                    total += a[n, c, iy, ix] * w[o, c, dy, dx]
                    z[n, o, y, x] = total
    return z


def conv_lrp(a, w, b, pad, relevance, rule):
    batch, channels, height, width = a.shape
    outputs, _, k, _ = w.shape
    _, _, out_h, out_w = relevance.shape
    r_in, r_w = np.zeros_like(a), np.zeros_like(w)
    r_w_squares = np.zeros_like(w)
    for n in range(batch):
        r_w_sample = np.zeros_like(w)  # this sample's relevance, summed over its positions
        for o in range(outputs):
            for y in range(out_h):
                for x in range(out_w):
                    taps = []  # (c, iy, ix, dy, dx) inside the input
                    for c in range(channels):
                        for dy in range(k):
                            for dx in range(k):
                                iy, ix = y + dy - pad, x + dx - pad
                                if 0 <= iy < height and 0 <= ix < width:
                                    taps.append((c, iy, ix, dy, dx))
                    z = sum(
                        contribution(a[n, c, iy, ix], w[o, c, dy, dx], rule)
                        for c, iy, ix, dy, dx in taps
                    )
                    s = relevance[n, o, y, x] / stabilise(z + rule_bias(b[o], rule))
                    for c, iy, ix, dy, dx in taps:
                        term = contribution(a[n, c, iy, ix], w[o, c, dy, dx], rule) * s
                        r_in[n, c, iy, ix] += term
                        r_w[o, c, dy, dx] += term
                        r_w_sample[o, c, dy, dx] += term
        r_w_squares += r_w_sample * r_w_sample
    return r_in, r_w, np.sqrt(r_w_squares)


def max_pool_lrp(a, relevance):
    """2x2 max pooling: the window's relevance goes to its winner, a R / (a + eps sign a)."""
    r_in = np.zeros_like(a)
    batch, channels, height, width = a.shape
    for n in range(batch):
        for c in range(channels):
            for y in range(height // 2):
                for x in range(width // 2):
                    window = [(2 * y + dy, 2 * x + dx) for dy in range(2) for dx in range(2)]
                    iy, ix = max(window, key=lambda p: a[n, c, p[0], p[1]])
                    winner = a[n, c, iy, ix]
                    r_in[n, c, iy, ix] += winner * relevance[n, c, y, x] / stabilise(winner)
    return r_in


def max_pool_forward(a):
    batch, channels, height, width = a.shape
    out = np.zeros((batch, channels, height // 2, width // 2))
    for n in range(batch):
        for c in range(channels):
            for y in range(height // 2):
                for x in range(width // 2):
                    out[n, c, y, x] = max(
                        a[n, c, 2 * y + dy, 2 * x + dx] for dy in range(2) for dx in range(2)
                    )
    return out


def global_avg_pool_lrp(a, relevance):
    """z_c = mean of a over the map; R_i = (a_i / HW) R_c / (z_c + eps sign z_c)."""
    r_in = np.zeros_like(a)
    batch, channels, height, width = a.shape
    for n in range(batch):
        for c in range(channels):
            z = sum(a[n, c, y, x] for y in range(height) for x in range(width)) / (height * width)
            for y in range(height):
                for x in range(width):
                    r_in[n, c, y, x] = (
                        a[n, c, y, x] / (height * width) * relevance[n, c] / stabilise(z)
                    )
    return r_in


def start_relevance(logits: np.ndarray, target) -> np.ndarray:
    relevance = np.zeros_like(logits)
    for n in range(logits.shape[0]):
        if target == "all":
            relevance[n] = logits[n]
        else:
            t = int(np.argmax(logits[n])) if target is None else int(target[n])
            relevance[n, t] = logits[n, t]
    return relevance


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def reference_mlp(model: nn.Sequential, inputs: torch.Tensor, target, rule):
    layers = [
        (m.weight.detach().numpy(), m.bias.detach().numpy())
        for m in model
        if isinstance(m, nn.Linear)
    ]
    activations = [inputs.numpy()]
    for k, (w, b) in enumerate(layers):
        z = dense_forward(activations[-1], w, b)
        activations.append(relu(z) if k < len(layers) - 1 else z)
    relevance = start_relevance(activations[-1], target)
    signed, absolute, l2 = [], [], []
    for k in reversed(range(len(layers))):
        relevance, r_w, r_w_abs, r_w_l2 = dense_lrp(activations[k], *layers[k], relevance, rule)
        signed.insert(0, r_w)
        absolute.insert(0, r_w_abs)
        l2.insert(0, r_w_l2)
    return signed, absolute, l2


class TinyConvNet(nn.Module):
    """conv-relu-maxpool-conv-relu-avgpool, a functional flatten, linear."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, bias=bias),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(3, 4, 3, padding=1, bias=bias),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def reference_cnn(model: TinyConvNet, inputs: torch.Tensor, target, rule, reduce="sum"):
    conv1, conv2, fc = model.features[0], model.features[3], model.fc
    p = {n: t.detach().numpy() for n, t in model.named_parameters()}
    a0 = inputs.numpy()
    a1 = relu(conv_forward(a0, p["features.0.weight"], p["features.0.bias"], 1))
    a2 = max_pool_forward(a1)
    a3 = relu(conv_forward(a2, p["features.3.weight"], p["features.3.bias"], 1))
    a4 = a3.mean(axis=(2, 3))
    logits = dense_forward(a4, p["fc.weight"], p["fc.bias"])
    relevance = start_relevance(logits, target)
    relevance, r_fc, _, r_fc_l2 = dense_lrp(a4, p["fc.weight"], p["fc.bias"], relevance, rule)
    relevance = global_avg_pool_lrp(a3, relevance)
    relevance, r_conv2, r_conv2_l2 = conv_lrp(
        a2, p["features.3.weight"], p["features.3.bias"], 1, relevance, rule
    )
    relevance = max_pool_lrp(a1, relevance)
    _, r_conv1, r_conv1_l2 = conv_lrp(
        a0, p["features.0.weight"], p["features.0.bias"], 1, relevance, rule
    )
    assert conv1 is not None and conv2 is not None and fc is not None
    if reduce == "l2":
        return {
            "features.0.weight": r_conv1_l2,
            "features.3.weight": r_conv2_l2,
            "fc.weight": r_fc_l2,
        }
    return {"features.0.weight": r_conv1, "features.3.weight": r_conv2, "fc.weight": r_fc}


def mlp(bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 5, bias=bias),
        nn.ReLU(),
        nn.Linear(5, 4, bias=bias),
        nn.ReLU(),
        nn.Linear(4, 3, bias=bias),
    ).double()


def conv_net(bias: bool = True, seed: int = 0) -> TinyConvNet:
    torch.manual_seed(seed)
    return TinyConvNet(bias=bias).double().eval()


def close(ours: torch.Tensor, reference: np.ndarray) -> bool:
    return torch.allclose(ours, torch.from_numpy(reference), rtol=1e-9, atol=1e-12)


# Tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "gamma"])
@pytest.mark.parametrize("target", [None, [0, 2, 1, 1], "all"])
def test_mlp_matches_literal_reference(rule, target, state_guard):
    model = mlp()
    inputs = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    unchanged = state_guard(model)
    ours = weight_relevance(model, inputs, target, rule=rule, epsilon=EPSILON, gamma=GAMMA)
    ours_abs = weight_relevance(
        model, inputs, target, rule=rule, epsilon=EPSILON, gamma=GAMMA, reduce="absolute"
    )
    ours_l2 = weight_relevance(
        model, inputs, target, rule=rule, epsilon=EPSILON, gamma=GAMMA, reduce="l2", batch_size=3
    )
    signed, absolute, l2 = reference_mlp(model, inputs, target, rule)
    assert list(ours) == ["0.weight", "2.weight", "4.weight"]
    for key, reference, reference_abs, reference_l2 in zip(ours, signed, absolute, l2, strict=True):
        assert ours[key].shape == model.get_parameter(key).shape
        assert close(ours[key], reference), (key, rule)
        assert close(ours_abs[key], reference_abs), (key, rule)
        assert close(ours_l2[key], reference_l2), (key, rule)
    unchanged()


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "gamma"])
def test_cnn_matches_literal_reference(rule, state_guard):
    model = conv_net()
    inputs = torch.randn(
        2, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    unchanged = state_guard(model)
    ours = weight_relevance(model, inputs, rule=rule, epsilon=EPSILON, gamma=GAMMA)
    reference = reference_cnn(model, inputs, None, rule)
    assert list(ours) == list(reference)
    for key, value in reference.items():
        assert close(ours[key], value), (key, rule)
    unchanged()


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "gamma"])
def test_cnn_l2_matches_literal_reference(rule, state_guard):
    # Positions are summed within a sample before squaring, samples are not: three samples in
    # batches of two check that batches add up too.
    model = conv_net()
    inputs = torch.randn(
        3, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    unchanged = state_guard(model)
    ours = weight_relevance(
        model, inputs, rule=rule, epsilon=EPSILON, gamma=GAMMA, reduce="l2", batch_size=2
    )
    reference = reference_cnn(model, inputs, None, rule, reduce="l2")
    assert list(ours) == list(reference)
    for key, value in reference.items():
        assert close(ours[key], value), (key, rule)
    unchanged()


def test_l2_of_one_sample_is_the_absolute_signed_relevance():
    model = conv_net()
    inputs = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    signed = weight_relevance(model, inputs)
    l2 = weight_relevance(model, inputs, reduce="l2")
    for key, value in signed.items():
        assert torch.allclose(l2[key], value.abs())


def test_zplus_relevance_is_non_negative_for_a_positive_start():
    model = mlp()
    inputs = torch.randn(8, 6, dtype=torch.float64)
    logits = model(inputs)
    target = logits.argmax(1)
    positive = logits.gather(1, target[:, None]).squeeze(1) > 0
    ours = weight_relevance(model, inputs[positive], target[positive], rule="zplus")
    assert all(bool((value >= 0).all()) for value in ours.values())


@pytest.mark.parametrize("builder, shape", [(mlp, (5, 6)), (conv_net, (3, 2, 6, 6))])
@pytest.mark.parametrize("rule", ["epsilon", "zplus"])
def test_relevance_is_conserved_without_biases(builder, shape, rule):
    model = builder(bias=False)
    inputs = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    totals = conservation(model, inputs, rule=rule, epsilon=1e-9)
    start = totals.pop("<logits>")
    assert abs(start) > 1e-3
    for name, total in totals.items():
        assert total == pytest.approx(start, rel=1e-6), name
    # The weights' relevance adds up to the relevance a layer passes down.
    relevance = weight_relevance(model, inputs, rule=rule, epsilon=1e-9)
    for key, value in relevance.items():
        assert float(value.sum()) == pytest.approx(totals[key.removesuffix(".weight")], rel=1e-6)


def test_all_target_is_the_sum_over_classes():
    model = mlp()
    inputs = torch.randn(3, 6, dtype=torch.float64)
    total = weight_relevance(model, inputs, "all")
    per_class = [weight_relevance(model, inputs, k) for k in range(3)]
    for key, value in total.items():
        assert torch.allclose(value, sum(r[key] for r in per_class))


def test_targets_and_batching_agree():
    model = conv_net()
    inputs = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    as_int = weight_relevance(model, inputs, 1)
    as_list = weight_relevance(model, inputs, [1] * 5, batch_size=2)
    as_tensor = weight_relevance(model, inputs, torch.ones(5, dtype=torch.int64), batch_size=1)
    for key in as_int:
        assert torch.allclose(as_int[key], as_list[key])
        assert torch.allclose(as_int[key], as_tensor[key])


def test_batch_norm_is_folded_into_the_preceding_conv():
    torch.manual_seed(4)
    with_norm = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2),
    ).double()
    norm = with_norm[1]
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(-1.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    with_norm.eval()
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2),
    ).double()
    with torch.no_grad():
        folded[0].weight.copy_(with_norm[0].weight * scale[:, None, None, None])
        folded[0].bias.copy_(norm.bias - norm.running_mean * scale)
        folded[4].load_state_dict(with_norm[5].state_dict())
    inputs = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    assert torch.allclose(with_norm(inputs), folded(inputs))
    for rule in ("epsilon", "zplus", "gamma"):
        ours = weight_relevance(with_norm, inputs, rule=rule)
        expected = weight_relevance(folded, inputs, rule=rule)
        assert list(ours) == ["0.weight", "5.weight"]
        assert torch.allclose(ours["0.weight"], expected["0.weight"])
        assert torch.allclose(ours["5.weight"], expected["4.weight"])


def test_small_cnn_with_batch_norm_and_in_place_relu(state_guard):
    torch.manual_seed(5)
    model = SmallCNN(num_classes=3, in_channels=1, width=2).double()
    model.train()  # the training flag and BatchNorm statistics must survive
    unchanged = state_guard(model)
    inputs = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    relevance = weight_relevance(model, inputs)
    expected = [f"features.{i}.weight" for i in (0, 4, 8, 12)] + ["classifier.weight"]
    assert list(relevance) == expected
    for key, value in relevance.items():
        assert value.shape == model.get_parameter(key).shape
        assert bool(torch.isfinite(value).all())
    unchanged()


def test_unsupported_layers_are_named(state_guard):
    # A module with parameters of its own that no rule covers (LayerNorm is covered since
    # issue 22).
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.ReLU(), nn.Linear(4, 2))
    unchanged = state_guard(model)
    with pytest.raises(UnsupportedLayerError, match=r"1 \(PReLU\)"):
        weight_relevance(model, torch.randn(3, 4))
    unchanged()
    with pytest.warns(UserWarning, match="PReLU"):
        relevance = weight_relevance(model, torch.randn(3, 4), skip_unsupported=True)
    assert list(relevance) == ["0.weight", "3.weight"]
    unchanged()


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x) - 10.0))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) + x)


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


@pytest.mark.parametrize("model", [FunctionalReLU(), Residual(), Reused()])
def test_models_that_are_not_chains_are_followed(model, state_guard):
    # Refused before issue 22; the graph engine follows functional calls, residual connections
    # and modules run twice (literal references: tests/test_compress_relevance_graph.py).
    unchanged = state_guard(model)
    relevance = weight_relevance(model, torch.randn(3, 4))
    assert set(relevance) == {k for k in dict(model.named_parameters()) if k.endswith("weight")}
    assert all(bool(torch.isfinite(v).all()) for v in relevance.values())
    unchanged()


def test_bad_arguments(state_guard):
    model = mlp()
    unchanged = state_guard(model)
    inputs = torch.randn(3, 6, dtype=torch.float64)
    with pytest.raises(InputError, match="non-empty"):
        weight_relevance(model, inputs[:0])
    with pytest.raises(ValueError, match="non-empty"):
        conservation(model, inputs[:0])
    with pytest.raises(TypeError, match="inputs"):
        weight_relevance(model, inputs.tolist())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rule"):
        weight_relevance(model, inputs, rule="alphabeta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epsilon"):
        weight_relevance(model, inputs, epsilon=0.0)
    with pytest.raises(ValueError, match="reduce"):
        weight_relevance(model, inputs, reduce="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        weight_relevance(model, inputs, batch_size=0)
    with pytest.raises(TargetError, match="out of range"):
        weight_relevance(model, inputs, 3)
    with pytest.raises(TargetError, match="one per sample"):
        weight_relevance(model, inputs, [0, 1])
    with pytest.raises(TargetError, match="'all'"):
        weight_relevance(model, inputs, "some")
    with pytest.raises(InputError, match="NaN"):
        weight_relevance(model, torch.full((2, 6), float("nan"), dtype=torch.float64))
    unchanged()


def test_l2_is_the_norm_of_single_sample_relevances_for_tokens():
    # A Linear layer on (B, L, C) inputs sums its positions within a sample, like a convolution.
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(15, 2)).double()
    inputs = torch.randn(4, 3, 4, dtype=torch.float64)
    l2 = weight_relevance(model, inputs, reduce="l2", batch_size=3)
    singles = [weight_relevance(model, inputs[n : n + 1]) for n in range(4)]
    for key, value in l2.items():
        expected = torch.stack([single[key] for single in singles]).square().sum(0).sqrt()
        assert torch.allclose(value, expected)
