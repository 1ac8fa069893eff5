"""relevance_tempered on a many-class classifier calibrated on inputs that predict few classes
(issue 22): rows of classes no input targeted fall back to their magnitude, and global pruning
warns when it all but empties a layer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from leanxai.compress import (
    DEFAULT_SPARSITY,
    compress,
    plan_pruning,
    weight_relevance,
    weight_scores,
)

CLASSES = 50
PREDICTED = (3, 17, 41)


def many_class_mlp() -> nn.Sequential:
    """16 -> 128 -> 128 -> 50 classes, float64; only the classes in PREDICTED win on random
    inputs (their bias is raised), as a 1,000-class ImageNet head on a few calibration photos."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, CLASSES)
    ).double()
    with torch.no_grad():
        model[4].bias[list(PREDICTED)] += 5.0
    return model.eval()


def calibration(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _old_tempered(relevance: dict[str, torch.Tensor], model: nn.Module) -> dict:
    """The rule before issue 22, literally: every layer's median over all its live weights."""
    weights = dict(model.named_parameters())
    out = {}
    for name, value in relevance.items():
        w = weights[name].detach().double().abs().numpy()
        rho = np.where(w > 0, value.double().numpy() / np.maximum(w, 1e-300), 0.0)
        median = max(float(np.median(rho[w > 0])), np.finfo(np.float64).tiny)
        out[name] = torch.from_numpy(w * (rho / median) ** 0.5)
    return out


def _layer_sparsity(plan) -> dict[str, float]:
    return {name: 1.0 - float(mask.double().mean()) for name, mask in plan.masks.items()}


def test_the_setting_predicts_few_classes():
    model, x = many_class_mlp(), calibration()
    with torch.no_grad():
        predicted = set(model(x).argmax(1).tolist())
    assert predicted <= set(PREDICTED) and len(predicted) >= 2


def test_default_no_longer_empties_an_untargeted_classifier():
    model, x = many_class_mlp(), calibration()
    relevance = weight_relevance(model, x, reduce="l2")
    scores = weight_scores(model, x, criterion="relevance_tempered")
    plan = plan_pruning(scores, sparsity=DEFAULT_SPARSITY, scope="global")
    per_layer = _layer_sparsity(plan)
    assert abs(plan.achieved_sparsity - DEFAULT_SPARSITY) < 1e-3
    assert max(per_layer.values()) <= 0.6, per_layer
    # The rule before the fix pruned almost the whole classifier here (and now warns).
    with pytest.warns(UserWarning, match="almost all weights of 4.weight"):
        old = plan_pruning(
            _old_tempered(relevance, model), sparsity=DEFAULT_SPARSITY, scope="global"
        )
    assert _layer_sparsity(old)["4.weight"] > 0.9


def test_untargeted_rows_score_their_magnitude_and_leave_the_median():
    model, x = many_class_mlp(), calibration()
    with torch.no_grad():
        predicted = sorted(set(model(x).argmax(1).tolist()))
    relevance = weight_relevance(model, x, reduce="l2")
    scores = weight_scores(model, x, criterion="relevance_tempered")
    w = model[4].weight.detach().abs()
    rho = (relevance["4.weight"] / w).numpy()
    targeted = np.zeros(CLASSES, dtype=bool)
    targeted[predicted] = True
    assert (rho[~targeted] == 0).all() and (rho[targeted] > 0).any(1).all()
    median = np.median(rho[targeted])
    expected = w.numpy().copy()
    expected[targeted] *= (rho[targeted] / median) ** 0.5
    np.testing.assert_allclose(scores["4.weight"].numpy(), expected, rtol=1e-10, atol=0)
    # Hidden layers keep the rule: zero relevance there is an observation (a unit never fired).
    old = _old_tempered(relevance, model)
    for name in ("0.weight", "2.weight"):
        np.testing.assert_allclose(scores[name].numpy(), old[name].numpy(), rtol=1e-10, atol=0)


def test_scores_are_unchanged_when_every_class_is_targeted():
    model, x = many_class_mlp(), calibration()
    target = torch.arange(x.shape[0]) % CLASSES  # every class explained at least once
    relevance = weight_relevance(model, x, target, reduce="l2")
    scores = weight_scores(model, x, criterion="relevance_tempered", target=target)
    old = _old_tempered(relevance, model)
    for name, value in scores.items():
        np.testing.assert_allclose(value.numpy(), old[name].numpy(), rtol=1e-10, atol=0)


def test_a_conv_output_layer_gets_the_same_fallback():
    torch.manual_seed(0)
    model = (
        nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 12, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        model[2].bias[[2, 5]] += 5.0
    x = torch.randn(16, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        predicted = set(model(x).argmax(1).tolist())
    scores = weight_scores(model, x, criterion="relevance_tempered")
    w = model[2].weight.detach().abs()
    for unit in set(range(12)) - predicted:
        torch.testing.assert_close(scores["2.weight"][unit], w[unit])


def test_global_pruning_warns_only_when_a_layer_is_all_but_emptied():
    generator = torch.Generator().manual_seed(0)
    even = {
        "a": torch.rand(40, 8, generator=generator),
        "b": torch.rand(10, 8, generator=generator),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_pruning(even, sparsity=0.4, scope="global")
        plan_pruning({**even, "b": even["b"] * 1e-3}, sparsity=0.4, scope="layer")
    with pytest.warns(UserWarning, match=r"almost all weights of b \(100.0%\)"):
        plan_pruning({**even, "b": even["b"] * 1e-3}, sparsity=0.4, scope="global")


def test_compress_default_keeps_the_classifier():
    model, x = many_class_mlp(), calibration()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compress(model, x, finetune_steps=0, bits=None)
    assert result.plan is not None
    assert max(_layer_sparsity(result.plan).values()) <= 0.6


def test_untargeted_classifier_rows_keep_the_high_bit_width():
    from leanxai.compress import mixed_precision_plan

    model, x = many_class_mlp(), calibration()
    relevance = weight_relevance(model, x, reduce="l2")
    widths = mixed_precision_plan(relevance, None, (8, 4))
    output = list(relevance)[-1]
    rows = widths[output]
    reached = relevance[output].abs().sum(1) > 0  # the classes some input was predicted as
    assert 1 <= int(reached.sum()) <= len(PREDICTED)
    assert bool((rows[~reached] == 8).all())  # no measurement: keep precision
    targeted = rows[reached]
    # The median is over the targeted rows: half of their weights get 8 bits, half 4.
    assert 0.4 <= float((targeted == 8).double().mean()) <= 0.6
    # Hidden layers follow the paper's rule unchanged: strictly above the layer median.
    for name in list(relevance)[:-1]:
        value = relevance[name].double()
        median = float(np.median(value.numpy()))
        expected = torch.where(value > median, 8, 4).to(torch.int8)
        assert torch.equal(widths[name], expected)
