"""Pruning plans: the paper's rule, shares per layer and global, structured units, serialisation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from leanxai.compress import (
    PrunePlan,
    apply_pruning,
    plan_pruning,
    sparsity,
    weight_relevance,
    weight_scores,
)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def scores_of(*shapes: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        f"l{k}.weight": torch.randn(shape, generator=generator) for k, shape in enumerate(shapes)
    }


def test_nonpositive_prunes_exactly_the_weights_with_relevance_at_most_zero():
    scores = scores_of((4, 3), (2, 4))
    scores["l0.weight"][0, 0] = 0.0
    plan = plan_pruning(scores, method="nonpositive")
    for name, value in scores.items():
        assert torch.equal(plan.masks[name], value > 0)
    expected = sum(int((v <= 0).sum()) for v in scores.values()) / 20
    assert plan.sparsity == pytest.approx(expected)
    assert plan.achieved_sparsity == pytest.approx(expected)


def test_layer_scope_prunes_the_lowest_share_of_each_layer():
    scores = scores_of((10, 4), (3, 10))
    plan = plan_pruning(scores, sparsity=0.5, scope="layer")
    for name, value in scores.items():
        mask = plan.masks[name]
        assert int((~mask).sum()) == round(0.5 * value.numel())
        assert float(value[~mask].max()) <= float(value[mask].min())


def test_global_scope_ranks_all_layers_together():
    scores = {
        "a.weight": torch.arange(10.0).reshape(2, 5),
        "b.weight": torch.arange(10.0, 16.0).reshape(2, 3),
    }
    plan = plan_pruning(scores, sparsity=0.5, scope="global")
    assert not bool(plan.masks["a.weight"].reshape(-1)[:8].any())
    assert bool(plan.masks["a.weight"].reshape(-1)[8:].all())
    assert bool(plan.masks["b.weight"].all())


def test_structured_prunes_whole_units_and_protects_the_output_layer():
    scores = {
        "conv.weight": torch.tensor([1.0, -3.0, 2.0, 0.5])
        .reshape(4, 1, 1, 1)
        .expand(4, 2, 3, 3)
        .clone(),
        "fc.weight": torch.full((3, 4), -1.0),
    }
    plan = plan_pruning(scores, sparsity=0.5, structured=True)
    kept_units = plan.masks["conv.weight"].reshape(4, -1).all(1)
    assert kept_units.tolist() == [True, False, True, False]
    assert bool(plan.masks["conv.weight"].reshape(4, -1).any(1).eq(kept_units).all())
    assert bool(plan.masks["fc.weight"].all())  # the last layer's output units stay
    everything = plan_pruning(scores, sparsity=1.0, structured=True)
    assert int(everything.masks["conv.weight"].reshape(4, -1).all(1).sum()) == 1  # one unit stays


def test_apply_pruning_returns_a_pruned_copy_and_leaves_the_model():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = weight_scores(model, criterion="magnitude")
    plan = plan_pruning(scores, sparsity=0.6, structured=True)
    pruned = apply_pruning(model, plan)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    for name, mask in plan.masks.items():
        weight = pruned.get_parameter(name)
        assert bool((weight[~mask] == 0).all())
        assert torch.equal(weight[mask], model.get_parameter(name)[mask])
        dead = ~mask.reshape(mask.shape[0], -1).any(1)
        bias = pruned.get_parameter(name.replace("weight", "bias"))
        assert bool((bias[dead] == 0).all())
    assert sparsity(model) == 0.0
    assert sparsity(pruned) == pytest.approx(plan.achieved_sparsity)


def test_sparsity_counts_zero_weights():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
        model[1].weight.fill_(1.0)
    assert sparsity(model) == pytest.approx(2 / 8)
    assert sparsity(model, ["0.weight"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not have"):
        sparsity(model, ["2.weight"])


def test_scores_of_each_criterion():
    model = mlp().double()
    inputs = torch.randn(4, 6, dtype=torch.float64)
    magnitude = weight_scores(model, criterion="magnitude")
    assert list(magnitude) == ["0.weight", "2.weight", "4.weight"]
    assert torch.equal(magnitude["0.weight"], model[0].weight.detach().abs())
    random = weight_scores(model, criterion="random", seed=3)
    again = weight_scores(model, criterion="random", seed=3)
    assert all(torch.equal(random[k], again[k]) for k in random)
    signed = weight_scores(model, inputs, criterion="signed_relevance")
    assert torch.allclose(signed["2.weight"], weight_relevance(model, inputs)["2.weight"])
    absolute = weight_scores(model, inputs, criterion="relevance", target="all")
    assert all(bool((v >= 0).all()) for v in absolute.values())
    l2 = weight_scores(model, inputs, criterion="relevance_l2")
    expected = weight_relevance(model, inputs, reduce="l2")
    assert all(torch.equal(l2[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match="inputs"):
        weight_scores(model, criterion="relevance")
    with pytest.raises(ValueError, match="criterion"):
        weight_scores(model, inputs, criterion="taylor")  # type: ignore[arg-type]


def test_plan_round_trips_through_json():
    plan = plan_pruning(scores_of((5, 7), (3, 5, 2, 2)), sparsity=0.3, criterion="relevance")
    data = json.loads(json.dumps(plan.to_dict()))
    again = PrunePlan.from_dict(data)
    assert again.method == plan.method and again.criterion == "relevance"
    assert again.sparsity == plan.sparsity and again.scope == plan.scope
    for name, mask in plan.masks.items():
        assert torch.equal(again.masks[name], mask)
    data["version"] = 99
    with pytest.raises(ValueError, match="newer"):
        PrunePlan.from_dict(data)
    with pytest.raises(ValueError, match="not a leanxai prune plan"):
        PrunePlan.from_dict({"format": "other"})


def test_bad_arguments():
    scores = scores_of((3, 3))
    with pytest.raises(ValueError, match="method"):
        plan_pruning(scores, method="lowest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sparsity"):
        plan_pruning(scores, sparsity=1.5)
    with pytest.raises(ValueError, match="scope"):
        plan_pruning(scores, scope="model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        plan_pruning({})
    with pytest.raises(ValueError, match="protect"):
        plan_pruning(scores, structured=True, protect=["nope.weight"])
    with pytest.raises(TypeError, match="bool"):
        PrunePlan(masks={"a": torch.ones(2)})
    model = mlp()
    with pytest.raises(ValueError, match="not a parameter"):
        apply_pruning(model, plan_pruning(scores))
    wrong = PrunePlan(masks={"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        apply_pruning(model, wrong)
