"""Target-layer discovery (a candidate is a spatial map of the batch) and the module tree."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from conftest import tiny_cnn
from leanxai import GradCAM
from leanxai.core.errors import LayerError, LayerWarning
from leanxai.core.layers import discover_target_layer, find_target_layer, module_tree

transformers = pytest.importorskip("transformers")


def tiny_swin() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4
    )
    return transformers.SwinForImageClassification(config).eval()


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return transformers.ViTForImageClassification(config).eval()


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        layer_type="basic", depths=[1, 1], hidden_sizes=[8, 16], embedding_size=8, num_labels=3
    )
    return transformers.ResNetForImageClassification(config).eval()


class PositionBias(nn.Module):
    """Computes from its own parameter only: (1, heads, N, N) whatever the batch, as Swin's bias."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(1, 2, 6, 6))

    def forward(self) -> torch.Tensor:
        return self.table * 1.0


class WithBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bias = PositionBias()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x) + self.bias().mean()
        return self.fc(features.mean((2, 3)))


@pytest.mark.parametrize("batch", [1, 3])
def test_swin_batch_gives_one_map_per_input(batch: int) -> None:
    # Swin's relative position bias is (1, heads, N, N): 4-D, but not a map of the batch.
    model = tiny_swin()
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.warns(LayerWarning, match="patch_embeddings.projection"):
        explanation = GradCAM(model).explain(x)
    assert "relative_position_bias" not in explanation.layer
    assert explanation.heatmap.shape == (batch, 32, 32)
    assert explanation.cam.shape[0] == batch and explanation.target.shape == (batch,)


def test_swin_position_bias_named_explicitly_is_refused() -> None:
    model = tiny_swin()
    layer = "swin.encoder.layers.0.blocks.0.attention.relative_position_bias"
    x = torch.rand(3, 3, 32, 32)
    with pytest.raises(LayerError, match=r"1 maps for a batch of 3 inputs") as raised:
        GradCAM(model, layer=layer).explain(x)
    assert "\n" not in str(raised.value)


def test_module_without_batch_input_is_not_a_candidate() -> None:
    torch.manual_seed(0)
    model = WithBias().eval()
    for batch in (1, 2):  # at batch 1 only the input tells the bias apart
        discovery = discover_target_layer(model, torch.rand(batch, 3, 6, 6))
        assert discovery.name == "conv"
    with pytest.raises(LayerError, match="1 maps for a batch of 2"):
        GradCAM(model, layer="bias").explain(torch.rand(2, 3, 6, 6))


def test_vit_first_layer_warns_once_with_the_callers_location() -> None:
    model = tiny_vit()
    explainer = GradCAM(model)
    x = torch.rand(2, 3, 32, 32)
    with pytest.warns(LayerWarning) as caught:
        explanation = explainer.explain(x)
    assert explanation.layer == "vit.embeddings.patch_embeddings.projection"
    message = str(caught[0].message)
    assert "vit.embeddings.patch_embeddings.projection" in message and "first layer" in message
    assert "input more than the decision" in message
    assert caught[0].filename == __file__  # stacklevel=2: the caller's line
    assert issubclass(LayerWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explainer.explain(x)  # discovery is cached: no second warning


def test_cnn_discovery_does_not_warn() -> None:
    model = tiny_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explanation = GradCAM(model).explain(torch.rand(2, 3, 16, 16, dtype=torch.float64))
    assert explanation.layer == "features"
    discovery = discover_target_layer(model, torch.rand(1, 3, 8, 8, dtype=torch.float64))
    assert (discovery.name, discovery.shape, discovery.first) == ("features", (1, 12, 4, 4), False)
    assert find_target_layer(model, torch.rand(1, 3, 8, 8, dtype=torch.float64)) == "features"


def test_one_by_one_layer_is_refused() -> None:
    model = tiny_resnet()
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(LayerError, match="1x1 map cannot localise") as raised:
        GradCAM(model, layer="resnet.pooler").explain(x)
    assert "resnet.pooler" in str(raised.value) and "\n" not in str(raised.value)
    # Discovery never picks one: the last map with more than one position.
    assert GradCAM(model).explain(x).layer == "resnet.encoder.stages.1"


def test_discovery_needs_a_map_no_larger_than_the_image() -> None:
    class Upsampler(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.up(self.conv(x)).mean((2, 3)))

    assert find_target_layer(Upsampler(), torch.rand(2, 3, 8, 8)) == "conv"


def test_module_tree_sees_every_structural_change() -> None:
    model = tiny_cnn()
    tree = module_tree(model)
    assert tree == module_tree(model)
    assert len(tree[0]) == len(set(tree[0])) == len(list(model.modules()))  # each module once
    assert set(tree[0]) == set(model.modules())
    assert tree[0][0] is model
    # Parameter values are not part of the tree.
    with torch.no_grad():
        model.fc.weight.add_(1)
    assert module_tree(model) == tree
    model.fc = nn.Linear(12, 5).double()  # replaced
    replaced = module_tree(model)
    assert replaced != tree
    model.features.add_module("extra", nn.Identity())  # added
    added = module_tree(model)
    assert added != replaced
    model.features._modules["renamed"] = model.features._modules.pop("extra")  # renamed
    assert module_tree(model) != added
    model.features[4] = model.features[4]  # the same module under the same name
    assert module_tree(model) == module_tree(model)


def test_module_tree_survives_shared_and_cyclic_modules() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    modules, _ = module_tree(model)
    assert modules == (model, shared, model[1])
    model.add_module("loop", model)  # a cycle: the walk must end
    assert module_tree(model)[0] == (model, shared, model[1])
