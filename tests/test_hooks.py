"""The hook context managers remove everything they add, whatever happens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_cnn
from leanxai.core.errors import LayerError
from leanxai.core.hooks import capture, eval_mode, input_of, record_outputs
from leanxai.core.layers import find_head_linear, find_target_layer, resolve_layer


def test_capture_keeps_outputs_and_removes_hooks(state_guard):
    model = tiny_cnn()
    unchanged = state_guard(model)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with capture(model, ["features.4", "features"], inputs_of=["fc"]) as record:
        logits = model(x)
    unchanged()
    conv = model.features[4](model.features[:4](x))
    assert torch.allclose(record.outputs["features.4"], conv)  # before the in-place ReLU
    assert record.outputs["features.4"].min() < 0
    assert torch.allclose(record.outputs["features"], torch.relu(conv))
    assert torch.allclose(record.inputs["fc"], torch.relu(conv).mean((2, 3)))
    assert torch.equal(record.output_of["fc"], logits)
    assert record.calls == {"features.4": 1, "features": 1, "fc": 1}


def test_capture_removes_hooks_when_registration_fails_halfway(state_guard):
    model = tiny_cnn()
    unchanged = state_guard(model)
    with (
        pytest.raises(LayerError, match=r"features.9"),
        capture(model, ["features.0", "features.9"]),
    ):
        pytest.fail("the block must not run")
    unchanged()


def test_capture_removes_hooks_and_restores_grad_mode_when_forward_fails(state_guard):
    model = tiny_cnn()
    model.fc = nn.Linear(3, 3).double()  # wrong size: the forward fails after features
    unchanged = state_guard(model)
    with torch.no_grad():
        with pytest.raises(RuntimeError), capture(model, ["features"], grad_from="features"):
            model(torch.rand(1, 3, 8, 8, dtype=torch.float64))
        assert not torch.is_grad_enabled()
    unchanged()


def test_grad_from_starts_the_graph_at_the_layer():
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad(), capture(model, ["features.4"], grad_from="features.4") as record:
        logits = model(x)
    activation = record.outputs["features.4"]
    assert activation.is_leaf and activation.requires_grad
    assert logits.requires_grad
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), activation)
    assert grad.shape == activation.shape
    # ReLU after the layer: no gradient where the conv output is negative.
    assert torch.all(grad[activation < 0] == 0)
    assert all(p.grad is None for p in model.parameters())


def test_eval_mode_restores_each_flag():
    model = tiny_cnn().train()
    model.features[1].eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model.features[1].training and model.features[0].training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert model.training and not model.features[1].training


def test_record_outputs_in_finish_order(state_guard):
    model = tiny_cnn()
    unchanged = state_guard(model)
    with record_outputs(model) as seen:
        model(torch.rand(1, 3, 8, 8, dtype=torch.float64))
    unchanged()
    names = [r.name for r in seen]
    assert names.index("features.5") < names.index("features") < names.index("fc")
    assert dict((r.name, r.shape) for r in seen)["features"] == (1, 12, 4, 4)


def test_layer_resolution():
    model = tiny_cnn()
    assert resolve_layer(model, "features.4") == "features.4"
    assert resolve_layer(model, model.fc) == "fc"
    with pytest.raises(LayerError, match="not a submodule"):
        resolve_layer(model, nn.Linear(1, 1))
    with pytest.raises(LayerError, match="did you mean"):
        resolve_layer(model, "feature")
    assert find_target_layer(model, torch.rand(1, 3, 8, 8, dtype=torch.float64)) == "features"
    assert find_head_linear(model) == "fc"
    assert find_head_linear(nn.Conv2d(1, 1, 1)) is None


def test_input_of_stops_at_the_module_and_leaves_no_hook() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
            self.unused = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    model = Net()
    ran: list[str] = []
    model.body[2].register_forward_hook(lambda *_: ran.append("last"))
    x = torch.randn(5, 3)
    value, reached = input_of(model, "body.2", x)
    assert reached and ran == []
    torch.testing.assert_close(value, torch.relu(model.body[0](x)))
    assert not model.body[2]._forward_pre_hooks
    # A module the forward never calls: the whole model runs, nothing is returned.
    assert input_of(model, "unused", x) == (None, False) and ran == ["last"]
    # An error inside the forward leaves no hook either.
    with pytest.raises(RuntimeError):
        input_of(model, "body.2", torch.randn(5, 7))
    assert not model.body[2]._forward_pre_hooks and not model.unused._forward_pre_hooks
    with pytest.raises(LayerError, match="does not exist"):
        input_of(model, "nope", x)


def test_input_of_is_not_swallowed_by_a_model_catching_exceptions() -> None:
    class Guarded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(3, 2)
            self.fallback_ran = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                return self.inner(x)
            except Exception:
                self.fallback_ran = True
                return torch.zeros(x.shape[0], 2)

    model = Guarded()
    x = torch.randn(4, 3)
    value, reached = input_of(model, "inner", x)
    assert reached and torch.equal(value, x) and not model.fallback_ran
    assert not model.inner._forward_pre_hooks


def test_grad_mode_is_on_only_inside_the_forward(state_guard):
    model = tiny_cnn()
    unchanged = state_guard(model)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    seen: dict[str, bool] = {}

    def head_hook(module: nn.Module, args: object) -> None:
        seen["head"] = torch.is_grad_enabled()

    model.fc.register_forward_pre_hook(head_hook)
    with torch.no_grad(), capture(model, ["features.4"], grad_from="features.4") as record:
        assert not torch.is_grad_enabled()
        logits = model(x)
        assert not torch.is_grad_enabled()  # back to the caller's mode once the forward returns
        after = logits * 2
    assert seen["head"]  # recording from the layer to the output
    assert logits.requires_grad and not after.requires_grad
    assert record.outputs["features.4"].requires_grad
    model.fc._forward_pre_hooks.clear()
    unchanged = state_guard(model)
    # Two forward passes in one block: each switches on at the layer and off at the end.
    with torch.no_grad(), capture(model, ["features"], grad_from="features"):
        assert model(x).requires_grad and not torch.is_grad_enabled()
        assert model(x).requires_grad and not torch.is_grad_enabled()
    unchanged()


def test_grad_mode_restored_when_the_forward_raises_after_the_layer():
    model = tiny_cnn()
    model.fc = nn.Linear(3, 3).double()  # wrong size: fails after the layer
    with torch.no_grad(), capture(model, ["features"], grad_from="features"):
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 3, 8, 8, dtype=torch.float64))
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert not model._forward_hooks


def test_grad_from_must_be_a_captured_layer():
    from leanxai.core.errors import InputError

    with pytest.raises(InputError, match="grad_from"), capture(tiny_cnn(), ["fc"], grad_from="x"):
        pass


def test_eval_mode_with_a_given_module_list():
    from leanxai.core.layers import module_tree

    model = tiny_cnn().train()
    modules, _ = module_tree(model)
    with eval_mode(model, modules=modules):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())


def test_record_outputs_keeps_the_first_input_shape():
    model = tiny_cnn()
    with record_outputs(model) as seen:
        model(torch.rand(2, 3, 8, 8, dtype=torch.float64))
    shapes = {r.name: r.input_shape for r in seen}
    assert shapes["features.0"] == (2, 3, 8, 8) and shapes["fc"] == (2, 12)


def test_captured_output_is_a_copy_outside_any_graph():
    model = tiny_cnn()  # parameters require grad: the layer's output is part of a graph
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with capture(model, ["features.4"]) as record:
        model(x)
    kept = record.outputs["features.4"]
    assert not kept.requires_grad and kept.grad_fn is None
    assert kept.min() < 0  # what the conv produced, before the in-place ReLU after it
    with torch.no_grad(), capture(model, ["features.4"]) as record:
        model(x)
    assert not record.outputs["features.4"].requires_grad
    assert torch.equal(record.outputs["features.4"], kept)
    assert not model._forward_hooks and not model.features[4]._forward_hooks
