"""``leanxai explain --text "..." --model hf:DIR`` and ``leanxai explain reviews.txt --model ...``.

Called by ``leanxai explain`` when ``--text`` is given or every input ends in ``.txt`` (one text
per line). The folder holds a transformers ``*ForSequenceClassification`` model and its tokenizer
(``save_pretrained``). Writes ``tokens.csv`` (one row per scored token) and ``tokens.html`` (the
texts with their tokens highlighted). A bad line (empty) is named and skipped, a text longer than
the model takes is truncated and named; the batch goes on, and the exit code is 3 when a line was
skipped.
"""

from __future__ import annotations

import csv
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from leanxai.cli._common import EXIT_PARTIAL, fail
from leanxai.core.errors import InputError, LeanXAIError, ModelLoadError

__all__ = ["DEFAULT_TEXT_THRESHOLD", "explain_texts", "is_text_input", "load_text_classifier"]

DEFAULT_TEXT_THRESHOLD = "topk:5"
"""The tokens underlined when ``--threshold`` is not given: the 5 highest-scoring."""

_FIELDS = [
    "source",
    "position",
    "token",
    "score",
    "kept",
    "class",
    "label",
    "probability",
    "method",
]


def is_text_input(path: str) -> bool:
    """Whether ``path`` names a text file of one text per line."""
    return str(path).lower().endswith(".txt")


def load_text_classifier(spec: str) -> tuple[Any, Any]:
    """``hf:DIR`` -> ``(model, tokenizer)``; one line when the folder cannot serve."""
    if not spec.startswith("hf:"):
        raise ModelLoadError(
            f"texts need --model hf:DIR (a folder with a *ForSequenceClassification model and its "
            f"tokenizer), got {spec!r}"
        )
    try:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as error:
        raise ModelLoadError("texts need transformers: pip install leanxai[text]") from error
    source = spec[len("hf:") :]
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"cannot load {spec!r}: the folder {source!r} does not exist")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as error:
        raise ModelLoadError(f"cannot load {spec!r}: {_first_line(error)}") from error
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(
            f"{spec!r} holds a {', '.join(architectures)} without a sequence-classification head; "
            "save a *ForSequenceClassification model there"
        )
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the CLI shows its own progress
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
    except Exception as error:
        raise ModelLoadError(f"cannot load {spec!r}: {_first_line(error)}") from error
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load the tokenizer of {spec!r} ({_first_line(error)}): save it beside the "
            "model with tokenizer.save_pretrained"
        ) from error
    model.eval()
    return model, tokenizer


def _check_threshold(spec: str) -> None:
    kind, _, value = spec.strip().lower().partition(":")
    try:
        if kind == "none" and not value:
            return
        if kind == "topk" and int(value) >= 1:
            return
        if kind == "top" and 0 < float(value) <= 100:
            return
        if kind == "mass" and 0 < float(value) <= 1:
            return
    except ValueError:
        pass
    raise InputError(
        f"--threshold for texts must be none, topk:K (K >= 1), top:P (0 < P <= 100) or mass:F "
        f"(0 < F <= 1), got {spec!r}"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_texts(
    inputs: tuple[str, ...], texts: tuple[str, ...]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(source, text)`` pairs and ``(source, reason)`` of the lines skipped."""
    found: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for index, text in enumerate(texts):
        source = f"--text[{index}]" if len(texts) > 1 else "--text"
        if text.strip():
            found.append((source, text.strip()))
        else:
            skipped.append((source, "empty text"))
    for name in inputs:
        path = Path(name)
        try:
            content = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            skipped.append((name, "no such file"))
            continue
        except (OSError, UnicodeDecodeError) as error:
            skipped.append((name, f"cannot read it as UTF-8 text ({_first_line(error)})"))
            continue
        lines = content.splitlines()
        while lines and not lines[-1].strip():  # a trailing blank line is not a text
            lines.pop()
        for number, line in enumerate(lines, start=1):
            if line.strip():
                found.append((f"{name}:{number}", line.strip()))
            else:
                skipped.append((f"{name}:{number}", "empty line"))
    return found, skipped


def explain_texts(
    inputs: tuple[str, ...],
    texts: tuple[str, ...],
    model_spec: str | None,
    method: str | None,
    threshold_spec: str | None,
    target: int | None,
    batch_size: int,
    out_dir: Path,
    overwrite: bool,
) -> None:
    """Explain texts with a text method; see the module docstring."""
    from tqdm import tqdm

    from leanxai.explainers import registry
    from leanxai.explainers.text import keep_tokens, max_tokens, tokenize
    from leanxai.io import atomic_write_text, check_writable
    from leanxai.viz.text import TextItem, write_text_report

    spec = DEFAULT_TEXT_THRESHOLD if threshold_spec is None else threshold_spec
    if model_spec is None:
        fail("--model hf:DIR is required for texts")
    try:
        info = registry.get(method or registry.default_method("text"), "text")
        _check_threshold(spec)
    except LeanXAIError as error:
        fail(error)
    found, skipped = _read_texts(inputs, texts)
    planned = [out_dir / "tokens.csv", out_dir / "tokens.html"]
    try:
        check_writable(planned, overwrite)
        model, tokenizer = load_text_classifier(model_spec)
        explainer = registry.create(info.name, model, "text", options={"tokenizer": tokenizer})
    except LeanXAIError as error:
        fail(error)
    limit = max_tokens(model, tokenizer)
    labels = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()}
    rows: list[dict[str, Any]] = []
    items: list[TextItem] = []
    notes: list[str] = []
    done = 0
    batches = [found[i : i + batch_size] for i in range(0, len(found), batch_size)]
    for batch in tqdm(batches, desc="explaining", unit="batch", disable=None):
        sources = [source for source, _ in batch]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                encoding, truncated = tokenize(
                    tokenizer, [text for _, text in batch], max_length=limit
                )
            except LeanXAIError as error:
                skipped.extend((source, str(error)) for source in sources)
                continue
        for index in truncated:
            message = next(
                (str(w.message) for w in caught if str(w.message).startswith(f"text {index} ")),
                "truncated",
            )
            notes.append(f"{sources[index]}: {message.split('; ', 1)[-1]}")
        try:
            explanation = explainer.explain(encoding, target)
            kept = keep_tokens(explanation, spec)
        except LeanXAIError as error:
            if len(batch) == 1:
                skipped.append((sources[0], str(error)))
                continue
            # One bad text must not sink its batch: explain the texts one by one.
            for source, text in batch:
                try:
                    single, _ = tokenize(tokenizer, [text], max_length=limit)
                    one = explainer.explain(single, target)
                    one_kept = keep_tokens(one, spec)
                except LeanXAIError as inner:
                    skipped.append((source, str(inner)))
                    continue
                done += _collect(one, one_kept, [source], labels, info.name, rows, items)
            continue
        done += _collect(explanation, kept, sources, labels, info.name, rows, items)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "tokens.csv", buffer.getvalue(), overwrite=overwrite)
        write_text_report(
            out_dir / "tokens.html",
            title=f"Token scores: {info.name}",
            intro=(
                f"{done} texts explained with {info.name} ({info.summary}) for "
                f"{'the predicted class' if target is None else f'class {target}'}; underlined: "
                f"threshold {spec}."
            ),
            items=items,
            overwrite=overwrite,
        )
    except (LeanXAIError, OSError) as error:
        fail(error)
    click.echo(f"explained {done} texts; wrote {out_dir / 'tokens.csv'} and tokens.html")
    for note in notes:
        click.echo(f"truncated {note}", err=True)
    for source, reason in skipped:
        click.echo(f"skipped {source}: {reason}", err=True)
    if skipped:
        sys.exit(EXIT_PARTIAL)


def _collect(
    explanation: Any,
    kept: Any,
    sources: list[str],
    labels: dict[int, str],
    method: str,
    rows: list[dict[str, Any]],
    items: list[Any],
) -> int:
    from leanxai.viz.text import TextItem

    probabilities = explanation.probabilities
    for b, source in enumerate(sources):
        cls = int(explanation.target[b])
        label = labels.get(cls, str(cls))
        probability = float(probabilities[b])
        tokens, scores, flags = [], [], []
        for t in range(explanation.scores.shape[1]):
            if not bool(explanation.scored[b, t]):
                continue
            token = explanation.tokens[b][t]
            score = float(explanation.scores[b, t])
            tokens.append(token)
            scores.append(score)
            flags.append(bool(kept[b, t]))
            rows.append(
                {
                    "source": source,
                    "position": t,
                    "token": token,
                    "score": f"{score:.6g}",
                    "kept": int(bool(kept[b, t])),
                    "class": cls,
                    "label": label,
                    "probability": f"{probability:.6f}",
                    "method": method,
                }
            )
        items.append(
            TextItem(
                tokens=tokens,
                scores=scores,
                kept=flags,
                caption=f"{source}: {label} (p = {probability:.3f})",
            )
        )
    return len(sources)
