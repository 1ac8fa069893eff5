"""Complexity features: each column against a literal float64 NumPy loop, known answers, hygiene."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_cnn, tiny_vgg
from leanxai import GradCAM
from leanxai.core.errors import InputError
from leanxai.explainers.base import Explanation
from leanxai.route import FEATURE_NAMES, FeatureExtractor, complexity_features, probe_features

# -- literal references, one sample at a time, float64 ----------------------------------------


def ref_entropy(cam: np.ndarray) -> float:
    values = [float(v) for v in cam.ravel()]
    n = len(values)
    total = sum(values)
    if total == 0 or n == 1:
        return 1.0
    h = 0.0
    for v in values:
        p = v / total
        if p > 0:
            h -= p * math.log(p)
    return h / math.log(n)


def ref_gini(heatmap: np.ndarray) -> float:
    c = sorted(float(v) for v in heatmap.ravel())
    n = len(c)
    norm = sum(abs(v) for v in c)
    if norm == 0:
        return 0.0
    s = 0.0
    for k in range(1, n + 1):
        s += (c[k - 1] / norm) * ((n - k + 0.5) / n)
    return 1 - 2 * s


def ref_gradient(heatmap: np.ndarray) -> float:
    h, w = heatmap.shape
    dx = [abs(heatmap[i, j + 1] - heatmap[i, j]) for i in range(h) for j in range(w - 1)]
    dy = [abs(heatmap[i + 1, j] - heatmap[i, j]) for i in range(h - 1) for j in range(w)]
    mx = sum(dx) / len(dx) if dx else 0.0
    my = sum(dy) / len(dy) if dy else 0.0
    return (mx + my) / 2


def ref_variance(heatmap: np.ndarray) -> float:
    values = [float(v) for v in heatmap.ravel()]
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def ref_sobel(image: np.ndarray) -> float:
    c, h, w = image.shape
    gray = [[sum(image[k, i, j] for k in range(c)) / c for j in range(w)] for i in range(h)]

    def at(i: int, j: int) -> float:  # replicate padding
        return gray[min(max(i, 0), h - 1)][min(max(j, 0), w - 1)]

    kx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    total = 0.0
    for i in range(h):
        for j in range(w):
            gx = gy = 0.0
            for u in range(3):
                for v in range(3):
                    value = at(i + u - 1, j + v - 1)
                    gx += kx[u][v] * value
                    gy += kx[v][u] * value
            total += math.sqrt(gx * gx + gy * gy)
    return total / (h * w)


def ref_margin(logits: np.ndarray) -> float:
    m = max(logits)
    e = [math.exp(v - m) for v in logits]
    p = sorted((v / sum(e) for v in e), reverse=True)
    return p[0] - p[1]


def ref_activation_sparsity(activations: np.ndarray) -> float:
    values = activations.ravel()
    return sum(1 for v in values if v <= 0) / len(values)


def reference_features(
    explanation: Explanation, inputs: torch.Tensor, activations: torch.Tensor
) -> np.ndarray:
    rows = []
    for b in range(inputs.shape[0]):
        cam = explanation.cam[b].double().numpy()
        heat = explanation.heatmap[b].double().numpy()
        rows.append(
            [
                ref_entropy(cam),
                ref_gini(heat),
                ref_gradient(heat),
                ref_variance(heat),
                ref_sobel(inputs[b].double().numpy()),
                ref_margin(explanation.logits[b].double().numpy()),
                ref_activation_sparsity(activations[b].double().numpy()),
            ]
        )
    return np.array(rows)


def make_explanation(
    cam: torch.Tensor,
    heatmap: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
) -> Explanation:
    batch = cam.shape[0]
    if heatmap is None:
        heatmap = torch.rand(batch, 8, 8, dtype=torch.float64)
    if logits is None:
        logits = torch.randn(batch, 5, dtype=torch.float64)
    return Explanation(
        heatmap=heatmap,
        target=logits.argmax(dim=1),
        logits=logits,
        method="gradcam",
        cam=cam,
        layer="features",
    )


# -- each column against the reference ---------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_columns_match_literal_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    batch = 3
    cam = torch.rand(batch, 4, 5, generator=gen, dtype=torch.float64)
    cam[cam < 0.4] = 0  # some exact zeros, as after ReLU
    heatmap = torch.rand(batch, 9, 7, generator=gen, dtype=torch.float64)
    heatmap[heatmap < 0.3] = 0
    logits = torch.randn(batch, 6, generator=gen, dtype=torch.float64) * 3
    inputs = torch.randn(batch, 3, 9, 7, generator=gen, dtype=torch.float64)
    activations = torch.randn(batch, 4, 4, 5, generator=gen, dtype=torch.float64)
    explanation = make_explanation(cam, heatmap, logits)

    ours = complexity_features(explanation, inputs, activations)
    assert ours.shape == (batch, len(FEATURE_NAMES))
    assert ours.dtype == torch.float32
    expected = reference_features(explanation, inputs, activations)
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_float32_inputs_match_reference() -> None:
    gen = torch.Generator().manual_seed(7)
    cam = torch.rand(2, 3, 3, generator=gen)
    heatmap = torch.rand(2, 6, 6, generator=gen)
    logits = torch.randn(2, 4, generator=gen)
    inputs = torch.rand(2, 1, 6, 6, generator=gen)
    activations = torch.randn(2, 3, 3, 3, generator=gen).relu()
    explanation = make_explanation(cam, heatmap, logits)
    ours = complexity_features(explanation, inputs, activations)
    expected = reference_features(explanation, inputs, activations)
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=1e-4, atol=1e-5)


# -- known answers -----------------------------------------------------------------------------


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_entropy_known_answers() -> None:
    uniform = torch.full((1, 4, 4), 0.7, dtype=torch.float64)
    one_hot = torch.zeros(1, 4, 4, dtype=torch.float64)
    one_hot[0, 2, 1] = 3.0
    zero = torch.zeros(1, 4, 4, dtype=torch.float64)
    cam = torch.cat([uniform, one_hot, zero])
    inputs = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    features = complexity_features(make_explanation(cam), inputs)
    entropy = features[:, column("attention_entropy")]
    torch.testing.assert_close(entropy, torch.tensor([1.0, 0.0, 1.0]))


def test_gini_variance_gradient_known_answers() -> None:
    constant = torch.full((1, 4, 4), 1.0, dtype=torch.float64)
    one_hot = torch.zeros(1, 4, 4, dtype=torch.float64)
    one_hot[0, 0, 0] = 1.0
    heatmap = torch.cat([constant, one_hot])
    explanation = make_explanation(torch.rand(2, 2, 2, dtype=torch.float64), heatmap=heatmap)
    features = complexity_features(explanation, torch.rand(2, 3, 4, 4, dtype=torch.float64))
    torch.testing.assert_close(
        features[:, column("saliency_sparsity")], torch.tensor([0.0, 1 - 1 / 16])
    )
    assert features[0, column("gradient_magnitude")] == 0
    assert features[0, column("feature_variance")] == 0
    # one-hot in a corner: one |dx| and one |dy| of 1 among 12 each
    torch.testing.assert_close(features[1, column("gradient_magnitude")], torch.tensor(1 / 12))
    torch.testing.assert_close(
        features[1, column("feature_variance")], torch.tensor(1 / 16 - 1 / 256)
    )


def test_constant_image_has_zero_spatial_complexity() -> None:
    inputs = torch.full((2, 3, 10, 10), 0.3, dtype=torch.float64)
    inputs[1] = -2.0
    features = complexity_features(make_explanation(torch.rand(2, 3, 3)), inputs)
    assert torch.equal(features[:, column("spatial_complexity")], torch.zeros(2))


def test_equal_top_two_logits_give_zero_margin() -> None:
    logits = torch.tensor([[2.0, 2.0, -1.0], [0.0, 5.0, 5.0]], dtype=torch.float64)
    explanation = make_explanation(torch.rand(2, 3, 3), logits=logits)
    features = complexity_features(explanation, torch.rand(2, 3, 8, 8))
    assert torch.equal(features[:, column("confidence_margin")], torch.zeros(2))


def test_activation_sparsity_known_answers() -> None:
    positive = torch.rand(2, 4, 3, 3, dtype=torch.float64) + 0.1
    half = positive.clone()
    half[1, :2] = 0  # half of the channels inactive
    explanation = make_explanation(torch.rand(2, 3, 3))
    inputs = torch.rand(2, 3, 8, 8)
    features = complexity_features(explanation, inputs, positive)
    assert torch.equal(features[:, column("activation_sparsity")], torch.zeros(2))
    features = complexity_features(explanation, inputs, half)
    torch.testing.assert_close(features[:, column("activation_sparsity")], torch.tensor([0, 0.5]))
    missing = complexity_features(explanation, inputs)
    assert torch.isnan(missing[:, column("activation_sparsity")]).all()
    assert torch.isfinite(missing[:, :-1]).all()


def test_names() -> None:
    assert FEATURE_NAMES == (
        "attention_entropy",
        "saliency_sparsity",
        "gradient_magnitude",
        "feature_variance",
        "spatial_complexity",
        "confidence_margin",
        "activation_sparsity",
    )


# -- with a probe ------------------------------------------------------------------------------


@pytest.mark.parametrize(("factory", "path"), [(tiny_cnn, "forward"), (tiny_vgg, "autograd")])
def test_probe_features_one_pass_and_unchanged(factory, path, state_guard) -> None:
    model = factory()
    model.train()  # eval mode must be entered and left again
    check = state_guard(model)
    inputs = torch.rand(
        3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    calls = {"n": 0}
    original_forward = model.forward

    features, explanation = probe_features(model, inputs)
    check()
    assert features.shape == (3, 7)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert explanation.path == path

    # Same explanation as plain GradCAM, and the activations are the CAM layer's output.
    reference = GradCAM(model).explain(inputs)
    torch.testing.assert_close(explanation.cam, reference.cam)
    layer = model.get_submodule(explanation.layer)
    kept = {}
    handle = layer.register_forward_hook(lambda m, a, out: kept.setdefault("A", out.clone()))
    try:
        with torch.no_grad():
            model.eval()
            model(inputs)
            model.train()
    finally:
        handle.remove()
    expected = reference_features(explanation, inputs, kept["A"])
    np.testing.assert_allclose(features.double().numpy(), expected, rtol=1e-5, atol=1e-6)

    # One forward pass per extract call.
    extractor = FeatureExtractor(model)
    extractor.extract(inputs)  # first call may verify the forward path

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original_forward(*args, **kwargs)

    model.forward = counting  # type: ignore[method-assign]
    try:
        again, _ = extractor(inputs)
    finally:
        del model.forward
    assert calls["n"] == 1
    torch.testing.assert_close(again, features)
    check()


def test_probe_features_leaves_model_unchanged_on_error(state_guard) -> None:
    model = tiny_cnn()
    check = state_guard(model)
    with pytest.raises(InputError):
        probe_features(model, torch.full((1, 3, 16, 16), float("nan"), dtype=torch.float64))
    check()


# -- bad input ---------------------------------------------------------------------------------


def test_bad_inputs() -> None:
    explanation = make_explanation(torch.rand(2, 3, 3))
    with pytest.raises(TypeError, match="explanation"):
        complexity_features("not an explanation", torch.rand(2, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="inputs"):
        complexity_features(explanation, torch.rand(3, 8, 8))
    bad = torch.rand(2, 3, 8, 8)
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        complexity_features(explanation, bad)
    with pytest.raises(InputError, match=r"explanation\.heatmap.*batch size 2.*inputs.*3"):
        complexity_features(explanation, torch.rand(3, 3, 8, 8))
    with pytest.raises(InputError, match=r"activations.*batch size 1"):
        complexity_features(explanation, torch.rand(2, 3, 8, 8), torch.rand(1, 4, 3, 3))
    # Heatmap and image sizes may differ: features are computed separately.
    features = complexity_features(explanation, torch.rand(2, 3, 20, 12))
    assert features.shape == (2, 7)
