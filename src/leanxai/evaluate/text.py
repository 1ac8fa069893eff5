"""Metrics of token explanations: against true rationales, and against the model's behaviour.

Against ground truth (ERASER, DeYoung et al., ACL 2020), per text, on words:

- :func:`token_f1`: the top-``k`` words by score against the true rationale words, ``k`` the
  number of true words of that text (so precision = recall = F1 here), macro-averaged by the
  caller;
- :func:`iou_f1`: spans (runs of consecutive kept words) matched to true spans when their IOU
  is above 0.5; F1 of the matched spans.

Against the model (ERASER's faithfulness, as AOPC over bins of ``1, 5, 10, 20, 50 %`` of the
scored tokens), by deleting tokens (special tokens kept, the rest closed up, as ERASER does):

- :func:`aopc`: comprehensiveness ``p(y|x) - p(y|x without the top tokens)`` (higher is better)
  and sufficiency ``p(y|x) - p(y|only the top tokens)`` (lower is better), per text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError
from leanxai.core.hooks import eval_mode
from leanxai.core.models import logits_of
from leanxai.explainers.text import TextExplanation

__all__ = ["AOPC_BINS", "aopc", "iou_f1", "spans", "token_f1", "top_words"]

AOPC_BINS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
"""ERASER's bins: the share of the scored tokens removed (or kept)."""


def top_words(explanation: TextExplanation, index: int, k: int) -> list[bool]:
    """Whether each word of text ``index`` is among its ``k`` highest-scoring words (ties: the
    earlier word)."""
    if explanation.word_scores is None:
        raise InputError("the explanation has no word scores (inputs without word ids)")
    scores = explanation.word_scores[index]
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    kept = [False] * scores.numel()
    for position in order.tolist():
        kept[position] = True
    return kept


def token_f1(kept: Sequence[bool], truth: Sequence[bool]) -> float:
    """F1 of the kept words against the true rationale words (0 when either is empty)."""
    if len(kept) != len(truth):
        raise InputError(f"kept has {len(kept)} words, truth {len(truth)}")
    hits = sum(bool(a) and bool(b) for a, b in zip(kept, truth, strict=True))
    predicted, actual = sum(map(bool, kept)), sum(map(bool, truth))
    if hits == 0 or predicted == 0 or actual == 0:
        return 0.0
    precision, recall = hits / predicted, hits / actual
    return 2 * precision * recall / (precision + recall)


def spans(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """Runs of true flags as ``(start, end)`` with ``end`` exclusive."""
    found, start = [], None
    for position, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = position
        elif not flag and start is not None:
            found.append((start, position))
            start = None
    return found


def iou_f1(kept: Sequence[bool], truth: Sequence[bool], threshold: float = 0.5) -> float:
    """ERASER's IOU F1: a kept span matches a true span when their IOU exceeds ``threshold``."""
    threshold = validate.fraction("threshold", threshold)
    predicted, actual = spans(kept), spans(truth)
    if not predicted or not actual:
        return 0.0

    def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
        overlap = max(0, min(a[1], b[1]) - max(a[0], b[0]))
        return overlap / (max(a[1], b[1]) - min(a[0], b[0]))

    matched_predicted = sum(any(iou(p, t) > threshold for t in actual) for p in predicted)
    matched_actual = sum(any(iou(p, t) > threshold for p in predicted) for t in actual)
    precision, recall = matched_predicted / len(predicted), matched_actual / len(actual)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _compact(
    ids: torch.Tensor, keep: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``ids`` with only the ``keep`` positions, closed up to the left and padded."""
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept first
    compacted = ids.gather(1, order)
    mask = keep.gather(1, order)
    compacted = compacted.masked_fill(~mask, pad_id)
    width = max(1, int(mask.sum(dim=1).max()))
    return compacted[:, :width], mask[:, :width].to(torch.int64)


def aopc(
    model: nn.Module,
    explanation: TextExplanation,
    *,
    bins: Sequence[float] = AOPC_BINS,
    pad_id: int = 0,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ERASER's AOPC comprehensiveness and sufficiency per text, ``((B,), (B,))`` float64.

    For each bin ``b``, the ``max(1, round(b * n))`` highest-scoring of the ``n`` scored tokens
    (ties: the earlier token) are deleted (comprehensiveness) or alone kept (sufficiency), with
    special tokens kept in both; the model's probability of the explained class is compared with
    the full text's; each is averaged over the bins.
    """
    if not bins or not all(0 < float(b) <= 1 for b in bins):
        raise InputError(f"bins must be shares in (0, 1], got {list(bins)!r}")
    batch_size = validate.positive_int("batch_size", batch_size)
    device = next(model.parameters()).device
    ids = explanation.input_ids.to(device)
    real = explanation.attention_mask.to(device) > 0
    scored = explanation.scored.to(device)
    special = real & ~scored
    scores = explanation.scores.to(device).double().masked_fill(~scored, -math.inf)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(ids.shape[1], device=device).expand_as(order)
    )
    counts = scored.sum(dim=1)  # (B,)
    variants = []
    for share in bins:
        k = torch.clamp(torch.round(counts.double() * float(share)), min=1).to(torch.int64)
        top = (rank < k[:, None]) & scored
        for keep in (real & ~top, special | top):  # comprehensiveness, sufficiency
            variants.append(keep)
    target = explanation.target.to(device)
    with eval_mode(model), torch.no_grad():
        full = logits_of(model(input_ids=ids, attention_mask=real.to(torch.int64)))
        reference = full.softmax(dim=1).gather(1, target[:, None])[:, 0].double()
        probabilities = []
        for keep in variants:
            compacted, mask = _compact(ids, keep, pad_id)
            rows = []
            for begin in range(0, compacted.shape[0], batch_size):
                part = slice(begin, begin + batch_size)
                logits = logits_of(model(input_ids=compacted[part], attention_mask=mask[part]))
                rows.append(logits.softmax(dim=1).gather(1, target[part, None])[:, 0])
            probabilities.append(torch.cat(rows).double())
    comprehensiveness = torch.stack([reference - p for p in probabilities[0::2]]).mean(dim=0)
    sufficiency = torch.stack([reference - p for p in probabilities[1::2]]).mean(dim=0)
    return comprehensiveness.cpu(), sufficiency.cpu()
