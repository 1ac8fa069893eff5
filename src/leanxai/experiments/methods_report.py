"""The methods benchmark's outputs: ``results.csv`` text and the self-contained HTML report.

The runner (:mod:`leanxai.experiments.methods`) measures; this module only formats.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from leanxai.evaluate.stats import format_p

if TYPE_CHECKING:
    from leanxai.experiments.methods import BenchmarkConfig

__all__ = ["csv_text", "format_ms", "render_report"]


def format_ms(seconds: float) -> str:
    """Milliseconds with three significant digits, never in exponent notation (``1,234``)."""
    ms = seconds * 1e3
    return f"{ms:,.0f}" if abs(ms) >= 100 else f"{ms:.3g}"


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(c)) for c in columns])
    return buffer.getvalue()


_REPORT_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem;
       color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.8rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde2e2; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5rem 0; }
""".strip()

_REPORT_COLUMNS = (
    ("method", "method"),
    ("threshold", "threshold"),
    ("status", "status"),
    ("time_s", "ms / image"),
    ("peak_memory_mb", "peak MB"),
    ("deletion", "deletion ↓"),
    ("insertion", "insertion ↑"),
    ("completeness", "completeness"),
    ("kept_fraction", "kept"),
    ("max_sensitivity", "max-sens ↓"),
    ("iou", "IoU ↑"),
    ("dice", "Dice ↑"),
    ("boundary_f1", "boundary F1 ↑"),
    ("precision", "precision ↑"),
    ("recall", "recall ↑"),
    ("pointing_game", "pointing ↑"),
    ("aupr", "AUPR ↑"),
)


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if key == "time_s":
        return f'<td class="num">{format_ms(value)}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.3f}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def render_report(
    rows: Sequence[Mapping[str, Any]],
    paired: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, str]],
    notes: Mapping[str, str],
    plots: Mapping[str, bytes],
    config: BenchmarkConfig,
    seconds: float,
) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>leanxai benchmark</title>",
        f"<style>{_REPORT_CSS}</style></head><body>",
        "<h1>leanxai methods benchmark</h1>",
        f"<p>{len(config.methods)} methods × {len(config.thresholds)} thresholds × "
        f"{len(config.datasets)} data sets, {config.n} images each, in {seconds:.0f} s. "
        "Metrics are means over images; definitions in docs/METRICS.md. Time is per image: every "
        "method explains the same batch once per round, alternately, in a rotated order, and "
        "the median over rounds is reported (threshold time added per row); memory is the "
        "peak resident memory growth during one explain() call of a batch.</p>",
    ]
    if failures:
        parts.append("<h2>Failures</h2><ul>")
        for failure in failures:
            parts.append(
                f"<li>{html.escape(failure['dataset'])} / {html.escape(failure['method'])}: "
                f"{html.escape(failure['error'])}</li>"
            )
        parts.append("</ul>")
    for dataset in config.datasets:
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        if dataset in notes:
            parts.append(f"<p>{html.escape(notes[dataset])}</p>")
        parts.append("<table><tr>")
        parts.extend(f"<th>{html.escape(label)}</th>" for _, label in _REPORT_COLUMNS)
        parts.append("</tr>")
        for row in rows:
            if row["dataset"] != dataset:
                continue
            css = ' class="failed"' if row["status"] != "ok" else ""
            status = row["status"] if row["status"] == "ok" else f"failed: {row['error']}"
            parts.append(f"<tr{css}>")
            parts.extend(
                _cell(key, status if key == "status" else row.get(key))
                for key, _ in _REPORT_COLUMNS
            )
            parts.append("</tr>")
        parts.append("</table>")
        for kind, caption in (
            ("pr", "precision-recall"),
            ("curves", "deletion and insertion"),
            ("cost", "cost"),
        ):
            key = f"{kind}-{dataset}"
            if key in plots:
                data = base64.b64encode(plots[key]).decode("ascii")
                parts.append(
                    f"<figure><img alt='{caption}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        tests = [p for p in paired if p["dataset"] == dataset]
        if tests:
            parts.append("<h3>Paired tests</h3><table><tr>")
            for label in (
                "a",
                "b",
                "metric",
                "n",
                "mean a",
                "mean b",
                "t-test p",
                "Wilcoxon p",
                "d_z",
            ):
                parts.append(f"<th>{label}</th>")
            parts.append("</tr>")
            for test in tests:
                parts.append(
                    f"<tr><td>{html.escape(test['a'])}</td><td>{html.escape(test['b'])}</td>"
                    f"<td>{test['metric']}</td><td class='num'>{test['n']}</td>"
                    f"<td class='num'>{test['mean_a']:.3f}</td>"
                    f"<td class='num'>{test['mean_b']:.3f}</td>"
                    f"<td class='num'>{format_p(test['t_pvalue'])}</td>"
                    f"<td class='num'>{format_p(test['w_pvalue'])}</td>"
                    f"<td class='num'>{test['effect_size']:.2f}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)
