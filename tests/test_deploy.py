"""leanxai.deploy: the model and its heatmap in one ONNX graph, and a runner without PyTorch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from leanxai import GradCAM, GradCAMPlusPlus
from leanxai.cli.main import main
from leanxai.core.errors import OutputExistsError, UnsupportedLayerError
from leanxai.deploy import export_onnx, heatmap_agreement
from leanxai.deploy import runtime as runtime_module
from leanxai.zoo import SmallCNN, VGGStyle

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

RUNTIME = Path(runtime_module.__file__)


def _randomize(model: nn.Module, side: int) -> nn.Module:
    """PyTorch's default init and batch-norm statistics from a few random batches.

    transformers' random init (std 0.02) makes deep nets' logits vanish; this gives maps worth
    comparing.
    """
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
        if isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(8, 3, side, side))
    return model.eval()


def _resnet() -> nn.Module:
    config = transformers.ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 32, 64], depths=[1, 1, 1, 1], num_labels=5
    )
    return transformers.ResNetForImageClassification(config)


def _mobilenet() -> nn.Module:
    config = transformers.MobileNetV2Config(depth_multiplier=0.35, num_labels=5, image_size=96)
    return transformers.MobileNetV2ForImageClassification(config)


def _efficientnet() -> nn.Module:
    config = transformers.EfficientNetConfig(
        width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, num_labels=5, image_size=96
    )
    return transformers.EfficientNetForImageClassification(config)


ARCHITECTURES = {
    # name: (factory, input side, expected head)
    "resnet18-like": (_resnet, 96, "forward"),
    "mobilenetv2": (_mobilenet, 96, "forward"),
    "efficientnet": (_efficientnet, 96, "forward"),
    "vgg-style": (lambda: VGGStyle(num_classes=5, width=8, image_size=28, hidden=32), 28, None),
    "zoo-cnn": (lambda: SmallCNN(num_classes=5, width=8), 32, "forward"),
}


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[nn.Module, int]]:
    built = {}
    for name, (factory, side, _) in ARCHITECTURES.items():
        torch.manual_seed(0)
        built[name] = (_randomize(factory(), side), side)
    return built


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_onnx_equals_pytorch_on_new_inputs(models, tmp_path, name, method):
    model, side = models[name]
    path = tmp_path / f"{name}.onnx"
    report = export_onnx(model, path, input_size=(side, side), method=method, target_input=True)
    assert report.head == (ARCHITECTURES[name][2] or "piecewise-linear")
    explainer = (GradCAM if method == "gradcam" else GradCAMPlusPlus)(model)
    session = _session(path)
    # Three inputs never seen while tracing, of different kinds: a heatmap baked in as a constant
    # would show as the same map for all of them.
    generator = torch.Generator().manual_seed(123)
    inputs = torch.stack(
        [
            torch.randn(3, side, side, generator=generator),
            torch.rand(3, side, side, generator=generator) * 2 - 1,
            torch.linspace(-2, 2, side)[None, :, None].expand(3, side, side).clone(),
        ]
    )
    reference = explainer.explain(inputs)
    logits, target, heatmap, cam = session.run(None, {"pixels": inputs.numpy()})
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=1e-4)
    np.testing.assert_array_equal(target, reference.target.numpy())
    np.testing.assert_allclose(heatmap, reference.heatmap.numpy(), atol=1e-4)
    assert reference.cam is not None
    scale = float(reference.cam.abs().max())
    np.testing.assert_allclose(cam / scale, reference.cam.numpy() / scale, atol=1e-4)
    assert heatmap.shape == (3, side, side) and cam.shape[0] == 3
    assert float(heatmap.max()) > 0.99  # real maps, normalised by their peak
    # PyTorch's maps differ between inputs by more than twice the tolerance, so no single map
    # baked into the graph could be within 1e-4 of all three.
    expected = reference.heatmap.numpy()
    differences = [np.abs(expected[i] - expected[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(differences) > 1e-3, differences

    # The optional input: any class per sample, negative for the predicted one.
    wanted = np.array([0, 4, -1], dtype=np.int64)
    _, target, heatmap, _ = session.run(
        None, {"pixels": inputs.numpy(), "requested_target": wanted}
    )
    expected_target = np.where(wanted < 0, reference.target.numpy(), wanted)
    np.testing.assert_array_equal(target, expected_target)
    expected = explainer.explain(inputs, torch.from_numpy(expected_target))
    np.testing.assert_allclose(heatmap, expected.heatmap.numpy(), atol=1e-4)


def test_dynamic_batch_and_metadata(models, tmp_path):
    model, side = models["zoo-cnn"]
    path = tmp_path / "cnn.onnx"
    labels = {i: f"class-{i}" for i in range(5)}
    export_onnx(
        model, path, input_size=(side, side), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        labels=labels,
    )  # fmt: skip
    session = _session(path)
    for batch in (1, 5):
        x = torch.randn(batch, 3, side, side)
        outputs = session.run(None, {"pixels": x.numpy()})
        assert [o.shape[0] for o in outputs] == [batch] * 4
    loaded = runtime_module.ExplainedModel(path)
    assert loaded.input_size == (side, side)
    np.testing.assert_allclose(loaded.mean, 0.5)
    np.testing.assert_allclose(loaded.std, 0.25)
    assert loaded.labels[3] == "class-3"
    assert loaded.metadata["layer"] == "features" and loaded.metadata["head"] == "forward"


class _TanhHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tanh_head() -> nn.Module:
    """A factory for ``py:test_deploy:tanh_head``."""
    torch.manual_seed(0)
    return _TanhHead()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(num_classes=3, width=4)


def test_unsupported_head_is_one_line_and_no_file(tmp_path):
    path = tmp_path / "tanh.onnx"
    with pytest.raises(UnsupportedLayerError, match=r"'head\.3' \(Tanh\)"):
        export_onnx(tanh_head(), path, input_size=(16, 16))
    assert not path.exists()
    result = CliRunner().invoke(
        main,
        ["export", "--model", "py:test_deploy:tanh_head", "--out", str(path), "--size", "16",
         "--normalize", "none"],
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'head.3' (Tanh)" in lines[0] and lines[0].startswith("error:")
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    path = tmp_path / "cnn.onnx"
    path.write_bytes(b"keep me")
    arguments = ["export", "--model", "py:test_deploy:small_cnn", "--out", str(path)]
    result = CliRunner().invoke(main, [*arguments, "--size", "32"])
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert path.read_bytes() == b"keep me"
    with pytest.raises(OutputExistsError):
        export_onnx(small_cnn(), path, input_size=(32, 32))
    result = CliRunner().invoke(main, [*arguments, "--size", "32", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "heatmaps within" in result.output
    assert _session(path).get_outputs()[2].name == "heatmap"


def _block_torch_and_run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the runner's file as a script in a Python where ``import torch`` fails."""
    code = textwrap.dedent(
        f"""
        import runpy, sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        sys.argv = ["runtime.py", *{arguments!r}]
        try:
            runpy.run_path({str(RUNTIME)!r}, run_name="__main__")
        finally:
            assert "torch" not in sys.modules
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_runner_explains_an_image_without_torch(tmp_path):
    model = small_cnn()
    side = 32
    path = tmp_path / "cnn.onnx"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    export_onnx(
        model, path, input_size=(side, side), mean=mean, std=std,
        labels={0: "circle", 1: "square", 2: "triangle"},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    out = tmp_path / "explained"
    arguments = [str(path), str(tmp_path / "photo.png"), "--out", str(out), "--npy"]
    result = _block_torch_and_run(arguments)
    assert result.returncode == 0, result.stderr
    assert "class" in result.stdout and "photo.png" in result.stdout
    overlay = np.asarray(Image.open(out / "photo.png"))
    assert overlay.shape == (side, side, 3)
    heatmap = np.load(out / "photo.npy", allow_pickle=False)
    # The same image through PyTorch (at the model's size, so no resizing is involved).
    x = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    expected = GradCAM(model).explain(x[None])
    np.testing.assert_allclose(heatmap, expected.heatmap[0].numpy(), atol=1e-4)
    label = ("circle", "square", "triangle")[int(expected.target[0])]
    assert f"({label})" in result.stdout
    # An existing overlay is not replaced without --overwrite.
    again = _block_torch_and_run(arguments)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_int8_static_and_dynamic_report(models, tmp_path):
    model, side = models["zoo-cnn"]
    generator = torch.Generator().manual_seed(5)
    calibration = torch.rand(24, 3, side, side, generator=generator)
    with torch.no_grad():
        labels = model(calibration).argmax(1).numpy()
    labels[:4] = (labels[:4] + 1) % 5  # a few wrong, so accuracy is not trivially 1
    static = export_onnx(
        model, tmp_path / "static.onnx", input_size=(side, side), int8=True,
        calibration=calibration, calibration_labels=labels,
    )  # fmt: skip
    assert static.int8 is not None and static.int8.mode == "static"
    q = static.int8
    assert q.inputs == 24 and 0.0 <= q.agreement <= 1.0
    assert q.accuracy_float == pytest.approx(20 / 24)
    assert q.accuracy_change is not None and abs(q.accuracy_change) <= 1.0
    assert 0.0 <= q.heatmap_iou_min <= q.heatmap_iou <= 1.0
    assert q.int8_bytes == (tmp_path / "static.onnx").stat().st_size
    assert q.int8_bytes < q.float_bytes
    session = _session(tmp_path / "static.onnx")
    assert any(node_type.startswith("QuantizeLinear") for node_type in _op_types(session, tmp_path))
    dynamic = export_onnx(model, tmp_path / "dynamic.onnx", input_size=(side, side), int8=True)
    assert dynamic.int8 is not None and dynamic.int8.mode == "dynamic"
    assert dynamic.int8.accuracy_float is None


def _op_types(session: ort.InferenceSession, folder: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(folder / "static.onnx")).graph.node}


def test_heatmap_agreement_is_top10_iou():
    a = np.zeros((1, 10, 10), dtype=np.float32)
    a[0, 0, :] = 1.0  # top 10%: the first row
    b = a.copy()
    np.testing.assert_allclose(heatmap_agreement(a, b), [1.0])
    c = np.zeros_like(a)
    c[0, 0, :5] = 1.0
    c[0, 1, :5] = 1.0  # half of the region overlaps
    np.testing.assert_allclose(heatmap_agreement(a, c), [5 / 15])


def test_cli_int8_with_labelled_calibration_and_runner(tmp_path):
    folder = tmp_path / "calibration"
    rng = np.random.default_rng(1)
    for label in ("0", "2"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / label / f"{i}.png")
    out = tmp_path / "model" / "cnn-int8.onnx"
    result = CliRunner().invoke(
        main,
        [
            "export", "--model", "py:test_deploy:small_cnn", "--out", str(out), "--size", "32",
            "--int8", "--calibration", str(folder), "--with-runner",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "int8 (static)" in result.output and "accuracy" in result.output
    assert "IoU with float" in result.output
    assert out.is_file() and (out.parent / "leanxai_runtime.py").read_bytes() == (
        RUNTIME.read_bytes()
    )


def test_compressed_model_exports_the_same_way(tmp_path):
    from leanxai.compress import save_compressed

    model = small_cnn()
    save_compressed(model, tmp_path / "cnn.lxc.safetensors")
    out = tmp_path / "cnn.onnx"
    spec = str(tmp_path / "cnn.lxc.safetensors")
    result = CliRunner().invoke(
        main, ["export", "--model", spec, "--out", str(out), "--size", "32"]
    )
    assert result.exit_code == 0, result.output
    x = torch.randn(2, 3, 32, 32)
    _, _, heatmap, _ = _session(out).run(None, {"pixels": x.numpy()})
    np.testing.assert_allclose(heatmap, GradCAM(model).explain(x).heatmap.numpy(), atol=1e-4)
