"""Synthetic shapes on cluttered backgrounds, with the object's exact pixel mask.

Each image holds one object, a circle, square, triangle or cross, at a random position, scale,
rotation and colour, over a smooth colour gradient with thin lines and soft blobs as distractors
and gaussian pixel noise. The object's size (the diameter of a circle, the side of a square or a
triangle, the span of a cross) is 20-40 % of the image side. Its colour is drawn independently of
the class, redrawn while closer than 0.4 (RGB distance) to the gradient beneath it, so the label
can only be learnt from the shape. The mask is the set of pixels the object covers: distractors
are drawn under the object, never over it, so every mask pixel shows the object.

Generation is vectorised over images and split into knobs, one function each, applied in order:
background, object geometry, object colour, clutter, painting the object, noise. Each knob draws
from its own random stream, derived from the seed and the knob's name, so adding a knob later (or
changing another knob's setting) leaves the others' draws unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CLASSES", "ShapesData", "make_shapes"]

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Class names, in label order."""

# Images are rendered in chunks so that temporaries stay small; the chunk size is part of the
# recipe (the random streams are consumed chunk by chunk), so changing it changes the data.
_CHUNK = 256

# Object size as a fraction of the image side: the diameter of a circle, the side of a square or a
# triangle, the span of a cross.
_MIN_SIZE = 0.2
_MAX_SIZE = 0.4

# Smallest RGB distance between the object's colour and the mean background under it.
_MIN_CONTRAST = 0.4

# Largest number of lines and of blobs per image, reached at clutter=1.
_MAX_LINES = 4
_MAX_BLOBS = 4


@dataclass(frozen=True)
class ShapesData:
    """A synthetic shapes data set.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, 3, size, size)`` float32 in ``[0, 1]``.
    labels : torch.Tensor
        ``(N,)`` int64, indices into ``classes``.
    masks : torch.Tensor
        ``(N, size, size)`` bool, the pixels of the labelled object.
    classes : tuple of str
        Class names in label order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def make_shapes(
    n: int,
    size: int = 64,
    seed: int = 0,
    clutter: float = 0.5,
    noise: float = 0.05,
) -> ShapesData:
    """Generate ``n`` images of shapes on cluttered backgrounds, with object masks.

    Parameters
    ----------
    n : int
        Number of images, at least 1. Labels are balanced: each class gets ``n // 4`` or
        ``n // 4 + 1`` images, in random order.
    size : int, default 64
        Image side in pixels, at least 16.
    seed : int, default 0
        Seed; the same arguments always give the same data.
    clutter : float, default 0.5
        Density of distractors in ``[0, 1]``: thin lines and soft elongated blobs in random
        colours, drawn under the object. 0 gives a plain gradient background.
    noise : float, default 0.05
        Standard deviation of the gaussian pixel noise, added last; the result is clipped to
        ``[0, 1]``.

    Returns
    -------
    ShapesData
        Images, labels, masks and class names.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 0.0 <= clutter <= 1.0:
        raise ValueError(f"clutter must be in [0, 1], got {clutter!r}")
    if not noise >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")

    labels = np.arange(n) % len(CLASSES)
    _stream(seed, "labels").shuffle(labels)

    rngs = {
        name: _stream(seed, name) for name in ("background", "clutter", "object", "colour", "noise")
    }
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    grid = _grid(size)
    for start, stop in _chunks(n):
        chunk = images[start:stop]  # (B, 3, S, S), a view
        chunk[:] = _gradient_background(rngs["background"], stop - start, grid)
        mask = _object_masks(rngs["object"], labels[start:stop], grid)  # (B, S, S)
        # The colour contrasts with the gradient under the object; clutter does not change it.
        colour = _object_colours(rngs["colour"], chunk, mask)  # (B, 3)
        _draw_clutter(rngs["clutter"], chunk, grid, clutter)
        _paint(chunk, mask, colour)
        _add_noise(rngs["noise"], chunk, noise)
        masks[start:stop] = mask

    return ShapesData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        masks=torch.from_numpy(masks),
        classes=CLASSES,
    )


# --------------------------------------------------------------------------------------------
# Helpers


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream for one knob, fixed by the seed and the knob's name."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, _CHUNK):
        yield start, min(start + _CHUNK, n)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each ``(1, S, S)`` float32."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(coords, coords, indexing="ij")
    return y[None], x[None]


def _col(values: np.ndarray) -> np.ndarray:
    """Per-image values ``(B,)`` -> ``(B, 1, 1)`` float32 to broadcast over pixels."""
    return values.astype(np.float32)[:, None, None]


def _random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=(count, 3)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Knobs


def _gradient_background(
    rng: np.random.Generator, count: int, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Linear colour gradients between two random colours in a random direction."""
    y, x = grid
    size = y.shape[-1]
    angle = rng.uniform(0.0, 2.0 * np.pi, size=count)
    start = _random_colours(rng, count)  # (B, 3)
    stop = _random_colours(rng, count)  # (B, 3)
    # Projection on the direction, rescaled to [0, 1] over the image.
    cos, sin = _col(np.cos(angle)), _col(np.sin(angle))
    proj = (x - size / 2) * cos + (y - size / 2) * sin  # (B, S, S)
    half_span = (np.abs(cos) + np.abs(sin)) * (size / 2)
    t = (proj / half_span + 1.0) / 2.0  # (B, S, S)
    return start[:, :, None, None] + (stop - start)[:, :, None, None] * t[:, None]  # (B, 3, S, S)


def _draw_clutter(
    rng: np.random.Generator,
    images: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    clutter: float,
) -> None:
    """Draw thin lines and soft elongated blobs in random colours, in place.

    Lines are one to two pixels wide and long; blobs are anisotropic gaussians with soft edges.
    Neither looks like one of the four hard-edged classes.
    """
    count, size = int(images.shape[0]), int(images.shape[-1])
    y, x = grid
    scale = size / 64.0
    n_lines = rng.binomial(_MAX_LINES, clutter, size=count)  # (B,)
    n_blobs = rng.binomial(_MAX_BLOBS, clutter, size=count)  # (B,)
    for k in range(_MAX_LINES):
        # Parameters are drawn for every image so the stream does not depend on the counts.
        p0 = rng.uniform(0.0, size, size=(count, 2))
        angle = rng.uniform(0.0, np.pi, size=count)
        length = rng.uniform(0.3, 0.8, size=count) * size
        width = rng.uniform(0.5, 1.0, size=count) * scale
        colour = _random_colours(rng, count)
        active = n_lines > k
        if not active.any():
            continue
        direction = np.stack([np.sin(angle), np.cos(angle)], axis=1)  # (B, 2) as (dy, dx)
        dy, dx = (
            _col(direction[active, 0] * length[active]),
            _col(direction[active, 1] * length[active]),
        )
        ry, rx = y - _col(p0[active, 0]), x - _col(p0[active, 1])  # (b, S, S)
        t = np.clip((ry * dy + rx * dx) / (dy * dy + dx * dx), 0.0, 1.0)
        dist = np.hypot(ry - t * dy, rx - t * dx)  # (b, S, S)
        alpha = np.clip(_col(width[active]) + 0.5 - dist, 0.0, 1.0)  # anti-aliased edge
        _blend(images, active, alpha, colour[active])
    for k in range(_MAX_BLOBS):
        centre = rng.uniform(0.0, size, size=(count, 2))
        angle = rng.uniform(0.0, np.pi, size=count)
        sigma = rng.uniform(1.0, 2.5, size=count) * scale
        aspect = rng.uniform(2.0, 4.0, size=count)
        colour = _random_colours(rng, count)
        active = n_blobs > k
        if not active.any():
            continue
        ry, rx = y - _col(centre[active, 0]), x - _col(centre[active, 1])
        cos, sin = _col(np.cos(angle[active])), _col(np.sin(angle[active]))
        u = (rx * cos + ry * sin) / _col(sigma[active] * aspect[active])
        v = (-rx * sin + ry * cos) / _col(sigma[active])
        alpha = np.exp(-0.5 * (u * u + v * v))  # (b, S, S)
        _blend(images, active, alpha, colour[active])


def _object_masks(
    rng: np.random.Generator, labels: np.ndarray, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Boolean masks ``(B, S, S)`` of one shape per image, fully inside the image."""
    count = int(labels.shape[0])
    y, x = grid
    size = y.shape[-1]
    radius = rng.uniform(_MIN_SIZE, _MAX_SIZE, size=count) * size / 2
    margin = np.sqrt(2.0) * radius + 1.0  # a square's corner is the farthest point
    cy = rng.uniform(margin, size - margin)
    cx = rng.uniform(margin, size - margin)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=count)
    # Rotated coordinates in units of half the object size.
    cos, sin, r = _col(np.cos(angle)), _col(np.sin(angle)), _col(radius)
    ry, rx = y - _col(cy), x - _col(cx)
    u = (rx * cos + ry * sin) / r  # (B, S, S)
    v = (-rx * sin + ry * cos) / r
    masks = np.zeros((count, size, size), dtype=bool)
    for label, name in enumerate(CLASSES):
        sel = labels == label
        if sel.any():
            masks[sel] = _SHAPES[name](u[sel], v[sel])
    return masks


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral with side 2, centred on its centroid: inside the three edges at the inradius.
    inradius = 1.0 / np.sqrt(3.0)
    inside = np.ones(u.shape, dtype=bool)
    for theta in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        inside &= u * np.cos(theta) + v * np.sin(theta) <= inradius
    return inside


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    arm, half_width = 1.0, 0.33
    au, av = np.abs(u), np.abs(v)
    return ((au <= arm) & (av <= half_width)) | ((av <= arm) & (au <= half_width))


_SHAPES = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross}


def _object_colours(rng: np.random.Generator, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Random colours ``(B, 3)``, at least ``_MIN_CONTRAST`` away from the background under them."""
    count = int(images.shape[0])
    area = masks.sum(axis=(1, 2)).clip(min=1)[:, None]  # (B, 1)
    background = np.einsum("bchw,bhw->bc", images, masks.astype(np.float32)) / area  # (B, 3)
    colours = _random_colours(rng, count)
    # A few redraws for colours too close to the background, then the farthest corner of the cube.
    for _ in range(8):
        close = np.linalg.norm(colours - background, axis=1) < _MIN_CONTRAST
        redraw = _random_colours(rng, count)
        colours[close] = redraw[close]
    close = np.linalg.norm(colours - background, axis=1) < _MIN_CONTRAST
    colours[close] = (background[close] < 0.5).astype(np.float32)
    return colours


def _paint(images: np.ndarray, masks: np.ndarray, colours: np.ndarray) -> None:
    """Fill each mask with its colour, in place."""
    images[:] = np.where(masks[:, None], colours[:, :, None, None], images)


def _add_noise(rng: np.random.Generator, images: np.ndarray, noise: float) -> None:
    """Add gaussian pixel noise and clip to ``[0, 1]``, in place."""
    if noise > 0:
        images += rng.standard_normal(images.shape, dtype=np.float32) * np.float32(noise)
    np.clip(images, 0.0, 1.0, out=images)


def _blend(images: np.ndarray, active: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` ``(b, 3)`` with ``alpha`` ``(b, S, S)`` into ``images[active]``.

    Distractors cover a few percent of the image, so only pixels with visible alpha are touched.
    """
    which, row, col = np.nonzero(alpha > 1.0 / 512)  # (P,) each
    a = alpha[which, row, col].astype(np.float32)[:, None]  # (P, 1)
    index = np.flatnonzero(active)[which]  # (P,) image index in the chunk
    pixels = images[index, :, row, col]  # (P, 3)
    images[index, :, row, col] = pixels + (colour[which] - pixels) * a
