"""Token highlighting: one self-contained HTML page of texts coloured by their token scores.

Each token (or word) is a ``<span>`` on a diverging scale: red for a score that supports the
explained class, blue for one against it, the opacity the score divided by the largest absolute
score of that text (so texts are read one at a time; the scale is printed beside each). Kept
tokens (a threshold) are underlined. A legend explains the scale. The page holds its CSS inline
and needs nothing from the network; every text is HTML-escaped.

The shared report template (:mod:`leanxai.viz.report`) lays out pictures and tables and has no
block for inline text, so this page has its own small template in the same style (system font,
narrow column, phone width) rather than a picture of the text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from leanxai.core.errors import InputError, InputTypeError
from leanxai.io import atomic_write_text

__all__ = ["TextItem", "render_text_report", "token_color", "token_html", "write_text_report"]

_POSITIVE = (214, 69, 34)
_NEGATIVE = (37, 99, 214)


@dataclass(frozen=True)
class TextItem:
    """One text of the page: its pieces, their scores, optionally the kept ones, a caption."""

    tokens: Sequence[str]
    scores: Sequence[float]
    kept: Sequence[bool] | None = None
    caption: str = ""


def token_color(score: float, scale: float) -> str:
    """CSS ``rgba`` for ``score`` on a diverging scale whose extremes are ``+-scale``."""
    if not math.isfinite(score):
        raise InputError(f"score must be finite, got {score!r}")
    alpha = 0.0 if scale <= 0 else min(1.0, abs(score) / scale)
    red, green, blue = _POSITIVE if score >= 0 else _NEGATIVE
    return f"rgba({red}, {green}, {blue}, {alpha:.3f})"


def token_html(
    tokens: Sequence[str], scores: Sequence[float], kept: Sequence[bool] | None = None
) -> str:
    """The tokens as coloured ``<span>`` s (an HTML fragment), scaled to this text's maximum."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise InputTypeError("tokens must be a sequence of str")
    values = [float(s) for s in scores]
    if len(values) != len(tokens):
        raise InputError(f"{len(tokens)} tokens but {len(values)} scores")
    if kept is not None and len(kept) != len(tokens):
        raise InputError(f"{len(tokens)} tokens but {len(kept)} kept flags")
    scale = max((abs(v) for v in values), default=0.0)
    parts = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=True)):
        css = f"background:{token_color(value, scale)}"
        if value > 0 and scale > 0 and value / scale > 0.6:
            css += ";color:#fff"
        name = ' class="kept"' if kept is not None and kept[index] else ""
        parts.append(
            f'<span{name} style="{css}" title="{value:.4g}">{html.escape(str(token))}</span>'
        )
    return " ".join(parts)


_CSS = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:60rem;padding:1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem}
.legend{display:flex;align-items:center;gap:.5rem;flex-wrap:wrap;font-size:.9rem;margin:1rem 0}
.bar{width:14rem;max-width:60vw;height:.9rem;border:1px solid #ccc;border-radius:3px;
background:linear-gradient(90deg,rgb(37,99,214),rgba(37,99,214,0) 50%,rgba(214,69,34,0) 50%,
rgb(214,69,34))}
.text{border-top:1px solid #e5e5e5;padding:.75rem 0}
.caption{font-size:.85rem;color:#555;margin-bottom:.25rem;overflow-wrap:anywhere}
.tokens{overflow-wrap:anywhere}
.tokens span{border-radius:3px;padding:0 .15rem;line-height:1.9}
.tokens span.kept{text-decoration:underline;text-decoration-thickness:2px;
text-underline-offset:3px}
"""


def render_text_report(title: str, intro: str, items: Sequence[TextItem]) -> str:
    """The page's HTML text; :func:`write_text_report` writes it."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{esc(str(title))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(str(title))}</h1>",
    ]
    for paragraph in str(intro).split("\n\n"):
        if paragraph.strip():
            parts.append(f"<p>{esc(paragraph.strip())}</p>")
    parts.append(
        '<div class="legend"><span>against the class</span><span class="bar"></span>'
        "<span>for the class</span><span>(each text scaled to its largest |score|; "
        "underlined: kept by the threshold; hover a token for its score)</span></div>"
    )
    for index, item in enumerate(items):
        if not isinstance(item, TextItem):
            raise InputTypeError(f"items[{index}] must be a TextItem, got {type(item).__name__}")
        values = [float(s) for s in item.scores]
        scale = max((abs(v) for v in values), default=0.0)
        caption = f"{item.caption} · scale ±{scale:.3g}" if item.caption else f"±{scale:.3g}"
        parts.append(
            f'<div class="text"><div class="caption">{esc(caption)}</div>'
            f'<div class="tokens">{token_html(item.tokens, values, item.kept)}</div></div>'
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_text_report(
    path: str | Path,
    *,
    title: str,
    intro: str,
    items: Sequence[TextItem],
    overwrite: bool = False,
) -> Path:
    """Write :func:`render_text_report` to ``path`` atomically (``OutputExistsError`` when it
    exists and ``overwrite`` is False)."""
    return atomic_write_text(path, render_text_report(title, intro, items), overwrite=overwrite)
