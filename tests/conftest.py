"""Shared fixtures: tiny deterministic models and a snapshot of everything a call may not change."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass
class ModelState:
    hooks: dict[str, tuple[Any, ...]]
    requires_grad: dict[str, bool]
    training: dict[str, bool]
    state: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    global_hooks: tuple[int, int, int]


def snapshot(model: nn.Module) -> ModelState:
    from torch.nn.modules import module as module_mod

    hooks = {}
    for name, module in model.named_modules():
        hooks[name] = tuple(
            tuple(getattr(module, attr, {}).keys()) for attr in _HOOK_DICTS if hasattr(module, attr)
        )
    return ModelState(
        hooks=hooks,
        requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
        training={n: m.training for n, m in model.named_modules()},
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        grads={n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        global_hooks=(
            len(module_mod._global_forward_hooks),
            len(module_mod._global_forward_pre_hooks),
            len(module_mod._global_backward_hooks),
        ),
    )


def assert_unchanged(model: nn.Module, before: ModelState) -> None:
    after = snapshot(model)
    assert after.hooks == before.hooks, "hooks left on the model"
    assert after.requires_grad == before.requires_grad
    assert after.training == before.training
    assert after.global_hooks == before.global_hooks
    assert after.state.keys() == before.state.keys()
    for key, value in before.state.items():
        assert torch.equal(after.state[key], value), f"{key} changed"
    for key, grad in before.grads.items():
        if grad is None:
            assert after.grads[key] is None, f"{key}.grad was set"
        else:
            assert torch.equal(after.grads[key], grad)
    assert torch.is_grad_enabled()


@pytest.fixture
def state_guard():
    """Call with a model; returns a function that asserts the model is unchanged."""

    def take(model: nn.Module):
        before = snapshot(model)
        return lambda: assert_unchanged(model, before)

    return take


class TinyCNN(nn.Module):
    """Conv features with an in-place ReLU, global average pool, one linear layer."""

    def __init__(self, classes: int = 5, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class TinyVGG(nn.Module):
    """Flatten + two linear layers after the features: the autograd path."""

    def __init__(self, classes: int = 5, width: int = 4, size: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * (size // 2) ** 2, 16),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(16, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def tiny_cnn(seed: int = 0, dtype: torch.dtype = torch.float64) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN().to(dtype)
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def tiny_vgg(seed: int = 0, dtype: torch.dtype = torch.float64) -> TinyVGG:
    torch.manual_seed(seed)
    return TinyVGG().to(dtype).eval()


def reference_gradcam(
    model: nn.Module, inputs: torch.Tensor, layer: str, target: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM written literally from Selvaraju et al. (2017), in float64.

    A hook keeps the layer's output A (the network continues with a copy, so an in-place ReLU after
    the layer cannot change A); the gradient of the class score y^c with respect to A comes from
    autograd; alpha_k^c = (1/Z) sum_ij dy^c/dA^k_ij; L = ReLU(sum_k alpha_k^c A^k).
    """
    model = copy.deepcopy(model).double().eval().requires_grad_(True)
    kept: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        kept["A"] = output
        return output.clone()

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        output = model(inputs.double())
    finally:
        handle.remove()
    logits = output.logits if hasattr(output, "logits") else output
    activations = kept["A"]
    maps = []
    for b in range(inputs.shape[0]):
        (grad,) = torch.autograd.grad(logits[b, target[b]], activations, retain_graph=True)
        alpha = grad[b].sum(dim=(1, 2)) / (grad.shape[2] * grad.shape[3])
        maps.append(torch.relu((alpha[:, None, None] * activations[b]).sum(dim=0)))
    return torch.stack(maps).detach()


def reference_gradcam_plus_plus(
    model: nn.Module, inputs: torch.Tensor, layer: str, target: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al., 2018, eq. 19 with the exponential-score closed form)."""
    model = copy.deepcopy(model).double().eval().requires_grad_(True)
    kept: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        kept["A"] = output
        return output.clone()

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        output = model(inputs.double())
    finally:
        handle.remove()
    logits = output.logits if hasattr(output, "logits") else output
    activations = kept["A"]
    maps = []
    for b in range(inputs.shape[0]):
        (grad,) = torch.autograd.grad(logits[b, target[b]], activations, retain_graph=True)
        g, a = grad[b], activations[b]  # (C, h, w)
        numerator = g**2
        denominator = 2 * g**2 + a.sum(dim=(1, 2), keepdim=True) * g**3
        alpha = torch.where(denominator != 0, numerator / denominator, torch.zeros_like(g))
        weights = (alpha * torch.relu(g)).sum(dim=(1, 2))
        maps.append(torch.relu((weights[:, None, None] * a).sum(dim=0)))
    return torch.stack(maps).detach()


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().clamp_min(1e-30)
    return float((ours.double() - reference).abs().max() / scale)
