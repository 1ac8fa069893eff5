"""Baseline explainers: known answers, float64 literal references, targets, state, RNG hygiene."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_cnn, tiny_vgg
from leanxai.core.errors import InputError, ModelOutputError, TargetError
from leanxai.explainers.base import Explainer
from leanxai.explainers.baselines import (
    BASELINES,
    LIME,
    RISE,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
    generate_masks,
    grid_segments,
    slic_segments,
)

pytest.importorskip("captum.attr")

# Cheap settings for 16x16 images; every explainer's defaults are exercised in one test below.
FAST: dict[str, Callable[..., Explainer]] = {
    "ig": lambda m, **kw: IntegratedGradients(m, steps=8, **kw),
    "guided_backprop": lambda m, **kw: GuidedBackprop(m, **kw),
    "occlusion": lambda m, **kw: Occlusion(m, window=4, **kw),
    "kernelshap": lambda m, **kw: KernelSHAP(
        m, segments="grid", cells=4, n_samples=48, perturbations_per_eval=16, **kw
    ),
    "lime": lambda m, **kw: LIME(
        m, segments="grid", cells=4, n_samples=48, perturbations_per_eval=16, **kw
    ),
    "rise": lambda m, **kw: RISE(m, n_masks=64, cells=4, batch_size=16, **kw),
}
RANDOM = ("kernelshap", "lime", "rise")
PATHS = {
    "ig": "autograd",
    "guided_backprop": "autograd",
    "occlusion": "forward",
    "kernelshap": "forward",
    "lime": "forward",
    "rise": "forward",
}


def images(batch: int = 2, size: int = 16, seed: int = 1, channels: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=generator, dtype=torch.float64)


def blocks(batch: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    """4x4 blocks of random colours: images SLIC can segment (it merges pure noise into one)."""
    generator = torch.Generator().manual_seed(seed)
    colours = torch.rand(batch, 3, 4, 4, generator=generator, dtype=torch.float64)
    return colours.repeat_interleave(size // 4, 2).repeat_interleave(size // 4, 3)


class Linear(nn.Module):
    """logit_k = sum(w_k * x) + b_k."""

    def __init__(self, channels: int = 3, size: int = 8, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        shape = (classes, channels, size, size)
        self.weight = nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(classes, generator=generator, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.weight) + self.bias


class Region(nn.Module):
    """logit 0 = 10 * mean of x over rows 4:8, columns 8:12; logit 1 = 5, a constant.

    The scale and the constant make the class probability swing from ~0 to ~1 as the region is
    masked; RISE, which weights masks by the probability, needs that contrast (with logit 1 = 0
    and logit 0 ~ 1, the probability stays in [0.5, 0.75] and its map drowns in sampling noise).
    """

    rows, cols = slice(4, 8), slice(8, 12)

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.scale * x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([score, torch.full_like(score, 5.0)], dim=1)


class Flaky(nn.Module):
    """Passes through on the first call and raises on every later one."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("flaky")
        return x


def _user_hooked(model: nn.Module) -> nn.Module:
    model.features.register_forward_hook(lambda m, i, o: None)
    model.register_forward_pre_hook(lambda m, i: None)
    return model


# -- the Explanation, targets, determinism --------------------------------------------------------


def test_registry():
    assert set(BASELINES) == set(FAST)
    for name, cls in BASELINES.items():
        assert cls.name == name


@pytest.mark.parametrize("name", list(FAST))
def test_explanation_fields(name):
    model = tiny_vgg()
    x = images(3)
    explanation = FAST[name](model).explain(x)
    logits = model(x)
    assert explanation.heatmap.shape == (3, 16, 16)
    assert explanation.heatmap.dtype == torch.float32
    assert explanation.heatmap.min() >= 0 and explanation.heatmap.max() <= 1
    peaks = explanation.heatmap.flatten(1).amax(1)
    assert torch.all((peaks - 1).abs() < 1e-6)
    assert explanation.target.dtype == torch.int64
    assert torch.equal(explanation.target, logits.argmax(1))
    assert torch.allclose(explanation.logits, logits)
    assert (explanation.method, explanation.path) == (name, PATHS[name])
    assert explanation.cam is None and explanation.layer is None


@pytest.mark.parametrize("name", list(FAST))
def test_heatmap_is_positive_channel_sum_of_attribution(name):
    model = tiny_cnn()
    x = images(2)
    explainer = FAST[name](model)
    attribution = explainer.attribute(x, target=1)
    channels = 1 if name == "rise" else 3
    assert attribution.shape == (2, channels, 16, 16)
    assert attribution.dtype == torch.float64
    maps = attribution.clamp_min(0).sum(1)
    expected = maps / maps.flatten(1).amax(1)[:, None, None]
    assert torch.allclose(explainer.explain(x, target=1).heatmap.double(), expected, atol=1e-6)


@pytest.mark.parametrize("name", list(FAST))
@pytest.mark.parametrize("target", [2, [0, 4], torch.tensor([3, 1])])
def test_explicit_targets(name, target):
    model = tiny_cnn()
    x = images(2)
    explainer = FAST[name](model)
    explanation = explainer.explain(x, target=target)
    assert explanation.target.tolist() == torch.as_tensor(target).expand(2).tolist()
    # The explained class matters: each sample alone, with its own class, gives the same map.
    for b, cls in enumerate(explanation.target.tolist()):
        alone = explainer.explain(x[b : b + 1], target=cls).heatmap[0]
        assert torch.allclose(alone, explanation.heatmap[b], atol=1e-5)
    other = explainer.explain(x, target=0).heatmap
    assert not torch.allclose(other, explanation.heatmap)


@pytest.mark.parametrize("name", list(FAST))
def test_deterministic_and_global_rng_untouched(name):
    model = tiny_cnn()
    x = images(2)
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()
    first = FAST[name](model).attribute(x)
    second = FAST[name](model).attribute(x)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert torch.equal(first, second)
    if name in RANDOM:
        assert not torch.equal(first, FAST[name](model, seed=1).attribute(x))


def test_defaults_run():
    model = tiny_cnn(dtype=torch.float32)
    x = images(1, 24).float()
    for cls in BASELINES.values():
        explanation = cls(model).explain(x)
        assert explanation.heatmap.shape == (1, 24, 24)
        assert explanation.heatmap.max() == 1


# -- known answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("internal_batch_size", [None, 3])
def test_integrated_gradients_on_linear_model_is_x_times_w(internal_batch_size):
    model = Linear()
    x = images(2, 8)
    ig = IntegratedGradients(model, steps=4, internal_batch_size=internal_batch_size)
    attribution = ig.attribute(x, target=[2, 0])
    expected = x * model.weight[[2, 0]].detach()
    assert torch.allclose(attribution, expected, rtol=1e-10, atol=1e-12)
    baseline = torch.full((3, 8, 8), 0.25, dtype=torch.float64)
    shifted = IntegratedGradients(model, steps=4, baseline=baseline).attribute(x, target=1)
    assert torch.allclose(shifted, (x - 0.25) * model.weight[1].detach(), atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_occlusion_window_one_on_linear_model_is_x_times_w(channels):
    model = Linear(channels=channels)
    x = images(2, 8, channels=channels)
    attribution = Occlusion(model, window=1, perturbations_per_eval=7).attribute(x, target=[1, 2])
    # The window covers every channel of one pixel: each channel gets the pixel's sum.
    expected = (x * model.weight[[1, 2]].detach()).sum(1, keepdim=True).expand_as(x)
    # Captum divides by the window counts in float32.
    assert torch.allclose(attribution, expected, rtol=1e-6, atol=1e-7)


def test_occlusion_windows_at_the_edge_are_cut():
    model = Linear(size=10)
    x = images(1, 10)
    attribution = Occlusion(model, window=4).attribute(x, target=0)  # windows 0:4, 4:8, 8:10
    contribution = (x * model.weight[0].detach()).sum(1)[0]  # (10, 10)
    for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
        for cols in (slice(0, 4), slice(4, 8), slice(8, 10)):
            block = attribution[0, 0, rows, cols]
            assert torch.allclose(block, contribution[rows, cols].sum().expand_as(block))


def reference_rise(
    model: nn.Module, x: torch.Tensor, masks: torch.Tensor, target: torch.Tensor, p: float
) -> torch.Tensor:
    """RISE written literally from Petsiuk et al. (2018), eq. 6, in float64:
    S_x(l) = 1 / (E[M] N) sum_i f(x * M_i) M_i(l), with f the softmax probability of the class."""
    model = copy.deepcopy(model).double().eval()
    masks = masks.double()
    saliency = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.float64)
    with torch.no_grad():
        for b in range(x.shape[0]):
            for mask in masks:
                score = model((x[b] * mask)[None].double()).softmax(dim=1)[0, target[b]]
                saliency[b] += score * mask
    return saliency / (masks.shape[0] * p)


@pytest.mark.parametrize("builder", [tiny_cnn, tiny_vgg])
def test_rise_matches_literal_reference(builder):
    model = builder()
    x = images(2)
    masks = generate_masks(40, 4, 0.3, (16, 16), torch.Generator().manual_seed(5))
    explainer = RISE(model, masks=masks, p=0.3, batch_size=16)
    attribution = explainer.attribute(x, target=[1, 3])
    reference = reference_rise(model, x, masks, torch.tensor([1, 3]), 0.3)
    assert torch.allclose(attribution[:, 0], reference, rtol=1e-10, atol=1e-12)


def test_rise_masks_are_the_seeded_masks_and_batch_size_does_not_matter():
    model = tiny_cnn()
    x = images(1)
    masks = generate_masks(50, 5, 0.5, (16, 16), torch.Generator().manual_seed(7))
    assert masks.shape == (50, 16, 16)
    assert masks.min() >= 0 and masks.max() <= 1
    seeded = RISE(model, n_masks=50, cells=5, seed=7, batch_size=8).attribute(x)
    given = RISE(model, masks=masks, batch_size=50).attribute(x)
    assert torch.allclose(seeded, given, rtol=1e-6)


def test_rise_mask_statistics():
    masks = generate_masks(2000, 7, 0.3, (20, 20), torch.Generator().manual_seed(0))
    assert abs(float(masks.mean()) - 0.3) < 0.02
    # The random shift: two masks with the same grid but different shifts are not equal.
    assert not torch.equal(masks[:, :, :3].mean(0), masks[:, :, -3:].mean(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda m: RISE(m, n_masks=500, cells=4, batch_size=100),
        lambda m: RISE(m, n_masks=500, cells=7, batch_size=100, seed=3),
        lambda m: Occlusion(m),
        lambda m: Occlusion(m, window=3, stride=1),
        lambda m: LIME(m, segments="grid", cells=4, n_samples=64),
        lambda m: KernelSHAP(m, segments="grid", cells=4, n_samples=64),
        lambda m: LIME(m, n_samples=64),  # SLIC superpixels
        lambda m: KernelSHAP(m, n_samples=64),
        lambda m: IntegratedGradients(m),
        lambda m: GuidedBackprop(m),
    ],
)
def test_peak_falls_in_the_region_the_model_looks_at(make):
    model = Region()
    x = blocks(2) + 0.5
    heatmap = make(model).explain(x, target=0).heatmap
    for b in range(2):
        row, col = divmod(int(heatmap[b].argmax()), 16)
        assert 4 <= row < 8 and 8 <= col < 12, (row, col)
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[Region.rows, Region.cols] = True
        assert heatmap[b][inside].mean() > 1.2 * heatmap[b][~inside].mean()


# -- guided backprop ------------------------------------------------------------------------------


class _GuidedReLU(torch.autograd.Function):
    """Springenberg et al. (2015): R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad.clamp_min(0) * (x > 0)


class _GuidedReLUModule(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedReLU.apply(x)


def reference_guided_backprop(model: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    model = copy.deepcopy(model).double().eval()
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, _GuidedReLUModule())
    leaf = x.double().clone().requires_grad_(True)
    score = model(leaf)[torch.arange(x.shape[0]), target].sum()
    (grad,) = torch.autograd.grad(score, leaf)
    return grad


@pytest.mark.parametrize("builder", [tiny_cnn, tiny_vgg])
def test_guided_backprop_with_in_place_relu_matches_reference(builder, state_guard):
    model = _user_hooked(builder())
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    x = images(2)
    unchanged = state_guard(model)
    attribution = GuidedBackprop(model).attribute(x, target=[1, 2])
    unchanged()
    reference = reference_guided_backprop(model, x, [1, 2])
    assert reference.abs().max() > 0
    assert torch.allclose(attribution, reference, rtol=1e-10, atol=1e-12)
    # The same numbers as with out-of-place ReLUs, and different from the plain gradient.
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    assert torch.allclose(GuidedBackprop(plain).attribute(x, target=[1, 2]), attribution)
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(leaf)[:, 1].sum(), leaf)
    assert not torch.allclose(gradient[0], attribution[0])


# -- the model and the inputs are left as they were -----------------------------------------------


@pytest.mark.parametrize("name", list(FAST))
def test_model_and_inputs_unchanged_after_success(name, state_guard):
    model = _user_hooked(tiny_vgg())
    model.train()  # dropout must be off during the call, and the flag restored
    model.features[0].weight.requires_grad_(False)
    unchanged = state_guard(model)
    x = images(2)
    explainer = FAST[name](model)
    first = explainer.explain(x)
    unchanged()
    assert model.training
    assert x.grad is None and not x.requires_grad
    assert torch.equal(x, images(2))
    assert torch.equal(explainer.explain(x).heatmap, first.heatmap)  # no dropout
    with torch.no_grad():  # the gradient methods switch grad mode on for themselves
        assert torch.equal(explainer.explain(x).heatmap, first.heatmap)
    unchanged()


@pytest.mark.parametrize("name", list(FAST))
def test_model_unchanged_after_error(name, state_guard):
    model = _user_hooked(tiny_cnn())
    model.train()
    unchanged = state_guard(model)
    with pytest.raises(TargetError):
        FAST[name](model).explain(images(2), target=7)
    unchanged()
    # An error inside the attribution method, after Captum has set up (guided backprop's hooks).
    model.pool = nn.Sequential(Flaky(), model.pool)
    unchanged = state_guard(model)
    with pytest.raises(RuntimeError, match="flaky"):
        FAST[name](model).explain(images(2))
    unchanged()
    assert model.training


# -- segments -------------------------------------------------------------------------------------


def test_segments():
    grid = grid_segments(16, 12, 4)
    assert grid.shape == (16, 12) and grid.dtype == torch.int64
    assert sorted(grid.unique().tolist()) == list(range(16))
    assert torch.equal(grid[:4, :3], torch.zeros(4, 3, dtype=torch.int64))
    labels = slic_segments(blocks(1, 32)[0], n_segments=20)
    assert labels.shape == (32, 32)
    assert sorted(labels.unique().tolist()) == list(range(int(labels.max()) + 1))
    assert 5 <= int(labels.max()) + 1 <= 40
    explainer = LIME(tiny_cnn(), segments=torch.tensor([[0, 5], [5, 9]]).repeat_interleave(8, 0))
    with pytest.raises(ValueError, match="do not fit"):
        explainer.explain(images(1))


def test_slic_on_noise_falls_back_to_a_grid():
    explainer = LIME(tiny_cnn(), n_samples=16, n_segments=16)
    noise = images(1)  # SLIC merges i.i.d. noise into one segment
    with pytest.warns(UserWarning, match="single segment") as record:
        labels = explainer.feature_mask(noise)
    assert torch.equal(labels[0], grid_segments(16, 16, 4))
    with pytest.warns(UserWarning, match="single segment") as record:
        explainer.explain(noise)
    assert record[0].filename == __file__


def test_given_segments_give_constant_maps_per_segment():
    labels = torch.zeros(16, 16, dtype=torch.int64)
    labels[:, 8:] = 3
    labels[8:, :] += 7
    attribution = KernelSHAP(tiny_cnn(), segments=labels, n_samples=16).attribute(images(1))
    for value in labels.unique():
        region = attribution[0][:, labels == value]
        assert torch.all(region == region[0, 0])


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda m: IntegratedGradients(m, steps=0), "steps"),
        (lambda m: IntegratedGradients(m, internal_batch_size=-1), "internal_batch_size"),
        (lambda m: LIME(m, n_samples=0), "n_samples"),
        (lambda m: KernelSHAP(m, n_samples=2.5), "n_samples"),
        (lambda m: LIME(m, segments="quickshift"), "segments"),
        (lambda m: LIME(m, cells=0), "cells"),
        (lambda m: LIME(m, kernel_width=0), "kernel_width"),
        (lambda m: KernelSHAP(m, seed=-1), "seed"),
        (lambda m: RISE(m, n_masks=0), "n_masks"),
        (lambda m: RISE(m, p=0.0), "p must"),
        (lambda m: RISE(m, p=1.0), "p must"),
        (lambda m: RISE(m, p=1.5), "p must"),
        (lambda m: RISE(m, cells=0), "cells"),
        (lambda m: RISE(m, batch_size=0), "batch_size"),
        (lambda m: RISE(m, masks=torch.ones(0, 16, 16)), "masks"),
        (lambda m: Occlusion(m, window=0), "window"),
        (lambda m: Occlusion(m, perturbations_per_eval=0), "perturbations_per_eval"),
    ],
)
def test_bad_options(make, match):
    with pytest.raises(ValueError, match=match):
        make(tiny_cnn())


def test_bad_options_found_at_call_time():
    model = tiny_cnn()
    x = images(1)
    with pytest.raises(ValueError, match="larger than the image"):
        Occlusion(model, window=17).explain(x)
    with pytest.raises(ValueError, match="must not exceed window"):
        Occlusion(model, window=2, stride=3).explain(x)
    with pytest.raises(ValueError, match="do not fit"):
        RISE(model, masks=torch.ones(4, 8, 8)).explain(x)
    with pytest.raises(ValueError, match="broadcast"):
        IntegratedGradients(model, baseline=torch.zeros(2, 16, 16)).explain(x)
    with pytest.raises(ValueError, match="at least 2 segments"):
        KernelSHAP(model, segments="grid", cells=1).explain(x)


@pytest.mark.parametrize("name", list(FAST))
def test_bad_inputs_and_outputs(name):
    class NoLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3).double()

        def forward(self, x: torch.Tensor) -> Any:
            return {"features": self.conv(x)}

    class Maps(NoLogits):
        def forward(self, x: torch.Tensor) -> Any:
            return self.conv(x)  # (B, 2, h, w), not (B, K)

    with pytest.raises(ModelOutputError, match="no logits"):
        FAST[name](NoLogits()).explain(images(1))
    with pytest.raises(ModelOutputError, match="expected"):
        FAST[name](Maps()).explain(images(1))
    bad = images(2)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        FAST[name](tiny_cnn()).explain(bad)
    with pytest.raises(InputError, match="B, C, H, W"):
        FAST[name](tiny_cnn()).explain(images(1)[0])
    with pytest.raises(TypeError, match=r"nn\.Module"):
        FAST[name]("model")
