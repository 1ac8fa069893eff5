"""Routing policies: the simulated accuracy and FLOPs equal what the real pipelines spend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from leanxai.route import TierRouter
from leanxai.route.evaluation import (
    TierOutputs,
    choose_operating_point,
    collect_outputs,
    evaluate_policies,
    matched_accuracy,
    measure_latency,
    pipelines,
    simulate,
)
from leanxai.route.routed import ConfidenceCascade, RoutedClassifier
from leanxai.zoo.cnn import SmallCNN


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    tiers = [SmallCNN(num_classes=3, width=w).eval() for w in (2, 4, 8)]
    x = torch.rand(40, 3, 32, 32)
    y = torch.randint(0, 3, (40,))
    outputs = collect_outputs(tiers, x, y, batch_size=16)
    return tiers, x, y, outputs


def fitted_router(outputs):
    labels = np.arange(len(outputs)) % 3  # every tier present; the test is about bookkeeping
    return TierRouter(LogisticRegression(), n_tiers=3, tau=0.5).fit(outputs.features, labels)


def test_outputs_are_each_tier_on_each_input(setup):
    tiers, x, _, outputs = setup
    assert outputs.probabilities.shape == (40, 3, 3)
    with torch.no_grad():
        expected = torch.softmax(tiers[1](x), 1).numpy()
    np.testing.assert_allclose(outputs.probabilities[:, 1], expected, rtol=1e-4, atol=1e-6)
    assert outputs.features.shape == (40, 7)
    assert (np.diff(outputs.tier_flops) > 0).all()
    # SmallCNN is on Grad-CAM's forward path: the explanation costs the probe's forward pass
    # and the CAM's weighted sum, no backward.
    assert outputs.tier_flops[0] < outputs.probe_flops < 1.01 * outputs.tier_flops[0]


@pytest.mark.parametrize("escalate", [None, 0.4, 0.6])
def test_simulated_router_equals_the_routed_classifier(setup, escalate):
    tiers, x, _, outputs = setup
    router = fitted_router(outputs)
    real = RoutedClassifier(tiers[0], tiers[1:], router, escalate=escalate).predict(x)
    start = router.route(outputs.features)
    np.testing.assert_array_equal(real.routed, start)
    prediction, tier, flops = simulate(outputs, start, escalate=escalate)
    np.testing.assert_array_equal(real.prediction, prediction)
    np.testing.assert_array_equal(real.tier, tier)
    np.testing.assert_array_equal(real.flops, flops)


@pytest.mark.parametrize("threshold", [0.0, 0.4, 0.6, 1.0])
def test_simulated_cascade_equals_the_cascade(setup, threshold):
    tiers, x, _, outputs = setup
    real = ConfidenceCascade(tiers, threshold).predict(x)
    prediction, tier, flops = simulate(
        outputs, np.zeros(len(x), dtype=np.int64), escalate=threshold, probe=False
    )
    np.testing.assert_array_equal(real.prediction, prediction)
    np.testing.assert_array_equal(real.tier, tier)
    np.testing.assert_array_equal(real.flops, flops)
    if threshold == 0.0:
        assert (tier == 0).all() and (flops == outputs.tier_flops[0]).all()
    if threshold == 1.0:  # every tier ran: each paid once
        assert (flops == outputs.tier_flops.sum()).all()


def test_simulate_literal_escalation():
    # Two tiers, one input: tier 0 unsure (0.5 < 0.6), tier 1 sure.
    probabilities = np.array([[[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]])
    outputs = TierOutputs(probabilities, np.array([1]), np.zeros((1, 7)), np.array([10, 100]), 12)
    prediction, tier, flops = simulate(outputs, np.array([0]), escalate=0.6)
    assert (prediction, tier, flops) == ([1], [1], [12 + 100])
    prediction, tier, flops = simulate(outputs, np.array([0]), escalate=0.5)
    assert (prediction, tier, flops) == ([0], [0], [12])
    prediction, tier, flops = simulate(outputs, np.array([0]), escalate=0.6, probe=False)
    assert flops.tolist() == [10 + 100]


def test_policies_table(setup):
    _, _, _, outputs = setup
    router = fitted_router(outputs)
    results = evaluate_policies(router, outputs, tau=0.5, escalate=0.5)
    by_name = {r.name: r for r in results}
    heavy = by_name["always-2"]
    assert heavy.relative_flops == pytest.approx(1.0)
    assert heavy.accuracy == pytest.approx(outputs.correct[:, 2].mean())
    oracle = by_name["oracle"]
    assert oracle.accuracy == pytest.approx(outputs.correct.any(1).mean())
    assert oracle.routing_accuracy == 1.0
    assert {"router", "router+escalate", "random (router's mix)"} <= set(by_name)
    assert by_name["random (router's mix)"].tier_mix == pytest.approx(
        by_name["router"].tier_mix, abs=0.3
    )
    cheapest = matched_accuracy(results, "cascade", 0.0)
    assert cheapest is not None and cheapest.parameter == 0.0
    assert matched_accuracy(results, "cascade", 1.01) is None


def test_operating_point_is_chosen_on_training_data_only(setup):
    _, _, _, outputs = setup
    router = TierRouter(LogisticRegression(), n_tiers=3)
    tau, escalate = choose_operating_point(router, outputs, folds=2)
    assert 0.0 <= tau <= 1.0
    assert escalate is None or 0.0 <= escalate <= 1.0


def test_latency_of_real_pipelines(setup):
    tiers, x, _, outputs = setup
    runs = pipelines(tiers, fitted_router(outputs), tau=0.5, escalate=0.5, cascade_threshold=0.5)
    assert set(runs) == {"always-0", "always-1", "always-2", "router", "router+escalate", "cascade"}
    times = measure_latency(runs, x, batch_sizes=(1, 8), max_items=8, rounds=1)
    assert all(t[1] > 0 and t[8] > 0 for t in times.values())
