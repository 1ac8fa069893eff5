"""Models and data for measuring compression: the paper's dense network, MNIST-5k and shapes.

Each setting gives a trained model, a calibration set (training inputs only) and held-out data,
for a seed:

- ``"dense"``: the paper's setting, a 3-layer ReLU network (``40 -> 128 -> 64 -> 5``) on
  scikit-learn's ``make_classification`` (40 features, 10 informative, 5 classes), standardised
  with the training part's statistics; trained in about two seconds.
- ``"mnist"``: the :class:`~leanxai.zoo.SmallCNN` of :mod:`leanxai.zoo.digits` on MNIST-5k (32x32,
  one channel); seed 0 is the zoo's cached model, other seeds are trained with the same recipe
  and cached beside it.
- ``"shapes"``: the demo :class:`~leanxai.zoo.SmallCNN` on synthetic shapes; held-out images come
  from the seeds the demo recipe holds out.

Used by ``benchmarks/compression.py`` and the tests; nothing here is needed to compress a model
(the reference size, :func:`~leanxai.compress.float32_size`, is part of the library).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanxai.core import validate
from leanxai.zoo.train import accuracy

__all__ = [
    "DENSE_HIDDEN",
    "REAL_RECIPES",
    "REAL_SETTINGS",
    "SETTINGS",
    "LogitsOf",
    "Setting",
    "accuracy",
    "dense_net",
    "dense_split",
    "load_lite0_setting",
    "load_real_setting",
    "load_setting",
    "photo_crops",
    "real_model",
    "train_dense",
]

SETTINGS: tuple[str, ...] = ("dense", "mnist", "shapes")
"""Names :func:`load_setting` accepts."""

DENSE_HIDDEN: tuple[int, int] = (128, 64)
"""Hidden widths of the paper's dense network."""

_DENSE_SAMPLES = 6000
_DENSE_TEST = 0.25
_DENSE_EPOCHS = 40


@dataclass(frozen=True)
class Setting:
    """A trained model with its calibration and held-out data.

    Attributes
    ----------
    name : str
        ``"dense"``, ``"mnist"`` or ``"shapes"``.
    seed : int
        Seed of the model's training (and of the dense network's data).
    model : nn.Module
        The trained model, in eval mode.
    calibration : torch.Tensor
        ``(N, ...)`` training inputs, for relevance and fine-tuning.
    inputs, labels : torch.Tensor
        Held-out inputs and their labels.
    metadata : dict
        How the model was trained.
    """

    name: str
    seed: int
    model: nn.Module
    calibration: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor
    metadata: dict[str, Any]


def dense_net(
    n_features: int = 40, n_classes: int = 5, hidden: tuple[int, int] = DENSE_HIDDEN
) -> nn.Sequential:
    """The paper's 3-layer dense ReLU network, untrained: Linear-ReLU-Linear-ReLU-Linear."""
    return nn.Sequential(
        nn.Linear(n_features, hidden[0]),
        nn.ReLU(),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Linear(hidden[1], n_classes),
    )


def dense_split(
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``make_classification`` data of the dense setting: ``(x_train, y_train, x_test, y_test)``.

    6,000 samples, 40 features of which 10 informative (and 10 redundant), 5 classes, one
    cluster per class, 25 % held out (stratified); standardised with the training part's mean and
    standard deviation. The same seed always gives the same data.
    """
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=_DENSE_SAMPLES,
        n_features=40,
        n_informative=10,
        n_redundant=10,
        n_classes=5,
        n_clusters_per_class=1,
        random_state=seed,
    )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=_DENSE_TEST, random_state=seed, stratify=y
    )
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    return (
        torch.tensor((x_train - mean) / std, dtype=torch.float32),
        torch.tensor(y_train, dtype=torch.int64),
        torch.tensor((x_test - mean) / std, dtype=torch.float32),
        torch.tensor(y_test, dtype=torch.int64),
    )


def train_dense(seed: int = 0) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train :func:`dense_net` on :func:`dense_split` (Adam, one-cycle, 40 epochs, batch 64)."""
    from leanxai.zoo.train import fit_classifier

    x_train, y_train, x_test, y_test = dense_split(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = dense_net()
    fit_classifier(model, x_train, y_train, epochs=_DENSE_EPOCHS, batch_size=64, lr=3e-3, seed=seed)
    model.eval()
    return model, {
        "architecture": "dense 40-128-64-5",
        "seed": seed,
        "held_out_accuracy": accuracy(model, x_test, y_test),
    }


def _mnist_model(
    seed: int, cache_dir: str | os.PathLike[str] | None
) -> tuple[nn.Module, dict[str, Any]]:
    from leanxai.zoo.digits import MNIST_RECIPE_VERSION, load_mnist_model, mnist_cnn
    from leanxai.zoo.digits import train_mnist_model as train
    from leanxai.zoo.train import load_cached

    if seed == 0:
        return load_mnist_model(cache_dir, progress=False)
    return load_cached(
        f"mnist_cnn_seed{seed}",
        mnist_cnn,
        lambda: train(seed=seed, progress=False),
        MNIST_RECIPE_VERSION,
        cache_dir=cache_dir,
    )


def _shapes_model(
    seed: int, cache_dir: str | os.PathLike[str] | None
) -> tuple[nn.Module, dict[str, Any]]:
    from leanxai.zoo.train import RECIPE_VERSION, demo_cnn, load_cached, load_demo_model
    from leanxai.zoo.train import train_demo_model as train

    if seed == 0:
        return load_demo_model(cache_dir, progress=False)
    return load_cached(
        f"demo_cnn_seed{seed}",
        demo_cnn,
        lambda: train(seed=seed, progress=False),
        RECIPE_VERSION,
        cache_dir=cache_dir,
    )


def load_setting(
    name: str,
    seed: int = 0,
    *,
    calibration: int = 256,
    held_out: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Setting:
    """A trained model of a setting with its calibration and held-out data.

    Parameters
    ----------
    name : {"dense", "mnist", "shapes"}
        The setting (see the module's docstring).
    seed : int, default 0
        Training seed. CNNs of seeds other than 0 are trained once (about a minute each on
        two cores) and cached.
    calibration : int, default 256
        Number of training inputs in the calibration set (the first ones of the training part,
        in a seeded random order).
    held_out : int, optional
        Use only the first ``held_out`` held-out samples (all by default: 1,500 dense, 1,000
        MNIST, 500 shapes).
    cache_dir : str or path-like, optional
        Model cache (default as in :func:`~leanxai.zoo.load_demo_model`).
    """
    validate.choice("name", name, SETTINGS)
    seed = validate.non_negative_int("seed", seed)
    calibration = validate.positive_int("calibration", calibration)
    held_out = validate.optional_positive_int("held_out", held_out)
    generator = torch.Generator().manual_seed(seed)
    model: nn.Module
    if name == "dense":
        x_train, _, x_test, y_test = dense_split(seed)
        model, metadata = train_dense(seed)
    elif name == "mnist":
        from leanxai.zoo.digits import mnist_split

        train, test = mnist_split()
        x_train, x_test, y_test = train.images, test.images, test.labels
        model, metadata = _mnist_model(seed, cache_dir)
    else:
        from leanxai.data.shapes import make_shapes
        from leanxai.zoo.train import (
            DEMO_N_HELD_OUT,
            DEMO_N_TRAIN,
            DEMO_SIZE,
            HELD_OUT_SEED_OFFSET,
        )

        # The training images of this seed's model, and the images its recipe held out.
        n_train = min(DEMO_N_TRAIN, max(calibration, 512))
        x_train = make_shapes(n_train, size=DEMO_SIZE, seed=seed).images
        test_data = make_shapes(DEMO_N_HELD_OUT, size=DEMO_SIZE, seed=seed + HELD_OUT_SEED_OFFSET)
        x_test, y_test = test_data.images, test_data.labels
        model, metadata = _shapes_model(seed, cache_dir)
    order = torch.randperm(x_train.shape[0], generator=generator)[:calibration]
    if held_out is not None:
        x_test, y_test = x_test[:held_out], y_test[:held_out]
    model.eval()
    return Setting(name, seed, model, x_train[order], x_test, y_test, dict(metadata))


# -- Real architectures (issue 22) ----------------------------------------------------------------

REAL_SETTINGS: tuple[str, ...] = ("resnet", "mobilenet")
"""Names :func:`load_real_setting` accepts: small transformers ResNet and MobileNetV2 configs."""

# real-v1 (32x32 default-clutter shapes, 6 epochs) left both models near chance (24-32 %): the
# transformers ResNet stem (7x7 stride-2 conv, then max-pool) shrinks a 32x32 shape to a few
# pixels, and even clean 32x32 shapes were not fitted in 10 epochs. At 64x64 on the "easy" preset
# (no clutter, light noise) the ResNet reaches 0.90 in 10 epochs (recipe real-v2). The
# MobileNetV2 config did not learn with that recipe (0.27 held out, loss flat at ln 4); it has its
# own recipe, below, so that the ResNets cached under real-v2 stay valid.
_REAL_SIZE = 64
_REAL_DIFFICULTY = "easy"
_REAL_N_TRAIN = 3000
_REAL_N_HELD_OUT = 500
_REAL_EPOCHS = 10
_REAL_BATCH = 32
_REAL_LR = 3e-3
_REAL_RECIPE = "real-v2"

# MobileNetV2 (recipe real-mobilenet-v1): transformers 5 initialises its convolutions with
# normal(0, 0.02) (config.initializer_range; the ResNet config uses He initialisation), and at
# that scale the first convolution's gradient is ~300x its weights (behind 52 BatchNorms, Adam's
# relative step is large). It can memorise 64 shapes in 60 steps but stays at chance on 3,000.
# Probes on seed 0 (held out after 4-10 epochs, one thread): classifier dropout 0.2 in place of
# 0.8, 0.29-0.32; peak lr 1e-3 or 3e-4, 0.25-0.29; He initialisation (torchvision's), depth
# multiplier 0.5, output stride 16, zero-initialised last BatchNorm of residual blocks, 0.26-0.31.
# He initialisation with the residual blocks' last BatchNorm at zero (each block starts as the
# identity, timm's zero_init_last) and 16 epochs: the loss leaves ln 4 after ~600 steps, as the
# ResNet's does after ~300. Held out 0.938, 0.386, 0.760, 0.408, 0.548 (seeds 0-4): it learns,
# unevenly (the ResNet's real-v2 seeds: 0.904, 0.726, 0.984, 0.614, 0.660).
_MOBILENET_DEPTH_MULTIPLIER = 0.35
_MOBILENET_DROPOUT = 0.2
_MOBILENET_EPOCHS = 16
_MOBILENET_LR = 3e-3
_MOBILENET_RECIPE = "real-mobilenet-v1"

REAL_RECIPES: dict[str, str] = {"resnet": _REAL_RECIPE, "mobilenet": _MOBILENET_RECIPE}
"""The training recipe (and cache version) of each name :func:`load_real_setting` accepts."""


class LogitsOf(nn.Module):
    """A transformers image classifier that returns its logits tensor (for training loops)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, K)
        logits: torch.Tensor = self.model(pixel_values=x).logits
        return logits


def real_model(name: str, classes: int) -> LogitsOf:
    """An untrained small transformers config: ``"resnet"`` (ResNet basic blocks, depths
    1-1-1-1, widths 16-128) or ``"mobilenet"`` (MobileNetV2, depth multiplier 0.35, classifier
    dropout 0.2, He-initialised convolutions, the last BatchNorm of each residual block at
    zero)."""
    import transformers
    from transformers.models.mobilenet_v2.modeling_mobilenet_v2 import (
        MobileNetV2InvertedResidual,
    )

    validate.choice("name", name, REAL_SETTINGS)
    if name == "resnet":
        config = transformers.ResNetConfig(  # type: ignore[call-arg]
            num_labels=classes,
            embedding_size=16,
            hidden_sizes=[16, 32, 64, 128],
            depths=[1, 1, 1, 1],
            layer_type="basic",
        )
        return LogitsOf(transformers.ResNetForImageClassification(config))
    config = transformers.MobileNetV2Config(  # type: ignore[assignment, call-arg]
        num_labels=classes,
        image_size=_REAL_SIZE,
        depth_multiplier=_MOBILENET_DEPTH_MULTIPLIER,
        classifier_dropout_prob=_MOBILENET_DROPOUT,
    )
    model = transformers.MobileNetV2ForImageClassification(config)  # type: ignore[arg-type]
    for module in model.modules():
        if isinstance(module, nn.Conv2d):  # He initialisation, as torchvision's MobileNetV2
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, MobileNetV2InvertedResidual) and module.use_residual:
            nn.init.zeros_(module.reduce_1x1.normalization.weight)  # the block starts as identity
    return LogitsOf(model)


def load_real_setting(
    name: str,
    seed: int = 0,
    *,
    calibration: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Setting:
    """A small transformers ResNet or MobileNetV2 trained on the shapes data (64x64, cached).

    Shapes of the ``"easy"`` preset (one object, no clutter, noise 0.02). Trained with
    :func:`~leanxai.zoo.train.fit_classifier` (Adam, one-cycle peak 3e-3, batch 32, 10 epochs,
    flips and rotations; BatchNorm in train mode while training, eval after) on 3,000 shapes of
    ``seed``; held out: 500 shapes of ``seed + 1,000,003``. The recipes' versions are
    :data:`REAL_RECIPES`; the MobileNetV2's differs in its initialisation and dropout (see
    :func:`real_model`) and trains for 16 epochs.
    """
    import time

    from leanxai.data.shapes import make_shapes
    from leanxai.zoo.train import HELD_OUT_SEED_OFFSET, fit_classifier, load_cached

    validate.choice("name", name, REAL_SETTINGS)
    seed = validate.non_negative_int("seed", seed)
    recipe = REAL_RECIPES[name]
    epochs, lr = (
        (_MOBILENET_EPOCHS, _MOBILENET_LR) if name == "mobilenet" else (_REAL_EPOCHS, _REAL_LR)
    )
    train_data = make_shapes(_REAL_N_TRAIN, size=_REAL_SIZE, seed=seed, difficulty=_REAL_DIFFICULTY)
    test_data = make_shapes(
        _REAL_N_HELD_OUT,
        size=_REAL_SIZE,
        seed=seed + HELD_OUT_SEED_OFFSET,
        difficulty=_REAL_DIFFICULTY,
    )
    classes = int(train_data.labels.max()) + 1

    def train() -> tuple[nn.Module, dict[str, Any]]:
        start = time.perf_counter()
        torch.manual_seed(seed)
        model = real_model(name, classes)
        fit_classifier(
            model,
            train_data.images,
            train_data.labels,
            epochs=epochs,
            batch_size=_REAL_BATCH,
            lr=lr,
            seed=seed,
            flip_and_rotate=True,
        )
        model.eval()
        return model, {
            "seed": seed,
            "recipe": recipe,
            "size": _REAL_SIZE,
            "difficulty": _REAL_DIFFICULTY,
            "epochs": epochs,
            "lr": lr,
            "held_out_accuracy": accuracy(model, test_data.images, test_data.labels),
            "train_seconds": round(time.perf_counter() - start, 1),
            "threads": torch.get_num_threads(),
        }

    model, metadata = load_cached(
        f"{name}_shapes_seed{seed}",
        lambda: real_model(name, classes),
        train,
        recipe,
        cache_dir=cache_dir,
    )
    order = torch.randperm(_REAL_N_TRAIN, generator=torch.Generator().manual_seed(seed))
    model.eval()
    return Setting(
        name,
        seed,
        model,
        train_data.images[order[:calibration]],
        test_data.images,
        test_data.labels,
        dict(metadata),
    )


# -- EfficientNet-Lite0 with its ImageNet weights: fidelity on real photos (issue 22) ------------

LITE0_CALIBRATION_PHOTOS: tuple[str, ...] = (
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "sklearn:china.jpg",
)
"""Photos whose crops calibrate the compression (scikit-image's, and scikit-learn's ``china``)."""

LITE0_HELD_OUT_PHOTOS: tuple[str, ...] = (
    "motorcycle_left.png",
    "camera.png",
    "sklearn:flower.jpg",
    "coins.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "page.png",
)
"""Other photos, whose crops and flips measure agreement with the original model."""


def _photo(name: str) -> torch.Tensor:
    """A photo as a ``(3, H, W)`` float tensor in ``[0, 1]`` (grey photos repeated)."""
    import numpy as np

    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        array = np.asarray(load_sample_image(name.split(":", 1)[1]))
    else:
        from PIL import Image

        from leanxai.data.photos import photo_paths

        with Image.open(photo_paths([name])[0]) as image:
            array = np.asarray(image.convert("RGB"))
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return torch.from_numpy(array[..., :3].copy()).permute(2, 0, 1).float() / 255.0


def photo_crops(
    names: tuple[str, ...], per_photo: int, size: int = 224, seed: int = 0
) -> torch.Tensor:
    """``per_photo`` random crops of each photo (area 25-100 %, aspect 3:4 to 4:3, half of them
    flipped left-right), resized to ``size`` x ``size``: ``(len(names) * per_photo, 3, size,
    size)`` in ``[0, 1]``."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for name in names:
        photo = _photo(name)
        height, width = photo.shape[1:]
        for _ in range(per_photo):
            values = torch.rand(4, generator=generator).tolist()
            area = (0.25 + 0.75 * values[0]) * height * width
            aspect = 0.75 * (4 / 3 / 0.75) ** values[1]
            h = min(height, max(8, round((area / aspect) ** 0.5)))
            w = min(width, max(8, round((area * aspect) ** 0.5)))
            top = int(values[2] * (height - h))
            left = int(values[3] * (width - w))
            crop = photo[:, top : top + h, left : left + w]
            if torch.rand(1, generator=generator).item() < 0.5:
                crop = crop.flip(-1)
            out.append(
                nn.functional.interpolate(
                    crop[None], size=(size, size), mode="bilinear", antialias=True
                )[0]
            )
    return torch.stack(out).clamp(0.0, 1.0)


def load_lite0_setting(calibration_per_photo: int = 8, held_out_per_photo: int = 32) -> Setting:
    """EfficientNet-Lite0 with its ImageNet weights (:func:`leanxai.zoo.pretrained`), normalised
    crops of :data:`LITE0_CALIBRATION_PHOTOS` as calibration and of :data:`LITE0_HELD_OUT_PHOTOS`
    as held-out inputs. No labels: ``labels`` holds the original model's top-1 class."""
    from leanxai.zoo.pretrained import pretrained

    loaded = pretrained("efficientnet_lite0")
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    calibration = (photo_crops(LITE0_CALIBRATION_PHOTOS, calibration_per_photo) - mean) / std
    held_out = (photo_crops(LITE0_HELD_OUT_PHOTOS, held_out_per_photo, seed=1) - mean) / std
    model = loaded.model.eval()
    with torch.no_grad():
        labels = torch.cat([model(batch).argmax(1) for batch in held_out.split(64)])
    return Setting(
        "lite0",
        0,
        model,
        calibration,
        held_out,
        labels,
        {"architecture": "EfficientNet-Lite0 (ImageNet weights)"},
    )
