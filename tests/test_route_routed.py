"""RoutedClassifier: the chosen tier's prediction, every FLOP counted, failures reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leanxai.core.errors import InputError, InputTypeError, LeanXAIError
from leanxai.route import FeatureExtractor, TierRouter
from leanxai.route.routed import ConfidenceCascade, RoutedClassifier, count_flops
from leanxai.zoo.cnn import SmallCNN


class FixedRouter(TierRouter):
    """Routes input i to tier plan[i]; sufficiency is 1 from that tier on."""

    def __init__(self, plan=None, n_tiers=3, tau=0.5):
        super().__init__(n_tiers=n_tiers, tau=tau)
        self.plan = plan

    def __sklearn_is_fitted__(self):
        return True  # it routes by its plan: nothing to fit (RoutedClassifier checks fitting)

    def sufficiency(self, X):
        out = np.zeros((len(X), self.n_tiers))
        for i, t in enumerate(self.plan[: len(X)]):
            out[i, t:] = 1.0
        return out


class Broken(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.linear = nn.Linear(3, classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:  # the one-time shape check passes, inference fails
            raise RuntimeError("out of memory (simulated)")
        return self.linear(x.mean(dim=(2, 3)))


def models(classes=(4, 4, 4)):
    torch.manual_seed(0)
    probe = SmallCNN(num_classes=classes[0], width=4).eval()
    light = SmallCNN(num_classes=classes[1], width=8).eval()
    heavy = SmallCNN(num_classes=classes[2], width=16).eval()
    return probe, [light, heavy]


def test_routes_predicts_and_counts_every_flop(state_guard):
    probe, tiers = models()
    guards = [state_guard(m) for m in (probe, *tiers)]
    x = torch.rand(5, 3, 32, 32)
    plan = [0, 1, 2, 2, 0]
    result = RoutedClassifier(probe, tiers, FixedRouter(plan)).predict(x)
    assert result.tier.tolist() == plan
    with torch.no_grad():
        assert result.prediction[0] == probe(x[:1]).argmax(1).item()
        assert result.prediction[1] == tiers[0](x[1:2]).argmax(1).item()
        assert result.prediction[2] == tiers[1](x[2:3]).argmax(1).item()
    extractor = FeatureExtractor(probe)
    extractor.extract(x[:1])  # the one-time check of Grad-CAM's forward path is not per input
    with FlopCounterMode(display=False) as counter:
        extractor.extract(x[:1])
    probe_flops = counter.get_total_flops()
    # On the forward path the probe's explanation costs one forward pass, plus the head check.
    forward = count_flops(probe, x[:1])
    assert forward <= probe_flops <= 1.01 * forward
    expected = [
        probe_flops,
        probe_flops + count_flops(tiers[0], x[:1]),
        probe_flops + count_flops(tiers[1], x[:1]),
        probe_flops + count_flops(tiers[1], x[:1]),
        probe_flops,
    ]
    assert result.flops.tolist() == expected
    assert expected[2] > expected[1] > expected[0]
    assert result.confidence.tolist() == [1.0] * 5
    assert bool((result.latency_s > 0).all()) and result.features.shape == (5, 7)
    assert result.errors == {}
    for check in guards:
        check()


def test_failed_tier_is_reported_not_replaced():
    probe, tiers = models()
    broken = Broken()
    x = torch.rand(3, 3, 32, 32)
    result = RoutedClassifier(probe, [tiers[0], broken], FixedRouter([0, 2, 1])).predict(x)
    assert result.prediction[1] == -1
    assert "out of memory" in result.errors[1]
    assert set(result.errors) == {1}
    assert result.prediction[0] >= 0 and result.prediction[2] >= 0


def test_tiers_with_other_class_counts_are_refused():
    probe, tiers = models(classes=(4, 4, 10))
    with pytest.raises(InputError, match="returns 10 classes, the probe 4"):
        RoutedClassifier(probe, tiers, FixedRouter([0, 0])).predict(torch.rand(2, 3, 32, 32))


def test_router_with_another_number_of_tiers_is_refused():
    probe, tiers = models()
    with pytest.raises(InputError, match="tiers"):
        RoutedClassifier(probe, tiers, FixedRouter([0], n_tiers=4)).predict(
            torch.rand(1, 3, 32, 32)
        )


def test_inputs_the_probe_cannot_take():
    probe, tiers = models()
    with pytest.raises(InputError):
        RoutedClassifier(probe, tiers, FixedRouter([0])).predict(torch.rand(3, 32, 32))


def fitted(n_tiers=3):
    rng = np.random.default_rng(0)
    return TierRouter(n_tiers=n_tiers).fit(rng.normal(size=(30, 7)), np.arange(30) % n_tiers)


@pytest.mark.parametrize(
    "change, kind, match",
    [
        ({"probe": "resnet"}, InputTypeError, "probe must be a Module"),
        ({"tiers": None}, InputTypeError, "tiers must be a sequence"),
        ({"tiers": "light"}, InputTypeError, "tiers must be a sequence"),
        ({"tiers": "module"}, InputTypeError, "tiers must be a sequence"),
        ({"tiers": []}, InputError, "at least one model"),
        ({"tiers": "a string inside"}, InputTypeError, r"tiers\[1\] must be a Module"),
        ({"router": "not a router"}, InputTypeError, "router must be a TierRouter"),
        ({"router": TierRouter(n_tiers=3)}, InputError, "router is not fitted"),
        ({"router": "four tiers"}, InputError, "knows 4 tiers but 3"),
        ({"tau": 1.5}, InputError, r"tau must be in \[0, 1\]"),
        ({"tau": "high"}, InputTypeError, "tau must be a real number"),
        ({"escalate": 2.0}, InputError, r"escalate must be in \[0, 1\]"),
        ({"escalate": (0.5,)}, InputError, r"one threshold per tier but the last \(2\)"),
        ({"escalate": (0.5, float("nan"))}, InputError, r"escalate\[1\] must be finite"),
        ({"escalate": [0.5, None]}, InputError, r"escalate must be None, a number"),
    ],
)
def test_routed_classifier_checks_its_arguments_when_built(change, kind, match):
    probe, tiers = models()
    arguments = {"probe": probe, "tiers": tiers, "router": fitted(), "tau": None, "escalate": None}
    special = {
        "module": tiers[0],
        "a string inside": [tiers[0], "heavy"],
        "four tiers": fitted(n_tiers=4),
    }
    arguments.update({k: special.get(v, v) if isinstance(v, str) else v for k, v in change.items()})
    with pytest.raises(kind, match=match) as caught:
        RoutedClassifier(**arguments)
    assert isinstance(caught.value, LeanXAIError)


def test_routed_classifier_accepts_what_it_documents():
    probe, tiers = models()
    router = fitted()
    for escalate in (0, 1, np.float32(0.5), np.array(0.5), (0.2, 0.9), np.array([0.2, 0.9])):
        RoutedClassifier(probe, tiers, router, escalate=escalate)
    RoutedClassifier(probe, nn.ModuleList(tiers), router, tau=np.float64(0.3))
    RoutedClassifier(probe, tuple(tiers), router, tau=0, escalate=None)


@pytest.mark.parametrize(
    "tiers, threshold, kind, match",
    [
        ([], 0.5, InputError, "at least one model"),
        (None, 0.5, InputTypeError, "tiers must be a sequence"),
        ("models", None, InputError, "threshold must be a number"),
        ("models", 1.5, InputError, r"threshold must be in \[0, 1\]"),
        ("models", (0.5,), InputError, r"one threshold per tier but the last \(2\)"),
        ("models", "0.5", InputError, "threshold must be None, a number"),
    ],
)
def test_confidence_cascade_checks_its_arguments_when_built(tiers, threshold, kind, match):
    probe, larger = models()
    tiers = [probe, *larger] if tiers == "models" else tiers
    with pytest.raises(kind, match=match) as caught:
        ConfidenceCascade(tiers, threshold)
    assert isinstance(caught.value, LeanXAIError)


def test_cascade_stages_return_their_result_and_leave_the_models_alone(state_guard):
    probe, larger = models()
    tiers = [probe, *larger]
    guards = [state_guard(m) for m in tiers]
    x = torch.rand(4, 3, 32, 32)
    result = ConfidenceCascade(tiers, 1.0).predict(x)  # 1: every input runs every tier
    assert result.tier.tolist() == [2] * 4 and result.routed.tolist() == [0] * 4
    assert result.flops.tolist() == [sum(count_flops(m, x[:1]) for m in tiers)] * 4
    with torch.no_grad():
        assert result.prediction.tolist() == larger[1](x).argmax(1).tolist()
    assert result.errors == {} and bool((result.latency_s > 0).all())
    for check in guards:
        check()
