"""Every explanation method at every threshold on every data set, against ground truth.

Runs :func:`leanxai.experiments.methods.run_benchmark` (the same code as ``leanxai benchmark``),
then turns its ``results.csv`` and ``paired_tests.csv`` into the three tables of the paper,
measured here: performance at various thresholds, comparison with other methods, comparison
with ground-truth masks, plus the paired tests between Grad-CAM and its thresholded variants.

    python benchmarks/methods.py            # full run (~20 min on 2 CPU cores)
    python benchmarks/methods.py --quick    # one data set, 8 images (~1-2 min)
    python benchmarks/methods.py --readme   # also replace the tables in README.md

Output: ``benchmarks/results/methods/`` (results.csv, paired_tests.csv, plots, report.html) and
``benchmarks/results/methods.md`` (the tables). Run it on a quiet machine: times are wall clock.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from leanxai.evaluate.stats import format_p
from leanxai.experiments.methods import BenchmarkConfig, run_benchmark

ROOT = Path(__file__).resolve().parent
README = ROOT.parent / "README.md"
START = "<!-- methods-benchmark:start -->"
END = "<!-- methods-benchmark:end -->"


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _num(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    ms = value * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def tables(results: list[dict[str, str]], paired: list[dict[str, str]], notes: dict) -> str:
    out: list[str] = []
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    for dataset in datasets:
        rows = [r for r in results if r["dataset"] == dataset and r["status"] == "ok"]
        if not rows:
            failed = {r["method"]: r["error"] for r in results if r["dataset"] == dataset}
            out += [f"#### {dataset}: failed", "", f"{next(iter(failed.values()), '')}", ""]
            continue
        n = rows[0]["n"]
        out += [f"#### {dataset} (n = {n})", ""]
        if dataset in notes:
            out += [f"_{notes[dataset]}._", ""]

        gradcam = [r for r in rows if r["method"] == "gradcam"]
        out += ["Performance at various thresholds (Grad-CAM):", ""]
        out += _table(
            [
                "threshold",
                "ms / image",
                "kept",
                "deletion ↓",
                "insertion ↑",
                "completeness",
                "max-sens ↓",
                "IoU ↑",
                "pointing ↑",
                "AUPR ↑",
            ],
            [
                [
                    r["threshold"],
                    _ms(_num(r["time_s"])),
                    _fmt(_num(r["kept_fraction"])),
                    _fmt(_num(r["deletion"])),
                    _fmt(_num(r["insertion"])),
                    _fmt(_num(r["completeness"])),
                    _fmt(_num(r["max_sensitivity"])),
                    _fmt(_num(r["iou"])),
                    _fmt(_num(r["pointing_game"])),
                    _fmt(_num(r["aupr"])),
                ]
                for r in gradcam
            ],
        )
        out.append("")

        base = {r["method"]: r for r in rows if r["threshold"] == "none"}
        reference = _num(base["gradcam"]["explain_time_s"]) if "gradcam" in base else math.nan
        out += ["Comparison with other methods (unthresholded maps):", ""]
        out += _table(
            [
                "method",
                "ms / image",
                "× Grad-CAM time",
                "peak MB",
                "deletion ↓",
                "insertion ↑",
                "max-sens ↓",
                "pointing ↑",
                "AUPR ↑",
            ],
            [
                [
                    method,
                    _ms(_num(r["explain_time_s"])),
                    _fmt(_num(r["explain_time_s"]) / reference, 1),
                    _fmt(_num(r["peak_memory_mb"]), 0),
                    _fmt(_num(r["deletion"])),
                    _fmt(_num(r["insertion"])),
                    _fmt(_num(r["max_sensitivity"])),
                    _fmt(_num(r["pointing_game"])),
                    _fmt(_num(r["aupr"])),
                ]
                for method, r in base.items()
            ],
        )
        out.append("")

        top = {r["method"]: r for r in rows if r["threshold"] == "top:10"}
        out += ["Comparison with ground-truth masks (each method at top:10):", ""]
        out += _table(
            ["method", "IoU ↑", "Dice ↑", "boundary F1 ↑", "precision ↑", "recall ↑"],
            [
                [
                    method,
                    _fmt(_num(r["iou"])),
                    _fmt(_num(r["dice"])),
                    _fmt(_num(r["boundary_f1"])),
                    _fmt(_num(r["precision"])),
                    _fmt(_num(r["recall"])),
                ]
                for method, r in top.items()
            ],
        )
        out.append("")

        tests = [
            p
            for p in paired
            if p["dataset"] == dataset
            and p["a"] == "gradcam none"
            and p["b"].startswith("gradcam ")
            and p["metric"] in ("iou", "deletion", "insertion")
        ]
        if tests:
            out += ["Paired tests, Grad-CAM unthresholded (a) vs thresholded (b), same images:", ""]
            out += _table(
                ["b", "metric", "mean a", "mean b", "t-test p", "Wilcoxon p", "d_z", "n"],
                [
                    [
                        p["b"].removeprefix("gradcam "),
                        p["metric"],
                        _fmt(_num(p["mean_a"])),
                        _fmt(_num(p["mean_b"])),
                        format_p(_num(p["t_pvalue"])),
                        format_p(_num(p["w_pvalue"])),
                        _fmt(_num(p["effect_size"]), 2),
                        p["n"],
                    ]
                    for p in tests
                ],
            )
            out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "methods")
    parser.add_argument("--readme", action="store_true", help="replace the tables in README.md")
    args = parser.parse_args(argv)

    config = BenchmarkConfig.quick() if args.quick else BenchmarkConfig()
    result = run_benchmark(config, args.out, overwrite=True)
    import json

    notes = json.loads((args.out / "results.json").read_text())["notes"]
    command = "python benchmarks/methods.py" + (" --quick" if args.quick else "")
    text = (
        f"Produced by `{command}` (full report: `{args.out.relative_to(ROOT.parent)}"
        "/report.html`).\n\n"
        + tables(_read(args.out / "results.csv"), _read(args.out / "paired_tests.csv"), notes)
    )
    (ROOT / "results" / "methods.md").write_text(text)
    print(f"wrote {ROOT / 'results' / 'methods.md'}")
    if args.readme:
        readme = README.read_text()
        if START not in readme or END not in readme:
            print(f"README.md has no {START} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{text}\n{END}{tail}")
        print("updated README.md")
    for failure in result.failures:
        print(f"failed: {failure['method']} on {failure['dataset']}: {failure['error']}")
    return 2 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
