"""Tests of leanxai.data.images: finding files, loading every Pillow mode, and bad files."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leanxai.core.errors import InputError
from leanxai.data.images import IMAGE_EXTENSIONS, find_images, load_image, to_tensor_batch


def _png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _save(path: Path, image: Image.Image, fmt: str | None = None) -> Path:
    image.save(path, format=fmt)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB pixels but holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------- modes


def test_rgb_exact_values(tmp_path: Path) -> None:
    pixels = np.array([[[255, 0, 0], [0, 128, 255]]], dtype=np.uint8)  # (1, 2, 3)
    path = _save(tmp_path / "rgb.png", Image.fromarray(pixels))
    image = load_image(path, size=None)
    assert image.shape == (3, 1, 2)
    assert image.dtype == torch.float32
    expected = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(image, expected)


def test_grayscale_is_repeated_on_three_channels(tmp_path: Path) -> None:
    path = _save(tmp_path / "gray.png", Image.fromarray(np.array([[0, 51, 255]], np.uint8)))
    image = load_image(path, size=None)
    assert image.shape == (3, 1, 3)
    for channel in image:
        torch.testing.assert_close(channel[0], torch.tensor([0.0, 0.2, 1.0]))


def test_bilevel_mode_1(tmp_path: Path) -> None:
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    image = load_image(_save(tmp_path / "bw.png", bilevel), size=None)
    torch.testing.assert_close(image[:, 0, 0], torch.zeros(3))
    torch.testing.assert_close(image[:, 0, 1], torch.ones(3))


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    pixels = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    image = load_image(_save(tmp_path / "rgba.png", Image.fromarray(pixels)), size=None)
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # opaque red
    torch.testing.assert_close(image[:, 0, 1], torch.ones(3))  # transparent -> white
    half = 1 - 128 / 255  # black at alpha 128/255 over white
    torch.testing.assert_close(image[:, 0, 2], torch.full((3,), half))


def test_la_is_composited_over_white(tmp_path: Path) -> None:
    gray_alpha = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), mode="LA")
    image = load_image(_save(tmp_path / "la.png", gray_alpha), size=None)
    torch.testing.assert_close(image[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(image[:, 0, 1], torch.zeros(3))


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    image = load_image(_save(tmp_path / "p.png", palette), size=None)
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(image[:, 0, 1], torch.tensor([0.0, 0.0, 1.0]))

    palette.info["transparency"] = 1  # entry 1 (blue) is transparent
    for name in ("pt.png", "pt.gif"):
        path = tmp_path / name
        palette.save(path, transparency=1)
        with Image.open(path) as reopened:
            assert reopened.mode == "P"
        image = load_image(path, size=None)
        torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
        torch.testing.assert_close(image[:, 0, 1], torch.ones(3))  # transparent -> white


def test_cmyk_jpeg_and_tiff(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    for name in ("cmyk.tiff", "cmyk.jpg"):
        path = _save(tmp_path / name, cmyk)
        with Image.open(path) as reopened:
            assert reopened.mode == "CMYK"
        image = load_image(path, size=None)
        assert image.shape == (3, 8, 8)
        torch.testing.assert_close(
            image.mean(dim=(1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.03, rtol=0
        )


def test_16_bit_png_scales_by_bit_depth(tmp_path: Path) -> None:
    values = np.array([[0, 300, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I;16")
    image = load_image(path, size=None)
    expected = torch.tensor([0.0, 300 / 65535, 32768 / 65535, 1.0])
    for channel in image:
        torch.testing.assert_close(channel[0], expected)
    assert abs(image[0, 0, 2].item() - 0.5) < 1e-4  # not clipped at 255
    assert image.max().item() == 1.0


def test_16_bit_big_endian_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    big_endian = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    path = _save(tmp_path / "be.tiff", big_endian)
    image = load_image(path, size=None)
    torch.testing.assert_close(image[0, 0], torch.tensor([0.0, 32768 / 65535, 1.0]))


def test_16_bit_pgm_with_small_maxval(tmp_path: Path) -> None:
    # A 12-bit PGM: Pillow rescales maxval 4095 to 65535 in mode "I"; 4095 must map to 1.
    path = tmp_path / "twelve.pgm"
    path.write_bytes(b"P5\n2 1\n4095\n" + np.array([4095, 0], dtype=">u2").tobytes())
    image = load_image(path, size=None)
    torch.testing.assert_close(image[0, 0], torch.tensor([1.0, 0.0]))


def test_32_bit_integer_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 70_000, 2**31 - 1]], dtype=np.int32)
    path = _save(tmp_path / "int32.tiff", Image.fromarray(values))
    with Image.open(path) as reopened:
        assert reopened.mode == "I"
    image = load_image(path, size=None)
    # Signed 32-bit TIFF (SampleFormat 2): the largest int32 maps to 1.
    expected = torch.tensor(values[0].astype(np.float64) / (2**31 - 1), dtype=torch.float32)
    torch.testing.assert_close(image[0, 0], expected)


def test_32_bit_negative_values_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "neg.tiff", Image.fromarray(np.array([[-5, 3]], dtype=np.int32)))
    with pytest.raises(InputError, match="negative"):
        load_image(path, size=None)


def test_float_image_ranges(tmp_path: Path) -> None:
    unit = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    image = load_image(_save(tmp_path / "unit.tiff", Image.fromarray(unit)), size=None)
    torch.testing.assert_close(image[0, 0], torch.tensor([0.0, 0.25, 1.0]))

    eight_bit = Image.fromarray(np.array([[0, 51, 255]], np.uint8)).convert("F")
    image = load_image(_save(tmp_path / "f255.tiff", eight_bit), size=None)
    torch.testing.assert_close(image[0, 0], torch.tensor([0.0, 0.2, 1.0]))

    wide = np.array([[-3.0, 1000.0]], dtype=np.float32)
    with pytest.raises(InputError, match="float image values span"):
        load_image(_save(tmp_path / "wide.tiff", Image.fromarray(wide)), size=None)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_image_with_nan_or_inf_is_refused(tmp_path: Path, bad: float) -> None:
    values = np.array([[0.5, bad]], dtype=np.float32)
    path = _save(tmp_path / "nan.tiff", Image.fromarray(values))
    with pytest.raises(InputError, match="NaN or infinite") as caught:
        load_image(path, size=None)
    assert str(caught.value).startswith(str(path))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)  # (H=2, W=4)
    wide = Image.fromarray(pixels)
    exif = wide.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    path = tmp_path / "rotated.jpg"
    wide.save(path, exif=exif.tobytes())
    assert load_image(path, size=None).shape == (3, 4, 2)


# ------------------------------------------------------------------------------------ resizing


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
def test_odd_sizes_are_resized(tmp_path: Path, mode: str) -> None:
    source = Image.new(mode, (37, 23))
    path = _save(tmp_path / f"odd_{mode.replace(';', '')}.png", source)
    image = load_image(path)
    assert image.shape == (3, 224, 224)
    assert image.dtype == torch.float32
    image = load_image(path, size=(17, 31))
    assert image.shape == (3, 17, 31)
    assert image.min() >= 0 and image.max() <= 1


def test_resize_keeps_a_constant_image_constant(tmp_path: Path) -> None:
    path = _save(tmp_path / "flat.png", Image.new("RGB", (13, 7), (10, 200, 30)))
    image = load_image(path, size=(64, 5))
    expected = torch.tensor([10, 200, 30], dtype=torch.float32) / 255
    torch.testing.assert_close(image.mean(dim=(1, 2)), expected)
    assert (image.amax(dim=(1, 2)) - image.amin(dim=(1, 2))).max() < 1e-5


def test_every_listed_extension_loads(tmp_path: Path) -> None:
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM"}
    for extension in sorted(IMAGE_EXTENSIONS):
        mode = "L" if extension == ".pgm" else "RGB"
        fmt = formats.get(extension, "PPM" if extension == ".pgm" else None)
        path = tmp_path / f"image{extension}"
        Image.new(mode, (5, 4), 128 if mode == "L" else (128, 128, 128)).save(path, format=fmt)
        image = load_image(path, size=None)
        assert image.shape == (3, 4, 5), extension
        assert abs(image.mean().item() - 128 / 255) < 0.02, extension


@pytest.mark.parametrize("size", [(0, 4), (4,), (4, 4, 4), (2.5, 3), "224", (True, 4)])
def test_bad_size_argument(tmp_path: Path, size: object) -> None:
    path = _save(tmp_path / "a.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="size"):
        load_image(path, size=size)  # type: ignore[arg-type]


def test_bad_max_pixels_argument(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(path, max_pixels=0)


# ------------------------------------------------------------------------------------- errors


def _assert_one_line_about(error: pytest.ExceptionInfo[InputError], path: Path) -> None:
    message = str(error.value)
    assert message.startswith(str(path))
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(InputError, match="does not exist") as caught:
        load_image(path)
    _assert_one_line_about(caught, path)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder") as caught:
        load_image(tmp_path)
    _assert_one_line_about(caught, tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(InputError, match="empty") as caught:
        load_image(path)
    _assert_one_line_about(caught, path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="not an image") as caught:
        load_image(path)
    _assert_one_line_about(caught, path)


def test_input_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _png_bytes(noise, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as caught:
        load_image(path)
    _assert_one_line_about(caught, path)


def test_truncation_setting_is_left_alone(tmp_path: Path) -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = tmp_path / "cut.png"
    data = _png_bytes(Image.new("RGB", (32, 32), (1, 2, 3)))
    path.write_bytes(data[:-30])
    with pytest.raises(InputError):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decompression_bomb_beyond_pillow_hard_limit(tmp_path: Path) -> None:
    # 10^10 pixels: more than twice Image.MAX_IMAGE_PIXELS, so Pillow itself raises.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(InputError, match="decompression bomb") as caught:
        load_image(path)
    _assert_one_line_about(caught, path)


def test_decompression_bomb_between_limits_is_refused_without_warning(tmp_path: Path) -> None:
    # 10^8 pixels: Pillow only warns; the header check against max_pixels refuses it.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(10_000, 10_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="max_pixels=89478485") as caught:
            load_image(path)
    _assert_one_line_about(caught, path)


def test_max_pixels_is_checked_before_decoding(tmp_path: Path) -> None:
    path = _save(tmp_path / "small.png", Image.new("RGB", (10, 10)))
    with pytest.raises(InputError, match="10x10 = 100 pixels") as caught:
        load_image(path, max_pixels=99)
    _assert_one_line_about(caught, path)
    assert load_image(path, size=None, max_pixels=100).shape == (3, 10, 10)


# -------------------------------------------------------------------------------- find_images


def test_find_images_walks_folders_recursively_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "b").mkdir(parents=True)
    (root / "a" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for relative in ["z.png", "a/deep/x.JPG", "a/y.png", "b/w.webp", "a/readme.txt",
                     ".hidden/h.png", "b/.dot.png"]:  # fmt: skip
        (root / relative).write_bytes(b"x")
    files, problems = find_images([root])
    assert problems == []
    assert [file.relative_to(root).as_posix() for file in files] == [
        "a/deep/x.JPG",
        "a/y.png",
        "b/w.webp",
        "z.png",
    ]
    assert find_images([str(root)]) == (files, [])  # str paths, same stable order


def test_find_images_keeps_argument_order_and_explicit_files(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.png").write_bytes(b"x")
    (folder / "a.png").write_bytes(b"x")
    odd = tmp_path / "scan.dat"  # unknown suffix, but named explicitly
    odd.write_bytes(b"x")
    files, problems = find_images([odd, folder, folder / "a.png"])
    assert files == [odd, folder / "a.png", folder / "b.png"]  # duplicate listed once
    assert problems == []


def test_find_images_reports_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    present = tmp_path / "ok.png"
    present.write_bytes(b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.png"
    files, problems = find_images([missing, present, empty, tmp_path / "gone"])
    assert files == [present]
    assert problems == [
        (missing, "does not exist"),
        (empty, "folder holds no image files"),
        (tmp_path / "gone", "does not exist"),
    ]


def test_find_images_refuses_a_single_string(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="paths"):
        find_images(str(tmp_path))


# ---------------------------------------------------------------------------- to_tensor_batch


def test_to_tensor_batch_stacks() -> None:
    images = [torch.rand(3, 5, 6) for _ in range(4)]
    batch = to_tensor_batch(images)
    assert batch.shape == (4, 3, 5, 6)
    torch.testing.assert_close(batch[2], images[2])


def test_to_tensor_batch_errors() -> None:
    with pytest.raises(InputError, match="empty"):
        to_tensor_batch([])
    with pytest.raises(InputError, match=r"images\[1\] has shape"):
        to_tensor_batch([torch.rand(3, 5, 6), torch.rand(3, 6, 5)])
    with pytest.raises(InputError, match=r"images\[0\] must be \(3, H, W\)"):
        to_tensor_batch([torch.rand(1, 5, 6)])
    with pytest.raises(TypeError, match=r"images\[0\]"):
        to_tensor_batch([np.zeros((3, 5, 6))])  # type: ignore[list-item]
