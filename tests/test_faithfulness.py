"""Deletion, insertion, completeness and max-sensitivity: known answers and literal references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from leanxai import GradCAM, threshold
from leanxai.core.errors import InputError, ModelOutputError
from leanxai.evaluate.faithfulness import (
    blur,
    completeness,
    deletion,
    deletion_curve,
    insertion,
    insertion_curve,
    max_sensitivity,
    pixel_order,
)
from leanxai.explainers.base import Explainer, Explanation

SIZE = 12


class RegionModel(nn.Module):
    """logit 0 = gain * mean of the input over a fixed square; logit 1 = 0. Nothing else counts."""

    def __init__(self, size: int = SIZE, gain: float = 12.0) -> None:
        super().__init__()
        region = torch.zeros(size, size)
        region[2:6, 3:8] = 1
        self.register_buffer("region", region)
        self.gain = gain
        self.scale = nn.Parameter(torch.ones(()))  # a parameter, so state_guard has one to check

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x * self.region).sum(dim=(1, 2, 3)) / (self.region.sum() * x.shape[1])
        first = self.gain * self.scale * (inside - 0.5)
        return torch.stack([first, torch.zeros_like(first)], dim=1)


class Mixer(nn.Module):
    """A small random float64 CNN, for comparisons with the literal references."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = nn.functional.adaptive_avg_pool2d(y, 2).flatten(1)
        return self.fc(self.drop(y))


def region_images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, SIZE, SIZE, generator=generator) * 0.2
    images[:, :, 2:6, 3:8] = 1.0
    return images


def oracle_heatmap(batch: int) -> torch.Tensor:
    heat = torch.zeros(batch, SIZE, SIZE)
    heat[:, 2:6, 3:8] = 1.0
    return heat + 0.01 * torch.rand(batch, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------------------------
# Literal references (float64, loops straight from METRICS.md)


def reference_order(heatmap: np.ndarray, tie_seed: int) -> list[int]:
    """Decreasing saliency; ties in the order of one fixed permutation."""
    perm = torch.randperm(heatmap.size, generator=torch.Generator().manual_seed(tie_seed)).numpy()
    position = {int(p): i for i, p in enumerate(perm)}
    flat = heatmap.reshape(-1)
    return sorted(range(flat.size), key=lambda p: (-flat[p], position[p]))


def reference_curve(model, image, heatmap, target, steps, start, insert, tie_seed=0):
    """One image: the probability after each step and the trapezoid area, by loops."""
    channels, height, width = image.shape
    order = reference_order(heatmap, tie_seed)
    pixels = height * width
    probabilities = []
    for k in range(steps + 1):
        count = (k * pixels) // steps
        current = (start if insert else image).copy()
        for p in order[:count]:
            row, col = divmod(p, width)
            for c in range(channels):
                current[c, row, col] = image[c, row, col] if insert else start[c, row, col]
        with torch.no_grad():
            logits = model(torch.from_numpy(current)[None]).double()[0].numpy()
        exp = np.exp(logits - logits.max())
        probabilities.append(exp[target] / exp.sum())
    fractions = [((k * pixels) // steps) / pixels for k in range(steps + 1)]
    area = sum(
        (fractions[k + 1] - fractions[k]) * (probabilities[k + 1] + probabilities[k]) / 2
        for k in range(steps)
    )
    return np.array(probabilities), area


# --------------------------------------------------------------------------------------------
# Known answers


def test_oracle_beats_random_and_inverted_on_deletion_and_insertion():
    model = RegionModel()
    images = region_images(4)
    oracle = oracle_heatmap(4)
    random = torch.rand(4, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    inverted = 1.0 - oracle
    scores = {
        name: (deletion(model, images, heat, steps=24), insertion(model, images, heat, steps=24))
        for name, heat in {"oracle": oracle, "random": random, "inverted": inverted}.items()
    }
    for other in ("random", "inverted"):
        assert bool((scores["oracle"][0] < scores[other][0] - 0.05).all()), other
        assert bool((scores["oracle"][1] > scores[other][1] + 0.05).all()), other


def test_curve_ends():
    model = RegionModel()
    images = region_images(2)
    curve = deletion_curve(model, images, oracle_heatmap(2), steps=8)
    assert curve.fractions.tolist() == [k / 8 for k in range(9)]
    probs = model(images).softmax(1)[:, 0]
    torch.testing.assert_close(curve.probabilities[:, 0], probs)
    # All removed: zero image -> logit 0 = -gain/2.
    expected = torch.tensor([[-6.0, 0.0]]).softmax(1)[0, 0]
    torch.testing.assert_close(curve.probabilities[:, -1], expected.expand(2))
    assert curve.target.tolist() == [0, 0]


def test_insertion_starts_blurred_and_ends_at_the_image():
    model = RegionModel()
    images = region_images(2)
    curve = insertion_curve(model, images, oracle_heatmap(2), steps=6)
    start = model(blur(images)).softmax(1)[:, 0]
    end = model(images).softmax(1)[:, 0]
    torch.testing.assert_close(curve.probabilities[:, 0], start)
    torch.testing.assert_close(curve.probabilities[:, -1], end)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("insert", [False, True])
def test_curves_match_literal_reference(seed, insert):
    model = Mixer().eval()
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 5, 6, generator=generator, dtype=torch.float64)
    # Quantised heatmaps so that ties occur and the tie-break is exercised.
    heatmap = (torch.rand(2, 5, 6, generator=generator, dtype=torch.float64) * 4).floor()
    steps = 7
    function = insertion_curve if insert else deletion_curve
    substrate = "blur" if insert else "zero"
    curve = function(model, images, heatmap, steps=steps, substrate=substrate, batch_size=5)
    start = (blur(images) if insert else torch.zeros_like(images)).numpy()
    target = model(images).argmax(1)
    for b in range(2):
        probs, area = reference_curve(
            model, images[b].numpy(), heatmap[b].numpy(), int(target[b]), steps, start[b], insert
        )
        np.testing.assert_allclose(curve.probabilities[b].numpy(), probs, rtol=1e-10)
        assert curve.area[b].item() == pytest.approx(area, rel=1e-10)


def test_explicit_target_and_batch_size_do_not_change_scores():
    model = Mixer().eval()
    images = torch.rand(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    heatmap = torch.rand(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a = deletion(model, images, heatmap, target=[2, 1, 0], steps=5, batch_size=1)
    b = deletion(model, images, heatmap, target=[2, 1, 0], steps=5, batch_size=100)
    torch.testing.assert_close(a, b)
    # The curve follows the class it is given, not the prediction.
    curve = deletion_curve(model, images, heatmap, target=[2, 1, 0], steps=5)
    assert curve.target.tolist() == [2, 1, 0]
    with torch.no_grad():
        expected = model(images).softmax(1)[torch.arange(3), torch.tensor([2, 1, 0])]
    torch.testing.assert_close(curve.probabilities[:, 0], expected)
    torch.testing.assert_close(curve.area, a)


def test_blur_matches_scipy_gaussian_filter():
    image = torch.rand(
        1, 2, 16, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    ours = blur(image)[0].numpy()
    for c in range(2):
        # Kernel 11 = radius 5 = truncate 1.0 * sigma 5; torch "reflect" is scipy "mirror".
        theirs = scipy.ndimage.gaussian_filter(
            image[0, c].numpy(), 5.0, truncate=1.0, mode="mirror"
        )
        np.testing.assert_allclose(ours[c], theirs, rtol=1e-10, atol=1e-12)


def test_pixel_order_breaks_ties_the_same_way_for_every_map():
    heat = torch.zeros(2, 4, 4)
    heat[:, 0, 0] = 1
    order = pixel_order(heat)
    assert order[:, 0].tolist() == [0, 0]
    assert torch.equal(order[0], order[1])
    assert order[0, 1:].tolist() != list(range(1, 16))  # not raster order
    assert sorted(order[0].tolist()) == list(range(16))


# --------------------------------------------------------------------------------------------
# Completeness


def test_completeness_keeping_everything_is_one_and_literal():
    model = Mixer().eval()
    images = torch.rand(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = completeness(model, images, torch.ones(3, 6, 6, dtype=torch.float64))
    torch.testing.assert_close(full.score, torch.ones(3, dtype=torch.float64))
    assert full.kept_fraction.tolist() == [1.0, 1.0, 1.0]

    kept = torch.zeros(3, 6, 6, dtype=torch.float64)
    kept[:, 1:4, 2:5] = 0.7
    result = completeness(model, images, kept)
    target = model(images).argmax(1)
    for b in range(3):
        masked = images[b].clone()
        for row in range(6):
            for col in range(6):
                if kept[b, row, col] == 0:
                    masked[:, row, col] = 0.0
        with torch.no_grad():
            p_full = model(images[b : b + 1]).softmax(1)[0, target[b]].item()
            p_masked = model(masked[None]).softmax(1)[0, target[b]].item()
        assert result.score[b].item() == pytest.approx(p_masked / p_full, rel=1e-10)
        assert result.kept_fraction[b].item() == pytest.approx(9 / 36)


def test_completeness_of_the_region_the_model_reads():
    model = RegionModel()
    images = region_images(2)
    kept = threshold.top_percent(oracle_heatmap(2), 100 * 20 / SIZE**2)  # exactly the region
    result = completeness(model, images, kept)
    torch.testing.assert_close(result.score, torch.ones(2))
    inverted = completeness(model, images, 1.0 - oracle_heatmap(2).round())
    assert bool((inverted.score < 0.1).all())


# --------------------------------------------------------------------------------------------
# Max-sensitivity


class ConstantExplainer(Explainer):
    name = "constant"

    def explain(self, inputs, target=None):
        heat = torch.zeros(len(inputs), *inputs.shape[2:])
        heat[:, 1, 1] = 1.0
        return Explanation(
            heatmap=heat,
            target=torch.zeros(len(inputs), dtype=torch.int64),
            logits=torch.zeros(len(inputs), 2),
            method=self.name,
        )


class FirstChannelExplainer(ConstantExplainer):
    def explain(self, inputs, target=None):
        explanation = super().explain(inputs, target)
        return Explanation(
            heatmap=inputs[:, 0].clone(),
            target=explanation.target,
            logits=explanation.logits,
            method="first",
        )


def test_constant_explainer_has_zero_max_sensitivity():
    images = torch.rand(3, 3, 8, 8)
    result = max_sensitivity(ConstantExplainer(nn.Identity()), images, radius=0.1, samples=4)
    assert result.tolist() == [0.0, 0.0, 0.0]


def test_max_sensitivity_matches_literal_reference():
    images = torch.rand(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    result = max_sensitivity(
        FirstChannelExplainer(nn.Identity()), images, radius=0.05, samples=3, seed=7
    )
    generator = torch.Generator().manual_seed(7)
    best = [0.0, 0.0]
    for _ in range(3):
        noise = (2 * torch.rand(images.shape, generator=generator, dtype=torch.float64) - 1) * 0.05
        for b in range(2):
            change = np.linalg.norm(noise[b, 0].numpy())
            best[b] = max(best[b], change / np.linalg.norm(images[b, 0].numpy()))
    np.testing.assert_allclose(result.numpy(), best, rtol=1e-5)


def test_max_sensitivity_with_a_real_explainer_and_postprocess(state_guard):
    model = Mixer().float()
    check = state_guard(model)
    images = torch.rand(2, 3, 8, 8)
    explainer = GradCAM(model, layer="conv")
    raw = max_sensitivity(explainer, images, samples=2)
    kept = max_sensitivity(
        explainer, images, samples=2, postprocess=lambda h: threshold.top_percent(h, 10)
    )
    assert raw.shape == kept.shape == (2,)
    assert bool(torch.isfinite(raw).all()) and bool((raw >= 0).all())
    check()
    state = torch.random.get_rng_state()
    max_sensitivity(explainer, images, samples=1)
    assert torch.equal(state, torch.random.get_rng_state())


# --------------------------------------------------------------------------------------------
# Bad input and model state


def test_heatmap_of_another_size_is_named():
    model = RegionModel()
    with pytest.raises(InputError, match="heatmap has shape"):
        deletion(model, region_images(2), torch.rand(2, SIZE, SIZE + 1))
    with pytest.raises(InputError, match="heatmap"):
        completeness(model, region_images(2), torch.rand(3, SIZE, SIZE))


def test_nan_heatmap_and_nan_inputs():
    model = RegionModel()
    heat = oracle_heatmap(2)
    heat[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="heatmap contains NaN"):
        insertion(model, region_images(2), heat)
    images = region_images(2)
    images[1, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="inputs contain NaN"):
        deletion(model, images, oracle_heatmap(2))


def test_model_without_logits():
    class Flat(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ModelOutputError, match="expected"):
        deletion(Flat(), region_images(1), oracle_heatmap(1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"substrate": "noise"}, "substrate"),
        ({"substrate": torch.zeros(5)}, "substrate"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises((ValueError, InputError), match=message):
        deletion(RegionModel(), region_images(1), oracle_heatmap(1), **kwargs)


def test_bad_sensitivity_options():
    explainer = ConstantExplainer(nn.Identity())
    with pytest.raises(ValueError, match="samples"):
        max_sensitivity(explainer, region_images(1), samples=0)
    with pytest.raises(ValueError, match="radius"):
        max_sensitivity(explainer, region_images(1), radius=-1)


def test_model_unchanged_after_success_and_error(state_guard):
    model = Mixer().train()
    check = state_guard(model)
    images = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    heat = torch.rand(2, 6, 6)
    first = deletion(model, images, heat, steps=4)
    second = deletion(model, images, heat, steps=4)
    torch.testing.assert_close(first, second)  # eval mode inside: dropout off
    check()
    assert model.training
    with pytest.raises(InputError):
        deletion(model, images, heat[:1])
    check()
