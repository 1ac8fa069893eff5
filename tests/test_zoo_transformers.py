"""The zoo's vision transformers: the architecture the explainers expect, and the cache.

Nothing here trains: the cache test stands an untrained model in for the trained one.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from leanxai.core.families import detect
from leanxai.explainers.vision_transformer import (
    AttentionRollout,
    GradientWeightedRollout,
    TokenGradCAM,
)
from leanxai.zoo import transformers_zoo
from leanxai.zoo.transformers_zoo import ConvStem, shapes_swin, shapes_vit


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_vit_is_an_8x8_grid_plus_a_class_token_read_by_the_head(images: torch.Tensor) -> None:
    from transformers import ViTForImageClassification

    torch.manual_seed(0)
    model = shapes_vit()
    assert isinstance(model, ViTForImageClassification) and not model.training
    assert isinstance(model.vit.embeddings.patch_embeddings.projection, ConvStem)
    assert detect(model, images) == "vision_transformer"
    with torch.no_grad():
        tokens = model.vit.embeddings(images)
        output = model(images, output_hidden_states=True)
        last = model.vit.layernorm(output.hidden_states[-1])
    assert tuple(tokens.shape) == (2, 1 + 8 * 8, 64)
    # The head reads the class token (token 0) of the last block, after the final norm.
    torch.testing.assert_close(model.classifier(last[:, 0]), output.logits)
    for explainer in (TokenGradCAM, AttentionRollout, GradientWeightedRollout):
        result = explainer(model).explain(images)
        assert result.cam is not None and tuple(result.cam.shape) == (2, 8, 8)
        assert tuple(result.heatmap.shape) == (2, 64, 64)


def test_swin_has_a_mean_pooled_head(images: torch.Tensor) -> None:
    from transformers import SwinForImageClassification

    torch.manual_seed(0)
    model = shapes_swin()
    assert isinstance(model, SwinForImageClassification) and not model.training
    assert isinstance(model.swin.embeddings.patch_embeddings.projection, ConvStem)
    assert detect(model, images) == "vision_transformer"
    with torch.no_grad():
        output = model.swin(images)
        logits = model(images).logits
    assert tuple(output.last_hidden_state.shape) == (2, 8 * 8, 64)  # two stages: 16x16, 8x8
    torch.testing.assert_close(model.classifier(output.last_hidden_state.mean(dim=1)), logits)
    gradcam = TokenGradCAM(model).explain(images)
    assert gradcam.path == "forward"  # the mean-pooled head's exact path, no backward
    assert gradcam.cam is not None and tuple(gradcam.cam.shape) == (2, 8, 8)
    rollout = AttentionRollout(model).explain(images)
    assert rollout.cam is not None and tuple(rollout.cam.shape) == (2, 16, 16)


@pytest.mark.parametrize("kind", ["vit", "swin"])
def test_cached_weights_round_trip(
    kind: str, tmp_path: object, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = {"vit": shapes_vit, "swin": shapes_swin}[kind]
    load = {"vit": transformers_zoo.load_shapes_vit, "swin": transformers_zoo.load_shapes_swin}
    torch.manual_seed(1)
    stand_in = build()
    with torch.no_grad():  # batch-norm statistics must travel too
        for module in stand_in.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    calls = []

    def train(kind_: str, **_: object) -> tuple[torch.nn.Module, dict[str, object]]:
        calls.append(kind_)
        return stand_in, {"held_out_accuracy": 0.5}

    monkeypatch.setattr(transformers_zoo, "train_shapes_transformer", train)
    model, metadata = load[kind](tmp_path)  # type: ignore[arg-type]
    assert calls == [kind] and model is stand_in
    version = transformers_zoo.TRANSFORMER_RECIPE_VERSION
    assert (tmp_path / f"shapes_{kind}-{version}.safetensors").exists()  # type: ignore[operator]
    assert metadata["recipe_version"] == version

    loaded, loaded_metadata = load[kind](tmp_path)  # type: ignore[arg-type]
    assert calls == [kind]  # read from the cache, not trained again
    assert loaded is not stand_in and not loaded.training
    assert loaded_metadata == metadata
    expected = stand_in.state_dict()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, stand_in.eval()(images).logits)
