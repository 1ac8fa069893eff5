"""Vision transformers: token Grad-CAM, attention rollout, gradient-weighted rollout (issue 15).

The references are written out literally in float64 from the papers, on a 2-block ViT whose
forward is also written out by hand here (explicit projections, softmax and residuals).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leanxai
from leanxai.core.errors import InputError, LayerError, TargetError
from leanxai.core.families import detect
from leanxai.explainers import registry
from leanxai.explainers.attention import (
    WindowLayout,
    attention_implementation,
    attention_rollout,
    rollout_matrix,
)
from leanxai.explainers.vision_transformer import (
    AttentionRollout,
    GradientWeightedRollout,
    TokenGradCAM,
    token_grid,
)

METHODS = (TokenGradCAM, AttentionRollout, GradientWeightedRollout)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch 4 on 16x16 images (a 4x4 grid), 2 blocks; ``pool``: "cls", "mean", "mean_norm"."""

    def __init__(self, pool: str = "cls", dim: int = 12, heads: int = 3, classes: int = 5):
        super().__init__()
        self.pool = pool
        self.image_size = 16
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        extra = 1 if pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 16 + extra, dim) * 0.5)
        self.blocks = nn.Sequential(Block(dim, heads), Block(dim, heads))
        self.norm = nn.LayerNorm(dim)
        self.pool_norm = nn.LayerNorm(dim) if pool == "mean_norm" else nn.Identity()
        self.head = nn.Linear(dim, classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, C)
        if self.pool == "cls":
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.blocks(self.tokens(x)))
        pooled = x[:, 0] if self.pool == "cls" else self.pool_norm(x.mean(dim=1))
        return self.head(pooled)


def tiny_vit(pool: str = "cls", seed: int = 0) -> TinyViT:
    torch.manual_seed(seed)
    model = TinyViT(pool).double().eval()
    with torch.no_grad():  # non-trivial norms
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def images(batch: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator, dtype=torch.float64)


# -- literal references ----------------------------------------------------------------------------


def literal_forward(model: TinyViT, x: torch.Tensor, keep: dict[str, torch.Tensor]):
    """The ViT written out: per-head projections, softmax, residuals; keeps A and norm1 outputs."""
    tokens = model.tokens(x)
    attentions = []
    for index, block in enumerate(model.blocks):
        mha = block.attn
        h = F.layer_norm(
            tokens, (tokens.shape[-1],), block.norm1.weight, block.norm1.bias, block.norm1.eps
        )
        keep[f"norm1.{index}"] = h
        dim, heads = mha.embed_dim, mha.num_heads
        d = dim // heads
        wq, wk, wv = mha.in_proj_weight.split(dim)
        bq, bk, bv = mha.in_proj_bias.split(dim)
        outs = []
        for head in range(heads):
            part = slice(head * d, (head + 1) * d)
            q = h @ wq[part].T + bq[part]
            k = h @ wk[part].T + bk[part]
            v = h @ wv[part].T + bv[part]
            scores = q @ k.transpose(1, 2) / math.sqrt(d)
            a = torch.exp(scores - scores.amax(-1, keepdim=True))
            a = a / a.sum(-1, keepdim=True)
            attentions.append(a) if head == 0 else None
            keep[f"A.{index}.{head}"] = a
            outs.append(a @ v)
        mixed = torch.cat(outs, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias
        tokens = tokens + mixed
        tokens = tokens + block.mlp(block.norm2(tokens))
    tokens = model.norm(tokens)
    pooled = tokens[:, 0] if model.pool == "cls" else model.pool_norm(tokens.mean(dim=1))
    return model.head(pooled)


def stacked_attention(keep: dict[str, torch.Tensor], block: int, heads: int) -> torch.Tensor:
    return torch.stack([keep[f"A.{block}.{h}"] for h in range(heads)], dim=1)  # (B, h, N, N)


def reference_rollout(model: TinyViT, x: torch.Tensor, fusion: str, discard: float) -> torch.Tensor:
    """Abnar & Zuidema: R = prod (normalise(fuse(A) + I)); the class token's row, patch tokens."""
    keep: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        literal_forward(model, x, keep)
    heads = model.blocks[0].attn.num_heads
    n = keep["A.0.0"].shape[-1]
    maps = []
    for b in range(x.shape[0]):
        result = torch.eye(n, dtype=torch.float64)
        for block in range(len(model.blocks)):
            a = stacked_attention(keep, block, heads)[b]  # (h, N, N)
            fused = {"mean": a.mean(0), "max": a.amax(0), "min": a.amin(0)}[fusion]
            flat = fused.flatten().clone()
            count = int(flat.numel() * discard)
            if count:
                flat[flat.argsort()[:count]] = 0
            fused = flat.view(n, n)
            step = (fused + torch.eye(n, dtype=torch.float64)) / 2
            step = step / step.sum(dim=-1, keepdim=True)
            result = step @ result
        maps.append(result[0, 1:])
    return torch.stack(maps).view(x.shape[0], 4, 4)


def reference_gradient_rollout(model: TinyViT, x: torch.Tensor, target: torch.Tensor):
    """Chefer et al.: R = I; R += mean_h((dA * A)^+) @ R per block, one image at a time."""
    heads = model.blocks[0].attn.num_heads
    maps = []
    for b in range(x.shape[0]):
        keep: dict[str, torch.Tensor] = {}
        logits = literal_forward(model, x[b : b + 1], keep)
        names = [f"A.{i}.{h}" for i in range(len(model.blocks)) for h in range(heads)]
        grads = dict(
            zip(
                names,
                torch.autograd.grad(logits[0, target[b]], [keep[n] for n in names]),
                strict=True,
            )
        )
        n = keep["A.0.0"].shape[-1]
        r = torch.eye(n, dtype=torch.float64)
        for block in range(len(model.blocks)):
            cam = torch.stack(
                [
                    (grads[f"A.{block}.{h}"] * keep[f"A.{block}.{h}"])[0].clamp(min=0)
                    for h in range(heads)
                ]
            ).mean(0)
            r = r + cam @ r
        maps.append(r[0, 1:])
    return torch.stack(maps).view(x.shape[0], 4, 4).detach()


def reference_token_gradcam(
    model: TinyViT, x: torch.Tensor, target: torch.Tensor, layer: str, extra: int
) -> torch.Tensor:
    """Selvaraju et al. on tokens: alpha = mean over patch tokens of dy/dA; ReLU(A alpha)."""
    maps = []
    for b in range(x.shape[0]):
        keep: dict[str, torch.Tensor] = {}
        logits = literal_forward(model, x[b : b + 1], keep)
        activations = keep[layer]
        (grad,) = torch.autograd.grad(logits[0, target[b]], activations)
        alpha = grad[0, extra:].mean(dim=0)
        maps.append(torch.relu(activations[0, extra:] @ alpha))
    return torch.stack(maps).view(x.shape[0], 4, 4).detach()


def relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours.double() - reference).abs().max() / reference.abs().max().clamp_min(1e-30))


# -- must show: literal references -----------------------------------------------------------------


@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.0), ("max", 0.3), ("min", 0.0)])
def test_rollout_equals_literal_reference(fusion: str, discard: float) -> None:
    model, x = tiny_vit(), images()
    ours = AttentionRollout(model, head_fusion=fusion, discard_ratio=discard).explain(x)
    assert ours.cam is not None and ours.cam.shape == (3, 4, 4)
    assert relative(ours.cam, reference_rollout(model, x, fusion, discard)) < 1e-5
    assert ours.heatmap.shape == (3, 16, 16) and float(ours.heatmap.amax()) == pytest.approx(1.0)


def test_gradient_weighted_rollout_equals_literal_reference() -> None:
    model, x = tiny_vit(), images()
    target = torch.tensor([0, 3, 1])
    ours = GradientWeightedRollout(model).explain(x, target)
    assert relative(ours.cam, reference_gradient_rollout(model, x, target)) < 1e-5
    assert ours.target.tolist() == target.tolist()


def test_token_gradcam_equals_literal_reference_at_the_last_blocks_first_norm() -> None:
    model, x = tiny_vit(), images()
    ours = TokenGradCAM(model).explain(x)
    assert ours.layer == "blocks.1.norm1" and ours.path == "autograd"
    reference = reference_token_gradcam(model, x, ours.target, "norm1.1", extra=1)
    assert relative(ours.cam, reference) < 1e-5


def test_forward_path_on_a_mean_pooled_head_equals_autograd() -> None:
    model, x = tiny_vit("mean"), images(4)
    explainer = TokenGradCAM(model)
    first, second = explainer.explain(x), explainer.explain(x)
    assert first.layer == "norm" and first.path == "forward" and second.path == "forward"
    autograd = TokenGradCAM(model, path="autograd").explain(x)
    assert autograd.path == "autograd"
    assert relative(second.cam, autograd.cam.double()) < 1e-4
    assert torch.allclose(second.heatmap, autograd.heatmap, atol=1e-4)
    forced = TokenGradCAM(model, path="forward").explain(x)
    assert forced.path == "forward" and relative(forced.cam, autograd.cam.double()) < 1e-4


def test_a_norm_after_the_pooling_falls_back_to_autograd() -> None:
    model, x = tiny_vit("mean_norm"), images()
    ours = TokenGradCAM(model, layer="norm").explain(x)
    assert ours.path == "autograd"
    with pytest.raises(LayerError, match="path='forward'"):
        TokenGradCAM(model, layer="norm", path="forward").explain(x)


def test_batched_equals_one_at_a_time() -> None:
    model, x = tiny_vit(), images(4)
    for cls in METHODS:
        whole = cls(model).explain(x)
        for b in range(4):
            one = cls(model).explain(x[b : b + 1], int(whole.target[b]))
            assert torch.allclose(one.heatmap[0], whole.heatmap[b], atol=1e-6), cls.__name__


class CountingViT(TinyViT):
    """Records the batch size of every forward call."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return super().forward(x)


@pytest.mark.parametrize("cls", METHODS)
def test_discovery_runs_one_sample_and_the_batch_once(cls) -> None:
    torch.manual_seed(0)
    model = CountingViT().double().eval()
    x = images(6)
    first = cls(model).explain(x)
    # Discovery (patch grid, layers, pooling) sees one image; the batch itself runs once.
    assert model.batches.count(6) == 1 and set(model.batches) == {1, 6}, model.batches
    model.batches.clear()
    explainer = cls(model)
    explainer.explain(x[:2])
    model.batches.clear()
    again = explainer.explain(x)
    assert model.batches == [6]  # facts are cached per input size, whatever the batch
    assert torch.allclose(again.heatmap, first.heatmap, atol=1e-6)


# -- Swin's windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "window", "shift"), [(8, 8, 4, 2), (6, 5, 4, 2)])
def test_window_layout_equals_the_full_token_mixing_matrix(height, width, window, shift) -> None:
    """The windows placed back on the grid literally: M[i, j] = A[window(i), pos(i), pos(j)]."""
    torch.manual_seed(0)
    hp, wp = -(-height // window) * window, -(-width // window) * window
    windows = (hp // window) * (wp // window)
    a = torch.rand(2 * windows, window * window, window * window, dtype=torch.float64)
    index = torch.full((hp, wp), -1, dtype=torch.long)
    index[:height, :width] = torch.arange(height * width).view(height, width)
    index = torch.roll(index, shifts=(-shift, -shift), dims=(0, 1))
    parts = index.view(hp // window, window, wp // window, window).transpose(1, 2)
    parts = parts.reshape(windows, window * window)
    full = torch.zeros(2, height * width, height * width, dtype=torch.float64)
    for b in range(2):
        for w in range(windows):
            for i, ti in enumerate(parts[w].tolist()):
                for j, tj in enumerate(parts[w].tolist()):
                    if ti >= 0 and tj >= 0:
                        full[b, ti, tj] = a[b * windows + w, i, j]
    v = torch.rand(2, height * width, dtype=torch.float64)
    layout = WindowLayout(height, width, window, shift)
    assert torch.allclose(layout.left(v, a), torch.bmm(v[:, None], full)[:, 0], atol=1e-12)


# -- transformers models --------------------------------------------------------------------------


def hf_vit(seed: int = 0):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=48,
        num_labels=4,
    )
    return ViTForImageClassification(config).eval()


def hf_swin(seed: int = 0):
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(seed)
    config = SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=12,
        depths=[2, 2],
        num_heads=[2, 4],
        window_size=4,
        num_labels=4,
    )
    return SwinForImageClassification(config).eval()


MODELS = {"tiny_vit": lambda: tiny_vit(), "hf_vit": hf_vit, "hf_swin": hf_swin}


def model_inputs(name: str, batch: int = 2) -> torch.Tensor:
    if name == "tiny_vit":
        return images(batch)
    return images(batch, size=32).float()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.__name__)
def test_model_unchanged_after_success_and_error(name, cls, state_guard) -> None:
    model = MODELS[name]()
    model.train()  # explainers run in eval mode and restore the flags
    implementation = attention_implementation(model)
    check = state_guard(model)
    x = model_inputs(name)
    result = cls(model).explain(x)
    assert result.heatmap.shape == (2, *x.shape[2:])
    assert float(result.heatmap.amin()) >= 0 and float(result.heatmap.amax()) <= 1
    check()
    assert attention_implementation(model) == implementation
    with pytest.raises(TargetError):
        cls(model).explain(x, target=99)
    check()
    assert attention_implementation(model) == implementation
    # An error inside the forward, with hooks registered and attention switched to eager: the
    # wrong input size (one line) for the ViTs, a channel mismatch from the model for Swin.
    with pytest.raises(InputError if name != "hf_swin" else RuntimeError):
        cls(model).explain(F.pad(x, (0, 8, 0, 8)) if name != "hf_swin" else x[:, :2])
    check()
    assert attention_implementation(model) == implementation


def test_hf_models_keep_sdpa_and_work_through_explain() -> None:
    for build in (hf_vit, hf_swin):
        model = build()
        assert attention_implementation(model) == "sdpa"
        x = images(2, 32).float()
        assert detect(model, x) == "vision_transformer"
        for method in ("token_gradcam", "gradcam", "rollout", "grad_rollout", "ig", "rise"):
            options = {"n_masks": 64} if method == "rise" else {}
            result = leanxai.explain(model, x, method, **options)
            assert result.family == "vision_transformer" and result.heatmap.shape == (2, 32, 32)
        assert attention_implementation(model) == "sdpa"


def test_swin_token_gradcam_takes_the_forward_path_at_the_final_norm() -> None:
    model, x = hf_swin(), images(3, 32).float()
    ours = TokenGradCAM(model).explain(x)
    assert ours.layer == "swin.layernorm" and ours.path == "forward" and ours.cam.shape == (3, 4, 4)
    autograd = TokenGradCAM(model, path="autograd").explain(x)
    assert torch.allclose(ours.cam, autograd.cam, rtol=1e-4, atol=1e-6)
    rollout = AttentionRollout(model).explain(x)
    assert rollout.cam.shape == (3, 8, 8)  # the first stage's grid


def test_padded_swin_input_and_interpolated_vit() -> None:
    swin = hf_swin()
    odd = images(2, 30).float()  # not a multiple of the patch: the model pads
    for cls in METHODS:
        assert cls(swin).explain(odd).heatmap.shape == (2, 30, 30)
    vit = hf_vit()
    bigger = images(2, 48).float()
    with pytest.raises(InputError, match=r"takes 32x32 inputs.*interpolate=True"):
        TokenGradCAM(vit).explain(bigger)
    for cls in METHODS:
        result = cls(vit, interpolate=True).explain(bigger)
        assert result.heatmap.shape == (2, 48, 48) and result.cam.shape == (2, 6, 6)


# -- bad input ------------------------------------------------------------------------------------


def test_unsupported_input_size_is_one_line() -> None:
    with pytest.raises(InputError) as error:
        AttentionRollout(tiny_vit()).explain(images(2, 20))
    assert "takes 16x16 inputs" in str(error.value) and "\n" not in str(error.value)


def test_a_layer_that_is_not_a_token_layer() -> None:
    model, x = tiny_vit(), images()
    with pytest.raises(LayerError, match="not a token layer"):
        TokenGradCAM(model, layer="patch").explain(x)
    with pytest.raises(LayerError, match="not a token layer"):
        TokenGradCAM(model, layer="head").explain(x)
    with pytest.raises(LayerError, match="does not exist"):
        TokenGradCAM(model, layer="blocks.7").explain(x)


class FusedAttention(nn.Module):
    """Self-attention through a fused kernel: its probabilities cannot be read."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))


class OddAttention(FusedAttention):
    """Returns probabilities whose rows are not the batch times anything."""

    def forward(self, x: torch.Tensor):
        a = (self.q(x) @ self.k(x).transpose(1, 2)).softmax(-1)
        return a @ self.v(x), a[:, None].repeat(1, 2, 1, 1)[:1].expand(x.shape[0] + 1, -1, -1, -1)


class CustomViT(nn.Module):
    def __init__(self, attention: type[nn.Module]) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.attn = attention(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        out = self.attn(tokens)
        out = out[0] if isinstance(out, tuple) else out
        return self.head((tokens + out).mean(1))


def test_attention_that_cannot_be_read_names_the_module(state_guard) -> None:
    model = CustomViT(FusedAttention).eval()
    check = state_guard(model)
    assert detect(model, torch.rand(2, 3, 16, 16)) == "vision_transformer"
    with pytest.raises(LayerError, match=r"module 'attn' \(FusedAttention\)"):
        AttentionRollout(model).explain(torch.rand(2, 3, 16, 16))
    check()


def test_attention_whose_rows_do_not_factor() -> None:
    model = CustomViT(OddAttention).eval()
    with pytest.raises(LayerError, match="not a multiple of the batch"):
        AttentionRollout(model).explain(torch.rand(2, 3, 16, 16))


def test_token_counts_that_do_not_form_a_grid() -> None:
    assert token_grid(65, (8, 8)) == (1, 8, 8)
    assert token_grid(68, (8, 8)) == (4, 8, 8)  # class + 3 registers
    assert token_grid(16, (8, 8)) == (0, 4, 4)  # merged twice
    assert token_grid(9, (5, 5)) == (0, 3, 3)  # odd sides padded by merging
    with pytest.raises(LayerError, match="50 tokens"):
        token_grid(50, (8, 8))
    with pytest.raises(LayerError):
        token_grid(80, (8, 8))


def test_bad_options() -> None:
    model = tiny_vit()
    with pytest.raises(InputError, match="head_fusion"):
        AttentionRollout(model, head_fusion="median")
    with pytest.raises(InputError, match="discard_ratio"):
        AttentionRollout(model, discard_ratio=1.0)
    with pytest.raises(InputError, match="path"):
        TokenGradCAM(model, path="fast")
    with pytest.raises(InputError):
        TokenGradCAM(model).explain(torch.rand(3, 16, 16))


# -- family, registry, dense rollout helper ------------------------------------------------------


def test_family_detection() -> None:
    from transformers import ResNetConfig, ResNetForImageClassification

    x = torch.rand(1, 3, 32, 32)
    assert detect(hf_vit(), x) == "vision_transformer"
    assert detect(hf_swin(), x) == "vision_transformer"
    assert detect(tiny_vit(), images(1)) == "vision_transformer"
    resnet = ResNetForImageClassification(ResNetConfig(num_labels=3, depths=[1, 1])).eval()
    assert detect(resnet, x) == "cnn"

    class SqueezeExcitationAttention(nn.Module):  # a CNN's "attention": no q, k, v
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), SqueezeExcitationAttention())
    assert detect(cnn, x) == "cnn"


def test_registry_entries() -> None:
    assert registry.default_method("vision_transformer") == "rollout"
    assert registry.get("Grad-CAM", "vision_transformer").name == "token_gradcam"
    assert registry.get("attention rollout", "vision_transformer").name == "rollout"
    assert registry.get("chefer", "vision_transformer").backward == "yes"
    assert registry.get("gradcam", "cnn").name == "gradcam"


def test_rollout_matrix_row_equals_the_vector_rollout() -> None:
    from leanxai.explainers.attention import DenseLayout

    torch.manual_seed(0)
    weights = [torch.rand(2, 3, 5, 5, dtype=torch.float64).softmax(-1) for _ in range(3)]
    start = torch.zeros(2, 5, dtype=torch.float64)
    start[:, 0] = 1
    row = attention_rollout([(w, DenseLayout(5)) for w in weights], start)
    assert torch.allclose(rollout_matrix(weights)[:, 0], row, atol=1e-12)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    masked = rollout_matrix(weights, attention_mask=mask)
    assert float(masked[0, :4, 4].abs().max()) == 0.0


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_explains_an_hf_vit_with_rollout(tmp_path) -> None:
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from leanxai.cli.main import main

    model = hf_vit()
    model.save_pretrained(tmp_path / "vit")
    image = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8")
    Image.fromarray(image).save(tmp_path / "a.png")
    for method in ("rollout", "gradcam"):
        out = tmp_path / f"out-{method}"
        result = CliRunner().invoke(
            main,
            [
                "explain",
                str(tmp_path / "a.png"),
                "--model",
                f"hf:{tmp_path / 'vit'}",
                "--method",
                method,
                "--threshold",
                "top:10",
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        heatmap = np.load(out / "a.npy")
        assert heatmap.shape == (32, 32)
        summary = (out / "summary.csv").read_text()
        assert ",ok" in summary


def test_zoo_architectures_are_vision_transformers_on_the_shapes_grid() -> None:
    from leanxai.zoo.transformers_zoo import shapes_swin, shapes_vit

    x = torch.rand(2, 3, 64, 64)
    for build, grid in ((shapes_vit, (8, 8)), (shapes_swin, (8, 8))):
        model = build()
        assert detect(model, x) == "vision_transformer"
        result = TokenGradCAM(model).explain(x)
        assert result.cam is not None and tuple(result.cam.shape[1:]) == grid
