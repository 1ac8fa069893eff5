"""Self-distillation with fixed masks, BatchNorm recalibration, the relevance-magnitude criterion
and the defaults of compress()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leanxai.compress import (
    DEFAULT_CRITERION,
    DEFAULT_SPARSITY,
    apply_pruning,
    compress,
    finetune,
    float32_size,
    plan_pruning,
    weight_relevance,
    weight_scores,
)
from leanxai.compress.finetune import recalibrate_batchnorm
from leanxai.experiments.compression import accuracy, dense_net


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def _inputs(n: int = 128) -> torch.Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(1))


def test_relevance_magnitude_is_absolute_relevance_times_magnitude():
    model, x = _mlp(), _inputs()
    scores = weight_scores(model, x, criterion="relevance_magnitude")
    relevance = weight_relevance(model, x, reduce="absolute")
    weights = dict(model.named_parameters())
    assert list(scores) == list(relevance)
    for name, value in scores.items():
        torch.testing.assert_close(value, relevance[name] * weights[name].detach().abs())
    with pytest.raises(ValueError, match="calibration inputs"):
        weight_scores(model, None, criterion="relevance_magnitude")


def test_relevance_tempered_is_magnitude_times_relative_relevance_flow():
    model, x = _mlp(), _inputs()
    with torch.no_grad():  # a dead weight: score 0, and left out of its layer's median
        model[0].weight[0, 0] = 0.0
    scores = weight_scores(model, x, criterion="relevance_tempered")
    l2 = weight_relevance(model, x, reduce="l2")
    weights = dict(model.named_parameters())
    assert list(scores) == list(l2)
    for name, value in scores.items():
        w = weights[name].detach().double().abs()
        rho = np.where(w.numpy() > 0, l2[name].double().numpy() / np.maximum(w.numpy(), 1e-300), 0)
        # Output rows of a class no input targeted (here class 1, never predicted) get no
        # relevance: they score |w| and stay out of the median (issue 22).
        untargeted = np.zeros(rho.shape, dtype=bool)
        if name == "4.weight":
            untargeted[~(rho > 0).any(1)] = True
        median = np.median(rho[(w.numpy() > 0) & ~untargeted])
        expected = w.numpy() * np.where(untargeted, 1.0, rho / median) ** 0.5
        np.testing.assert_allclose(value.double().numpy(), expected, rtol=1e-6, atol=1e-12)
    assert scores["0.weight"][0, 0] == 0
    assert model(x).argmax(1).bincount(minlength=3)[1] == 0  # the case above is exercised
    torch.testing.assert_close(scores["4.weight"][1], weights["4.weight"][1].detach().abs())


def test_compress_default_prunes_by_relevance_tempered_over_all_layers():
    model, x = _mlp(), _inputs()
    result = compress(model, x, finetune_steps=0)
    assert result.plan is not None
    assert result.plan.criterion == DEFAULT_CRITERION == "relevance_tempered"
    assert result.plan.scope == "global"
    expected = plan_pruning(
        weight_scores(model, x, criterion="relevance_tempered"),
        sparsity=DEFAULT_SPARSITY,
        scope="global",
    )
    for name, mask in expected.masks.items():
        assert torch.equal(result.plan.masks[name], mask)


def test_finetune_keeps_masks_and_brings_the_student_closer():
    teacher, x = _mlp(), _inputs()
    plan = plan_pruning(weight_scores(teacher, criterion="magnitude"), sparsity=0.8)
    pruned = apply_pruning(teacher, plan)
    before = {n: p.clone() for n, p in pruned.named_parameters()}
    tuned = finetune(pruned, teacher, x, plan, steps=60, lr=3e-3)
    for name, p in pruned.named_parameters():  # the student given is untouched
        assert torch.equal(p, before[name])
    params = dict(tuned.named_parameters())
    for name, mask in plan.masks.items():
        assert bool((params[name][~mask] == 0).all())
    with torch.no_grad():
        target = teacher(x).softmax(1)
        gap_before = (pruned(x).softmax(1) - target).abs().mean()
        gap_after = (tuned(x).softmax(1) - target).abs().mean()
    assert gap_after < gap_before
    assert not tuned.training
    assert [p.requires_grad for p in tuned.parameters()] == [
        p.requires_grad for p in pruned.parameters()
    ]


def test_finetune_without_plan_holds_existing_zeros():
    teacher, x = _mlp(), _inputs()
    student = apply_pruning(teacher, plan_pruning(weight_scores(teacher, criterion="magnitude")))
    tuned = finetune(student, teacher, x, steps=10)
    for (name, p), q in zip(student.named_parameters(), tuned.parameters(), strict=True):
        assert bool((q[p == 0] == 0).all()), name


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"steps": -1}, ValueError),
        ({"lr": 0.0}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"temperature": float("nan")}, ValueError),
        ({"plan": "nope"}, TypeError),
    ],
)
def test_finetune_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        finetune(_mlp(), _mlp(), _inputs(), **kwargs)


def test_recalibrate_batchnorm_restores_flags_and_momentum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).eval()
    x = _inputs(200) * 3 + 1
    assert recalibrate_batchnorm(model, x, batch_size=50) == 1
    norm = model[1]
    assert norm.momentum == 0.1 and not model.training and not norm.training
    with torch.no_grad():
        hidden = model[0](x)
    torch.testing.assert_close(norm.running_mean, hidden.mean(0), atol=1e-5, rtol=1e-5)
    assert recalibrate_batchnorm(_mlp(), x) == 0


def test_compress_defaults_use_the_chosen_criterion_and_finetune():
    model, x = _mlp(), _inputs()
    result = compress(model, x)
    assert result.metadata["prune"] == DEFAULT_CRITERION
    assert result.metadata["finetune_steps"] > 0
    assert result.metadata["sparsity"] == pytest.approx(DEFAULT_SPARSITY, abs=0.01)
    plain = compress(model, x, finetune_steps=0)
    assert plain.metadata["finetune_steps"] == 0
    with pytest.raises(ValueError, match="finetune_steps"):
        compress(model, x, finetune_steps=-3)


def test_dense_net_and_sizes():
    model = dense_net()
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [128, 64, 5]
    assert float32_size(model) > 4 * sum(p.numel() for p in model.parameters())
    x = torch.randn(10, 40)
    assert accuracy(model, x, model(x).argmax(1)) == 1.0


def test_compress_with_the_l2_relevance_criterion():
    model, x = _mlp(), _inputs()
    result = compress(model, x, prune="relevance_l2", sparsity=0.6, finetune_steps=5)
    assert result.plan is not None and result.plan.criterion == "relevance_l2"
    assert result.plan.achieved_sparsity == pytest.approx(0.6, abs=0.01)
    assert result.metadata["prune"] == "relevance_l2"
