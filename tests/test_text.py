"""Text explainers (issue 16): literal float64 references, padding invariance, model state,
bad inputs, family detection, word scores, thresholds, metrics, HTML and the CLI."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import leanxai
from leanxai.core.errors import InputError, InputTypeError, LeanXAIError
from leanxai.core.families import detect
from leanxai.explainers import registry
from leanxai.explainers.text import (
    AttentionRollout,
    GradientWeightedRollout,
    GradientXInput,
    IntegratedGradients,
    Occlusion,
    TextExplanation,
    check_tokenizer,
    tokenize,
    word_text,
)
from leanxai.zoo.text import rationale_tokenizer

METHODS = ("gradient_x_input", "ig", "rollout", "grad_rollout", "occlusion")
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "not", "good", "bad", "the", "movie", "was",
    "plot", "and", "it", "very", "great", "awful", "##ness", "##s", "a",
]  # fmt: skip


def tiny_bert(seed: int = 0, layers: int = 2, dtype: torch.dtype = torch.float64):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=24,
        num_labels=3,
        pad_token_id=0,
        initializer_range=0.5,  # large weights: attention far from uniform, scores far from 0
    )
    return BertForSequenceClassification(config).eval().to(dtype)


@pytest.fixture(scope="module")
def tokenizer():
    return rationale_tokenizer(VOCAB)


@pytest.fixture()
def model():
    return tiny_bert()


# -- literal float64 references ------------------------------------------------------------------


def literal_bert(model, ids, mask):
    """BERT for sequence classification written out from the paper's equations, float64.

    Returns (logits, word embeddings (the leaf), attention probabilities per layer).
    """
    bert = model.bert
    emb = bert.embeddings
    batch, length = ids.shape
    words = emb.word_embeddings.weight[ids].detach().clone().requires_grad_(True)  # (B, T, D)
    positions = emb.position_embeddings.weight[:length][None]
    types = emb.token_type_embeddings.weight[0][None, None]
    eps = model.config.layer_norm_eps
    x = F.layer_norm(
        words + positions + types, (words.shape[-1],), emb.LayerNorm.weight, emb.LayerNorm.bias, eps
    )
    heads = model.config.num_attention_heads
    d = x.shape[-1] // heads
    probabilities = []
    for layer in bert.encoder.layer:
        attention = layer.attention
        s = attention.self

        def split(t):
            return t.view(batch, length, heads, d).transpose(1, 2)  # (B, h, T, d)

        q = split(x @ s.query.weight.T + s.query.bias)
        k = split(x @ s.key.weight.T + s.key.bias)
        v = split(x @ s.value.weight.T + s.value.bias)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        p = scores.softmax(dim=-1)
        probabilities.append(p)
        context = (p @ v).transpose(1, 2).reshape(batch, length, heads * d)
        o = attention.output
        x = F.layer_norm(
            x + context @ o.dense.weight.T + o.dense.bias,
            (x.shape[-1],), o.LayerNorm.weight, o.LayerNorm.bias, eps,
        )  # fmt: skip
        hidden = F.gelu(x @ layer.intermediate.dense.weight.T + layer.intermediate.dense.bias)
        out = layer.output
        x = F.layer_norm(
            x + hidden @ out.dense.weight.T + out.dense.bias,
            (x.shape[-1],), out.LayerNorm.weight, out.LayerNorm.bias, eps,
        )  # fmt: skip
    pooled = torch.tanh(x[:, 0] @ bert.pooler.dense.weight.T + bert.pooler.dense.bias)
    logits = pooled @ model.classifier.weight.T + model.classifier.bias
    return logits, words, probabilities


def _ids(batch=2, length=9, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(VOCAB), (batch, length), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    return ids


def test_literal_bert_matches_the_model(model):
    ids = _ids()
    mask = torch.ones_like(ids)
    logits, _, _ = literal_bert(model, ids, mask)
    expected = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-10)


def test_gradient_x_input_matches_literal_reference(model):
    ids = _ids()
    mask = torch.ones_like(ids)
    logits, words, _ = literal_bert(model, ids, mask)
    target = logits.argmax(1)
    (gradient,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), words)
    reference = (gradient * words).sum(-1)
    result = GradientXInput(model, include_special=True).explain(ids)
    assert result.scores.shape == ids.shape
    torch.testing.assert_close(result.scores.double(), reference.detach(), rtol=0, atol=1e-5)
    assert torch.equal(result.target, target)


def _rollout_reference(probabilities, residual=True):
    result = None
    for p in probabilities:
        a = p.mean(dim=1)
        if residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result  # A_L ... A_1
    return result[:, 0]


def test_rollout_matches_literal_reference(model):
    ids = _ids()
    mask = torch.ones_like(ids)
    _, _, probabilities = literal_bert(model, ids, mask)
    reference = _rollout_reference([p.detach() for p in probabilities])
    result = AttentionRollout(model, include_special=True).explain(ids)
    torch.testing.assert_close(result.scores.double(), reference, rtol=0, atol=1e-5)
    assert float(result.scores.std()) > 1e-3  # not a uniform map


def test_gradient_weighted_rollout_matches_literal_reference(model):
    ids = _ids()
    mask = torch.ones_like(ids)
    logits, _, probabilities = literal_bert(model, ids, mask)
    target = logits.argmax(1)
    gradients = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), probabilities)
    length = ids.shape[1]
    relevance = torch.eye(length, dtype=torch.float64).repeat(ids.shape[0], 1, 1)
    for p, g in zip(probabilities, gradients, strict=True):  # Chefer et al.: R += A_bar @ R
        a_bar = (g * p).clamp(min=0).mean(dim=1)
        relevance = relevance + a_bar @ relevance
    reference = relevance[:, 0]
    result = GradientWeightedRollout(model, include_special=True).explain(ids)
    torch.testing.assert_close(result.scores.double(), reference.detach(), rtol=0, atol=1e-5)


def test_integrated_gradients_completeness(model):
    pytest.importorskip("captum")
    ids = _ids(batch=3)
    mask = torch.ones_like(ids)
    result = IntegratedGradients(model, steps=64).explain(
        {"input_ids": ids, "attention_mask": mask}
    )
    baseline = torch.where(result.scored, torch.zeros_like(ids), ids)  # [PAD] = 0, specials kept
    with torch.no_grad():
        f_x = model(input_ids=ids, attention_mask=mask).logits
        f_b = model(input_ids=baseline, attention_mask=mask).logits
    difference = (f_x - f_b).gather(1, result.target[:, None])[:, 0].float()
    total = result.scores.sum(dim=1)
    assert result.steps == 64
    assert torch.all((total - difference).abs() <= 0.01 * difference.abs()), (total, difference)
    assert float(difference.abs().min()) > 0.05  # a real test: the path moves the logit


def test_occlusion_matches_literal_leave_one_out(model):
    ids = _ids(batch=1)
    result = Occlusion(model).explain(ids)
    with torch.no_grad():
        base = model(input_ids=ids).logits[0, result.target[0]]
        for t in range(1, ids.shape[1] - 1):
            varied = ids.clone()
            varied[0, t] = 0
            expected = base - model(input_ids=varied).logits[0, result.target[0]]
            assert abs(float(result.scores[0, t]) - float(expected)) < 1e-6


# -- padding invariance --------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_padding_invariance(method, dtype, tokenizer):
    model = tiny_bert(dtype=dtype)
    short = "the movie was good"
    batch = ["the plot and the movie was very awful and it was bad", short, "not great plots"]
    options = {"steps": 16} if method == "ig" else {}
    explainer = registry.create(method, model, "text", options={**options, "tokenizer": tokenizer})
    alone = explainer.explain(tokenizer([short], return_tensors="pt"))
    together = explainer.explain(tokenizer(batch, padding=True, return_tensors="pt"))
    length = alone.scores.shape[1]
    assert together.scores.shape[1] > length
    torch.testing.assert_close(together.scores[1, :length], alone.scores[0], rtol=0, atol=1e-5)
    assert torch.all(together.scores[1, length:] == 0)
    assert not together.scored[1, length:].any()


# -- model state ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_model_unchanged_after_success_and_error(method, state_guard):
    model = tiny_bert()
    model.train()  # a training flag to restore
    implementation = model.config._attn_implementation
    check = state_guard(model)
    explainer = registry.create(
        method, model, "text", options={"steps": 8} if method == "ig" else {}
    )
    explainer.explain(_ids())
    check()
    assert model.config._attn_implementation == implementation
    with pytest.raises(LeanXAIError):
        explainer.explain(_ids(), target=7)  # 3 classes
    check()
    assert model.config._attn_implementation == implementation
    assert model.training


def test_attention_implementation_restored_when_the_model_raises(state_guard):
    model = tiny_bert()
    model.config._attn_implementation = "sdpa"
    check = state_guard(model)
    layer = model.bert.encoder.layer[1].output.dense
    handle = layer.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            AttentionRollout(model).explain(_ids())
    finally:
        handle.remove()
    check()
    assert model.config._attn_implementation == "sdpa"


# -- the family, leanxai.explain, words ---------------------------------------------------------


def test_explain_detects_text_from_tokenizer_output(tokenizer):
    model = tiny_bert(dtype=torch.float32)
    encoding = tokenizer(["the movie was good", "not bad"], padding=True, return_tensors="pt")
    assert detect(model, encoding) == "text"
    assert detect(model, encoding["input_ids"]) == "text"
    result = leanxai.explain(model, encoding)
    assert isinstance(result, TextExplanation)
    assert result.family == "text" and result.method == registry.default_method("text")
    assert result.tokens[0][:2] == ["[CLS]", "the"]
    assert not result.scored[:, 0].any()  # [CLS] excluded
    assert result.words == [["the", "movie", "was", "good"], ["not", "bad"]]
    assert registry.get("ig", "text").factory is IntegratedGradients
    assert registry.get("ig", "cnn").factory is not IntegratedGradients
    assert set(METHODS) <= set(registry.names("text"))


def test_word_scores_sum_pieces(tokenizer):
    model = tiny_bert(dtype=torch.float32)
    encoding = tokenizer(["the goodness was awful"], return_tensors="pt")
    result = Occlusion(model).explain(encoding)
    pieces = result.tokens[0]
    assert pieces[2:4] == ["good", "##ness"]
    assert result.words[0] == ["the", "goodness", "was", "awful"]
    expected = float(result.scores[0, 2] + result.scores[0, 3])
    assert abs(float(result.word_scores[0][1]) - expected) < 1e-6
    assert word_text(["Ġgood", "ness"]) == "goodness"


def test_texts_with_a_tokenizer(tokenizer):
    model = tiny_bert(dtype=torch.float32)
    result = GradientXInput(model, tokenizer=tokenizer).explain(["the movie was good"])
    assert result.tokens[0] == ["[CLS]", "the", "movie", "was", "good", "[SEP]"]
    assert int(result.scored.sum()) == 4


# -- bad input -----------------------------------------------------------------------------------


def test_empty_text_is_one_line(tokenizer):
    model = tiny_bert(dtype=torch.float32)
    with pytest.raises(InputError, match="text 1 is empty"):
        tokenize(tokenizer, ["good", "  "])
    encoding = tokenizer(["good", ""], padding=True, return_tensors="pt")
    with pytest.raises(InputError, match="text 1 holds no tokens"):
        GradientXInput(model).explain(encoding)


def test_long_text_is_truncated_and_said(tokenizer):
    text = " ".join(["good"] * 40)
    with pytest.warns(UserWarning, match="text 0 has 42 tokens; truncated to the model's maximum"):
        encoding, truncated = tokenize(tokenizer, [text], max_length=24)
    assert truncated == [0] and encoding["input_ids"].shape[1] == 24
    model = tiny_bert(dtype=torch.float32)
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    with pytest.raises(InputError, match="42 tokens per text but the model takes at most 24"):
        GradientXInput(model).explain(ids)
    with warnings.catch_warnings(record=True) as caught:  # texts: truncated, with the warning
        warnings.simplefilter("always")
        result = GradientXInput(model, tokenizer=tokenizer).explain([text])
    assert result.scores.shape[1] == 24 and any("truncated" in str(w.message) for w in caught)


def test_model_without_classification_head():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=8))  # fmt: skip
    with pytest.raises(InputError, match="has no sequence-classification head"):
        GradientXInput(model)
    with pytest.raises(InputError, match="cannot tell which kind"):
        leanxai.explain(model, torch.ones(1, 4, dtype=torch.long))


def test_ids_outside_vocabulary():
    ids = _ids()
    ids[1, 3] = 500
    with pytest.raises(
        InputError, match=r"id 500 \(text 1, position 3\), outside the model's vocab"
    ):
        GradientXInput(tiny_bert()).explain(ids)
    with pytest.raises(InputTypeError, match="integer token ids"):
        GradientXInput(tiny_bert()).explain(ids.float())


def test_tokenizer_that_does_not_match(tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    small = BertForSequenceClassification(
        BertConfig(
            vocab_size=10,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
        )
    )
    with pytest.raises(
        InputError, match="tokenizer has 20 tokens but the model's embeddings have 10"
    ):
        check_tokenizer(small, tokenizer)
    model = tiny_bert()
    model.config.pad_token_id = 1
    with pytest.raises(InputError, match="pads with id 0 but the model with id 1"):
        GradientXInput(model, tokenizer=tokenizer)


def test_bad_options():
    model = tiny_bert()
    with pytest.raises(InputError, match="steps"):
        IntegratedGradients(model, steps=0)
    with pytest.raises(InputError, match="baseline"):
        Occlusion(model, baseline="zeros")
    with pytest.raises(InputError, match="baseline='mask' needs a tokenizer"):
        Occlusion(model, baseline="mask")
    with pytest.raises(InputTypeError, match="BatchEncoding"):
        GradientXInput(model).explain(3.0)
