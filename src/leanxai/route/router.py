"""The tier router: from an input's complexity features to the smallest tier that suffices.

Labels come from real model behaviour: for a training input, the smallest tier whose prediction is
correct (HEAVY when none is). :class:`TierRouter` learns them with scikit-learn and answers, for
each tier ``t``, the probability that ``t`` suffices, ``P(label <= t)``. Its cost-aware operating
point picks the smallest tier whose probability of sufficing is at least ``tau``: a higher ``tau``
buys accuracy with FLOPs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from leanxai.core import validate
from leanxai.core.errors import InputError

__all__ = [
    "TIERS",
    "TierRouter",
    "load_router",
    "read_router_file",
    "save_router",
    "smallest_correct_tier",
]

TIERS: tuple[str, ...] = ("TINY", "LIGHT", "MEDIUM", "HEAVY")
"""Tier names, smallest first; tier ``i`` is label ``i``."""


def smallest_correct_tier(correct: np.ndarray) -> np.ndarray:
    """Label per input: the first tier whose prediction is correct, the last tier when none is.

    Parameters
    ----------
    correct
        ``(N, T)`` booleans, tier ``t`` right on input ``n``, tiers smallest first.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64 in ``[0, T)``.
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[1] < 1:
        raise InputError(f"correct must have shape (N, T), got {correct.shape}")
    tiers = correct.shape[1]
    return np.where(correct.any(axis=1), correct.argmax(axis=1), tiers - 1).astype(np.int64)


class TierRouter(ClassifierMixin, BaseEstimator):
    """Predict the smallest sufficient tier from the seven complexity features.

    Follows the scikit-learn estimator contract: parameters only in ``__init__``, ``fit``
    returns ``self``, fitted attributes end in ``_``; works with :func:`sklearn.base.clone`.

    Parameters
    ----------
    estimator
        The classifier that learns the labels; ``None`` for a multinomial logistic regression on
        standardised features (scikit-learn's ``StandardScaler`` and ``LogisticRegression(C=1)``).
        A gradient-boosted tree ensemble was the first default; on the router split of corrupted
        MNIST its probabilities were nearly all 0 or 1 and its ``tau`` sweep jumped from 0.88 to
        always-HEAVY, while the logistic regression's sweep is smooth and reaches a given
        accuracy with fewer FLOPs (``benchmarks/routing.py``). Any estimator with
        ``predict_proba`` works.
    tau
        The operating point: route to the smallest tier whose probability of sufficing is at
        least ``tau``, in ``[0, 1]``. ``tau = 0`` always picks the smallest tier, ``tau = 1``
        the largest unless a smaller one is certain.
    n_tiers
        Number of tiers (4: TINY, LIGHT, MEDIUM, HEAVY).
    random_state
        Seed of the default estimator.

    Attributes
    ----------
    estimator_
        The fitted classifier.
    classes_
        ``arange(n_tiers)``: every tier, also those absent from the training labels.
    n_features_in_
        Number of features seen in ``fit``.
    """

    def __init__(
        self,
        estimator: Any = None,
        tau: float = 0.9,
        n_tiers: int = len(TIERS),
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.tau = tau
        self.n_tiers = n_tiers
        self.random_state = random_state

    def _default_estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=1.0, max_iter=2000, random_state=self.random_state),
        )

    def fit(self, X: Any, y: Any) -> TierRouter:
        """Learn tier labels ``y`` (``(N,)`` ints in ``[0, n_tiers)``) from features ``X``."""
        validate.fraction("tau", self.tau)
        if validate.positive_int("n_tiers", self.n_tiers) < 2:
            raise InputError(f"n_tiers must be an int >= 2, got {self.n_tiers!r}")
        features = self._features(X, fitting=True)
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(features):
            raise InputError(
                f"y must have one label per row of X ({len(features)}), got shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"y must be integer tier labels, got dtype {labels.dtype}")
        if labels.min() < 0 or labels.max() >= self.n_tiers:
            raise InputError(f"tier labels must be in [0, {self.n_tiers}), got {labels.min()}..")
        if len(np.unique(labels)) < 2:
            raise InputError("y holds one tier only; the router needs at least two to learn")
        estimator = self._default_estimator() if self.estimator is None else clone(self.estimator)
        self.estimator_ = estimator.fit(features, labels)
        self.classes_ = np.arange(self.n_tiers)
        return self

    def _features(self, X: Any, fitting: bool = False) -> np.ndarray:
        features = np.asarray(X, dtype=np.float64)
        if features.ndim != 2:
            raise InputError(f"X must have shape (N, n_features), got {features.shape}")
        if not np.isfinite(features).all():
            raise InputError("X contains NaN or infinite values")
        if fitting:
            self.n_features_in_ = features.shape[1]
        elif features.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {features.shape[1]} features, the router was fitted on "
                f"{self.n_features_in_}"
            )
        return features

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(N, n_tiers)`` probability that each tier is the smallest sufficient one."""
        check_is_fitted(self, "estimator_")
        raw = self.estimator_.predict_proba(self._features(X))
        full = np.zeros((len(raw), self.n_tiers))
        full[:, np.asarray(self.estimator_.classes_, dtype=np.int64)] = raw
        return full

    def sufficiency(self, X: Any) -> np.ndarray:
        """``(N, n_tiers)`` probability that each tier suffices: ``P(label <= t)``,
        non-decreasing in ``t``, 1 for the last tier."""
        cumulative = np.cumsum(self.predict_proba(X), axis=1)
        cumulative[:, -1] = 1.0
        return np.clip(cumulative, 0.0, 1.0)

    def route(self, X: Any, tau: float | None = None) -> np.ndarray:
        """``(N,)`` the smallest tier whose probability of sufficing is at least ``tau``
        (default: the router's ``tau``)."""
        threshold = validate.fraction("tau", self.tau if tau is None else tau)
        enough = self.sufficiency(X) >= threshold - 1e-12
        return enough.argmax(axis=1).astype(np.int64)

    def predict(self, X: Any) -> np.ndarray:
        """The routed tier at the router's ``tau`` (see :meth:`route`)."""
        return self.route(X)


ROUTER_FORMAT = "leanxai-router"
ROUTER_FORMAT_VERSION = 1


def save_router(
    router: TierRouter,
    path: str | os.PathLike[str],
    X: Any,
    y: Any,
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a router as the data it was fitted on, never as a pickle.

    The file (safetensors) holds the training features and tier labels and, in its header, the
    router's parameters and ``metadata`` (JSON). :func:`load_router` refits the router from
    them, which with the default estimator and a fixed ``random_state`` gives the same router.

    Parameters
    ----------
    router
        A :class:`TierRouter` with the default estimator (``estimator=None``).
    path
        Output file; an existing one is replaced only with ``overwrite``.
    X, y
        The features and labels it was (or will be) fitted on.
    metadata
        JSON-serialisable extras (e.g. the operating point's ``escalate``, the data set).
    overwrite
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from safetensors.numpy import save as save_safetensors

    from leanxai.io import atomic_write_bytes, check_writable

    if router.estimator is not None:
        raise ValueError(
            "only a router with the default estimator can be saved (it is refitted on load); "
            f"got estimator={router.estimator!r}"
        )
    target = Path(path)
    check_writable([target], overwrite)
    features = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    labels = np.ascontiguousarray(np.asarray(y, dtype=np.int64))
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"X must be (N, F) and y (N,), got {features.shape} and {labels.shape}")
    header = {
        "format": ROUTER_FORMAT,
        "version": str(ROUTER_FORMAT_VERSION),
        "params": json.dumps(
            {"tau": router.tau, "n_tiers": router.n_tiers, "random_state": router.random_state}
        ),
        "metadata": json.dumps(metadata or {}),
    }
    data = save_safetensors({"features": features, "labels": labels}, metadata=header)
    return atomic_write_bytes(target, data, overwrite=overwrite)


def read_router_file(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
    """The contents of a file of :func:`save_router`: ``(features, labels, params, metadata)``.

    Raises
    ------
    InputError
        (a ``ValueError``) If the file is not a router file, is damaged, or comes from a newer
        format version.
    FileNotFoundError
        If there is no file at ``path``.
    """
    from safetensors import SafetensorError, safe_open

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no router file at {source}")
    try:
        with safe_open(str(source), framework="numpy") as handle:
            header = handle.metadata() or {}
            if header.get("format") != ROUTER_FORMAT:
                raise InputError(f"{source} is not a leanxai router file")
            version = int(header.get("version", "0"))
            if version > ROUTER_FORMAT_VERSION:
                raise InputError(
                    f"{source} was written by a newer leanxai (router format {version}, this "
                    f"version reads up to {ROUTER_FORMAT_VERSION})"
                )
            features = handle.get_tensor("features")
            labels = handle.get_tensor("labels")
            params = json.loads(header["params"])
            metadata = json.loads(header.get("metadata", "{}"))
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        raise InputError(f"{source} is not a readable router file: {error}") from error
    return features, labels, params, metadata


def load_router(path: str | os.PathLike[str]) -> tuple[TierRouter, dict[str, Any]]:
    """Read a file of :func:`save_router` and refit the router; returns ``(router, metadata)``.

    Raises
    ------
    InputError
        (a ``ValueError``) If the file is not a router file, is damaged, or comes from a newer
        format version.
    FileNotFoundError
        If there is no file at ``path``.
    """
    features, labels, params, metadata = read_router_file(path)
    router = TierRouter(
        tau=float(params["tau"]),
        n_tiers=int(params["n_tiers"]),
        random_state=params["random_state"],
    )
    return router.fit(features, labels), metadata
