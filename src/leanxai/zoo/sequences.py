"""Reference recurrent classifiers for the sets with known saliency
(:mod:`leanxai.data.sequences`), trained here in seconds and cached.

:func:`load_saliency_data` gives the ``(train, test)`` sets; :func:`load_saliency_model` an
LSTM, GRU or BiLSTM :class:`~leanxai.zoo.recurrent.RecurrentClassifier` trained on the training
part, cached as safetensors by :func:`~leanxai.zoo.train.load_cached`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from torch import nn

from leanxai.data.sequences import SaliencySeries, make_box_series, make_switching_series
from leanxai.zoo.recurrent import RecurrentClassifier, accuracy, train_recurrent
from leanxai.zoo.train import deterministic_training, load_cached

__all__ = ["SALIENCY_RECIPE_VERSION", "SALIENCY_SETS", "load_saliency_data", "load_saliency_model"]

SALIENCY_RECIPE_VERSION = "v1"
"""Version of :func:`load_saliency_model`'s recipe; bumped whenever the weights change."""

SALIENCY_SETS: tuple[str, ...] = ("box", "sine", "switching")

_TRAIN, _TEST = 600, 200
_RECIPE: dict[str, Any] = {"epochs": 40, "lr": 1e-2, "hidden": 32}


def load_saliency_data(name: str) -> tuple[SaliencySeries, SaliencySeries]:
    """``(train, test)``: 600 sequences with seed 0 and 200 with seed 1 of ``name``."""
    if name in ("box", "sine"):
        return (
            make_box_series(_TRAIN, 0, pattern=name),
            make_box_series(_TEST, 1, pattern=name),
        )
    if name == "switching":
        return make_switching_series(_TRAIN, 0), make_switching_series(_TEST, 1)
    raise ValueError(f"name must be one of {SALIENCY_SETS}, got {name!r}")


def load_saliency_model(
    name: str,
    kind: str = "lstm",
    seed: int = 0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
) -> tuple[RecurrentClassifier, dict[str, Any]]:
    """A :class:`RecurrentClassifier` (32 units, ``readout="last"``) trained on ``name``.

    Returns the model in eval mode and its metadata (``test_accuracy``, ``training_seconds``
    and the recipe), cached as ``saliency-<name>-<kind>-s<seed>-<version>.safetensors``.
    """
    train_data, test_data = load_saliency_data(name)
    features = int(train_data.inputs.shape[2])

    def build() -> RecurrentClassifier:
        return RecurrentClassifier(features, 2, _RECIPE["hidden"], kind)

    def train() -> tuple[nn.Module, dict[str, Any]]:
        start = time.perf_counter()
        with deterministic_training():
            model = train_recurrent(
                train_data.inputs, train_data.labels, kind, seed, n_classes=2, **_RECIPE
            )
        seconds = time.perf_counter() - start
        score = accuracy(model, test_data.inputs, test_data.labels)
        return model, {
            "dataset": name,
            "kind": kind,
            "seed": seed,
            "test_accuracy": score,
            "training_seconds": round(seconds, 2),
            **_RECIPE,
        }

    model, metadata = load_cached(
        f"saliency-{name}-{kind}-s{seed}",
        build,
        train,
        SALIENCY_RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )
    return model.eval(), metadata
