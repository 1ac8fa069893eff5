"""Explanations of transformers text classifiers (BERT, DistilBERT, RoBERTa, MiniLM...), per token.

Five methods, registered for the ``text`` family, each returning a :class:`TextExplanation` with
one score per token ``(B, T)``, batched, for a ``*ForSequenceClassification`` model and token ids
(a tokenizer's ``BatchEncoding``, a dict with ``input_ids``, or a ``(B, T)`` integer tensor):

- :class:`GradientXInput`: ``sum_d grad_d * e_d`` at the word embeddings ``e`` (Shrikumar et al.
  2016; Denil et al. 2014), one backward pass; the graph starts at the embedding output (the
  lookup runs without autograd) and no parameter gradient is computed.
- :class:`IntegratedGradients` (Sundararajan et al., ICML 2017) on the word-embedding layer
  through Captum's ``LayerIntegratedGradients``: the baseline is the same sequence with every
  real token replaced by ``[PAD]`` (or ``[MASK]``), special tokens kept; position and token-type
  ids and the attention mask are passed unchanged and expanded with the steps, in chunks of
  ``internal_batch_size`` rows.
- :class:`AttentionRollout` (Abnar & Zuidema, ACL 2020) and :class:`GradientWeightedRollout`
  (Chefer, Gur & Wolf, ICCV 2021) from the first token's row (the token the classification
  heads of these encoders read), sharing :mod:`leanxai.explainers.attention` with the vision
  transformers; the model computes attention eagerly for the call and its implementation is
  restored afterwards.
- :class:`Occlusion`: leave one token out (replaced by the baseline token), batched, forward only:
  ``score_t = f(x) - f(x with token t replaced)``.

Scores are in logit units of the explained class (rollouts: a share of the first token's
relevance). Special tokens (``[CLS]``, ``[SEP]``) and padding get 0 and ``scored`` false unless
``include_special=True``; padding never gets a score. Word-level scores sum a word's pieces,
from a fast tokenizer's ``word_ids()``.

A text explained alone or inside a padded batch of longer texts gets the same scores (to
floating-point rounding): every method works row by row, padded keys get zero attention, and
nothing is normalised over the batch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError, LayerError
from leanxai.core.hooks import capture, eval_mode
from leanxai.core.models import logits_of
from leanxai.core.targets import Target, resolve_target
from leanxai.explainers import registry
from leanxai.explainers.attention import (
    DenseLayout,
    HeadFusion,
    attention_modules,
    attention_rollout,
    eager_attention,
    gradient_weighted_rollout,
    record_attention,
)
from leanxai.explainers.base import Explainer
from leanxai.explainers.registry import register

__all__ = [
    "FIRST_TOKEN_MODEL_TYPES",
    "AttentionRollout",
    "GradientWeightedRollout",
    "GradientXInput",
    "IntegratedGradients",
    "Occlusion",
    "TextExplanation",
    "TextInputs",
    "check_tokenizer",
    "keep_tokens",
    "max_tokens",
    "prepare_inputs",
    "tokenize",
    "word_text",
]

FIRST_TOKEN_MODEL_TYPES = frozenset(
    {
        "bert",
        "distilbert",
        "roberta",
        "xlm-roberta",
        "camembert",
        "albert",
        "electra",
        "mpnet",
        "deberta",
        "deberta-v2",
        "modernbert",
        "megatron-bert",
        "ernie",
        "nezha",
        "roformer",
        "mobilebert",
        "xlm",
    }
)
"""Encoders whose sequence-classification head reads the first token (``[CLS]`` / ``<s>``)."""

Baseline = Literal["pad", "mask"]
_PREFIXES = ("##", "Ġ", "▁")


# -- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextExplanation:
    """Token scores of a text classifier for a batch of texts.

    Attributes
    ----------
    scores
        ``(B, T)`` float32: each token's contribution to the explained class (logit units; for
        rollouts a share of the first token's relevance). 0 where ``scored`` is false.
    input_ids, attention_mask
        ``(B, T)`` int64, as given (``attention_mask`` all ones when none was given).
    scored
        ``(B, T)`` bool: the tokens that carry a score (real tokens, special tokens excluded
        unless ``include_special``).
    tokens
        Per text, the ``T`` token strings (``[PAD]`` included; ids as text when no tokenizer
        names them).
    target, logits
        ``(B,)`` int64 class explained, ``(B, K)`` the model's output.
    method
        The method's name.
    words, word_scores
        Per text, the words and their scores summed over word pieces (scored tokens only), from
        a fast tokenizer's ``word_ids()``; ``None`` when the inputs carry no word ids.
    steps
        Integration steps (Integrated Gradients), else ``None``.
    delta
        ``(B,)`` Integrated Gradients' completeness gap: ``f(x) - f(baseline)`` minus the sum of
        the attributions (Captum's convergence delta); ``None`` for other methods.
    family
        ``"text"``.
    """

    scores: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    scored: torch.Tensor
    tokens: list[list[str]]
    target: torch.Tensor
    logits: torch.Tensor
    method: str
    words: list[list[str]] | None = None
    word_scores: list[torch.Tensor] | None = None
    steps: int | None = None
    delta: torch.Tensor | None = None
    family: str = "text"

    @property
    def probabilities(self) -> torch.Tensor:
        """``(B,)`` softmax probability of the explained class."""
        probs = self.logits.float().softmax(dim=1)
        return probs.gather(1, self.target[:, None])[:, 0]

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` number of real (unpadded) tokens per text."""
        return self.attention_mask.sum(dim=1)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def keep_tokens(explanation: TextExplanation, spec: str) -> torch.Tensor:
    """The tokens a threshold keeps, ``(B, T)`` bool, from the positive part of the scores.

    ``spec``: ``none`` (every scored token with a positive score), ``topk:K`` (the ``K`` highest
    scored tokens, :func:`leanxai.threshold.top_k`), ``top:P`` (the top ``P`` percent of each
    text's scored tokens, rounded up: :func:`leanxai.threshold.temporal_windows` without gap
    closing) or ``mass:F`` (the fewest top tokens holding ``F`` of the positive total,
    :func:`leanxai.threshold.mass`). Only tokens that support the explained class (score > 0)
    are ever kept; special tokens and padding never are.
    """
    from leanxai import threshold

    if not isinstance(spec, str):
        raise InputTypeError(f"threshold must be a str, got {type(spec).__name__}")
    kind, _, value = spec.strip().lower().partition(":")
    positive = explanation.scores.clamp(min=0).masked_fill(~explanation.scored, 0.0)
    try:
        if kind == "none" and not value:
            return positive > 0
        if kind == "topk":
            return threshold.top_k(positive, int(value), mask=explanation.scored)
        if kind == "top":
            return threshold.temporal_windows(positive, float(value), 1, mask=explanation.scored)
        if kind == "mass":
            return threshold.mass(positive[:, None, :], float(value))[:, 0] > 0
    except ValueError as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"threshold {spec!r}: {error}") from None
    raise InputError(f"threshold for tokens must be none, topk:K, top:P or mass:F, got {spec!r}")


# -- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextInputs:
    """Token ids and what is known about them, checked against a model."""

    input_ids: torch.Tensor  # (B, T) int64
    attention_mask: torch.Tensor  # (B, T) int64
    token_type_ids: torch.Tensor | None  # (B, T) or None
    special: torch.Tensor  # (B, T) bool: special tokens (padding included)
    tokens: list[list[str]]
    word_ids: list[list[int | None]] | None

    def kwargs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the model call."""
        result = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            result["token_type_ids"] = self.token_type_ids
        return result


def _embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    getter = getattr(model, "get_input_embeddings", None)
    module = getter() if callable(getter) else None
    if not isinstance(module, nn.Embedding):
        raise InputError(
            f"{type(model).__name__} has no word-embedding layer (get_input_embeddings()); "
            "leanxai's text methods take transformers *ForSequenceClassification models"
        )
    for name, candidate in model.named_modules():
        if candidate is module:
            return name, module
    raise LayerError("the word-embedding layer is not a submodule of the model")


def _check_model(model: nn.Module) -> tuple[str, nn.Embedding]:
    name = type(model).__name__
    if not name.endswith("ForSequenceClassification"):
        raise InputError(
            f"{name} has no sequence-classification head; load the model with "
            "transformers.AutoModelForSequenceClassification (a *ForSequenceClassification class)"
        )
    return _embedding(model)


def max_tokens(model: nn.Module, tokenizer: Any = None) -> int | None:
    """The most tokens ``model`` takes per text (position embeddings), ``None`` when unknown.

    RoBERTa-style models offset positions by ``pad_token_id + 1``, so their 514 positions hold
    512 tokens. A tokenizer's ``model_max_length`` lowers it when smaller.
    """
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    limit = int(positions) if isinstance(positions, int) and positions > 0 else None
    if limit is not None and getattr(config, "model_type", None) in {
        "roberta",
        "xlm-roberta",
        "camembert",
    }:
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < 1_000_000:
        limit = declared if limit is None else min(limit, declared)
    return limit


def check_tokenizer(model: nn.Module, tokenizer: Any) -> None:
    """Refuse a tokenizer that was not made for ``model``, in one line.

    The tokenizer's vocabulary must fit in the model's embeddings, and their padding ids must
    agree when both declare one.
    """
    _, embedding = _embedding(model)
    try:
        size = len(tokenizer)
    except TypeError as error:
        raise InputTypeError(
            f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}"
        ) from error
    rows = embedding.num_embeddings
    if size > rows:
        raise InputError(
            f"the tokenizer has {size} tokens but the model's embeddings have {rows} rows: they "
            "do not belong together (load both from the same folder)"
        )
    ours = getattr(tokenizer, "pad_token_id", None)
    theirs = getattr(getattr(model, "config", None), "pad_token_id", None)
    if ours is not None and theirs is not None and int(ours) != int(theirs):
        raise InputError(
            f"the tokenizer pads with id {ours} but the model with id {theirs}: they do not "
            "belong together (load both from the same folder)"
        )


def tokenize(
    tokenizer: Any, texts: str | Sequence[str], *, max_length: int | None = None
) -> tuple[Any, list[int]]:
    """Tokenize ``texts`` into one padded batch, truncating (and saying so) past ``max_length``.

    Returns
    -------
    encoding, truncated
        The ``BatchEncoding`` (tensors) and the indices of the texts that were truncated; each
        truncation also raises a :class:`UserWarning` naming the text and its length.

    Raises
    ------
    InputError
        A text is empty (or only white space), or ``texts`` is empty.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise InputTypeError("texts must be a str or a sequence of str")
    if not texts:
        raise InputError("texts must hold at least one text, got none")
    for index, text in enumerate(texts):
        if not text.strip():
            raise InputError(f"text {index} is empty: there is nothing to explain")
    truncated: list[int] = []
    if max_length is not None:
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
        for index, length in enumerate(lengths):
            if length > max_length:
                truncated.append(index)
                warnings.warn(
                    f"text {index} has {length} tokens; truncated to the model's maximum of "
                    f"{max_length} (the rest is not explained)",
                    UserWarning,
                    stacklevel=2,
                )
    encoding = tokenizer(
        list(texts),
        padding=True,
        truncation=max_length is not None,
        max_length=max_length,
        return_tensors="pt",
    )
    return encoding, truncated


def word_text(pieces: Sequence[str]) -> str:
    """A word from its pieces: WordPiece's ``##`` and the BPE/SentencePiece space marks removed."""
    parts = []
    for index, piece in enumerate(pieces):
        for prefix in _PREFIXES:
            if piece.startswith(prefix) and (index > 0 or prefix != "##"):
                piece = piece[len(prefix) :]
                break
        parts.append(piece)
    return "".join(parts)


def _special_ids(model: nn.Module, tokenizer: Any) -> set[int]:
    if tokenizer is not None:
        return {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    config = getattr(model, "config", None)
    found = set()
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            found.add(value)
    return found


def prepare_inputs(model: nn.Module, inputs: Any, tokenizer: Any = None) -> TextInputs:
    """Check token ids against ``model`` and gather tokens, special tokens and word ids.

    ``inputs``: a ``BatchEncoding`` or mapping with ``input_ids`` (and optionally
    ``attention_mask``, ``token_type_ids``, ``special_tokens_mask``), a ``(B, T)`` or ``(T,)``
    integer tensor, or texts (``str`` or a list of ``str``) when ``tokenizer`` is given.

    Special tokens come from ``special_tokens_mask``, else a fast tokenizer's encodings, else the
    tokenizer's special ids, else the ids the model's config names (``pad_token_id``...).
    """
    _, embedding = _embedding(model)
    if isinstance(inputs, str) or (
        isinstance(inputs, Sequence) and inputs and all(isinstance(t, str) for t in inputs)
    ):
        if tokenizer is None:
            raise InputTypeError(
                "texts need a tokenizer: pass tokenizer= to the explainer, or token ids"
            )
        inputs, _ = tokenize(tokenizer, inputs, max_length=max_tokens(model, tokenizer))
    encodings = None
    special_given = None
    token_type_ids = None
    if isinstance(inputs, Mapping):
        if "input_ids" not in inputs:
            raise InputError(
                f"inputs must hold input_ids; got keys {', '.join(map(str, inputs)) or 'none'}"
            )
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        token_type_ids = inputs.get("token_type_ids")
        special_given = inputs.get("special_tokens_mask")
        encodings = getattr(inputs, "encodings", None)
    elif isinstance(inputs, torch.Tensor):
        ids, mask = inputs, None
    else:
        raise InputTypeError(
            "inputs must be a tokenizer's BatchEncoding, a dict with input_ids or a (B, T) "
            f"integer tensor, got {type(inputs).__name__}"
        )
    ids = _as_ids(ids, "input_ids")
    batch, length = ids.shape
    if length == 0 or batch == 0:
        raise InputError(f"input_ids must hold at least one token per text, got {tuple(ids.shape)}")
    rows = embedding.num_embeddings
    outside = (ids < 0) | (ids >= rows)
    if bool(outside.any()):
        b, t = (int(v) for v in outside.nonzero()[0])
        raise InputError(
            f"input_ids holds id {int(ids[b, t])} (text {b}, position {t}), outside the "
            f"model's vocabulary of {rows} tokens (a tokenizer for another model?)"
        )
    limit = max_tokens(model)
    if limit is not None and length > limit:
        raise InputError(
            f"inputs have {length} tokens per text but the model takes at most {limit}: "
            "truncate them (leanxai.explainers.text.tokenize does, and says so)"
        )
    device = embedding.weight.device
    ids = ids.to(device)
    if mask is None:
        mask = torch.ones_like(ids)
    else:
        mask = _as_ids(mask, "attention_mask").to(device)
        if mask.shape != ids.shape:
            raise InputError(
                f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}"
            )
        if bool(((mask != 0) & (mask != 1)).any()):
            raise InputError("attention_mask must hold only 0 and 1")
    if token_type_ids is not None:
        token_type_ids = _as_ids(token_type_ids, "token_type_ids").to(device)
    if special_given is not None:
        special = _as_ids(special_given, "special_tokens_mask").to(device).bool()
    elif encodings is not None and all(e is not None for e in encodings):
        special = torch.tensor(
            [list(e.special_tokens_mask) for e in encodings], dtype=torch.bool, device=device
        )
    else:
        marks = torch.tensor(sorted(_special_ids(model, tokenizer)), dtype=ids.dtype)
        special = torch.isin(ids, marks.to(device))
    special = special | (mask == 0)
    if encodings is not None and all(e is not None for e in encodings):
        tokens = [list(e.tokens) for e in encodings]
        word_ids: list[list[int | None]] | None = [list(e.word_ids) for e in encodings]
    else:
        word_ids = None
        if tokenizer is not None:
            tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
        else:
            tokens = [[str(i) for i in row] for row in ids.tolist()]
    return TextInputs(ids, mask.to(torch.int64), token_type_ids, special, tokens, word_ids)


def _as_ids(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise InputTypeError(f"{name} must be integer token ids") from error
    if value.dtype.is_floating_point or value.dtype.is_complex:
        raise InputTypeError(f"{name} must be integer token ids, got dtype {value.dtype}")
    if value.dim() == 1:
        value = value[None]
    if value.dim() != 2:
        raise InputError(f"{name} must have shape (B, T) or (T,), got {tuple(value.shape)}")
    return value.to(torch.int64)


def _words(
    prepared: TextInputs, scores: torch.Tensor, scored: torch.Tensor
) -> tuple[list[list[str]] | None, list[torch.Tensor] | None]:
    if prepared.word_ids is None:
        return None, None
    words_all, scores_all = [], []
    values = scores.detach().cpu()
    keep = scored.cpu()
    for b, ids in enumerate(prepared.word_ids):
        order: dict[int, int] = {}
        pieces: list[list[str]] = []
        totals: list[float] = []
        for t, word in enumerate(ids):
            if word is None or not bool(keep[b, t]):
                continue
            if word not in order:
                order[word] = len(pieces)
                pieces.append([])
                totals.append(0.0)
            index = order[word]
            pieces[index].append(prepared.tokens[b][t])
            totals[index] += float(values[b, t])
        words_all.append([word_text(p) for p in pieces])
        scores_all.append(torch.tensor(totals, dtype=torch.float32))
    return words_all, scores_all


# -- explainers ----------------------------------------------------------------------------------


class _TextExplainer(Explainer):
    """Shared mechanics: checks, inputs, targets, the model call and the result."""

    name = "text"

    def __init__(
        self,
        model: nn.Module,
        *,
        tokenizer: Any = None,
        include_special: bool = False,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(model)
        _check_model(model)
        if tokenizer is not None:
            check_tokenizer(model, tokenizer)
        self.tokenizer = tokenizer
        self.include_special = validate.instance("include_special", include_special, bool)
        self.eval_mode = validate.instance("eval_mode", eval_mode, bool)

    def _call(self, prepared: TextInputs, **replace: torch.Tensor) -> torch.Tensor:
        kwargs = prepared.kwargs()
        kwargs.update(replace)
        logits = logits_of(self.model(**kwargs))
        if logits.shape[0] != kwargs["input_ids"].shape[0]:
            raise InputError(
                f"the model returned {logits.shape[0]} rows of logits for "
                f"{kwargs['input_ids'].shape[0]} texts"
            )
        return logits

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        with eval_mode(self.model, self.eval_mode):
            yield

    def explain(self, inputs: Any, target: Target = None) -> TextExplanation:  # type: ignore[override]
        """Score every token of ``inputs`` for ``target`` (``None``: the predicted class)."""
        prepared = prepare_inputs(self.model, inputs, self.tokenizer)
        scored = ~prepared.special if not self.include_special else prepared.attention_mask > 0
        empty = (~scored).all(dim=1)
        if bool(empty.any()):
            index = int(empty.nonzero()[0, 0])
            raise InputError(
                f"text {index} holds no tokens besides special tokens and padding (an empty "
                "string?): there is nothing to explain"
            )
        with self._session():
            scores, logits, target_index, extra = self._scores(prepared, target, scored)
        scores = scores.detach().float().masked_fill(~scored, 0.0)
        words, word_scores = _words(prepared, scores, scored)
        return TextExplanation(
            scores=scores,
            input_ids=prepared.input_ids,
            attention_mask=prepared.attention_mask,
            scored=scored,
            tokens=prepared.tokens,
            target=target_index,
            logits=logits.detach(),
            method=self.name,
            words=words,
            word_scores=word_scores,
            **extra,
        )

    def _scores(
        self, prepared: TextInputs, target: Target, scored: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        raise NotImplementedError


@register(
    "gradient_x_input",
    families="text",
    output="token scores",
    backward="yes",
    aliases=("gxi", "input_x_gradient", "grad_x_input", "inputxgradient"),
    summary="gradient x input at the word embeddings, one backward pass from the embeddings",
)
class GradientXInput(_TextExplainer):
    """Gradient x input at the word embeddings: ``s_t = sum_d (d f_c / d e_td) e_td``.

    One forward and one backward pass (Shrikumar et al., 2016 "Not just a black box"; Denil et
    al., 2014). ``e`` is the word-embedding output, before position and token-type embeddings are
    added; the lookup runs without autograd and the graph starts at its output, so no parameter
    gradient is computed (``torch.autograd.grad`` on the embeddings only).
    """

    name = "gradient_x_input"

    def _scores(
        self, prepared: TextInputs, target: Target, scored: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        layer, _ = _embedding(self.model)
        with torch.no_grad(), capture(self.model, [layer], grad_from=layer) as record:
            logits = self._call(prepared)
        embeddings = record.outputs[layer]  # (B, T, D), a leaf the graph starts from
        index = resolve_target(target, logits.detach())
        score = logits.gather(1, index[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, embeddings)
        return (gradient * embeddings).sum(dim=-1).detach(), logits, index, {}


def _baseline_id(model: nn.Module, tokenizer: Any, baseline: Baseline) -> int:
    if baseline == "mask":
        value = getattr(tokenizer, "mask_token_id", None)
        if value is None:
            raise InputError(
                "baseline='mask' needs a tokenizer with a mask token: pass tokenizer= "
                "(or use baseline='pad')"
            )
        return int(value)
    value = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    if value is None:
        value = getattr(getattr(model, "config", None), "pad_token_id", None)
    if value is None:
        raise InputError("the model declares no pad_token_id: pass tokenizer= or baseline='mask'")
    return int(value)


@register(
    "ig",
    families="text",
    output="token scores",
    backward="many",
    aliases=("integrated_gradients", "integratedgradients"),
    summary="Integrated Gradients on the word embeddings (Captum), [PAD] baseline",
)
class IntegratedGradients(_TextExplainer):
    """Integrated Gradients (Sundararajan et al., 2017) at the word-embedding layer.

    Captum's ``LayerIntegratedGradients`` on ``model.get_input_embeddings()``, summed over the
    embedding dimension. The baseline sequence replaces every scored token by ``[PAD]``
    (``baseline="pad"``) or ``[MASK]`` and keeps special tokens and padding; position and
    token-type ids are left to the model and the attention mask is the input's, expanded with
    the steps by Captum. ``internal_batch_size`` rows run per forward (memory stays bounded for
    large batches). Completeness: the attributions sum to ``f_c(x) - f_c(baseline)`` (logits) to
    within ``delta``.

    Parameters
    ----------
    steps
        Integration steps (Gauss-Legendre nodes, Captum's default).
    baseline
        ``"pad"`` or ``"mask"``.
    internal_batch_size
        Rows per forward pass (at least one text's worth of steps is not required).
    """

    name = "ig"

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 64,
        baseline: Baseline = "pad",
        internal_batch_size: int = 64,
        tokenizer: Any = None,
        include_special: bool = False,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(
            model, tokenizer=tokenizer, include_special=include_special, eval_mode=eval_mode
        )
        self.steps = validate.positive_int("steps", steps)
        self.baseline = validate.choice("baseline", baseline, ("pad", "mask"))
        self.internal_batch_size = validate.positive_int("internal_batch_size", internal_batch_size)
        self._baseline_id = _baseline_id(model, tokenizer, self.baseline)  # type: ignore[arg-type]

    def _scores(
        self, prepared: TextInputs, target: Target, scored: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        try:
            from captum.attr import LayerIntegratedGradients
        except ImportError as error:  # pragma: no cover - a declared extra
            raise InputError(
                "Integrated Gradients needs captum: pip install leanxai[text]"
            ) from error
        _, embedding = _embedding(self.model)
        with torch.no_grad():
            logits = self._call(prepared)
        index = resolve_target(target, logits)
        # Special tokens and padding keep their ids: only scored tokens move along the path.
        baseline = torch.where(
            ~prepared.special, torch.full_like(prepared.input_ids, self._baseline_id),
            prepared.input_ids,
        )  # fmt: skip
        types = prepared.token_type_ids

        def forward(ids: torch.Tensor, mask: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
            kwargs = {"input_ids": ids, "attention_mask": mask}
            if rest:
                kwargs["token_type_ids"] = rest[0]
            return logits_of(self.model(**kwargs))

        extra = (prepared.attention_mask,) if types is None else (prepared.attention_mask, types)
        method = LayerIntegratedGradients(forward, embedding)
        with torch.enable_grad():
            attributions, delta = method.attribute(
                inputs=prepared.input_ids,
                baselines=baseline,
                target=index,
                additional_forward_args=extra,
                n_steps=self.steps,
                internal_batch_size=max(self.internal_batch_size, prepared.input_ids.shape[0]),
                return_convergence_delta=True,
            )
        scores = attributions.sum(dim=-1).detach()  # (B, T)
        return scores, logits, index, {"steps": self.steps, "delta": delta.detach().float()}


class _RolloutBase(_TextExplainer):
    def _check_first_token(self) -> None:
        model_type = getattr(getattr(self.model, "config", None), "model_type", None)
        if model_type not in FIRST_TOKEN_MODEL_TYPES:
            raise InputError(
                f"rollout starts from the first token, which the heads of "
                f"{', '.join(sorted(FIRST_TOKEN_MODEL_TYPES))} read; model_type {model_type!r} "
                "pools elsewhere: use gradient_x_input, ig or occlusion"
            )

    def _attention_names(self) -> list[str]:
        names = attention_modules(self.model)
        if not names:
            raise LayerError(f"{type(self.model).__name__} has no attention module to read")
        return names

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        self._check_first_token()
        with eval_mode(self.model, self.eval_mode), eager_attention(self.model):
            yield

    @staticmethod
    def _start(prepared: TextInputs, dtype: torch.dtype) -> torch.Tensor:
        start = torch.zeros(prepared.input_ids.shape, dtype=dtype, device=prepared.input_ids.device)
        start[:, 0] = 1.0  # (B, T): the first token's row
        return start


@register(
    "rollout",
    families="text",
    output="token scores",
    backward="no",
    aliases=("attention_rollout",),
    summary="attention rollout from the [CLS] token (Abnar & Zuidema 2020), forward only",
)
class AttentionRollout(_RolloutBase):
    """Attention rollout (Abnar & Zuidema, 2020) from the first token's row.

    ``start @ normalise_rows(fuse(A_L) + I) @ ... @ normalise_rows(fuse(A_1) + I)`` with
    ``start`` the first token's one-hot row, heads fused by ``head_fusion``. Forward only. The
    first token's own share (the identity path) is large; it is a special token and excluded by
    default. Unlike the widely used rollout code there is no ``discard_ratio``: discarding the
    lowest entries of a padded matrix would make a text's scores depend on its batch.
    """

    name = "rollout"

    def __init__(
        self,
        model: nn.Module,
        *,
        head_fusion: HeadFusion = "mean",
        tokenizer: Any = None,
        include_special: bool = False,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(
            model, tokenizer=tokenizer, include_special=include_special, eval_mode=eval_mode
        )
        self.head_fusion = validate.choice("head_fusion", head_fusion, ("mean", "max", "min"))

    def _scores(
        self, prepared: TextInputs, target: Target, scored: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        names = self._attention_names()
        with torch.no_grad(), record_attention(self.model, names) as calls:
            logits = self._call(prepared)
        index = resolve_target(target, logits)
        tokens = prepared.input_ids.shape[1]
        blocks = [(call.weights, DenseLayout(tokens)) for call in calls]
        scores = attention_rollout(
            blocks,
            self._start(prepared, calls[0].weights.dtype),
            head_fusion=self.head_fusion,  # type: ignore[arg-type]
        )
        return scores, logits, index, {}


@register(
    "grad_rollout",
    families="text",
    output="token scores",
    backward="yes",
    aliases=("gradient_weighted_rollout", "chefer", "generic_attention"),
    summary="gradient-weighted attention rollout (Chefer et al. 2021), one backward pass",
)
class GradientWeightedRollout(_RolloutBase):
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf, 2021) from the first token.

    ``start @ (I + A_bar_L) @ ... @ (I + A_bar_1)`` with ``A_bar = mean_heads((dA * A)^+)``, the
    gradients of the explained logit with respect to each block's attention probabilities. One
    backward pass, with the graph started at the word-embedding output.
    """

    name = "grad_rollout"

    def _scores(
        self, prepared: TextInputs, target: Target, scored: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        names = self._attention_names()
        layer, _ = _embedding(self.model)
        with (
            torch.no_grad(),
            capture(self.model, [layer], grad_from=layer),
            record_attention(self.model, names) as calls,
        ):
            logits = self._call(prepared)
        index = resolve_target(target, logits.detach())
        score = logits.gather(1, index[:, None]).sum()
        gradients = torch.autograd.grad(score, [call.weights for call in calls])
        tokens = prepared.input_ids.shape[1]
        blocks = [
            (call.weights.detach(), gradient, DenseLayout(tokens))
            for call, gradient in zip(calls, gradients, strict=True)
        ]
        start = self._start(prepared, calls[0].weights.dtype)
        return gradient_weighted_rollout(blocks, start), logits, index, {}


@register(
    "occlusion",
    families="text",
    output="token scores",
    backward="no",
    aliases=("leave_one_out", "loo"),
    summary="leave-one-token-out occlusion ([PAD] in its place), batched, forward only",
)
class Occlusion(_TextExplainer):
    """Leave one token out: ``s_t = f_c(x) - f_c(x with token t replaced by the baseline token)``.

    Every scored token of every text is replaced in turn (by ``[PAD]``, or ``[MASK]`` with
    ``baseline="mask"``; the attention mask unchanged), and the variants run ``batch_size`` at a
    time without autograd: one forward per scored token. Li, Monroe & Jurafsky, 2016
    ("Understanding neural networks through representation erasure").
    """

    name = "occlusion"

    def __init__(
        self,
        model: nn.Module,
        *,
        baseline: Baseline = "pad",
        batch_size: int = 64,
        tokenizer: Any = None,
        include_special: bool = False,
        eval_mode: bool = True,
    ) -> None:
        super().__init__(
            model, tokenizer=tokenizer, include_special=include_special, eval_mode=eval_mode
        )
        self.baseline = validate.choice("baseline", baseline, ("pad", "mask"))
        self.batch_size = validate.positive_int("batch_size", batch_size)
        self._baseline_id = _baseline_id(model, tokenizer, self.baseline)  # type: ignore[arg-type]

    def _scores(
        self, prepared: TextInputs, target: Target, scored: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        with torch.no_grad():
            logits = self._call(prepared)
            index = resolve_target(target, logits)
            reference = logits.gather(1, index[:, None])[:, 0]  # (B,)
            rows, columns = scored.nonzero(as_tuple=True)  # one variant per scored token
            scores = torch.zeros(scored.shape, dtype=logits.dtype, device=logits.device)
            for begin in range(0, rows.numel(), self.batch_size):
                row = rows[begin : begin + self.batch_size]
                column = columns[begin : begin + self.batch_size]
                ids = prepared.input_ids[row].clone()
                ids[torch.arange(row.numel(), device=ids.device), column] = self._baseline_id
                replace = {
                    "input_ids": ids,
                    "attention_mask": prepared.attention_mask[row],
                }
                if prepared.token_type_ids is not None:
                    replace["token_type_ids"] = prepared.token_type_ids[row]
                varied = self._call(prepared, **replace)
                scores[row, column] = reference[row] - varied.gather(1, index[row, None])[:, 0]
        return scores, logits, index, {}


registry.set_default("text", "grad_rollout")
