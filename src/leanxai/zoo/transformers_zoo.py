"""Small vision transformers from transformers configs, trained here on the shapes data.

- :func:`shapes_vit`: a ViT with 8x8 patches on 64x64 images (an 8x8 grid and a class token; the
  head reads the class token), 4 blocks of width 64.
- :func:`shapes_swin`: a Swin-like model (4x4 patches, windows of 4, two stages: a 16x16 then an
  8x8 grid; the head mean-pools the last tokens).

:func:`load_shapes_vit` and :func:`load_shapes_swin` train them once on
:func:`leanxai.data.shapes.make_shapes` (the demo CNN's curriculum: clean shapes first, then the
default clutter and noise; flips and 90-degree rotations) and cache the weights as safetensors,
like the demo CNN (:func:`leanxai.zoo.train.load_cached`); the metadata records the held-out
accuracy reached.

Recipe v2: AdamW (peak learning rate 1e-3, weight decay 0.05 on matrices only), linear warm-up
over 5 % of the steps then cosine decay, label smoothing 0.1, gradient norm clipped at 1, batch 64;
3000 images, 24 epochs of clean shapes then 12 of cluttered ones; ViT width 64 (was 96).

Status: v1 (3000 images, 6 and 5 epochs, Adam one-cycle at 2e-3) stayed at chance (held-out
0.248 ViT, 0.250 Swin). Short runs of v2's optimiser on 2,000 clean images (one thread) learn, but
slowly: the ViT's loss fell from 1.39 to 1.26 in 30 epochs (clean accuracy 0.43, held-out
cluttered 0.32, 97 s); batch 16, peak 3e-3, 8x8 patches with a mean-pooled head and 4x4 patches
were no faster. The full v2 ViT run (one thread, shared 2-core machine, 319 s) reaches 0.356
held-out accuracy: above chance, far below the demo CNN's 0.92. The Swin was not retrained under
v2 (it would take several times longer). See the metadata's ``held_out_accuracy`` before reading
any localisation result.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from leanxai.data.shapes import CLASSES, make_shapes
from leanxai.zoo.train import (
    DEMO_N_HELD_OUT,
    DEMO_SIZE,
    HELD_OUT_SEED_OFFSET,
    _random_dihedral,
    accuracy,
    deterministic_training,
    load_cached,
)

__all__ = [
    "TRANSFORMER_RECIPE_VERSION",
    "load_shapes_swin",
    "load_shapes_vit",
    "shapes_swin",
    "shapes_vit",
    "train_shapes_transformer",
]

TRANSFORMER_RECIPE_VERSION = "v2"
"""Part of the cache file names; bumped whenever the recipe changes the weights."""

_N_TRAIN = 3000
_CLEAN_SEED_OFFSET = 2_000_003
_CLEAN_EPOCHS = {"vit": 24, "swin": 24}
_CLUTTERED_EPOCHS = {"vit": 12, "swin": 12}
_LR = {"vit": 1e-3, "swin": 1e-3}
_WEIGHT_DECAY = 0.05
_WARMUP_FRACTION = 0.05
_LABEL_SMOOTHING = 0.1
_CLIP_NORM = 1.0
_BATCH_SIZE = 64


def shapes_vit() -> nn.Module:
    """The zoo ViT's architecture, untrained (``ViTForImageClassification``, 8x8 patches)."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(  # type: ignore[call-arg]
        image_size=DEMO_SIZE,
        patch_size=8,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={name: i for i, name in enumerate(CLASSES)},
    )
    return ViTForImageClassification(config).eval()


def shapes_swin() -> nn.Module:
    """The zoo Swin's architecture, untrained (``SwinForImageClassification``, mean-pooled head)."""
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(  # type: ignore[call-arg]
        image_size=DEMO_SIZE,
        patch_size=4,
        num_channels=3,
        embed_dim=48,
        depths=[2, 2],
        num_heads=[3, 6],
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.0,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={name: i for i, name in enumerate(CLASSES)},
    )
    return SwinForImageClassification(config).eval()


class _Logits(nn.Module):
    """Training adapter: the wrapped model's ``.logits`` (shares its parameters)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


_BUILDERS = {"vit": shapes_vit, "swin": shapes_swin}


def train_shapes_transformer(
    kind: str, *, seed: int = 0, progress: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the zoo ``"vit"`` or ``"swin"`` on shapes; return it (eval mode) and its metadata."""
    if kind not in _BUILDERS:
        raise ValueError(f"kind must be one of {sorted(_BUILDERS)}, got {kind!r}")
    start = time.perf_counter()
    clean_epochs, cluttered_epochs = _CLEAN_EPOCHS[kind], _CLUTTERED_EPOCHS[kind]
    epochs = clean_epochs + cluttered_epochs
    clean = make_shapes(
        _N_TRAIN, size=DEMO_SIZE, seed=seed + _CLEAN_SEED_OFFSET, clutter=0.0, noise=0.0
    )
    cluttered = make_shapes(_N_TRAIN, size=DEMO_SIZE, seed=seed)
    held_out = make_shapes(DEMO_N_HELD_OUT, size=DEMO_SIZE, seed=seed + HELD_OUT_SEED_OFFSET)
    with torch.random.fork_rng(devices=[]), deterministic_training():
        torch.manual_seed(seed)
        model = _BUILDERS[kind]()
        adapter = _Logits(model)
        schedule = [clean] * clean_epochs + [cluttered] * cluttered_epochs
        _fit(adapter, schedule, lr=_LR[kind], seed=seed, progress=progress, desc=f"zoo {kind}")
        model.eval()
        held_out_accuracy = accuracy(adapter, held_out.images, held_out.labels)
    metadata: dict[str, Any] = {
        "architecture": type(model).__name__,
        "seed": seed,
        "epochs": epochs,
        "clean_epochs": clean_epochs,
        "n_train": _N_TRAIN,
        "n_held_out": DEMO_N_HELD_OUT,
        "held_out_accuracy": held_out_accuracy,
        "classes": list(CLASSES),
        "input_size": [3, DEMO_SIZE, DEMO_SIZE],
        "training_seconds": round(time.perf_counter() - start, 2),
    }
    return model, metadata


def _fit(
    model: nn.Module,
    schedule: list[Any],
    *,
    lr: float,
    seed: int,
    progress: bool,
    desc: str,
) -> list[float]:
    """Train ``model`` in place, one epoch per entry of ``schedule`` (a shapes dataset each).

    AdamW with weight decay on weight matrices only (not biases, norms, embeddings), a linear
    warm-up then cosine decay, label smoothing, gradient clipping and random flips and 90-degree
    rotations. Returns the loss of every step.
    """
    steps_per_epoch = _N_TRAIN // _BATCH_SIZE
    total = len(schedule) * steps_per_epoch
    warmup = max(1, int(total * _WARMUP_FRACTION))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": _WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
    )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.train()
    with tqdm(total=total, desc=desc, unit="batch", disable=not progress) as bar:
        for data in schedule:
            order = torch.randperm(data.labels.shape[0], generator=generator)
            for step in range(steps_per_epoch):
                index = order[step * _BATCH_SIZE : (step + 1) * _BATCH_SIZE]
                x = _random_dihedral(data.images[index], generator)
                loss = F.cross_entropy(
                    model(x), data.labels[index], label_smoothing=_LABEL_SMOOTHING
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), _CLIP_NORM)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
    model.eval()
    return losses


def _load(
    kind: str, cache_dir: str | os.PathLike[str] | None, retrain: bool, progress: bool
) -> tuple[nn.Module, dict[str, Any]]:
    model, metadata = load_cached(
        f"shapes_{kind}",
        _BUILDERS[kind],
        lambda: train_shapes_transformer(kind, progress=progress),
        TRANSFORMER_RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )
    return model.eval(), metadata


def load_shapes_vit(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    retrain: bool = False,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained zoo ViT and its metadata, from the cache or trained and cached on first use."""
    return _load("vit", cache_dir, retrain, progress)


def load_shapes_swin(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    retrain: bool = False,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained zoo Swin and its metadata, from the cache or trained and cached on first use."""
    return _load("swin", cache_dir, retrain, progress)
