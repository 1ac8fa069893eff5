"""End-to-end cost of leanxai Grad-CAM against plain inference and Captum's LayerGradCam.

For each model and batch size, four callables run alternately in one process (the order rotates
every round, after warm-up), and the script reports the median time of each and the ratios. Each
call is timed twice: CPU time of the process (``time.process_time``: what the call computed, little
moved by other jobs on a shared machine; the headline numbers) and wall-clock time
(``time.perf_counter``, the ``*_wall`` fields). Run it with ``OMP_NUM_THREADS=1`` to compare like
with like: with more threads, CPU time also counts the threads' spinning.

- ``inference``: ``model(x)`` under ``torch.no_grad()`` and the argmax;
- ``leanxai``: ``GradCAM(model).explain(x)``: logits, predicted class, the map at the target layer,
  bilinear upsampling to the input size and per-map max normalisation;
- ``captum``: ``LayerGradCam(forward, layer).attribute(x, target)`` with ReLU, then the same
  bilinear upsampling (``LayerAttribution.interpolate``) and normalisation. Captum is given the
  predicted classes, computed beforehand and not timed, which favours it.

Peak memory is the peak resident set size (``VmHWM``) of a separate process per
(model, batch, method) that builds the model, runs one forward pass, then runs only that method four
times; "extra" is that peak minus the process's RSS just before the first call.

    python benchmarks/gradcam_speed.py                # full run, writes results/gradcam_speed.json
    python benchmarks/gradcam_speed.py --quick        # fewer repeats, batch 1 only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanxai import GradCAM
from leanxai.core.models import logits_of

MODELS = ("resnet18", "mobilenet_v2", "vgg_style", "zoo_cnn")
BATCHES = (1, 16)
METHODS = ("inference", "leanxai", "captum", "captum_e2e")
MEMORY_METHODS = ("inference", "leanxai", "captum")


def build(name: str) -> tuple[nn.Module, int]:
    """The model (random weights, eval mode) and its input side."""
    torch.manual_seed(0)
    if name == "resnet18":
        from transformers import ResNetConfig, ResNetForImageClassification

        config = ResNetConfig(
            layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]
        )
        return ResNetForImageClassification(config).eval(), 224
    if name == "mobilenet_v2":
        from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

        return MobileNetV2ForImageClassification(MobileNetV2Config()).eval(), 224
    if name == "vgg_style":
        from leanxai.zoo import VGGStyle

        return VGGStyle(num_classes=1000, width=32, image_size=224).eval(), 224
    if name == "zoo_cnn":
        from leanxai.zoo import demo_cnn

        return demo_cnn().eval(), 64
    raise ValueError(f"unknown model {name!r}")


def runners(model: nn.Module, inputs: torch.Tensor) -> dict[str, Any]:
    from captum.attr import LayerAttribution, LayerGradCam

    explainer = GradCAM(model)
    explanation = explainer.explain(inputs)  # finds the layer, verifies the path
    layer = model.get_submodule(str(explanation.layer))
    target = explanation.target.clone()
    size = inputs.shape[2:]

    def forward(x: torch.Tensor) -> torch.Tensor:
        return logits_of(model(x))

    captum = LayerGradCam(forward, layer)

    def inference() -> Any:
        with torch.no_grad():
            return forward(inputs).argmax(dim=1)

    def ours() -> Any:
        return explainer.explain(inputs).heatmap

    def theirs(target: torch.Tensor = target) -> Any:
        cam = captum.attribute(inputs, target=target, relu_attributions=True)  # (B, 1, h, w)
        heatmap = LayerAttribution.interpolate(cam.detach(), size, "bilinear")[:, 0]
        peak = heatmap.flatten(1).amax(1).clamp_min(1e-30)
        return heatmap / peak[:, None, None]

    # Same maps, or the comparison means nothing.
    reference = theirs()
    difference = float((ours() - reference).abs().max())
    if difference > 1e-3:
        raise RuntimeError(f"leanxai and captum maps differ by {difference:.2e}")

    def theirs_end_to_end() -> Any:
        # What explaining the prediction costs with Captum: it must first learn what the model
        # predicts (leanxai gets logits and map from one pass).
        return theirs(inference())

    return {
        "inference": inference,
        "leanxai": ours,
        "captum": theirs,
        "captum_e2e": theirs_end_to_end,
        "path": explanation.path,
    }


def time_alternately(
    calls: dict[str, Callable[[], Any]], repeats: int, budget: float
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Per-call medians, and medians of the per-round ratios, for ``"cpu"`` and ``"wall"`` time.

    Every round calls each method once, in a rotating order, so slow drifts of the machine hit
    all methods alike; the ratio is taken within each round (paired) and its median reported.
    Fast models get more rounds: as many as fit in ``budget`` seconds, at least ``repeats``.
    """
    names = list(METHODS)
    for name in names:  # warm-up
        calls[name]()
        calls[name]()
    start = time.perf_counter()
    calls["leanxai"]()
    once = time.perf_counter() - start
    rounds = max(repeats, min(2000, int(budget / (len(names) * max(once, 1e-6)))))
    clocks = {"cpu": time.process_time, "wall": time.perf_counter}
    times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in clocks}
    cpu, wall = times["cpu"], times["wall"]
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            call = calls[name]
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            call()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    medians = {
        clock: {name: statistics.median(values) for name, values in per_name.items()}
        for clock, per_name in times.items()
    }
    ratios: dict[str, dict[str, float]] = {}
    for clock, per_name in times.items():
        ratios[clock] = {
            name: _median_ratio(per_name[name], per_name["inference"]) for name in names
        }
        for name in ("captum", "captum_e2e"):
            ratios[clock][f"{name}_over_leanxai"] = _median_ratio(
                per_name[name], per_name["leanxai"]
            )
        ratios[clock]["rounds"] = rounds
    return medians, ratios


def _median_ratio(times: list[float], bases: list[float]) -> float:
    """Median of the per-round ratios; rounds whose base read 0 (a coarse clock) are skipped."""
    return statistics.median(t / base for t, base in zip(times, bases, strict=True) if base > 0)


def memory_child(model_name: str, batch: int, method: str) -> None:
    """Peak RSS of one method alone: nothing else runs in this process."""
    model, side = build(model_name)
    inputs = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = logits_of(model(inputs)).argmax(1)  # every method pays this first forward
    before = _current_rss_kb()
    if method == "inference":

        def run() -> Any:
            with torch.no_grad():
                return logits_of(model(inputs)).argmax(1)

    elif method == "leanxai":
        explainer = GradCAM(model)

        def run() -> Any:
            return explainer.explain(inputs).heatmap

    else:
        from captum.attr import LayerAttribution, LayerGradCam

        layer = model.get_submodule(str(GradCAM(model).explain(inputs[:1]).layer))
        captum = LayerGradCam(lambda x: logits_of(model(x)), layer)
        before = _current_rss_kb()

        def run() -> Any:
            cam = captum.attribute(inputs, target=target, relu_attributions=True)
            heatmap = LayerAttribution.interpolate(cam.detach(), inputs.shape[2:], "bilinear")
            return heatmap / heatmap.flatten(1).amax(1).clamp_min(1e-30)[:, None, None, None]

    for _ in range(4):
        run()
    # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's peak.
    print(json.dumps({"peak_kb": _status_kb("VmHWM"), "before_kb": before}))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _current_rss_kb() -> int:
    return _status_kb("VmRSS")


def measure_memory(model_name: str, batch: int, method: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, __file__, "--memory-child", model_name, str(batch), method],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 5 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per config")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "gradcam_speed.json"
    )
    parser.add_argument("--memory-child", nargs=3, metavar=("MODEL", "BATCH", "METHOD"))
    args = parser.parse_args()
    if args.memory_child:
        name, batch, method = args.memory_child
        memory_child(name, int(batch), method)
        return
    batches = args.batches or ([1] if args.quick else list(BATCHES))
    repeats = args.repeats or (5 if args.quick else 15)
    budget = 2.0 if args.quick else 20.0
    load_before = os.getloadavg()
    rows = []
    for name in args.models:
        model, side = build(name)
        for batch in batches:
            inputs = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
            calls = runners(model, inputs)
            medians, ratios = time_alternately(calls, repeats, budget)
            ratio, wall = ratios["cpu"], ratios["wall"]
            row: dict[str, Any] = {
                "model": name,
                "batch": batch,
                "input": side,
                "path": calls["path"],
                # CPU time (process_time) unless the name says wall.
                "seconds": medians["cpu"],
                "seconds_wall": medians["wall"],
                "rounds": ratio["rounds"],
                "leanxai_over_inference": ratio["leanxai"],
                "captum_over_inference": ratio["captum"],
                "captum_over_leanxai": ratio["captum_over_leanxai"],
                "captum_e2e_over_leanxai": ratio["captum_e2e_over_leanxai"],
                "leanxai_over_inference_wall": wall["leanxai"],
                "captum_over_leanxai_wall": wall["captum_over_leanxai"],
                "captum_e2e_over_leanxai_wall": wall["captum_e2e_over_leanxai"],
            }
            if not args.no_memory:
                memory = {m: measure_memory(name, batch, m) for m in MEMORY_METHODS}
                row["peak_rss_mb"] = {m: v["peak_kb"] / 1024 for m, v in memory.items()}
                row["extra_rss_mb"] = {
                    m: (v["peak_kb"] - v["before_kb"]) / 1024 for m, v in memory.items()
                }
                row["leanxai_over_inference_rss"] = (
                    memory["leanxai"]["peak_kb"] / memory["inference"]["peak_kb"]
                )
                row["captum_over_inference_rss"] = (
                    memory["captum"]["peak_kb"] / memory["inference"]["peak_kb"]
                )
            rows.append(row)
            print(_format_row(row), flush=True)
    speedups = [row["captum_over_leanxai"] for row in rows]
    end_to_end = [row["captum_e2e_over_leanxai"] for row in rows]
    summary = {
        "geomean_captum_over_leanxai": math.exp(sum(map(math.log, speedups)) / len(speedups)),
        "min_captum_over_leanxai": min(speedups),
        "geomean_captum_e2e_over_leanxai": math.exp(
            sum(map(math.log, end_to_end)) / len(end_to_end)
        ),
        "min_captum_e2e_over_leanxai": min(end_to_end),
        "max_leanxai_over_inference_forward": max(
            (r["leanxai_over_inference"] for r in rows if r["path"] == "forward"), default=None
        ),
        "max_leanxai_over_inference_autograd": max(
            (r["leanxai_over_inference"] for r in rows if r["path"] == "autograd"), default=None
        ),
    }
    if not args.no_memory:
        summary["max_leanxai_over_inference_rss_forward"] = max(
            (r["leanxai_over_inference_rss"] for r in rows if r["path"] == "forward"),
            default=None,
        )
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "cpus": os.cpu_count(),
                    # 1-minute load averages before and after: other jobs on the machine.
                    "load_average": [load_before[0], os.getloadavg()[0]],
                },
                "clocks": "seconds and ratios: CPU time (time.process_time); *_wall: perf_counter",
                "repeats": repeats,
                "rows": rows,
                "summary": summary,
            },
            indent=2,
        )
    )
    table = markdown_table(rows, summary)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def markdown_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The README table: CPU ms (median), CPU-time ratios, the wall-clock ratio, peak RSS ratios."""
    memory = "peak_rss_mb" in rows[0]
    head = "| model | batch | path | inference ms | leanxai ms | captum ms | leanxai / inference "
    head += "| leanxai / inference (wall) | captum / leanxai | captum end-to-end / leanxai |"
    rule = "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    if memory:
        head += " peak RSS leanxai / inference | peak RSS captum / inference |"
        rule += "---:|---:|"
    lines = [head, rule]
    for row in rows:
        s = row["seconds"]
        line = (
            f"| {row['model']} | {row['batch']} | {row['path']} | {s['inference'] * 1e3:.1f} "
            f"| {s['leanxai'] * 1e3:.1f} | {s['captum'] * 1e3:.1f} "
            f"| {row['leanxai_over_inference']:.3f} | {row['leanxai_over_inference_wall']:.3f} "
            f"| {row['captum_over_leanxai']:.2f} "
            f"| {row['captum_e2e_over_leanxai']:.2f} |"
        )
        if memory:
            rss = (row["leanxai_over_inference_rss"], row["captum_over_inference_rss"])
            line += f" {rss[0]:.3f} | {rss[1]:.3f} |"
        lines.append(line)
    lines.append("")
    lines.append(
        "Times and ratios are CPU time (`time.process_time`) except the column marked wall "
        "(`time.perf_counter`)."
    )
    lines.append(
        f"Geometric mean of captum / leanxai: {summary['geomean_captum_over_leanxai']:.2f} "
        f"(minimum {summary['min_captum_over_leanxai']:.2f}); end to end "
        f"{summary['geomean_captum_e2e_over_leanxai']:.2f} "
        f"(minimum {summary['min_captum_e2e_over_leanxai']:.2f})."
    )
    return "\n".join(lines) + "\n"


def _format_row(row: dict[str, Any]) -> str:
    s = row["seconds"]
    text = (
        f"{row['model']:>12} b={row['batch']:<2} {row['path']:>8}  "
        f"infer {s['inference'] * 1e3:8.1f} ms  leanxai {s['leanxai'] * 1e3:8.1f} ms "
        f"({row['leanxai_over_inference']:.3f}x cpu, "
        f"{row['leanxai_over_inference_wall']:.3f}x wall)"
        f"  captum {s['captum'] * 1e3:8.1f} ms "
        f"({row['captum_over_inference']:.3f}x)  captum/leanxai {row['captum_over_leanxai']:.2f}"
        f"  e2e {row['captum_e2e_over_leanxai']:.2f}"
    )
    if "peak_rss_mb" in row:
        text += f"  rss x{row['leanxai_over_inference_rss']:.3f}"
    return text


if __name__ == "__main__":
    main()
