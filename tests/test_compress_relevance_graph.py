"""LRP through graphs (issue 22): literal float64 references for a residual block, a
depthwise-separable block with BatchNorm and ReLU6, a shared activation module and a gated
product; conservation through an addition; the model is left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leanxai.compress import conservation, weight_relevance
from leanxai.compress.relevance import INPUTS_KEY, LOGITS_KEY

EPSILON = 0.01
GAMMA = 0.25
RULES = ["epsilon", "zplus", "gamma"]


# The reference: every sum of the equations as an explicit loop, in float64 -----------------------


def contribution(a: float, w: float, rule: str) -> float:
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
    return 0.0


def stabilise(z: float) -> float:
    return z + EPSILON * (1.0 if z >= 0 else -1.0)


def dense(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    z = np.zeros((a.shape[0], w.shape[0]))
    for n in range(a.shape[0]):
        for j in range(w.shape[0]):
            z[n, j] = sum(a[n, i] * w[j, i] for i in range(w.shape[1])) + b[j]
    return z


def dense_lrp(a, w, b, relevance, rule):
    """R_i = sum_j c_ij s_j, R(w_ij) = sum_n c_ij s_j with s_j = R_j / stab(z_j)."""
    r_in, r_w = np.zeros_like(a), np.zeros_like(w)
    for n in range(a.shape[0]):
        for j in range(w.shape[0]):
            z = sum(contribution(a[n, i], w[j, i], rule) for i in range(w.shape[1]))
            s = relevance[n, j] / stabilise(z + rule_bias(b[j], rule))
            for i in range(w.shape[1]):
                term = contribution(a[n, i], w[j, i], rule) * s
                r_in[n, i] += term
                r_w[j, i] += term
    return r_in, r_w


def conv(a, w, b, pad, groups):
    """A grouped 2-D convolution, stride 1; a depthwise one when groups == channels."""
    batch, _channels, height, width = a.shape
    outputs, per_group, k, _ = w.shape
    out_per_group = outputs // groups
    out_h, out_w = height + 2 * pad - k + 1, width + 2 * pad - k + 1
    z = np.zeros((batch, outputs, out_h, out_w))
    for n in range(batch):
        for o in range(outputs):
            first = (o // out_per_group) * per_group
            for y in range(out_h):
                for x in range(out_w):
                    total = b[o]
                    for c in range(per_group):
                        for dy in range(k):
                            for dx in range(k):
                                iy, ix = y + dy - pad, x + dx - pad
                                if 0 <= iy < height and 0 <= ix < width:
                                    total += a[n, first + c, iy, ix] * w[o, c, dy, dx]
                    z[n, o, y, x] = total
    return z


def conv_lrp(a, w, b, pad, groups, relevance, rule):
    batch, _channels, height, width = a.shape
    outputs, per_group, k, _ = w.shape
    out_per_group = outputs // groups
    _, _, out_h, out_w = relevance.shape
    r_in, r_w = np.zeros_like(a), np.zeros_like(w)
    for n in range(batch):
        for o in range(outputs):
            first = (o // out_per_group) * per_group
            for y in range(out_h):
                for x in range(out_w):
                    taps = [
                        (c, y + dy - pad, x + dx - pad, dy, dx)
                        for c in range(per_group)
                        for dy in range(k)
                        for dx in range(k)
                        if 0 <= y + dy - pad < height and 0 <= x + dx - pad < width
                    ]
                    z = sum(
                        contribution(a[n, first + c, iy, ix], w[o, c, dy, dx], rule)
                        for c, iy, ix, dy, dx in taps
                    )
                    s = relevance[n, o, y, x] / stabilise(z + rule_bias(b[o], rule))
                    for c, iy, ix, dy, dx in taps:
                        term = contribution(a[n, first + c, iy, ix], w[o, c, dy, dx], rule) * s
                        r_in[n, first + c, iy, ix] += term
                        r_w[o, c, dy, dx] += term
    return r_in, r_w


def fold(conv_w, norm: nn.BatchNorm2d):
    """w' = w gamma / sqrt(var + eps), b' = beta - mean gamma / sqrt(var + eps)."""
    gamma = norm.weight.detach().numpy()
    beta = norm.bias.detach().numpy()
    mean = norm.running_mean.numpy()
    var = norm.running_var.numpy()
    w, b = np.zeros_like(conv_w), np.zeros(conv_w.shape[0])
    for o in range(conv_w.shape[0]):
        scale = gamma[o] / np.sqrt(var[o] + norm.eps)
        w[o] = conv_w[o] * scale
        b[o] = beta[o] - mean[o] * scale
    return w, b


def start_relevance(logits: np.ndarray) -> np.ndarray:
    relevance = np.zeros_like(logits)
    for n in range(logits.shape[0]):
        t = int(np.argmax(logits[n]))
        relevance[n, t] = logits[n, t]
    return relevance


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def silu(x):
    return x / (1.0 + np.exp(-x))


def close(ours: torch.Tensor, reference: np.ndarray) -> bool:
    return torch.allclose(ours, torch.from_numpy(reference), rtol=1e-6, atol=1e-9)


def numpy_of(module: nn.Module) -> dict[str, np.ndarray]:
    return {name: p.detach().numpy() for name, p in module.named_parameters()}


# Models ------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """y = fc3(relu(fc2(relu(fc1(x))) + x)): an addition of two relevance-carrying tensors."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 5, bias=bias)
        self.fc2 = nn.Linear(5, 4, bias=bias)
        self.act = nn.ReLU()
        self.fc3 = nn.Linear(4, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(self.act(self.fc1(x)))
        return self.fc3(torch.relu(h + x))


def reference_residual(model: ResidualBlock, inputs: torch.Tensor, rule: str):
    p = numpy_of(model)
    bias = {
        k: p.get(f"{k}.bias", np.zeros(p[f"{k}.weight"].shape[0])) for k in ("fc1", "fc2", "fc3")
    }
    x = inputs.numpy()
    z1 = dense(x, p["fc1.weight"], bias["fc1"])
    h1 = np.maximum(z1, 0.0)
    z2 = dense(h1, p["fc2.weight"], bias["fc2"])
    c = z2 + x
    h2 = np.maximum(c, 0.0)
    logits = dense(h2, p["fc3.weight"], bias["fc3"])
    r = start_relevance(logits)
    r_c, r_fc3 = dense_lrp(h2, p["fc3.weight"], bias["fc3"], r, rule)  # ReLU passes R through
    # The addition's rule (the z-rule, autograd's gradient times input): R_a = a / (a + b) R.
    r_z2, r_skip = np.zeros_like(c), np.zeros_like(c)
    for n in range(c.shape[0]):
        for i in range(c.shape[1]):
            r_z2[n, i] = z2[n, i] / c[n, i] * r_c[n, i]
            r_skip[n, i] = x[n, i] / c[n, i] * r_c[n, i]
    r_h1, r_fc2 = dense_lrp(h1, p["fc2.weight"], bias["fc2"], r_z2, rule)
    r_x_fc1, r_fc1 = dense_lrp(x, p["fc1.weight"], bias["fc1"], r_h1, rule)
    weights = {"fc1.weight": r_fc1, "fc2.weight": r_fc2, "fc3.weight": r_fc3}
    return weights, r_x_fc1 + r_skip


class SeparableBlock(nn.Module):
    """Depthwise 3x3 conv, BN, ReLU6, pointwise 1x1 conv, BN, ReLU6, average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
        self.norm1 = nn.BatchNorm2d(3)
        self.act1 = nn.ReLU6()
        self.pointwise = nn.Conv2d(3, 4, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4)
        self.act2 = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.norm1(self.depthwise(x)))
        h = self.act2(self.norm2(self.pointwise(h)))
        return self.fc(self.pool(h).flatten(1))


def separable_block() -> SeparableBlock:
    torch.manual_seed(7)
    model = SeparableBlock().double()
    with torch.no_grad():
        for norm in (model.norm1, model.norm2):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(1.0, 4.0)  # large enough that ReLU6 saturates somewhere
            norm.bias.uniform_(-0.5, 1.5)
    return model.eval()


def reference_separable(model: SeparableBlock, inputs: torch.Tensor, rule: str):
    p = numpy_of(model)
    w1, b1 = fold(p["depthwise.weight"], model.norm1)
    w2, b2 = fold(p["pointwise.weight"], model.norm2)
    x = inputs.numpy()
    z1 = conv(x, w1, b1, 1, 3)
    h1 = relu6(z1)
    z2 = conv(h1, w2, b2, 0, 1)
    h2 = relu6(z2)
    assert (z1 > 6).any() or (z2 > 6).any(), "the test should saturate ReLU6 somewhere"
    pooled = h2.mean(axis=(2, 3))
    logits = dense(pooled, p["fc.weight"], p["fc.bias"])
    r = start_relevance(logits)
    r_pooled, r_fc = dense_lrp(pooled, p["fc.weight"], p["fc.bias"], r, rule)
    batch, channels, height, width = h2.shape
    r_h2 = np.zeros_like(h2)  # average pooling, epsilon rule
    for n in range(batch):
        for c in range(channels):
            s = r_pooled[n, c] / stabilise(pooled[n, c])
            for y in range(height):
                for xx in range(width):
                    r_h2[n, c, y, xx] = h2[n, c, y, xx] / (height * width) * s
    # ReLU6 passes relevance through unchanged (the identity rule): R_z2 = R_h2.
    r_h1, r_pw = conv_lrp(h1, w2, b2, 0, 1, r_h2, rule)
    _r_x, r_dw = conv_lrp(x, w1, b1, 1, 3, r_h1, rule)
    return {"depthwise.weight": r_dw, "pointwise.weight": r_pw, "fc.weight": r_fc}


class SharedActivation(nn.Module):
    """One SiLU module run twice."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 4)
        self.fc2 = nn.Linear(4, 4)
        self.act = nn.SiLU()
        self.fc3 = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def reference_shared(model: SharedActivation, inputs: torch.Tensor, rule: str):
    p = numpy_of(model)
    x = inputs.numpy()
    h1 = silu(dense(x, p["fc1.weight"], p["fc1.bias"]))
    h2 = silu(dense(h1, p["fc2.weight"], p["fc2.bias"]))
    logits = dense(h2, p["fc3.weight"], p["fc3.bias"])
    r = start_relevance(logits)
    # SiLU passes relevance through unchanged at both calls.
    r, r_fc3 = dense_lrp(h2, p["fc3.weight"], p["fc3.bias"], r, rule)
    r, r_fc2 = dense_lrp(h1, p["fc2.weight"], p["fc2.bias"], r, rule)
    _, r_fc1 = dense_lrp(x, p["fc1.weight"], p["fc1.bias"], r, rule)
    return {"fc1.weight": r_fc1, "fc2.weight": r_fc2, "fc3.weight": r_fc3}


class Gated(nn.Module):
    """y = fc2(relu(fc1(x)) * sigmoid(gate(x))): a product of two relevance-carrying tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 3, bias=False)
        self.gate = nn.Linear(4, 3, bias=False)
        self.fc2 = nn.Linear(3, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)) * torch.sigmoid(self.gate(x)))


# Tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
def test_residual_block_matches_literal_reference(rule, state_guard):
    torch.manual_seed(1)
    model = ResidualBlock().double()
    inputs = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    unchanged = state_guard(model)
    ours = weight_relevance(model, inputs, rule=rule, epsilon=EPSILON, gamma=GAMMA)
    reference, _ = reference_residual(model, inputs, rule)
    assert list(ours) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for key, value in reference.items():
        assert close(ours[key], value), (key, rule)
    unchanged()


def test_relevance_is_conserved_through_an_addition():
    # The epsilon rule promises conservation (the z+ rule loses the relevance of units with no
    # positive contribution, which a residual branch has here, whatever the addition does).
    # Without biases and with a tiny epsilon every rule layer conserves relevance, and the
    # addition's z-rule splits it without loss: the inputs receive the start relevance, and it
    # equals the literal reference's input relevance.
    torch.manual_seed(3)
    model = ResidualBlock(bias=False).double()
    inputs = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    rule = "epsilon"
    totals = conservation(model, inputs, rule=rule, epsilon=1e-12)
    start = totals[LOGITS_KEY]
    assert abs(start) > 1e-3
    assert totals[INPUTS_KEY] == pytest.approx(start, rel=1e-6)
    # fc3 passes everything to the addition; fc2 passes only the residual branch's share.
    assert totals["fc3"] == pytest.approx(start, rel=1e-6)
    assert abs(totals["fc2"] - start) > 1e-6
    global EPSILON
    saved, EPSILON = EPSILON, 1e-12
    try:
        _, r_x = reference_residual(model, inputs, rule)
    finally:
        EPSILON = saved
    assert totals[INPUTS_KEY] == pytest.approx(float(r_x.sum()), rel=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_separable_block_with_batch_norm_and_relu6_matches_literal_reference(rule, state_guard):
    model = separable_block()
    model.train()  # the flags, the BatchNorm statistics and parameters must survive
    unchanged = state_guard(model)
    model.eval()
    inputs = 3 * torch.randn(
        2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    mean_before = model.norm1.running_mean.clone()
    weight_before = model.depthwise.weight.detach().clone()
    ours = weight_relevance(model, inputs, rule=rule, epsilon=EPSILON, gamma=GAMMA)
    reference = reference_separable(model, inputs, rule)
    assert list(ours) == list(reference)
    for key, value in reference.items():
        assert close(ours[key], value), (key, rule)
    assert torch.equal(model.norm1.running_mean, mean_before)  # not folded in place
    assert torch.equal(model.depthwise.weight, weight_before)
    model.train()
    unchanged()


@pytest.mark.parametrize("rule", RULES)
def test_shared_activation_module_matches_literal_reference(rule, state_guard):
    torch.manual_seed(6)
    model = SharedActivation().double()
    inputs = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    unchanged = state_guard(model)
    ours = weight_relevance(model, inputs, rule=rule, epsilon=EPSILON, gamma=GAMMA)
    reference = reference_shared(model, inputs, rule)
    for key, value in reference.items():
        assert close(ours[key], value), (key, rule)
    unchanged()


def test_gated_product_gives_each_factor_half():
    # The uniform rule: y = u * v with both relevance-carrying; R_u = R_v = R_y / 2. Without
    # biases fc2 receives everything, fc1 half of it (ReLU passes), the gate branch the other half
    # (its sigmoid keeps its gradient, so the gate's share is not conserved down to the inputs).
    torch.manual_seed(8)
    model = Gated().double()
    inputs = torch.randn(5, 4, dtype=torch.float64)
    totals = conservation(model, inputs, epsilon=1e-12)
    start = totals[LOGITS_KEY]
    assert totals["fc2"] == pytest.approx(start, rel=1e-6)
    assert totals["fc1"] == pytest.approx(start / 2, rel=1e-6)


def test_a_linear_layer_run_twice_gets_both_calls(state_guard):
    torch.manual_seed(9)
    shared = nn.Linear(3, 3).double()
    head = nn.Linear(3, 2).double()

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared, self.head = shared, head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))

    model = Twice()
    inputs = torch.randn(4, 3, dtype=torch.float64)
    unchanged = state_guard(model)
    totals = conservation(model, inputs, epsilon=1e-9)
    signed = weight_relevance(model, inputs, epsilon=1e-9)
    l2 = weight_relevance(model, inputs, epsilon=1e-9, reduce="l2")
    singles = [weight_relevance(model, inputs[n : n + 1], epsilon=1e-9) for n in range(4)]
    # The sum over both calls: what the layer passes down at both calls minus its biases' share.
    assert float(signed["shared.weight"].sum()) != 0.0
    assert totals["shared"] != 0.0
    # l2 adds a sample's two calls before squaring.
    expected = torch.stack([s["shared.weight"] for s in singles]).square().sum(0).sqrt()
    assert torch.allclose(l2["shared.weight"], expected)
    unchanged()
