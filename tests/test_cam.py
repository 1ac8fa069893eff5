"""GradCAM / GradCAM++ against literal float64 references, both paths, and state hygiene."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leanxai
from conftest import (
    reference_gradcam,
    reference_gradcam_plus_plus,
    relative_error,
    tiny_cnn,
    tiny_vgg,
)
from leanxai import GradCAM, GradCAMPlusPlus
from leanxai.core.errors import InputError, LayerError, ModelOutputError, TargetError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    config = transformers.ResNetConfig(
        layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], num_labels=10
    )
    torch.manual_seed(0)
    return transformers.ResNetForImageClassification(config).eval()


@pytest.fixture(scope="module")
def mobilenet_v2() -> nn.Module:
    torch.manual_seed(0)
    return transformers.MobileNetV2ForImageClassification(
        transformers.MobileNetV2Config(num_labels=10)
    ).eval()


@pytest.fixture(scope="module")
def vgg_style() -> nn.Module:
    from leanxai.zoo import VGGStyle

    torch.manual_seed(0)
    return VGGStyle(num_classes=10, width=16).eval()


def images(batch: int = 2, size: int = 96, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator)


# -- literal references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_name", "layer", "path"),
    [
        ("resnet18", "resnet.encoder.stages.3", "forward"),
        ("mobilenet_v2", "mobilenet_v2.conv_1x1", "forward"),
        ("vgg_style", "features", "autograd"),
    ],
)
def test_gradcam_matches_float64_reference(request, model_name, layer, path, state_guard):
    model = request.getfixturevalue(model_name)
    x = images()
    unchanged = state_guard(model)
    explanation = GradCAM(model).explain(x)
    unchanged()
    assert explanation.layer == layer
    assert explanation.path == path
    reference = reference_gradcam(model, x, layer, explanation.target)
    assert reference.abs().max() > 0
    assert relative_error(explanation.cam, reference) < 1e-4


@pytest.mark.parametrize("model_name", ["resnet18", "mobilenet_v2"])
def test_forward_path_equals_autograd_path(request, model_name):
    model = request.getfixturevalue(model_name)
    x = images(3, 64, seed=2)
    fast = GradCAM(model, path="forward").explain(x)
    slow = GradCAM(model, path="autograd").explain(x)
    assert (fast.path, slow.path) == ("forward", "autograd")
    assert torch.equal(fast.target, slow.target)
    assert relative_error(fast.cam, slow.cam.double()) < 1e-5
    assert (fast.heatmap - slow.heatmap).abs().max() < 1e-4


def test_forward_path_is_cached_after_verification(resnet18):
    explainer = GradCAM(resnet18)
    first = explainer.explain(images(1, 64))
    second = explainer.explain(images(1, 64, seed=5))
    assert first.path == second.path == "forward"
    assert explainer._forward_verified == {"resnet.encoder.stages.3": True}


@pytest.mark.parametrize("builder", [tiny_cnn, tiny_vgg])
@pytest.mark.parametrize("path", ["auto", "autograd"])
def test_gradcam_plus_plus_matches_reference(builder, path):
    model = builder()
    x = images(3, 16, seed=3).double()
    explanation = GradCAMPlusPlus(model, layer="features", path=path).explain(x)
    reference = reference_gradcam_plus_plus(model, x, "features", explanation.target)
    assert reference.abs().max() > 0
    assert relative_error(explanation.cam, reference) < 1e-9


def test_gradcam_plus_plus_differs_from_gradcam():
    model = tiny_vgg()
    x = images(2, 16).double()
    plain = GradCAM(model).explain(x).cam
    plus = GradCAMPlusPlus(model).explain(x).cam
    assert not torch.allclose(plain, plus)


def test_in_place_relu_after_layer_keeps_what_the_layer_produced():
    # features.4 is a conv followed by ReLU(inplace=True): its output has negative values that
    # the ReLU overwrites. Grad-CAM must use the conv's output, and the head is not GAP(A) + linear
    # (it is GAP(ReLU(A))), so the exact forward path does not apply.
    model = tiny_cnn()
    x = images(4, 16).double()
    explanation = GradCAM(model, layer="features.4").explain(x)
    assert explanation.path == "autograd"
    reference = reference_gradcam(model, x, "features.4", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10
    with pytest.raises(LayerError, match="path='forward'"):
        GradCAM(model, layer="features.4", path="forward").explain(x)


def test_tiny_cnn_default_layer_takes_forward_path():
    model = tiny_cnn()
    x = images(4, 16).double()
    explanation = GradCAM(model).explain(x)
    assert (explanation.layer, explanation.path) == ("features", "forward")
    reference = reference_gradcam(model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


# -- the Explanation ------------------------------------------------------------------------------


def test_explanation_fields():
    model = tiny_cnn(dtype=torch.float32)
    x = images(3, 20)
    explanation = GradCAM(model).explain(x)
    assert explanation.heatmap.shape == (3, 20, 20)
    assert explanation.heatmap.dtype == torch.float32
    assert explanation.cam.shape == (3, 10, 10)
    assert explanation.target.dtype == torch.int64
    assert torch.equal(explanation.target, model(x).argmax(1))
    assert torch.allclose(explanation.logits, model(x))
    assert explanation.heatmap.min() >= 0
    peaks = explanation.heatmap.flatten(1).amax(1)
    assert torch.all(((peaks - 1).abs() < 1e-6) | (peaks == 0))
    upsampled = F.interpolate(explanation.cam[:, None], size=(20, 20), mode="bilinear")[:, 0]
    expected = upsampled / upsampled.flatten(1).amax(1).clamp_min(1e-30)[:, None, None]
    assert torch.allclose(explanation.heatmap, expected, atol=1e-6)
    probs = model(x).softmax(1).gather(1, explanation.target[:, None])[:, 0]
    assert torch.allclose(explanation.probabilities, probs)
    with pytest.raises(AttributeError):
        explanation.layer = "x"  # frozen


def test_all_zero_cam_gives_all_zero_heatmap():
    model = tiny_cnn()
    with torch.no_grad():
        model.fc.weight.zero_()
    explanation = GradCAM(model).explain(images(2, 16).double())
    assert explanation.heatmap.abs().max() == 0
    assert torch.isfinite(explanation.heatmap).all()


@pytest.mark.parametrize("target", [2, [0, 4, 1], torch.tensor([3, 3, 0])])
def test_targets(target):
    model = tiny_vgg()
    x = images(3, 16).double()
    explanation = GradCAM(model).explain(x, target=target)
    expected = torch.as_tensor(target).expand(3) if not isinstance(target, list) else target
    assert explanation.target.tolist() == torch.as_tensor(expected).tolist()
    reference = reference_gradcam(model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


def test_explain_function_and_method_names():
    model = tiny_cnn()
    x = images(2, 16).double()
    a = leanxai.explain(model, x, method="gradcam")
    b = leanxai.explain(model, x, method="Grad-CAM++")
    assert a.method == "gradcam" and b.method == "gradcam++"
    assert torch.allclose(a.cam, GradCAM(model).explain(x).cam)
    with pytest.raises(ValueError, match="method 'limey'"):
        leanxai.explain(model, x, method="limey")
    # The baselines are reachable by name too.
    assert leanxai.explain(model, x, method="guided_backprop").method == "guided_backprop"


def test_float64_and_frozen_parameters():
    model = tiny_vgg()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = images(2, 16).double()
    explanation = GradCAM(model).explain(x)
    assert explanation.cam.dtype == torch.float64
    assert all(not p.requires_grad for p in model.parameters())
    reference = reference_gradcam(model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


def test_layer_given_as_module():
    model = tiny_cnn()
    explanation = GradCAM(model, layer=model.features[4]).explain(images(1, 16).double())
    assert explanation.layer == "features.4"


# -- the model is left as it was ------------------------------------------------------------------


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def _user_hooked(model: nn.Module) -> nn.Module:
    model.features.register_forward_hook(lambda m, i, o: None)
    model.register_forward_pre_hook(lambda m, i: None)
    return model


@pytest.mark.parametrize("builder", [tiny_cnn, tiny_vgg])
def test_model_unchanged_after_success(builder, state_guard):
    model = _user_hooked(builder())
    model.train()  # a training model: dropout and batch-norm statistics must not move
    model.features[0].weight.requires_grad_(False)
    unchanged = state_guard(model)
    for method in (GradCAM, GradCAMPlusPlus):
        for path in ("auto", "autograd"):
            method(model, path=path).explain(images(2, 16).double())
            unchanged()
    assert model.training


@pytest.mark.parametrize(
    ("make_explainer", "target", "error"),
    [
        (lambda m: GradCAM(m), 99, TargetError),
        (lambda m: GradCAM(m), [1, 2, 3], TargetError),
        (lambda m: GradCAM(m, layer="features.99"), None, LayerError),
        (lambda m: GradCAM(m, layer="nope"), None, LayerError),
    ],
)
def test_model_unchanged_after_error(make_explainer, target, error, state_guard):
    model = _user_hooked(tiny_cnn())
    model.train()
    unchanged = state_guard(model)
    with pytest.raises(error):
        make_explainer(model).explain(images(2, 16).double(), target=target)
    unchanged()


@pytest.mark.parametrize("path", ["auto", "autograd", "forward"])
def test_model_unchanged_when_a_module_throws(path, state_guard):
    model = _user_hooked(tiny_cnn())
    model.fc = nn.Sequential(Boom())  # throws after the target layer has run
    unchanged = state_guard(model)
    with pytest.raises(RuntimeError, match="boom"):
        GradCAM(model, layer="features", path=path).explain(images(2, 16).double())
    unchanged()
    model.features[0] = Boom()  # throws before the target layer
    unchanged = state_guard(model)
    with pytest.raises(RuntimeError, match="boom"):
        GradCAM(model, layer="features", path=path).explain(images(2, 16).double())
    unchanged()


# -- bad input ------------------------------------------------------------------------------------


def test_bad_inputs():
    model = tiny_cnn()
    explainer = GradCAM(model)
    bad = images(2, 16).double()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match=r"NaN.*\[1\]"):
        explainer.explain(bad)
    with pytest.raises(InputError, match="B, C, H, W"):
        explainer.explain(images(1, 16)[0].double())
    with pytest.raises(InputError, match="floating"):
        explainer.explain(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"torch.Tensor"):
        explainer.explain([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        GradCAM(model, path="fast")  # type: ignore[arg-type]
    with pytest.raises(TargetError, match=r"out of range.*5 classes"):
        explainer.explain(images(1, 16).double(), target=5)
    with pytest.raises(LayerError, match=r"did you mean 'features.4'"):
        GradCAM(model, layer="features.44").explain(images(1, 16).double())


def test_model_with_no_4d_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).double()
    with pytest.raises(LayerError, match="no layer with a 4-D"):
        GradCAM(model).explain(images(1, 8).double())


def test_model_that_returns_no_logits():
    class Weird(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"features": self.conv(x)}

    with pytest.raises(ModelOutputError, match="no logits"):
        GradCAM(Weird(), layer="conv").explain(images(1, 8))


def test_layer_that_runs_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(LayerError, match="ran 2 times"):
        GradCAM(Twice(), layer="conv").explain(images(1, 8))


# -- transformers image classifiers ---------------------------------------------------------------


def test_efficientnet_layer_discovery():
    torch.manual_seed(0)
    model = transformers.EfficientNetForImageClassification(
        transformers.EfficientNetConfig(num_labels=3)
    ).eval()
    explanation = GradCAM(model).explain(images(1, 64))
    assert explanation.layer == "efficientnet.encoder.top_activation"
    assert explanation.heatmap.shape == (1, 64, 64)


# -- grad mode and inference mode ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "path", "taken"),
    [
        (tiny_cnn, "auto", "forward"),
        (tiny_cnn, "forward", "forward"),
        (tiny_cnn, "autograd", "autograd"),
        (tiny_vgg, "auto", "autograd"),
    ],
)
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("method", [GradCAM, GradCAMPlusPlus])
def test_explain_inside_no_grad_and_inference_mode(builder, path, taken, mode, method, state_guard):
    model = builder()
    x = images(3, 16, seed=4).double()
    expected = method(model, path=path).explain(x)
    unchanged = state_guard(model)
    with mode():
        inputs = x.clone()  # inference tensors under inference_mode
        explanation = method(model, path=path).explain(inputs)
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled() == (mode is torch.inference_mode)
    unchanged()
    assert explanation.path == expected.path == taken
    assert torch.equal(explanation.target, expected.target)
    assert torch.allclose(explanation.cam, expected.cam, rtol=1e-12, atol=0)
    assert torch.allclose(explanation.heatmap, expected.heatmap, atol=1e-7)


def test_inference_tensors_as_inputs_outside_inference_mode():
    model = tiny_vgg()
    x = images(2, 16).double()
    with torch.inference_mode():
        frozen = x.clone()
    assert frozen.is_inference()
    explanation = GradCAM(model).explain(frozen)
    reference = reference_gradcam(model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


@pytest.mark.parametrize("builder", [tiny_cnn, tiny_vgg])
def test_model_made_under_inference_mode_says_so_in_one_line(builder):
    with torch.inference_mode():
        model = builder()
    x = images(2, 16).double()
    for path in ("auto", "autograd"):
        with pytest.raises(InputError, match=r"inference tensors.*torch.inference_mode\(\)") as e:
            GradCAM(model, path=path).explain(x)
        assert "\n" not in str(e.value)
        assert "features.0.weight" in str(e.value)
    if builder is tiny_cnn:  # no gradient needed: the forward path works
        assert GradCAM(model, path="forward").explain(x).path == "forward"


def test_inference_inputs_changed_in_place_by_the_model_say_so():
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x.mul_(1.0)  # a model that normalises its input in place
            return self.fc(self.conv(x))

    with torch.inference_mode():
        x = torch.rand(2, 3, 8, 8)
    with pytest.raises(InputError, match=r"^inputs are inference tensors \(created under"):
        GradCAM(InPlace(), layer="conv").explain(x)


# -- what is cached between calls, and when it is thrown away -------------------------------------


def test_cache_follows_a_replaced_head(state_guard):
    model = tiny_cnn()
    x = images(2, 16).double()
    explainer = GradCAM(model)
    assert explainer.explain(x).path == "forward"
    assert explainer._forward_verified == {"features": True}
    # A new head that is no longer GAP + linear: the cached verification must not survive.
    model.fc = nn.Sequential(nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 5)).double()
    explanation = explainer.explain(x)
    assert explanation.path == "autograd"
    reference = reference_gradcam(model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10
    # Back to a plain linear head (a new module): verified afresh, forward path again.
    model.fc = nn.Linear(12, 5).double()
    explanation = explainer.explain(x)
    assert explanation.path == "forward"
    assert explainer._forward_verified == {"features": True}
    reference = reference_gradcam(model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


@pytest.mark.parametrize("edit", ["data", "no_grad", "load_state_dict"])
def test_weights_edited_in_place_are_read_again(edit):
    model = tiny_cnn()
    x = images(3, 16).double()
    explainer = GradCAM(model)
    before = explainer.explain(x, target=1)
    new_weight = torch.randn_like(model.fc.weight)
    if edit == "data":  # through .data: no version counter sees it
        model.fc.weight.data.copy_(new_weight)
    elif edit == "no_grad":
        with torch.no_grad():
            model.fc.weight.copy_(new_weight)
    else:
        state = model.state_dict()
        state["fc.weight"] = new_weight
        model.load_state_dict(state)
    after = explainer.explain(x, target=1)
    assert after.path == "forward"
    reference = reference_gradcam(model, x, "features", after.target)
    assert relative_error(after.cam, reference) < 1e-10
    assert not torch.allclose(before.cam, after.cam)


def test_layer_given_as_module_is_resolved_again_after_a_change():
    model = tiny_cnn()
    explainer = GradCAM(model, layer=model.features[4])
    x = images(1, 16).double()
    assert explainer.explain(x).layer == "features.4"
    model.features[4] = nn.Conv2d(6, 12, 3, padding=1).double()  # the given module is gone
    with pytest.raises(LayerError, match="not a submodule"):
        explainer.explain(x)


def test_layer_argument_changed_after_construction():
    model = tiny_cnn()
    explainer = GradCAM(model)
    x = images(1, 16).double()
    assert explainer.explain(x).layer == "features"
    explainer.layer = "features.4"
    assert explainer.explain(x).layer == "features.4"


def test_training_flags_changed_between_calls_are_restored(state_guard):
    model = tiny_cnn()
    explainer = GradCAM(model)
    x = images(2, 16).double()
    first = explainer.explain(x)
    model.train()
    unchanged = state_guard(model)
    second = explainer.explain(x)
    unchanged()
    assert model.training and model.features[1].training
    assert torch.allclose(first.cam, second.cam)


def test_explanation_has_one_map_per_input():
    class SharedMap(nn.Module):
        """Returns one map for the whole batch from the target layer."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shared = self.conv(x.mean(0, keepdim=True))  # (1, 4, h, w)
            return self.fc(shared.mean((2, 3))).expand(x.shape[0], 2)

    with pytest.raises(LayerError, match="1 maps for a batch of 3"):
        GradCAM(SharedMap(), layer="conv").explain(images(3, 8))


# -- the cheap per-call checks say what the full ones would ---------------------------------------


def _structural_edits():
    """Edits to a tiny CNN, each a change of its module tree (applied one after another)."""

    def replace(model):
        model.fc = nn.Linear(12, 5).double()

    def add(model):
        model.features.add_module("extra", nn.Identity())

    def rename(model):
        model.features._modules["renamed"] = model.features._modules.pop("extra")

    def reorder(model):
        model._modules["features"] = model._modules.pop("features")  # now after pool and fc

    def leaf_gains_a_child(model):
        model.features[0].add_module("inner", nn.Identity())

    def deep_replace(model):
        model.features[4] = nn.Conv2d(6, 12, 3, padding=1).double()

    def swap_two(model):
        children = model._modules
        children["pool"], children["fc"] = children["fc"], children["pool"]

    def delete(model):
        del model.features[0]._modules["inner"]

    return [replace, add, rename, reorder, leaf_gains_a_child, deep_replace, swap_two, delete]


def test_tree_snapshot_sees_what_module_tree_sees():
    from leanxai.core.layers import TreeSnapshot, module_tree

    model = tiny_cnn()
    snapshot = TreeSnapshot(model)
    assert snapshot.unchanged(model) and snapshot.tree == module_tree(model)
    assert snapshot.modules == module_tree(model)[0]
    assert not snapshot.unchanged(tiny_cnn())  # another model with the same structure
    with torch.no_grad():
        model.fc.weight.add_(1)  # values are not structure
    model.features[4] = model.features[4]  # the same module under the same name
    assert snapshot.unchanged(model)
    for edit in _structural_edits():
        tree = module_tree(model)
        edit(model)
        assert module_tree(model) != tree, edit.__name__  # the full walk sees it ...
        assert not snapshot.unchanged(model), edit.__name__  # ... and so does the snapshot
        snapshot = TreeSnapshot(model)
        assert snapshot.unchanged(model)


@pytest.mark.parametrize("edit", _structural_edits()[:6], ids=lambda edit: edit.__name__)
def test_every_cached_fact_is_dropped_when_the_tree_changes(edit):
    model = tiny_cnn()
    x = images(2, 16).double()
    explainer = GradCAM(model)
    assert explainer.explain(x).path == "forward"
    facts = explainer._facts
    assert facts is not None and facts.layer == "features" and facts.head is model.fc
    if edit.__name__ == "rename":
        _structural_edits()[1](model)  # "extra" must exist first
        explainer.explain(x)
        facts = explainer._facts
    edit(model)
    explanation = explainer.explain(x)
    assert explainer._facts is not facts  # layer, head and verification learned afresh
    assert explainer._facts.head is model.fc
    reference = reference_gradcam(model, x, explanation.layer, explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


def test_cached_facts_are_dropped_for_a_new_model():
    x = images(2, 16).double()
    explainer = GradCAM(tiny_cnn(seed=0))
    explainer.explain(x)
    facts = explainer._facts
    explainer.model = tiny_cnn(seed=1)
    explanation = explainer.explain(x)
    assert explainer._facts is not facts and explainer._facts.head is explainer.model.fc
    reference = reference_gradcam(explainer.model, x, "features", explanation.target)
    assert relative_error(explanation.cam, reference) < 1e-10


def test_cached_facts_are_kept_while_nothing_changes():
    model = tiny_cnn()
    x = images(2, 16).double()
    explainer = GradCAM(model)
    explainer.explain(x)
    facts = explainer._facts
    model.train()  # flags are not structure; they are restored after each call
    explainer.explain(x)
    assert explainer._facts is facts and explainer._forward_verified == {"features": True}


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_path_map_is_bilinear_interpolate_exactly(batch):
    model = tiny_cnn(dtype=torch.float32)
    x = images(batch, 20)
    explanation = GradCAM(model).explain(x)
    assert explanation.path == "forward"
    upsampled = F.interpolate(
        explanation.cam[:, None], size=(20, 20), mode="bilinear", align_corners=False
    )[:, 0]
    peaks = upsampled.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    assert torch.equal(explanation.heatmap, upsampled / peaks)
    assert torch.equal(explanation.logits, model(x).detach())
    assert not explanation.logits.requires_grad and not explanation.cam.requires_grad


def test_input_checks_after_the_cheaper_sum():
    model = tiny_cnn(dtype=torch.float32)
    x = images(3, 16)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(InputError, match=r"NaN or infinite values \(samples \[1\]\)"):
        GradCAM(model).explain(x)
    x[1, 0, 2, 2] = float("-inf")
    with pytest.raises(InputError, match=r"samples \[1\]"):
        GradCAM(model).explain(x)
    # A sum that overflows though every value is finite: the full check lets it through.
    from leanxai.core import validate

    big = torch.full((2, 3, 16, 16), 60000.0, dtype=torch.float16)
    assert torch.isinf(big.sum())
    assert validate.images(big) is big
    assert validate.finite("values", torch.tensor([1 + 2j, 3j])) is not None
    with pytest.raises(InputError):
        validate.finite("values", torch.tensor([[1 + 2j], [complex(float("nan"), 0)]]))
    assert validate.finite("values", torch.ones(2, 3, dtype=torch.int64)) is not None
