"""SHAP values of routing decisions add up; the charts are PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from leanxai.route.router import TierRouter
from leanxai.route.why import expected_tier, explain_decisions, radar_chart, shap_bar_chart


def fitted() -> tuple[TierRouter, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 7))
    y = np.digitize(X[:, 0], [-0.7, 0.0, 0.7]).astype(np.int64)
    router = TierRouter(estimator=LogisticRegression(max_iter=500)).fit(X, y)
    return router, X, y


def test_shap_values_add_up_to_the_router_output():
    router, X, _ = fitted()
    result = explain_decisions(router, X[:12], X)
    assert result.values.shape == (12, 7)
    np.testing.assert_allclose(
        result.base_value + result.values.sum(axis=1), expected_tier(router, X[:12]), atol=1e-8
    )
    # Feature 0 decides the tier: a hard input's SHAP pushes toward a heavier tier.
    hard = int(np.argmax(X[:12, 0]))
    easy = int(np.argmin(X[:12, 0]))
    assert result.values[hard, 0] > 0 > result.values[easy, 0]
    assert np.abs(result.values[:, 0]).mean() > np.abs(result.values[:, 1:]).mean()


def test_expected_tier_is_in_range():
    router, X, _ = fitted()
    values = expected_tier(router, X)
    assert values.min() >= 0 and values.max() <= 3


def test_bad_background():
    router, X, _ = fitted()
    with pytest.raises(ValueError, match="background"):
        explain_decisions(router, X[:2], X[:, :5])


def test_charts_are_png():
    router, X, y = fitted()
    result = explain_decisions(router, X[:1], X)
    assert shap_bar_chart(result.values[0], title="input 0")[:4] == b"\x89PNG"
    profiles = np.stack([np.median(X[y == t], axis=0) for t in range(4)])
    profiles[1] = np.nan  # a tier with no training input is skipped
    low, high = np.percentile(X, 5, axis=0), np.percentile(X, 95, axis=0)
    assert radar_chart(X[0], profiles, low, high)[:4] == b"\x89PNG"
