"""TierRouter: the scikit-learn contract, sufficiency probabilities and the tau operating point."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from leanxai.route.router import TierRouter, smallest_correct_tier


def fast(**kwargs: object) -> TierRouter:
    return TierRouter(estimator=LogisticRegression(max_iter=500), **kwargs)  # type: ignore[arg-type]


def toy(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Feature 0 decides the tier: the harder the input, the larger the tier."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    y = np.digitize(X[:, 0], [-0.7, 0.0, 0.7]).astype(np.int64)
    return X, y


def test_smallest_correct_tier():
    correct = np.array(
        [[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=bool
    )
    assert smallest_correct_tier(correct).tolist() == [0, 1, 3, 3, 2]


def test_fit_predict_and_sufficiency():
    X, y = toy()
    router = TierRouter().fit(X, y)
    assert router.fit(X, y) is router
    assert router.classes_.tolist() == [0, 1, 2, 3] and router.n_features_in_ == 7
    sufficient = router.sufficiency(X)
    assert sufficient.shape == (len(X), 4)
    assert np.all(np.diff(sufficient, axis=1) >= -1e-12) and np.all(sufficient[:, -1] == 1)
    Xt, yt = toy(seed=1)
    assert router.score(Xt, yt) > 0.5  # routing accuracy against the labels, above chance
    # A higher tau never routes to a smaller tier.
    low, high = router.route(Xt, tau=0.3), router.route(Xt, tau=0.95)
    assert np.all(high >= low)
    assert np.all(router.route(Xt, tau=0.0) == 0)
    assert np.all(router.predict(Xt) == router.route(Xt, tau=router.tau))


def test_route_is_smallest_tier_reaching_tau():
    X, y = toy()
    router = TierRouter(estimator=LogisticRegression(max_iter=500)).fit(X, y)
    sufficient = router.sufficiency(X[:50])
    routed = router.route(X[:50], tau=0.8)
    for row, tier in zip(sufficient, routed, strict=True):
        first = next(t for t in range(4) if row[t] >= 0.8)
        assert tier == first


def test_clone_and_refit():
    X, y = toy()
    router = fast(tau=0.7, random_state=3).fit(X, y)
    twin = clone(router)
    mine, theirs = router.get_params(deep=False), twin.get_params(deep=False)
    assert mine.pop("estimator").get_params() == theirs.pop("estimator").get_params()
    assert mine == theirs
    assert not hasattr(twin, "estimator_")
    twin.fit(X, y)
    np.testing.assert_allclose(twin.predict_proba(X), router.predict_proba(X))
    X2, y2 = toy(seed=5)
    router.fit(X2, y2)  # refits from scratch
    assert router.n_features_in_ == 7


def test_missing_tier_in_training_still_has_four_columns():
    X, y = toy()
    y = np.where(y == 1, 2, y)  # no LIGHT labels
    router = fast().fit(X, y)
    proba = router.predict_proba(X)
    assert proba.shape == (len(X), 4) and np.all(proba[:, 1] == 0)


def test_bad_input():
    X, y = toy()
    with pytest.raises(NotFittedError):
        TierRouter().route(X)
    with pytest.raises(ValueError, match="tau"):
        TierRouter(tau=1.5).fit(X, y)
    router = fast().fit(X, y)
    with pytest.raises(ValueError, match="tau"):
        router.route(X, tau=-0.1)
    with pytest.raises(ValueError, match="features"):
        router.route(X[:, :5])
    with pytest.raises(ValueError, match="tier labels"):
        fast().fit(X, y + 1)
    with pytest.raises(ValueError, match="NaN"):
        router.route(np.full((2, 7), np.nan))
    with pytest.raises(ValueError, match="one tier"):
        fast().fit(X, np.zeros(len(X), dtype=np.int64))


def test_bad_input_raises_the_librarys_errors(tmp_path):
    from leanxai.core.errors import InputError, InputTypeError, LeanXAIError
    from leanxai.route.router import read_router_file

    X, y = toy()
    router = fast().fit(X, y)
    not_a_router = tmp_path / "other.safetensors"
    not_a_router.write_bytes(b"not safetensors at all")
    calls = [
        (InputError, lambda: TierRouter(tau=1.5).fit(X, y)),
        (InputTypeError, lambda: TierRouter(tau="high").fit(X, y)),
        (InputError, lambda: TierRouter(n_tiers=1).fit(X, y)),
        (InputError, lambda: TierRouter(n_tiers=2.5).fit(X, y)),
        (InputError, lambda: fast().fit(X, y[:-1])),
        (InputError, lambda: fast().fit(X, y.astype(float))),
        (InputError, lambda: fast().fit(X[0], y)),
        (InputError, lambda: router.route(X, tau=-0.1)),
        (InputError, lambda: router.route(X[:, :5])),
        (InputError, lambda: smallest_correct_tier(np.ones(3, dtype=bool))),
        (InputError, lambda: read_router_file(not_a_router)),
    ]
    for kind, call in calls:
        with pytest.raises(kind) as caught:
            call()
        assert isinstance(caught.value, LeanXAIError)
