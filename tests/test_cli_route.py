"""``leanxai route``: routing image files, evaluating policies, training; through CliRunner."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import leanxai.experiments.routing as system
from leanxai.cli.main import main
from leanxai.route.features import FEATURE_NAMES
from leanxai.route.router import TierRouter, load_router, read_router_file, save_router
from leanxai.zoo.tiers import TierData, build_tier


@pytest.fixture(scope="module")
def tiny_routing():
    torch.manual_seed(0)
    tiers = [build_tier(t, 4, 3).eval() for t in ("TINY", "LIGHT")]
    tiers += [build_tier("TINY", 4, 3).eval(), build_tier("LIGHT", 4, 3).eval()]
    rng = np.random.default_rng(0)
    features = rng.random((60, 7))
    labels = np.arange(60) % 4
    router = TierRouter(tau=0.5).fit(features, labels)
    return system.Routing(
        dataset="shapes",
        tiers=tiers,
        router=router,
        escalate=(0.6, 0.6, 0.5),
        escalate_tau=0.3,
        cascade=(0.7, 0.6, 0.5),
        classes=("circle", "square", "triangle", "cross"),
        input_size=[3, 32, 32],
        metadata={"n_router": 60},
        training_features=features,
        training_labels=labels,
    )


@pytest.fixture()
def patched(monkeypatch, tiny_routing):
    monkeypatch.setattr(system, "load_routing", lambda *a, **k: tiny_routing)
    torch.manual_seed(1)
    data = TierData(
        images=torch.rand(12, 3, 32, 32),
        labels=torch.randint(0, 4, (12,)),
        masks=torch.zeros(12, 32, 32, dtype=torch.bool),
        difficulty=("easy",) * 12,
        severity=torch.zeros(12),
        classes=tiny_routing.classes,
    )
    monkeypatch.setattr(system, "routing_split", lambda dataset: (data, data))
    return tiny_routing


def write_images(folder, count=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"img{i}.png"
        )
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_route_inputs_writes_decisions_and_charts(tmp_path, patched):
    images = write_images(tmp_path / "in")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["route", str(images), "--out", str(out), "--dataset", "shapes"]
    )
    assert result.exit_code == 3, result.output  # broken.png is reported, the rest routed
    assert "broken.png" in result.output
    with open(out / "decisions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3 and len(rows) == 4
    for row in ok:
        assert row["tier"] in ("TINY", "LIGHT", "MEDIUM", "HEAVY")
        assert int(row["flops"]) > 0
        shap_sum = sum(float(row[f"shap_{f}"]) for f in FEATURE_NAMES)
        assert np.isfinite(shap_sum)
    for i in range(3):
        for kind in ("shap", "radar"):
            path = out / f"img{i}_{kind}.png"
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Existing outputs are not replaced without --overwrite.
    again = CliRunner().invoke(main, ["route", str(images), "--out", str(out)])
    assert again.exit_code == 1 and "overwrite" in again.output


def test_route_eval_json_lists_policies(patched):
    result = CliRunner().invoke(main, ["route", "eval", "--json", "--no-latency"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    names = [p["name"] for p in report["policies"]]
    for expected in ("always-TINY", "always-HEAVY", "oracle", "router", "router+escalate"):
        assert expected in names
    assert any(n.startswith("cascade") for n in names)
    assert any(n.startswith("random") for n in names)
    for policy in report["policies"]:
        assert {"name", "accuracy", "mean_flops", "latency_ms_b1", "latency_ms_b32"} <= set(policy)
    heavy = next(p for p in report["policies"] if p["name"] == "always-HEAVY")
    assert heavy["relative_flops"] == pytest.approx(1.0)


def test_route_eval_table(patched):
    result = CliRunner().invoke(main, ["route", "eval", "--no-latency"])
    assert result.exit_code == 0, result.output
    assert "router+escalate" in result.output and "always-HEAVY" in result.output


def test_route_train_prints_operating_point(patched):
    result = CliRunner().invoke(main, ["route", "train", "--dataset", "shapes"])
    assert result.exit_code == 0, result.output
    assert "tau=0.5" in result.output


def test_route_needs_out(tmp_path):
    result = CliRunner().invoke(main, ["route", str(tmp_path)])
    assert result.exit_code != 0 and "--out" in result.output


def test_router_file_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    features, labels = rng.random((50, 7)), np.arange(50) % 3
    router = TierRouter(tau=0.7, n_tiers=3).fit(features, labels)
    path = save_router(router, tmp_path / "r.safetensors", features, labels, metadata={"a": 1})
    loaded, metadata = load_router(path)
    assert metadata == {"a": 1} and loaded.tau == 0.7
    np.testing.assert_allclose(loaded.predict_proba(features), router.predict_proba(features))
    with pytest.raises(FileExistsError):
        save_router(router, path, features, labels)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="router file"):
        read_router_file(path)
    with pytest.raises(FileNotFoundError):
        load_router(tmp_path / "missing.safetensors")


def test_router_cache_follows_the_tiers_versions(tmp_path, monkeypatch):
    import leanxai.zoo.tiers as tiers_module

    torch.manual_seed(0)
    models = {
        t: build_tier(t if t in ("TINY", "LIGHT") else "TINY", 4, 3).eval()
        for t in tiers_module.TIERS
    }
    meta = {"classes": ["circle", "square", "triangle", "cross"], "input_size": [3, 32, 32]}
    monkeypatch.setattr(
        tiers_module, "load_tiers", lambda *a, **k: {t: (m, meta) for t, m in models.items()}
    )
    data = TierData(
        images=torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(2)),
        labels=torch.arange(40) % 4,
        masks=torch.zeros(40, 32, 32, dtype=torch.bool),
        difficulty=("easy",) * 40,
        severity=torch.zeros(40),
        classes=tuple(meta["classes"]),
    )
    monkeypatch.setattr(system, "routing_split", lambda dataset: (data, data))
    trained = []
    real_collect = system.collect_outputs
    monkeypatch.setattr(
        system, "collect_outputs", lambda *a, **k: trained.append(1) or real_collect(*a, **k)
    )
    system.load_routing("shapes", tmp_path, progress=False)
    system.load_routing("shapes", tmp_path, progress=False)
    assert len(trained) == 1  # the second call reads the cache
    (first,) = tmp_path.glob("router_shapes-*.safetensors")
    versions = "".join(tiers_module.tier_version("shapes", t) for t in tiers_module.TIERS)
    assert first.name.endswith(f"-{versions}.safetensors")
    # A retrained tier (a new version) must not reuse a router fitted to the old one.
    monkeypatch.setattr(tiers_module, "tier_version", lambda dataset, tier: "v999")
    system.load_routing("shapes", tmp_path, progress=False)
    assert len(trained) == 2 and len(list(tmp_path.glob("router_shapes-*.safetensors"))) == 2


def test_a_mistyped_subcommand_is_a_usage_error_not_a_missing_option():
    result = CliRunner().invoke(main, ["route", "evl"])
    assert result.exit_code == 2
    assert "no such subcommand 'evl' (did you mean 'eval'?)" in result.output
    assert "--out" not in result.output
