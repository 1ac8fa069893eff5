"""Vision transformers: cost at real size and localisation on shapes (issue 15).

Part 1, cost: ViT-Base/16 and Swin-Tiny configs at 224 px with random weights (no accuracy claim),
batch 1 and 16. Inference and each method are called alternately in one process, in an order
rotated every round; the ratio of medians is reported. Peak memory: the growth of the process's
peak resident memory during one call (Linux VmHWM, see leanxai.evaluate.cost), beside inference's.

Part 2, shapes: the zoo ViT (patch 8) and Swin-like model trained on 64x64 shapes, and the demo
CNN for reference, on held-out images they classify correctly. Each method: ms per image and x
inference (alternated in one process), IoU with the object mask at top:10, pointing game
(tolerance 15 px, the default, and 0 px: the maximum on the object), deletion, insertion; paired
tests (t-test, Wilcoxon) of IoU and deletion between the transformer methods.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/vision_transformers.py [--quick]

Writes benchmarks/results/vision_transformers.md and .csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from leanxai import threshold
from leanxai.data.shapes import make_shapes
from leanxai.evaluate.cost import cost
from leanxai.evaluate.faithfulness import deletion, insertion
from leanxai.evaluate.localization import localization, pointing_game
from leanxai.evaluate.stats import format_p, paired_test
from leanxai.explainers.baselines import RISE, IntegratedGradients, Occlusion
from leanxai.explainers.cam import GradCAM
from leanxai.explainers.vision_transformer import (
    AttentionRollout,
    GradientWeightedRollout,
    TokenGradCAM,
)
from leanxai.zoo import load_demo_model
from leanxai.zoo.transformers_zoo import load_shapes_swin, load_shapes_vit

RESULTS = Path(__file__).parent / "results"
_SEED = 7_100_015  # held-out shapes, never a training seed


def _vit_base() -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(num_labels=1000)).eval()


def _swin_tiny() -> torch.nn.Module:
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    config = SwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], num_labels=1000
    )
    return SwinForImageClassification(config).eval()


# CPU time of the process (time.process_time) by default: on a shared machine wall time measures
# the neighbours too; with one torch thread the CPU time is the work the call did. --clock wall
# for wall time (perf_counter).
CLOCK: Callable[[], float] = time.process_time


def _alternate(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds per call (:data:`CLOCK`), the calls alternated and their order rotated
    every round."""
    names = list(calls)
    for name in names:  # warm-up (and the forward path's one-time check)
        calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = CLOCK()
            calls[name]()
            times[name].append(CLOCK() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _inference(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> Any:
        with torch.no_grad():
            return model(x)

    return run


def cost_table(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for model_name, build in (("ViT-Base/16", _vit_base), ("Swin-Tiny", _swin_tiny)):
        model = build()
        for batch in (1, 16):
            rounds = (3 if batch == 16 else 5) if not quick else 2
            x = torch.rand(batch, 3, 224, 224)
            explainers = {
                "token_gradcam": TokenGradCAM(model),
                "token_gradcam (autograd)": TokenGradCAM(model, path="autograd"),
                "rollout": AttentionRollout(model),
                "grad_rollout": GradientWeightedRollout(model),
            }
            calls: dict[str, Callable[[], Any]] = {"inference": _inference(model, x)}
            calls.update({name: (lambda e=e, x=x: e.explain(x)) for name, e in explainers.items()})
            medians = _alternate(calls, rounds)
            peaks = {
                name: cost(call, repeats=1, warmup=0, memory=True).peak_bytes
                for name, call in calls.items()
            }
            paths = {name: e.explain(x[:1]).path for name, e in explainers.items()}
            for name, seconds in medians.items():
                rows.append(
                    {
                        "model": model_name,
                        "batch": batch,
                        "method": name,
                        "path": paths.get(name, ""),
                        "ms_per_image": 1000 * seconds / batch,
                        "x_inference": seconds / medians["inference"],
                        "peak_mb": (peaks[name] or 0) / 2**20,
                        "rounds": rounds,
                        "clock": "cpu" if CLOCK is time.process_time else "wall",
                    }
                )
                print(rows[-1], flush=True)
        del model
    return rows


def _correct(model: torch.nn.Module, data: Any) -> torch.Tensor:
    from leanxai.core.models import logits_of

    with torch.no_grad():
        predicted = logits_of(model(data.images)).argmax(1)
    return (predicted == data.labels).nonzero()[:, 0]


def shapes_table(
    n: int,
    quick: bool,
    skip_swin: bool = False,
    ig_steps: int | None = None,
    rise_masks: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ig_steps = ig_steps or (16 if quick else 32)
    rise_masks = rise_masks or (500 if quick else 2000)
    settings = {"ig": f"{ig_steps} steps", "occlusion": "window 8, stride 4"}
    settings["rise"] = f"{rise_masks} masks"
    data = make_shapes(4 * n, size=64, seed=_SEED)
    vit, vit_meta = load_shapes_vit(progress=True)
    cnn, cnn_meta = load_demo_model(progress=True)
    rows, tests = [], []
    models: list[tuple[str, Any, dict[str, Any]]] = [("zoo ViT", vit, vit_meta)]
    if not skip_swin:
        swin, swin_meta = load_shapes_swin(progress=True)
        models.append(("zoo Swin", swin, swin_meta))
    models.append(("demo CNN", cnn, cnn_meta))
    for model_name, model, meta in models:
        keep = _correct(model, data)[:n]
        images, labels, masks = data.images[keep], data.labels[keep], data.masks[keep]
        if model_name == "demo CNN":
            explainers: dict[str, Any] = {"gradcam (CNN)": GradCAM(model)}
        else:
            explainers = {
                "token_gradcam": TokenGradCAM(model),
                "rollout": AttentionRollout(model),
                "grad_rollout": GradientWeightedRollout(model),
            }
        explainers.update(
            {
                "ig": IntegratedGradients(model, steps=ig_steps),
                "occlusion": Occlusion(model, window=8, stride=4),
                "rise": RISE(model, n_masks=rise_masks, seed=0),
            }
        )
        per_sample: dict[str, dict[str, torch.Tensor]] = {}
        heatmaps: dict[str, torch.Tensor] = {}
        for name, explainer in explainers.items():
            maps = []
            for start in range(0, len(images), 16):
                maps.append(
                    explainer.explain(
                        images[start : start + 16], labels[start : start + 16]
                    ).heatmap
                )
            heatmaps[name] = torch.cat(maps)
        # Cost: one batch of 16, every method alternated with inference.
        x, y = images[:16], labels[:16]
        calls: dict[str, Callable[[], Any]] = {"inference": _inference(model, x)}
        calls.update(
            {name: (lambda e=e, x=x, y=y: e.explain(x, y)) for name, e in explainers.items()}
        )
        medians = _alternate(calls, 2 if quick else 3)
        for name, heatmap in heatmaps.items():
            kept = threshold.top_percent(heatmap, 10) > 0  # kept values, not a mask
            iou = localization(kept, masks)["iou"]
            hits15 = pointing_game(heatmap, masks).hits.float()
            hits0 = pointing_game(heatmap, masks, tolerance=0).hits.float()
            dele = deletion(model, images, heatmap, labels)
            ins = insertion(model, images, heatmap, labels)
            per_sample[name] = {"iou": iou, "deletion": dele}
            rows.append(
                {
                    "model": model_name,
                    "accuracy": meta.get("held_out_accuracy"),
                    "n": len(images),
                    "method": name,
                    "settings": settings.get(name, ""),
                    "ms_per_image": 1000 * medians[name] / len(x),
                    "x_inference": medians[name] / medians["inference"],
                    "iou_top10": float(iou.mean()),
                    "pointing_15px": float(hits15.mean()),
                    "pointing_0px": float(hits0.mean()),
                    "deletion": float(dele.mean()),
                    "insertion": float(ins.mean()),
                }
            )
            print(rows[-1], flush=True)
        if model_name == "demo CNN":
            continue
        names = list(per_sample)
        for metric in ("iou", "deletion"):
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    test = paired_test(per_sample[a][metric], per_sample[b][metric])
                    tests.append(
                        {
                            "model": model_name,
                            "metric": metric,
                            "a": a,
                            "b": b,
                            "n": test.n,
                            "mean_a": test.mean_a,
                            "mean_b": test.mean_b,
                            "t_p": test.t_pvalue,
                            "wilcoxon_p": test.w_pvalue,
                            "effect_size": test.effect_size,
                        }
                    )
    return rows, tests


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return format_p(value) if abs(value) < 1e-3 and value != 0 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _read_csv(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The tables of an earlier run (to rerun one part and keep the other)."""
    tables: dict[str, dict[int, dict[str, Any]]] = {}
    if not path.exists():
        return {}
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        index, key = row["key"].split(".", 1)
        value: Any = row["value"]
        try:
            value = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            pass
        tables.setdefault(row["table"], {}).setdefault(int(index), {})[key] = value
    return {name: [rows[i] for i in sorted(rows)] for name, rows in tables.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument("--n", type=int, default=64, help="shapes images per model")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-shapes", action="store_true")
    parser.add_argument(
        "--skip-swin", action="store_true", help="shapes table without the zoo Swin"
    )
    parser.add_argument("--ig-steps", type=int, help="shapes: IG steps (default 32, 16 --quick)")
    parser.add_argument(
        "--rise-masks", type=int, help="shapes: RISE masks (default 2000, 500 --quick)"
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time calls by the process's CPU time (default; use one thread) or wall time",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cost_rows = None if args.skip_cost else cost_table(args.quick)
    shapes = (
        None
        if args.skip_shapes
        else shapes_table(args.n, args.quick, args.skip_swin, args.ig_steps, args.rise_masks)
    )
    # The part not run keeps its earlier rows, read only now: a run of the other part that
    # finished meanwhile is kept.
    previous = _read_csv(RESULTS / "vision_transformers.csv")
    if cost_rows is None:
        cost_rows = previous.get("cost", [])
    if shapes is None:
        shape_rows, tests = previous.get("shapes", []), previous.get("tests", [])
    else:
        shape_rows, tests = shapes
    # How each part's rows were made: this run for the parts it ran, else the earlier record.
    minutes = (time.perf_counter() - started) / 60
    run = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} .venv/bin/python "
        f"benchmarks/vision_transformers.py {' '.join(sys.argv[1:])}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "load": round(load, 1),
        "minutes": round(minutes, 1),
        "note": "",
    }
    earlier = {str(row.get("part")): row for row in previous.get("runs", [])}
    runs = [
        {"part": part, **run} if ran else earlier.get(part, {"part": part, "note": "not recorded"})
        for part, ran in (("cost", not args.skip_cost), ("shapes", not args.skip_shapes))
    ]
    tables = {"cost": cost_rows, "shapes": shape_rows, "tests": tests, "runs": runs}
    for name, rows in previous.items():  # tables this version does not write are kept as read
        tables.setdefault(name, rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "key", "value"])
    for table, rows in tables.items():
        for i, row in enumerate(rows):
            for key, value in row.items():
                writer.writerow([table, f"{i}.{key}", value])
    (RESULTS / "vision_transformers.csv").write_text(buffer.getvalue(), encoding="utf-8")

    def described(row: dict[str, Any]) -> str:
        if "command" not in row:
            return f"{str(row['part']).capitalize()}: how these rows were made is not recorded."
        text = (
            f"{str(row['part']).capitalize()}: `{row['command']}`; torch {row['torch']}, "
            f"{row['threads']} threads, {row['machine']}, load average {row['load']} at the "
            f"start (a shared 2-core machine), {row['minutes']} min"
        )
        return text + (f" ({row['note']})." if row.get("note") else ".")

    text = [
        "# Vision transformers (issue 15)",
        "",
        *[line for row in runs for line in (described(row), "")],
        "## Cost at real size (random weights)",
        "",
        _table(
            cost_rows,
            [
                "model",
                "batch",
                "method",
                "path",
                "ms_per_image",
                "x_inference",
                "peak_mb",
                "rounds",
                "clock",
            ],
        ),
        "",
        "## Shapes (64x64, held-out images the model classifies correctly)",
        "",
        _table(
            shape_rows,
            [
                "model",
                "accuracy",
                "n",
                "method",
                "settings",
                "ms_per_image",
                "x_inference",
                "iou_top10",
                "pointing_15px",
                "pointing_0px",
                "deletion",
                "insertion",
            ],
        ),
        "",
        "## Paired tests",
        "",
        _table(
            tests,
            [
                "model",
                "metric",
                "a",
                "b",
                "n",
                "mean_a",
                "mean_b",
                "t_p",
                "wilcoxon_p",
                "effect_size",
            ],
        ),
        "",
    ]
    (RESULTS / "vision_transformers.md").write_text("\n".join(text), encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
