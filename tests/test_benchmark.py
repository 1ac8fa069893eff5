"""The methods benchmark and `leanxai benchmark`: every column, failures recorded, nothing lost."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from leanxai.cli.main import main
from leanxai.core.errors import OutputExistsError
from leanxai.data.shapes import make_shapes
from leanxai.experiments import methods as bench
from leanxai.experiments.methods import COLUMNS, BenchmarkConfig, BenchmarkData, run_benchmark
from leanxai.zoo.cnn import SmallCNN

# Cheap settings so that all eight methods run in a few seconds.
FAST = {
    "rise": {"n_masks": 40, "batch_size": 40},
    "lime": {"n_samples": 16, "segments": "grid", "cells": 4},
    "kernelshap": {"n_samples": 16, "segments": "grid", "cells": 4},
    "ig": {"steps": 4},
}
METHODS = (
    "gradcam",
    "gradcam++",
    "rise",
    "lime",
    "kernelshap",
    "ig",
    "occlusion",
    "guided_backprop",
)


def tiny_data(n: int, seed: int, cache_dir: object) -> BenchmarkData:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4, width=4).eval()
    data = make_shapes(n, size=32, seed=seed)
    return BenchmarkData("tiny", model, data.images, data.labels, data.masks, data.classes, "")


def broken_data(n: int, seed: int, cache_dir: object) -> BenchmarkData:
    raise RuntimeError("no such data here")


@pytest.fixture(autouse=True)
def tiny_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench.DATASETS, "tiny", tiny_data)
    monkeypatch.setitem(bench.DATASETS, "broken", broken_data)


def config(**changes: object) -> BenchmarkConfig:
    settings: dict[str, object] = {
        "methods": METHODS,
        "datasets": ("tiny",),
        "n": 3,
        "batch_size": 2,
        "steps": 4,
        "sensitivity_n": 2,
        "sensitivity_samples": 1,
        "method_options": FAST,
    }
    settings.update(changes)
    return BenchmarkConfig(**settings)  # type: ignore[arg-type]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_method_and_threshold_gets_a_row_with_every_column(tmp_path: Path) -> None:
    result = run_benchmark(config(), tmp_path, progress=False)
    assert not result.failed
    rows = read_rows(tmp_path / "results.csv")
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == len(METHODS) * len(config().thresholds)
    assert {r["method"] for r in rows} == set(METHODS)
    for row in rows:
        assert row["status"] == "ok", row
        assert row["n"] == "3"
        for column in ("time_s", "deletion", "insertion", "kept_fraction", "iou", "aupr"):
            value = float(row[column])
            assert value == value, (column, row)  # not NaN
        assert 0.0 <= float(row["iou"]) <= 1.0
        assert 0.0 <= float(row["deletion"]) <= 1.0
    # Pixel-level maps keep about 1 % at top:1 (superpixel maps keep whole tied cells).
    top1 = [r for r in rows if r["threshold"] == "top:1" and r["method"] in ("gradcam", "ig")]
    assert all(0 < float(r["kept_fraction"]) <= 0.05 for r in top1)
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3  # self-contained: plots embedded
    for kind in ("pr", "cost", "curves"):
        assert (tmp_path / "plots" / f"{kind}-tiny.png").read_bytes()[:4] == b"\x89PNG"
    paired = read_rows(tmp_path / "paired_tests.csv")
    assert any(p["a"] == "gradcam none" and p["b"] == "gradcam top:10" for p in paired)
    assert any(p["a"] == "gradcam none" and p["b"] == "lime none" for p in paired)


def test_failed_method_and_data_set_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    options = {**FAST, "rise": {"n_masks": 0}}
    result = run_benchmark(
        config(
            methods=("gradcam", "rise"),
            datasets=("tiny", "broken"),
            thresholds=("none", "top:10"),
            method_options=options,
        ),
        tmp_path,
        progress=False,
    )
    assert result.failed
    assert {(f["dataset"], f["method"]) for f in result.failures} == {
        ("tiny", "rise"),
        ("broken", "*"),
    }
    rows = read_rows(tmp_path / "results.csv")
    status = {(r["dataset"], r["method"], r["threshold"]): r["status"] for r in rows}
    assert status[("tiny", "gradcam", "none")] == "ok"
    assert status[("tiny", "rise", "top:10")] == "failed"
    assert status[("broken", "gradcam", "none")] == "failed"
    errors = {r["error"] for r in rows if r["status"] == "failed"}
    assert any("n_masks" in e for e in errors)
    assert any("no such data here" in e for e in errors)
    report = (tmp_path / "report.html").read_text()
    assert "Failures" in report and "no such data here" in report


def test_existing_results_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("mine\n")
    with pytest.raises(OutputExistsError):
        run_benchmark(config(methods=("gradcam",)), tmp_path, progress=False)
    assert (tmp_path / "results.csv").read_text() == "mine\n"
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methods": ("gradcam", "nosuch")}, "unknown method"),
        ({"datasets": ("nowhere",)}, "unknown dataset"),
        ({"thresholds": ("top:200",)}, "threshold spec"),
        ({"n": 0}, "n must be"),
    ],
)
def test_bad_config_is_refused_before_any_work(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_benchmark(config(**changes), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_model_is_unchanged(tmp_path: Path, state_guard, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny_data(3, 0, None)
    data.model.train()
    check = state_guard(data.model)
    monkeypatch.setitem(bench.DATASETS, "tiny", lambda n, seed, cache: data)
    run_benchmark(config(), tmp_path, progress=False)
    check()


# --------------------------------------------------------------------------------------------
# CLI


def cli_args(out: Path, *extra: str) -> list[str]:
    args = ["benchmark", "--quick", "--out", str(out), "--datasets", "tiny", "--n", "2"]
    for method, options in FAST.items():
        for key, value in options.items():
            text = f'"{value}"' if isinstance(value, str) else str(value)
            args += ["--set", f"{method}.{key}={text}"]
    return [*args, *extra]


def test_cli_quick_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, cli_args(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    rows = read_rows(tmp_path / "out" / "results.csv")
    assert {r["method"] for r in rows} == set(METHODS)
    assert {r["threshold"] for r in rows} == set(bench.DEFAULT_THRESHOLDS)


def test_cli_failure_exits_2_with_the_reason(tmp_path: Path) -> None:
    args = cli_args(tmp_path / "out", "--methods", "gradcam,rise", "--set", "rise.n_masks=0")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3
    assert "failed: rise on tiny" in result.output
    assert (tmp_path / "out" / "results.csv").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "gradcam,nosuch"], "unknown method"),
        (["--set", "lime"], "METHOD.OPTION=VALUE"),
        (["--set", "lme.n_samples=5"], "unknown method 'lme'"),
        (["--set", "lime.bogus=1"], "method 'lime' takes no option(s) bogus"),
    ],
)
def test_cli_bad_options_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(main, cli_args(tmp_path / "out", *extra))
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "results.csv").exists()


def test_cli_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("keep me")
    result = CliRunner().invoke(main, cli_args(out, "--methods", "gradcam"))
    assert result.exit_code == 1
    assert "--overwrite" in result.output or "exists" in result.output
    assert (out / "report.html").read_text() == "keep me"
