"""Small recurrent sequence classifiers, trained in seconds, and the retraining used to judge
feature rankings.

:class:`RecurrentClassifier` is an LSTM, GRU or bidirectional LSTM/GRU followed by one linear
layer on the last valid step's state (or the mean over valid steps);
:class:`FrontEndRecurrentClassifier` puts a Linear or Conv1d front end and an elementwise
activation before it. :func:`train_recurrent` trains either with Adam;
:func:`retrain_on_features` trains a fresh one on a subset of the feature columns and returns
its test accuracy (the top-k evaluation of a ranking).
:func:`load_recurrent_model` caches a trained model per data set as safetensors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from leanxai.compress.architectures import register_architecture
from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError
from leanxai.zoo.train import load_cached

__all__ = [
    "FRONTS",
    "KINDS",
    "RECURRENT_RECIPE_VERSION",
    "FrontEndRecurrentClassifier",
    "RecurrentClassifier",
    "accuracy",
    "load_recurrent_data",
    "load_recurrent_model",
    "retrain_on_features",
    "train_recurrent",
]

logger = logging.getLogger(__name__)

Kind = Literal["lstm", "gru", "bilstm", "bigru"]
Readout = Literal["last", "mean"]

KINDS: tuple[str, ...] = ("lstm", "gru", "bilstm", "bigru")
"""Recurrent layer kinds of :class:`RecurrentClassifier`."""

FRONTS: tuple[str, ...] = ("linear", "conv")
"""Front ends of :class:`FrontEndRecurrentClassifier`: ``nn.Linear`` per step or ``nn.Conv1d``
over time."""

RECURRENT_RECIPE_VERSION = "v1"
"""Version of :func:`load_recurrent_model`'s recipe; bumped whenever the weights change."""


_positive_int = validate.positive_int


class RecurrentClassifier(nn.Module):
    """A recurrent layer, then one linear layer on a summary of its outputs.

    Parameters
    ----------
    n_features
        Input features per step ``F``.
    n_classes
        Output classes ``K``.
    hidden
        Hidden units per direction.
    kind
        ``"lstm"``, ``"gru"``, ``"bilstm"`` or ``"bigru"`` (bidirectional).
    num_layers
        Stacked recurrent layers.
    batch_first
        Inputs are ``(B, T, F)`` when true, ``(T, B, F)`` when false.
    readout
        ``"last"``: the final state of the last layer, each direction's (for the forward
        direction the output at the last valid step, for the backward one at the first step);
        ``"mean"``: the mean of the last layer's outputs over valid steps.

    Notes
    -----
    ``forward(inputs, mask=None)``: with a ``(B, T)`` bool ``mask`` of right-padded sequences
    the recurrent layer runs on a :class:`~torch.nn.utils.rnn.PackedSequence`, so padded steps
    change nothing (also for the backward direction).
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int = 32,
        kind: Kind | str = "lstm",
        num_layers: int = 1,
        batch_first: bool = True,
        readout: Readout | str = "last",
    ) -> None:
        super().__init__()
        n_features = _positive_int("n_features", n_features)
        n_classes = _positive_int("n_classes", n_classes)
        hidden = _positive_int("hidden", hidden)
        num_layers = _positive_int("num_layers", num_layers)
        if kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
        if readout not in ("last", "mean"):
            raise InputError(f"readout must be 'last' or 'mean', got {readout!r}")
        cell = nn.LSTM if kind in ("lstm", "bilstm") else nn.GRU
        bidirectional = kind.startswith("bi")
        self.kind = kind
        self.readout = readout
        self.batch_first = batch_first
        self.n_features, self.n_classes, self.hidden = n_features, n_classes, hidden
        self.num_layers = num_layers
        self.rnn = cell(
            n_features,
            hidden,
            num_layers=num_layers,
            batch_first=batch_first,
            bidirectional=bidirectional,
        )
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, F)`` (or ``(T, B, F)``) inputs and an optional ``(B, T)`` mask ->
        ``(B, K)`` logits."""
        time_dim = 1 if self.batch_first else 0
        steps = inputs.shape[time_dim]
        if mask is None:
            output, state = self.rnn(inputs)
        else:
            lengths = mask.sum(dim=1)  # (B,)
            prefix = torch.arange(steps, device=mask.device)[None, :] < lengths[:, None]
            if tuple(mask.shape) != (inputs.shape[1 - time_dim], steps) or not bool(
                torch.equal(mask.bool(), prefix)
            ):
                raise InputError(
                    "mask must be (B, T) bool, true on a prefix of each sequence (right "
                    f"padding), got shape {tuple(mask.shape)}"
                )
            if bool((lengths == 0).any()):
                raise InputError("mask leaves a sequence of length zero")
            packed = pack_padded_sequence(
                inputs, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False
            )
            packed_output, state = self.rnn(packed)
            output, _ = pad_packed_sequence(
                packed_output, batch_first=self.batch_first, total_length=steps
            )
        if self.readout == "last":
            h_n = state[0] if isinstance(state, tuple) else state  # (L * D, B, H)
            directions = 2 if self.rnn.bidirectional else 1
            last = h_n[-directions:]  # (D, B, H): the last layer
            summary = torch.cat(list(last), dim=1)  # (B, D * H)
        else:
            out = output if self.batch_first else output.transpose(0, 1)  # (B, T, D * H)
            if mask is None:
                summary = out.mean(dim=1)
            else:
                weights = mask.to(out.dtype)[:, :, None]
                summary = (out * weights).sum(dim=1) / weights.sum(dim=1)
        return self.head(summary)

    def describe(self) -> dict[str, Any]:
        """The constructor's arguments, as JSON values (the ``Describable`` protocol)."""
        return {
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "kind": self.kind,
            "num_layers": self.num_layers,
            "batch_first": self.batch_first,
            "readout": self.readout,
        }


register_architecture("RecurrentClassifier", RecurrentClassifier)


_FRONT_ACTIVATIONS = ("relu", "tanh", "identity")


class FrontEndRecurrentClassifier(RecurrentClassifier):
    """A Linear or Conv1d front end and an elementwise activation, then a
    :class:`RecurrentClassifier` on its ``width`` outputs per step.

    Parameters
    ----------
    n_features
        Input features per step ``F``.
    n_classes
        Output classes ``K``.
    hidden, kind, num_layers, readout
        As in :class:`RecurrentClassifier` (inputs are batch-first ``(B, T, F)``).
    front
        ``"linear"``: ``nn.Linear(F, width)`` on each step; ``"conv"``: ``nn.Conv1d(F, width,
        kernel_size)`` over time, stride 1, zero padding ``kernel_size // 2`` (so ``T`` steps
        in, ``T`` out).
    width
        Outputs of the front end per step: the recurrent layer's ``input_size``.
    kernel_size
        Odd temporal width of the Conv1d front end.
    activation
        ``"relu"``, ``"tanh"`` or ``"identity"``, applied to the front end's output.

    Notes
    -----
    Padded steps of right-padded sets are zeros, which a Conv1d reads as its own zero padding:
    with or without a mask, the front end gives the same values at valid steps.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int = 32,
        kind: Kind | str = "lstm",
        front: str = "linear",
        width: int = 32,
        kernel_size: int = 3,
        activation: str = "relu",
        num_layers: int = 1,
        readout: Readout | str = "last",
    ) -> None:
        n_features = _positive_int("n_features", n_features)
        width = _positive_int("width", width)
        kernel_size = _positive_int("kernel_size", kernel_size)
        if front not in FRONTS:
            raise InputError(f"front must be one of {FRONTS}, got {front!r}")
        if kernel_size % 2 == 0:
            raise InputError(f"kernel_size must be odd, got {kernel_size}")
        if activation not in _FRONT_ACTIVATIONS:
            raise InputError(f"activation must be one of {_FRONT_ACTIVATIONS}, got {activation!r}")
        super().__init__(width, n_classes, hidden, kind, num_layers, True, readout)
        self.n_features, self.width, self.kernel_size = n_features, width, kernel_size
        self.front_kind, self.activation = front, activation
        self.front: nn.Linear | nn.Conv1d = (
            nn.Linear(n_features, width)
            if front == "linear"
            else nn.Conv1d(n_features, width, kernel_size, padding=kernel_size // 2)
        )

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, F)`` inputs and an optional ``(B, T)`` mask -> ``(B, K)`` logits."""
        if isinstance(self.front, nn.Conv1d):
            units = self.front(inputs.transpose(1, 2)).transpose(1, 2)  # (B, T, width)
        else:
            units = self.front(inputs)  # (B, T, width)
        if self.activation == "relu":
            units = torch.relu(units)
        elif self.activation == "tanh":
            units = torch.tanh(units)
        return super().forward(units, mask)

    def describe(self) -> dict[str, Any]:
        """The constructor's arguments, as JSON values (the ``Describable`` protocol)."""
        return {
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "kind": self.kind,
            "front": self.front_kind,
            "width": self.width,
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "num_layers": self.num_layers,
            "readout": self.readout,
        }


register_architecture("FrontEndRecurrentClassifier", FrontEndRecurrentClassifier)


def _as_tensor(name: str, value: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}"
        )
    return value.to(dtype)


def _check_data(
    inputs: Any, labels: Any, mask: Any, x_name: str = "X", y_name: str = "y"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    x = _as_tensor(x_name, inputs, torch.float32)
    y = _as_tensor(y_name, labels, torch.int64)
    if x.dim() != 3 or x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise InputError(f"{x_name} must be a non-empty (N, T, F) array, got {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise InputError(
            f"{y_name} must hold one label per sequence ({x.shape[0]}), got {tuple(y.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{x_name} contains NaN or infinite values")
    m = None
    if mask is not None:
        m = _as_tensor(f"the mask of {x_name}", mask, torch.bool)
        if tuple(m.shape) != tuple(x.shape[:2]):
            raise InputError(
                f"the mask of {x_name} must have shape {tuple(x.shape[:2])}, got {tuple(m.shape)}"
            )
    return x, y, m


def train_recurrent(
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    kind: Kind | str = "lstm",
    seed: int = 0,
    epochs: int = 30,
    *,
    mask: torch.Tensor | np.ndarray | None = None,
    n_classes: int | None = None,
    hidden: int = 32,
    num_layers: int = 1,
    readout: Readout | str = "last",
    batch_size: int = 32,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    clip: float = 1.0,
    front: str | None = None,
    width: int = 32,
) -> RecurrentClassifier:
    """Train a :class:`RecurrentClassifier` with Adam and cross-entropy, in seconds.

    Mini-batches of ``batch_size`` in a new random order each epoch, gradients clipped to norm
    ``clip``, constant learning rate. The weights' initialisation and the order come from
    ``seed`` (the global generators are restored afterwards); thread counts are left as set.

    Parameters
    ----------
    X
        ``(N, T, F)`` batch-first inputs.
    y
        ``(N,)`` int class indices.
    kind
        ``"lstm"``, ``"gru"``, ``"bilstm"`` or ``"bigru"``.
    seed
        Seed of the initial weights and the shuffling.
    epochs
        Passes over the data.
    mask
        ``(N, T)`` bool of right-padded sequences, passed to the model.
    n_classes
        Number of classes (default ``max(y) + 1``).
    hidden, num_layers, readout
        The architecture (:class:`RecurrentClassifier`).
    batch_size, lr, weight_decay, clip
        The optimisation.
    front, width
        ``"linear"`` or ``"conv"``: a :class:`FrontEndRecurrentClassifier` with that front end
        of ``width`` outputs (ReLU after it) instead; ``None`` (default): no front end.

    Returns
    -------
    RecurrentClassifier
        The trained model, in eval mode, on the inputs' device.
    """
    x, labels, m = _check_data(X, y, mask)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    if not lr > 0:
        raise InputError(f"lr must be > 0, got {lr!r}")
    classes = int(labels.max()) + 1 if n_classes is None else _positive_int("n_classes", n_classes)
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise InputError(f"y must hold class indices in 0..{classes - 1}")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model: RecurrentClassifier
        if front is None:
            model = RecurrentClassifier(
                x.shape[2], classes, hidden, kind, num_layers, batch_first=True, readout=readout
            )
        else:
            model = FrontEndRecurrentClassifier(
                x.shape[2],
                classes,
                hidden,
                kind,
                front,
                width,
                num_layers=num_layers,
                readout=readout,
            )
        model = model.to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    n = labels.shape[0]
    model.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        for begin in range(0, n, batch_size):
            index = order[begin : begin + batch_size]
            logits = model(x[index], None if m is None else m[index])
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    logger.debug(
        "trained %s on %d sequences in %.1f s, last loss %.3f",
        kind,
        n,
        time.perf_counter() - start,
        float(loss.detach()),
    )
    return model


@torch.no_grad()
def accuracy(
    model: nn.Module,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    *,
    batch_size: int = 256,
) -> float:
    """Share of ``(N, T, F)`` sequences whose predicted class is ``y`` (model in eval mode for
    the call; its ``training`` flag is restored)."""
    x, labels, m = _check_data(X, y, mask)
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for begin in range(0, labels.shape[0], batch_size):
            part = slice(begin, begin + batch_size)
            logits = model(x[part]) if m is None else model(x[part], m[part])
            correct += int((logits.argmax(dim=1) == labels[part]).sum())
    finally:
        model.train(was_training)
    return correct / labels.shape[0]


def retrain_on_features(
    X_train: torch.Tensor | np.ndarray,
    y_train: torch.Tensor | np.ndarray,
    X_test: torch.Tensor | np.ndarray,
    y_test: torch.Tensor | np.ndarray,
    features: Sequence[int] | torch.Tensor | np.ndarray,
    kind: Kind | str = "lstm",
    seed: int = 0,
    *,
    mask_train: torch.Tensor | np.ndarray | None = None,
    mask_test: torch.Tensor | np.ndarray | None = None,
    **train_options: Any,
) -> float:
    """Test accuracy of a fresh model trained on the selected feature columns only.

    The top-k evaluation of a feature ranking: ``features`` (e.g. ``ranking[:k]``) are kept,
    in that order, from both sets; a new :class:`RecurrentClassifier` is trained with
    :func:`train_recurrent` (same ``kind``, ``seed`` and ``train_options``) and scored on the
    test set.

    Parameters
    ----------
    X_train, y_train, X_test, y_test
        ``(N, T, F)`` inputs and ``(N,)`` labels.
    features
        Indices of the columns to keep, at least one, no repeats.
    kind, seed
        As in :func:`train_recurrent`.
    mask_train, mask_test
        ``(N, T)`` bool masks of right-padded sets.
    **train_options
        Passed to :func:`train_recurrent` (``epochs``, ``hidden``...). ``n_classes`` defaults to
        the number of classes in both label sets.

    Returns
    -------
    float
        Test accuracy in ``[0, 1]``.
    """
    x_train, labels_train, _ = _check_data(X_train, y_train, mask_train, "X_train", "y_train")
    x_test, labels_test, _ = _check_data(X_test, y_test, mask_test, "X_test", "y_test")
    if x_train.shape[2] != x_test.shape[2]:
        raise InputError(
            f"X_train has {x_train.shape[2]} features and X_test {x_test.shape[2]}; they must agree"
        )
    columns = torch.as_tensor(np.asarray(features), dtype=torch.int64).reshape(-1)
    width = x_train.shape[2]
    if columns.numel() == 0:
        raise InputError("features must name at least one feature")
    if bool(((columns < 0) | (columns >= width)).any()) or columns.unique().numel() != len(columns):
        raise InputError(f"features must be distinct indices in 0..{width - 1}, got {columns}")
    train_options.setdefault(
        "n_classes", int(max(int(labels_train.max()), int(labels_test.max()))) + 1
    )
    model = train_recurrent(
        x_train[:, :, columns], labels_train, kind, seed, mask=mask_train, **train_options
    )
    return accuracy(model, x_test[:, :, columns], labels_test, mask_test)


# -- cached reference models ----------------------------------------------------------------------

# The recipe of load_recurrent_model. Changing a value changes the weights: bump the version.
_RECIPE: dict[str, dict[str, Any]] = {
    "synthetic": {"epochs": 15, "lr": 1e-2},
    "basic_motions": {"epochs": 40, "lr": 1e-2},
    "japanese_vowels": {"epochs": 30, "lr": 1e-2},
}
_SYNTHETIC_TRAIN_SEED = 0
_SYNTHETIC_TEST_SEED = 1


def load_recurrent_data(name: str) -> tuple[Any, Any]:
    """The ``(train, test)`` :class:`~leanxai.data.timeseries.SeriesData` of a reference set.

    ``"synthetic"`` (:func:`~leanxai.data.timeseries.make_informative_series`, 400 training
    sequences with seed 0 and 400 test sequences with seed 1), ``"basic_motions"`` or
    ``"japanese_vowels"`` (aeon).
    """
    from leanxai.data import timeseries

    if name == "synthetic":
        return (
            timeseries.make_informative_series(400, _SYNTHETIC_TRAIN_SEED),
            timeseries.make_informative_series(400, _SYNTHETIC_TEST_SEED),
        )
    if name == "basic_motions":
        return timeseries.load_basic_motions()
    if name == "japanese_vowels":
        return timeseries.load_japanese_vowels()
    raise InputError(f"name must be one of {sorted(_RECIPE)}, got {name!r}")


def load_recurrent_model(
    name: str,
    kind: Kind | str = "lstm",
    seed: int = 0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    front: str | None = None,
) -> tuple[RecurrentClassifier, dict[str, Any]]:
    """A :class:`RecurrentClassifier` trained on a reference set, cached as safetensors.

    Trained on the training part of :func:`load_recurrent_data` with :func:`train_recurrent`
    (32 hidden units, one layer, ``readout="last"``) and scored on the test part; the weights
    are cached by :func:`~leanxai.zoo.train.load_cached` as
    ``recurrent-<name>-<kind>-s<seed>-<version>.safetensors``. With ``front`` (``"linear"`` or
    ``"conv"``), a :class:`FrontEndRecurrentClassifier` with that front end (32 outputs, ReLU,
    Conv1d kernel 3), same recipe, cached as ``recurrent-<name>-<front>-<kind>-s<seed>-...``.

    Returns
    -------
    model : RecurrentClassifier
        In eval mode.
    metadata : dict
        ``dataset``, ``kind``, ``seed``, ``test_accuracy``, ``training_seconds`` and the recipe.
    """
    if name not in _RECIPE:
        raise InputError(f"name must be one of {sorted(_RECIPE)}, got {name!r}")
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if front is not None and front not in FRONTS:
        raise InputError(f"front must be None or one of {FRONTS}, got {front!r}")
    train_data, test_data = load_recurrent_data(name)
    features = train_data.inputs.shape[2]
    classes = len(train_data.classes)
    options: dict[str, Any] = {} if front is None else {"front": front}

    def build() -> RecurrentClassifier:
        if front is None:
            return RecurrentClassifier(features, classes, 32, kind)
        return FrontEndRecurrentClassifier(features, classes, 32, kind, front)

    def train() -> tuple[nn.Module, dict[str, Any]]:
        start = time.perf_counter()
        model = train_recurrent(
            train_data.inputs,
            train_data.labels,
            kind,
            seed,
            mask=train_data.mask,
            n_classes=classes,
            **_RECIPE[name],
            **options,
        )
        seconds = time.perf_counter() - start
        score = accuracy(model, test_data.inputs, test_data.labels, test_data.mask)
        logger.info("trained %s on %s in %.1f s, test accuracy %.3f", kind, name, seconds, score)
        return model, {
            "dataset": name,
            "kind": kind,
            "seed": seed,
            "test_accuracy": score,
            "training_seconds": round(seconds, 2),
            **_RECIPE[name],
            **options,
        }

    stem = f"recurrent-{name}-{kind}" if front is None else f"recurrent-{name}-{front}-{kind}"
    return load_cached(
        f"{stem}-s{seed}",
        build,
        train,
        RECURRENT_RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )
