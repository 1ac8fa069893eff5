"""Find image files and load them as ``(3, H, W)`` float tensors in ``[0, 1]``.

Every problem with an image file (missing, empty, not an image, truncated, too large, NaN pixels)
raises :class:`~leanxai.core.errors.InputError` with a one-line message that starts with the file
path, so a batch can report the bad item and keep going.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from leanxai.core.errors import InputError, InputTypeError

__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_image",
    "find_images",
    "ignored_files",
    "load_image",
    "load_image_and_original",
    "to_tensor_batch",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
"""Lower-case file suffixes (with the dot) that :func:`find_images` picks up inside folders."""

# Exceptions Pillow's decoders raise on corrupt data. Anything else is a bug and propagates.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def find_images(
    paths: Sequence[str | Path],
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into a list of image files.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and folders. A file given explicitly is kept whatever its suffix (``load_image``
        judges it). A folder is walked recursively; it contributes the files whose suffix (case
        insensitive) is in :data:`IMAGE_EXTENSIONS`, sorted by their path relative to the folder.
        Hidden files and folders (name starting with ``.``) are skipped, and symbolic links to
        folders are not followed.

    Returns
    -------
    files : list of Path
        Image files in the order of ``paths``, each folder's files sorted. A file reached twice is
        listed once, at its first position.
    problems : list of (Path, str)
        Paths that yield nothing, with the reason: a path that does not exist, a folder without
        image files, or something that is neither a file nor a folder. Nothing is raised, so a
        caller can report these and go on.
    """
    if isinstance(paths, (str, Path)):
        raise InputTypeError(f"paths must be a sequence of paths, not a single path: {paths!r}")
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(file: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            files.append(file)

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            add(path)
        elif path.is_dir():
            found = _walk_folder(path)
            if not found:
                problems.append((path, "folder holds no image files"))
            for file in found:
                add(file)
        elif path.exists() or path.is_symlink():
            reason = "is a broken symbolic link" if path.is_symlink() else "is not a file or folder"
            problems.append((path, reason))
        else:
            problems.append((path, "does not exist"))
    return files, problems


def _walk_folder(folder: Path, ignored: list[Path] | None = None) -> list[Path]:
    found: list[Path] = []
    skipped: list[Path] = []
    for root, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            file = Path(root) / name
            if name.startswith(".") or not file.is_file():
                continue
            (found if file.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(file)
    if ignored is not None:
        ignored.extend(sorted(skipped, key=lambda file: file.relative_to(folder).parts))
    return sorted(found, key=lambda file: file.relative_to(folder).parts)


def ignored_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files inside the folders of ``paths`` that :func:`find_images` leaves out because their
    suffix is not an image suffix (hidden files excluded), so a caller can name them."""
    ignored: list[Path] = []
    for raw in paths:
        if Path(raw).is_dir():
            _walk_folder(Path(raw), ignored)
    return ignored


def load_image(
    path: str | Path,
    size: tuple[int, int] | None = (224, 224),
    *,
    max_pixels: int = 89_478_485,
) -> torch.Tensor:
    """Load an image file as an RGB float tensor.

    Parameters
    ----------
    path : str or Path
        Image file in any format Pillow reads. Only the first frame of an animated or multi-page
        file is used. An EXIF orientation tag is applied, so the tensor is upright as a viewer
        shows it.
    size : (int, int) or None, default (224, 224)
        Output ``(H, W)``. The image is resized with bilinear interpolation and antialiasing (in
        float, so 16-bit precision survives); the aspect ratio is not kept. ``None`` keeps the
        file's size.
    max_pixels : int, default 89_478_485
        Largest ``width * height`` accepted, checked on the header before any pixel is decoded
        (the default is Pillow's own ``Image.MAX_IMAGE_PIXELS``). Pillow's global limit still
        applies on top: an image more than twice ``Image.MAX_IMAGE_PIXELS`` is refused by Pillow
        whatever ``max_pixels`` says.

    Returns
    -------
    torch.Tensor
        ``(3, H, W)`` float32 in ``[0, 1]``.

    Raises
    ------
    InputError
        The file is missing, empty, not an image, truncated or corrupt, larger than
        ``max_pixels``, or holds values that cannot be mapped to ``[0, 1]`` (NaN or infinite
        floats, negative integers). The message starts with the path.
    ValueError
        ``size`` or ``max_pixels`` is not a valid value.

    Notes
    -----
    Modes are mapped to RGB as follows: grayscale (``1``, ``L``) is repeated on the three
    channels; transparency (``LA``, ``RGBA``, palette images with a transparent entry) is
    composited over white; ``CMYK``, ``YCbCr``, ``LAB`` and ``HSV`` use Pillow's conversion (ICC
    profiles are ignored). 16-bit images (``I;16*``) are divided by 65535. 32-bit integer images
    (``I``) are divided by the largest value of their declared sample type when the file is a TIFF
    (``BitsPerSample`` and ``SampleFormat`` tags: ``2**31 - 1`` for signed 32-bit), else by 65535
    when every value fits in 16 bits (Pillow stores 16-bit PGM/PPM this way) and ``2**31 - 1``
    otherwise; negative values are an error. Float images (``F``) within ``[0, 1]`` are kept;
    within ``[0, 255]`` (Pillow's convention for floats made from 8-bit data) they are divided by
    255; any other range is an error rather than a guess.
    """
    size = _check_size(size)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(f"max_pixels must be a positive int, got {max_pixels!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        with open(path, "rb") as handle:
            array = _decode(path, handle, max_pixels)
    except OSError as error:  # opening the file itself failed (permissions, I/O)
        raise InputError(f"{path}: cannot read file ({_one_line(error)})") from error
    return _to_tensor(array, size)


def load_image_and_original(
    path: str | Path,
    size: tuple[int, int] | None = (224, 224),
    *,
    max_side: int | None = None,
    max_pixels: int = 89_478_485,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an image once, as the model's input and as the photo itself.

    Returns ``(model_input, original)``: ``model_input`` exactly as :func:`load_image` gives it
    for ``size`` (resized, aspect ratio not kept), ``original`` ``(3, H0, W0)`` at the file's own
    size and aspect ratio, scaled down (antialiased) so that its longer side is at most
    ``max_side`` when that is given. Overlays drawn on ``original`` show the user's photo rather
    than the squashed model input. Errors are those of :func:`load_image`.
    """
    size = _check_size(size)
    if max_side is not None and (
        isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1
    ):
        raise InputError(f"max_side must be None or a positive int, got {max_side!r}")
    original = load_image(path, size=None, max_pixels=max_pixels)  # (3, H0, W0)
    height, width = original.shape[1:]
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        display = _to_tensor(original.permute(1, 2, 0).numpy(), shape)
    else:
        display = original
    return _to_tensor(original.permute(1, 2, 0).numpy(), size), display


def decode_image(
    data: bytes,
    name: str | Path,
    size: tuple[int, int] | None = (224, 224),
    *,
    max_pixels: int = 89_478_485,
) -> torch.Tensor:
    """Decode an image file's bytes exactly as :func:`load_image` decodes the file.

    For collections read as raw bytes (``leanxai.scale``, Parquet columns). ``name`` stands for
    the path in error messages; the other arguments, the result and the errors are those of
    :func:`load_image`.
    """
    size = _check_size(size)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputTypeError(f"data must be bytes, got {type(data).__name__}")
    return _to_tensor(_decode(Path(name), io.BytesIO(bytes(data)), max_pixels), size)


def _to_tensor(array: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    image = torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)
    if size is not None and tuple(image.shape[1:]) != size:
        image = F.interpolate(
            image[None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0]
    return image.clamp_(0.0, 1.0)


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)
    ):
        raise InputError(f"size must be None or a pair of positive ints (H, W), got {size!r}")
    return (int(size[0]), int(size[1]))


def _decode(path: Path, handle: BinaryIO, max_pixels: int) -> np.ndarray:
    """Open, check the header size, fully decode, and convert to ``(H, W, 3)`` float32."""
    if handle.seek(0, os.SEEK_END) == 0:  # a file or bytes in memory (decode_image)
        raise InputError(f"{path}: file is empty (0 bytes)")
    handle.seek(0)
    # Pillow warns (DecompressionBombWarning) above Image.MAX_IMAGE_PIXELS; silence it here
    # because the header check against max_pixels below decides, and raises InputError.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(handle)
        except UnidentifiedImageError as error:
            raise InputError(f"{path}: not an image (or a format Pillow cannot read)") from error
        except Image.DecompressionBombError as error:
            raise InputError(
                f"{path}: refused as a possible decompression bomb ({_one_line(error)})"
            ) from error
        except _DECODE_ERRORS as error:
            raise InputError(f"{path}: corrupt image header ({_one_line(error)})") from error
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    f"{path}: image is {width}x{height} = {width * height} pixels, more than "
                    f"max_pixels={max_pixels}; refused as a possible decompression bomb"
                )
            if width == 0 or height == 0:
                raise InputError(f"{path}: image has no pixels ({width}x{height})")
            try:
                image.load()  # decode everything now, so truncation raises here
                # exif_transpose returns a plain copy without the TIFF tags; read them first.
                full_scale = _declared_full_scale(image)
                upright = ImageOps.exif_transpose(image)
                return _to_rgb_float(path, upright, full_scale)
            except InputError:
                raise
            except Image.DecompressionBombError as error:
                raise InputError(
                    f"{path}: refused as a possible decompression bomb ({_one_line(error)})"
                ) from error
            except _DECODE_ERRORS as error:
                raise InputError(
                    f"{path}: image data is truncated or corrupt ({_one_line(error)})"
                ) from error


def _to_rgb_float(path: Path, image: Image.Image, full_scale: int | None) -> np.ndarray:
    """Convert any Pillow mode to ``(H, W, 3)`` float32 in ``[0, 1]``."""
    mode = image.mode
    if mode.startswith("I;16"):
        gray = np.asarray(image).astype(np.float32) / 65535.0
        return _gray_to_rgb(gray)
    if mode == "I":
        return _gray_to_rgb(_int32_to_unit(path, image, full_scale))
    if mode == "F":
        return _gray_to_rgb(_float_to_unit(path, np.asarray(image, dtype=np.float32)))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode in ("RGBa", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        data = np.asarray(image).astype(np.float32) / 255.0  # (H, W, C)
        color, alpha = data[..., :-1], data[..., -1:]
        # Composite over white: a transparent pixel shows as the page a viewer would show.
        data = color * alpha + (1.0 - alpha)
        if data.shape[-1] == 1:
            return _gray_to_rgb(data[..., 0])
        return np.ascontiguousarray(data, dtype=np.float32)
    if image.mode in ("1", "L"):
        return _gray_to_rgb(np.asarray(image.convert("L")).astype(np.float32) / 255.0)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image).astype(np.float32) / 255.0


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1), dtype=np.float32)


def _int32_to_unit(path: Path, image: Image.Image, full_scale: int | None) -> np.ndarray:
    values = np.asarray(image).astype(np.int64)
    if values.size and values.min() < 0:
        raise InputError(
            f"{path}: 32-bit integer image has negative values (min {values.min()}); "
            "cannot map it to [0, 1]"
        )
    if full_scale is None:
        full_scale = 65535 if values.size == 0 or values.max() <= 65535 else 2**31 - 1
    return (values.astype(np.float64) / float(full_scale)).astype(np.float32)


def _declared_full_scale(image: Image.Image) -> int | None:
    """Largest value of a TIFF's declared sample type, or None when the file does not say."""
    tags = getattr(image, "tag_v2", None)
    if tags is None:
        return None
    bits, sample_format = tags.get(258), tags.get(339)  # BitsPerSample, SampleFormat
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    if isinstance(sample_format, tuple):
        sample_format = sample_format[0] if sample_format else None
    if not isinstance(bits, int) or not 2 <= bits <= 32:
        return None
    if sample_format == 2:  # signed integers: the positive half is the range
        return int(2 ** (bits - 1) - 1)
    return int(2**bits - 1)


def _float_to_unit(path: Path, values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise InputError(f"{path}: float image holds NaN or infinite values")
    if values.size == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values
    if low >= 0.0 and high <= 255.0:
        return values / np.float32(255.0)
    raise InputError(
        f"{path}: float image values span [{low:g}, {high:g}]; expected [0, 1] or [0, 255]"
    )


def to_tensor_batch(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack same-sized ``(3, H, W)`` images into one ``(B, 3, H, W)`` batch.

    Parameters
    ----------
    images : list of torch.Tensor
        Images as returned by :func:`load_image`, all of the same shape.

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)``.

    Raises
    ------
    InputError
        The list is empty, or an image is not ``(3, H, W)`` or differs in shape from the first.
    """
    if isinstance(images, torch.Tensor) or not isinstance(images, (list, tuple)):
        raise InputTypeError(f"images must be a list of tensors, got {type(images).__name__}")
    if not images:
        raise InputError("images is empty; nothing to stack")
    first = images[0]
    for index, image in enumerate(images):
        if not isinstance(image, torch.Tensor):
            raise InputTypeError(
                f"images[{index}] must be a torch.Tensor, got {type(image).__name__}"
            )
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"images[{index}] must be (3, H, W), got {tuple(image.shape)}")
        if image.shape != first.shape:
            raise InputError(
                f"images[{index}] has shape {tuple(image.shape)} but images[0] has "
                f"{tuple(first.shape)}; load them with the same size"
            )
    return torch.stack(list(images))  # (B, 3, H, W)
