"""Synthetic shapes on cluttered backgrounds, with the object's exact pixel mask.

Each image holds one labelled object (the target), a circle, square, triangle or cross, at a random
position, scale, rotation and colour, over a smooth colour gradient with thin lines and soft blobs
as distractors and gaussian pixel noise. The object's size (the diameter of a circle, the side of a
square or a triangle, the span of a cross) is 20-40 % of the image side. Its colour is drawn
independently of the class, redrawn while closer than 0.4 (RGB distance) to the gradient beneath
it, so the label can only be learnt from the shape. The mask is the set of pixels where the target
is visible: clutter and extra objects are drawn under the target, never over it, and only the
occluder (``occlusion > 0``) is drawn over it, so every mask pixel shows the target.

Difficulty knobs, all optional, each off by default, so the defaults give the original recipe bit
for bit:

- ``texture``: a high-frequency grey plaid (two sinusoid gratings) added over the whole image,
  background and objects alike, with that peak amplitude;
- ``contrast``: scales every object's colour difference from the mean gradient beneath it;
- ``occlusion``: a bar in a random colour drawn over the target, hiding a fraction of it drawn
  uniformly in ``[0, occlusion)``; the mask is what stays visible;
- ``objects``: extra, smaller objects of other classes than the target, placed apart from it when
  there is room;
- ``difficulty``: a preset for all the knobs above and ``clutter`` and ``noise``
  (:data:`DIFFICULTY_PRESETS`).

Generation is vectorised over images and split into knobs, one function each, applied in order:
background, object geometry, object colour (and contrast), extra objects' geometry and colour,
clutter, painting the extra objects, painting the target, the occluder, texture, noise. Each knob
draws from its own random stream, derived from the seed and the knob's name, so adding a knob
later (or changing another knob's setting) leaves the others' draws unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from leanxai.core import validate
from leanxai.core.errors import InputError

__all__ = ["CLASSES", "DIFFICULTY_PRESETS", "ShapesData", "make_shapes"]

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

# Extra objects (distractors) are smaller than any target, so "the largest object" names the label.
_MIN_DISTRACTOR_SIZE = 0.1
_MAX_DISTRACTOR_SIZE = 0.18
_MAX_OBJECTS = 8
# Candidate positions tried per distractor when looking for room away from the other objects.
_PLACEMENT_TRIES = 32

# Texture grating period in pixels at size 64 (scaled up with larger images, never down).
_MIN_PERIOD = 2.5
_MAX_PERIOD = 5.0

_DEFAULT_KNOBS: Mapping[str, float | int] = MappingProxyType(
    {"clutter": 0.5, "noise": 0.05, "texture": 0.0, "contrast": 1.0, "occlusion": 0.0, "objects": 1}
)

DIFFICULTY_PRESETS: Mapping[str, Mapping[str, float | int]] = MappingProxyType(
    {
        "easy": MappingProxyType(
            {
                "clutter": 0.0,
                "noise": 0.02,
                "texture": 0.0,
                "contrast": 1.0,
                "occlusion": 0.0,
                "objects": 1,
            }
        ),
        "medium": MappingProxyType(
            {
                "clutter": 0.5,
                "noise": 0.05,
                "texture": 0.1,
                "contrast": 0.7,
                "occlusion": 0.25,
                "objects": 2,
            }
        ),
        "hard": MappingProxyType(
            {
                "clutter": 1.0,
                "noise": 0.1,
                "texture": 0.2,
                "contrast": 0.4,
                "occlusion": 0.5,
                "objects": 3,
            }
        ),
    }
)
"""Knob settings of each ``difficulty`` preset of :func:`make_shapes`."""


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
    clutter: float | None = None,
    noise: float | None = None,
    *,
    texture: float | None = None,
    contrast: float | None = None,
    occlusion: float | None = None,
    objects: int | None = None,
    difficulty: str | None = None,
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
    texture : float, default 0.0
        Peak amplitude in ``[0, 1]`` of a grey plaid added to every pixel, background and objects
        alike: the sum of two sinusoid gratings with periods of 2.5-5 pixels (scaled with
        ``size / 64`` above 64), random orientations and phases. It adds high-frequency edges
        everywhere without telling the object apart.
    contrast : float, default 1.0
        In ``(0, 1]``: each object's colour is moved towards the mean gradient beneath it,
        ``background + contrast * (colour - background)``, so the colour difference (at least
        0.4 at ``contrast=1``) shrinks to at least ``0.4 * contrast``. Applies to extra objects
        too.
    occlusion : float, default 0.0
        In ``[0, 1)``: the largest fraction of the target an occluder may hide. When positive,
        every image gets a straight bar in a random colour (at least 0.4 from the target's
        colour), drawn over the target across a random direction; it hides a fraction of the
        target's pixels drawn uniformly in ``[0, occlusion)``, rounded down to whole pixels (no
        bar is drawn when that is zero). The returned mask is the visible part of the target,
        never empty.
    objects : int, default 1
        Number of objects per image, 1 to 8. The extra ``objects - 1`` are distractors, each of
        a class other than the target's (drawn uniformly among the other three; two
        distractors may share a class) and smaller than any target, 10-18 % of the image side
        against 20-40 %, so the label stays well defined: it is the class of the largest object.
        They are placed at least a pixel away from the target (and from each other) when a
        random search of 32 positions finds room, else at the position that overlaps least;
        the target is painted over them. The mask is the target's alone.
    difficulty : {"easy", "medium", "hard"}, optional
        A preset for ``clutter``, ``noise``, ``texture``, ``contrast``, ``occlusion`` and
        ``objects`` (table below). An argument given explicitly (not ``None``) overrides the
        preset; without a preset, a ``None`` argument takes the default listed above, which
        reproduces the original data bit for bit.

        ==========  =======  =====  =======  ========  =========  =======
        difficulty  clutter  noise  texture  contrast  occlusion  objects
        ==========  =======  =====  =======  ========  =========  =======
        (none)      0.5      0.05   0.0      1.0       0.0        1
        easy        0.0      0.02   0.0      1.0       0.0        1
        medium      0.5      0.05   0.1      0.7       0.25       2
        hard        1.0      0.1    0.2      0.4       0.5        3
        ==========  =======  =====  =======  ========  =========  =======

    Returns
    -------
    ShapesData
        Images, labels, masks and class names.

    Raises
    ------
    ValueError
        If an argument is out of range, or ``difficulty`` is not a preset's name.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a positive int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise InputError(f"size must be an int >= 16, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    if difficulty is None:
        preset = _DEFAULT_KNOBS
    elif isinstance(difficulty, str) and difficulty in DIFFICULTY_PRESETS:
        preset = DIFFICULTY_PRESETS[difficulty]
    else:
        raise InputError(
            f"difficulty must be None or one of {sorted(DIFFICULTY_PRESETS)}, got {difficulty!r}"
        )
    given = {
        "clutter": clutter,
        "noise": noise,
        "texture": texture,
        "contrast": contrast,
        "occlusion": occlusion,
    }
    real = {
        name: validate.finite_float(name, preset[name] if value is None else value)
        for name, value in given.items()
    }
    clutter, noise, texture = real["clutter"], real["noise"], real["texture"]
    contrast, occlusion = real["contrast"], real["occlusion"]
    count = preset["objects"] if objects is None else objects
    if not 0.0 <= clutter <= 1.0:
        raise InputError(f"clutter must be in [0, 1], got {clutter!r}")
    if not noise >= 0.0:
        raise InputError(f"noise must be >= 0, got {noise!r}")
    if not 0.0 <= texture <= 1.0:
        raise InputError(f"texture must be in [0, 1], got {texture!r}")
    if not 0.0 < contrast <= 1.0:
        raise InputError(f"contrast must be in (0, 1], got {contrast!r}")
    if not 0.0 <= occlusion < 1.0:
        raise InputError(f"occlusion must be in [0, 1), got {occlusion!r}")
    if (
        isinstance(count, bool)
        or not isinstance(count, (int, np.integer))
        or not 1 <= count <= _MAX_OBJECTS
    ):
        raise InputError(f"objects must be an int in [1, {_MAX_OBJECTS}], got {count!r}")
    objects = int(count)

    labels = np.arange(n) % len(CLASSES)
    _stream(seed, "labels").shuffle(labels)

    rngs = {
        name: _stream(seed, name)
        for name in (
            "background",
            "clutter",
            "object",
            "colour",
            "noise",
            "texture",
            "occlusion",
            "objects",
        )
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
        # Every new knob is skipped at its default, so the default recipe stays bit for bit.
        if contrast != 1.0:
            colour = _reduce_contrast(chunk, mask, colour, contrast)
        extra_masks, extra_colours = _distractors(
            rngs["objects"], chunk, mask, labels[start:stop], grid, objects - 1, contrast
        )  # (B, D, S, S), (B, D, 3)
        _draw_clutter(rngs["clutter"], chunk, grid, clutter)
        for k in range(objects - 1):
            _paint(chunk, extra_masks[:, k], extra_colours[:, k])
        _paint(chunk, mask, colour)
        if occlusion > 0.0:
            mask = _occlude(rngs["occlusion"], chunk, mask, colour, grid, occlusion)
        if texture > 0.0:
            _add_texture(rngs["texture"], chunk, grid, texture)
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
    size = grid[0].shape[-1]
    radius = rng.uniform(_MIN_SIZE, _MAX_SIZE, size=count) * size / 2
    margin = np.sqrt(2.0) * radius + 1.0  # a square's corner is the farthest point
    cy = rng.uniform(margin, size - margin)
    cx = rng.uniform(margin, size - margin)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=count)
    return _render_shapes(labels, cy, cx, radius, angle, grid)


def _render_shapes(
    labels: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Boolean masks ``(B, S, S)`` of shapes with the given centres, half sizes and angles."""
    count = int(labels.shape[0])
    y, x = grid
    size = y.shape[-1]
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


def _mean_under(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean colour ``(B, 3)`` of ``images`` ``(B, 3, S, S)`` over ``masks`` ``(B, S, S)``."""
    area = masks.sum(axis=(1, 2)).clip(min=1)[:, None]  # (B, 1)
    return np.einsum("bchw,bhw->bc", images, masks.astype(np.float32)) / area  # (B, 3)


def _reduce_contrast(
    images: np.ndarray, masks: np.ndarray, colours: np.ndarray, contrast: float
) -> np.ndarray:
    """Move each colour ``(B, 3)`` towards the mean background under its mask."""
    background = _mean_under(images, masks)
    scaled = background + np.float32(contrast) * (colours - background)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _distractors(
    rng: np.random.Generator,
    images: np.ndarray,
    target: np.ndarray,
    labels: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    extra: int,
    contrast: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(B, D, S, S)`` and colours ``(B, D, 3)`` of ``D = extra`` smaller objects.

    Each is of a class other than the target's, and placed where its bounding circle keeps a
    pixel away from the target's and from the earlier distractors' when one of
    ``_PLACEMENT_TRIES`` random positions allows it, else where the clearance is largest.
    Colours are drawn like the target's, against the gradient under each distractor.
    """
    count, size = int(images.shape[0]), int(images.shape[-1])
    if extra == 0:
        return (
            np.zeros((count, 0, size, size), dtype=bool),
            np.zeros((count, 0, 3), dtype=np.float32),
        )
    y, x = grid
    # The target's bounding circle, measured on its mask so it fits any shape.
    area = target.sum(axis=(1, 2)).clip(min=1)  # (B,)
    ty = (target * y).sum(axis=(1, 2)) / area
    tx = (target * x).sum(axis=(1, 2)) / area
    dist = np.hypot(y - _col(ty), x - _col(tx))
    target_radius = np.where(target, dist, 0.0).max(axis=(1, 2)) + 0.5  # (B,)

    # Everything is drawn up front, for every slot, so the stream does not depend on outcomes.
    classes = (labels[:, None] + rng.integers(1, len(CLASSES), size=(count, extra))) % len(CLASSES)
    radius = rng.uniform(_MIN_DISTRACTOR_SIZE, _MAX_DISTRACTOR_SIZE, size=(count, extra)) * (
        size / 2
    )
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(count, extra))
    margin = np.sqrt(2.0) * radius + 1.0  # (B, D), as for the target
    spots = rng.uniform(0.0, 1.0, size=(count, extra, _PLACEMENT_TRIES, 2))
    spots = margin[:, :, None, None] + spots * (size - 2 * margin)[:, :, None, None]

    centres = np.empty((count, extra, 2))
    placed_radius = np.sqrt(2.0) * radius  # bounding circles of the distractors
    masks = np.empty((count, extra, size, size), dtype=bool)
    colours = np.empty((count, extra, 3), dtype=np.float32)
    rows = np.arange(count)
    for k in range(extra):
        cand = spots[:, k]  # (B, T, 2)
        clearance = (
            np.hypot(cand[..., 0] - ty[:, None], cand[..., 1] - tx[:, None])
            - target_radius[:, None]
            - placed_radius[:, k, None]
        )  # (B, T)
        for j in range(k):
            gap = (
                np.hypot(
                    cand[..., 0] - centres[:, j, 0, None], cand[..., 1] - centres[:, j, 1, None]
                )
                - placed_radius[:, j, None]
                - placed_radius[:, k, None]
            )
            clearance = np.minimum(clearance, gap)
        fits = clearance >= 1.0
        choice = np.where(fits.any(axis=1), fits.argmax(axis=1), clearance.argmax(axis=1))
        centres[:, k] = cand[rows, choice]
        masks[:, k] = _render_shapes(
            classes[:, k], centres[:, k, 0], centres[:, k, 1], radius[:, k], angle[:, k], grid
        )
        colours[:, k] = _object_colours(rng, images, masks[:, k])
        if contrast != 1.0:
            colours[:, k] = _reduce_contrast(images, masks[:, k], colours[:, k], contrast)
    return masks, colours


def _occlude(
    rng: np.random.Generator,
    images: np.ndarray,
    masks: np.ndarray,
    colours: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    occlusion: float,
) -> np.ndarray:
    """Draw a bar over each object, in place, and return the visible masks ``(B, S, S)``.

    The bar runs across a random direction. Along that direction it covers a run of consecutive
    object pixels (ranked by their projection) of length ``floor(fraction * area)``, with
    ``fraction`` uniform in ``[0, occlusion)``, at a random place in the object; across it, it
    spans the object and reaches 10-50 % of the object's extent beyond it on each side.
    """
    count = int(images.shape[0])
    y, x = grid
    fraction = rng.uniform(0.0, occlusion, size=count)
    angle = rng.uniform(0.0, np.pi, size=count)
    place = rng.uniform(0.0, 1.0, size=count)
    overhang = rng.uniform(0.1, 0.5, size=(count, 2))
    bar_colours = _random_colours(rng, count)
    for _ in range(8):
        close = np.linalg.norm(bar_colours - colours, axis=1) < _MIN_CONTRAST
        redraw = _random_colours(rng, count)
        bar_colours[close] = redraw[close]
    close = np.linalg.norm(bar_colours - colours, axis=1) < _MIN_CONTRAST
    bar_colours[close] = (colours[close] < 0.5).astype(np.float32)

    cos, sin = _col(np.cos(angle)), _col(np.sin(angle))
    along = x * cos + y * sin  # (B, S, S)
    across = -x * sin + y * cos
    visible = masks.copy()
    for i in range(count):
        values = np.sort(along[i][masks[i]])
        area = int(values.shape[0])
        covered = int(np.floor(fraction[i] * area))
        if covered == 0:
            continue
        first = int(np.floor(place[i] * (area - covered + 1)))
        first = min(first, area - covered)
        low, high = values[first], values[first + covered - 1]
        spread = across[i][masks[i]]
        lo, hi = float(spread.min()), float(spread.max())
        extent = hi - lo
        bar = (
            (along[i] >= low)
            & (along[i] <= high)
            & (across[i] >= lo - overhang[i, 0] * extent)
            & (across[i] <= hi + overhang[i, 1] * extent)
        )
        left = masks[i] & ~bar
        if not left.any():  # only ties in the projection could do this; keep the object whole
            continue
        images[i][:, bar] = bar_colours[i][:, None]
        visible[i] = left
    return visible


def _add_texture(
    rng: np.random.Generator,
    images: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    amplitude: float,
) -> None:
    """Add a grey plaid of two sinusoid gratings with peak ``amplitude``, in place."""
    count, size = int(images.shape[0]), int(images.shape[-1])
    y, x = grid
    period = rng.uniform(_MIN_PERIOD, _MAX_PERIOD, size=(count, 2)) * max(1.0, size / 64.0)
    angle = rng.uniform(0.0, np.pi, size=(count, 2))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(count, 2))
    plaid = np.zeros((count, size, size), dtype=np.float32)
    for k in range(2):
        freq = 2.0 * np.pi / period[:, k]
        proj = x * _col(np.cos(angle[:, k]) * freq) + y * _col(np.sin(angle[:, k]) * freq)
        plaid += np.sin(proj + _col(phase[:, k]))
    images += (np.float32(amplitude / 2.0) * plaid)[:, None]


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
