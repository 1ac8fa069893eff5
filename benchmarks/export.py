"""The model and its heatmap in one ONNX graph: exactness, single-thread latency, int8 (issue 19).

For ResNet-18, MobileNetV2 and EfficientNet-B0 (transformers configs, random weights: PyTorch's
default init, batch-norm statistics from the photos below), the zoo's VGG-style net (VGG-11-like,
flatten + two linear layers: the piecewise-linear head) and the zoo CNN (SmallCNN), all at
224x224:

- exactness: onnxruntime's logits and heatmaps against ``GradCAM(model).explain`` on 8 photo crops;
- latency, batch 1, one thread everywhere (onnxruntime ``intra_op_num_threads=1``,
  ``torch.set_num_threads(1)``; run with ``OMP_NUM_THREADS=1``): the model-only graph, the
  model-plus-heatmap graph, its int8 version, and PyTorch eager inference (``model(x)`` under
  ``no_grad``). They run alternately in one process, the order rotating every round after warm-up;
  the table gives medians and the median of the per-round ratios heatmap/model-only;
- file sizes, float and int8 (static QDQ, 32 calibration crops), and the agreement of the int8
  graph with the float one on 16 other crops: same prediction, and the IoU of the top-10% regions;
- int8 accuracy change with labels: the trained demo CNN (SmallCNN on synthetic shapes, 64x64)
  on 512 held-out shapes, calibrated on 64 others.

Random weights: the latency and file sizes are those of the real architectures; the int8
agreement of a random network says little about a trained one, which is why the trained demo CNN
is there. The photos are scikit-image's sample photos (astronaut, chelsea, coffee, rocket,
motorcycle, retina, hubble), as random crops.

    OMP_NUM_THREADS=1 python benchmarks/export.py            # writes results/export.{csv,md}
    OMP_NUM_THREADS=1 python benchmarks/export.py --quick    # fewer rounds
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from leanxai import GradCAM
from leanxai.deploy import build_cam_graph, compare_int8, onnx_bytes, quantize_int8
from leanxai.deploy.export import _session

RESULTS = Path(__file__).parent / "results"
SIDE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
)


def photo_crops(count: int, seed: int) -> np.ndarray:
    """``(N, 3, 224, 224)`` normalised random crops of scikit-image's photos."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    photos = [Image.open(folder / name).convert("RGB") for name in PHOTOS]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = photo.size
        side = int(rng.uniform(0.5, 1.0) * min(width, height))
        left, top = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((SIDE, SIDE))
        array = np.asarray(crop, dtype=np.float32) / 255
        if rng.random() < 0.5:
            array = array[:, ::-1]
        crops.append(((array - MEAN) / STD).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(crops), dtype=np.float32)


def randomize(model: nn.Module, images: np.ndarray) -> nn.Module:
    """PyTorch's default init, and batch-norm statistics from ``images``."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
        if isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), 8):
            model(torch.from_numpy(images[start : start + 8]))
    return model.eval()


def architectures() -> list[tuple[str, Callable[[], nn.Module]]]:
    import transformers

    from leanxai.zoo import SmallCNN, VGGStyle

    def resnet18() -> nn.Module:
        config = transformers.ResNetConfig(
            layer_type="basic",
            embedding_size=64,
            hidden_sizes=[64, 128, 256, 512],
            depths=[2, 2, 2, 2],
            num_labels=1000,
        )
        return transformers.ResNetForImageClassification(config)

    def mobilenet() -> nn.Module:
        config = transformers.MobileNetV2Config(image_size=SIDE, num_labels=1000)
        return transformers.MobileNetV2ForImageClassification(config)

    def efficientnet() -> nn.Module:
        config = transformers.EfficientNetConfig(
            width_coefficient=1.0,
            depth_coefficient=1.0,
            hidden_dim=1280,
            image_size=SIDE,
            num_labels=1000,
        )
        return transformers.EfficientNetForImageClassification(config)

    return [
        ("ResNet-18", resnet18),
        ("MobileNetV2", mobilenet),
        ("EfficientNet-B0", efficientnet),
        ("VGG-style (zoo, VGG-11-like)", lambda: VGGStyle(num_classes=10, image_size=SIDE)),
        ("zoo CNN (SmallCNN)", lambda: SmallCNN(num_classes=10)),
    ]


def timed(runners: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Each runner once per round, the order rotating; three warm-up rounds first."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds + 3):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runners[name]()
            elapsed = time.perf_counter() - start
            if round_ >= 3:
                times[name].append(elapsed)
    return times


def benchmark_architecture(
    name: str,
    factory: Callable[[], nn.Module],
    calibration: np.ndarray,
    evaluation: np.ndarray,
    rounds: int,
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = randomize(factory(), calibration)
    graph = build_cam_graph(model, (SIDE, SIDE))
    full = onnx_bytes(graph)
    model_only = onnx_bytes(graph, model_only=True)
    int8, mode = quantize_int8(full, calibration)

    # Exactness against PyTorch's explainer on photo crops (none was used for tracing).
    check = torch.from_numpy(evaluation[:8])
    reference = GradCAM(model).explain(check)
    session_full, session_model, session_int8 = _session(full), _session(model_only), _session(int8)
    logits, target, heatmap, _ = session_full.run(None, {"pixels": evaluation[:8]})
    logits_error = float(np.abs(logits - reference.logits.numpy()).max())
    heatmap_error = float(np.abs(heatmap - reference.heatmap.numpy()).max())
    targets_equal = bool(np.array_equal(target, reference.target.numpy()))

    agreement = compare_int8(full, int8, evaluation, None, mode)

    x = evaluation[:1]
    x_torch = torch.from_numpy(x)
    if rounds <= 0:  # about a minute of timing per architecture, 31 to 301 rounds
        start = time.perf_counter()
        for _ in range(3):
            session_model.run(None, {"pixels": x})
        each = (time.perf_counter() - start) / 3
        rounds = int(min(301, max(31, 60 / (4 * each))))

    def eager() -> None:
        with torch.no_grad():
            model(x_torch)

    times = timed(
        {
            "model_only": lambda: session_model.run(None, {"pixels": x}),
            "with_heatmap": lambda: session_full.run(None, {"pixels": x}),
            "with_heatmap_int8": lambda: session_int8.run(None, {"pixels": x}),
            "pytorch_eager": eager,
        },
        rounds,
    )
    ratios = [
        b / a for a, b in zip(times["model_only"], times["with_heatmap"], strict=True)
    ]  # paired per round
    median = {key: statistics.median(value) * 1000 for key, value in times.items()}
    with tempfile.TemporaryDirectory() as folder:
        sizes = {}
        for label, data in (("float", full), ("model_only", model_only), ("int8", int8)):
            path = Path(folder) / f"{label}.onnx"
            path.write_bytes(data)
            sizes[label] = path.stat().st_size
    return {
        "architecture": name,
        "layer": graph.head.layer,
        "head": graph.head.kind,
        "max_logit_diff": logits_error,
        "max_heatmap_diff": heatmap_error,
        "targets_equal": targets_equal,
        "ms_model_only": median["model_only"],
        "ms_with_heatmap": median["with_heatmap"],
        "ms_with_heatmap_int8": median["with_heatmap_int8"],
        "ms_pytorch_eager": median["pytorch_eager"],
        "ratio_heatmap_vs_model": statistics.median(ratios),
        "ratio_p25": float(np.percentile(ratios, 25)),
        "ratio_p75": float(np.percentile(ratios, 75)),
        "rounds": rounds,
        "bytes_model_only": sizes["model_only"],
        "bytes_float": sizes["float"],
        "bytes_int8": sizes["int8"],
        "int8_mode": mode,
        "int8_same_prediction": agreement.agreement,
        "int8_heatmap_iou_mean": agreement.heatmap_iou,
        "int8_heatmap_iou_min": agreement.heatmap_iou_min,
        "int8_inputs": agreement.inputs,
        "int8_accuracy_float": "",
        "int8_accuracy_int8": "",
    }


def trained_demo_int8() -> dict[str, Any]:
    """int8 accuracy change of the trained demo CNN on labelled held-out shapes."""
    from leanxai.data.shapes import make_shapes
    from leanxai.zoo import load_demo_model

    model, _ = load_demo_model(progress=False)
    model.eval()
    calibration = make_shapes(64, size=64, seed=1001)
    held_out = make_shapes(512, size=64, seed=1002)
    graph = build_cam_graph(model, (64, 64))
    full = onnx_bytes(graph)
    int8, mode = quantize_int8(full, calibration.images.numpy())
    report = compare_int8(full, int8, held_out.images.numpy(), held_out.labels.numpy(), mode)
    reference = GradCAM(model).explain(held_out.images[:8])
    _, _, heatmap, _ = _session(full).run(None, {"pixels": held_out.images[:8].numpy()})
    return {
        "architecture": "demo CNN (trained, shapes 64x64)",
        "layer": graph.head.layer,
        "head": graph.head.kind,
        "max_logit_diff": "",
        "max_heatmap_diff": float(np.abs(heatmap - reference.heatmap.numpy()).max()),
        "targets_equal": "",
        "bytes_float": len(full),
        "bytes_int8": len(int8),
        "int8_mode": mode,
        "int8_same_prediction": report.agreement,
        "int8_heatmap_iou_mean": report.heatmap_iou,
        "int8_heatmap_iou_min": report.heatmap_iou_min,
        "int8_inputs": report.inputs,
        "int8_accuracy_float": report.accuracy_float,
        "int8_accuracy_int8": report.accuracy_int8,
    }


def _mb(n: Any) -> str:
    return f"{n / 1e6:.1f}" if isinstance(n, (int, float)) else ""


def write_report(rows: list[dict[str, Any]], demo: dict[str, Any], notes: list[str]) -> str:
    lines = [
        "| architecture | head | ORT model only (ms) | ORT model + heatmap (ms) | ratio "
        "(median, IQR) | ORT int8 + heatmap (ms) | PyTorch eager (ms) | max heatmap diff | "
        "size float / int8 (MB) | int8: same prediction, heatmap top-10% IoU (mean, worst) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['architecture']} | {row['head']} | {row['ms_model_only']:.1f} | "
            f"{row['ms_with_heatmap']:.1f} | {row['ratio_heatmap_vs_model']:.3f}x "
            f"({row['ratio_p25']:.3f}-{row['ratio_p75']:.3f}) | "
            f"{row['ms_with_heatmap_int8']:.1f} | {row['ms_pytorch_eager']:.1f} | "
            f"{row['max_heatmap_diff']:.1e} | {_mb(row['bytes_float'])} / "
            f"{_mb(row['bytes_int8'])} | {row['int8_same_prediction']:.0%}, "
            f"{row['int8_heatmap_iou_mean']:.2f}, {row['int8_heatmap_iou_min']:.2f} |"
        )
    change = 100 * (demo["int8_accuracy_int8"] - demo["int8_accuracy_float"])
    lines += [
        "",
        f"int8 with labels, {demo['architecture']}: accuracy {demo['int8_accuracy_float']:.3f} "
        f"(float graph) -> {demo['int8_accuracy_int8']:.3f} (int8, {demo['int8_mode']}), "
        f"{change:+.1f} points on {demo['int8_inputs']} held-out shapes; same prediction "
        f"{demo['int8_same_prediction']:.1%}; heatmap top-10% IoU "
        f"{demo['int8_heatmap_iou_mean']:.3f} mean, {demo['int8_heatmap_iou_min']:.3f} worst; "
        f"{_mb(demo['bytes_float'])} MB -> "
        f"{demo['bytes_int8'] / 1e3:.0f} kB.",
        "",
        *notes,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated architecture names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = args.rounds or (7 if args.quick else 0)  # 0: chosen per architecture
    calibration = photo_crops(32, seed=0)
    evaluation = photo_crops(16, seed=1)
    load_before = os.getloadavg()
    rows = []
    for name, factory in architectures():
        if args.only and not any(part.strip() in name for part in args.only.split(",")):
            continue
        start = time.perf_counter()
        row = benchmark_architecture(name, factory, calibration, evaluation, rounds)
        rows.append(row)
        print(
            f"{name}: {row['head']}, model {row['ms_model_only']:.1f} ms, +heatmap "
            f"{row['ms_with_heatmap']:.1f} ms (x{row['ratio_heatmap_vs_model']:.3f}), int8 "
            f"{row['ms_with_heatmap_int8']:.1f} ms, eager {row['ms_pytorch_eager']:.1f} ms, "
            f"heatmap diff {row['max_heatmap_diff']:.1e}, int8 IoU "
            f"{row['int8_heatmap_iou_mean']:.2f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    demo = trained_demo_int8()
    print(
        f"demo CNN int8: accuracy {demo['int8_accuracy_float']:.3f} -> "
        f"{demo['int8_accuracy_int8']:.3f}, IoU {demo['int8_heatmap_iou_mean']:.3f}"
    )
    load_after = os.getloadavg()
    notes = [
        f"Batch 1, one thread, {'/'.join(str(row['rounds']) for row in rows)} interleaved rounds "
        "(per architecture, about a minute of timing each) after 3 warm-up rounds; "
        f"onnxruntime {__import__('onnxruntime').__version__}, torch {torch.__version__}, "
        f"{platform.machine()} with {os.cpu_count()} cores. 1-minute load average "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after the run: "
        + (
            "the machine was busy with other jobs, so absolute times are noisy; the ratios are "
            "paired per round."
            if max(load_before[0], load_after[0]) > 1.5
            else "the machine was quiet."
        ),
        "Random weights for the five architectures (see benchmarks/export.py); 'max heatmap "
        "diff' is onnxruntime against GradCAM(model).explain on 8 photo crops.",
    ]
    fields = sorted({key for row in [*rows, demo] for key in row}, key=lambda k: k)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "export.csv", "w", newline="") as handle:
        writer = csv.DictWriter(
            handle,
            fieldnames=["architecture", *[f for f in fields if f != "architecture"]],
            restval="",
        )
        writer.writeheader()
        writer.writerows([*rows, demo])
    (RESULTS / "export.md").write_text(write_report(rows, demo, notes))
    print((RESULTS / "export.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
