"""The recurrent maths behind DeepACTIF: PyTorch's recurrent equations from a module's weights.

- :func:`unroll_recurrent` runs an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` step by step from its weights,
  a literal reference that the tests check against PyTorch's modules;
- :func:`_recurrent_scores` gives the per-step scores of DeepACTIF's mappings for the first layer of
  a recurrent module (see :class:`~leanxai.explainers.deepactif.DeepACTIF` for the equations).
  The gated mappings do not loop over time: they take every step's previous state from one fused
  run of the first layer and compute all steps' gates at once, and an LSTM's cell states from
  their linear recurrence in ``log2 T`` vectorised rounds.

Only torch; nothing here knows about models, targets or aggregation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError

__all__ = ["unroll_recurrent"]

Norm = Literal["l1", "l2"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
"""Gate blocks per recurrent mode, in PyTorch's order."""


# -- the unrolled recurrence ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Direction:
    """One direction of one layer: its weights in the computation's dtype."""

    w_ih: torch.Tensor  # (G * H, F)
    w_hh: torch.Tensor  # (G * H, P)
    b_ih: torch.Tensor | None  # (G * H,)
    b_hh: torch.Tensor | None  # (G * H,)
    w_hr: torch.Tensor | None  # (P, H), LSTM projections only


def _direction(module: nn.RNNBase, layer: int, reverse: bool, dtype: torch.dtype) -> _Direction:
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")

    def get(name: str) -> torch.Tensor | None:
        value = getattr(module, name + suffix, None)
        return None if value is None else value.detach().to(dtype)

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    assert w_ih is not None and w_hh is not None
    return _Direction(w_ih, w_hh, get("bias_ih"), get("bias_hh"), get("weight_hr"))


def _weight_dtype(module: nn.RNNBase) -> torch.dtype:
    weight = module.weight_ih_l0
    assert isinstance(weight, torch.Tensor)
    return weight.dtype


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.linear(x, weight, bias)


def _step(
    mode: str, d: _Direction, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step ``(x (B, F), h (B, P), c (B, H)) -> (h', c')`` in PyTorch's equations."""
    gi = _linear(x, d.w_ih, d.b_ih)  # (B, G*H)
    gh = _linear(h, d.w_hh, d.b_hh)  # (B, G*H)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c_new = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h_new = o.sigmoid() * c_new.tanh()  # (B, H)
        if d.w_hr is not None:
            h_new = _linear(h_new, d.w_hr, None)  # (B, P)
        return h_new, c_new
    if mode == "GRU":
        gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
        r, z = (gi_r + gh_r).sigmoid(), (gi_z + gh_z).sigmoid()
        n = (gi_n + r * gh_n).tanh()
        return (1 - z) * n + z * h, c
    pre = gi + gh
    return (pre.tanh() if mode == "RNN_TANH" else pre.relu()), c


def _run_direction(
    module: nn.RNNBase,
    d: _Direction,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one direction over ``x (B, T, F)`` step by step; returns outputs ``(B, T, P)`` and
    the last state ``(B, P)``.

    At a masked step the state is carried over unchanged and the output is zero, so each
    sequence's valid steps are processed as a packed sequence would process them.
    """
    batch, steps, _ = x.shape
    width = d.w_hh.shape[1]
    h = x.new_zeros(batch, width)
    c = x.new_zeros(batch, module.hidden_size)
    outputs = x.new_zeros(batch, steps, width)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        h_new, c_new = _step(module.mode, d, x[:, t], h, c)
        if mask is not None:
            valid = mask[:, t, None]  # (B, 1)
            h_new = torch.where(valid, h_new, h)
            c_new = torch.where(valid, c_new, c)
        h, c = h_new, c_new
        outputs[:, t] = h if mask is None else h * mask[:, t, None]
    return outputs, h


# -- the gated mappings, vectorised over time steps -----------------------------------------------

# Elements of the local Jacobians of one block of sequences: small enough that a block's
# intermediates stay in cache, which matters more than fewer, larger tensor operations.
_JACOBIAN_BLOCK = 1 << 19


def _processing_order(mask: torch.Tensor | None, steps: int, reverse: bool) -> torch.Tensor | None:
    """``(B, T)`` int64: for each sequence, its valid steps in the order one direction reads
    them, then its masked steps; ``None`` for the forward direction without a mask."""
    if mask is None:
        if not reverse:
            return None
        return torch.arange(steps - 1, -1, -1)[None, :]  # (1, T)
    position = torch.arange(steps, device=mask.device)[None, :]  # (1, T)
    read = (steps - 1 - position) if reverse else position
    key = torch.where(mask, read, steps + position)  # (B, T)
    return key.argsort(dim=1, stable=True)


def _fused_states(module: nn.RNNBase, d: _Direction, x: torch.Tensor) -> torch.Tensor:
    """The hidden states ``(B, T, P)`` of one direction of one layer, run forward over ``x``
    ``(B, T, F)`` from a zero state in one call of PyTorch's fused kernel.

    ``torch.lstm``/``gru``/``rnn_tanh``/``rnn_relu`` are the kernels that ``nn.LSTM`` and its
    siblings call, here with the direction's weights as a one-layer, one-direction module would
    pass them: the user's module is not called again (so its hooks do not fire), and no copy of
    it is built (building one costs as much as the run on small inputs).
    """
    batch = x.shape[0]
    weights = [d.w_ih, d.w_hh]
    if d.b_ih is not None and d.b_hh is not None:
        weights += [d.b_ih, d.b_hh]
    if d.w_hr is not None:
        weights.append(d.w_hr)
    h0 = x.new_zeros(1, batch, d.w_hh.shape[1])
    # has_biases, num_layers, dropout, train, bidirectional, batch_first
    options = (d.b_ih is not None, 1, 0.0, False, False, True)
    with warnings.catch_warnings():
        # cuDNN's notice that the weights are not one flat buffer: they are copied per call.
        warnings.filterwarnings("ignore", message=".*not part of single contiguous chunk")
        if module.mode == "LSTM":
            c0 = x.new_zeros(1, batch, module.hidden_size)
            return torch.lstm(x, (h0, c0), weights, *options)[0]
        run = {"GRU": torch.gru, "RNN_TANH": torch.rnn_tanh, "RNN_RELU": torch.rnn_relu}
        return run[module.mode](x, h0, weights, *options)[0]


def _linear_scan(decay: torch.Tensor, increment: torch.Tensor) -> torch.Tensor:
    """``c_t = decay_t c_{t-1} + increment_t`` from ``c_{-1} = 0`` for every ``t`` along
    dimension 1, by composing the affine steps in ``log2 T`` doubling rounds."""
    a, c = decay.clone(), increment.clone()
    shift, steps = 1, decay.shape[1]
    while shift < steps:
        # Element t holds the composition of steps t - shift + 1..t; prepend t - shift's.
        c[:, shift:] = torch.addcmul(c[:, shift:], a[:, shift:], c[:, :-shift])
        if 2 * shift < steps:
            a[:, shift:] = a[:, shift:] * a[:, :-shift]
        shift *= 2
    return c


def _shift_in_zero(states: torch.Tensor) -> torch.Tensor:
    """``(B, T, W)`` states at steps ``t`` -> the states at ``t - 1``, zero at ``t = 0``."""
    return torch.cat([states.new_zeros(states[:, :1].shape), states[:, :-1]], dim=1)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)`` as ``2 sigmoid(2x) - 1``: the same to rounding, and several times faster on
    CPU, where PyTorch's ``tanh`` is not vectorised as its ``sigmoid`` is."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


def _gate_coefficients(
    mode: str, d: _Direction, x: torch.Tensor, h_prev: torch.Tensor, mapping: str
) -> dict[int, torch.Tensor]:
    """``d h_t / d(W_ih x_t)`` at fixed previous state, diagonal in each gate block, for ``x``
    ``(B, T, F)`` and the previous states ``h_prev (B, T, P)``, all steps at once: gate block
    (in PyTorch's order) -> ``(B, T, H)``, leaving out the blocks that are zero (all but the
    candidate's for ``"candidate"``)."""
    gi = _linear(x, d.w_ih, d.b_ih)  # (B, T, G*H)
    gh = _linear(h_prev, d.w_hh, d.b_hh)  # (B, T, G*H)
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=2)
        i, f, g, o = i.sigmoid(), f.sigmoid(), _tanh(g), o.sigmoid()
        c = _linear_scan(f, i * g)  # (B, T, H), c_t
        tanh_c = _tanh(c)
        dc = o * (1 - tanh_c**2)  # dh/dc
        a_g = dc * i * (1 - g**2)
        if mapping != "gated":
            return {2: a_g}
        a_i = dc * g * i * (1 - i)
        a_f = dc * _shift_in_zero(c) * f * (1 - f)
        a_o = tanh_c * o * (1 - o)
        return {0: a_i, 1: a_f, 2: a_g, 3: a_o}
    if mode == "GRU":
        gi_r, gi_z, gi_n = gi.chunk(3, dim=2)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=2)
        r, z = (gi_r + gh_r).sigmoid(), (gi_z + gh_z).sigmoid()
        n = _tanh(gi_n + r * gh_n)
        a_n = (1 - z) * (1 - n**2)
        if mapping != "gated":
            return {2: a_n}
        a_r = a_n * gh_n * r * (1 - r)
        a_z = (h_prev - n) * z * (1 - z)
        return {0: a_r, 1: a_z, 2: a_n}
    pre = gi + gh
    if mode == "RNN_TANH":
        return {0: 1 - _tanh(pre) ** 2}
    return {0: (pre > 0).to(pre.dtype)}


def _jacobian_norms(
    mode: str, d: _Direction, coefficients: dict[int, torch.Tensor], norm: Norm
) -> torch.Tensor:
    """``(B, T, F)``: ``||J_t[:, f]||`` over hidden units of the local Jacobians ``J_t =
    W_hr sum_g diag(coefficients[g]_t) W_ih[g]`` (``W_hr``: LSTM projections only)."""
    hidden, features = d.w_ih.shape[0] // _GATES[mode], d.w_ih.shape[1]
    # (G, F, H): each gate's input weights with the hidden units last, so that the sum over
    # them below runs over contiguous memory.
    weights = d.w_ih.view(_GATES[mode], hidden, features).transpose(1, 2).contiguous()
    jacobian: torch.Tensor | None = None  # (B, T, F, H), J_t transposed
    for gate, a in coefficients.items():
        if jacobian is None:
            jacobian = a[:, :, None, :] * weights[gate]
        else:
            jacobian.addcmul_(a[:, :, None, :], weights[gate])
    assert jacobian is not None
    if d.w_hr is not None:
        jacobian = jacobian @ d.w_hr.T  # (B, T, F, P)
    if norm == "l2":
        return jacobian.mul_(jacobian).sum(dim=3).sqrt_()
    return jacobian.abs_().sum(dim=3)


def _direction_scores(
    module: nn.RNNBase,
    d: _Direction,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    reverse: bool,
    mapping: str,
    norm: Norm,
) -> torch.Tensor:
    """Per-step scores ``(B, T, F)`` of one direction of the first layer, zero at masked steps.

    Each sequence's valid steps are gathered in the order the direction reads them and moved to
    the front, so one fused forward run from a zero state gives, at every valid step, the state
    a packed sequence would have there (what follows a sequence's last valid step cannot
    change it); the gates of all steps then follow from the previous states at once.
    """
    order = _processing_order(mask, x.shape[1], reverse)  # (B, T) or None
    read = x if order is None else x.gather(1, order[:, :, None].expand_as(x).to(x.device))
    h_prev = _shift_in_zero(_fused_states(module, d, read))  # (B, T, P)
    _, steps, features = x.shape
    block = max(1, _JACOBIAN_BLOCK // (steps * module.hidden_size * features))  # sequences
    sizes = [
        _jacobian_norms(
            module.mode, d, _gate_coefficients(module.mode, d, part, h_part, mapping), norm
        )
        for part, h_part in zip(read.split(block), h_prev.split(block), strict=True)
    ]
    scores = read.abs() * torch.cat(sizes)  # (B, T, F)
    if order is not None:
        index = order[:, :, None].expand_as(scores).to(scores.device)
        scores = torch.zeros_like(scores).scatter_(1, index, scores)
    return scores if mask is None else torch.where(mask[:, :, None], scores, 0.0)


# -- the gated mappings per input: time-major, the norms as one matrix product --------------------
#
# DeepACTIF per input (:class:`~leanxai.explainers.recurrent.DeepACTIFMap`) runs after the model's
# own forward pass, so it is timed against it: the same numbers as :func:`_direction_scores` (to
# rounding), with as few passes over memory as possible. Steps are laid out time-major (row
# ``t * B + b``), so that the previous step of every sequence is one contiguous block; all
# pre-activations come from one matrix product of ``[x_t, h_{t-1}]``; every ``tanh`` is a
# ``sigmoid`` of a doubled pre-activation (the doubling folded into the weights, exact in floating
# point), so one ``sigmoid`` serves all gates and ``1 - tanh^2 = 4 s (1 - s)``; and each gate's
# coefficient is stored divided by an exact power of two (``scales``) that multiplies its input
# weights instead.

# Rows of the gate coefficients' pairwise products formed at once: the products then stay in
# cache for the matrix product that reads them.
_PAIR_BLOCK = 512


def _preactivation_weights(mode: str, d: _Direction) -> torch.Tensor:
    """``(C, F + P [+ 1])``: the pre-activations of all gates as ``[x_t, h_{t-1}, 1] @ weight.T``
    (the last column, the summed biases, only when the direction has biases), doubled in the
    blocks read through ``tanh``.

    For a GRU the candidate's input and hidden parts are kept apart (``C = 4H``: ``r``, ``z``,
    then ``2 (W_in x + b_in)`` and ``2 (W_hn h + b_hn)``), as its reset gate scales the hidden
    part only.
    """
    hidden = d.w_hh.shape[0] // _GATES[mode]
    features = d.w_ih.shape[1]
    biased = d.b_ih is not None and d.b_hh is not None
    if mode == "GRU":
        weight = d.w_ih.new_zeros(4 * hidden, features + d.w_hh.shape[1] + int(biased))
        weight[: 3 * hidden, :features] = d.w_ih
        weight[: 2 * hidden, features : features + d.w_hh.shape[1]] = d.w_hh[: 2 * hidden]
        weight[3 * hidden :, features : features + d.w_hh.shape[1]] = d.w_hh[2 * hidden :]
        if biased:
            assert d.b_ih is not None and d.b_hh is not None
            weight[: 3 * hidden, -1] = d.b_ih
            weight[: 2 * hidden, -1] += d.b_hh[: 2 * hidden]
            weight[3 * hidden :, -1] = d.b_hh[2 * hidden :]
        weight[2 * hidden :] *= 2
        return weight
    parts = [d.w_ih, d.w_hh]
    if biased:
        assert d.b_ih is not None and d.b_hh is not None
        parts.append((d.b_ih + d.b_hh)[:, None])
    weight = torch.cat(parts, dim=1)  # (G * H, F + P [+ 1])
    if mode == "LSTM":
        weight[2 * hidden : 3 * hidden] *= 2
    elif mode == "RNN_TANH":
        weight *= 2
    return weight


def _recurrence(decay: torch.Tensor, increment: torch.Tensor) -> torch.Tensor:
    """``c_t = decay_t c_{t-1} + increment_t`` from ``c_{-1} = 0`` along dimension 0 of ``(T, B,
    H)`` tensors, written over ``increment``.

    Step by step, one operation per step, when each step holds enough elements for that to beat
    the ``log2 T`` doubling rounds of :func:`_linear_scan` (which do ``log2 T`` times the work,
    in fewer, larger operations); the doubling rounds otherwise (long sequences of few elements).
    """
    steps = decay.shape[0]
    if steps > 1 and decay[0].numel() * (2 * math.log2(steps) - 1) > 6000:
        for t in range(1, steps):
            increment[t].addcmul_(decay[t], increment[t - 1])
        return increment
    return _linear_scan(decay.transpose(0, 1), increment.transpose(0, 1)).transpose(0, 1)


def _time_major_coefficients(
    mode: str, d: _Direction, xh: torch.Tensor, mapping: str
) -> tuple[torch.Tensor, list[int], list[float]]:
    """The gate coefficients of :func:`_gate_coefficients` for ``xh`` ``(T, B, F + P [+ 1])``,
    each step's input, previous state (and a one, with biases) side by side: ``(coefficients
    (T * B, n * H), gates, scales)``, the ``n`` blocks of ``gates`` (consecutive, in PyTorch's
    order), block ``g`` holding the coefficient divided by ``scales[g]``."""
    steps, batch, _ = xh.shape
    rows = steps * batch
    width = d.w_hh.shape[1]
    hidden = d.w_hh.shape[0] // _GATES[mode]
    pre = xh.view(rows, -1) @ _preactivation_weights(mode, d).T  # (N, C)
    if mode == "RNN_RELU":
        return (pre > 0).to(pre.dtype), [0], [1.0]
    if mode == "RNN_TANH":
        s = pre.sigmoid_()
        return s.addcmul_(s, s, value=-1), [0], [4.0]  # s (1 - s) = (1 - tanh^2) / 4
    if mode == "LSTM":
        s = pre.sigmoid_()  # (N, 4H): i, f, (tanh g + 1) / 2, o
        a = torch.addcmul(s, s, s, value=-1).view(rows, 4, hidden)  # s (1 - s)
        i, f, g, o = s.view(rows, 4, hidden).unbind(1)
        g = g.mul(2).sub_(1)  # (N, H) tanh of the candidate
        c = _recurrence(f.view(steps, batch, hidden), (i * g).view(steps, batch, hidden))
        c = c.reshape(rows, hidden)  # (N, H) c_t
        tanh_c = torch.sigmoid(2 * c).mul_(2).sub_(1)
        dc = torch.addcmul(tanh_c.new_ones(()), tanh_c, tanh_c, value=-1).mul_(o)  # dh/dc
        scales = [1.0, 1.0, 4.0, 1.0]
        if mapping != "gated":
            return a[:, 2].mul_(i).mul_(dc), [2], scales
        a[:, 0].mul_(g)
        a[:batch, 1] = 0  # c_{-1} = 0
        a[batch:, 1].mul_(c[:-batch])
        a[:, 2].mul_(i)
        a[:, :3].mul_(dc[:, None])
        a[:, 3].mul_(tanh_c)
        return a.view(rows, 4 * hidden), [0, 1, 2, 3], scales
    # GRU: pre holds r, z, 2 (W_in x + b_in), 2 (W_hn h + b_hn).
    rz = pre[:, : 2 * hidden].sigmoid_()
    r, z = rz[:, :hidden], rz[:, hidden:]
    n_x, n_h = pre[:, 2 * hidden : 3 * hidden], pre[:, 3 * hidden :]
    s_n = torch.addcmul(n_x, r, n_h).sigmoid_()  # (tanh n + 1) / 2
    a = pre.new_empty(rows, 3, hidden)
    a_n = torch.addcmul(s_n, s_n, s_n, value=-1, out=a[:, 2]).mul_(1 - z)  # a_n / 4
    scales = [2.0, 1.0, 4.0]
    if mapping != "gated":
        return a_n, [2], scales
    torch.addcmul(r, r, r, value=-1, out=a[:, 0]).mul_(a_n).mul_(n_h)  # a_r / 2
    features = d.w_ih.shape[1]
    h_prev = xh.view(rows, -1)[:, features : features + width]
    n = s_n.mul_(2).sub_(1)
    torch.addcmul(z, z, z, value=-1, out=a[:, 1]).mul_(h_prev - n)  # a_z
    return a.view(rows, 3 * hidden), [0, 1, 2], scales


def _squared_column_norms(
    mode: str, d: _Direction, coefficients: torch.Tensor, gates: list[int], scales: list[float]
) -> torch.Tensor:
    """``(F, N)`` ``||J[:, f]||^2`` of ``J = sum_g diag(a_g) W_ih[g]`` for ``N`` rows of
    coefficients ``(N, n * H)`` of ``gates`` (each divided by its scale).

    ``||J[:, f]||^2 = sum_{g <= g'} (2 - [g = g']) sum_h a_g[h] a_g'[h] W_g[h, f] W_g'[h, f]``:
    the coefficients' pairwise products, ordered by the distance between the two gates so that
    each distance is one product of two column ranges, times the matching products of the input
    weights, one matrix product per block of rows instead of forming the ``(N, F, H)`` Jacobians.
    """
    count = len(gates)
    hidden = coefficients.shape[1] // count
    features = d.w_ih.shape[1]
    w = d.w_ih.view(_GATES[mode], hidden, features)[gates[0] : gates[-1] + 1]  # (n, H, F)
    w = w * w.new_tensor([scales[g] for g in gates])[:, None, None]
    first = [j for shift in range(count) for j in range(count - shift)]
    second = [j + shift for shift in range(count) for j in range(count - shift)]
    factor = w.new_tensor([1.0] * count + [2.0] * (len(first) - count))
    pair_weights = (w[first] * w[second]).mul_(factor[:, None, None])  # (pairs, H, F)
    pair_weights = pair_weights.view(-1, features).T.contiguous()  # (F, pairs * H)
    rows = coefficients.shape[0]
    squared = coefficients.new_empty(features, rows)
    block = min(rows, _PAIR_BLOCK)
    products = coefficients.new_empty(block, len(first) * hidden)  # (R, pairs * H)
    for start in range(0, rows, block):
        a = coefficients[start : start + block]  # (R, n * H)
        part = products[: a.shape[0]]
        column = 0
        for shift in range(count):
            span = (count - shift) * hidden
            torch.mul(a[:, :span], a[:, shift * hidden :], out=part[:, column : column + span])
            column += span
        torch.mm(pair_weights, part.T, out=squared[:, start : start + a.shape[0]])
    return squared


def _gated_map_scores(
    mode: str, d: _Direction, x: torch.Tensor, states: torch.Tensor, mapping: str
) -> torch.Tensor:
    """``(B, T, F)`` DeepACTIF's L2 scores of one direction (no projections) for ``x`` ``(B, T,
    F)`` in the order the direction reads it and ``states`` ``(B, T, P)``, its state after each
    of those steps from a zero state: what :func:`_direction_scores` computes from
    :func:`_gate_coefficients` and :func:`_jacobian_norms` (to rounding), before reordering."""
    batch, steps, features = x.shape
    width = states.shape[2]
    biased = d.b_ih is not None and d.b_hh is not None
    xh = x.new_empty(steps, batch, features + width + int(biased))  # (T, B, F + P [+ 1])
    xh[:, :, :features] = x.transpose(0, 1)
    xh[0, :, features : features + width] = 0
    xh[1:, :, features : features + width] = states[:, :-1].transpose(0, 1)
    if biased:
        xh[:, :, -1] = 1
    coefficients, gates, scales = _time_major_coefficients(mode, d, xh, mapping)
    squared = _squared_column_norms(mode, d, coefficients, gates, scales)  # (F, T * B)
    norms = squared.clamp_min_(0).sqrt_().view(features, steps, batch).permute(2, 1, 0)
    return norms * x.abs()


def _check_recurrent(module: object, name: str = "module") -> nn.RNNBase:
    if not isinstance(module, nn.RNNBase) or module.mode not in _GATES:
        raise InputTypeError(
            f"{name} must be a torch.nn.LSTM, GRU or RNN, got {type(module).__name__}"
        )
    return module


def unroll_recurrent(
    module: nn.RNNBase,
    inputs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    num_layers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` step by step from its weights.

    The equivalent unrolled computation of the module in eval mode (no dropout between layers),
    from a zero initial state, batched over samples: torch operations on ``(B, H)`` per step, in
    PyTorch's gate order and equations. LSTM projections (``proj_size``) are supported.

    Parameters
    ----------
    module
        The recurrent module.
    inputs
        ``(B, T, F)`` or ``(T, B, F)`` as ``module.batch_first`` says.
    mask
        ``(B, T)`` bool, true at valid steps. Each direction then runs over each sequence's valid
        steps only (the state is carried over a masked step), which for right padding is exactly
        what the module computes for the corresponding :class:`PackedSequence`; outputs at
        masked steps are zero, as :func:`~torch.nn.utils.rnn.pad_packed_sequence` pads them.
    num_layers
        Run only the first ``num_layers`` layers (default: all).

    Returns
    -------
    output : torch.Tensor
        As the module's first output: ``(B, T, D * P)`` (or ``(T, B, D * P)``) for ``D``
        directions of width ``P`` (``proj_size`` or ``hidden_size``).
    h_n : torch.Tensor
        ``(L * D, B, P)``, the last state of each layer and direction, as the module's ``h_n``.
    """
    module = _check_recurrent(module)
    x = inputs if module.batch_first else inputs.transpose(0, 1)  # (B, T, F)
    layers = (
        module.num_layers if num_layers is None else validate.positive_int("num_layers", num_layers)
    )
    if layers > module.num_layers:
        raise InputError(f"num_layers must be in 1..{module.num_layers}, got {num_layers!r}")
    dtype = torch.promote_types(x.dtype, _weight_dtype(module))
    x = x.to(dtype)
    if mask is not None:
        mask = mask.to(device=x.device, dtype=torch.bool)
    finals = []
    with torch.no_grad():
        for layer in range(layers):
            outputs = []
            for reverse in (False, True)[: 2 if module.bidirectional else 1]:
                d = _direction(module, layer, reverse, dtype)
                out, h = _run_direction(module, d, x, mask, reverse)
                outputs.append(out)
                finals.append(h)
            x = torch.cat(outputs, dim=2)
    output = x if module.batch_first else x.transpose(0, 1)
    return output, torch.stack(finals)


def _recurrent_scores(
    module: nn.RNNBase,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    mapping: str,
    norm: Norm,
) -> torch.Tensor:
    """Per-step scores ``(B, T, F)`` of the first layer of ``module`` for ``x (B, T, F)``."""
    dtype = torch.promote_types(x.dtype, _weight_dtype(module))
    x = x.to(dtype)
    directions = [
        _direction(module, 0, reverse, dtype)
        for reverse in (False, True)[: 2 if module.bidirectional else 1]
    ]
    if mapping == "input_term":
        # Summed over directions, like the gated mappings.
        size = sum(d.w_ih.norm(dim=0) for d in directions)  # (F,)
        scores = x.abs() * size
        return scores if mask is None else scores * mask[:, :, None]
    total = torch.zeros_like(x)
    with torch.no_grad():
        for reverse, d in zip((False, True), directions, strict=False):
            total += _direction_scores(module, d, x, mask, reverse, mapping, norm)
    return total


def _first_recurrent(model: nn.Module) -> tuple[str, nn.RNNBase] | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNBase) and module.mode in _GATES:
            return name, module
    return None
