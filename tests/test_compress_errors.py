"""Every public compress entry point refuses a bad argument with a LeanXAIError (a ValueError or
TypeError as well), naming the argument."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leanxai.compress import (
    PrunePlan,
    apply_pruning,
    compress,
    finetune,
    mixed_precision_plan,
    plan_pruning,
    quantize_model,
    quantize_uniform,
    sparsity,
    weight_relevance,
    weight_scores,
)
from leanxai.core.errors import LeanXAIError


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
SCORES = {"0.weight": torch.rand(5, 4), "2.weight": torch.rand(3, 5)}

CASES = [
    ("prune", ValueError, lambda: compress(mlp(), X, prune="bogus")),
    ("finetune_steps", ValueError, lambda: compress(mlp(), X, finetune_steps=-1)),
    ("calibration inputs", ValueError, lambda: compress(mlp(), None)),
    ("teacher", TypeError, lambda: finetune(mlp(), "teacher", X)),
    ("inputs", TypeError, lambda: finetune(mlp(), mlp(), [1, 2])),
    ("inputs", ValueError, lambda: finetune(mlp(), mlp(), torch.randn(0, 4))),
    ("plan", TypeError, lambda: finetune(mlp(), mlp(), X, plan="plan")),
    ("steps", ValueError, lambda: finetune(mlp(), mlp(), X, steps=-2)),
    ("batch_size", ValueError, lambda: finetune(mlp(), mlp(), X, batch_size=0)),
    ("lr", ValueError, lambda: finetune(mlp(), mlp(), X, lr=float("nan"))),
    ("temperature", ValueError, lambda: finetune(mlp(), mlp(), X, temperature=0)),
    ("method", ValueError, lambda: plan_pruning(SCORES, method="bogus")),
    ("scope", ValueError, lambda: plan_pruning(SCORES, sparsity=0.5, scope="bogus")),
    ("sparsity", TypeError, lambda: plan_pruning(SCORES, sparsity="0.5")),
    ("sparsity", ValueError, lambda: plan_pruning(SCORES, sparsity=1.5)),
    ("empty", ValueError, lambda: plan_pruning({}, sparsity=0.5)),
    ("scores", TypeError, lambda: plan_pruning({"w": 3.0}, sparsity=0.5)),
    ("bool tensor", TypeError, lambda: PrunePlan(masks={"w": torch.ones(2)})),
    ("prune plan", ValueError, lambda: PrunePlan.from_dict({"format": "other"})),
    ("plan", TypeError, lambda: apply_pruning(mlp(), "plan")),
    ("does not have", ValueError, lambda: sparsity(mlp(), ["nope"])),
    ("criterion", ValueError, lambda: weight_scores(mlp(), X, criterion="bogus")),
    ("bits", TypeError, lambda: quantize_uniform(torch.randn(3, 3), "8")),
    ("bits", ValueError, lambda: quantize_uniform(torch.randn(3, 3), 17)),
    ("weight", TypeError, lambda: quantize_uniform(torch.ones(3, dtype=torch.int64), 8)),
    ("bits must be one of", ValueError, lambda: mixed_precision_plan(SCORES, None, (4, 2))),
    ("model", TypeError, lambda: quantize_model("model", 8)),
    ("not a parameter", ValueError, lambda: quantize_model(mlp(), {"x": torch.ones(2)})),
    ("model", TypeError, lambda: weight_relevance("model", X)),
    ("inputs", TypeError, lambda: weight_relevance(mlp(), [1.0])),
    ("rule", ValueError, lambda: weight_relevance(mlp(), X, rule="bogus")),
    ("epsilon", ValueError, lambda: weight_relevance(mlp(), X, epsilon=0)),
    ("gamma", ValueError, lambda: weight_relevance(mlp(), X, gamma=-1)),
    ("batch_size", ValueError, lambda: weight_relevance(mlp(), X, batch_size=0)),
    ("reduce", ValueError, lambda: weight_relevance(mlp(), X, reduce="bogus")),
]


@pytest.mark.parametrize(
    "name, kind, call", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)]
)
def test_bad_arguments_raise_leanxai_errors(name, kind, call):
    with pytest.raises(LeanXAIError, match=name) as caught:
        call()
    assert isinstance(caught.value, kind)
    assert "\n" not in str(caught.value)
