"""Four classifiers of increasing size for explanation-guided routing, and their data.

The tiers are :class:`~leanxai.zoo.cnn.SmallCNN` networks of growing width: TINY (about 9k
parameters), LIGHT (about 100k), MEDIUM (about 500k) and HEAVY (about 2M). LIGHT, MEDIUM and HEAVY
add two conv-BatchNorm-ReLU blocks after a further 2x2 max pooling, where the map is small, so that
parameters reach their size for a modest increase in compute. Every tier still ends in its last
ReLU, global average pooling and one linear layer, so Grad-CAM equals CAM on all of them; TINY, the
cheapest, is the probe whose maps a router reads.

The data vary in difficulty, so that the tiers differ where it matters:

- ``"shapes"``: :func:`mixed_shapes`, one object per image on backgrounds whose clutter, noise,
  texture, low contrast and occlusion grow with a severity spread evenly over ``[0, 1]``, 64x64 RGB;
- ``"mnist"``: :func:`corrupted_mnist`, MNIST-5k at 32x32 (the fixed split of
  :func:`~leanxai.zoo.digits.mnist_split`) with one corruption per image (none, gaussian noise,
  blur, rotation, occlusion or low contrast) at a random severity.

:func:`load_tiers` trains each tier once and caches it as ``tier_<dataset>_<tier>``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leanxai.zoo.cnn import SmallCNN, _conv_block
from leanxai.zoo.train import (
    HELD_OUT_SEED_OFFSET,
    TRAINING_THREADS,
    deterministic_training,
    fit_classifier,
    load_cached,
)

__all__ = [
    "CORRUPTIONS",
    "DIFFICULTIES",
    "TIERS",
    "TIERS_RECIPE_VERSION",
    "TierData",
    "build_tier",
    "corrupted_mnist",
    "load_tiers",
    "mixed_shapes",
    "tier_correct",
    "tier_data",
    "tier_version",
    "train_tier",
    "train_tiers",
]

logger = logging.getLogger(__name__)

TIERS: tuple[str, ...] = ("TINY", "LIGHT", "MEDIUM", "HEAVY")
"""Tier names, smallest first."""

TIERS_RECIPE_VERSION = "v5"
"""Bumped whenever the tiers' data or training recipe changes."""

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
"""Difficulty labels of :func:`mixed_shapes` (severity below 1/3, below 2/3, above)."""

SHAPES_SEVERITY_BINS = 10
"""Number of evenly spaced severity levels of :func:`mixed_shapes`."""

CORRUPTIONS: tuple[str, ...] = ("clean", "noise", "blur", "rotation", "occlusion", "contrast")
"""Corruption labels of :func:`corrupted_mnist`, ``"clean"`` meaning none."""

DATASETS: tuple[str, ...] = ("shapes", "mnist")

_DIGIT_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))

# (SmallCNN width, width of the two extra blocks or 0 for none).
_ARCHITECTURES: Mapping[str, tuple[int, int]] = {
    "TINY": (6, 0),
    "LIGHT": (12, 64),
    "MEDIUM": (24, 160),
    "HEAVY": (32, 384),
}

# The cache version of each tier: v2 tiers were trained before LIGHT and MEDIUM were reshaped so
# that FLOPs grow with the tier (v2's MEDIUM cost more than HEAVY).
# Shapes LIGHT v6 trains on three times the data (``extra_sets``): on 8,000 images it reached
# 0.820 on the routing test set, on 24,000 0.886, so that far more inputs stop at LIGHT.
# MNIST v4: trained under ``deterministic_training`` (one thread, deterministic algorithms), so
# a fresh cache holds the same weights on every run; earlier MNIST caches were trained at
# whatever thread count the process had and did not reproduce. The shapes tiers keep their
# versions: same recipe, and their cached weights (trained before) stay valid; a fresh shapes
# training now runs at one thread too and may differ from those caches in the last bits.
_TIER_VERSIONS: Mapping[tuple[str, str], str] = {
    ("shapes", "LIGHT"): "v6",
    ("mnist", "TINY"): "v4",
    ("mnist", "LIGHT"): "v4",
    ("mnist", "MEDIUM"): "v4",
    ("mnist", "HEAVY"): "v4",
}

_EASY_SEED_OFFSET = 3_000_017
# Extra training sets of a tier are drawn with seeds 5_000_000, 5_000_001, ...: apart from the
# training (0), held-out (1_000_003), router (2_000_003) and test (4_000_037) seeds.
_EXTRA_SEED_OFFSET = 5_000_000

# A curriculum starts on these alone: from the start, cluttered shapes leave the loss flat.
_EASY = frozenset({"easy", "clean"})


@dataclass(frozen=True)
class _Recipe:
    size: int
    in_channels: int
    num_classes: int
    n_train: int
    n_held_out: int
    epochs: Mapping[str, int]
    flip_and_rotate: bool
    easy_epochs: int = 0
    n_easy: int = 0
    # tier -> further sets of n_train fresh mixed_shapes images it trains on (shapes only)
    extra_sets: Mapping[str, int] = field(default_factory=dict)
    stem: bool = False
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4


# Changing any value changes the weights: bump TIERS_RECIPE_VERSION.
_RECIPES: Mapping[str, _Recipe] = {
    "shapes": _Recipe(
        size=64,
        in_channels=3,
        num_classes=4,
        n_train=8000,
        n_held_out=900,
        epochs={"TINY": 30, "LIGHT": 24, "MEDIUM": 24, "HEAVY": 24},
        flip_and_rotate=True,
        easy_epochs=10,
        n_easy=2000,
        extra_sets={"LIGHT": 2},
        stem=True,
        batch_size=32,
        lr=1e-2,
    ),
    "mnist": _Recipe(
        size=32,
        in_channels=1,
        num_classes=10,
        n_train=4000,
        n_held_out=1000,
        epochs={"TINY": 10, "LIGHT": 8, "MEDIUM": 6, "HEAVY": 6},
        flip_and_rotate=False,
    ),
}


@dataclass(frozen=True)
class TierData:
    """Images with a per-sample difficulty label.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` float32 in ``[0, 1]``.
    labels : torch.Tensor
        ``(N,)`` int64.
    masks : torch.Tensor
        ``(N, H, W)`` bool, the pixels of the labelled object (shapes) or the visible ink (MNIST).
    difficulty : tuple of str
        Per sample: a name of :data:`DIFFICULTIES` (shapes) or :data:`CORRUPTIONS` (MNIST).
    severity : torch.Tensor
        ``(N,)`` float32 in ``[0, 1]``: 0, 0.5, 1 for easy, medium, hard shapes; the corruption's
        severity for MNIST (0 for clean digits).
    classes : tuple of str
        Class names in label order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    difficulty: tuple[str, ...]
    severity: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> TierData:
        """The items at integer positions ``index``, in that order."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        return TierData(
            images=self.images[index],
            labels=self.labels[index],
            masks=self.masks[index],
            difficulty=tuple(self.difficulty[int(i)] for i in index),
            severity=self.severity[index],
            classes=self.classes,
        )


# --------------------------------------------------------------------------------------------
# Architectures


def build_tier(tier: str, num_classes: int, in_channels: int, *, stem: bool = False) -> SmallCNN:
    """The untrained network of one tier.

    ======  ==============================  ==========================  ===================
    tier    architecture                    parameters (3 ch, 4 cls)    MFLOPs (MNIST 32px)
    ======  ==============================  ==========================  ===================
    TINY    ``SmallCNN(width=6)``           8,818                       0.94
    LIGHT   ``SmallCNN(width=12)`` + 2      99,312                      3.9
            blocks of 64 channels
    MEDIUM  ``SmallCNN(width=24)`` + 2      505,884                     16.7
            blocks of 160 channels
    HEAVY   ``SmallCNN(width=32)`` + 2      2,013,732                   38.3
            blocks of 384 channels
    ======  ==============================  ==========================  ===================

    Parameters and FLOPs both grow with the tier. The extra blocks follow a 2x2 max pooling after
    SmallCNN's last ReLU, and the classifier is replaced by one over their channels. Every tier
    ends in ReLU, global average pooling and one linear layer.

    Parameters
    ----------
    tier : {"TINY", "LIGHT", "MEDIUM", "HEAVY"}
        The tier.
    num_classes : int
        Number of outputs.
    in_channels : int
        Number of input channels.
    stem : bool, default False
        Start with a 2x2 average pooling (``features[0]``), so a 64x64 input costs what a 32x32
        one does; the shapes tiers use it.

    Returns
    -------
    SmallCNN
        In training mode.
    """
    if tier not in _ARCHITECTURES:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    width, extra = _ARCHITECTURES[tier]
    model = SmallCNN(num_classes=num_classes, in_channels=in_channels, width=width)
    if extra:
        channels = 4 * width
        blocks: list[nn.Module] = [nn.MaxPool2d(2)]
        for _ in range(2):
            blocks += _conv_block(channels, extra, batch_norm=True)
            channels = extra
        model.features.extend(blocks)
        model.classifier = nn.Linear(channels, num_classes)
    if stem:
        model.features.insert(0, nn.AvgPool2d(2))
    return model


# --------------------------------------------------------------------------------------------
# Data


def mixed_shapes(n: int, seed: int, size: int = 64) -> TierData:
    """Synthetic shapes, one object each, at severities spread evenly over ``[0, 1]``, shuffled.

    The ``n`` images are split over :data:`SHAPES_SEVERITY_BINS` severity bins (the first
    ``n % bins`` bins get one more); bin ``b`` has severity ``s = (b + 0.5) / bins`` and is drawn by
    :func:`~leanxai.data.shapes.make_shapes` with one object and

    ==========  ====================
    knob        value at severity s
    ==========  ====================
    clutter     ``0.7 s``
    noise       ``0.02 + 0.06 s``
    texture     ``0.1 s``
    contrast    ``1 - 0.5 s``
    occlusion   ``0.3 s``
    ==========  ====================

    so a larger model earns its cost on the cluttered, low-contrast end while the clean end is
    easy for all. (Recipe v3 mixed the ``easy``, ``medium`` and ``hard`` presets, whose two and
    three objects left every tier near chance on the hard third.) The ``difficulty`` label is
    ``"easy"`` below severity 1/3, ``"medium"`` below 2/3, ``"hard"`` above.

    Parameters
    ----------
    n : int
        Number of images, at least :data:`SHAPES_SEVERITY_BINS`.
    seed : int
        Seed; each bin is drawn with its own seed derived from it, and the order shuffled with it.
    size : int, default 64
        Image side.

    Returns
    -------
    TierData
        ``severity`` the bin's ``s``; ``difficulty`` in :data:`DIFFICULTIES`.
    """
    from leanxai.data.shapes import CLASSES, make_shapes

    bins = SHAPES_SEVERITY_BINS
    if isinstance(n, bool) or not isinstance(n, int) or n < bins:
        raise ValueError(f"n must be an int >= {bins}, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    parts = []
    levels: list[float] = []
    for b in range(bins):
        count = n // bins + (1 if b < n % bins else 0)
        s = (b + 0.5) / bins
        parts.append(
            make_shapes(
                count,
                size=size,
                seed=bins * seed + b,
                clutter=0.7 * s,
                noise=0.02 + 0.06 * s,
                texture=0.1 * s,
                contrast=1.0 - 0.5 * s,
                occlusion=0.3 * s,
                objects=1,
            )
        )
        levels += [s] * count
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    severity = torch.tensor(levels, dtype=torch.float32)[order]
    names = tuple(DIFFICULTIES[min(int(3 * float(s)), 2)] for s in severity)
    return TierData(
        images=torch.cat([p.images for p in parts])[order].contiguous(),
        labels=torch.cat([p.labels for p in parts])[order],
        masks=torch.cat([p.masks for p in parts])[order].contiguous(),
        difficulty=names,
        severity=severity,
        classes=CLASSES,
    )


def corrupted_mnist(
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    seed: int,
    *,
    classes: tuple[str, ...] = _DIGIT_CLASSES,
) -> TierData:
    """Corrupt each digit with one of :data:`CORRUPTIONS` at a random severity.

    Each image draws a corruption uniformly among the six (``"clean"`` included) and a severity
    ``s`` uniformly in ``[0, 1]``:

    - ``noise``: gaussian noise of standard deviation ``0.15 + 0.45 s``;
    - ``blur``: gaussian blur of standard deviation ``0.6 + 1.6 s`` pixels;
    - ``rotation``: by ``+-(20 + 55 s)`` degrees about the centre (bilinear, zeros outside);
    - ``occlusion``: a square of side ``(0.25 + 0.3 s)`` of the image, in a random grey, centred
      in the middle half of the image;
    - ``contrast``: ``0.5 + c (x - 0.5)`` with ``c = 0.45 - 0.35 s``, plus gaussian noise of
      standard deviation 0.03.

    Results are clipped to ``[0, 1]``. Masks follow rotation (nearest) and lose occluded pixels.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, 1, H, W)`` float32 in ``[0, 1]``, e.g. from :func:`~leanxai.zoo.digits.mnist_split`.
    labels : torch.Tensor
        ``(N,)`` int64.
    masks : torch.Tensor
        ``(N, H, W)`` bool ink masks.
    seed : int
        Seed of a private generator; the global RNG is not touched.
    classes : tuple of str
        Class names.

    Returns
    -------
    TierData
        ``difficulty`` in :data:`CORRUPTIONS`, ``severity`` ``s`` (0 for clean digits).
    """
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got {tuple(images.shape)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    n, _, height, width = images.shape
    generator = torch.Generator().manual_seed(seed)
    kind = torch.randint(0, len(CORRUPTIONS), (n,), generator=generator)
    severity = torch.rand(n, generator=generator)
    # Every random quantity is drawn for every image, so one corruption's draws do not depend on
    # which images got the others.
    noise = torch.randn(images.shape, generator=generator)
    sign = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
    centre = torch.rand(n, 2, generator=generator) * 0.5 + 0.25
    grey = torch.rand(n, generator=generator)
    severity = torch.where(kind == 0, torch.zeros_like(severity), severity)

    out = images.clone()
    out_masks = masks.clone()
    col = severity.view(n, 1, 1, 1)

    def pick(name: str) -> torch.Tensor:
        return kind == CORRUPTIONS.index(name)

    chosen = pick("noise")
    out[chosen] = images[chosen] + (0.15 + 0.45 * col[chosen]) * noise[chosen]

    chosen = pick("blur")
    if chosen.any():
        out[chosen] = _gaussian_blur(images[chosen], 0.6 + 1.6 * severity[chosen])

    chosen = pick("rotation")
    if chosen.any():
        angle = sign[chosen] * (20.0 + 55.0 * severity[chosen]) * math.pi / 180.0
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                torch.stack([sin, cos, torch.zeros_like(cos)], 1),
            ],
            1,
        )  # (b, 2, 3)
        grid = F.affine_grid(theta, [int(chosen.sum()), 1, height, width], align_corners=False)
        out[chosen] = F.grid_sample(images[chosen], grid, align_corners=False)
        rotated = F.grid_sample(
            masks[chosen][:, None].float(), grid, mode="nearest", align_corners=False
        )
        out_masks[chosen] = rotated[:, 0] > 0.5

    chosen = pick("occlusion")
    if chosen.any():
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
        half = (0.25 + 0.3 * severity[chosen]).view(-1, 1, 1) / 2
        inside = ((ys.view(1, -1, 1) - centre[chosen, 0].view(-1, 1, 1)).abs() < half) & (
            (xs.view(1, 1, -1) - centre[chosen, 1].view(-1, 1, 1)).abs() < half
        )  # (b, H, W)
        fill = grey[chosen].view(-1, 1, 1).expand_as(inside)
        out[chosen] = torch.where(inside, fill, images[chosen][:, 0])[:, None]
        out_masks[chosen] = masks[chosen] & ~inside

    chosen = pick("contrast")
    factor = 0.45 - 0.35 * col[chosen]
    out[chosen] = 0.5 + factor * (images[chosen] - 0.5) + 0.03 * noise[chosen]

    return TierData(
        images=out.clamp_(0.0, 1.0).contiguous(),
        labels=labels.clone(),
        masks=out_masks,
        difficulty=tuple(CORRUPTIONS[int(k)] for k in kind),
        severity=severity,
        classes=classes,
    )


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each ``(1, H, W)`` image of ``(B, 1, H, W)`` with its own ``sigma`` ``(B,)``."""
    b = images.shape[0]
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, k)
    x = images.transpose(0, 1)  # (1, B, H, W): one group per image
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(b, 1, 1, -1), groups=b)
    x = F.conv2d(x, kernel.view(b, 1, -1, 1), groups=b)
    return x.transpose(0, 1)


def tier_data(dataset: str, split: str = "train", *, seed: int = 0) -> TierData:
    """The fixed training or held-out data of one data set.

    Parameters
    ----------
    dataset : {"shapes", "mnist"}
        ``"shapes"``: :func:`mixed_shapes` of 8,000 (train) or 900 (held out) 64x64 images,
        the held-out ones with another seed. ``"mnist"``: :func:`corrupted_mnist` of the 4,000
        training and 1,000 held-out digits of :func:`~leanxai.zoo.digits.mnist_split`, each
        corrupted with its own seed.
    split : {"train", "held_out"}
        Which part.
    seed : int, default 0
        Seed of the data.

    Returns
    -------
    TierData
        Generated once per process and shared: do not modify its tensors in place.
    """
    if dataset not in _RECIPES:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    return _tier_data(dataset, split, seed)


@functools.lru_cache(maxsize=4)
def _tier_data(dataset: str, split: str, seed: int) -> TierData:
    recipe = _RECIPES[dataset]
    data_seed = seed if split == "train" else seed + HELD_OUT_SEED_OFFSET
    if dataset == "shapes":
        n = recipe.n_train if split == "train" else recipe.n_held_out
        return mixed_shapes(n, data_seed, size=recipe.size)
    from leanxai.zoo.digits import mnist_split

    train, held_out = mnist_split()
    part = train if split == "train" else held_out
    assert part.masks is not None  # MNIST has ink masks
    return corrupted_mnist(
        part.images, part.labels, part.masks, data_seed, classes=tuple(part.classes)
    )


# --------------------------------------------------------------------------------------------
# Training


@torch.inference_mode()
def tier_correct(
    models: Sequence[nn.Module], inputs: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Which model classifies which input correctly: ``(N, len(models))`` bool.

    The smallest tier that suffices for input ``i`` is the first ``True`` of row ``i``.
    """
    columns = []
    for model in models:
        was_training = model.training
        model.eval()
        try:
            predicted = torch.cat(
                [model(inputs[s : s + 256]).argmax(1) for s in range(0, inputs.shape[0], 256)]
            )
        finally:
            model.train(was_training)
        columns.append(predicted == labels)
    return torch.stack(columns, 1)


def _concat(parts: Sequence[TierData]) -> TierData:
    return TierData(
        images=torch.cat([p.images for p in parts]),
        labels=torch.cat([p.labels for p in parts]),
        masks=torch.cat([p.masks for p in parts]),
        difficulty=tuple(d for p in parts for d in p.difficulty),
        severity=torch.cat([p.severity for p in parts]),
        classes=parts[0].classes,
    )


def _accuracy_by(correct: torch.Tensor, groups: Sequence[str]) -> dict[str, float]:
    result = {}
    for name in dict.fromkeys(sorted(groups)):
        chosen = torch.tensor([g == name for g in groups])
        result[name] = float(correct[chosen].float().mean())
    return result


def train_tier(
    dataset: str,
    tier: str,
    *,
    seed: int = 0,
    progress: bool = True,
    n_train: int | None = None,
    n_held_out: int | None = None,
    epochs: int | None = None,
) -> tuple[SmallCNN, dict[str, Any]]:
    """Train one tier on :func:`tier_data`, with :func:`~leanxai.zoo.train.fit_classifier`.

    Adam with a one-cycle learning rate, weight decay 1e-4, channels-last; MNIST: peak 3e-3,
    batch 64; shapes: peak 1e-2, batch 32, flips and 90-degree rotations (digits are not invariant
    to them), and a curriculum: 10 epochs (one cycle) on 2,000 fresh images of the ``easy``
    preset, then the recipe's epochs (another cycle) on the mixture, since cluttered shapes from
    the start leave the loss flat; the shapes tiers start with a 2x2 average pooling (``stem``).
    The shapes LIGHT tier trains on 24,000 images: the 8,000 of :func:`tier_data` and two more
    sets of 8,000 drawn by :func:`mixed_shapes` with their own seeds.

    Training runs under :func:`~leanxai.zoo.train.deterministic_training` (one thread,
    deterministic algorithms, both restored after): with the seeded initial weights and data
    order, the same ``seed`` gives the same weights bit for bit on a machine, whatever the
    caller's thread count.

    Parameters
    ----------
    dataset : {"shapes", "mnist"}
        The data set.
    tier : {"TINY", "LIGHT", "MEDIUM", "HEAVY"}
        The tier.
    seed : int, default 0
        Seed of the initial weights and the shuffling (the data are fixed).
    progress : bool, default True
        Show a progress bar.
    n_train, n_held_out, epochs : int, optional
        Use only the first ``n_train`` training or ``n_held_out`` held-out items, or another
        number of epochs, than the recipe's; for quick tests. The cache holds the recipe only.

    Returns
    -------
    model : SmallCNN
        Trained, in eval mode.
    metadata : dict
        JSON-serialisable: ``parameters``, ``training_seconds``, ``held_out_accuracy`` and
        ``held_out_accuracy_by_difficulty``, and the recipe.
    """
    if dataset not in _RECIPES:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    recipe = _RECIPES[dataset]
    start = time.perf_counter()
    train = tier_data(dataset, "train")
    held_out = tier_data(dataset, "held_out")
    extra_sets = recipe.extra_sets.get(tier, 0)
    if extra_sets and n_train is None:
        train = _concat(
            [train]
            + [
                mixed_shapes(recipe.n_train, _EXTRA_SEED_OFFSET + k, size=recipe.size)
                for k in range(extra_sets)
            ]
        )
    if n_train is not None:
        train = train.subset(torch.arange(min(n_train, len(train))))
    if n_held_out is not None:
        held_out = held_out.subset(torch.arange(min(n_held_out, len(held_out))))
    n_epochs = recipe.epochs[tier] if epochs is None else epochs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_tier(tier, recipe.num_classes, recipe.in_channels, stem=recipe.stem)
    stages = [("all", train, n_epochs)]
    # The easy stage comes before the recipe's epochs on the mixture; a quick run (``epochs``
    # given) spends one of its epochs there.
    easy_epochs = recipe.easy_epochs if epochs is None else min(recipe.easy_epochs, 1)
    if easy_epochs > 0 and n_epochs > 1:
        if recipe.n_easy:
            from leanxai.data.shapes import make_shapes

            n_easy = recipe.n_easy if n_train is None else min(recipe.n_easy, n_train)
            fresh = make_shapes(
                n_easy, size=recipe.size, seed=seed + _EASY_SEED_OFFSET, difficulty="easy"
            )
            easy = TierData(
                fresh.images,
                fresh.labels,
                fresh.masks,
                ("easy",) * len(fresh),
                torch.zeros(len(fresh)),
                fresh.classes,
            )
        else:
            easy = train.subset([i for i, d in enumerate(train.difficulty) if d in _EASY])
        if len(easy) > 0:
            mixed_epochs = n_epochs if epochs is None else n_epochs - easy_epochs
            stages = [("easy", easy, easy_epochs), ("all", train, mixed_epochs)]
    # One thread and deterministic algorithms for the training only (restored after): the
    # same seed then gives the same weights bit for bit, whatever the caller's thread count.
    with deterministic_training():
        for i, (name, part, stage_epochs) in enumerate(stages):
            fit_classifier(
                model,
                part.images,
                part.labels,
                epochs=stage_epochs,
                batch_size=recipe.batch_size,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                seed=seed + i,
                flip_and_rotate=recipe.flip_and_rotate,
                channels_last=True,
                progress=progress,
                desc=f"{dataset} {tier} ({name})",
            )
    model.eval()
    seconds = time.perf_counter() - start
    correct = tier_correct([model], held_out.images, held_out.labels)[:, 0]
    accuracy = float(correct.float().mean())
    logger.info(
        "trained %s tier %s in %.1f s, held-out accuracy %.3f", dataset, tier, seconds, accuracy
    )
    return model, {
        "architecture": "SmallCNN",
        "tier": tier,
        "dataset": dataset,
        "width": _ARCHITECTURES[tier][0],
        "extra_width": _ARCHITECTURES[tier][1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed": seed,
        "epochs": n_epochs,
        "n_train": len(train),
        "n_held_out": len(held_out),
        "held_out_accuracy": accuracy,
        "held_out_accuracy_by_difficulty": _accuracy_by(correct, held_out.difficulty),
        "classes": list(held_out.classes),
        "input_size": [recipe.in_channels, recipe.size, recipe.size],
        "training_seconds": round(seconds, 2),
        "torch_threads": TRAINING_THREADS,
        "deterministic": True,
    }


def train_tiers(
    dataset: str = "shapes", seed: int = 0, progress: bool = True
) -> dict[str, tuple[SmallCNN, dict[str, Any]]]:
    """Train all four tiers on one data set (no cache); see :func:`train_tier`."""
    return {tier: train_tier(dataset, tier, seed=seed, progress=progress) for tier in TIERS}


def tier_version(dataset: str, tier: str) -> str:
    """The cache version of one trained tier (part of its cache file name)."""
    return _TIER_VERSIONS.get((dataset, tier), TIERS_RECIPE_VERSION)


def load_tiers(
    dataset: str = "shapes",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    retrain: bool = False,
) -> dict[str, tuple[SmallCNN, dict[str, Any]]]:
    """The four trained tiers of one data set, from the cache or trained once.

    Each tier is cached on its own as ``tier_<dataset>_<tier>-<version>.safetensors`` with its
    metadata (:func:`~leanxai.zoo.train.load_cached`), so an interrupted run keeps the tiers it
    finished.

    Parameters
    ----------
    dataset : {"shapes", "mnist"}
        The data set.
    cache_dir, progress, retrain
        As in :func:`~leanxai.zoo.train.load_demo_model`.

    Returns
    -------
    dict
        ``{tier: (model, metadata)}`` in :data:`TIERS` order, models in eval mode.
    """
    if dataset not in _RECIPES:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    recipe = _RECIPES[dataset]
    result = {}
    for tier in TIERS:
        result[tier] = load_cached(
            f"tier_{dataset}_{tier.lower()}",
            functools.partial(
                build_tier, tier, recipe.num_classes, recipe.in_channels, stem=recipe.stem
            ),
            functools.partial(train_tier, dataset, tier, progress=progress),
            tier_version(dataset, tier),
            cache_dir=cache_dir,
            retrain=retrain,
        )
    return result
