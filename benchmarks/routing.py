"""Explanation-guided routing against always-one-tier, the oracle, a confidence cascade and chance.

For each data set: train (or load) the four tiers and the router
(``leanxai.experiments.routing.load_routing``: the router learns from a split the tiers never saw;
its operating point is chosen by cross-validation on that split), then run
:func:`leanxai.experiments.routing.evaluate_routing` on a test split nobody trained on -- the same
code as ``leanxai route eval``. FLOPs count every model that
runs, the probe's explanation included; latency is measured on the real pipelines.

    python benchmarks/routing.py                 # both data sets (tiers train once, ~25 min;
                                                 # then ~5 min)
    python benchmarks/routing.py --readme        # also replace the tables in README.md
    python benchmarks/routing.py --datasets mnist --no-latency

Output: ``benchmarks/results/routing/<dataset>.json`` and ``pareto_<dataset>.png``, and
``benchmarks/results/routing.md`` (the tables). A run on some of the data sets replaces only their
sections in ``routing.md`` and the README; the others' sections are kept as they were.

The tiers train under :func:`leanxai.zoo.train.deterministic_training` (one thread, deterministic
algorithms), so a fresh cache gives the same weights, and the same tables, on the same machine;
each section names the tiers' cache versions and weight hashes to check that against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
README = ROOT.parent / "README.md"
START = "<!-- routing-benchmark:start -->"
END = "<!-- routing-benchmark:end -->"

KEY_ROWS = (
    "always-TINY",
    "always-LIGHT",
    "always-MEDIUM",
    "always-HEAVY",
    "oracle",
    "router",
    "cascade matched to router",
    "router+escalate",
    "cascade",
    "cascade matched to router+escalate",
    "random (router's mix)",
)


def _c(values: Any) -> str:
    return "/".join(f"{v:g}" for v in values) if isinstance(values, list) else f"{values:g}"


def _fmt_ms(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> list[str]:
    rows = {row["name"]: row for row in result["policies"]}
    lines = [
        "| policy | accuracy | MFLOPs / input | vs always-HEAVY | ms / input, batch 1 "
        "| ms / input, batch 32 | tier mix T/L/M/H | routing acc. vs oracle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in KEY_ROWS:
        if name not in rows:
            continue
        row = rows[name]
        label = name
        if row["policy"] == "router":
            label = f"router (tau={row['parameter']:g})"
        elif row["policy"] == "router+escalate":
            label = f"router+escalate (tau={row['extra']['tau']:g}, c={_c(row['parameter'])})"
        elif name == "cascade":
            label = f"cascade, chosen on the router split (c={_c(row['parameter'])})"
        elif row["policy"] == "cascade":
            label = f"{name} (c={_c(row['parameter'])})"
        routing = "–" if row["routing_accuracy"] is None else f"{row['routing_accuracy']:.3f}"
        lines.append(
            f"| {label} | {row['accuracy']:.4f} | {row['mean_flops'] / 1e6:.2f} | "
            f"{row['relative_flops']:.1%} | {_fmt_ms(row['latency_ms_b1'])} | "
            f"{_fmt_ms(row['latency_ms_b32'], 3)} | "
            f"{'/'.join(f'{s:.2f}' for s in row['tier_mix'])} | {routing} |"
        )
    return lines


def verdict(result: dict[str, Any]) -> list[str]:
    """Plain statements: the must-show target, and router vs cascade at matched accuracy."""
    rows = {row["name"]: row for row in result["policies"]}
    heavy = rows["always-HEAVY"]
    out = []
    cascade = rows.get("cascade")
    for name in ("router", "router+escalate"):
        if name not in rows:
            continue
        row = rows[name]
        gap = (row["accuracy"] - heavy["accuracy"]) * 100
        meets = gap >= -0.5 and row["relative_flops"] <= 0.30
        out.append(
            f"- {name}: accuracy {row['accuracy']:.4f} ({gap:+.2f} points vs always-HEAVY) at "
            f"{row['relative_flops']:.1%} of always-HEAVY's FLOPs, probe included: "
            f"{'meets' if meets else 'does not meet'} the target (within 0.5 points at <= 30%)."
        )
        if name == "router+escalate" and cascade is not None:
            ratio = cascade["mean_flops"] / row["mean_flops"]
            out.append(
                f"  The cascade with thresholds chosen the same way (on the router split) reaches "
                f"{cascade['accuracy']:.4f} at {cascade['relative_flops']:.1%}: "
                + (
                    "they spend the same FLOPs"
                    if abs(ratio - 1) < 0.01
                    else f"{name} spends {ratio:.2f}x fewer FLOPs"
                    if ratio > 1
                    else f"the cascade spends {1 / ratio:.2f}x fewer FLOPs"
                )
                + f", {(row['accuracy'] - cascade['accuracy']) * 100:+.2f} points of accuracy."
            )
        match = rows.get(f"cascade matched to {name}")
        if match is None:
            out.append("  No cascade threshold reaches its accuracy.")
        else:
            ratio = match["mean_flops"] / row["mean_flops"]
            if abs(ratio - 1) < 0.01:
                outcome = "they spend the same FLOPs"
            elif ratio > 1:
                outcome = f"{name} spends fewer FLOPs (cascade / {name} = {ratio:.2f}x)"
            else:
                outcome = f"the cascade spends fewer FLOPs ({name} / cascade = {1 / ratio:.2f}x)"
            out.append(
                f"  The cascade's best thresholds picked on the test split itself (optimistic) "
                f"match that accuracy ({match['accuracy']:.4f}) at c={_c(match['parameter'])} "
                f"with {match['relative_flops']:.1%} of HEAVY's FLOPs: {outcome}."
            )
    auc = result.get("tiny_suffices_auc")
    if auc:
        out.append(
            f"- Does TINY suffice? ROC AUC on the test split: router (seven features) "
            f"{auc['router']:.3f}, the probe's top softmax probability alone "
            f"{auc['probe_confidence']:.3f}."
        )
    return out


def pareto_plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    styles = {"router": "#4c72b0", "router+escalate": "#55a868", "cascade": "#c44e52"}
    for policy, colour in styles.items():
        points = sorted(
            (r["relative_flops"], r["accuracy"]) for r in result["curves"] if r["policy"] == policy
        )
        if points:
            xs, ys = zip(*points, strict=True)
            label = f"{policy} ({'tau sweep' if policy == 'router' else 'best thresholds'})"
            axes.plot(xs, ys, ".-", color=colour, label=label, markersize=3)
    for row in result["policies"]:
        if row["policy"] in ("always", "oracle", "random") or row["name"] in (
            "router",
            "router+escalate",
            "cascade",
        ):
            marker = "o" if row["policy"] in ("always", "oracle", "random") else "*"
            axes.plot(row["relative_flops"], row["accuracy"], marker, color="#333")
            axes.annotate(row["name"], (row["relative_flops"], row["accuracy"]), fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("mean FLOPs per input / always-HEAVY's (probe included)")
    axes.set_ylabel("held-out accuracy")
    axes.set_title(f"{result['dataset']}: accuracy against compute (n={result['n']})")
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def tier_line(dataset: str) -> tuple[str, dict[str, Any]]:
    """The tiers' cache versions, training threads and weight hashes (they are cached: cheap)."""
    from leanxai.zoo.tiers import load_tiers

    info = {
        tier: {
            "version": meta.get("recipe_version"),
            "held_out_accuracy": meta.get("held_out_accuracy"),
            "torch_threads": meta.get("torch_threads"),
            "deterministic": bool(meta.get("deterministic", False)),
            "weights_sha256": meta.get("weights_sha256"),
        }
        for tier, (_, meta) in load_tiers(dataset, progress=False).items()
    }
    how = (
        "trained at one thread with deterministic algorithms"
        if all(v["deterministic"] for v in info.values())
        else "trained before training was deterministic: a fresh cache may differ"
    )
    hashes = ", ".join(
        f"{tier} {v['version']} {str(v['weights_sha256'])[:12]}" for tier, v in info.items()
    )
    return f"Tiers ({how}), cache version and weights SHA-256: {hashes}.", info


def load_line(load: list[float]) -> str:
    """Say how busy the machine was while the latency was measured."""
    cores = os.cpu_count() or 1
    text = (
        f"Latency measured at a 1-minute load average of {min(load):.1f} to {max(load):.1f} "
        f"on {cores} cores"
    )
    if max(load) > 0.75 * cores:
        return (
            f"{text}: other jobs shared the CPU, so the milliseconds are slower than on a quiet "
            "machine; compare policies within this table, not across runs."
        )
    return f"{text} (a quiet machine)."


def merge_sections(old: str, header: list[str], sections: dict[str, list[str]]) -> str:
    """``header`` and one section per data set: the new ``sections``, and the sections of ``old``
    (a previous ``routing.md``) for the data sets not rerun, in their old order."""
    kept: dict[str, list[str]] = {}
    current: str | None = None
    for line in old.splitlines():
        if line.startswith("#### "):
            current = line[5:].split(" ", 1)[0]
            kept[current] = []
        if current is not None:
            kept[current].append(line)
    order = list(kept) + [name for name in sections if name not in kept]
    lines = list(header)
    for name in order:
        part = sections.get(name, kept.get(name, []))
        while part and not part[-1].strip():
            part = part[:-1]
        lines += [*part, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist,shapes")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--readme", action="store_true", help="replace the README tables")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)

    import torch

    from leanxai.experiments.routing import evaluate_routing, load_routing

    torch.manual_seed(0)
    folder = args.out / "routing"
    folder.mkdir(parents=True, exist_ok=True)
    header = [
        "Generated by `python benchmarks/routing.py --readme`; held-out inputs that neither the "
        "tiers nor the router saw. FLOPs from `torch.utils.flop_counter`, every model that runs "
        "counted, the probe's explanation included; latency measured on the real pipelines "
        f"(2-core CPU, torch {torch.__version__}, median of 3 rounds over 256 inputs).",
        "",
    ]
    sections: dict[str, list[str]] = {}
    for dataset in args.datasets.split(","):
        routing = load_routing(dataset)
        load_before = os.getloadavg()[0]
        result = evaluate_routing(routing, latency=not args.no_latency)
        result["load_average"] = [load_before, os.getloadavg()[0]]
        tiers_text, result["tiers"] = tier_line(dataset)
        (folder / f"{dataset}.json").write_text(json.dumps(result, indent=1) + "\n")
        pareto_plot(result, folder / f"pareto_{dataset}.png")
        flops = ", ".join(
            f"{name} {value / 1e6:.2f}"
            for name, value in zip(
                ("TINY", "LIGHT", "MEDIUM", "HEAVY"), result["tier_flops"], strict=False
            )
        )
        meta = result["router_training"]
        sections[dataset] = [
            f"#### {dataset} (n={result['n']} test inputs)",
            "",
            tiers_text,
            "",
            *([] if args.no_latency else [load_line(result["load_average"]), ""]),
            f"Tier MFLOPs per input: {flops}; the probe's explanation "
            f"{result['probe_flops'] / 1e6:.2f}. Router trained on {meta.get('n_router')} inputs "
            f"(labels per tier T/L/M/H: {meta.get('label_counts')}); operating point by "
            f"cross-validation there: router alone tau={result['tau']:g}; with escalation "
            f"tau={result['escalate_tau']}, per-tier thresholds (TINY/LIGHT/MEDIUM) "
            f"c={_c(result['escalate']) if result['escalate'] else 'none'}; the cascade's "
            f"thresholds chosen the same way c={_c(result['cascade'])}.",
            "",
            *table(result),
            "",
            *verdict(result),
            "",
            f"![Pareto plot, {dataset}](benchmarks/results/routing/pareto_{dataset}.png)",
            "",
        ]
        print("\n".join(table(result)))
        print("\n".join(verdict(result)))
    summary = args.out / "routing.md"
    text = merge_sections(summary.read_text() if summary.exists() else "", header, sections)
    summary.write_text(text)
    if args.readme:
        readme = README.read_text()
        if START not in readme or END not in readme:
            print(f"README.md has no {START} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{text}{END}{tail}")
        print("updated README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
