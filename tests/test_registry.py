"""One registry of methods, family detection, and what entry points and the CLI say on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import leanxai
from leanxai.cli.main import main
from leanxai.core import families, validate
from leanxai.core.errors import InputError, InputTypeError, LeanXAIError, one_line
from leanxai.explainers import registry
from leanxai.explainers.deepactif import FeatureAttribution
from leanxai.explainers.recurrent import SequenceExplanation
from leanxai.zoo.cnn import SmallCNN
from leanxai.zoo.recurrent import RecurrentClassifier

# -- the registry ---------------------------------------------------------------------------------


def test_names_are_normalised_in_one_place():
    assert registry.get("Grad-CAM++", "cnn").name == "gradcam++"
    assert registry.get("GRADCAMPP", "cnn").name == "gradcam++"
    assert registry.get("guided-backprop", "cnn").name == "guided_backprop"
    assert registry.get("Integrated_Gradients", "cnn").name == "ig"
    assert registry.get("deep_actif", "recurrent").name == "deepactif"


def test_a_name_of_two_families_needs_the_family():
    assert {m.family for m in registry.methods() if m.name == "ig"} == {
        "cnn",
        "recurrent",
        "vision_transformer",
        "text",
    }
    with pytest.raises(InputError, match="several families"):
        registry.get("ig")
    assert registry.get("ig", "recurrent").output == "feature ranking"


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown method 'nosuch' for cnn models") as info:
        registry.get("nosuch", "cnn")
    for name in registry.names("cnn"):
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_entry_is_complete():
    for info in registry.methods():
        assert info.family in families.FAMILIES
        assert info.output in registry.OUTPUTS
        assert info.backward in ("no", "if needed", "yes", "many")
        assert info.summary


def test_create_refuses_unknown_options_before_any_work():
    with pytest.raises(InputError, match="takes no option"):
        registry.create("rise", SmallCNN(), "cnn", options={"n_mask": 3})
    explainer = registry.create("rise", SmallCNN(), "cnn", seed=5, options={"n_masks": 3})
    assert explainer.seed == 5


def test_benchmark_default_methods_are_the_registry_image_methods():
    from leanxai.experiments.methods import DEFAULT_METHODS

    assert set(DEFAULT_METHODS) == set(registry.names("cnn"))


def _accepted_by(args_for: object, names: tuple[str, ...], rejected: str) -> set[str]:
    """Names a command accepts: an accepted method fails later, at the model or data."""
    accepted = set()
    for name in (*names, "nosuch"):
        result = CliRunner().invoke(main, args_for(name))  # type: ignore[operator]
        assert "Traceback" not in result.output
        if rejected not in result.output:
            accepted.add(name)
    return accepted


def test_cli_commands_accept_exactly_the_registry_methods(tmp_path):
    cnn = registry.names("cnn")
    rankings = registry.names("recurrent", output="feature ranking")
    missing = str(tmp_path / "missing.png")
    images = tuple(dict.fromkeys((*cnn, *registry.names("vision_transformer"))))
    explain = _accepted_by(
        lambda m: [
            "explain",
            missing,
            "--model",
            "py:nosuch:f",
            "--method",
            m,
            "--out",
            str(tmp_path),
        ],
        images,
        "unknown method",
    )
    assert explain == set(images)
    benchmark = _accepted_by(
        lambda m: ["benchmark", "--methods", m, "--datasets", "nosuchdata", "--out", str(tmp_path)],
        cnn,
        "unknown method",
    )
    assert benchmark == set(cnn)
    attribute = _accepted_by(
        lambda m: [
            "attribute",
            "--data",
            str(tmp_path / "none.npy"),
            "--method",
            m,
            "--out",
            str(tmp_path),
        ],
        rankings,
        "unknown method",
    )
    assert attribute == set(rankings)


def test_cli_methods_lists_the_registry():
    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[1:]
    listed = {(line.split()[0], line.split()[1]) for line in lines}
    assert listed == {(m.name, m.family) for m in registry.methods()}
    only = CliRunner().invoke(main, ["methods", "--family", "recurrent"])
    assert {line.split()[0] for line in only.output.splitlines()[1:]} == set(
        registry.names("recurrent")
    )
    bad = CliRunner().invoke(main, ["methods", "--family", "tree"])
    assert bad.exit_code == 1 and "--family must be one of" in bad.output


# -- family detection and leanxai.explain ---------------------------------------------------------


def _hf_resnet() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3
    )
    torch.manual_seed(0)
    return transformers.ResNetForImageClassification(config).eval()


def test_explain_picks_the_cnn_family_and_gradcam():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    explanation = leanxai.explain(model, torch.rand(2, 3, 32, 32))
    assert (explanation.family, explanation.method) == ("cnn", "gradcam")
    assert explanation.heatmap.shape == (2, 32, 32)


def test_explain_picks_the_cnn_family_for_a_transformers_resnet():
    model = _hf_resnet()
    x = torch.rand(3, 3, 32, 32)
    assert families.detect(model, x) == "cnn"
    explanation = leanxai.explain(model, x)
    assert (explanation.family, explanation.method) == ("cnn", "gradcam")
    assert explanation.heatmap.shape == (3, 32, 32)


def test_explain_picks_the_recurrent_family_and_deepactif():
    torch.manual_seed(0)
    model = RecurrentClassifier(n_features=4, n_classes=3, hidden=8).eval()
    x = torch.randn(5, 7, 4)
    assert families.detect(model, x) == "recurrent"
    result = leanxai.explain(model, x)  # the default: DeepACTIF per input (issue 17)
    assert isinstance(result, SequenceExplanation)
    assert (result.family, result.method) == ("recurrent", "deepactif_map")
    assert result.attribution.shape == (5, 7, 4)
    ranking = leanxai.explain(model, x, method="deepactif")
    assert isinstance(ranking, FeatureAttribution)
    assert (ranking.family, ranking.method) == ("recurrent", "deepactif")
    assert ranking.importance.shape == (4,)
    other = leanxai.explain(model, x, method="ablation")
    assert other.method == "ablation"


def test_family_override_and_bad_family():
    model = SmallCNN()
    assert families.detect(model, torch.rand(1, 3, 8, 8), family="cnn") == "cnn"
    with pytest.raises(InputError, match="family must be one of"):
        families.detect(model, None, family="tree")


def test_a_model_of_no_known_family_gets_one_line():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(InputError) as info:
        leanxai.explain(model, torch.rand(2, 4))
    message = str(info.value)
    assert "\n" not in message
    assert "cannot tell which kind of model Sequential" in message
    assert "cnn" in message and "recurrent" in message and "family=" in message


# -- errors ---------------------------------------------------------------------------------------


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16)


BAD_CALLS = [
    ("explain: inputs not a tensor", lambda: leanxai.explain(SmallCNN(), [[1.0]], family="cnn")),
    ("explain: model not a module", lambda: leanxai.explain("model", _images())),
    ("explain: unknown method", lambda: leanxai.explain(SmallCNN(), _images(), method="x")),
    ("GradCAM: 3-D inputs", lambda: leanxai.GradCAM(SmallCNN()).explain(torch.rand(3, 16, 16))),
    ("GradCAM: bad target", lambda: leanxai.GradCAM(SmallCNN()).explain(_images(), target=99)),
    ("GradCAM: bad layer", lambda: leanxai.GradCAM(SmallCNN(), layer="nope").explain(_images())),
    ("RISE: bad n_masks", lambda: leanxai.RISE(SmallCNN(), n_masks=0)),
    ("RISE: bad p", lambda: leanxai.RISE(SmallCNN(), p=2.0)),
    ("Occlusion: bad window", lambda: leanxai.Occlusion(SmallCNN(), window=-1)),
    ("top_percent: bad percent", lambda: leanxai.threshold.top_percent(torch.rand(1, 4, 4), 200)),
    ("top_percent: not a tensor", lambda: leanxai.threshold.top_percent([[0.5]], 10)),
    ("deletion: bad steps", lambda: _deletion(steps=0)),
    ("localization: bad mask", lambda: _localization()),
    ("DeepACTIF: 2-D inputs", lambda: _deepactif(torch.rand(3, 4))),
    ("feature_ranking: bad method", lambda: _ranking("nosuch")),
    ("validate.positive_int", lambda: validate.positive_int("n", 0)),
    ("validate.fraction", lambda: validate.fraction("p", 1.5)),
    ("validate.images", lambda: validate.images("x")),
]


def _deletion(steps: int) -> object:
    from leanxai.evaluate import deletion

    return deletion(SmallCNN(), _images(), torch.rand(2, 16, 16), steps=steps)


def _localization() -> object:
    from leanxai.evaluate import localization

    return localization(torch.rand(2, 16, 16) > 0.5, torch.rand(3, 16, 16) > 0.5)


def _recurrent() -> nn.Module:
    return RecurrentClassifier(n_features=4, n_classes=3, hidden=8)


def _deepactif(x: torch.Tensor) -> object:
    return leanxai.DeepACTIF(_recurrent()).attribute(x)


def _ranking(method: str) -> object:
    from leanxai.explainers.deepactif import feature_ranking

    return feature_ranking(_recurrent(), torch.rand(2, 5, 4), method)


@pytest.mark.parametrize(("what", "call"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_the_library_errors(what, call):
    with pytest.raises(LeanXAIError) as info:
        call()
    assert isinstance(info.value, (ValueError, TypeError)), type(info.value).__mro__
    assert str(info.value).strip(), "an error without a message"


def test_type_errors_are_type_errors():
    with pytest.raises(InputTypeError):
        validate.images([1.0])
    with pytest.raises(TypeError):
        leanxai.explain("model", _images())


def test_one_line_never_raises():
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(ValueError("\n\n  second line\nthird")) == "second line"
    assert one_line(RuntimeError("a\nb")) == "a"


# -- the CLI's error boundary ---------------------------------------------------------------------


def _broken_methods(*args: object, **kwargs: object) -> object:
    raise KeyError("a bug")


def test_cli_internal_error_is_one_line_without_traceback(monkeypatch):
    monkeypatch.setattr(registry, "methods", _broken_methods)
    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 4
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "internal error" in lines[0] and "--debug" in lines[0] and "KeyError" in lines[0]


def test_cli_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(registry, "methods", _broken_methods)
    result = CliRunner().invoke(main, ["--debug", "methods"])
    assert result.exit_code == 4
    assert "Traceback" in result.output and "a bug" in result.output


def test_cli_library_error_escaping_a_command_is_one_line(monkeypatch):
    def refuse(*args: object, **kwargs: object) -> object:
        raise InputError("a user error\nwith a second line")

    monkeypatch.setattr(registry, "methods", refuse)
    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: a user error"


def test_cli_usage_error_exits_2():
    result = CliRunner().invoke(main, ["explain", "--nosuch"])
    assert result.exit_code == 2
    unknown = CliRunner().invoke(main, ["nosuchcommand"])
    assert unknown.exit_code == 2


def test_importing_the_cli_has_no_cycle():
    code = "import leanxai.cli.attribute, leanxai.cli.compress, leanxai.cli.route; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
