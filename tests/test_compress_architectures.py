"""compress() on the architectures people ship (issue 22): transformers ResNet-18/50 layouts,
MobileNetV2, EfficientNet, the zoo's EfficientNet-Lite0 layout, a ViT. Random weights, narrow
widths (the layouts, residual blocks, depthwise convolutions, BatchNorms, ReLU6/SiLU,
squeeze-and-excitation and attention are the real ones); the full-size runs are in
benchmarks/compression.py --models architectures."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from leanxai.compress import compress, load_compressed, save_compressed, weight_relevance
from leanxai.core.models import logits_of

transformers = pytest.importorskip("transformers")


def resnet(layer_type: str, depths: list[int]) -> nn.Module:
    config = transformers.ResNetConfig(
        num_labels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32] if layer_type == "basic" else [16, 32, 32, 64],
        depths=depths,
        layer_type=layer_type,
    )
    return transformers.ResNetForImageClassification(config)


def mobilenet_v2() -> nn.Module:
    config = transformers.MobileNetV2Config(num_labels=3, image_size=32, depth_multiplier=0.35)
    return transformers.MobileNetV2ForImageClassification(config)


def efficientnet() -> nn.Module:
    config = transformers.EfficientNetConfig(
        num_labels=3,
        image_size=32,
        width_coefficient=0.25,
        depth_coefficient=0.5,
        hidden_dim=320,  # round_filters(1280) at this width; the default is B7's
    )
    return transformers.EfficientNetForImageClassification(config)


def efficientnet_lite0() -> nn.Module:
    from leanxai.zoo.efficientnet_lite import EfficientNetLite0

    return EfficientNetLite0(num_classes=3)


def vit() -> nn.Module:
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return transformers.ViTForImageClassification(config)


MODELS = {
    "resnet18": (lambda: resnet("basic", [2, 2, 2, 2]), 32),
    "resnet50": (lambda: resnet("bottleneck", [3, 4, 6, 3]), 32),
    "mobilenet_v2": (mobilenet_v2, 32),
    "efficientnet": (efficientnet, 32),
    "efficientnet_lite0": (efficientnet_lite0, 32),
    "vit": (vit, 16),
}


def _initialise(model: nn.Module) -> None:
    """He-initialised weights, unit BatchNorms: transformers' random init can give logits of
    1e-25 (MobileNetV2), which leaves nothing to propagate."""
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()


def _randomise_norms(model: nn.Module) -> None:
    """Running statistics away from (0, 1), so that folding them matters."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))


@pytest.mark.parametrize("name", list(MODELS))
def test_compress_runs_and_leaves_the_model_unchanged(name, tmp_path, state_guard):
    build, size = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    _randomise_norms(model)
    unchanged = state_guard(model)
    inputs = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = logits_of(model(inputs))
    result = compress(model, inputs, finetune_steps=2, batch_size=4)
    unchanged()
    with torch.no_grad():
        assert torch.equal(logits_of(model(inputs)), before)  # BatchNorm not folded in place
    assert result.metadata["sparsity"] == pytest.approx(0.4, abs=0.01)
    path = tmp_path / f"{name}.safetensors"
    save_compressed(result, path)
    skeleton = copy.deepcopy(build() if name != "efficientnet_lite0" else model)
    loaded = load_compressed(path, model=skeleton)
    with torch.no_grad():
        assert torch.allclose(logits_of(loaded(inputs)), logits_of(result.model(inputs)), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet", "vit"])
def test_every_weight_gets_relevance(name):
    build, size = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    _initialise(model)
    inputs = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    relevance = weight_relevance(model, inputs, reduce="absolute")
    convs = {
        f"{n}.weight"
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and not n.endswith("shortcut.convolution")
    }
    assert convs <= set(relevance)
    for key, value in relevance.items():
        assert bool(torch.isfinite(value).all()), key
        assert float(value.sum()) > 0, key  # every layer on the path receives relevance


def test_depthwise_convolutions_are_scored_per_group():
    model = mobilenet_v2().eval()
    _initialise(model)
    depthwise = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    ]
    assert depthwise
    relevance = weight_relevance(model, torch.randn(2, 3, 32, 32), reduce="l2")
    for name in depthwise:
        assert relevance[f"{name}.weight"].shape == model.get_submodule(name).weight.shape
        assert float(relevance[f"{name}.weight"].sum()) > 0
