"""Time per image of Grad-CAM and Grad-CAM++ on pretrained EfficientNet-Lite0, against inference.

The README's time per image comes from here. The six demo photos (scikit-image) at 224 x 224,
batch 1 (one photo at a time, as `leanxai explain photo.jpg` does) and batch 6 (the demo's batch);
inference (forward, no gradient), Grad-CAM and Grad-CAM++ run alternately, round by round, in a
rotated order (docs/METRICS.md: compare A and B in one process, report the ratio); medians over the
rounds. Also records each photo's top class and where each map peaks, for the README's reading of
the maps. Threads: 1 by default (shared machines make more threads noisy); --threads to change.

    .venv/bin/python benchmarks/pretrained.py            # writes benchmarks/results/pretrained.*
    .venv/bin/python benchmarks/pretrained.py --rounds 5 # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from leanxai.data.images import load_image
from leanxai.data.photos import DEMO_PHOTOS, photo_paths
from leanxai.experiments.demo import interleaved_times
from leanxai.explainers.cam import GradCAM, GradCAMPlusPlus
from leanxai.zoo import pretrained

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "pretrained")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    loaded = pretrained("efficientnet_lite0")
    model = loaded.model
    paths = photo_paths(DEMO_PHOTOS)
    images = torch.stack([load_image(p, size=(224, 224)) for p in paths])
    mean = torch.tensor(loaded.mean)[:, None, None]
    std = torch.tensor(loaded.std)[:, None, None]
    batch = (images - mean) / std  # (6, 3, 224, 224)
    gradcam, gradcampp = GradCAM(model), GradCAMPlusPlus(model)

    def inference(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    rows = []
    for size in (1, len(paths)):
        x = batch[:size]
        calls = {
            "inference": partial(inference, x),
            "gradcam": partial(gradcam.explain, x),
            "gradcam++": partial(gradcampp.explain, x),
        }
        times, _ = interleaved_times(calls, rounds=args.rounds, warmup=2)
        base = statistics.median(times["inference"])
        for name, values in times.items():
            median = statistics.median(values)
            rows.append(
                {
                    "batch": size,
                    "what": name,
                    "ms_per_image": round(median / size * 1e3, 2),
                    "x_inference": round(median / base, 3),
                    # the ratio within each round: robust to the machine's slow moments
                    "x_inference_paired": round(
                        statistics.median(
                            v / b for v, b in zip(values, times["inference"], strict=True)
                        ),
                        3,
                    ),
                }
            )

    photos = []
    with torch.no_grad():
        probabilities = model(batch).softmax(1)
    explanations = {"gradcam": gradcam.explain(batch), "gradcam++": gradcampp.explain(batch)}
    for i, path in enumerate(paths):
        p, k = probabilities[i].topk(5)
        entry = {
            "photo": path.name,
            "top5": [
                [loaded.labels[int(c)], round(float(q), 4)] for q, c in zip(p, k, strict=True)
            ],
        }
        for name, explanation in explanations.items():
            peak = int(explanation.heatmap[i].flatten().argmax())
            entry[f"{name}_peak_row_col"] = [peak // 224, peak % 224]
            entry[f"{name}_cam_7x7"] = [
                [round(float(v), 3) for v in row]
                for row in explanation.cam[i] / explanation.cam[i].max()
            ]
        photos.append(entry)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s)",
        "rounds": args.rounds,
        "layer": explanations["gradcam"].layer,
        "path": explanations["gradcam"].path,
        "times": rows,
        "photos": photos,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Pretrained EfficientNet-Lite0: time per image (benchmarks/pretrained.py)",
        "",
        f"{result['machine']}; median of {args.rounds} interleaved rounds after 2 warm-up rounds; "
        f"layer {result['layer']} ({result['path']} path).",
        "",
        "| batch | what | ms / image | x inference (medians) | x inference (per round) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['batch']} | {r['what']} | {r['ms_per_image']} | {r['x_inference']} | "
        f"{r['x_inference_paired']} |"
        for r in rows
    ]
    lines += ["", "| photo | top-1 | p | Grad-CAM peak (row, col) of 224 |", "|---|---|---|---|"]
    lines += [
        f"| {e['photo']} | {e['top5'][0][0]} | {e['top5'][0][1]} | "
        f"{tuple(e['gradcam_peak_row_col'])} |"
        for e in photos
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
