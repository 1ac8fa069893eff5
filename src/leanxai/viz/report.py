"""A small static HTML report: title, introduction, one table and captioned images.

The page has inline CSS and no script; images are referenced by paths relative to the report, so
the report folder can be moved or zipped as a whole. Every piece of text is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from leanxai.core.errors import InputError, InputTypeError
from leanxai.io import atomic_write_text

__all__ = ["write_html_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.5rem; }
table { border-collapse: collapse; margin: 1.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #555; margin-top: 0.25rem; }
""".strip()


def _cell(value: object) -> tuple[str, bool]:
    """Text of a table cell and whether it is numeric (right-aligned)."""
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, float):
        return (f"{value:.4g}" if math.isfinite(value) else str(value)), True
    if isinstance(value, int):
        return str(value), True
    return str(value), False


def _image_src(path: str, index: int) -> str:
    """URL-quote a relative image path; refuse absolute paths and URLs with a scheme."""
    if not isinstance(path, str) or not path:
        raise InputError(f"images[{index}] path must be a non-empty str, got {path!r}")
    posix = path.replace("\\", "/")
    if urlsplit(posix).scheme or posix.startswith("/") or PurePosixPath(posix).is_absolute():
        raise InputError(f"images[{index}] path must be relative to the report, got {path!r}")
    return quote(posix, safe="/")


def write_html_report(
    path: str | Path,
    *,
    title: str,
    intro: str,
    table: Sequence[Mapping[str, object]],
    images: Sequence[tuple[str, str]],
    overwrite: bool = False,
) -> Path:
    """Write a static HTML report, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ``.html`` file. Missing parent folders are created.
    title : str
        Page title and heading.
    intro : str
        Introduction; blank lines separate paragraphs.
    table : sequence of mapping
        Table rows. Columns are the union of the keys, in order of first appearance; a missing
        key or ``None`` gives an empty cell, floats are shown with 4 significant digits, numbers
        are right-aligned. An empty sequence omits the table.
    images : sequence of (str, str)
        ``(relative path, caption)`` pairs. Paths are relative to the report's folder (``/`` or
        ``\\`` separators) and are URL-quoted; absolute paths and URLs are refused.
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
    ValueError
        An image path is empty, absolute or a URL, or an image entry is not a pair.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(str(title))}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(str(title))}</h1>",
    ]
    for paragraph in str(intro).split("\n\n"):
        if paragraph.strip():
            parts.append(f"<p>{esc(paragraph.strip())}</p>")

    if table:
        columns: dict[str, None] = {}
        for row in table:
            if not isinstance(row, Mapping):
                raise InputTypeError(f"table rows must be mappings, got {type(row).__name__}")
            columns.update(dict.fromkeys(str(key) for key in row))
        parts.append("<table>")
        parts.append(
            "<thead><tr>" + "".join(f"<th>{esc(name)}</th>" for name in columns) + "</tr></thead>"
        )
        parts.append("<tbody>")
        for row in table:
            by_name = {str(key): value for key, value in row.items()}
            cells = []
            for name in columns:
                text, numeric = _cell(by_name.get(name))
                css = ' class="num"' if numeric else ""
                cells.append(f"<td{css}>{esc(text)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody>")
        parts.append("</table>")

    if images:
        parts.append('<div class="figures">')
        for index, entry in enumerate(images):
            if isinstance(entry, str) or len(entry) != 2:
                raise InputError(f"images[{index}] must be a (path, caption) pair, got {entry!r}")
            src, caption = _image_src(entry[0], index), str(entry[1])
            parts.append(
                f'<figure><img src="{esc(src)}" alt="{esc(caption)}" loading="lazy">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        parts.append("</div>")

    parts += ["</body>", "</html>", ""]
    return atomic_write_text(path, "\n".join(parts), overwrite=overwrite)
