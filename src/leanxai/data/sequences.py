"""Sequence classification sets whose true ``(T, F)`` saliency is known.

- :func:`make_box_series`: the synthetic benchmark of Ismail et al. (NeurIPS 2020, "Benchmarking
  Deep Learning Interpretability in Time Series Predictions") in its "moving" form: Gaussian
  noise everywhere, and a class-dependent pattern (a box, ``+amplitude`` or ``-amplitude``, or a
  half sine of that sign) added to a few features over a window of steps. Which features and
  which window vary from sequence to sequence, so a per-input map has to find them.
- :func:`make_switching_series`: a state-switching set: the sequence passes through states, and
  in each state another feature carries the class signal, over a window inside the state, so
  the informative feature changes over time.

Both return :class:`SaliencySeries`, whose ``saliency`` ``(N, T, F)`` bool marks the steps and
features where the class signal was planted (the ground truth of a time x feature map), and
whose ``series`` is a :class:`~leanxai.data.timeseries.SeriesData` for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from leanxai.core import validate
from leanxai.core.errors import InputError
from leanxai.data.timeseries import SeriesData

__all__ = ["PATTERNS", "SaliencySeries", "make_box_series", "make_switching_series"]

PATTERNS: tuple[str, ...] = ("box", "sine")


@dataclass(frozen=True)
class SaliencySeries:
    """Sequences, labels and the true saliency of each step and feature.

    Attributes
    ----------
    inputs
        ``(N, T, F)`` float32.
    labels
        ``(N,)`` int64.
    saliency
        ``(N, T, F)`` bool: true where the class signal was planted.
    name
        What generated the set.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    saliency: torch.Tensor
    name: str

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def time_saliency(self) -> torch.Tensor:
        """``(N, T)`` bool: the steps where any feature carries the signal."""
        return self.saliency.any(dim=2)

    @property
    def series(self) -> SeriesData:
        """The set as :class:`~leanxai.data.timeseries.SeriesData` (no mask)."""
        features = self.inputs.shape[2]
        return SeriesData(
            inputs=self.inputs,
            labels=self.labels,
            mask=None,
            feature_names=tuple(f"x{f}" for f in range(features)),
            classes=("negative", "positive"),
        )

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> SaliencySeries:
        """The sequences at ``index``, in that order."""
        rows = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        return SaliencySeries(self.inputs[rows], self.labels[rows], self.saliency[rows], self.name)


def _pattern(kind: str, width: int) -> np.ndarray:
    if kind == "box":
        return np.ones(width)
    return np.sin(np.pi * (np.arange(width) + 0.5) / width)  # a half sine, > 0


def _build(
    noise: np.ndarray, labels: np.ndarray, saliency: np.ndarray, signal: np.ndarray, name: str
) -> SaliencySeries:
    sign = 2.0 * labels - 1.0  # class 1: +, class 0: -
    inputs = noise + sign[:, None, None] * signal
    return SaliencySeries(
        inputs=torch.from_numpy(inputs.astype(np.float32)),
        labels=torch.from_numpy(labels.astype(np.int64)),
        saliency=torch.from_numpy(saliency),
        name=name,
    )


def make_box_series(
    n: int = 600,
    seed: int = 0,
    *,
    length: int = 50,
    n_features: int = 10,
    n_informative: int = 3,
    window: int = 10,
    pattern: str = "box",
    amplitude: float = 1.0,
) -> SaliencySeries:
    """Ismail et al. (2020)'s synthetic saliency benchmark, "moving" form, two classes.

    Each sequence is standard Gaussian noise ``(length, n_features)``; for each sequence,
    ``n_informative`` features drawn at random and a window of ``window`` steps at a random
    start get ``s * amplitude * p(t)`` added, ``s = +1`` for class 1 and ``-1`` for class 0,
    ``p`` a box (ones) or a half sine (``pattern``). The planted cells are the saliency.

    Deviations from the paper: smaller (50 x 10 instead of 50 x 50) so that a model trains in
    seconds on a CPU, and the features of the pattern vary per sequence as well as its window.
    """
    n = validate.positive_int("n", n)
    length = validate.positive_int("length", length)
    n_features = validate.positive_int("n_features", n_features)
    n_informative = validate.positive_int("n_informative", n_informative)
    window = validate.positive_int("window", window)
    validate.choice("pattern", pattern, PATTERNS)
    amplitude = validate.positive_float("amplitude", amplitude)
    if n_informative > n_features or window > length:
        raise InputError(
            f"need n_informative <= n_features and window <= length, got {n_informative} of "
            f"{n_features} features and a window of {window} of {length} steps"
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    noise = rng.standard_normal((n, length, n_features))
    saliency = np.zeros((n, length, n_features), dtype=bool)
    signal = np.zeros((n, length, n_features))
    shape = amplitude * _pattern(pattern, window)
    for i in range(n):
        features = rng.choice(n_features, n_informative, replace=False)
        start = int(rng.integers(0, length - window + 1))
        saliency[i, start : start + window][:, features] = True
        signal[i, start : start + window][:, features] = shape[:, None]
    return _build(noise, labels, saliency, signal, f"{pattern}")


def make_switching_series(
    n: int = 600,
    seed: int = 0,
    *,
    length: int = 50,
    n_features: int = 6,
    n_states: int = 3,
    window: int = 8,
    amplitude: float = 1.0,
) -> SaliencySeries:
    """A state-switching set: the informative feature changes over time.

    Each sequence is standard Gaussian noise split at ``n_states - 1`` random switch points
    into ``n_states`` segments of at least ``window`` steps. Segment ``k`` is in state
    ``k``, whose feature is the ``k``-th of a random ordering of the features: inside the
    segment, that feature alone carries ``s * amplitude`` (``s = +1`` for class 1, ``-1`` for
    class 0) over a window of ``window`` steps at a random position. So every sequence carries
    its class in ``n_states`` windows, each on another feature, and which feature matters
    depends on when.
    """
    n = validate.positive_int("n", n)
    length = validate.positive_int("length", length)
    n_features = validate.positive_int("n_features", n_features)
    n_states = validate.positive_int("n_states", n_states)
    window = validate.positive_int("window", window)
    amplitude = validate.positive_float("amplitude", amplitude)
    if n_states > n_features or n_states * window > length:
        raise InputError(
            f"need n_states <= n_features and n_states * window <= length, got {n_states} "
            f"states, {n_features} features, windows of {window} in {length} steps"
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    noise = rng.standard_normal((n, length, n_features))
    saliency = np.zeros((n, length, n_features), dtype=bool)
    signal = np.zeros((n, length, n_features))
    slack = length - n_states * window
    for i in range(n):
        # Segment lengths: window each, plus the slack split at random.
        cuts = np.sort(rng.integers(0, slack + 1, n_states - 1))
        extra = np.diff(np.concatenate([[0], cuts, [slack]]))
        bounds = np.concatenate([[0], np.cumsum(window + extra)])
        features = rng.permutation(n_features)[:n_states]
        for k in range(n_states):
            begin, end = int(bounds[k]), int(bounds[k + 1])
            start = int(rng.integers(begin, end - window + 1))
            saliency[i, start : start + window, features[k]] = True
            signal[i, start : start + window, features[k]] = amplitude
    return _build(noise, labels, saliency, signal, "switching")
