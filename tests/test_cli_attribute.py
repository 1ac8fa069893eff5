"""``leanxai attribute``: feature rankings of sequence classifiers, through CliRunner."""

from __future__ import annotations

import csv
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from leanxai.cli.main import main
from leanxai.data.timeseries import SeriesData
from leanxai.explainers.deepactif import RANKING_METHODS
from leanxai.zoo import recurrent

FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    from leanxai.zoo.recurrent import RecurrentClassifier


    def tiny_lstm():
        torch.manual_seed(0)
        return RecurrentClassifier(3, 2, hidden=4, kind="lstm")


    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 2)

        def forward(self, x, mask=None):
            return self.head(x.mean(dim=1))


    def no_recurrent():
        return Flat()


    class XOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])


    def x_only():
        torch.manual_seed(0)
        return XOnly()
    """
)


@pytest.fixture()
def factory(tmp_path, monkeypatch):
    folder = tmp_path / "factories"
    folder.mkdir()
    (folder / "attribute_factories.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(folder))
    return "py:attribute_factories"


@pytest.fixture()
def sequences(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 5, 3)).astype(np.float32)
    mask = np.ones((6, 5), dtype=bool)
    mask[0, 3:] = False  # a shorter first sequence, right-padded
    data[0, 3:] = 0
    np.save(tmp_path / "x.npy", data)
    np.save(tmp_path / "mask.npy", mask)
    return tmp_path / "x.npy", tmp_path / "mask.npy"


@pytest.fixture()
def builtin(monkeypatch):
    """A tiny stand-in for the zoo's data and model, so no download and no training."""
    torch.manual_seed(1)
    data = SeriesData(
        inputs=torch.randn(8, 4, 3),
        labels=torch.arange(8) % 2,
        mask=None,
        feature_names=("a", "b", "c"),
        classes=("x", "y"),
    )
    calls: list[tuple[str, str]] = []

    def load_model(name, kind="lstm", seed=0, **_):
        calls.append((name, kind))
        torch.manual_seed(0)
        return recurrent.RecurrentClassifier(3, 2, hidden=4, kind=kind).eval(), {}

    monkeypatch.setattr(recurrent, "load_recurrent_data", lambda name: (data, data))
    monkeypatch.setattr(recurrent, "load_recurrent_model", load_model)
    return calls


def read_importance(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ")


def test_builtin_data_uses_the_zoo_model_and_writes_the_ranking(builtin, tmp_path):
    out = tmp_path / "out"
    args = ["attribute", "--data", "synthetic", "--kind", "gru", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert builtin == [("synthetic", "gru")]
    rows = read_importance(out / "importance.csv")
    assert [r["feature"] for r in rows] == ["a", "b", "c"]
    assert sorted(int(r["rank"]) for r in rows) == [1, 2, 3]
    best = min(rows, key=lambda r: int(r["rank"]))
    assert float(best["importance"]) == max(float(r["importance"]) for r in rows)
    assert np.load(out / "per_sample.npy").shape == (8, 3)
    assert "ranked 3 features of 8 sequences in" in result.output
    assert f"1. {best['feature']}" in result.output

    again = CliRunner().invoke(main, args)
    assert one_error_line(again) and "--overwrite" in again.output
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("method", RANKING_METHODS)
def test_every_method_on_a_npy_file_with_a_mask(method, factory, sequences, tmp_path):
    data, mask = sequences
    out = tmp_path / method
    args = ["attribute", "--method", method, "--data", str(data), "--mask", str(mask)]
    args += ["--model", f"{factory}:tiny_lstm", "--n-steps", "4", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = read_importance(out / "importance.csv")
    assert [r["feature"] for r in rows] == ["feature_0", "feature_1", "feature_2"]
    per_sample = np.load(out / "per_sample.npy")
    assert per_sample.shape == (6, 3) and np.isfinite(per_sample).all()


def test_deepactif_options_are_passed_on(factory, sequences, tmp_path):
    data, _ = sequences
    args = ["attribute", "--data", str(data), "--model", f"{factory}:tiny_lstm"]
    args += ["--mapping", "input_term", "--aggregation", "inverse", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "deepactif (input_term/inverse)" in result.output


@pytest.mark.parametrize(
    "case",
    [
        "method",
        "rank",
        "nan",
        "no_recurrent",
        "no_model",
        "data_name",
        "mapping_for_ig",
        "bad_mask",
        "missing",
    ],
)
def test_bad_input_prints_one_line_and_fails(case, factory, sequences, tmp_path):
    data, _ = sequences
    out = ["--out", str(tmp_path / "out")]
    model = ["--model", f"{factory}:tiny_lstm"]
    if case == "method":
        args = ["--method", "gradcam", "--data", str(data), *model]
    elif case == "rank":
        np.save(tmp_path / "flat.npy", np.zeros((4, 3), dtype=np.float32))
        args = ["--data", str(tmp_path / "flat.npy"), *model]
    elif case == "nan":
        values = np.load(data)
        values[2, 1, 0] = np.nan
        np.save(tmp_path / "nan.npy", values)
        args = ["--data", str(tmp_path / "nan.npy"), *model]
    elif case == "no_recurrent":
        args = ["--data", str(data), "--model", f"{factory}:no_recurrent"]
    elif case == "no_model":
        args = ["--data", str(data)]
    elif case == "data_name":
        args = ["--data", "mnist"]
    elif case == "mapping_for_ig":
        args = ["--method", "ig", "--mapping", "gated", "--data", str(data), *model]
    elif case == "bad_mask":
        np.save(tmp_path / "m.npy", np.ones((6, 4), dtype=bool))
        args = ["--data", str(data), "--mask", str(tmp_path / "m.npy"), *model]
    else:
        args = ["--data", str(tmp_path / "absent.npy"), *model]
    result = CliRunner().invoke(main, ["attribute", *args, *out])
    assert one_error_line(result), result.output
    assert not (tmp_path / "out" / "importance.csv").exists()


# -- issue 24 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ig", "shap", "deeplift", "ablation"])
def test_mask_with_a_model_that_takes_no_mask_is_one_line(method, factory, sequences, tmp_path):
    data, mask = sequences
    args = ["attribute", "--method", method, "--data", str(data), "--mask", str(mask)]
    args += ["--model", f"{factory}:x_only", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert one_error_line(result), result.output
    assert "model(x, mask)" in result.output and "forward(x)" in result.output
    assert "positional arguments" not in result.output
    assert not (tmp_path / "out" / "importance.csv").exists()


def test_deepactif_takes_a_mask_for_a_model_that_takes_none(factory, sequences, tmp_path):
    data, mask = sequences
    args = ["attribute", "--data", str(data), "--mask", str(mask)]
    args += ["--model", f"{factory}:x_only", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def test_help_states_the_mask_contract_and_refuses_pt2():
    result = CliRunner().invoke(main, ["attribute", "--help"])
    text = " ".join(result.output.split())
    assert "model(x, mask)" in text
    assert "not an exported .pt2" in text
    assert "leanxai methods --family recurrent" in text


def test_pt2_model_is_refused_in_cli_terms(sequences, tmp_path):
    from leanxai.zoo.recurrent import RecurrentClassifier

    data, _ = sequences
    torch.manual_seed(0)
    model = RecurrentClassifier(3, 2, hidden=4, kind="lstm").eval()
    path = tmp_path / "lstm.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(6, 5, 3),)), str(path))
    for method in ("deepactif", "ig"):
        args = ["attribute", "--method", method, "--data", str(data), "--model", str(path)]
        result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
        assert one_error_line(result), result.output
        assert ".pt2" in result.output and "py:module:factory" in result.output
        assert "layer=" not in result.output


def test_methods_come_from_the_registry(factory, sequences, tmp_path):
    from leanxai.explainers import registry

    data, _ = sequences
    known = registry.names("recurrent", output="feature ranking")
    args = [
        "attribute",
        "--method",
        "gradcam",
        "--data",
        str(data),
        "--model",
        f"{factory}:tiny_lstm",
    ]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert one_error_line(result), result.output
    assert result.output.strip().endswith(", ".join(known))
    # any spelling the registry accepts
    args[2] = "Deep-ACTIF"
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "ok")]).exit_code == 0


def test_no_recurrent_layer_names_the_cli_option(factory, sequences, tmp_path):
    data, _ = sequences
    args = ["attribute", "--data", str(data), "--model", f"{factory}:no_recurrent"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert one_error_line(result), result.output
    assert "--layer" in result.output and "layer=" not in result.output
