"""Text explanations (issue 16): token thresholds, ERASER metrics, the HTML page, the CLI."""

from __future__ import annotations

import csv

import pytest
import torch

pytest.importorskip("transformers")

from click.testing import CliRunner

from leanxai import threshold
from leanxai.cli.main import main
from leanxai.core.errors import InputError
from leanxai.data.text import make_rationale_set
from leanxai.evaluate.text import aopc, iou_f1, spans, token_f1, top_words
from leanxai.explainers.text import Occlusion, keep_tokens
from leanxai.viz.text import TextItem, render_text_report, token_color
from leanxai.zoo.text import rationale_tokenizer, save_text_model
from test_text import VOCAB, tiny_bert


@pytest.fixture(scope="module")
def tokenizer():
    return rationale_tokenizer(VOCAB)


@pytest.fixture()
def explanation(tokenizer):
    model = tiny_bert(dtype=torch.float32)
    encoding = tokenizer(["the movie was good", "not bad and the plot"], padding=True,
                         return_tensors="pt")  # fmt: skip
    return model, Occlusion(model).explain(encoding)


def test_rationale_set_plants_cues():
    data = make_rationale_set(40, seed=3)
    assert len(data) == 40 and data.labels.tolist()[:4] == [0, 1, 0, 1]
    for words, flags, negated in zip(data.words, data.rationales, data.negated, strict=True):
        planted = [w for w, f in zip(words, flags, strict=True) if f]
        assert len(planted) == (2 if negated else 1)
        if negated:
            assert planted[0] == "not"
    assert make_rationale_set(40, seed=3).texts == data.texts
    assert bool(data.negated.any())


def test_top_k_threshold():
    values = torch.tensor([[0.1, 0.5, 0.5, 0.0, 0.9], [1.0, 2.0, 3.0, 4.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    kept = threshold.top_k(values, 2, mask=mask)
    assert kept.tolist() == [[False, True, False, False, True], [False, True, True, False, False]]
    assert threshold.top_k(values[0], 9).tolist() == [True, True, True, False, True]  # no zero
    with pytest.raises(InputError):
        threshold.top_k(values, 0)


def test_keep_tokens(explanation):
    _, result = explanation
    for spec in ("none", "topk:2", "top:50", "mass:0.8"):
        kept = keep_tokens(result, spec)
        assert kept.shape == result.scores.shape
        assert not (kept & ~result.scored).any()
        assert not (kept & (result.scores <= 0)).any()
    assert int(keep_tokens(result, "topk:1").sum(dim=1).max()) <= 1
    with pytest.raises(InputError, match="none, topk:K"):
        keep_tokens(result, "best:3")


def test_eraser_metrics():
    assert token_f1([True, False, False], [True, False, False]) == 1.0
    assert token_f1([False, True, False], [True, False, False]) == 0.0
    assert spans([True, True, False, True]) == [(0, 2), (3, 4)]
    assert iou_f1([False, True, True, False], [False, True, True, False]) == 1.0
    assert iou_f1([True, True, True, True], [False, True, False, False]) == 0.0  # IOU 1/4


def test_aopc_against_a_literal_computation(explanation):
    model, result = explanation
    comprehensiveness, sufficiency = aopc(model, result, bins=(0.5,))
    # Text 0: 4 scored tokens, the top 2 removed / alone kept (special tokens kept).
    order = torch.argsort(result.scores[0].masked_fill(~result.scored[0], -1e9), descending=True,
                          stable=True)  # fmt: skip
    top = set(order[:2].tolist())
    ids = result.input_ids[0][result.attention_mask[0] > 0].tolist()
    removed = [t for i, t in enumerate(ids) if i not in top]
    alone = [t for i, t in enumerate(ids) if i in top or not bool(result.scored[0, i])]
    with torch.no_grad():
        p = [model(input_ids=torch.tensor([x])).logits.softmax(1)[0, result.target[0]]
             for x in (ids, removed, alone)]  # fmt: skip
    assert abs(float(comprehensiveness[0]) - float(p[0] - p[1])) < 1e-5
    assert abs(float(sufficiency[0]) - float(p[0] - p[2])) < 1e-5


def test_top_words_need_word_scores(explanation):
    _, result = explanation
    assert sum(top_words(result, 0, 2)) == 2


def test_html_page():
    page = render_text_report(
        "t", "intro", [TextItem(["<b>", "good"], [-1.0, 2.0], [False, True], "cap")]
    )
    assert "&lt;b&gt;" in page and "<b>" not in page.split("<body>")[1]
    assert 'class="kept"' in page and "legend" in page and "http" not in page
    assert token_color(1.0, 2.0) == "rgba(214, 69, 34, 0.500)"
    assert token_color(-2.0, 2.0).startswith("rgba(37, 99, 214, 1.000")


@pytest.fixture()
def model_dir(tmp_path, tokenizer):
    folder = tmp_path / "model"
    save_text_model(tiny_bert(dtype=torch.float32), tokenizer, folder)
    return folder


def test_cli_text_file_skips_bad_lines_and_truncates(tmp_path, model_dir):
    reviews = tmp_path / "reviews.txt"
    long = " ".join(["good"] * 30)
    reviews.write_text(f"the movie was good\n\nnot bad\n{long}\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["explain", str(reviews), "--model", f"hf:{model_dir}", "--out", str(out)]
    )
    assert result.exit_code == 3, result.output
    assert f"skipped {reviews}:2: empty line" in result.stderr
    assert f"truncated {reviews}:4: truncated to the model's maximum of 24" in result.stderr
    rows = list(csv.DictReader((out / "tokens.csv").open(encoding="utf-8")))
    assert {r["source"] for r in rows} == {f"{reviews}:{n}" for n in (1, 3, 4)}
    assert rows[0]["token"] == "the" and rows[0]["method"] == "grad_rollout"
    page = (out / "tokens.html").read_text(encoding="utf-8")
    assert "not" in page and "legend" in page


def test_cli_text_option_and_method(tmp_path, model_dir):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["explain", "--text", "not bad", "--model", f"hf:{model_dir}", "--out", str(out),
         "--method", "rollout", "--threshold", "topk:1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "tokens.csv").open(encoding="utf-8")))
    assert [r["token"] for r in rows] == ["not", "bad"]
    assert sum(int(r["kept"]) for r in rows) == 1 and rows[0]["method"] == "rollout"


def test_cli_text_errors(tmp_path, model_dir, tokenizer):
    from transformers import BertConfig, BertModel

    runner = CliRunner()
    bare = tmp_path / "bare"
    BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=8)).save_pretrained(bare)  # fmt: skip
    tokenizer.save_pretrained(bare)
    result = runner.invoke(
        main, ["explain", "--text", "good", "--model", f"hf:{bare}", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "without a sequence-classification head" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(
        main, ["explain", "--text", "good", "--model", f"hf:{model_dir}", "--out",
               str(tmp_path / "o"), "--threshold", "top:0"],
    )  # fmt: skip
    assert result.exit_code == 1 and "--threshold for texts" in result.stderr
    result = runner.invoke(main, ["explain", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
