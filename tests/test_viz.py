"""Tests of leanxai.viz (overlay, panel, HTML report) and the atomic writers in leanxai.io."""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from leanxai.core.errors import InputError, OutputExistsError
from leanxai.io import atomic_save_npy, atomic_write_bytes, atomic_write_text, check_writable
from leanxai.viz.overlay import colorize, overlay, panel, save_overlay, save_panel
from leanxai.viz.report import write_html_report


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.tmp"))


@pytest.fixture
def image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, 12, 16, generator=generator)  # (3, H, W)


@pytest.fixture
def heatmap() -> torch.Tensor:
    return torch.linspace(0, 1, 12 * 16).reshape(12, 16)  # (H, W)


# ---------------------------------------------------------------------------------- colorize


def test_colorize_matches_matplotlib(heatmap: torch.Tensor) -> None:
    colored = colorize(heatmap, cmap="viridis")
    assert colored.shape == (12, 16, 3)
    assert colored.dtype == np.uint8
    reference = colormaps["viridis"](heatmap.numpy(), bytes=True)[..., :3]
    np.testing.assert_array_equal(colored, reference)


def test_colorize_accepts_numpy_and_leading_one(heatmap: torch.Tensor) -> None:
    np.testing.assert_array_equal(colorize(heatmap[None]), colorize(heatmap.numpy()))


def test_colorize_does_not_import_pyplot(heatmap: torch.Tensor) -> None:
    already = "matplotlib.pyplot" in sys.modules
    colorize(heatmap)
    panel(torch.rand(3, 8, 8), torch.rand(8, 8), torch.rand(8, 8) > 0.5)
    assert ("matplotlib.pyplot" in sys.modules) == already


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.rand(2, 3, 4), "shape"),
        (torch.rand(5), "shape"),
        (torch.full((2, 2), float("nan")), "NaN"),
        (torch.full((2, 2), 1.5), r"\[0, 1\]"),
        (torch.full((2, 2), -0.5), r"\[0, 1\]"),
    ],
)
def test_colorize_rejects_bad_heatmaps(bad: torch.Tensor, match: str) -> None:
    with pytest.raises(InputError, match=match):
        colorize(bad)


def test_colorize_unknown_cmap(heatmap: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="not_a_cmap"):
        colorize(heatmap, cmap="not_a_cmap")


def test_colorize_clips_rounding_slack() -> None:
    values = torch.tensor([[1.0 + 1e-6, -1e-6]])
    np.testing.assert_array_equal(colorize(values), colorize(torch.tensor([[1.0, 0.0]])))


# ----------------------------------------------------------------------------------- overlay


def test_overlay_shape_and_dtype(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    blended = overlay(image, heatmap)
    assert blended.shape == (12, 16, 3)
    assert blended.dtype == np.uint8


def test_overlay_alpha_zero_is_the_image(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    expected = np.rint(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay(image, heatmap, alpha=0.0), expected)
    np.testing.assert_array_equal(overlay(expected, heatmap, alpha=0), expected)


def test_overlay_alpha_one_is_the_colormap(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    np.testing.assert_array_equal(
        overlay(image, heatmap, alpha=1.0, cmap="magma"), colorize(heatmap, cmap="magma")
    )


def test_overlay_is_the_weighted_mean(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    base = np.rint(image.permute(1, 2, 0).numpy() * 255)
    expected = np.rint(0.25 * base + 0.75 * colorize(heatmap).astype(np.float64))
    np.testing.assert_allclose(overlay(image, heatmap, alpha=0.75), expected, atol=1)


def test_overlay_resizes_the_heatmap(image: torch.Tensor) -> None:
    small = torch.full((3, 4), 0.5)
    blended = overlay(image, small, alpha=1.0)
    assert blended.shape == (12, 16, 3)
    np.testing.assert_array_equal(blended, colorize(torch.full((12, 16), 0.5)))


def test_overlay_accepts_uint8_array(heatmap: torch.Tensor) -> None:
    pixels = np.full((12, 16, 3), 200, dtype=np.uint8)
    assert overlay(pixels, heatmap).shape == (12, 16, 3)


@pytest.mark.parametrize("alpha", [-0.1, 1.1, float("nan"), "0.5", True])
def test_overlay_rejects_bad_alpha(
    image: torch.Tensor, heatmap: torch.Tensor, alpha: object
) -> None:
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, heatmap, alpha=alpha)  # type: ignore[arg-type]


def test_overlay_rejects_bad_images(heatmap: torch.Tensor) -> None:
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        overlay(torch.rand(12, 16, 3), heatmap)
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        overlay(torch.rand(1, 3, 12, 16), heatmap)
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        overlay(np.zeros((3, 12, 16), dtype=np.uint8), heatmap)
    with pytest.raises(TypeError, match="uint8"):
        overlay(np.zeros((12, 16, 3), dtype=np.float32), heatmap)
    with pytest.raises(TypeError, match="floating point"):
        overlay(torch.zeros(3, 12, 16, dtype=torch.uint8), heatmap)
    with pytest.raises(InputError, match="image must lie"):
        overlay(torch.full((3, 12, 16), 2.0), heatmap)
    with pytest.raises(TypeError, match="image"):
        overlay([[0.0]], heatmap)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- panel


def test_panel_layout(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    image = torch.rand(3, 100, 120)
    mask = torch.zeros(100, 120, dtype=torch.bool)
    mask[:50] = True
    rendered = panel(image, torch.rand(100, 120), mask)
    assert rendered.dtype == np.uint8
    height, width, channels = rendered.shape
    assert channels == 3
    assert width == 3 * 120 + 2 * 4
    strip = height - 100
    assert 10 <= strip <= 40
    original = rendered[strip:, :120]
    np.testing.assert_array_equal(original, np.rint(image.permute(1, 2, 0).numpy() * 255))
    third = rendered[strip:, 2 * 124 :]
    blended = rendered[strip:, 124 : 124 + 120]
    np.testing.assert_array_equal(third[:50], blended[:50])  # kept: same overlay
    dimmed = np.rint(original[50:].astype(np.float32) * 0.3)
    np.testing.assert_array_equal(third[50:], dimmed)  # not kept: dimmed original


def test_panel_titles_are_drawn(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    plain = panel(image, heatmap, heatmap > 0.5, titles=("", "", ""))
    titled = panel(image, heatmap, heatmap > 0.5)
    assert plain.shape == titled.shape
    strip = plain.shape[0] - 12 * 6  # 16-pixel-wide tiles are enlarged 6x to 96
    assert (plain[:strip] == 255).all()
    assert (titled[:strip] < 255).any()


def test_panel_enlarges_small_images(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    rendered = panel(image, heatmap, heatmap)  # 16 wide -> enlarged 6x to 96
    assert rendered.shape[1] == 3 * 96 + 2 * 4
    assert (rendered.shape[0] - 12 * 6) > 0


def test_panel_accepts_low_resolution_mask(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    assert panel(image, heatmap, torch.ones(3, 4)).dtype == np.uint8


def test_panel_rejects_bad_arguments(image: torch.Tensor, heatmap: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="titles"):
        panel(image, heatmap, heatmap, titles=("a", "b"))
    with pytest.raises(ValueError, match="titles"):
        panel(image, heatmap, heatmap, titles="abc")
    with pytest.raises(InputError, match="thresholded"):
        panel(image, heatmap, torch.rand(2, 3, 4))
    with pytest.raises(InputError, match="thresholded"):
        panel(image, heatmap, torch.full((12, 16), float("nan")))


# ------------------------------------------------------------------------------ save_overlay


def test_save_overlay_writes_png_and_refuses_overwrite(
    tmp_path: Path, image: torch.Tensor, heatmap: torch.Tensor
) -> None:
    path = tmp_path / "out" / "overlay.png"
    assert save_overlay(path, image, heatmap) == path
    with Image.open(path) as written:
        assert written.format == "PNG"
        np.testing.assert_array_equal(np.asarray(written), overlay(image, heatmap))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"overlay\.png"):
        save_overlay(path, image, heatmap, alpha=1.0)
    assert path.read_bytes() == before
    save_overlay(path, image, heatmap, alpha=1.0, overwrite=True)
    assert path.read_bytes() != before
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["overlay.png"]


def test_save_panel_writes_png_and_refuses_overwrite(
    tmp_path: Path, image: torch.Tensor, heatmap: torch.Tensor
) -> None:
    path = tmp_path / "panel.png"
    save_panel(path, image, heatmap, heatmap > 0.5)
    with Image.open(path) as written:
        np.testing.assert_array_equal(np.asarray(written), panel(image, heatmap, heatmap > 0.5))
    with pytest.raises(OutputExistsError):
        save_panel(path, image, heatmap, heatmap > 0.5)
    save_panel(path, image, heatmap, heatmap > 0.2, overwrite=True)
    assert _leftovers(tmp_path) == []


def test_save_requires_png_suffix(
    tmp_path: Path, image: torch.Tensor, heatmap: torch.Tensor
) -> None:
    with pytest.raises(ValueError, match=r"\.png"):
        save_overlay(tmp_path / "overlay.jpg", image, heatmap)
    assert list(tmp_path.iterdir()) == []


def test_save_bad_input_leaves_nothing(tmp_path: Path, image: torch.Tensor) -> None:
    with pytest.raises(InputError):
        save_overlay(tmp_path / "bad.png", image, torch.full((4, 4), float("nan")))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- io


def test_check_writable_lists_existing_files(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{index}.txt" for index in range(8)]
    for path in paths[:7]:
        path.write_text("x")
    check_writable([tmp_path / "new.txt"], overwrite=False)
    check_writable(paths, overwrite=True)
    with pytest.raises(OutputExistsError) as caught:
        check_writable(paths, overwrite=False)
    message = str(caught.value)
    assert message.startswith("7 output files already exist")
    assert "f0.txt" in message and "f4.txt" in message and "f5.txt" not in message
    assert "and 2 more" in message and "not replaced" in message
    assert caught.value.paths == tuple(str(p) for p in paths[:7])
    assert "\n" not in message
    assert isinstance(caught.value, FileExistsError)


def test_check_writable_refuses_folders_even_with_overwrite(tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match="folder"):
        check_writable([tmp_path], overwrite=True)


def test_atomic_write_bytes_and_text(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "deeper" / "data.bin"
    assert atomic_write_bytes(path, b"\x00\x01") == path
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(OutputExistsError, match=r"data\.bin"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write_bytes(path, b"new", overwrite=True)
    assert path.read_bytes() == b"new"

    text_path = tmp_path / "note.txt"
    atomic_write_text(text_path, "héllo\nworld")
    assert text_path.read_bytes() == "héllo\nworld".encode()
    with pytest.raises(OutputExistsError):
        atomic_write_text(text_path, "again")
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_atomic_write_uses_umask_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "perm.txt", "x")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "x.bin", Boom())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        atomic_save_npy(tmp_path / "x.npy", np.array([object()]))
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_npy(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "heatmaps"  # no suffix added
    atomic_save_npy(path, array)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), array)
    with pytest.raises(OutputExistsError):
        atomic_save_npy(path, array)
    tensor = torch.ones(2, 2, requires_grad=True)
    atomic_save_npy(path, tensor, overwrite=True)
    np.testing.assert_array_equal(np.load(path), np.ones((2, 2), dtype=np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heatmaps"]


# ------------------------------------------------------------------------------------ report


def test_report_escapes_all_text(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script> & co'
    path = write_html_report(
        tmp_path / "report.html",
        title=evil,
        intro=f"first {evil}\n\nsecond paragraph",
        table=[{evil: evil, "score": 0.123456789}, {"score": 2, "extra": None}],
        images=[("panels/a b&c.png", evil)],
    )
    page = path.read_text(encoding="utf-8")
    assert '<script>alert("x")' not in page  # the template's own script is the only one
    assert page.count("<script>") == 1
    assert html.escape(evil) in page
    assert page.count("<p>") == 2
    assert "<th>score</th>" in page and "<th>extra</th>" in page
    assert "0.1235" in page
    assert 'src="panels/a%20b%26c.png"' in page
    assert page.startswith("<!DOCTYPE html>")


def test_report_refuses_overwrite_and_bad_paths(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    kwargs: dict[str, object] = {"title": "t", "intro": "", "table": [], "images": []}
    write_html_report(path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(OutputExistsError):
        write_html_report(path, **kwargs)  # type: ignore[arg-type]
    write_html_report(path, **kwargs, overwrite=True)  # type: ignore[arg-type]
    for bad in ["/etc/passwd", "javascript:alert(1)", "https://example.com/a.png", ""]:
        with pytest.raises(ValueError, match=r"images\[0\]"):
            write_html_report(
                tmp_path / "other.html", title="t", intro="", table=[], images=[(bad, "c")]
            )
    assert not (tmp_path / "other.html").exists()
    assert _leftovers(tmp_path) == []
