"""leanxai.scale: a whole collection on the local engine and on Ray Data (issue 21).

Must show: the same rows from ``local`` and ``ray`` on 500 images and the same as ``leanxai
explain``; a killed Ray worker loses and doubles nothing; a stopped run resumes without
recomputing what was written; bad files are rows with their error and the exit status says so.

Ray runs in one local cluster for the module (2 CPUs, no dashboard). The model is the zoo's
SmallCNN at 32 x 32 with fixed weights, so each run costs seconds, mostly actor start-up.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from leanxai.core.errors import InputError, OutputExistsError
from leanxai.data.images import decode_image, load_image
from leanxai.scale import explain_collection, latest_rows
from leanxai.scale.collection import actor_share
from leanxai.scale.store import Store
from leanxai.zoo.cnn import SmallCNN

pa = pytest.importorskip("pyarrow")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
pq = pytest.importorskip("pyarrow.parquet")

N_GOOD = 500
SIZE = (32, 32)
SPEC = "py:leanxai.zoo.cnn:SmallCNN"


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "small.safetensors"
    save_file(_model().state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """500 shapes PNGs in two sub-folders, one file that is not an image, one empty file."""
    from leanxai.data.shapes import make_shapes

    root = tmp_path_factory.mktemp("collection")
    data = make_shapes(N_GOOD, size=32, seed=1)
    pixels = (data.images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for i in range(N_GOOD):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / f"img{i:04d}.png")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    (root / "b" / "empty.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def reference(collection: Path, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted local run over the collection: what every other run must equal."""
    out = tmp_path_factory.mktemp("reference")
    explain_collection(collection, SPEC, out, weights=weights, size=SIZE, batch_size=16)
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _rows(out: Path) -> dict[str, dict]:
    return {row["file"]: row for _, row in latest_rows(out, with_cam=True)}


def _shard_files(out: Path) -> list[str]:
    """Every row's input id over every shard (an input twice would show up twice)."""
    return [
        f for shard in Store(out).shards() for f in pq.read_table(shard).column("file").to_pylist()
    ]


def _assert_same_rows(a: dict[str, dict], b: dict[str, dict], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    worst = 0.0
    for file, row in a.items():
        other = b[file]
        for key in (
            "class",
            "label",
            "score",
            "coverage",
            "status",
            "error",
            "sha256",
            "layer",
            "path",
        ):
            assert row[key] == other[key], (file, key, row[key], other[key])
        if row["cam"] is None:
            assert other["cam"] is None
        else:
            worst = max(worst, float(np.abs(row["cam"] - other["cam"]).max()))
    assert worst <= atol, worst


# -- the local engine, sources, resume rules (no Ray) ----------------------------------------------


def test_decode_image_is_load_image(collection: Path) -> None:
    file = collection / "a" / "img0001.png"
    assert torch.equal(
        decode_image(file.read_bytes(), file, size=SIZE), load_image(file, size=SIZE)
    )
    with pytest.raises(InputError, match="empty"):
        decode_image(b"", "x.png")


def test_bad_files_are_rows_with_their_error(reference: Path, collection: Path) -> None:
    rows = _rows(reference)
    assert (
        len(rows) == N_GOOD + 2
        and _shard_files(reference).count(str(collection / "a" / "img0001.png")) == 1
    )
    broken, empty = (
        rows[str(collection / "a" / "broken.png")],
        rows[str(collection / "b" / "empty.jpg")],
    )
    assert (
        broken["status"] == "skipped"
        and "not an image" in broken["error"]
        and broken["cam"] is None
    )
    assert empty["status"] == "skipped" and "empty" in empty["error"]
    ok = [row for row in rows.values() if row["status"] == "ok"]
    assert len(ok) == N_GOOD and all(row["cam"].shape == (4, 4) for row in ok)
    with open(reference / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == N_GOOD + 2
    assert sum(r["status"].startswith("skipped: ") for r in summary) == 2
    assert {r["map"] for r in summary if r["status"] == "ok"} == {"shards/part-0000-000000.parquet"}


def test_same_as_leanxai_explain(
    tmp_path: Path, collection: Path, weights: Path, reference: Path
) -> None:
    from leanxai.cli.main import main

    picked = [collection / "a" / f"img{i:04d}.png" for i in (1, 3, 5)] + [
        collection / "a" / "broken.png"
    ]
    result = CliRunner().invoke(
        main,
        ["explain", *map(str, picked), "--model", SPEC, "--weights", str(weights), "--size", "32",
         "--out", str(tmp_path / "x")],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    with open(tmp_path / "x" / "summary.csv", newline="") as handle:
        explained = {row["file"]: row for row in csv.DictReader(handle)}
    with open(reference / "summary.csv", newline="") as handle:
        ours = {row["file"]: row for row in csv.DictReader(handle)}
    rows = _rows(reference)
    for file in map(str, picked):
        for key in ("class", "label", "score", "coverage", "status"):
            assert explained[file][key] == ours[file][key], (file, key)
        if explained[file]["status"] != "ok":
            continue
        # leanxai explain's map at the input size, from ours: upsample the cam and normalise.
        heatmap = np.load(tmp_path / "x" / explained[file]["map"])
        cam = torch.from_numpy(rows[file]["cam"])[None, None]
        up = F.interpolate(cam, size=SIZE, mode="bilinear", align_corners=False)[0, 0]
        up = (up / up.max().clamp_min(1e-30)).numpy()
        assert np.abs(up - heatmap).max() < 2e-3  # the cam is stored in float16


def test_sources_list_and_parquet(
    tmp_path: Path, collection: Path, weights: Path, reference: Path
) -> None:
    files = [collection / "a" / f"img{i:04d}.png" for i in (1, 3)]
    listing = tmp_path / "paths.txt"
    listing.write_text("# two images and a missing one\na/img0001.png\n\na/img0003.png\nnope.png\n")
    (tmp_path / "a").symlink_to(collection / "a")
    out = tmp_path / "list"
    result = explain_collection(listing, SPEC, out, weights=weights, size=SIZE, batch_size=16)
    assert (result.total, result.ok, result.skipped) == (3, 2, 1)
    assert "does not exist" in dict(result.failed)[str(tmp_path / "nope.png")]
    # A Parquet of image bytes (a Hugging Face style struct column), with an id column.
    table = pa.table(
        {
            "name": ["one", "three", "null", "junk"],
            "image": [{"bytes": f.read_bytes(), "path": None} for f in files]
            + [{"bytes": None, "path": None}, {"bytes": b"junk", "path": None}],
        }
    )
    pq.write_table(table, tmp_path / "images.parquet", row_group_size=3)
    out = tmp_path / "pq"
    result = explain_collection(tmp_path / "images.parquet", SPEC, out, weights=weights, size=SIZE)
    assert (result.total, result.ok, result.skipped) == (4, 2, 2)
    rows, ref = _rows(out), _rows(reference)
    for name, file in zip(("one", "three"), files, strict=True):
        assert rows[name]["class"] == ref[str(file)]["class"]
        assert np.abs(rows[name]["cam"] - ref[str(file)]["cam"]).max() < 1e-2  # other batches
    assert "null" in rows["null"]["error"] and "not an image" in rows["junk"]["error"]


def test_resume_rules(tmp_path: Path, collection: Path, weights: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        (source / f"i{i}.png").write_bytes(
            (collection / "a" / f"img{2 * i + 1:04d}.png").read_bytes()
        )
    out = tmp_path / "out"
    args = {"weights": weights, "size": SIZE, "batch_size": 4}
    first = explain_collection(source, SPEC, out, **args)
    assert (first.written, first.reused) == (6, 0)
    # A changed file is explained again, and only it; its newer row replaces the older one.
    (source / "i2.png").write_bytes((collection / "b" / "img0000.png").read_bytes())
    second = explain_collection(source, SPEC, out, **args)
    assert (second.written, second.reused, second.ok) == (1, 5, 6)
    assert len(_rows(out)) == 6 and len(_shard_files(out)) == 7
    with open(out / "summary.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    # Other settings over the same folder are refused; --overwrite starts again.
    with pytest.raises(OutputExistsError, match="threshold"):
        explain_collection(source, SPEC, out, threshold="top:10", **args)
    third = explain_collection(source, SPEC, out, threshold="top:10", overwrite=True, **args)
    assert (
        third.written == 6 and json.loads((out / "scale.json").read_text())["threshold"] == "top:10"
    )
    # A folder written by `leanxai explain` is not taken over.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "summary.csv").write_text("file\n")
    with pytest.raises(OutputExistsError):
        explain_collection(source, SPEC, tmp_path / "plain", **args)


def test_resume_keys_ending_in_nul_bytes() -> None:
    from leanxai.scale.read import KEY_BYTES, _contains, content_key

    sha = "0" * 64
    names = (f"f{k}" for k in range(100_000))
    name = next(n for n in names if content_key(n, sha).endswith(b"\0"))
    done = np.unique(
        np.array([content_key(name, sha), content_key("x", sha)], dtype=f"S{KEY_BYTES}")
    )
    assert _contains(done, content_key(name, sha))  # numpy's S dtype strips trailing NULs
    assert not _contains(done, content_key("y", sha))


def test_actor_share_leaves_cpu_for_reads() -> None:
    assert actor_share(2, 2) == (0.75, 1)
    assert actor_share(2, 1) == (1.0, 2)
    assert actor_share(16, 4) == (3.0, 4)
    for cpus, workers in ((2, 1), (2, 2), (2, 3), (8, 8), (64, 16)):
        share, _ = actor_share(cpus, workers)
        assert share * workers <= cpus - 0.25  # room for at least one read task


# -- Ray ------------------------------------------------------------------------------------------


class _Counting(SmallCNN):
    """SmallCNN that records, per process, how many images it explained, and can go slowly."""

    def __init__(self, log: str, delay: float = 0.0) -> None:
        super().__init__()
        self.log, self.delay = log, delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().sum() > 0):  # not the probe of zeros the worker starts with
            with open(Path(self.log) / str(os.getpid()), "a") as handle:
                handle.write(f"{x.shape[0]}\n")
            time.sleep(self.delay)
        return super().forward(x)


def _counting(log: Path, delay: float = 0.0) -> _Counting:
    try:
        import ray.cloudpickle
    except ImportError:  # the local engine needs no Ray
        pass
    else:  # Ray workers cannot import the tests: send this module's classes by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    log.mkdir(exist_ok=True)
    model = _Counting(str(log), delay)
    model.load_state_dict(_model().state_dict())
    return model.eval()


def _explained(log: Path) -> int:
    return sum(int(n) for f in log.iterdir() for n in f.read_text().split())


def test_ray_cli_same_rows_as_local(
    ray_cluster, tmp_path: Path, collection: Path, weights: Path, reference: Path
) -> None:
    from leanxai.cli.main import main

    out = tmp_path / "ray"
    result = CliRunner().invoke(
        main,
        ["explain", str(collection), "--engine", "ray", "--workers", "2", "--model", SPEC,
         "--weights", str(weights), "--size", "32", "--batch-size", "16", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 3, result.output  # two bad files: named, counted, partial
    assert "explained 500 of 502 inputs" in result.output
    assert "broken.png: not an image" in result.output and "empty.jpg" in result.output
    _assert_same_rows(_rows(out), _rows(reference), atol=0.0)
    assert sorted(_shard_files(out)) == sorted(_rows(reference))


def test_ray_worker_killed_mid_run(
    ray_cluster, tmp_path: Path, collection: Path, reference: Path
) -> None:
    log = tmp_path / "log"
    model = _counting(log, delay=0.1)
    out = tmp_path / "out"
    committed = threading.Event()
    killed: list[int] = []

    def kill_one() -> None:
        if not committed.wait(120):
            return
        victim = max(log.iterdir(), key=lambda f: f.stat().st_mtime)  # a worker busy right now
        os.kill(int(victim.name), signal.SIGKILL)
        killed.append(int(victim.name))

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    result = explain_collection(
        collection, model, out, engine="ray", workers=2, batch_size=16, size=SIZE,
        overlays=True, shard_rows=64, progress=lambda _n: committed.set(),
    )  # fmt: skip
    killer.join(5)
    assert killed, "no worker was killed"
    assert (result.total, result.ok, result.skipped) == (N_GOOD + 2, N_GOOD, 2)
    files = _shard_files(out)
    assert len(files) == len(set(files)) == N_GOOD + 2  # every input exactly once
    _assert_same_rows(_rows(out), _rows(reference), atol=0.0)  # nothing corrupt or different
    pngs = sorted((out / "overlays").iterdir())
    assert len(pngs) == N_GOOD and not [p for p in pngs if p.name.startswith(".")]
    for png in pngs[::25]:
        with Image.open(png) as image:
            image.load()


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_stop_and_resume(
    engine: str, request, tmp_path: Path, collection: Path, reference: Path
) -> None:
    if engine == "ray":
        request.getfixturevalue("ray_cluster")
    log = tmp_path / "log"
    model = _counting(log)
    out = tmp_path / "out"
    seen = [0]

    def stop_halfway(count: int) -> None:
        seen[0] += count
        if seen[0] >= (N_GOOD + 2) // 2:
            raise KeyboardInterrupt  # as Ctrl-C in the driver

    args = {"engine": engine, "batch_size": 16, "size": SIZE, "shard_rows": 48}
    with pytest.raises(KeyboardInterrupt):
        explain_collection(collection, model, out, progress=stop_halfway, **args)
    shards = {p: p.read_bytes() for p in Store(out).shards()}
    written = len(_shard_files(out))
    good_written = sum(r["status"] == "ok" for r in _rows(out).values())
    assert 0 < written < N_GOOD + 2
    for f in log.iterdir():
        f.unlink()
    result = explain_collection(collection, model, out, **args)
    assert (result.written, result.reused) == (N_GOOD + 2 - written, written)
    assert _explained(log) == N_GOOD - good_written  # nothing written was explained again
    assert all(p.read_bytes() == data for p, data in shards.items())  # earlier shards untouched
    files = _shard_files(out)
    assert len(files) == len(set(files)) == N_GOOD + 2
    _assert_same_rows(_rows(out), _rows(reference), atol=0.0)  # as an uninterrupted run
