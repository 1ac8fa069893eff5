"""The one HTML report template: self-contained, a threshold slider, sortable tables, phone width.

A report is a title, an introduction and :class:`Section` s. A section holds blocks: paragraphs
(``str``), :class:`Table` s, :class:`Picture` s, :class:`Switch` es (one picture per threshold)
and :class:`Card` s (a titled group of blocks, laid out side by side on wide screens, stacked on a
phone). A section with ``thresholds`` gets a slider; moving it shows, in every switch of that
section, the picture for the chosen threshold.

The page needs nothing from the network: CSS and script are inline and pictures given as bytes
are embedded as ``data:`` URIs, so the single ``.html`` file can be mailed or archived. Without
script the page still reads: each switch shows its default picture, tables keep their order.
Every piece of text is HTML-escaped; a picture given as a path (the older
:func:`write_html_report`) must be relative to the report and is URL-quoted.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Union
from urllib.parse import quote, urlsplit

import numpy as np
from PIL import Image

from leanxai.core.errors import InputError, InputTypeError
from leanxai.io import atomic_write_text

__all__ = [
    "Card",
    "Picture",
    "Section",
    "Switch",
    "Table",
    "picture",
    "render_report",
    "write_html_report",
    "write_report",
]


@dataclass(frozen=True)
class Picture:
    """An image: encoded bytes (PNG, JPEG; embedded) or a path relative to the report.

    ``link``, optional, is a path relative to the report opened by clicking the image (the
    full-size PNG next to the report).
    """

    data: bytes | None = None
    src: str | None = None
    caption: str = ""
    mime: str = "image/png"
    link: str | None = None


@dataclass(frozen=True)
class Switch:
    """One picture per threshold; the section's slider chooses which one is shown."""

    title: str
    options: Mapping[str, Picture]


@dataclass(frozen=True)
class Table:
    """Rows of a table: columns are the union of the keys, in order of first appearance.

    A missing key or ``None`` is an empty cell; floats show 4 significant digits and sort by their
    value; numbers are right-aligned. With ``sortable`` a click on a heading sorts by it.
    """

    rows: Sequence[Mapping[str, object]]
    caption: str = ""
    sortable: bool = True


@dataclass(frozen=True)
class Card:
    """A titled group of blocks, one of a grid of cards."""

    title: str
    blocks: Sequence[Block]


Block = Union[str, Table, Picture, Switch, Card]  # noqa: UP007 (a runtime alias on Python 3.10)


@dataclass(frozen=True)
class Section:
    """A heading, blocks, and optionally a threshold slider over ``thresholds``.

    ``default`` is the threshold shown first (the first one when ``None``). Every switch in the
    section must offer exactly ``thresholds``.
    """

    title: str
    blocks: Sequence[Block] = ()
    thresholds: Sequence[str] = ()
    default: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def picture(
    array: np.ndarray, caption: str = "", *, format: str = "jpeg", link: str | None = None
) -> Picture:
    """Encode an ``(H, W, 3)`` uint8 RGB array as an embedded :class:`Picture`.

    JPEG (quality 90) keeps a report of many photo overlays small; ``format="png"`` is lossless.
    """
    values = np.asarray(array)
    if values.dtype != np.uint8 or values.ndim != 3 or values.shape[2] != 3:
        raise InputError(f"array must be (H, W, 3) uint8, got {values.shape} {values.dtype}")
    kind = format.lower()
    if kind not in ("jpeg", "png"):
        raise InputError(f"format must be 'jpeg' or 'png', got {format!r}")
    buffer = io.BytesIO()
    options = {"quality": 90} if kind == "jpeg" else {}
    Image.fromarray(values).save(buffer, format=kind.upper(), **options)
    return Picture(data=buffer.getvalue(), caption=caption, mime=f"image/{kind}", link=link)


_CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 76rem; padding: 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin: 0.2rem 0 0.5rem; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; margin: 0.8rem 0; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.88rem; }
caption { text-align: left; font-size: 0.85rem; color: #555; padding-bottom: 0.25rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f2f2f2; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.slider { position: sticky; top: 0; z-index: 1; background: #fff; padding: 0.5rem 0;
          display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center;
          border-bottom: 1px solid #eee; }
.slider input { flex: 1 1 12rem; max-width: 28rem; }
.slider output { font-weight: 600; font-variant-numeric: tabular-nums; min-width: 7rem; }
.cards { display: grid; gap: 1rem;
         grid-template-columns: repeat(auto-fill, minmax(min(100%, 22rem), 1fr)); }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.75rem; min-width: 0;
        margin: 1rem 0; display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
.card > h3 { flex: 1 1 100%; }
.card > .table-wrap { margin-top: 0; }
.card > .pictures { flex: 1 1 20rem; }
.pictures { display: flex; flex-wrap: wrap; gap: 0.75rem; min-width: 0; max-width: 100%; }
.pictures > figure, .pictures > .switch { flex: 0 1 15rem; min-width: 0; }
figure { margin: 0; max-width: 100%; }
figure img { display: block; width: 100%; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.82rem; color: #555; margin-top: 0.2rem; }
.switch .title { font-size: 0.85rem; font-weight: 600; margin-bottom: 0.2rem; }
@media (max-width: 600px) {
  body { padding: 0.5rem; }
  h1 { font-size: 1.3rem; }
  table { font-size: 0.78rem; }
}
""".strip()

# Slider: show, in every switch of the section, the option for the chosen threshold.
# Tables: a click (or Enter) on a heading sorts by that column; again reverses.
_SCRIPT = """
(function () {
  document.querySelectorAll("input.threshold").forEach(function (slider) {
    var section = slider.closest("section");
    var labels = JSON.parse(slider.dataset.labels);
    var shown = section.querySelector("output.threshold-label");
    function show() {
      var label = labels[Number(slider.value)];
      shown.textContent = label;
      section.querySelectorAll("[data-option]").forEach(function (element) {
        element.hidden = element.dataset.option !== label;
      });
    }
    slider.addEventListener("input", show);
    show();
  });
  function key(cell) {
    var raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    var number = Number(raw);
    return raw !== "" && !isNaN(number) ? number : raw.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headings = table.querySelectorAll("thead th");
    headings.forEach(function (heading, column) {
      function sort() {
        var ascending = heading.getAttribute("aria-sort") !== "ascending";
        headings.forEach(function (other) { other.removeAttribute("aria-sort"); });
        heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[column]), y = key(b.cells[column]);
          var order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0)
                                            : (typeof x === "number" ? -1 : 1);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      heading.tabIndex = 0;
      heading.addEventListener("click", sort);
      heading.addEventListener("keydown", function (event) {
        if (event.key === "Enter") { sort(); }
      });
    });
  });
})();
""".strip()


def _cell(value: object) -> tuple[str, str | None, bool]:
    """Text of a table cell, its sort value (numbers only) and whether it is right-aligned."""
    if value is None:
        return "", None, False
    if isinstance(value, bool):
        return str(value), None, False
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value), None, True
        return f"{value:.4g}", repr(value), True
    if isinstance(value, int):
        return str(value), str(value), True
    return str(value), None, False


def _image_src(path: str, where: str) -> str:
    """URL-quote a relative image path; refuse absolute paths and URLs with a scheme."""
    if not isinstance(path, str) or not path:
        raise InputError(f"{where} path must be a non-empty str, got {path!r}")
    posix = path.replace("\\", "/")
    if urlsplit(posix).scheme or posix.startswith("/") or PurePosixPath(posix).is_absolute():
        raise InputError(f"{where} path must be relative to the report, got {path!r}")
    return quote(posix, safe="/")


class _Renderer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tables = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def paragraphs(self, text: str) -> None:
        for paragraph in str(text).split("\n\n"):
            if paragraph.strip():
                self.add(f"<p>{html.escape(paragraph.strip())}</p>")

    def table(self, table: Table) -> None:
        columns: dict[str, None] = {}
        for row in table.rows:
            if not isinstance(row, Mapping):
                raise InputTypeError(f"table rows must be mappings, got {type(row).__name__}")
            columns.update(dict.fromkeys(str(key) for key in row))
        if not columns:
            return
        self.tables += 1
        css = ' class="sortable"' if table.sortable else ""
        self.add(f'<div class="table-wrap"><table{css}>')
        if table.caption:
            self.add(f"<caption>{html.escape(table.caption)}</caption>")
        self.add(
            "<thead><tr>"
            + "".join(f"<th>{html.escape(name)}</th>" for name in columns)
            + "</tr></thead><tbody>"
        )
        for row in table.rows:
            by_name = {str(key): value for key, value in row.items()}
            cells = []
            for name in columns:
                text, value, numeric = _cell(by_name.get(name))
                attributes = ' class="num"' if numeric else ""
                if value is not None:
                    attributes += f' data-value="{html.escape(value)}"'
                cells.append(f"<td{attributes}>{html.escape(text)}</td>")
            self.add("<tr>" + "".join(cells) + "</tr>")
        self.add("</tbody></table></div>")

    def picture(
        self, item: Picture, where: str, option: str | None = None, hidden: bool = False
    ) -> None:
        if (item.data is None) == (item.src is None):
            raise InputError(f"{where} needs exactly one of data (bytes) and src (a path)")
        if item.data is not None:
            if not isinstance(item.data, (bytes, bytearray)) or not item.data:
                raise InputTypeError(f"{where} data must be non-empty bytes")
            if item.mime not in ("image/png", "image/jpeg", "image/gif", "image/webp"):
                raise InputError(f"{where} mime must be an image type, got {item.mime!r}")
            src = f"data:{item.mime};base64,{base64.b64encode(item.data).decode('ascii')}"
        else:
            src = _image_src(str(item.src), where)
        caption = str(item.caption)
        attributes = ""
        if option is not None:
            attributes += f' data-option="{html.escape(option)}"'
        if hidden:
            attributes += " hidden"
        image = f'<img src="{html.escape(src)}" alt="{html.escape(caption)}">'
        if item.link is not None:
            image = f'<a href="{html.escape(_image_src(item.link, where))}">{image}</a>'
        caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.add(f"<figure{attributes}>{image}{caption_html}</figure>")

    def switch(self, switch: Switch, thresholds: Sequence[str], default: str, where: str) -> None:
        if not thresholds:
            raise InputError(f"{where} is a Switch in a section without thresholds")
        if list(switch.options) != list(thresholds):
            raise InputError(
                f"{where} offers {list(switch.options)}; its section's slider has "
                f"{list(thresholds)}"
            )
        self.add('<div class="switch">')
        if switch.title:
            self.add(f'<div class="title">{html.escape(switch.title)}</div>')
        for label, item in switch.options.items():
            self.picture(item, f"{where}[{label!r}]", option=label, hidden=label != default)
        self.add("</div>")

    def blocks(
        self, blocks: Sequence[Block], thresholds: Sequence[str], default: str, where: str
    ) -> None:
        pictures_open = False
        for index, block in enumerate(blocks):
            here = f"{where}[{index}]"
            visual = isinstance(block, (Picture, Switch))
            if visual and not pictures_open:
                self.add('<div class="pictures">')
                pictures_open = True
            elif not visual and pictures_open:
                self.add("</div>")
                pictures_open = False
            if isinstance(block, str):
                self.paragraphs(block)
            elif isinstance(block, Table):
                self.table(block)
            elif isinstance(block, Picture):
                self.picture(block, here)
            elif isinstance(block, Switch):
                self.switch(block, thresholds, default, here)
            elif isinstance(block, Card):
                self.add(f'<div class="card"><h3>{html.escape(block.title)}</h3>')
                self.blocks(block.blocks, thresholds, default, here)
                self.add("</div>")
            else:
                raise InputTypeError(
                    f"{here} must be a str, Table, Picture, Switch or Card, got "
                    f"{type(block).__name__}"
                )
        if pictures_open:
            self.add("</div>")

    def section(self, section: Section, index: int) -> None:
        thresholds = [str(t) for t in section.thresholds]
        default = thresholds[0] if thresholds else ""
        if section.default is not None:
            if section.default not in thresholds:
                raise InputError(
                    f"sections[{index}] default {section.default!r} is not one of {thresholds}"
                )
            default = section.default
        self.add(f'<section id="section-{index}">')
        if section.title:
            self.add(f"<h2>{html.escape(section.title)}</h2>")
        if thresholds:
            labels = html.escape(json.dumps(thresholds))
            self.add(
                '<div class="slider">'
                f'<label for="threshold-{index}">threshold</label>'
                f'<input type="range" class="threshold" id="threshold-{index}" min="0" '
                f'max="{len(thresholds) - 1}" step="1" value="{thresholds.index(default)}" '
                f'data-labels="{labels}" aria-label="threshold">'
                f'<output class="threshold-label" for="threshold-{index}">'
                f"{html.escape(default)}</output></div>"
            )
        cards = [b for b in section.blocks if isinstance(b, Card)]
        if cards and len(cards) == len(section.blocks):
            self.add('<div class="cards">')
            self.blocks(section.blocks, thresholds, default, f"sections[{index}].blocks")
            self.add("</div>")
        else:
            self.blocks(section.blocks, thresholds, default, f"sections[{index}].blocks")
        for note in section.notes:
            self.paragraphs(note)
        self.add("</section>")


def render_report(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The report's HTML text (see the module docstring); :func:`write_report` writes it."""
    renderer = _Renderer()
    esc = html.escape
    renderer.add(
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(str(title))}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f"<h1>{esc(str(title))}</h1>"
    )
    renderer.paragraphs(intro)
    for index, section in enumerate(sections):
        if not isinstance(section, Section):
            raise InputTypeError(
                f"sections[{index}] must be a Section, got {type(section).__name__}"
            )
        renderer.section(section, index)
    renderer.add(f"<script>\n{_SCRIPT}\n</script>\n</body>\n</html>\n")
    return "\n".join(renderer.parts)


def write_report(
    path: str | Path,
    *,
    title: str,
    intro: str,
    sections: Sequence[Section],
    overwrite: bool = False,
) -> Path:
    """Write :func:`render_report` to ``path``, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ``.html`` file. Missing parent folders are created.
    title : str
        Page title and heading.
    intro : str
        Introduction; blank lines separate paragraphs.
    sections : sequence of Section
        The body.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    InputError
        A picture has neither or both of bytes and a path, a path is absolute or a URL, a switch's
        thresholds differ from its section's slider. Nothing is written.
    """
    return atomic_write_text(path, render_report(title, intro, sections), overwrite=overwrite)


def write_html_report(
    path: str | Path,
    *,
    title: str,
    intro: str,
    table: Sequence[Mapping[str, object]],
    images: Sequence[tuple[str, str]],
    overwrite: bool = False,
) -> Path:
    """Write a report of one table and captioned image files, with the one template.

    Parameters
    ----------
    path : str or Path
        Destination ``.html`` file. Missing parent folders are created.
    title, intro
        As for :func:`write_report`.
    table : sequence of mapping
        Table rows (see :class:`Table`); an empty sequence omits the table.
    images : sequence of (str, str)
        ``(relative path, caption)`` pairs. Paths are relative to the report's folder (``/`` or
        ``\\`` separators) and are URL-quoted; absolute paths and URLs are refused. The files are
        referenced, not embedded: use :func:`write_report` with :func:`picture` to embed.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        An image path is empty, absolute or a URL, or an image entry is not a pair.
    """
    blocks: list[Block] = []
    if table:
        blocks.append(Table(list(table)))
    for index, entry in enumerate(images):
        if isinstance(entry, str) or len(entry) != 2:
            raise InputError(f"images[{index}] must be a (path, caption) pair, got {entry!r}")
        _image_src(entry[0], f"images[{index}]")
        blocks.append(Picture(src=entry[0], caption=str(entry[1])))
    sections = [Section("", blocks)] if blocks else []
    return write_report(path, title=title, intro=intro, sections=sections, overwrite=overwrite)
