"""leanxai's maps equal Captum's LayerGradCam on the same layer (the benchmark's premise)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_cnn, tiny_vgg
from leanxai import GradCAM

captum_attr = pytest.importorskip("captum.attr")


@pytest.mark.parametrize(("builder", "path"), [(tiny_cnn, "forward"), (tiny_vgg, "autograd")])
def test_same_cam_as_captum(builder, path):
    model = builder()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)).double()
    explanation = GradCAM(model).explain(x)
    assert explanation.path == path
    layer = model.get_submodule(explanation.layer)
    theirs = captum_attr.LayerGradCam(model, layer).attribute(
        x, target=explanation.target, relu_attributions=True
    )[:, 0]
    assert theirs.abs().max() > 0
    assert torch.allclose(explanation.cam, theirs, rtol=1e-9, atol=1e-12)
