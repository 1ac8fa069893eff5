"""Heatmap overlays and side-by-side panels as ``uint8`` RGB arrays, and PNG files of them.

Rendering uses NumPy, Pillow and the matplotlib colormap registry only: no pyplot, no figure and no
backend are touched, so nothing leaks into a user's matplotlib state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from leanxai.core.errors import InputError, InputTypeError
from leanxai.io import atomic_write_bytes, check_writable

__all__ = ["colorize", "kept_overlay", "overlay", "panel", "save_overlay", "save_panel"]

ArrayLike = np.ndarray | torch.Tensor

_TOLERANCE = 1e-4  # float slack allowed outside [0, 1] before a value counts as out of range
_DIM = 0.3  # brightness kept by pixels outside the thresholded region in a panel
_MIN_TILE_WIDTH = 96  # smaller images are enlarged (nearest) in a panel so titles stay legible
_GAP = 4  # white pixels between panel tiles


def _to_numpy(value: ArrayLike, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise InputTypeError(
        f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}"
    )


def _check_unit_range(values: np.ndarray, name: str) -> np.ndarray:
    """Refuse NaN/inf and values outside ``[0, 1]``; clip float rounding slack."""
    if not np.isfinite(values).all():
        raise InputError(f"{name} holds NaN or infinite values")
    if values.size:
        low, high = float(values.min()), float(values.max())
        if low < -_TOLERANCE or high > 1.0 + _TOLERANCE:
            raise InputError(
                f"{name} must lie in [0, 1], got values in [{low:g}, {high:g}]; normalize it first"
            )
    return np.clip(values, 0.0, 1.0)


def _heatmap_array(heatmap: ArrayLike, name: str = "heatmap") -> np.ndarray:
    """``(H, W)`` or ``(1, H, W)`` in ``[0, 1]`` -> float32 ``(H, W)``."""
    values = _to_numpy(heatmap, name)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2 or 0 in values.shape:
        raise InputError(f"{name} must have shape (H, W) or (1, H, W), got {values.shape}")
    if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.number):
        raise InputTypeError(f"{name} must hold numbers in [0, 1], got dtype {values.dtype}")
    return _check_unit_range(values.astype(np.float32), name)


def _image_array(image: ArrayLike) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] or (H, W, 3) uint8 array -> uint8 (H, W, 3)."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or 0 in image.shape:
            raise InputError(f"image tensor must have shape (3, H, W), got {tuple(image.shape)}")
        if not image.is_floating_point():
            raise InputTypeError(
                f"image tensor must be floating point in [0, 1], got {image.dtype}"
            )
        values = _check_unit_range(image.detach().cpu().float().numpy(), "image")
        return np.rint(values.transpose(1, 2, 0) * 255.0).astype(np.uint8)  # (H, W, 3)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise InputError(f"image array must have shape (H, W, 3), got {image.shape}")
        if image.dtype != np.uint8:
            raise InputTypeError(f"image array must have dtype uint8, got {image.dtype}")
        return np.ascontiguousarray(image)
    raise InputTypeError(
        f"image must be a (3, H, W) torch.Tensor or (H, W, 3) numpy.ndarray, "
        f"got {type(image).__name__}"
    )


def _resize(values: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize a float ``(H, W)`` array to ``size`` with torch interpolation."""
    if values.shape == size:
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    if mode == "bilinear":
        tensor = F.interpolate(
            tensor, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    else:
        tensor = F.interpolate(tensor, size=size, mode="nearest-exact")
    return tensor[0, 0].numpy()


def _lookup(cmap: str, values: np.ndarray) -> np.ndarray:
    """Map float ``(H, W)`` in ``[0, 1]`` to uint8 ``(H, W, 3)`` through a matplotlib colormap."""
    from matplotlib import colormaps  # the registry only; pyplot is never imported

    if not isinstance(cmap, str):
        raise InputTypeError(f"cmap must be the name of a matplotlib colormap, got {cmap!r}")
    try:
        colormap = colormaps[cmap]
    except KeyError as error:
        raise InputError(f"cmap={cmap!r} is not a matplotlib colormap") from error
    rgba = colormap(values, bytes=True)  # (H, W, 4) uint8
    return np.ascontiguousarray(rgba[..., :3])


def colorize(heatmap: ArrayLike, cmap: str = "jet") -> np.ndarray:
    """Color a heatmap with a matplotlib colormap.

    Parameters
    ----------
    heatmap : torch.Tensor or numpy.ndarray
        ``(H, W)`` or ``(1, H, W)`` values in ``[0, 1]``.
    cmap : str, default "jet"
        Name of a matplotlib colormap.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.

    Raises
    ------
    InputError
        ``heatmap`` has the wrong shape, NaN/inf values, or values outside ``[0, 1]``.
    ValueError
        ``cmap`` is not a known colormap.
    """
    return _lookup(cmap, _heatmap_array(heatmap))


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _blend(base: np.ndarray, colored: np.ndarray, alpha: float) -> np.ndarray:
    mixed = (1.0 - alpha) * base.astype(np.float32) + alpha * colored.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def overlay(
    image: ArrayLike, heatmap: ArrayLike, *, cmap: str = "jet", alpha: float = 0.5
) -> np.ndarray:
    """Blend a colored heatmap over an image.

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        ``(3, H, W)`` float tensor in ``[0, 1]``, or ``(H, W, 3)`` uint8 array.
    heatmap : torch.Tensor or numpy.ndarray
        ``(h, w)`` or ``(1, h, w)`` values in ``[0, 1]``; resized to ``(H, W)`` with bilinear
        interpolation when the sizes differ.
    cmap : str, default "jet"
        Name of a matplotlib colormap.
    alpha : float, default 0.5
        Weight of the colored heatmap: 0 gives the image, 1 gives the colored heatmap.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, ``(1 - alpha) * image + alpha * colorize(heatmap)``, rounded.

    Raises
    ------
    InputError
        ``image`` or ``heatmap`` has the wrong shape or values outside ``[0, 1]``.
    ValueError
        ``alpha`` is outside ``[0, 1]`` or ``cmap`` is unknown.
    TypeError
        ``image`` or ``heatmap`` is of the wrong type or dtype.
    """
    alpha = _check_alpha(alpha)
    base = _image_array(image)  # (H, W, 3)
    values = _resize(_heatmap_array(heatmap), base.shape[:2], "bilinear")
    colored = _lookup(cmap, np.clip(values, 0.0, 1.0))
    return _blend(base, colored, alpha)


def _encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _check_png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"path must end in .png (files are written as PNG), got {str(path)!r}")
    return path


def save_overlay(
    path: str | Path,
    image: ArrayLike,
    heatmap: ArrayLike,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write :func:`overlay` to a PNG file, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ending in ``.png``. Missing parent folders are created.
    image, heatmap, cmap, alpha
        As for :func:`overlay`.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False (checked before rendering).
    """
    path = _check_png_path(path)
    check_writable([path], overwrite)
    array = overlay(image, heatmap, cmap=cmap, alpha=alpha)
    return atomic_write_bytes(path, _encode_png(array), overwrite=overwrite)


def _mask_array(thresholded: ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Kept pixels (> 0) of a (H, W) or (1, H, W) mask, as bool (H, W) resized to ``size``."""
    values = _to_numpy(thresholded, "thresholded")
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2 or 0 in values.shape:
        raise InputError(f"thresholded must have shape (H, W) or (1, H, W), got {values.shape}")
    if values.dtype != np.bool_ and not np.issubdtype(values.dtype, np.number):
        raise InputTypeError(
            f"thresholded must be a bool or numeric mask, got dtype {values.dtype}"
        )
    if values.dtype != np.bool_ and not np.isfinite(values).all():
        raise InputError("thresholded holds NaN or infinite values")
    kept = (values > 0).astype(np.float32)
    return _resize(kept, size, "nearest") > 0.5


def kept_overlay(
    image: ArrayLike,
    heatmap: ArrayLike,
    thresholded: ArrayLike,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """The heatmap overlay on kept pixels, the image at 30% brightness elsewhere.

    The third tile of :func:`panel`; arguments as there. Returns ``(H, W, 3)`` uint8 RGB.
    """
    blended = overlay(image, heatmap, cmap=cmap, alpha=alpha)  # (H, W, 3)
    base = _image_array(image)
    kept = _mask_array(thresholded, base.shape[:2])
    dimmed = np.rint(base.astype(np.float32) * _DIM).astype(np.uint8)
    return np.where(kept[..., None], blended, dimmed)


def _load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _titled(
    tile: np.ndarray, title: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, strip: int
) -> np.ndarray:
    """Put ``title`` centered in a white strip above ``tile``, shortened with "…" to fit."""
    width = tile.shape[1]
    canvas = Image.new("RGB", (width, strip), "white")
    draw = ImageDraw.Draw(canvas)
    text = title
    while text and draw.textlength(text, font=font) > width - 2:
        text = text[:-1]
    if text != title:
        text = text[:-1] + "…" if len(text) > 1 else ""
    left = (width - draw.textlength(text, font=font)) / 2
    draw.text((left, strip / 2), text, fill="black", font=font, anchor="lm")
    return np.concatenate([np.asarray(canvas), tile], axis=0)


def panel(
    image: ArrayLike,
    heatmap: ArrayLike,
    thresholded: ArrayLike,
    *,
    titles: Sequence[str] = ("original", "heatmap", "thresholded"),
    cmap: str = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """Render original | heatmap overlay | thresholded overlay side by side, with titles.

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        ``(3, H, W)`` float tensor in ``[0, 1]``, or ``(H, W, 3)`` uint8 array.
    heatmap : torch.Tensor or numpy.ndarray
        ``(h, w)`` or ``(1, h, w)`` values in ``[0, 1]``, resized bilinearly to the image.
    thresholded : torch.Tensor or numpy.ndarray
        ``(h, w)`` or ``(1, h, w)`` mask or thresholded heatmap; pixels ``> 0`` (or ``True``) are
        kept. Resized to the image with nearest-neighbour interpolation.
    titles : sequence of three str, default ("original", "heatmap", "thresholded")
        Titles above the three tiles, shortened with "…" when wider than a tile.
    cmap : str, default "jet"
        Name of a matplotlib colormap.
    alpha : float, default 0.5
        Weight of the colored heatmap in the two overlays.

    Returns
    -------
    numpy.ndarray
        uint8 RGB ``(strip + H * k, 3 * W * k + 2 * gap, 3)``: tiles separated by 4 white
        pixels under a white title strip. ``k`` is 1, or the smallest integer that makes a tile at
        least 96 pixels wide when the image is smaller (nearest-neighbour enlargement).
        The third tile shows the heatmap overlay on kept pixels and the original at 30%
        brightness elsewhere.
    """
    if isinstance(titles, str) or len(titles) != 3 or not all(isinstance(t, str) for t in titles):
        raise InputError(f"titles must be three strings, got {titles!r}")
    blended = overlay(image, heatmap, cmap=cmap, alpha=alpha)  # (H, W, 3)
    base = _image_array(image)
    width = base.shape[1]
    third = kept_overlay(image, heatmap, thresholded, cmap=cmap, alpha=alpha)

    scale = max(1, math.ceil(_MIN_TILE_WIDTH / width))
    tiles = [base, blended, third]
    if scale > 1:
        tiles = [tile.repeat(scale, axis=0).repeat(scale, axis=1) for tile in tiles]
    font = _load_font(12)
    bbox = font.getbbox("Ag…")
    strip = int(bbox[3] - bbox[1]) + 8
    titled = [_titled(tile, title, font, strip) for tile, title in zip(tiles, titles, strict=True)]
    gap = np.full((titled[0].shape[0], _GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([titled[0], gap, titled[1], gap, titled[2]], axis=1)


def save_panel(
    path: str | Path,
    image: ArrayLike,
    heatmap: ArrayLike,
    thresholded: ArrayLike,
    *,
    titles: Sequence[str] = ("original", "heatmap", "thresholded"),
    cmap: str = "jet",
    alpha: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write :func:`panel` to a PNG file, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ending in ``.png``. Missing parent folders are created.
    image, heatmap, thresholded, titles, cmap, alpha
        As for :func:`panel`.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False (checked before rendering).
    """
    path = _check_png_path(path)
    check_writable([path], overwrite)
    array = panel(image, heatmap, thresholded, titles=titles, cmap=cmap, alpha=alpha)
    return atomic_write_bytes(path, _encode_png(array), overwrite=overwrite)
