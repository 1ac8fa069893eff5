"""Training recipes for the zoo's models, and the cached demo model.

The demo model is a :class:`~leanxai.zoo.cnn.SmallCNN` trained on
:func:`leanxai.data.shapes.make_shapes` in well under a minute on two CPU cores.
:func:`load_demo_model` trains it once and caches the weights as safetensors (never pickle) with a
JSON file of metadata beside them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from leanxai.core import validate
from leanxai.data.shapes import CLASSES, make_shapes
from leanxai.io import atomic_write_bytes, atomic_write_text
from leanxai.zoo.cnn import SmallCNN

__all__ = [
    "DEMO_N_HELD_OUT",
    "DEMO_N_TRAIN",
    "DEMO_SIZE",
    "HELD_OUT_SEED_OFFSET",
    "RECIPE_VERSION",
    "TRAINING_THREADS",
    "demo_cnn",
    "deterministic_training",
    "fit_classifier",
    "load_cached",
    "load_demo_model",
    "train_demo_model",
]

logger = logging.getLogger(__name__)

RECIPE_VERSION = "v1"
"""Version of the demo recipe; part of the cache file name, bumped whenever the weights change."""

CACHE_ENV = "LEANXAI_CACHE"
"""Environment variable naming the cache directory."""

TRAINING_THREADS = 1
"""Intra-op threads of :func:`deterministic_training`: CPU kernels split their reductions by
thread, so the same seed gives the same weights only at the same thread count."""

# The demo recipe. Changing any value changes the weights: bump RECIPE_VERSION.
_WIDTH = 16
DEMO_SIZE = 64
"""Side of the demo recipe's square RGB images."""
DEMO_N_TRAIN = 4000
"""Training images per stage of the demo recipe."""
DEMO_N_HELD_OUT = 500
"""Held-out images the demo recipe evaluates on."""
HELD_OUT_SEED_OFFSET = 1_000_003
"""Added to a training seed to draw held-out data (here and in :mod:`leanxai.zoo.tiers`), so
held-out images never share a seed with a training set."""
_CLEAN_SEED_OFFSET = 2_000_003
_EPOCHS = 10
_CLEAN_FRACTION = 0.3  # of the epochs, spent first on shapes without clutter or noise
_BATCH_SIZE = 64
_LR = 3e-3
_WEIGHT_DECAY = 1e-4

# What a damaged or foreign cache can raise while being read.
_CACHE_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)


def demo_cnn() -> SmallCNN:
    """The demo model's architecture, untrained.

    Its parameter names and shapes match the cached demo weights, so
    ``py:leanxai.zoo:demo_cnn`` with ``--weights demo_cnn-v1.safetensors`` loads them.

    Returns
    -------
    SmallCNN
        ``SmallCNN(num_classes=4, in_channels=3, width=16)`` for 64x64 RGB images.
    """
    return SmallCNN(num_classes=len(CLASSES), in_channels=3, width=_WIDTH)


@contextlib.contextmanager
def deterministic_training(threads: int = TRAINING_THREADS) -> Iterator[None]:
    """Run a block with a fixed intra-op thread count and deterministic algorithms.

    With the seeds fixed, what still varies between two trainings on CPU is the order of
    floating-point reductions, which follows the number of threads
    (``torch.get_num_threads()``, 2 or 16 depending on the machine and ``OMP_NUM_THREADS``).
    Inside the block it is ``threads``, and :func:`torch.use_deterministic_algorithms` is on; both
    are restored on exit, also after an error, so the caller's settings are left as they were.
    The weights are then identical from run to run on one machine; another CPU (with other
    vector instructions) may still round differently.

    Parameters
    ----------
    threads : int, default :data:`TRAINING_THREADS`
        Intra-op threads for the block.

    Raises
    ------
    InputError
        If ``threads`` is not a positive int.
    """
    threads = validate.positive_int("threads", threads)
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


def fit_classifier(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    flip_and_rotate: bool = False,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "training",
) -> list[float]:
    """Train a classifier with Adam, a one-cycle learning rate and cross-entropy, in place.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, ...)`` inputs to ``(B, K)`` logits. Its ``training`` flag is restored at the end.
    inputs : torch.Tensor
        ``(N, ...)`` training inputs, on the model's device.
    labels : torch.Tensor
        ``(N,)`` int64 class indices.
    epochs : int
        Passes over the data, at least 1.
    batch_size : int, default 64
        Mini-batch size; the last, smaller batch of an epoch is dropped when ``N > batch_size``.
    lr : float, default 3e-3
        Peak learning rate of the one-cycle schedule (Smith and Topin, 2019).
    weight_decay : float, default 0.0
        Adam's L2 penalty.
    seed : int, default 0
        Seed of the shuffling order (a private generator; the global RNG is not touched).
    flip_and_rotate : bool, default False
        Augment each image with a random element of the square's symmetry group (flips and
        90-degree rotations); only for labels invariant to them and square inputs.
    channels_last : bool, default False
        Train in channels-last memory format, faster for convolutions on CPU; the model is
        returned to the contiguous format at the end.
    progress : bool, default False
        Show a tqdm progress bar.
    desc : str, default "training"
        Label of the progress bar.

    Returns
    -------
    list of float
        The loss of every step.

    Raises
    ------
    ValueError
        If an argument is out of range or ``inputs`` and ``labels`` disagree in length.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if labels.ndim != 1 or inputs.shape[0] != labels.shape[0] or labels.shape[0] == 0:
        raise ValueError(
            f"inputs and labels must hold the same non-zero number of samples, got inputs "
            f"{tuple(inputs.shape)} and labels {tuple(labels.shape)}"
        )
    n = labels.shape[0]
    steps_per_epoch = n // batch_size if n > batch_size else 1
    total = epochs * steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    generator = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    losses: list[float] = []
    model.to(memory_format=memory_format)  # type: ignore[call-overload]
    model.train()
    try:
        with tqdm(total=total, desc=desc, unit="batch", disable=not progress) as bar:
            for _ in range(epochs):
                order = torch.randperm(n, generator=generator).to(labels.device)
                for step in range(steps_per_epoch):
                    index = order[step * batch_size : (step + 1) * batch_size]
                    x = inputs[index]  # (b, C, H, W)
                    if flip_and_rotate:
                        x = _random_dihedral(x, generator)
                    x = x.contiguous(memory_format=memory_format)
                    loss = F.cross_entropy(model(x), labels[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    losses.append(loss.item())
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        model.train(was_training)
    return losses


def _random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply one of the eight flips and 90-degree rotations to each image of ``(B, C, S, S)``."""
    bits = torch.randint(0, 2, (3, x.shape[0], 1, 1, 1), generator=generator).bool()
    bits = bits.to(x.device)
    x = torch.where(bits[0], x.flip(-1), x)
    x = torch.where(bits[1], x.flip(-2), x)
    return torch.where(bits[2], x.transpose(-1, -2), x)


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` (run in eval mode, restored after) on ``inputs``."""
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for start in range(0, labels.shape[0], 256):
            logits = model(inputs[start : start + 256])  # (b, K)
            correct += int((logits.argmax(1) == labels[start : start + 256]).sum())
    finally:
        model.train(was_training)
    return correct / max(1, labels.shape[0])


def train_demo_model(
    *, seed: int = 0, epochs: int = _EPOCHS, progress: bool = True
) -> tuple[SmallCNN, dict[str, Any]]:
    """Train the demo :class:`SmallCNN` on synthetic shapes.

    The recipe: Adam with a one-cycle learning rate, batch 64, random flips and 90-degree
    rotations, first for 30 % of the epochs on 4,000 64x64 shapes without clutter or noise (a
    curriculum: from the start, cluttered noisy images leave the loss flat for epochs), then for
    the rest on 4,000 images of :func:`~leanxai.data.shapes.make_shapes` with its default clutter
    and noise. It is evaluated on 500 held-out default images generated with another seed. With
    the defaults it takes about 45 s on two CPU cores and reaches about 92 % held-out accuracy.
    Thread counts are left as the caller set them, and the global RNG state is left untouched.

    Parameters
    ----------
    seed : int, default 0
        Seed of the data, the initial weights and the shuffling.
    epochs : int, default 10
        Passes over training images, both stages together.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    model : SmallCNN
        The trained model, in eval mode.
    metadata : dict
        JSON-serialisable: ``recipe_version``, ``seed``, ``epochs``, ``held_out_accuracy``,
        ``classes``, ``input_size`` (``[3, 64, 64]``), ``training_seconds`` and the recipe's
        other settings.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    start = time.perf_counter()
    clean_epochs = int(epochs * _CLEAN_FRACTION)
    stages = []
    if clean_epochs > 0:
        clean = make_shapes(
            DEMO_N_TRAIN, size=DEMO_SIZE, seed=seed + _CLEAN_SEED_OFFSET, clutter=0.0, noise=0.0
        )
        stages.append(("clean shapes", clean, clean_epochs))
    stages.append(
        (
            "cluttered shapes",
            make_shapes(DEMO_N_TRAIN, size=DEMO_SIZE, seed=seed),
            epochs - clean_epochs,
        )
    )
    held_out = make_shapes(DEMO_N_HELD_OUT, size=DEMO_SIZE, seed=seed + HELD_OUT_SEED_OFFSET)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = demo_cnn()
    losses: list[float] = []
    for i, (name, data, stage_epochs) in enumerate(stages):
        losses = fit_classifier(
            model,
            data.images,
            data.labels,
            epochs=stage_epochs,
            batch_size=_BATCH_SIZE,
            lr=_LR,
            weight_decay=_WEIGHT_DECAY,
            seed=seed + i,
            flip_and_rotate=True,
            channels_last=True,
            progress=progress,
            desc=f"demo CNN {i + 1}/{len(stages)}: {name}",
        )
    model.eval()
    held_out_accuracy = accuracy(model, held_out.images, held_out.labels)
    seconds = time.perf_counter() - start
    logger.info(
        "trained demo CNN in %.1f s, held-out accuracy %.3f (%d images)",
        seconds,
        held_out_accuracy,
        DEMO_N_HELD_OUT,
    )
    metadata: dict[str, Any] = {
        "recipe_version": RECIPE_VERSION,
        "architecture": "SmallCNN",
        "width": _WIDTH,
        "seed": seed,
        "epochs": epochs,
        "n_train": DEMO_N_TRAIN,
        "n_held_out": DEMO_N_HELD_OUT,
        "held_out_accuracy": held_out_accuracy,
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "classes": list(CLASSES),
        "input_size": [3, DEMO_SIZE, DEMO_SIZE],
        "training_seconds": round(seconds, 2),
        "torch_threads": torch.get_num_threads(),
    }
    return model, metadata


def load_demo_model(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    retrain: bool = False,
) -> tuple[SmallCNN, dict[str, Any]]:
    """The trained demo model, from the cache, or trained and cached on first use.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        Cache directory. Default: the ``LEANXAI_CACHE`` environment variable, else
        ``~/.cache/leanxai``.
    progress : bool, default True
        Show a progress bar while training.
    retrain : bool, default False
        Train again and overwrite the cache even if it holds the model.

    Returns
    -------
    model : SmallCNN
        The trained model, in eval mode.
    metadata : dict
        As returned by :func:`train_demo_model`, plus ``weights_sha256``.

    Notes
    -----
    The weights live in ``demo_cnn-<recipe version>.safetensors`` and the metadata in the
    ``.json`` file beside it, which also records the weights' SHA-256. Both are written to a
    temporary file first and moved into place with :func:`os.replace`, so an interrupted run never
    leaves a half-written file under the final name. A cache that cannot be read, or whose
    weights do not match their metadata, is logged as a warning and replaced by retraining. If the
    cache cannot be written, a warning is logged and the trained model is still returned.
    """
    return load_cached(
        "demo_cnn",
        demo_cnn,
        lambda: train_demo_model(progress=progress),
        RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )


def load_cached(
    name: str,
    build: Callable[[], nn.Module],
    train: Callable[[], tuple[nn.Module, dict[str, Any]]],
    version: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """A trained model from the cache, or trained by ``train`` and cached on first use.

    The weights live in ``<name>-<version>.safetensors`` (never pickle) and the metadata in the
    ``.json`` file beside it, with the weights' SHA-256; see :func:`load_demo_model`.

    Parameters
    ----------
    name
        File name stem.
    build
        Returns the untrained architecture, into which cached weights are loaded.
    train
        Returns ``(model, metadata)``; the metadata must be JSON-serialisable.
    version
        The recipe's version; a cache of another version is retrained.
    cache_dir, retrain
        As in :func:`load_demo_model`.
    """
    directory = cache_directory(cache_dir)
    weights_path = directory / f"{name}-{version}.safetensors"
    metadata_path = weights_path.with_suffix(".json")
    if not retrain and (weights_path.exists() or metadata_path.exists()):
        try:
            return _read_cache(weights_path, metadata_path, build, version)
        except _CACHE_ERRORS as error:
            logger.warning(
                "model cache %s is unreadable (%s: %s); retraining",
                weights_path,
                type(error).__name__,
                error,
            )
    model, metadata = train()
    metadata = {"recipe_version": version, **metadata}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        metadata = _write_cache(model, metadata, weights_path, metadata_path, version)
    except OSError as error:
        logger.warning("could not write the model cache %s: %s", weights_path, error)
    return model, metadata


def cache_directory(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder trained models are cached in: ``cache_dir``, else ``$LEANXAI_CACHE``, else
    ``~/.cache/leanxai``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "leanxai"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_cache(
    weights_path: Path, metadata_path: Path, build: Callable[[], nn.Module], version: str
) -> tuple[nn.Module, dict[str, Any]]:
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata is a {type(metadata).__name__}, not an object")
    if metadata.get("recipe_version") != version:
        raise ValueError(f"recipe version {metadata.get('recipe_version')!r}, expected {version!r}")
    if metadata.get("weights_sha256") != _sha256(weights_path):
        raise ValueError("the weights do not match the SHA-256 recorded in their metadata")
    model = build()
    model.load_state_dict(load_file(weights_path), strict=True)
    model.eval()
    logger.debug("loaded %s from %s", type(model).__name__, weights_path)
    return model, metadata


def _write_cache(
    model: nn.Module,
    metadata: dict[str, Any],
    weights_path: Path,
    metadata_path: Path,
    version: str,
) -> dict[str, Any]:
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    weights = save_safetensors(state, metadata={"recipe_version": version})
    metadata = {**metadata, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    # Weights first: weights without matching metadata read as a stale cache, never as a valid one.
    atomic_write_bytes(weights_path, weights, overwrite=True)
    atomic_write_text(metadata_path, json.dumps(metadata, indent=2) + "\n", overwrite=True)
    logger.info("cached %s in %s", type(model).__name__, weights_path)
    return metadata
