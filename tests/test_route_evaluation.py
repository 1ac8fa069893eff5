"""Routing policies: the simulated accuracy and FLOPs equal what the real pipelines spend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from leanxai.experiments.routing_evaluation import (
    TierOutputs,
    _grid,
    _pareto,
    _sweep,
    choose_cascade,
    choose_operating_point,
    collect_outputs,
    evaluate_policies,
    matched_accuracy,
    measure_latency,
    pipelines,
    simulate,
)
from leanxai.route import TierRouter
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


@pytest.mark.parametrize("escalate", [None, 0.4, 0.6, (0.3, 0.7), (0.7, 0.3)])
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


@pytest.mark.parametrize("threshold", [0.0, 0.4, 0.6, 1.0, (0.7, 0.3), (1.0, 0.0)])
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
    if threshold == (1.0, 0.0):  # every input escalates once, then stops
        assert (tier == 1).all() and (flops == outputs.tier_flops[:2].sum()).all()


def random_outputs(n=50, tiers=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, tiers, classes)) * rng.uniform(0.5, 4, (n, tiers, 1))
    probabilities = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
    flops = np.array([10, 40, 160, 640][:tiers])
    return TierOutputs(probabilities, rng.integers(0, classes, n), rng.random((n, 7)), flops, 13)


@pytest.mark.parametrize("probe", [True, False])
def test_sweep_equals_simulate_for_every_threshold(probe):
    outputs = random_outputs()
    start = np.random.default_rng(1).integers(0, 3, len(outputs))
    found = _sweep(outputs, start, probe=probe, chunk=7)
    assert [f[2] for f in found] == _grid(3)
    for accuracy, flops, thresholds in found:
        prediction, _, spent = simulate(outputs, start, escalate=thresholds, probe=probe)
        assert accuracy == pytest.approx((prediction == outputs.labels).mean())
        assert flops == pytest.approx(spent.mean())


def test_per_tier_thresholds_literal():
    # Three tiers, one input with top probabilities 0.6, 0.7 and 0.9 at tiers 0, 1, 2.
    probabilities = np.array([[[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9]]])
    outputs = TierOutputs(probabilities, np.array([1]), np.zeros((1, 7)), np.array([1, 10, 100]), 2)
    start = np.array([0])
    assert simulate(outputs, start, escalate=(0.5, 0.9))[1].tolist() == [0]  # 0.6 clears 0.5
    assert simulate(outputs, start, escalate=(0.65, 0.9))[1].tolist() == [2]  # 0.7 < 0.9
    assert simulate(outputs, start, escalate=(0.65, 0.7))[1].tolist() == [1]  # 0.7 clears 0.7
    prediction, tier, flops = simulate(outputs, start, escalate=(0.65, 0.75))
    assert (prediction.tolist(), tier.tolist(), flops.tolist()) == ([2], [2], [2 + 10 + 100])
    # Starting at tier 1, tier 0's threshold does not matter.
    assert simulate(outputs, np.array([1]), escalate=(1.0, 0.5))[2].tolist() == [2 + 10]


@pytest.mark.parametrize(
    "escalate, match",
    [
        ((0.5,), "one threshold per tier"),
        ((0.5, 0.5, 0.5), "one threshold per tier"),
        (1.5, r"\[0, 1\]"),
        ((0.5, -0.1), r"\[0, 1\]"),
        ("0.5", "number"),
        (True, "number"),
    ],
)
def test_bad_escalation_thresholds(setup, escalate, match):
    tiers, x, _, outputs = setup
    with pytest.raises(ValueError, match=match):
        simulate(outputs, np.zeros(len(outputs), dtype=np.int64), escalate=escalate)
    router = fitted_router(outputs)
    with pytest.raises(ValueError, match=match):
        RoutedClassifier(tiers[0], tiers[1:], router, escalate=escalate).predict(x[:2])
    with pytest.raises(ValueError, match=match):
        ConfidenceCascade(tiers, escalate).predict(x[:2])


def test_pareto_front():
    points = [(0.8, 10.0, (1,)), (0.7, 10.0, (2,)), (0.9, 20.0, (3,)), (0.85, 30.0, (4,))]
    assert [p[2] for p in _pareto(points)] == [(1,), (3,)]


def test_cascade_thresholds_are_the_cheapest_that_reach_the_goal():
    outputs = random_outputs(n=80, seed=3)
    start = np.zeros(len(outputs), dtype=np.int64)
    for max_drop in (0.0, 0.05, 0.2):
        chosen = choose_cascade(outputs, max_drop=max_drop)
        goal = outputs.correct[:, -1].mean() - max_drop
        prediction, _, flops = simulate(outputs, start, escalate=chosen, probe=False)
        assert (prediction == outputs.labels).mean() >= goal - 1e-12
        for thresholds in _grid(3):  # brute force: nothing cheaper qualifies
            other, _, spent = simulate(outputs, start, escalate=thresholds, probe=False)
            if (other == outputs.labels).mean() >= goal - 1e-12:
                assert spent.mean() >= flops.mean()


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
    results = evaluate_policies(router, outputs, tau=0.5, escalate=0.5, cascade=(0.6, 0.4))
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
    assert by_name["cascade"].parameter == [0.6, 0.4]
    _, _, flops = simulate(
        outputs, np.zeros(len(outputs), dtype=np.int64), escalate=(0.6, 0.4), probe=False
    )
    assert by_name["cascade"].mean_flops == pytest.approx(flops.mean())
    assert by_name["router+escalate"].parameter == [0.5, 0.5]
    cheapest = matched_accuracy(results, "cascade", 0.0)
    assert cheapest is not None and cheapest.parameter == [0.0, 0.0]
    assert matched_accuracy(results, "cascade", 1.01) is None


def test_operating_point_is_chosen_on_training_data_only(setup):
    _, _, _, outputs = setup
    router = TierRouter(LogisticRegression(), n_tiers=3)
    tau, escalate = choose_operating_point(router, outputs, folds=2)
    assert 0.0 <= tau <= 1.0
    assert escalate is None or (len(escalate) == 2 and all(0.0 <= c <= 1.0 for c in escalate))


def test_latency_of_real_pipelines(setup):
    tiers, x, _, outputs = setup
    runs = pipelines(tiers, fitted_router(outputs), tau=0.5, escalate=0.5, cascade_threshold=0.5)
    assert set(runs) == {"always-0", "always-1", "always-2", "router", "router+escalate", "cascade"}
    times = measure_latency(runs, x, batch_sizes=(1, 8), max_items=8, rounds=1)
    assert all(t[1] > 0 and t[8] > 0 for t in times.values())
