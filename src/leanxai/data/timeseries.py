"""Multivariate time-series classification sets: aeon's BasicMotions and JapaneseVowels, and a
synthetic set whose informative features are known.

Every loader returns :class:`SeriesData`: ``(N, T, F)`` float32 inputs, standardised per feature,
int64 labels and, for variable-length sets, a ``(N, T)`` mask of the valid steps (right padding,
padded values are 0). aeon (``pip install leanxai[rnn]``) is imported inside the loaders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from leanxai.core.errors import InputError

__all__ = [
    "SeriesData",
    "load_basic_motions",
    "load_japanese_vowels",
    "make_informative_series",
    "standardize",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesData:
    """A multivariate time-series classification set.

    Attributes
    ----------
    inputs
        ``(N, T, F)`` float32.
    labels
        ``(N,)`` int64 class indices into ``classes``.
    mask
        ``(N, T)`` bool, true at valid steps, for variable-length sets; ``None`` when every
        sequence has all ``T`` steps.
    feature_names
        ``F`` names.
    classes
        Class names.
    informative
        Indices of the features that carry the class signal, where known (synthetic data).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor | None
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    informative: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """``(N,)`` int64, the number of valid steps of each sequence."""
        if self.mask is None:
            return torch.full((len(self),), self.inputs.shape[1], dtype=torch.int64)
        return self.mask.sum(dim=1)

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> SeriesData:
        """The samples at ``index``, in that order."""
        rows = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        return SeriesData(
            inputs=self.inputs[rows],
            labels=self.labels[rows],
            mask=None if self.mask is None else self.mask[rows],
            feature_names=self.feature_names,
            classes=self.classes,
            informative=self.informative,
        )

    def split(self, train_fraction: float = 0.75, seed: int = 0) -> tuple[SeriesData, SeriesData]:
        """A random ``(train, test)`` split, stratified by class.

        Parameters
        ----------
        train_fraction
            Share of each class that goes to the training part, in ``(0, 1)``.
        seed
            Seed of the shuffling (a private generator).
        """
        if not 0 < train_fraction < 1:
            raise InputError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        train: list[int] = []
        test: list[int] = []
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            cut = round(train_fraction * len(members))
            train.extend(members[:cut].tolist())
            test.extend(members[cut:].tolist())
        return self.subset(sorted(train)), self.subset(sorted(test))


def standardize(
    inputs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Standardise each feature of ``(N, T, F)`` inputs over samples and valid steps.

    Parameters
    ----------
    inputs
        ``(N, T, F)``.
    mask
        ``(N, T)`` bool; only valid steps enter the statistics, and padded steps are set to 0.
    statistics
        ``(mean, std)``, each ``(F,)``, to apply (e.g. the training set's); computed from
        ``inputs`` when ``None``. A feature with zero spread is only centred.

    Returns
    -------
    standardised : torch.Tensor
        ``(N, T, F)`` float32.
    statistics : tuple of torch.Tensor
        The ``(mean, std)`` used, float64.
    """
    values = inputs.to(torch.float64)
    weights = (
        torch.ones(values.shape[:2], dtype=torch.float64)
        if mask is None
        else mask.to(torch.float64)
    )[:, :, None]  # (N, T, 1)
    if statistics is None:
        total = weights.sum()
        mean = (values * weights).sum(dim=(0, 1)) / total
        std = ((((values - mean) ** 2) * weights).sum(dim=(0, 1)) / total).sqrt()
    else:
        mean, std = (s.to(torch.float64) for s in statistics)
    scale = torch.where(std > 0, std, torch.ones_like(std))
    standardised = (values - mean) / scale * weights
    return standardised.float(), (mean, std)


def _import_aeon_datasets() -> Any:
    try:
        import aeon.datasets
    except ImportError as error:
        raise ImportError(
            "loading aeon's time-series sets needs aeon: pip install leanxai[rnn]"
        ) from error
    return aeon.datasets


def _labels(
    train: np.ndarray, test: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    names = sorted({str(v) for v in train} | {str(v) for v in test}, key=_natural)
    index = {name: i for i, name in enumerate(names)}

    def encode(values: np.ndarray) -> torch.Tensor:
        return torch.tensor([index[str(v)] for v in values], dtype=torch.int64)

    return encode(train), encode(test), tuple(names)


def _natural(name: str) -> tuple[int, float | str]:
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


def load_basic_motions() -> tuple[SeriesData, SeriesData]:
    """BasicMotions (UEA archive), as shipped with aeon: 40 training and 40 test sequences.

    Four activities (standing, walking, running, badminton) recorded by a smart watch's 3-D
    accelerometer and 3-D gyroscope at 10 Hz: 6 features, 100 steps. Each feature is
    standardised with the training set's mean and standard deviation (over samples and steps).
    The feature names ``channel_0`` .. ``channel_5`` keep aeon's channel order.

    Returns
    -------
    train, test : SeriesData
        ``inputs`` ``(40, 100, 6)`` float32, ``mask`` ``None``, classes in sorted order.

    Raises
    ------
    ImportError
        When aeon is not installed (the ``rnn`` extra).
    """
    datasets = _import_aeon_datasets()
    x_train, y_train = datasets.load_basic_motions(split="train")  # (N, F, T)
    x_test, y_test = datasets.load_basic_motions(split="test")
    train_inputs = torch.from_numpy(np.asarray(x_train, dtype=np.float64)).transpose(1, 2)
    test_inputs = torch.from_numpy(np.asarray(x_test, dtype=np.float64)).transpose(1, 2)
    train_inputs, stats = standardize(train_inputs)
    test_inputs, _ = standardize(test_inputs, statistics=stats)
    train_labels, test_labels, classes = _labels(y_train, y_test)
    names = tuple(f"channel_{i}" for i in range(train_inputs.shape[2]))
    return (
        SeriesData(train_inputs, train_labels, None, names, classes),
        SeriesData(test_inputs, test_labels, None, names, classes),
    )


def _pad(series: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F, T_i)`` arrays -> ``(N, T_max, F)`` float64 zero-padded and the ``(N, T_max)`` mask."""
    steps = max(s.shape[1] for s in series)
    features = series[0].shape[0]
    inputs = torch.zeros(len(series), steps, features, dtype=torch.float64)
    mask = torch.zeros(len(series), steps, dtype=torch.bool)
    for i, s in enumerate(series):
        inputs[i, : s.shape[1]] = torch.from_numpy(np.asarray(s, dtype=np.float64)).T
        mask[i, : s.shape[1]] = True
    return inputs, mask


def load_japanese_vowels() -> tuple[SeriesData, SeriesData]:
    """JapaneseVowels (UEA archive), as shipped with aeon: 270 training and 370 test sequences.

    Nine male speakers uttering two Japanese vowels; each utterance is 7 to 29 frames of 12 LPC
    cepstrum coefficients. Variable length: the sequences are right-padded with zeros to the
    longest sequence of each split and ``mask`` marks the valid frames. Each feature is
    standardised with the training set's statistics over valid frames.

    Returns
    -------
    train, test : SeriesData
        ``inputs`` ``(N, T_max, 12)`` float32 and ``mask`` ``(N, T_max)``; classes ``"1"`` ..
        ``"9"`` (the speakers).

    Raises
    ------
    ImportError
        When aeon is not installed (the ``rnn`` extra).
    """
    datasets = _import_aeon_datasets()
    x_train, y_train = datasets.load_japanese_vowels(split="train")  # list of (F, T_i)
    x_test, y_test = datasets.load_japanese_vowels(split="test")
    train_inputs, train_mask = _pad(x_train)
    test_inputs, test_mask = _pad(x_test)
    train_inputs, stats = standardize(train_inputs, train_mask)
    test_inputs, _ = standardize(test_inputs, test_mask, statistics=stats)
    train_labels, test_labels, classes = _labels(y_train, y_test)
    names = tuple(f"lpc_{i + 1}" for i in range(train_inputs.shape[2]))
    return (
        SeriesData(train_inputs, train_labels, train_mask, names, classes),
        SeriesData(test_inputs, test_labels, test_mask, names, classes),
    )


def _ar1(rng: np.random.Generator, shape: tuple[int, int, int], phi: float) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 1, started in its stationary distribution."""
    noise = rng.standard_normal(shape)
    out = np.empty(shape)
    out[:, 0] = noise[:, 0]
    scale = np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        out[:, t] = phi * out[:, t - 1] + scale * noise[:, t]
    return out


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def make_informative_series(
    n: int = 400,
    seed: int = 0,
    *,
    length: int = 30,
    n_classes: int = 4,
    n_stable: int = 2,
    n_noisy: int = 2,
    n_irrelevant: int = 2,
    n_distractors: int = 2,
    signal: float = 1.0,
    noise: float = 0.3,
    noisy_noise: float = 2.0,
    distractor_scale: float = 3.0,
) -> SeriesData:
    """A synthetic multivariate classification set whose informative features are known.

    Classes are balanced (``n_classes`` of them) and each class ``y`` has a binary code: bit
    ``j mod n_bits`` of ``y``, ``n_bits = ceil(log2 n_classes)``, as ``s = +1`` or ``-1``, gives
    informative feature ``j``'s level. Per feature type, at every step ``t`` of ``length``
    (``e`` is unit-variance AR(1) noise with coefficient 0.5, drawn anew per feature):

    - *stable informative*: ``signal * s + noise * e``, strong and steady;
    - *noisy informative*: ``signal * s + noisy_noise * e``, the same class signal drowned in
      per-step noise (recoverable by averaging over time);
    - *irrelevant*: ``e``;
    - *distractor* (irrelevant, high variance): ``distractor_scale * (u + sin(w t + p)) / 2 +
      e`` with a per-sample level ``u ~ N(0, 1)``, frequency ``w`` and phase ``p``, none of
      which depends on the class.

    The class signal is in the informative features only. The stable and noisy informative
    features alternate over the code bits, so with at least ``n_bits`` of each every bit is
    carried by a stable and by a noisy feature. The features are interleaved by type (stable,
    distractor, noisy, irrelevant, stable, ...; a fixed order for every seed) and each is then
    standardised with the set's own mean and standard deviation, so the raw scale says nothing
    about relevance. A one-layer LSTM with 32 units learns the default set in a few seconds on a
    CPU.

    Parameters
    ----------
    n
        Number of sequences.
    seed
        Seed of the samples (a private generator); the feature layout does not depend on it.
    length
        Steps per sequence.
    n_classes
        Number of classes, at least 2.
    n_stable, n_noisy, n_irrelevant, n_distractors
        Features of each type; at least one informative feature.
    signal, noise, noisy_noise, distractor_scale
        The amplitudes above.

    Returns
    -------
    SeriesData
        ``inputs`` ``(n, length, F)`` float32, ``mask`` ``None``, ``informative`` the indices
        of the stable and noisy features, ``feature_names`` like ``"stable_0"`` and
        ``"distractor_1"``.
    """
    n = _count("n", n)
    length = _count("length", length)
    if n < 1 or length < 1:
        raise InputError(f"n and length must be positive, got n={n}, length={length}")
    n_classes = _count("n_classes", n_classes)
    if n_classes < 2:
        raise InputError(f"n_classes must be at least 2, got {n_classes}")
    counts = {
        "stable": _count("n_stable", n_stable),
        "distractor": _count("n_distractors", n_distractors),
        "noisy": _count("n_noisy", n_noisy),
        "irrelevant": _count("n_irrelevant", n_irrelevant),
    }
    if counts["stable"] + counts["noisy"] == 0:
        raise InputError("make_informative_series needs at least one informative feature")
    for name, value in (
        ("signal", signal),
        ("noise", noise),
        ("noisy_noise", noisy_noise),
        ("distractor_scale", distractor_scale),
    ):
        if not np.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a non-negative number, got {value!r}")
    # Interleave the types round-robin: a fixed layout in which no type sits in a block.
    layout: list[tuple[str, int]] = []
    for k in range(max(counts.values())):
        layout.extend((kind, k) for kind, count in counts.items() if k < count)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes)  # balanced
    n_bits = max(1, int(np.ceil(np.log2(n_classes))))
    codes = 2.0 * ((labels[:, None] >> np.arange(n_bits)[None, :]) & 1) - 1  # (n, n_bits)
    noise_all = _ar1(rng, (n, length, len(layout)), phi=0.5)  # (n, T, F)
    t = np.arange(length)[None, :]
    columns = []
    for f, (kind, k) in enumerate(layout):
        e = noise_all[:, :, f]
        if kind == "stable":
            column = signal * codes[:, [k % n_bits]] + noise * e
        elif kind == "noisy":
            column = signal * codes[:, [k % n_bits]] + noisy_noise * e
        elif kind == "irrelevant":
            column = e
        else:
            level = rng.standard_normal((n, 1))
            frequency = rng.uniform(0.1, 0.6, (n, 1))
            phase = rng.uniform(0, 2 * np.pi, (n, 1))
            column = distractor_scale * (level + np.sin(frequency * t + phase)) / 2 + e
        columns.append(column)
    raw = torch.from_numpy(np.stack(columns, axis=2))  # (n, T, F) float64
    inputs, _ = standardize(raw)
    informative = tuple(f for f, (kind, _) in enumerate(layout) if kind in ("stable", "noisy"))
    return SeriesData(
        inputs=inputs,
        labels=torch.from_numpy(labels.astype(np.int64)),
        mask=None,
        feature_names=tuple(f"{kind}_{k}" for kind, k in layout),
        classes=tuple(f"class_{c}" for c in range(n_classes)),
        informative=informative,
    )
