"""DeepACTIF: the unrolled recurrence against PyTorch, each mapping and aggregation against a
literal float64 reference, one forward pass and no backward, masks, errors, and the baselines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from leanxai.core.errors import InputError, LayerError, TargetError
from leanxai.explainers.deepactif import (
    DEFAULT_AGGREGATION,
    DEFAULT_MAPPING,
    RANKING_METHODS,
    DeepACTIF,
    FeatureAttribution,
    RankingMethod,
    _recurrent_scores,
    aggregate,
    feature_ranking,
    front_end_scores,
    minmax,
    unroll_recurrent,
)
from leanxai.zoo.recurrent import (
    FrontEndRecurrentClassifier,
    RecurrentClassifier,
    retrain_on_features,
    train_recurrent,
)

B, T, F, H = 3, 6, 4, 5


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny recurrent ops run fastest on one thread; on a busy shared CPU two intra-op threads
    made training ten times slower. The caller's setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LENGTHS = torch.tensor([6, 2, 4])
MASK = torch.arange(T)[None, :] < LENGTHS[:, None]  # (B, T), right padding


def sequences(batch: int = B, steps: int = T, features: int = F, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, features, generator=generator, dtype=torch.float64)


def classifier(kind: str = "lstm", seed: int = 0, **kw: Any) -> RecurrentClassifier:
    torch.manual_seed(seed)
    return RecurrentClassifier(F, 3, hidden=H, kind=kind, **kw).double().eval()


RECURRENT = {
    "lstm": lambda: nn.LSTM(F, H, batch_first=True),
    "gru": lambda: nn.GRU(F, H, batch_first=True),
    "rnn_tanh": lambda: nn.RNN(F, H, batch_first=True),
    "rnn_relu": lambda: nn.RNN(F, H, nonlinearity="relu", batch_first=True),
    "bilstm_time_major": lambda: nn.LSTM(F, H, bidirectional=True),
    "stacked_bigru": lambda: nn.GRU(F, H, num_layers=2, bidirectional=True, batch_first=True),
    "stacked_lstm_proj": lambda: nn.LSTM(F, H, num_layers=2, proj_size=2, batch_first=True),
}


# -- the unrolled recurrence ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_unrolled_recurrence_matches_pytorch(name: str) -> None:
    torch.manual_seed(1)
    module = RECURRENT[name]().double().eval()
    x = sequences()
    inputs = x if module.batch_first else x.transpose(0, 1)
    output, state = module(inputs)
    h_n = state[0] if isinstance(state, tuple) else state
    ours, ours_h = unroll_recurrent(module, inputs)
    torch.testing.assert_close(ours, output, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_h, h_n, rtol=0, atol=1e-12)
    # With a mask: what the module computes for the packed sequences.
    packed = pack_padded_sequence(
        inputs, LENGTHS, batch_first=module.batch_first, enforce_sorted=False
    )
    packed_output, state = module(packed)
    output, _ = pad_packed_sequence(packed_output, batch_first=module.batch_first, total_length=T)
    h_n = state[0] if isinstance(state, tuple) else state
    ours, ours_h = unroll_recurrent(module, inputs, MASK)
    torch.testing.assert_close(ours, output, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_h, h_n, rtol=0, atol=1e-12)


# -- mappings against literal references ----------------------------------------------------------


def reference_local_jacobian_scores(module: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """``|x[t, f]| * ||d h_t / d x_t [:, f]||_2`` by autograd through one cell step at a time,
    the previous state held fixed; summed over directions. ``x`` is ``(B, T, F)``."""
    total = torch.zeros_like(x)
    for reverse in (False, True)[: 2 if module.bidirectional else 1]:
        suffix = "_l0" + ("_reverse" if reverse else "")
        cell_type = nn.LSTMCell if isinstance(module, nn.LSTM) else nn.GRUCell
        cell = cell_type(module.input_size, module.hidden_size).double()
        with torch.no_grad():
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, part).copy_(getattr(module, part + suffix))
        h = torch.zeros(x.shape[0], module.hidden_size, dtype=torch.float64)
        c = torch.zeros_like(h)
        order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        for t in order:
            for b in range(x.shape[0]):
                h_b, c_b = h[b : b + 1], c[b : b + 1]  # the previous state, held fixed

                def step(
                    x_t: torch.Tensor, cell: nn.Module = cell, h_b: torch.Tensor = h_b,
                    c_b: torch.Tensor = c_b,
                ) -> torch.Tensor:  # fmt: skip
                    if isinstance(cell, nn.LSTMCell):
                        return cell(x_t[None], (h_b, c_b))[0][0]
                    return cell(x_t[None], h_b)[0]

                jacobian = torch.autograd.functional.jacobian(step, x[b, t])  # (H, F)
                total[b, t] += x[b, t].abs() * jacobian.norm(dim=0)
            with torch.no_grad():
                if isinstance(cell, nn.LSTMCell):
                    h, c = cell(x[:, t], (h, c))
                else:
                    h = cell(x[:, t], h)
    return total


@pytest.mark.parametrize("kind", ["lstm", "gru", "bilstm", "stacked_gru"])
def test_gated_mapping_is_the_local_jacobian_times_input(kind: str) -> None:
    # Stacked: only the first layer sees the input; its weights and gates are used.
    stacked = kind.startswith("stacked_")
    module = classifier(kind.removeprefix("stacked_"), num_layers=2 if stacked else 1).rnn
    x = sequences()
    ours = _recurrent_scores(module, x, None, "gated", "l2")
    torch.testing.assert_close(ours, reference_local_jacobian_scores(module, x), rtol=1e-10, atol=0)


def test_candidate_mapping_literal_lstm_and_gru() -> None:
    x = sequences()
    lstm = classifier("lstm").rnn
    w_ig = lstm.weight_ih_l0.detach().chunk(4)[2]
    expected = torch.zeros_like(x)
    h = torch.zeros(B, H, dtype=torch.float64)
    c = torch.zeros_like(h)
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()
    for t in range(T):
        pre = x[:, t] @ lstm.weight_ih_l0.detach().T + h @ lstm.weight_hh_l0.detach().T + bias
        i, f, g, o = pre.chunk(4, dim=1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        for feature in range(F):
            term = (o * (1 - c.tanh() ** 2) * i * (1 - g**2))[:, :, None] * w_ig[None]
            expected[:, t, feature] = (term[:, :, feature] * x[:, t, feature, None]).norm(dim=1)
    ours = _recurrent_scores(lstm, x, None, "candidate", "l2")
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-14)

    gru = classifier("gru").rnn
    w_in = gru.weight_ih_l0.detach().chunk(3)[2]
    expected = torch.zeros_like(x)
    h = torch.zeros(B, H, dtype=torch.float64)
    for t in range(T):
        gi = x[:, t] @ gru.weight_ih_l0.detach().T + gru.bias_ih_l0.detach()
        gh = h @ gru.weight_hh_l0.detach().T + gru.bias_hh_l0.detach()
        r = (gi.chunk(3, 1)[0] + gh.chunk(3, 1)[0]).sigmoid()
        z = (gi.chunk(3, 1)[1] + gh.chunk(3, 1)[1]).sigmoid()
        n = (gi.chunk(3, 1)[2] + r * gh.chunk(3, 1)[2]).tanh()
        h = (1 - z) * n + z * h
        for feature in range(F):
            term = ((1 - z) * (1 - n**2)) * w_in[:, feature] * x[:, t, feature, None]
            expected[:, t, feature] = term.norm(dim=1)
    ours = _recurrent_scores(gru, x, None, "candidate", "l2")
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-14)


def test_input_term_literal_with_both_directions() -> None:
    module = classifier("bilstm").rnn
    x = sequences()
    weights = [module.weight_ih_l0.detach(), module.weight_ih_l0_reverse.detach()]
    expected = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            for f in range(F):
                size = sum(float(np.linalg.norm(w[:, f].numpy())) for w in weights)
                expected[b, t, f] = abs(float(x[b, t, f])) * size
    torch.testing.assert_close(_recurrent_scores(module, x, None, "input_term", "l2"), expected)


def loop_scores(
    module: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor | None, mapping: str, norm: str
) -> torch.Tensor:
    """The gated and candidate mappings step by step, one time step and direction at a time,
    from the first layer's weights, in ``x``'s dtype (the implementation before the mappings
    were vectorised over time). At a masked step the state is carried over and the score is 0."""
    gates = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}[module.mode]
    batch, steps, _ = x.shape
    total = torch.zeros_like(x)
    for reverse in (False, True)[: 2 if module.bidirectional else 1]:
        suffix = "_l0" + ("_reverse" if reverse else "")

        def get(name: str, suffix: str = suffix) -> torch.Tensor | None:
            value = getattr(module, name + suffix, None)
            return None if value is None else value.detach().to(x.dtype)

        w_ih, w_hh, b_ih, b_hh, w_hr = (
            get(n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        )
        assert w_ih is not None and w_hh is not None
        hidden = module.hidden_size
        h = x.new_zeros(batch, w_hh.shape[1])
        c = x.new_zeros(batch, hidden)
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            x_t = x[:, t]  # (B, F)
            gi = nn.functional.linear(x_t, w_ih, b_ih)
            gh = nn.functional.linear(h, w_hh, b_hh)
            c_new = c
            if module.mode == "LSTM":
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                c_new = f * c + i * g
                tanh_c = c_new.tanh()
                h_new = o * tanh_c
                dc = o * (1 - tanh_c**2)
                a_g = dc * i * (1 - g**2)
                zero = torch.zeros_like(a_g)
                a_i, a_f, a_o = dc * g * i * (1 - i), dc * c * f * (1 - f), tanh_c * o * (1 - o)
                coefficients = (
                    torch.cat([a_i, a_f, a_g, a_o], 1)
                    if mapping == "gated"
                    else torch.cat([zero, zero, a_g, zero], 1)
                )
                if w_hr is not None:
                    h_new = nn.functional.linear(h_new, w_hr)
            elif module.mode == "GRU":
                gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
                gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
                r, z = (gi_r + gh_r).sigmoid(), (gi_z + gh_z).sigmoid()
                n = (gi_n + r * gh_n).tanh()
                h_new = (1 - z) * n + z * h
                a_n = (1 - z) * (1 - n**2)
                zero = torch.zeros_like(a_n)
                coefficients = (
                    torch.cat([a_n * gh_n * r * (1 - r), (h - n) * z * (1 - z), a_n], 1)
                    if mapping == "gated"
                    else torch.cat([zero, zero, a_n], 1)
                )
            else:
                pre = gi + gh
                h_new = pre.tanh() if module.mode == "RNN_TANH" else pre.relu()
                coefficients = 1 - h_new**2 if module.mode == "RNN_TANH" else (pre > 0).to(x.dtype)
            jacobian = coefficients[:, :, None] * w_ih[None]  # (B, G*H, F)
            jacobian = jacobian.view(batch, gates, hidden, -1).sum(dim=1)  # (B, H, F)
            if w_hr is not None:
                jacobian = torch.einsum("ph,bhf->bpf", w_hr, jacobian)
            step = x_t.abs() * jacobian.norm(p=2 if norm == "l2" else 1, dim=1)  # (B, F)
            if mask is not None:
                valid = mask[:, t, None]
                h_new, c_new = torch.where(valid, h_new, h), torch.where(valid, c_new, c)
                step = step * valid
            h, c = h_new, c_new
            total[:, t] += step
    return total


HOLES = torch.tensor(  # (B, T): valid steps with gaps, not a prefix
    [[True, False, True, True, False, True], [False, True, True, False, False, False],
     [True, True, False, False, True, False]]
)  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECURRENT))
@pytest.mark.parametrize("mapping", ["gated", "candidate"])
def test_vectorised_mappings_equal_the_step_by_step_loop(name: str, mapping: str) -> None:
    torch.manual_seed(2)
    module = RECURRENT[name]().double().eval()
    x = sequences(seed=4)
    for mask in (None, MASK, HOLES):
        for norm in ("l2", "l1"):
            ours = _recurrent_scores(module, x, mask, mapping, norm)
            expected = loop_scores(module, x, mask, mapping, norm)
            torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-13)
    # float32 weights and inputs: the same scores to float32 precision.
    single = RECURRENT[name]().eval()
    ours = _recurrent_scores(single, x.float(), MASK, mapping, "l2")
    torch.testing.assert_close(ours, loop_scores(single, x.float(), MASK, mapping, "l2"))


def test_vectorised_mapping_over_long_sequences_and_small_blocks(monkeypatch: Any) -> None:
    # Enough steps for several doubling rounds of the cell-state scan, and blocks of one
    # sequence each.
    from leanxai.explainers import recurrent_math

    monkeypatch.setattr(recurrent_math, "_JACOBIAN_BLOCK", 70 * H * F)
    torch.manual_seed(3)
    module = nn.LSTM(F, H, bidirectional=True, batch_first=True).double().eval()
    x = sequences(batch=2, steps=70, seed=5)
    mask = torch.arange(70)[None, :] < torch.tensor([70, 33])[:, None]
    ours = _recurrent_scores(module, x, mask, "gated", "l2")
    torch.testing.assert_close(
        ours, loop_scores(module, x, mask, "gated", "l2"), rtol=1e-10, atol=1e-13
    )


# -- aggregations against a literal float64 reference ---------------------------------------------


def reference_aggregate(a: np.ndarray, mask: np.ndarray, aggregation: str) -> np.ndarray:
    valid = np.abs(a)[mask]  # (n_valid, F)
    mean, std = valid.mean(axis=0), valid.std(axis=0)  # np.std: ddof=0

    def scale(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        return np.zeros_like(v) if span == 0 else (v - v.min()) / span

    if aggregation == "mean":
        return mean
    if aggregation == "mean_minus_std":
        return mean - std
    return (scale(mean) + 1 - scale(std)) / 2


@pytest.mark.parametrize("aggregation", ["mean", "mean_minus_std", "inverse"])
def test_aggregations_match_numpy_reference(aggregation: str) -> None:
    a = sequences(seed=3).numpy() * np.array([0.1, 1.0, 3.0, 0.5])
    importance, per_sample = aggregate(torch.from_numpy(a), MASK, aggregation)
    mask = MASK.numpy()
    np.testing.assert_allclose(importance.numpy(), reference_aggregate(a, mask, aggregation))
    for b in range(B):
        np.testing.assert_allclose(per_sample[b].numpy(), np.abs(a[b][mask[b]]).mean(axis=0))
    unmasked, _ = aggregate(torch.from_numpy(a), None, aggregation)
    full = np.ones((B, T), dtype=bool)
    np.testing.assert_allclose(unmasked.numpy(), reference_aggregate(a, full, aggregation))


def test_inverse_rule_on_hand_values_and_constant_vectors() -> None:
    # Two samples, one step each: |A| per feature -> mean a, std s.
    a = torch.tensor([[[1.0, 2.0, 4.0]], [[1.0, 4.0, 4.0]]], dtype=torch.float64)
    importance, _ = aggregate(a, None, "inverse")
    # a = (1, 3, 4) -> (0, 2/3, 1); s = (0, 1, 0) -> (0, 1, 0)
    expected = torch.tensor([(0 + 1 - 0) / 2, (2 / 3 + 1 - 1) / 2, (1 + 1 - 0) / 2])
    torch.testing.assert_close(importance, expected.double())
    assert torch.equal(minmax(torch.full((4,), 2.5)), torch.zeros(4))
    constant, _ = aggregate(torch.ones(2, 3, 4), None, "inverse")
    assert torch.equal(constant, torch.full((4,), 0.5, dtype=torch.float64))


# -- the explainer --------------------------------------------------------------------------------


def test_one_forward_pass_no_backward_and_model_unchanged(state_guard: Any) -> None:
    model = classifier("lstm")
    model.train()  # eval mode for the call, then restored
    check = state_guard(model)
    x = sequences()
    calls = {"model": 0, "rnn": 0}
    saved = {"count": 0}

    def counter(key: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            calls[key] += 1

        return hook

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved["count"] += 1
        return tensor

    finished = {"rnn": 0, "head": 0}

    def done(key: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            finished[key] += 1

        return hook

    handles = [
        model.register_forward_pre_hook(counter("model")),
        model.rnn.register_forward_pre_hook(counter("rnn")),
        model.rnn.register_forward_hook(done("rnn")),
    ]
    handles += [m.register_forward_hook(done("head")) for m in model.head.modules()]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = DeepACTIF(model).attribute(x)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"model": 1, "rnn": 1}
    # The model's forward stops where the LSTM is called: the LSTM's own pass is the fused one
    # DeepACTIF runs on the captured input, and nothing after it runs.
    assert finished == {"rnn": 0, "head": 0}
    assert saved["count"] == 0, "an autograd graph was recorded"
    assert result.importance.grad_fn is None and result.per_sample.grad_fn is None
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    check()
    assert isinstance(result, FeatureAttribution)
    assert result.importance.shape == (F,) and result.per_sample.shape == (B, F)
    assert result.ranking.dtype == torch.int64
    assert sorted(result.ranking.tolist()) == list(range(F))
    ordered = result.importance[result.ranking]
    assert torch.all(ordered[:-1] >= ordered[1:])
    assert (result.method, result.aggregation) == ("deepactif", DEFAULT_AGGREGATION)
    assert (result.mapping, result.layer) == (DEFAULT_MAPPING, "rnn")


def test_mask_excludes_padded_steps() -> None:
    model = classifier("bilstm")
    x = sequences()
    explainer = DeepACTIF(model, aggregation="inverse")
    result = explainer.attribute(x, MASK)
    changed = x.clone()
    changed[~MASK] = 1e3  # padded values must not matter
    again = explainer.attribute(changed, MASK)
    torch.testing.assert_close(again.importance, result.importance, rtol=0, atol=0)
    torch.testing.assert_close(again.per_sample, result.per_sample, rtol=0, atol=0)
    # A padded sample is scored as its unpadded sequence alone.
    short = DeepACTIF(model, aggregation="inverse").attribute(x[1:2, : int(LENGTHS[1])])
    torch.testing.assert_close(short.per_sample[0], result.per_sample[1], rtol=1e-12, atol=0)


def test_layouts_and_packed_sequences_agree() -> None:
    model = classifier("gru")
    x = sequences()
    reference = DeepACTIF(model).attribute(x, MASK)
    time_major = classifier("gru", batch_first=False)
    other = DeepACTIF(time_major).attribute(x.transpose(0, 1), MASK)
    torch.testing.assert_close(other.importance, reference.importance)

    class PackedModel(nn.Module):
        def __init__(self, rnn: nn.Module) -> None:
            super().__init__()
            self.rnn = rnn

        def forward(self, packed: Any) -> torch.Tensor:
            return self.rnn(packed)[1][-1]

    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    from_packed = DeepACTIF(PackedModel(model.rnn)).attribute(packed)
    torch.testing.assert_close(from_packed.importance, reference.importance)


def test_named_projection_layer_and_named_recurrent_layer() -> None:
    class Projected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(F, F)
            self.rnn = nn.LSTM(F, H, batch_first=True)
            self.wide = nn.Linear(F, 2 * F)
            self.head = nn.Linear(H, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.wide(x)
            return self.head(self.rnn(self.proj(x))[0][:, -1])

    torch.manual_seed(0)
    model = Projected().double().eval()
    x = sequences()
    result = DeepACTIF(model, layer="proj", aggregation="mean").attribute(x)
    with torch.no_grad():
        expected = model.proj(x).abs().mean(dim=(0, 1))
    torch.testing.assert_close(result.importance, expected)
    assert (result.mapping, result.layer) == ("layer", "proj")
    # The recurrent layer reads the projection's output, captured in the forward pass.
    on_rnn = DeepACTIF(model, mapping="gated").attribute(x)
    with torch.no_grad():
        direct = _recurrent_scores(model.rnn, model.proj(x), None, "gated", "l2")
    torch.testing.assert_close(on_rnn.importance, direct.abs().mean(dim=(0, 1)))
    with pytest.raises(LayerError, match="wide"):
        DeepACTIF(model, layer="wide").attribute(x)
    with pytest.raises(ValueError, match="mapping"):
        DeepACTIF(model, layer="proj", mapping="gated").attribute(x)


def test_bad_inputs_raise_one_clear_error(state_guard: Any) -> None:
    model = classifier("lstm")
    check = state_guard(model)
    explainer = DeepACTIF(model)
    with pytest.raises(InputError, match=r"\(B, T, F\)"):
        explainer.attribute(sequences()[0])
    with pytest.raises(TypeError, match="inputs"):
        explainer.attribute(sequences().numpy())  # type: ignore[arg-type]
    bad = sequences()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        explainer.attribute(bad)
    with pytest.raises(InputError, match="length zero"):
        explainer.attribute(torch.zeros(B, 0, F, dtype=torch.float64))
    empty = MASK.clone()
    empty[2] = False
    with pytest.raises(InputError, match=r"length zero \(samples \[2\]\)"):
        explainer.attribute(sequences(), empty)
    with pytest.raises(InputError, match="mask"):
        explainer.attribute(sequences(), MASK[:, :3])
    with pytest.raises(LayerError, match="input_size=4"):
        explainer.attribute(sequences(features=3))
    with pytest.raises(LayerError, match=r"no nn\.LSTM"):
        DeepACTIF(nn.Sequential(nn.Linear(F, F))).attribute(sequences())
    with pytest.raises(LayerError, match="does not exist"):
        DeepACTIF(model, layer="nope").attribute(sequences())
    with pytest.raises(ValueError, match="aggregation"):
        DeepACTIF(model, aggregation="median")
    with pytest.raises(ValueError, match="mapping"):
        DeepACTIF(model, mapping="attention")
    check()


# -- the baselines --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", RANKING_METHODS)
def test_feature_ranking_every_method_leaves_the_model_unchanged(
    method: str, state_guard: Any
) -> None:
    model = classifier("lstm").train()  # eval mode for the call, then restored
    check = state_guard(model)
    x = sequences()
    options = {"n_steps": 8, "n_samples": 4} if method in ("ig", "shap") else {}
    result = feature_ranking(model, x, method, mask=MASK, **options)
    check()
    assert result.method == method and result.importance.shape == (F,)
    assert result.per_sample.shape == (B, F)
    assert torch.isfinite(result.importance).all()
    with pytest.raises(TargetError):
        feature_ranking(model, x, method if method != "deepactif" else "ig", target=7)
    check()


def test_deeplift_on_an_lstm_is_gradient_times_input() -> None:
    """Captum's DeepLift rescales only module nonlinearities; an LSTM's gates are functional."""
    model = classifier("lstm")
    x = sequences()
    result = feature_ranking(model, x, "deeplift", target=1)
    inputs = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(inputs)[:, 1].sum(), inputs)
    torch.testing.assert_close(result.importance, (grad * x).abs().mean(dim=(0, 1)))


def test_ablation_is_the_logit_drop_of_each_zeroed_feature() -> None:
    model = classifier("gru")
    x = sequences()
    result = feature_ranking(model, x, "ablation", target=0)
    with torch.no_grad():
        full = model(x)[:, 0]
        expected = torch.zeros(B, F, dtype=torch.float64)
        for f in range(F):
            ablated = x.clone()
            ablated[:, :, f] = 0
            expected[:, f] = (full - model(ablated)[:, 0]).abs()
    torch.testing.assert_close(result.per_sample, expected)


# -- the zoo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_classifier_mask_equals_truncated_sequences(readout: str) -> None:
    model = classifier("bilstm", readout=readout)
    x = sequences()
    with torch.no_grad():
        batched = model(x, MASK)
        for b in range(B):
            alone = model(x[b : b + 1, : int(LENGTHS[b])])
            torch.testing.assert_close(batched[b : b + 1], alone)


def test_informative_features_found_on_a_trained_lstm() -> None:
    from leanxai.data.timeseries import make_informative_series

    train = make_informative_series(160, seed=0, length=16)
    test = make_informative_series(160, seed=1, length=16)
    model = train_recurrent(train.inputs, train.labels, "lstm", seed=0, epochs=8, hidden=16)
    result = DeepACTIF(model, mapping="input_term", aggregation="mean").attribute(train.inputs)
    assert train.informative is not None
    found = set(result.top(len(train.informative)).tolist()) & set(train.informative)
    assert len(found) >= len(train.informative) - 1, (result.ranking, train.informative)
    top = result.top(2).tolist()
    assert retrain_on_features(
        train.inputs, train.labels, test.inputs, test.labels, top, epochs=8, hidden=16
    ) > retrain_on_features(
        train.inputs,
        train.labels,
        test.inputs,
        test.labels,
        [f for f in range(8) if f not in train.informative][:2],
        epochs=8,
        hidden=16,
    )


def test_load_recurrent_model_caches_the_weights(tmp_path: Any) -> None:
    from leanxai.zoo.recurrent import load_recurrent_model

    model, metadata = load_recurrent_model("synthetic", "gru", cache_dir=tmp_path)
    assert metadata["test_accuracy"] > 0.9 and metadata["kind"] == "gru"
    assert len(list(tmp_path.glob("recurrent-synthetic-gru-s0-*.safetensors"))) == 1
    cached, again = load_recurrent_model("synthetic", "gru", cache_dir=tmp_path)
    assert again["weights_sha256"] == metadata["weights_sha256"]
    for key, value in model.state_dict().items():
        assert torch.equal(cached.state_dict()[key], value)
    with pytest.raises(ValueError, match="name"):
        load_recurrent_model("mnist")


def test_shap_ranking_is_reproducible_and_restores_the_generators() -> None:
    # Captum's GradientShap draws from NumPy's global generator: seeded for the call only.
    model, x = classifier("lstm"), sequences()
    np.random.seed(123)
    torch.manual_seed(123)
    expected_np, expected_torch = np.random.random(), torch.rand(1)
    np.random.seed(123)
    torch.manual_seed(123)
    first = feature_ranking(model, x, "shap", n_samples=4, seed=3)
    assert np.random.random() == expected_np and torch.equal(torch.rand(1), expected_torch)
    second = feature_ranking(model, x, "shap", n_samples=4, seed=3)
    assert torch.equal(first.importance, second.importance)


# -- the split: one registry, re-exports, the library's errors, generators left alone (issue 14) ---


def test_ranking_methods_are_the_registrys_and_dispatch_through_it() -> None:
    from leanxai.explainers import registry

    entries = registry.methods("recurrent", output="feature ranking")
    assert tuple(info.name for info in entries) == RANKING_METHODS
    # Each registered once, by the module that defines it.
    factory = registry.get("deepactif", "recurrent").factory
    assert factory.func is RankingMethod and factory.args == ("deepactif",)
    for name in RANKING_METHODS[1:]:
        baseline = registry.get(name, "recurrent").factory
        assert type(baseline).__module__ == "leanxai.explainers.sequence_baselines"
        assert baseline.attribution.__module__ == "leanxai.explainers.sequence_baselines"
    model, x = classifier("gru"), sequences()
    for name in ("deepactif", "ablation", "Deep-LIFT"):
        bound = registry.get(name, "recurrent").factory(model)
        through_registry = bound.attribute(x, MASK, target=1)
        direct = feature_ranking(model, x, name, target=1, mask=MASK)
        assert through_registry.method == direct.method == registry.normalize(name)
        torch.testing.assert_close(through_registry.importance, direct.importance)


def test_public_names_are_importable_from_deepactif() -> None:
    from leanxai.explainers import deepactif, recurrent_math, sequence_baselines

    for name in deepactif.__all__:
        assert getattr(deepactif, name) is not None, name
    # Where each part lives now, and the private names the benchmarks and tests use.
    assert deepactif.feature_ranking is sequence_baselines.feature_ranking
    assert deepactif.RANKING_METHODS is sequence_baselines.RANKING_METHODS
    assert deepactif.unroll_recurrent is recurrent_math.unroll_recurrent
    assert deepactif._recurrent_scores is recurrent_math._recurrent_scores
    assert deepactif._SequenceLogits is sequence_baselines._SequenceLogits
    assert callable(deepactif._ranking)


def test_bad_arguments_raise_the_librarys_errors() -> None:
    from leanxai.core.errors import InputTypeError, LeanXAIError

    model, x = classifier("lstm"), sequences()
    calls = [
        (InputTypeError, lambda: DeepACTIF(object())),  # type: ignore[arg-type]
        (InputTypeError, lambda: DeepACTIF(model, layer=3)),  # type: ignore[arg-type]
        (InputError, lambda: DeepACTIF(model, norm="l3")),
        (InputTypeError, lambda: DeepACTIF(model, batch_first=1)),  # type: ignore[arg-type]
        (InputError, lambda: DeepACTIF(model).attribute(x).top(0)),
        (InputError, lambda: DeepACTIF(model).attribute(x).top(F + 1)),
        (InputTypeError, lambda: DeepACTIF(model).attribute(x, MASK.numpy())),  # type: ignore[arg-type]
        (InputError, lambda: aggregate(x, MASK, "median")),
        (InputError, lambda: aggregate(x[0], None)),
        (InputTypeError, lambda: aggregate(x.numpy(), None)),  # type: ignore[arg-type]
        (InputError, lambda: feature_ranking(model, x, "lime")),
        (InputError, lambda: feature_ranking(model, x, "ig", n_steps=0)),
        (InputError, lambda: feature_ranking(model, x, "shap", n_samples=True)),
        (InputError, lambda: feature_ranking(model, x, "shap", seed=-1)),
        (InputError, lambda: feature_ranking(model, x, "ig", internal_batch_size=0)),
        (InputTypeError, lambda: feature_ranking(model, x, "ig", mapping="gated")),
        (InputTypeError, lambda: feature_ranking(object(), x, "ig")),  # type: ignore[arg-type]
        (InputTypeError, lambda: feature_ranking(model, x.tolist(), "ablation")),  # type: ignore[arg-type]
        (InputTypeError, lambda: unroll_recurrent(nn.Linear(F, F), x)),  # type: ignore[arg-type]
        (InputError, lambda: unroll_recurrent(model.rnn, x, num_layers=2)),
        (InputError, lambda: unroll_recurrent(model.rnn, x, num_layers=0)),
    ]
    for kind, call in calls:
        with pytest.raises(kind) as caught:
            call()
        assert isinstance(caught.value, LeanXAIError)


def _generator_states() -> tuple[torch.Tensor, tuple[Any, ...]]:
    return torch.get_rng_state(), np.random.get_state()


def _assert_same_states(before: tuple[torch.Tensor, tuple[Any, ...]]) -> None:
    torch_state, numpy_state = _generator_states()
    assert torch.equal(torch_state, before[0])
    assert numpy_state[0] == before[1][0]
    np.testing.assert_array_equal(numpy_state[1], before[1][1])
    assert numpy_state[2:] == before[1][2:]


def test_shap_restores_every_global_generator_and_reseeds_no_cuda_device(
    monkeypatch: Any,
) -> None:
    # torch.manual_seed reseeds every CUDA device (lazily, even before CUDA starts); the call
    # must seed only torch's CPU generator and NumPy's, and restore both.
    reseeded: list[str] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append("all"))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append("one"))
    model, x = classifier("lstm"), sequences()
    np.random.seed(7)
    torch.manual_seed(7)
    reseeded.clear()
    before = _generator_states()
    first = feature_ranking(model, x, "shap", n_samples=4, seed=3, mask=MASK)
    _assert_same_states(before)
    assert reseeded == []
    # Seeded: another global state gives the same ranking.
    np.random.seed(99)
    torch.manual_seed(99)
    reseeded.clear()
    again = feature_ranking(model, x, "shap", n_samples=4, seed=3, mask=MASK)
    torch.testing.assert_close(again.importance, first.importance, rtol=0, atol=0)
    assert reseeded == []


def test_shap_restores_the_generators_after_an_error(monkeypatch: Any, state_guard: Any) -> None:
    import captum.attr

    class Failing:
        def __init__(self, forward: Any) -> None:
            pass

        def attribute(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            np.random.random(5)
            torch.rand(5)
            raise RuntimeError("simulated failure inside GradientShap")

    monkeypatch.setattr(captum.attr, "GradientShap", Failing)
    model, x = classifier("lstm").train(), sequences()
    check = state_guard(model)
    cudnn = torch.backends.cudnn.enabled
    before = _generator_states()
    with pytest.raises(RuntimeError, match="simulated"):
        feature_ranking(model, x, "shap", n_samples=4)
    _assert_same_states(before)
    assert torch.backends.cudnn.enabled == cudnn
    check()


# -- front ends (issue 22) ------------------------------------------------------------------------

U = 7  # width of the front end: the recurrent layer's input_size


class FrontEnd(nn.Module):
    """A Linear(F, U) + ReLU or a Conv1d(F, U, 3) + tanh front end before an LSTM or GRU."""

    def __init__(self, front: str = "linear", kind: str = "lstm") -> None:
        super().__init__()
        self.front = nn.Linear(F, U) if front == "linear" else nn.Conv1d(F, U, 3, padding=1)
        self.act = nn.ReLU() if front == "linear" else nn.Tanh()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(U, H, batch_first=True)
        self.head = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F)
        if isinstance(self.front, nn.Conv1d):
            u = self.act(self.front(x.transpose(1, 2))).transpose(1, 2)
        else:
            u = self.act(self.front(x))
        return self.head(self.rnn(u)[0][:, -1])


def front_end_model(front: str = "linear", kind: str = "lstm") -> FrontEnd:
    torch.manual_seed(11)
    return FrontEnd(front, kind).double().eval()


def reference_front_end_scores(
    scores: np.ndarray, x: np.ndarray, weight: np.ndarray, conv: bool
) -> np.ndarray:
    """A[s, f] = sum over (t, k) of scores[t, k] |c| / sum |c|, c = W[k, f, t - s + 1] x[s, f]."""
    batch, steps, features = x.shape
    units = weight.shape[0]
    out = np.zeros_like(x)
    for n in range(batch):
        for t in range(steps):
            for k in range(units):
                taps = []  # (s, f, |c|)
                for s in range(steps):
                    for f in range(features):
                        if conv:
                            tap = s - t + 1  # kernel 3, padding 1
                            if not 0 <= tap < 3:
                                continue
                            c = abs(weight[k, f, tap] * x[n, s, f])
                        elif s == t:
                            c = abs(weight[k, f] * x[n, s, f])
                        else:
                            continue
                        taps.append((s, f, c))
                total = sum(c for _, _, c in taps)
                if total > 0:
                    for s, f, c in taps:
                        out[n, s, f] += scores[n, t, k] * c / total
    return out


@pytest.mark.parametrize("front, kind", [("linear", "lstm"), ("conv", "gru")])
def test_front_end_mapping_matches_literal_reference(front: str, kind: str) -> None:
    model = front_end_model(front, kind)
    x = sequences()
    result = DeepACTIF(model, mapping="gated", aggregation="mean").attribute(x)
    with torch.no_grad():
        if front == "conv":
            u = torch.tanh(model.front(x.transpose(1, 2))).transpose(1, 2)
        else:
            u = torch.relu(model.front(x))
        scores = _recurrent_scores(model.rnn, u, None, "gated", "l2")  # (B, T, U)
    expected = reference_front_end_scores(
        scores.numpy(), x.numpy(), model.front.weight.detach().numpy(), front == "conv"
    )
    torch.testing.assert_close(result.per_sample, torch.from_numpy(expected).mean(1))
    assert result.importance.shape == (F,)
    # The share rule keeps each step's total.
    torch.testing.assert_close(result.per_sample.sum(1), scores.mean(1).sum(1))


def test_identity_front_end_is_todays_mapping() -> None:
    x = sequences()
    scores = torch.rand(B, T, F, dtype=torch.float64) * x.abs()
    identity = nn.Linear(F, F, bias=False).double()
    with torch.no_grad():
        identity.weight.copy_(torch.eye(F))
    torch.testing.assert_close(front_end_scores(scores, x, identity), scores)
    conv = nn.Conv1d(F, F, 1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.eye(F)[:, :, None])
    torch.testing.assert_close(front_end_scores(scores, x, conv), scores)


@pytest.mark.parametrize("front", ["linear", "conv"])
def test_front_end_models_run_one_forward_pass(front: str, state_guard: Any) -> None:
    model = front_end_model(front)
    model.train()
    check = state_guard(model)
    calls = {"model": 0, "front": 0, "rnn": 0, "head": 0}

    def counter(key: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            calls[key] += 1

        return hook

    handles = [
        model.register_forward_pre_hook(counter("model")),
        model.front.register_forward_pre_hook(counter("front")),
        model.rnn.register_forward_pre_hook(counter("rnn")),
        model.head.register_forward_pre_hook(counter("head")),
    ]
    try:
        result = DeepACTIF(model).attribute(sequences())
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"model": 1, "front": 1, "rnn": 1, "head": 0}
    assert result.importance.shape == (F,) and bool((result.importance >= 0).all())
    assert model.training
    check()


def test_front_end_errors_name_the_candidates() -> None:
    class TwoFronts(FrontEnd):
        def __init__(self) -> None:
            super().__init__()
            self.other = nn.Linear(F, U)

    model = TwoFronts().double().eval()
    with pytest.raises(LayerError, match="candidates: front, other"):
        DeepACTIF(model).attribute(sequences())

    class Normalised(FrontEnd):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.LayerNorm(U)  # not elementwise

    with pytest.raises(LayerError, match="elementwise"):
        DeepACTIF(Normalised().double().eval()).attribute(sequences())


def zoo_front_end(front: str, kind: str) -> FrontEndRecurrentClassifier:
    torch.manual_seed(5)
    return FrontEndRecurrentClassifier(F, 3, hidden=H, kind=kind, front=front, width=U).double()


@pytest.mark.parametrize("front, kind", [("linear", "lstm"), ("conv", "gru")])
def test_zoo_front_end_models_one_forward_pass_with_a_mask(
    front: str, kind: str, state_guard: Any
) -> None:
    # The zoo's front-end models of benchmarks/deepactif.py --front-ends, on padded sequences.
    model = zoo_front_end(front, kind)
    model.train()
    check = state_guard(model)
    x = sequences() * MASK[:, :, None]  # padded steps are zeros, as in JapaneseVowels
    calls = {"model": 0, "front": 0, "rnn": 0, "head": 0}
    saved = {"count": 0}

    def counter(key: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            calls[key] += 1

        return hook

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved["count"] += 1
        return tensor

    handles = [
        model.register_forward_pre_hook(counter("model")),
        model.front.register_forward_pre_hook(counter("front")),
        model.rnn.register_forward_pre_hook(counter("rnn")),
        model.head.register_forward_pre_hook(counter("head")),
    ]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = DeepACTIF(model).attribute(x, MASK)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"model": 1, "front": 1, "rnn": 1, "head": 0}
    assert saved["count"] == 0, "an autograd graph was recorded"
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    check()
    # Padding changes nothing: each sequence explained alone, unpadded, gives its row.
    for b, length in enumerate(LENGTHS.tolist()):
        alone = DeepACTIF(model).attribute(x[b : b + 1, :length])
        torch.testing.assert_close(result.per_sample[b], alone.per_sample[0])


def test_zoo_front_end_model_masks_like_unpadded_and_describes_itself() -> None:
    model = zoo_front_end("conv", "lstm").eval()
    x = sequences() * MASK[:, :, None]
    with torch.no_grad():
        padded = model(x, MASK)
        alone = torch.cat([model(x[b : b + 1, :n]) for b, n in enumerate(LENGTHS.tolist())])
    torch.testing.assert_close(padded, alone)
    rebuilt = FrontEndRecurrentClassifier(**model.describe())
    assert isinstance(rebuilt.front, nn.Conv1d) and rebuilt.front.padding == (1,)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    with pytest.raises(InputError, match="front"):
        FrontEndRecurrentClassifier(F, 3, front="attention")


def test_train_recurrent_builds_the_front_end() -> None:
    x = sequences(24, 5, F, seed=3).float()
    y = (x[:, :, 0].sum(1) > 0).long()
    model = train_recurrent(x, y, "gru", 0, epochs=2, hidden=4, front="linear", width=3)
    assert isinstance(model, FrontEndRecurrentClassifier) and not model.training
    assert isinstance(model.front, nn.Linear) and model.front.weight.shape == (3, F)
    assert model.rnn.input_size == 3
