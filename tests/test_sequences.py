"""Per-input explanations of recurrent classifiers (issue 17): literal float64 references on a
hand-unrolled LSTM, DeepACTIF per input against its aggregate, masks and packed sequences, model
state, temporal windows, the data with planted saliency, the plot and the CLI."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import leanxai
from leanxai.cli.main import main
from leanxai.core.errors import InputError, InputTypeError, LayerError, TargetError
from leanxai.data.sequences import make_box_series, make_switching_series
from leanxai.explainers import recurrent, registry
from leanxai.explainers.deepactif import DeepACTIF
from leanxai.explainers.recurrent import (
    DeepACTIFMap,
    GradientXInput,
    SequenceExplanation,
    SequenceIntegratedGradients,
    TemporalOcclusion,
)
from leanxai.threshold import temporal_windows
from leanxai.viz.sequences import sequence_figure
from leanxai.zoo.recurrent import RecurrentClassifier

ALL = (DeepACTIFMap, GradientXInput, SequenceIntegratedGradients, TemporalOcclusion)


def _model(kind: str = "lstm", features: int = 3, hidden: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return RecurrentClassifier(features, 3, hidden, kind).double().eval()


def _inputs(batch: int = 4, steps: int = 7, features: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(
        batch, steps, features, generator=torch.Generator().manual_seed(seed)
    ).double()


def _lengths_mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


# -- the literal references -----------------------------------------------------------------------


def _unrolled_logits(model: RecurrentClassifier, x: torch.Tensor) -> torch.Tensor:
    """The classifier written out step by step from its weights (PyTorch's LSTM equations)."""
    rnn = model.rnn
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    b = rnn.bias_ih_l0 + rnn.bias_hh_l0
    hidden = rnn.hidden_size
    h = x.new_zeros(x.shape[0], hidden)
    c = x.new_zeros(x.shape[0], hidden)
    for t in range(x.shape[1]):
        gates = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i = torch.sigmoid(gates[:, :hidden])
        f = torch.sigmoid(gates[:, hidden : 2 * hidden])
        g = torch.tanh(gates[:, 2 * hidden : 3 * hidden])
        o = torch.sigmoid(gates[:, 3 * hidden :])
        c = f * c + i * g
        h = o * torch.tanh(c)
    return h @ model.head.weight.T + model.head.bias


def test_gradient_x_input_matches_a_hand_unrolled_lstm():
    model, x = _model(), _inputs()
    result = GradientXInput(model).explain(x, target=[0, 1, 2, 1])
    reference = torch.zeros_like(x)
    for b in range(x.shape[0]):
        leaf = x[b : b + 1].clone().requires_grad_(True)
        score = _unrolled_logits(model, leaf)[0, result.target[b]]
        (grad,) = torch.autograd.grad(score, leaf)
        reference[b] = (grad * leaf)[0].detach()
    assert result.attribution.dtype == torch.float64
    torch.testing.assert_close(result.attribution, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result.time_map, reference.abs().sum(2), rtol=1e-10, atol=1e-12)


def test_occlusion_matches_a_literal_loop_on_a_hand_unrolled_lstm():
    model, x = _model(), _inputs(batch=2, steps=6)
    window = 3
    result = TemporalOcclusion(model, window=window, baseline="mean").explain(x)
    steps, features = x.shape[1], x.shape[2]
    for b in range(x.shape[0]):
        with torch.no_grad():
            c = int(result.target[b])
            base = _unrolled_logits(model, x[b : b + 1])[0, c]
            mean = x[b].mean(dim=0)
            total = torch.zeros(steps, features + 1, dtype=torch.float64)
            count = torch.zeros(steps, features + 1, dtype=torch.float64)
            for start in range(steps - window + 1):
                for group in range(features + 1):
                    occluded = x[b].clone()
                    cols = list(range(features)) if group == features else [group]
                    occluded[start : start + window, cols] = mean[cols]
                    drop = base - _unrolled_logits(model, occluded[None])[0, c]
                    total[start : start + window, group] += drop
                    count[start : start + window, group] += 1
        expected = total / count
        torch.testing.assert_close(
            result.attribution[b], expected[:, :features], rtol=1e-9, atol=1e-12
        )
        torch.testing.assert_close(
            result.time_map[b], expected[:, features].abs(), rtol=1e-9, atol=1e-12
        )


def test_integrated_gradients_is_complete():
    model, x = _model(), _inputs()
    result = SequenceIntegratedGradients(model, n_steps=64).explain(x)
    with torch.no_grad():
        gap = (
            model(x).gather(1, result.target[:, None])[:, 0]
            - model(torch.zeros_like(x)).gather(1, result.target[:, None])[:, 0]
        )
    torch.testing.assert_close(result.attribution.sum((1, 2)), gap, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "bilstm"])
def test_deepactif_map_summed_over_inputs_is_the_aggregate_ranking(kind):
    model, x = _model(kind, hidden=5), _inputs(batch=5, steps=8)
    mask = _lengths_mask([8, 5, 2, 8, 6], 8)
    for m in (None, mask):
        per_input = DeepACTIFMap(model).explain(x, mask=m)
        aggregate = DeepACTIF(model).attribute(x, m)
        valid = per_input.mask
        torch.testing.assert_close(
            per_input.attribution.sum((0, 1)) / valid.sum(),
            aggregate.importance,
            rtol=1e-10,
            atol=1e-14,
        )
        torch.testing.assert_close(
            per_input.attribution.sum(1) / valid.sum(1, keepdim=True),
            aggregate.per_sample,
            rtol=1e-10,
            atol=1e-14,
        )


@pytest.mark.parametrize("mapping", ["candidate", "input_term"])
def test_deepactif_map_other_mappings_and_layers(mapping):
    torch.manual_seed(0)
    model = RecurrentClassifier(3, 2, 4, "gru", num_layers=2).double().eval()
    x = _inputs()
    per_input = DeepACTIFMap(model, mapping=mapping).explain(x)
    aggregate = DeepACTIF(model, mapping=mapping).attribute(x)
    torch.testing.assert_close(
        per_input.attribution.mean((0, 1)), aggregate.importance, rtol=1e-10, atol=1e-14
    )


def _recurrent_layer(mode: str, features: int, hidden: int, bidirectional: bool, bias: bool):
    if mode == "lstm":
        return nn.LSTM(features, hidden, batch_first=True, bidirectional=bidirectional, bias=bias)
    if mode == "gru":
        return nn.GRU(features, hidden, batch_first=True, bidirectional=bidirectional, bias=bias)
    return nn.RNN(
        features,
        hidden,
        batch_first=True,
        bidirectional=bidirectional,
        bias=bias,
        nonlinearity=mode,
    )


# (B, T, H): few elements per step (the cell recurrence by doubling rounds) and many (step by
# step, with several blocks of pairwise products).
@pytest.mark.parametrize("size", [(3, 9, 5), (30, 30, 32)])
@pytest.mark.parametrize("mode", ["lstm", "gru", "tanh", "relu"])
def test_deepactif_map_fast_path_equals_the_vectorised_mapping(mode, size, monkeypatch):
    # The per-input path (time-major gates from the states, pairwise products times the pair
    # weights) against the aggregate's per-step scores, which the DeepACTIF tests check against
    # a step-by-step float64 loop.
    from leanxai.explainers import recurrent_math

    monkeypatch.setattr(recurrent_math, "_PAIR_BLOCK", 256)
    batch, steps, hidden = size
    torch.manual_seed(0)
    x = torch.randn(batch, steps, 4, dtype=torch.float64)
    mask = torch.arange(steps)[None, :] < torch.randint(1, steps + 1, (batch,))[:, None]
    for bidirectional in (False, True):
        for bias in (True, False):
            layer = _recurrent_layer(mode, 4, hidden, bidirectional, bias).double().eval()
            with torch.no_grad():
                states = layer(x)[0]
            for mapping in ("gated", "candidate"):
                for m in (None, mask):
                    expected = recurrent_math._recurrent_scores(layer, x, m, mapping, "l2")
                    ours = recurrent._map_scores(layer, x, m, None, mapping, "l2")
                    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-13)
                reused = recurrent._map_scores(layer, x, None, states, mapping, "l2")
                expected = recurrent_math._recurrent_scores(layer, x, None, mapping, "l2")
                torch.testing.assert_close(reused, expected, rtol=1e-10, atol=1e-13)
    # float32: the same scores to float32 precision.
    layer = _recurrent_layer(mode, 4, hidden, True, True).eval()
    torch.testing.assert_close(
        recurrent._map_scores(layer, x.float(), mask, None, "gated", "l2"),
        recurrent_math._recurrent_scores(layer, x.float(), mask, "gated", "l2"),
        rtol=1e-4,
        atol=1e-6,
    )


# -- masks and packed sequences -------------------------------------------------------------------


class _Packed(nn.Module):
    """The classifier's layers, called with a tensor or a PackedSequence (readout: last state)."""

    def __init__(self, model: RecurrentClassifier) -> None:
        super().__init__()
        self.rnn, self.head = model.rnn, model.head

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.rnn.bidirectional else 1
        return self.head(torch.cat(list(h_n[-directions:]), dim=1))


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("kind", ["lstm", "bigru"])
def test_a_sequence_alone_and_padded_in_a_batch_gets_the_same_map(method, kind):
    model, x = _model(kind), _inputs(batch=3, steps=9)
    lengths = [9, 4, 6]
    mask = _lengths_mask(lengths, 9)
    padded = torch.where(mask[:, :, None], x, torch.full_like(x, 7.0))  # junk in the padding
    batch = method(model).explain(padded, mask=mask)
    packed = method(_Packed(model)).explain(
        pack_padded_sequence(padded, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    )
    for b, length in enumerate(lengths):
        alone = method(model).explain(x[b : b + 1, :length])
        for result in (batch, packed):
            torch.testing.assert_close(
                result.attribution[b, :length], alone.attribution[0], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                result.time_map[b, :length], alone.time_map[0], atol=1e-5, rtol=1e-5
            )
            assert not result.attribution[b, length:].any()
            assert not result.time_map[b, length:].any()
            assert result.mask[b].sum() == length
        assert int(batch.target[b]) == int(alone.target[0])


def test_time_major_models_are_explained_in_their_layout():
    torch.manual_seed(0)
    model = RecurrentClassifier(3, 2, 4, "lstm", batch_first=False).double().eval()
    x = _inputs()
    for method in ALL:
        time_major = method(model).explain(x.transpose(0, 1))
        assert time_major.attribution.shape == x.shape


# -- the model is left as it was ------------------------------------------------------------------


class _Dropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        if self.fail:
            raise RuntimeError("boom")
        return self.head(self.drop(out[:, -1]))


@pytest.mark.parametrize("method", ALL)
def test_model_unchanged_after_success_and_error(method, state_guard):
    torch.manual_seed(0)
    model = _Dropout().double().train()
    model.rnn.weight_hh_l0.requires_grad_(False)
    flags = (
        torch.backends.cudnn.enabled,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    check = state_guard(model)
    x = _inputs()
    first = method(model).explain(x)
    second = method(model).explain(x)
    torch.testing.assert_close(first.attribution, second.attribution)  # eval mode: no dropout
    check()
    model.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        method(model).explain(x)
    check()
    assert model.training
    with pytest.raises(InputError):
        method(model).explain(torch.full_like(x, float("nan")))
    check()
    assert (
        torch.backends.cudnn.enabled,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    ) == flags


def test_cudnn_is_off_for_the_call_only_and_restored_after_an_error():
    flags = torch.backends.cudnn.enabled
    with recurrent._backward_ready(torch.device("cuda")):
        assert torch.backends.cudnn.enabled is False
    assert torch.backends.cudnn.enabled == flags
    with pytest.raises(RuntimeError), recurrent._backward_ready(torch.device("cuda")):
        raise RuntimeError("x")
    assert torch.backends.cudnn.enabled == flags


def test_bad_arguments_raise_library_errors():
    model, x = _model(), _inputs()
    with pytest.raises(InputError, match="inputs must have shape"):
        GradientXInput(model).explain(x[0])
    with pytest.raises(InputError, match="mask must have shape"):
        DeepACTIFMap(model).explain(x, mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(InputTypeError):
        DeepACTIFMap(model).explain(x.numpy())
    with pytest.raises(InputTypeError, match=r"must be a torch\.nn\.LSTM"):
        DeepACTIFMap(model, layer="head").explain(x)
    with pytest.raises(LayerError, match="does not exist"):
        DeepACTIFMap(model, layer="nope").explain(x)
    with pytest.raises(InputError, match="window"):
        TemporalOcclusion(model, window=0)
    with pytest.raises(InputError, match="baseline"):
        TemporalOcclusion(model, baseline="median")
    with pytest.raises(TargetError, match="out of range"):
        DeepACTIFMap(model).explain(x, target=7)


# -- the registry and leanxai.explain ------------------------------------------------------------


def test_registry_and_default():
    maps = registry.names("recurrent", output="time x feature map")
    assert maps == ("deepactif_map", "gxi_map", "ig_map", "occlusion_map")
    assert registry.default_method("recurrent") == "deepactif_map"
    assert registry.get("gradient_x_input", "recurrent").name == "gxi_map"
    assert registry.get("temporal-occlusion", "recurrent").name == "occlusion_map"
    assert registry.get("deepactif", "recurrent").output == "feature ranking"
    model, x = _model(), _inputs()
    result = leanxai.explain(model, x)
    assert isinstance(result, SequenceExplanation)
    assert (result.family, result.method) == ("recurrent", "deepactif_map")
    assert result.attribution.shape == x.shape and result.time_map.shape == x.shape[:2]
    assert leanxai.explain(model, x, method="occlusion_map", window=2).method == "occlusion_map"


# -- temporal windows ----------------------------------------------------------------------------


def test_temporal_windows_keeps_top_steps_and_closes_short_gaps():
    values = torch.tensor([0, 5, 0, 4, 0, 0, 3, 0, 0, 0, 1.0, 2])
    assert temporal_windows(values, 40, 1).nonzero()[:, 0].tolist() == [1, 3, 6, 10, 11]
    assert temporal_windows(values, 40, 2).nonzero()[:, 0].tolist() == [1, 2, 3, 6, 10, 11]
    assert temporal_windows(values, 40, 3).nonzero()[:, 0].tolist() == [1, 2, 3, 4, 5, 6, 10, 11]
    batch = torch.stack([values, values])
    mask = _lengths_mask([12, 6], 12)
    kept = temporal_windows(batch, 40, 3, mask=mask)
    assert kept[1].nonzero()[:, 0].tolist() == [1, 2, 3]  # 5 and 4 kept, no step past the mask
    assert not temporal_windows(torch.zeros(5), 50, 3).any()
    with pytest.raises(InputError):
        temporal_windows(values, 0, 2)
    with pytest.raises(InputError):
        temporal_windows(-values, 10, 2)
    with pytest.raises(InputError):
        temporal_windows(values, 10, 0)


# -- data ----------------------------------------------------------------------------------------


def test_planted_saliency():
    box = make_box_series(40, 3, length=20, n_features=5, n_informative=2, window=4)
    assert box.inputs.shape == (40, 20, 5) and box.saliency.shape == (40, 20, 5)
    assert (box.saliency.sum((1, 2)) == 8).all()
    assert (box.time_saliency.sum(1) == 4).all()
    again = make_box_series(40, 3, length=20, n_features=5, n_informative=2, window=4)
    assert torch.equal(box.inputs, again.inputs)
    sign = (2.0 * box.labels - 1)[:, None, None]
    planted = (box.inputs * sign)[box.saliency].mean()
    assert planted > 0.6  # noise has mean 0 there
    switching = make_switching_series(30, 0, length=30, n_features=4, n_states=3, window=5)
    assert (switching.saliency.sum((1, 2)) == 15).all()
    assert (switching.saliency.sum(1) > 0).sum(1).eq(3).all()  # three different features
    with pytest.raises(InputError):
        make_box_series(10, 0, window=100)


# -- the plot and the CLI ------------------------------------------------------------------------


def test_sequence_figure_is_a_png():
    png = sequence_figure(torch.randn(12, 3), torch.rand(12, 3), torch.arange(12) > 6)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError):
        sequence_figure(torch.randn(12, 3), torch.rand(11, 3))


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "leanxai_sequence_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from leanxai.zoo.recurrent import RecurrentClassifier

            def tiny():
                torch.manual_seed(0)
                return RecurrentClassifier(3, 2, 4, "lstm").eval()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "py:leanxai_sequence_models:tiny"
    sys.modules.pop("leanxai_sequence_models", None)


def test_cli_explains_series_files(tmp_path, factory_module):
    one = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    batch = np.random.default_rng(1).standard_normal((2, 8, 3)).astype(np.float32)
    batch[1, 5:] = np.nan  # padding
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "bad.npy", np.zeros((3, 3, 3, 3)))
    out = tmp_path / "out"
    args = ["explain", str(tmp_path / "one.npy"), str(tmp_path / "batch.npy")]
    result = CliRunner().invoke(main, [*args, "--model", factory_module, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert np.load(out / "one.npy").shape == (10, 3)
    assert np.load(out / "batch-1.npy").shape == (5, 3)
    assert (out / "batch-0.png").read_bytes()[:4] == b"\x89PNG"
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and "deepactif_map" in summary[1]
    again = CliRunner().invoke(
        main,
        [
            *args,
            str(tmp_path / "bad.npy"),
            "--model",
            factory_module,
            "--out",
            str(out),
            "--overwrite",
            "--method",
            "occlusion_map",
            "--threshold",
            "windows:30:2",
        ],
    )
    assert again.exit_code == 3, again.output
    assert "bad.npy" in again.output
    ranking = CliRunner().invoke(
        main, [*args, "--model", factory_module, "--out", str(out), "--method", "deepactif"]
    )
    assert ranking.exit_code == 1 and "ranks features" in ranking.output
