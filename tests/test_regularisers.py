"""The regularisers of `lstmlab.cells.regularisers` and `lstmlab.cells.layer_norm`: zoneout,
recurrent dropout, weight dropout and layer normalisation.

- the reference's hand-written BPTT against finite differences (torch.autograd.gradcheck,
  float64), the masks fixed by seeding before every forward;
- every registered backend that says it runs a configuration against the eager backend
  (and eager against the reference) for the same seed: outputs, final states, gradients;
- the equations against hand-written torch code that does not use `lstmlab.cells`
  (torch.nn.LSTMCell / GRUCell blended or fed m * h, haste's layer-normalised LSTM
  written with torch.nn.functional.layer_norm, torch.nn.LSTM with a dropped weight_hh);
- the masks' statistics, evaluation, and the modules' API (validation, attributes, repr,
  parameters, state_dict, pickling, to_torch, export_onnx, charlm.trace).
"""

from __future__ import annotations

import copy
import io
import pickle
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import BACKENDS, assert_not_trivial, assert_same, randomize_, run_with_grads
from torch.nn.utils.rnn import pack_padded_sequence

import lstmlab
from lstmlab import backends
from lstmlab.backends import StackConfig
from lstmlab.backends.masks import draw_masks, drop_recurrent_weights
from lstmlab.cells import GRUSpec, LSTMSpec

I, H, T, B = 2, 3, 3, 2  # noqa: E741 - tiny: the finite differences perturb every entry
LN_EPS = 1e-5  # torch.nn.LayerNorm's, and haste's

ALL_LSTM = {"zoneout": (0.3, 0.6), "recurrent_dropout": 0.4, "weight_dropout": 0.3, "layer_norm": True}
ALL_GRU = {"zoneout": 0.4, "recurrent_dropout": 0.4, "weight_dropout": 0.3, "layer_norm": True}


def _module(cls: type, seed: int = 0, dtype: torch.dtype = torch.float64, **kwargs: Any) -> Any:
    """A module with every parameter (layer-norm gains and biases included) random in ±0.8."""
    return randomize_(cls(I, H, dtype=dtype, **kwargs), seed)


def _input(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def _dtype_for(backend: str, config: StackConfig) -> torch.dtype:
    """float64 where `backend` runs `config` in it, else float32; skips when it runs neither."""
    reasons = []
    for dtype in (torch.float64, torch.float32):
        reason = backends.get(backend).unsupported(config, torch.zeros((), dtype=dtype))
        if reason is None:
            return dtype
        reasons.append(reason)
    pytest.skip(f"{backend}: {reasons[-1]}")


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-10, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 2e-4}


# -- the reference's BPTT against finite differences -----------------------------------------


# case id -> (class, constructor arguments, lengths or None, training); gradcheck's fast mode
# (random projections of the Jacobian, Chen, Xu & Wang) but for the full Jacobian of one case
FULL_JACOBIAN = "LSTM-all-lengths"
FD_CASES: dict[str, tuple[type, dict[str, Any], list[int] | None, bool]] = {
    "LSTM-zoneout": (lstmlab.LSTM, {"zoneout": (0.3, 0.6)}, None, True),
    "LSTM-recurrent_dropout": (lstmlab.LSTM, {"recurrent_dropout": 0.4}, None, True),
    "LSTM-weight_dropout": (lstmlab.LSTM, {"weight_dropout": 0.4}, None, True),
    "LSTM-layer_norm": (lstmlab.LSTM, {"layer_norm": True}, None, True),
    "LSTM-all": (lstmlab.LSTM, ALL_LSTM, None, True),
    "LSTM-all-lengths": (lstmlab.LSTM, ALL_LSTM, [3, 1], True),
    "LSTM-all-eval": (lstmlab.LSTM, ALL_LSTM, [1, 3], False),
    "LSTM-peephole-all": (lstmlab.LSTM, {**ALL_LSTM, "variant": "peephole"}, [3, 1], True),
    "LSTM-CIFG-all": (lstmlab.LSTM, {**ALL_LSTM, "variant": "CIFG"}, [3, 1], True),
    "LSTM-FGR-all": (lstmlab.LSTM, {**ALL_LSTM, "variant": "FGR"}, [3, 1], True),
    "LSTM-NOAF-all": (lstmlab.LSTM, {**ALL_LSTM, "variant": "NOAF"}, [3, 1], True),
    "LSTM-proj-all": (lstmlab.LSTM, {**ALL_LSTM, "proj_size": 2}, [3, 1], True),
    "GRU-after-all": (lstmlab.GRU, ALL_GRU, [3, 1], True),
    "GRU-before": (lstmlab.GRU, {**ALL_GRU, "layer_norm": False, "reset": "before"}, [3, 1], True),
}


@pytest.mark.parametrize("case", FD_CASES)
def test_reference_gradients_match_finite_differences(case: str) -> None:
    cls, kwargs, lengths, training = FD_CASES[case]
    module = _module(cls, backend="reference", **kwargs).train(training)
    x = _input(T, B, I).requires_grad_(True)
    generator = torch.Generator().manual_seed(2)
    hx = [
        torch.randn(1, B, size, generator=generator, dtype=torch.float64, requires_grad=True)
        for size in module.config.state_sizes
    ]
    params = list(module.parameters())  # gradcheck perturbs them in place; the module reads them

    def forward(x: torch.Tensor, *leaves: torch.Tensor) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)  # the same masks at every call
        inp = x if lengths is None else pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        y, final = module(inp, tuple(hx) if len(hx) > 1 else hx[0])
        final = (final,) if isinstance(final, torch.Tensor) else final
        return (y if lengths is None else y.data, *final)

    outputs = forward(x, *hx, *params)
    assert all(o.abs().max() > 0 for o in outputs)
    fast = case != FULL_JACOBIAN
    assert torch.autograd.gradcheck(forward, (x, *hx, *params), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast)


def test_the_finite_differences_see_the_masks() -> None:
    """The masks matter: the training forward differs from the evaluation one and between seeds
    (else the gradcheck above would check the cell without its regularisers)."""
    module = _module(lstmlab.LSTM, backend="reference", **ALL_LSTM)
    x = _input(T, B, I)
    outputs = []
    for seed, training in ((0, True), (1, True), (0, False)):
        torch.manual_seed(seed)
        outputs.append(module.train(training)(x)[0])
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[0], outputs[2])


# -- backends against each other ---------------------------------------------------------------


# case id -> (class, constructor arguments): each regulariser alone, then all of them
BACKEND_CASES: dict[str, tuple[type, dict[str, Any]]] = {
    "LSTM-zoneout": (lstmlab.LSTM, {"zoneout": (0.2, 0.5)}),
    "LSTM-recurrent_dropout": (lstmlab.LSTM, {"recurrent_dropout": 0.4}),
    "LSTM-weight_dropout": (lstmlab.LSTM, {"weight_dropout": 0.4}),
    "LSTM-layer_norm": (lstmlab.LSTM, {"layer_norm": True}),
    "LSTM-all": (lstmlab.LSTM, ALL_LSTM),
    "LSTM-peephole-all": (lstmlab.LSTM, {**ALL_LSTM, "variant": "peephole"}),
    "LSTM-FGR-proj-all": (lstmlab.LSTM, {**ALL_LSTM, "variant": "FGR", "proj_size": 2}),
    "GRU-after-all": (lstmlab.GRU, ALL_GRU),
    "GRU-before-all": (lstmlab.GRU, {**ALL_GRU, "layer_norm": False, "reset": "before"}),
}


def _stack_run(cls: type, kwargs: dict[str, Any], backend: str, dtype: torch.dtype, training: bool) -> dict[str, torch.Tensor]:
    """Outputs and every gradient of a 2-layer bidirectional batch_first stack on packed
    sequences, the masks drawn from seed 7."""
    module = _module(cls, dtype=dtype, num_layers=2, bidirectional=True, batch_first=True, backend=backend, **kwargs)
    module.train(training)
    x = _input(B + 1, 4, I, dtype=dtype)
    state = tuple(_input(4, B + 1, size, dtype=dtype, seed=5 + k) for k, size in enumerate(module.config.state_sizes))
    torch.manual_seed(7)
    return run_with_grads(module, x, state, lengths=[2, 4, 3])


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", [case for case in BACKEND_CASES if case.endswith("-all")])  # each regulariser alone: FD
def test_eager_matches_the_reference(case: str, training: bool) -> None:
    cls, kwargs = BACKEND_CASES[case]
    expected = _stack_run(cls, kwargs, "reference", torch.float64, training)
    actual = _stack_run(cls, kwargs, "eager", torch.float64, training)
    assert_not_trivial(expected)
    assert_same(actual, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", BACKEND_CASES)
@pytest.mark.parametrize("backend", [name for name in BACKENDS if name not in ("eager", "reference")])
def test_every_backend_that_runs_a_regulariser_matches_eager(backend: str, case: str, training: bool) -> None:
    """Skipped for a backend whose `unsupported` gives a reason: a backend that implements a
    regulariser is checked as soon as it says so."""
    cls, kwargs = BACKEND_CASES[case]
    dtype = _dtype_for(backend, _module(cls, **kwargs).config)
    expected = _stack_run(cls, kwargs, "eager", dtype, training)
    actual = _stack_run(cls, kwargs, backend, dtype, training)
    assert_not_trivial(expected)
    assert_same(actual, expected, **_tolerance(dtype))


def test_a_backend_without_a_regulariser_says_which() -> None:
    config = lstmlab.LSTM(I, H, zoneout=0.1, recurrent_dropout=0.1, layer_norm=True).config
    reason = backends.get("native").unsupported(config, torch.zeros(()))
    assert reason is not None and all(name in reason for name in ("zoneout", "recurrent_dropout", "layer_norm"))
    weight_only = lstmlab.LSTM(I, H, weight_dropout=0.5).config
    assert weight_only.in_recurrence() == ()
    assert backends.get("native").unsupported(weight_only, torch.zeros(())) is None


# -- the equations against hand-written torch code ---------------------------------------------


def _backend_module(backend: str, cls: type, **kwargs: Any) -> tuple[Any, torch.dtype]:
    """`cls(**kwargs)` with random weights on `backend` in the dtype it runs (skips if none)."""
    dtype = _dtype_for(backend, _module(cls, **kwargs).config)
    return _module(cls, dtype=dtype, backend=backend, **kwargs), dtype


def _torch_cell(module: Any) -> torch.nn.Module:
    """torch's LSTMCell or GRUCell with the weights of layer 0 of `module`."""
    cls = torch.nn.LSTMCell if isinstance(module, lstmlab.LSTM) else torch.nn.GRUCell
    dtype = next(module.parameters()).dtype
    cell = cls(module.input_size, module.hidden_size, dtype=dtype)
    cell.load_state_dict({name: getattr(module, name + "_l0") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return cell


def _redraw(module: Any, seed: int, like: torch.Tensor) -> list:
    """The zoneout and recurrent-dropout masks a forward call seeded with `seed` draws."""
    torch.manual_seed(seed)
    return draw_masks(module.config, T, B, like, module.training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_zoneout_blends_torch_lstm_cell_steps(backend: str, training: bool) -> None:
    z_c, z_h = 0.2, 0.7
    module, dtype = _backend_module(backend, lstmlab.LSTM, zoneout=(z_c, z_h))
    module.train(training)
    x, h, c = _input(T, B, I, dtype=dtype), _input(B, H, dtype=dtype, seed=2), _input(B, H, dtype=dtype, seed=3)
    torch.manual_seed(11)
    y, (h_n, c_n) = module(x, (h[None], c[None]))
    ((_, (d_h, d_c)),) = _redraw(module, 11, x)
    if training:  # 0/1 per unit and step, h's at rate z_h
        assert set(d_h.unique().tolist()) == {0.0, 1.0} and set(d_c.unique().tolist()) == {0.0, 1.0}
    else:  # the expectation
        d_h, d_c = torch.full((T, B, H), z_h, dtype=dtype), torch.full((T, B, H), z_c, dtype=dtype)
    cell, ys = _torch_cell(module), []
    with torch.no_grad():
        for t in range(T):
            h_new, c_new = cell(x[t], (h, c))
            h = d_h[t] * h + (1 - d_h[t]) * h_new
            c = d_c[t] * c + (1 - d_c[t]) * c_new
            ys.append(h)
    tolerance = _tolerance(dtype)
    torch.testing.assert_close(y, torch.stack(ys), **tolerance)
    torch.testing.assert_close((h_n[0], c_n[0]), (h, c), **tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zoneout_pair_is_c_then_h(backend: str) -> None:
    """zoneout=(z_c, z_h): z_c = 1 keeps c at c_0 whatever the input; z_h = 1 keeps h (and the output) at h_0."""
    for pair, kept in (((1.0, 0.0), 1), ((0.0, 1.0), 0)):
        module, dtype = _backend_module(backend, lstmlab.LSTM, zoneout=pair)
        state = (_input(1, B, H, dtype=dtype, seed=2), _input(1, B, H, dtype=dtype, seed=3))
        y, final = module(_input(T, B, I, dtype=dtype), state)
        exact = {"atol": 1e-15, "rtol": 0} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 0}  # new + 1 * (old - new)
        torch.testing.assert_close(final[kept], state[kept], **exact)
        assert not torch.allclose(final[1 - kept], state[1 - kept])
        if kept == 0:
            torch.testing.assert_close(y, state[0].expand(T, B, H), **exact)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_of_a_reversed_direction_follow_its_own_steps(backend: str) -> None:
    """Bidirectional, packed sequences of lengths 3 and 1: each direction's masks indexed by the
    steps it takes (the reversed one from each sequence's last element), replayed per sequence
    with torch.nn.LSTMCell."""
    lengths = [1, 3]
    module, dtype = _backend_module(backend, lstmlab.LSTM, bidirectional=True, zoneout=(0.3, 0.5), recurrent_dropout=0.4)
    x = _input(T, B, I, dtype=dtype)
    torch.manual_seed(12)
    packed, (h_n, c_n) = module(pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False))
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(packed, total_length=T)
    torch.manual_seed(12)
    masks = draw_masks(module.config, T, B, x, True)
    expected_y = torch.zeros(T, B, 2 * H, dtype=dtype)
    for direction, suffix in enumerate(("_l0", "_l0_reverse")):
        cell = torch.nn.LSTMCell(I, H, dtype=dtype)
        cell.load_state_dict({name: getattr(module, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        m, (d_h, d_c) = masks[direction]
        for b, n in enumerate(lengths):
            h, c = torch.zeros(1, H, dtype=dtype), torch.zeros(1, H, dtype=dtype)
            with torch.no_grad():
                for step in range(n):
                    t = step if direction == 0 else n - 1 - step
                    h_new, c_new = cell(x[t, b : b + 1], (m[b : b + 1] * h, c))
                    h = d_h[step, b] * h + (1 - d_h[step, b]) * h_new
                    c = d_c[step, b] * c + (1 - d_c[step, b]) * c_new
                    expected_y[t, b, direction * H : (direction + 1) * H] = h[0]
            tolerance = _tolerance(dtype)
            torch.testing.assert_close(h_n[direction, b], h[0], **tolerance)
            torch.testing.assert_close(c_n[direction, b], c[0], **tolerance)
    torch.testing.assert_close(y, expected_y, **_tolerance(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gru_zoneout_blends_torch_gru_cell_steps(backend: str) -> None:
    module, dtype = _backend_module(backend, lstmlab.GRU, zoneout=0.4)
    x, h = _input(T, B, I, dtype=dtype), _input(B, H, dtype=dtype, seed=2)
    torch.manual_seed(3)
    y, h_n = module(x, h[None])
    ((_, (d,)),) = _redraw(module, 3, x)
    cell, ys = _torch_cell(module), []
    with torch.no_grad():
        for t in range(T):
            h = d[t] * h + (1 - d[t]) * cell(x[t], h)
            ys.append(h)
    torch.testing.assert_close(y, torch.stack(ys), **_tolerance(dtype))
    torch.testing.assert_close(h_n[0], h, **_tolerance(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_recurrent_dropout_is_torch_lstm_cell_fed_the_masked_h(backend: str) -> None:
    """One mask m for the whole sequence, on h in U h only (c untouched)."""
    module, dtype = _backend_module(backend, lstmlab.LSTM, recurrent_dropout=0.5)
    x, h, c = _input(T, B, I, dtype=dtype), _input(B, H, dtype=dtype, seed=2), _input(B, H, dtype=dtype, seed=3)
    torch.manual_seed(4)
    y, (h_n, c_n) = module(x, (h[None], c[None]))
    ((m, zoneout),) = _redraw(module, 4, x)
    assert zoneout == () and m.shape == (B, H) and set(m.unique().tolist()) <= {0.0, 2.0}
    assert 0 < int((m == 0).sum()) < m.numel()  # this seed drops some units and keeps others
    cell, ys = _torch_cell(module), []
    with torch.no_grad():
        for t in range(T):
            h, c = cell(x[t], (m * h, c))
            ys.append(h)
    torch.testing.assert_close(y, torch.stack(ys), **_tolerance(dtype))
    torch.testing.assert_close((h_n[0], c_n[0]), (h, c), **_tolerance(dtype))


def _gru_step(x: torch.Tensor, h: torch.Tensor, p: dict[str, torch.Tensor], m: torch.Tensor, reset: str) -> torch.Tensor:
    """One GRU step in torch ops (torch.nn.GRU's equations, or Cho et al.'s reset before the
    product), with m ⊙ h in the recurrent products and the unmasked h in h' = (1 − z) n + z h."""
    xr, xz, xn = (x @ p["weight_ih"].T + p["bias_ih"]).chunk(3, -1)
    Ur, Uz, Un = p["weight_hh"].chunk(3, 0)
    br, bz, bn = p["bias_hh"].chunk(3, -1)
    hm = m * h
    r = torch.sigmoid(xr + hm @ Ur.T + br)
    z = torch.sigmoid(xz + hm @ Uz.T + bz)
    n = torch.tanh(xn + r * (hm @ Un.T + bn)) if reset == "after" else torch.tanh(xn + (r * hm) @ Un.T + bn)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("reset", ["after", "before"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gru_recurrent_dropout_against_torch_ops(backend: str, reset: str) -> None:
    module, dtype = _backend_module(backend, lstmlab.GRU, recurrent_dropout=0.5, reset=reset)
    x, h = _input(T, B, I, dtype=dtype), _input(B, H, dtype=dtype, seed=2)
    torch.manual_seed(4)
    y, _ = module(x, h[None])
    ((m, _),) = _redraw(module, 4, x)
    assert 0 < int((m == 0).sum()) < m.numel()
    p = {name: getattr(module, name + "_l0").detach() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    ys = []
    for t in range(T):
        h = _gru_step(x[t], h, p, m, reset)
        ys.append(h)
    torch.testing.assert_close(y.detach(), torch.stack(ys), **_tolerance(dtype))
    if backend == "eager":  # the oracle is right: torch's own GRUCell where there is no mask
        torch.testing.assert_close(_gru_step(x[0], h, p, torch.ones_like(m), "after"), _torch_cell(module)(x[0], h).detach())


def _params(module: Any, suffix: str = "_l0") -> dict[str, torch.Tensor]:
    return {name[: -len(suffix)]: t for name, t in module.named_parameters() if name.endswith(suffix)}


def _haste_layer_norm_lstm(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple:
    """haste's LayerNormLSTM (as lstmlab.cells.layer_norm documents it), with torch ops only:
    LN(W x) and LN(U h) each with its own gain and no bias, the biases added after; the cell
    state normalised (gain and bias) before tanh, the carried c left as it is."""
    G = p["weight_ih"].shape[0]
    zx = F.layer_norm(x @ p["weight_ih"].T, (G,), p["weight_ln_ih"], None, LN_EPS) + p["bias_ih"]
    ys = []
    for t in range(x.shape[0]):
        z = zx[t] + F.layer_norm(h @ p["weight_hh"].T, (G,), p["weight_ln_hh"], None, LN_EPS) + p["bias_hh"]
        i, f, g, o = z.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (c.shape[-1],), p["weight_ln_c"], p["bias_ln_c"], LN_EPS))
        ys.append(h)
    return torch.stack(ys), h, c


def _layer_norm_gru(x: torch.Tensor, h: torch.Tensor, p: dict[str, torch.Tensor]) -> tuple:
    """torch.nn.GRU's equations with LN(W x) and LN(U h) (own gains, biases after), torch ops only."""
    G = p["weight_ih"].shape[0]
    zx = F.layer_norm(x @ p["weight_ih"].T, (G,), p["weight_ln_ih"], None, LN_EPS) + p["bias_ih"]
    ys = []
    for t in range(x.shape[0]):
        zh = F.layer_norm(h @ p["weight_hh"].T, (G,), p["weight_ln_hh"], None, LN_EPS) + p["bias_hh"]
        xr, xz, xn = zx[t].chunk(3, -1)
        hr, hz, hn = zh.chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        ys.append(h)
    return torch.stack(ys), h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.GRU], ids=["LSTM", "GRU"])
def test_layer_norm_against_torch_layer_norm(backend: str, cls: type) -> None:
    module, dtype = _backend_module(backend, cls, layer_norm=True)
    x = _input(T, B, I, dtype=dtype)
    state = (_input(B, H, dtype=dtype, seed=2), _input(B, H, dtype=dtype, seed=3))[: len(module.config.state_sizes)]
    leaves = [s.clone().requires_grad_(True) for s in state]
    y, final = module(x, tuple(s[None] for s in leaves) if len(leaves) > 1 else leaves[0][None])
    final = (final,) if isinstance(final, torch.Tensor) else final
    p = _params(module)
    oracle_leaves = [s.clone().requires_grad_(True) for s in state]
    if cls is lstmlab.LSTM:
        y_ref, *final_ref = _haste_layer_norm_lstm(x, *oracle_leaves, p)
    else:
        y_ref, *final_ref = _layer_norm_gru(x, *oracle_leaves, p)
    tolerance = _tolerance(dtype)
    torch.testing.assert_close(y, y_ref, **tolerance)
    for s, s_ref in zip(final, final_ref):
        torch.testing.assert_close(s[0], s_ref, **tolerance)
    # gradients too: autograd through torch's layer_norm is a second oracle for the backward
    dy = _input(*y.shape, dtype=dtype, seed=9)
    wrt = [*p.values()]
    grads = torch.autograd.grad((y * dy).sum(), [*leaves, *wrt])
    grads_ref = torch.autograd.grad((y_ref * dy).sum(), [*oracle_leaves, *wrt])
    for name, g, g_ref in zip(["h0", "c0"][: len(leaves)] + list(p), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **tolerance, msg=lambda m, name=name: f"{name}: {m}")
        if name.startswith(("weight_ln", "bias_ln")):
            assert g.abs().max() > 0, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_dropout_is_torch_lstm_with_a_dropped_weight_hh(backend: str) -> None:
    p = 0.4
    module, dtype = _backend_module(backend, lstmlab.LSTM, num_layers=2, weight_dropout=p)
    x = _input(T, B, I, dtype=dtype)
    torch.manual_seed(6)
    y, final = module(x)
    # the masks, re-drawn: what multiplies a weight_hh of ones is the mask itself
    ones = [w._replace(w_hh=torch.ones_like(w.w_hh)) for w in module.layer_weights()]
    torch.manual_seed(6)
    masks = [w.w_hh.detach() for w in drop_recurrent_weights(module.config, ones, True)]
    for mask in masks:
        assert set(mask.unique().tolist()) == {0.0, torch.tensor(1.0 / (1.0 - p), dtype=dtype).item()}
    assert not torch.equal(masks[0], masks[1])  # one mask per layer
    theirs = torch.nn.LSTM(I, H, num_layers=2, dtype=dtype)
    params = {name: t for name, t in module.named_parameters()}
    dropped = {
        name: t * masks[int(name[-1])] if name.startswith("weight_hh") else t for name, t in params.items()
    }  # differentiable in the parameters, as the module's weight_hh is
    y_ref, final_ref = torch.func.functional_call(theirs, dropped, (x,))
    tolerance = _tolerance(dtype)
    torch.testing.assert_close(y, y_ref, **tolerance)
    torch.testing.assert_close(final, final_ref, **tolerance)
    dy = _input(*y.shape, dtype=dtype, seed=8)
    grads = torch.autograd.grad((y * dy).sum(), list(params.values()))
    grads_ref = torch.autograd.grad((y_ref * dy).sum(), list(params.values()))
    for name, g, g_ref in zip(params, grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **tolerance, msg=lambda m, name=name: f"{name}: {m}")
    assert bool((grads[1][masks[0] == 0] == 0).all())  # dropped weights get no gradient


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rate_of_one_is_a_zero_recurrent_weight(backend: str) -> None:
    """recurrent_dropout=1 and weight_dropout=1 both cut the recurrence: torch's LSTM with weight_hh = 0."""
    theirs = None
    for kwargs in ({"recurrent_dropout": 1.0}, {"weight_dropout": 1.0}):
        module, dtype = _backend_module(backend, lstmlab.LSTM, **kwargs)
        x, state = _input(T, B, I, dtype=dtype), (_input(1, B, H, dtype=dtype, seed=2), _input(1, B, H, dtype=dtype, seed=3))
        if theirs is None:
            theirs = torch.nn.LSTM(I, H, dtype=dtype)
            theirs.load_state_dict(module.state_dict())
            with torch.no_grad():
                theirs.weight_hh_l0.zero_()
        y, final = module(x, state)
        y_ref, final_ref = theirs(x, state)
        torch.testing.assert_close((y, final), (y_ref, final_ref), **_tolerance(dtype))


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.GRU], ids=["LSTM", "GRU"])
def test_one_step_at_a_time_is_the_sequence(cls: type, backend: str) -> None:
    """A stack fed one step per call (T = 1, as a sampler feeds it; backends take a shortcut
    there) computes the sequence's evaluation forward: zoneout's expectation at every step."""
    kwargs = {**(ALL_LSTM if cls is lstmlab.LSTM else ALL_GRU), "num_layers": 2}
    dtype = torch.float64 if backend == "auto" else _dtype_for(backend, _module(cls, **kwargs).config)
    module = _module(cls, dtype=dtype, backend=backend, **kwargs).eval()
    x = _input(T, B, I, dtype=dtype)
    y, final = module(x)
    state, ys = None, []
    for t in range(T):
        y_t, state = module(x[t : t + 1], state)
        ys.append(y_t)
    tolerance = _tolerance(dtype)
    torch.testing.assert_close(torch.cat(ys), y, **tolerance)
    torch.testing.assert_close(state, final, **tolerance)


@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.GRU], ids=["LSTM", "GRU"])
def test_one_step_in_training_matches_the_reference(cls: type) -> None:
    kwargs = ALL_LSTM if cls is lstmlab.LSTM else ALL_GRU
    results = []
    for backend in ("reference", "eager"):
        module = _module(cls, backend=backend, **kwargs)
        torch.manual_seed(4)
        state = tuple(_input(1, B, size, seed=5 + k) for k, size in enumerate(module.config.state_sizes))
        results.append(run_with_grads(module, _input(1, B, I), state))
    assert_not_trivial(results[0])
    assert_same(results[1], results[0], atol=1e-12, rtol=1e-12)


# -- the masks' statistics, evaluation, and regularisers set to zero -----------------------------


def test_mask_rates() -> None:
    """Zeros of the dropout masks at rate p (kept units scaled by 1/(1-p)), zoneout's ones at rate z;
    per layer and direction fresh masks; loose bounds (> 5 standard deviations)."""
    config = StackConfig(LSTMSpec(), 4, 256, num_layers=2, zoneout_c=0.6, zoneout_h=0.3, recurrent_dropout=0.25)
    torch.manual_seed(0)
    masks = draw_masks(config, 8, 64, torch.zeros((), dtype=torch.float64), training=True)
    assert masks is not None and len(masks) == 2
    for m in masks:
        assert m.recurrent.shape == (64, 256)
        assert abs(float((m.recurrent == 0).double().mean()) - 0.25) < 0.02
        assert set(m.recurrent.unique().tolist()) == {0.0, 1 / 0.75}
        d_h, d_c = m.zoneout
        assert d_h.shape == d_c.shape == (8, 64, 256)
        assert abs(float(d_h.mean()) - 0.3) < 0.01 and abs(float(d_c.mean()) - 0.6) < 0.01
        assert set(d_h.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(masks[0].recurrent, masks[1].recurrent)
    assert not torch.equal(masks[0].zoneout[0], masks[1].zoneout[0])
    again = draw_masks(config, 8, 64, torch.zeros((), dtype=torch.float64), training=True)
    assert not torch.equal(masks[0].recurrent, again[0].recurrent)  # a new mask at every call
    w_hh = torch.ones(4 * 128, 128)
    lstm = lstmlab.LSTM(4, 128, weight_dropout=0.3)
    (dropped,) = drop_recurrent_weights(lstm.config, [lstm.layer_weights()[0]._replace(w_hh=w_hh)], True)
    (dropped_again,) = drop_recurrent_weights(lstm.config, [lstm.layer_weights()[0]._replace(w_hh=w_hh)], True)
    assert abs(float((dropped.w_hh == 0).float().mean()) - 0.3) < 0.01
    assert not torch.equal(dropped.w_hh, dropped_again.w_hh)


def test_masks_at_evaluation() -> None:
    """At evaluation: no recurrent mask, zoneout's d = z (no copy per step); nothing at all without zoneout."""
    gru = StackConfig(GRUSpec(), 2, 3, zoneout_h=0.25, recurrent_dropout=0.5)
    ((recurrent, (d,)),) = draw_masks(gru, 5, 4, torch.zeros(()), training=False)
    assert recurrent is None and d.shape == (5, 4, 3) and bool((d == 0.25).all())
    assert draw_masks(StackConfig(GRUSpec(), 2, 3, recurrent_dropout=0.5), 5, 4, torch.zeros(()), training=False) is None


@pytest.mark.parametrize("name", ["recurrent_dropout", "weight_dropout", "zoneout"])
def test_training_calls_differ_and_reseeding_repeats_them(name: str) -> None:
    module = _module(lstmlab.LSTM, backend="eager", **{name: 0.5})
    x = _input(T, B, I)
    first, second = module(x)[0], module(x)[0]
    assert not torch.equal(first, second)
    torch.manual_seed(3)
    first = module(x)[0]
    torch.manual_seed(3)
    assert torch.equal(first, module(x)[0])


@pytest.mark.parametrize("backend", ["eager", "reference"])
def test_recurrent_mask_is_one_per_sequence(backend: str) -> None:
    """With h_0 = 0 and no input, an LSTM whose recurrent mask changed between steps would differ
    from one fed the same mask throughout; checked by a step-by-step replay with the one mask."""
    module = _module(lstmlab.LSTM, backend=backend, recurrent_dropout=0.5)
    x = _input(6, B, I)
    torch.manual_seed(2)
    y, _ = module(x)
    torch.manual_seed(2)
    (masks,) = draw_masks(module.config, 6, B, x, True)
    cell, h, c = _torch_cell(module), torch.zeros(B, H, dtype=x.dtype), torch.zeros(B, H, dtype=x.dtype)
    with torch.no_grad():
        for t in range(6):
            h, c = cell(x[t], (masks.recurrent * h, c))
            torch.testing.assert_close(y[t], h, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.GRU], ids=["LSTM", "GRU"])
def test_evaluation_is_deterministic_and_draws_nothing(cls: type) -> None:
    module = _module(cls, backend="eager", **(ALL_LSTM if cls is lstmlab.LSTM else ALL_GRU)).eval()
    x = _input(T, B, I)
    rng = torch.get_rng_state()
    first, second = module(x), module(x)
    assert torch.equal(rng, torch.get_rng_state())
    assert torch.equal(first[0], second[0])


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.GRU], ids=["LSTM", "GRU"])
def test_regularisers_at_zero_change_nothing(cls: type, backend: str, training: bool) -> None:
    """Rates of 0 (given, or set back to 0) are bit-for-bit the module without regularisers,
    and draw no random numbers; at evaluation so are recurrent and weight dropout at any rate."""
    plain = _module(cls)
    x = _input(T, B, I)
    if backend != "auto":
        dtype = _dtype_for(backend, plain.config)
        plain, x = _module(cls, dtype=dtype, backend=backend), x.to(dtype)
    plain.train(training)
    zero = copy.deepcopy(plain)
    zero.weight_dropout = 0.3  # every backend takes weight dropout
    zero.zoneout = zero.recurrent_dropout = zero.weight_dropout = 0.0
    assert zero.config == plain.config
    expected = run_with_grads(plain, x)
    rng = torch.get_rng_state()
    assert_same(run_with_grads(zero, x), expected, atol=0)
    assert torch.equal(rng, torch.get_rng_state())
    if not training:
        dropping = copy.deepcopy(plain)
        try:
            dropping.recurrent_dropout, dropping.weight_dropout = 0.5, 0.5
        except ValueError as error:  # an explicit backend without recurrent dropout
            assert backend not in ("auto", "eager", "reference"), error
            dropping.weight_dropout = 0.5
        # "auto" may pick another backend: a backend without recurrent dropout refuses it even
        # where it would do nothing (`in_recurrence` knows no training flag)
        same = dropping.active_backend == plain.active_backend
        assert_same(run_with_grads(dropping, x), expected, atol=0 if same else 1e-14)


# -- the modules' API ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "message"),
    [
        (lstmlab.LSTM, {"zoneout": 1.5}, ValueError, "LSTM: zoneout must be a number in [0, 1]; got 1.5"),
        (
            lstmlab.LSTM,
            {"zoneout": (0.1,)},
            ValueError,
            "LSTM: zoneout must be a probability or a pair (z_c, z_h) of them; got (0.1,)",
        ),
        (lstmlab.LSTM, {"zoneout": (0.1, 2.0)}, ValueError, "LSTM: zoneout[1] (z_h) must be a number in [0, 1]; got 2.0"),
        (lstmlab.GRU, {"zoneout": (0.1, 0.2)}, ValueError, "GRU: zoneout must be a number in [0, 1]; got (0.1, 0.2)"),
        (lstmlab.LSTM, {"recurrent_dropout": -0.1}, ValueError, "LSTM: recurrent_dropout must be a number in [0, 1]; got -0.1"),
        (lstmlab.GRU, {"weight_dropout": True}, ValueError, "GRU: weight_dropout must be a number in [0, 1]; got True"),
        (lstmlab.LSTM, {"layer_norm": 1}, TypeError, "LSTM: layer_norm should be of type bool, got: int (1)"),
        (lstmlab.GRU, {"layer_norm": "yes"}, TypeError, "GRU: layer_norm should be of type bool, got: str ('yes')"),
        (
            lstmlab.GRU,
            {"reset": "before", "layer_norm": True},
            ValueError,
            "GRU: layer_norm=True normalises U h as one product, which needs reset='after'; got reset='before'",
        ),
    ],
)
def test_constructor_validation(cls: type, kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        cls(I, H, **kwargs)
    assert str(caught.value) == message
    assert isinstance(caught.value, lstmlab.errors.LstmlabError)


def test_regularisers_are_settable() -> None:
    lstm = lstmlab.LSTM(I, H)
    assert (lstm.zoneout, lstm.recurrent_dropout, lstm.weight_dropout, lstm.layer_norm) == (0.0, 0.0, 0.0, False)
    lstm.zoneout = 0.2
    assert (lstm.config.zoneout_c, lstm.config.zoneout_h, lstm.zoneout) == (0.2, 0.2, 0.2)
    lstm.zoneout = (0.1, 0.3)
    assert (lstm.config.zoneout_c, lstm.config.zoneout_h, lstm.zoneout) == (0.1, 0.3, (0.1, 0.3))
    lstm.recurrent_dropout, lstm.weight_dropout = 0.4, 0.5
    assert (lstm.config.recurrent_dropout, lstm.config.weight_dropout) == (0.4, 0.5)
    chosen = backends.get(lstm.active_backend)  # "auto" passes over the backends without them
    assert chosen.name != "native" and chosen.unsupported(lstm.config, lstm.weight_ih_l0) is None
    before = lstm.config
    with pytest.raises(ValueError, match=r"LSTM: zoneout must be a number in \[0, 1\]; got -1"):
        lstm.zoneout = -1
    assert lstm.config is before
    gru = lstmlab.GRU(I, H, zoneout=0.3)
    assert (gru.zoneout, gru.config.zoneout_h, gru.config.zoneout_c) == (0.3, 0.3, 0.0)
    with pytest.raises(ValueError, match=r"GRU: zoneout must be a number in \[0, 1\]; got \(0.1, 0.2\)"):
        gru.zoneout = (0.1, 0.2)


def test_layer_norm_is_fixed_after_construction() -> None:
    """It fixes the parameters: reading it works, setting another value is refused (not silently ignored)."""
    lstm = lstmlab.LSTM(I, H, layer_norm=True)
    assert lstm.layer_norm is True
    lstm.layer_norm = True  # the same value: fine
    with pytest.raises(AttributeError, match=r"LSTM: layer_norm cannot change after construction .*is True, got False"):
        lstm.layer_norm = False
    assert lstm.config.spec.layer_norm
    gru = lstmlab.GRU(I, H)
    with pytest.raises(AttributeError, match="GRU: layer_norm cannot change"):
        gru.layer_norm = True
    assert not gru.config.spec.layer_norm and "weight_ln_ih_l0" not in dict(gru.named_parameters())
    with pytest.raises(ValueError, match="GRU: layer_norm=True normalises U h as one product, which needs reset='after'"):
        lstmlab.GRU(I, H, layer_norm=True).reset = "before"


@pytest.mark.parametrize(
    ("name", "value", "missing"),
    [("zoneout", 0.2, "zoneout"), ("recurrent_dropout", 0.2, "recurrent_dropout")],
)
def test_an_explicit_backend_that_cannot_run_a_regulariser_refuses_it(name: str, value: float, missing: str) -> None:
    lstm = lstmlab.LSTM(I, H, backend="native")
    before = lstm.config
    with pytest.raises(
        ValueError, match=rf"LSTM: backend='native' cannot run this configuration: torch's kernels have no {missing}"
    ):
        setattr(lstm, name, value)
    assert lstm.config is before and getattr(lstm, name) == 0.0
    lstm.weight_dropout = 0.2  # changes weight_hh before any backend runs: every backend takes it
    assert lstm.weight_dropout == 0.2
    with pytest.raises(ValueError, match="backend='native' cannot run this configuration: torch's kernels have no"):
        lstmlab.LSTM(I, H, backend="native", **{name: value})
    eager = lstmlab.LSTM(I, H, backend="eager", **{name: value})
    with pytest.raises(ValueError, match=f"have no {missing}"):
        eager.backend = "native"
    assert eager.backend == "eager"


def test_repr_shows_the_regularisers() -> None:
    assert repr(lstmlab.LSTM(I, H)) == "LSTM(2, 3)"
    lstm = lstmlab.LSTM(I, H, zoneout=(0.1, 0.3), recurrent_dropout=0.2, weight_dropout=0.4, layer_norm=True)
    assert repr(lstm) == "LSTM(2, 3, layer_norm=True, zoneout=(0.1, 0.3), recurrent_dropout=0.2, weight_dropout=0.4)"
    gru = lstmlab.GRU(I, H, zoneout=0.5)
    assert repr(gru) == "GRU(2, 3, zoneout=0.5)"
    gru.zoneout = 0.0
    assert repr(gru) == "GRU(2, 3)"


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_norm_parameters(bidirectional: bool) -> None:
    lstm = lstmlab.LSTM(I, H, num_layers=2, bidirectional=bidirectional, proj_size=2, layer_norm=True)
    gru = lstmlab.GRU(I, H, num_layers=2, bidirectional=bidirectional, layer_norm=True)
    suffixes = [f"_l{k}{d}" for k in range(2) for d in (("", "_reverse") if bidirectional else ("",))]
    for module, gates, extra in ((lstm, 4, True), (gru, 3, False)):
        params = dict(module.named_parameters())
        for suffix in suffixes:
            assert params["weight_ln_ih" + suffix].shape == params["weight_ln_hh" + suffix].shape == (gates * H,)
            assert bool((params["weight_ln_ih" + suffix] == 1).all() and (params["weight_ln_hh" + suffix] == 1).all())
            if extra:
                assert params["weight_ln_c" + suffix].shape == params["bias_ln_c" + suffix].shape == (H,)
                assert bool((params["weight_ln_c" + suffix] == 1).all()) and not params["bias_ln_c" + suffix].any()
            else:
                assert "weight_ln_c" + suffix not in params
        plain = type(module)(I, H, num_layers=2, bidirectional=bidirectional, **({"proj_size": 2} if extra else {}))
        added = [name for name in params if name not in dict(plain.named_parameters())]
        assert sorted(added) == sorted(
            stem + suffix
            for stem in ("weight_ln_ih", "weight_ln_hh", "weight_ln_c", "bias_ln_c")[: 4 if extra else 2]
            for suffix in suffixes
        )


def test_state_dict_round_trip() -> None:
    source = _module(lstmlab.LSTM, num_layers=2, backend="eager", **ALL_LSTM).eval()
    fresh = lstmlab.LSTM(I, H, num_layers=2, dtype=torch.float64, backend="eager", **ALL_LSTM).eval()
    x = _input(T, B, I)
    assert not torch.equal(fresh(x)[0], source(x)[0])
    fresh.load_state_dict(source.state_dict())
    assert torch.equal(fresh(x)[0], source(x)[0])
    with pytest.raises(RuntimeError, match="weight_ln_ih_l0"):  # a module without layer_norm has no place for them
        lstmlab.LSTM(I, H, num_layers=2, dtype=torch.float64).load_state_dict(source.state_dict())


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "torch.save"])
def test_copies_keep_the_regularisers(how: str) -> None:
    source = _module(lstmlab.LSTM, backend="eager", **ALL_LSTM)
    if how == "pickle":
        copied = pickle.loads(pickle.dumps(source))
    elif how == "deepcopy":
        copied = copy.deepcopy(source)
    else:
        buffer = io.BytesIO()
        torch.save(source, buffer)
        buffer.seek(0)
        copied = torch.load(buffer, weights_only=False)
    assert copied.config == source.config and repr(copied) == repr(source)
    assert (copied.zoneout, copied.recurrent_dropout, copied.weight_dropout, copied.layer_norm) == ((0.3, 0.6), 0.4, 0.3, True)
    x = _input(T, B, I)
    for training in (True, False):
        outputs = []
        for module in (source, copied):
            torch.manual_seed(1)
            outputs.append(module.train(training)(x)[0])
        assert torch.equal(*outputs)


def test_from_torch_takes_the_regularisers_that_add_no_parameters() -> None:
    theirs = torch.nn.LSTM(I, H)
    ours = lstmlab.LSTM.from_torch(theirs, zoneout=0.1, recurrent_dropout=0.2, weight_dropout=0.3)
    assert (ours.zoneout, ours.recurrent_dropout, ours.weight_dropout) == (0.1, 0.2, 0.3)
    torch.testing.assert_close(ours.weight_hh_l0, theirs.weight_hh_l0, atol=0, rtol=0)
    with pytest.raises(
        ValueError, match=r"LSTM.from_torch: layer_norm=True gives parameters that torch's LSTM lacks .*weight_ln_c_l0"
    ):
        lstmlab.LSTM.from_torch(theirs, layer_norm=True)


def test_to_torch_refuses_the_regularisers() -> None:
    with pytest.raises(
        ValueError, match=r"LSTM.to_torch: torch's module has no zoneout=\(0.1, 0.2\), weight_dropout=0.3; set them to 0"
    ):
        lstmlab.LSTM(I, H, zoneout=(0.1, 0.2), weight_dropout=0.3).to_torch()
    with pytest.raises(ValueError, match=r"GRU.to_torch: torch's module has no recurrent_dropout=0.5"):
        lstmlab.GRU(I, H, recurrent_dropout=0.5).to_torch()
    with pytest.raises(ValueError, match=r"LSTM.to_torch: torch has no equivalent of this cell .*layer_norm=True"):
        lstmlab.LSTM(I, H, layer_norm=True).to_torch()
    lstm = lstmlab.LSTM(I, H, zoneout=0.1)
    lstm.zoneout = 0
    assert isinstance(lstm.to_torch(), torch.nn.LSTM)


@pytest.mark.parametrize(
    ("cls", "kwargs", "feature"),
    [
        (lstmlab.LSTM, {"layer_norm": True}, "layer normalisation"),
        (lstmlab.GRU, {"layer_norm": True}, "layer normalisation"),
        (lstmlab.LSTM, {"zoneout": 0.1}, "zoneout"),
        (lstmlab.GRU, {"zoneout": 0.1}, "zoneout"),
    ],
)
def test_export_onnx_refuses_what_the_operators_lack(cls: type, kwargs: dict[str, Any], feature: str, tmp_path: Any) -> None:
    pytest.importorskip("onnx", reason="needs onnx: pip install onnx onnxruntime (or pip install 'lstmlab[onnx]')")
    module = cls(I, H, **kwargs).eval()
    with pytest.raises(ValueError, match=rf"export_onnx: .*{feature}"):
        lstmlab.export_onnx(module, torch.randn(T, B, I), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_export_onnx_takes_the_dropouts_at_evaluation(tmp_path: Any) -> None:
    """Recurrent and weight dropout do nothing at evaluation, so ONNX's operator computes the module."""
    ort = pytest.importorskip(
        "onnxruntime", reason="needs onnxruntime: pip install onnx onnxruntime (or pip install 'lstmlab[onnx]')"
    )
    pytest.importorskip("onnx", reason="needs onnx: pip install onnx onnxruntime (or pip install 'lstmlab[onnx]')")
    module = lstmlab.LSTM(I, H, recurrent_dropout=0.5, weight_dropout=0.5).eval()
    x = torch.randn(T, B, I)
    path = lstmlab.export_onnx(module, x, tmp_path / "model.onnx")
    (y, *_) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), module(x)[0].detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.GRU], ids=["LSTM", "GRU"])
def test_charlm_trace_runs_the_evaluation_forward(cls: type) -> None:
    """`lstmlab inspect`'s trace of a zoneout + layer_norm model is the module's evaluation forward."""
    from lstmlab.charlm.trace import trace

    kwargs = {"zoneout": (0.2, 0.5)} if cls is lstmlab.LSTM else {"zoneout": 0.4}
    module = _module(cls, num_layers=2, layer_norm=True, recurrent_dropout=0.3, weight_dropout=0.3, **kwargs, backend="eager")
    x = _input(7, I)
    layers = trace(module, x)
    module.eval()
    y, final = module(x)
    assert len(layers) == 2
    if cls is lstmlab.LSTM:
        for layer, lt in enumerate(layers):
            assert lt.cell.shape == (7, H) and set(lt.gates) == {"i", "f", "o"}
            torch.testing.assert_close(torch.from_numpy(lt.cell[-1]), torch.tanh(final[1][layer]), atol=1e-12, rtol=1e-12)
    else:
        torch.testing.assert_close(torch.from_numpy(layers[-1].cell), y.detach(), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(torch.from_numpy(layers[0].cell[-1]), final[0], atol=1e-12, rtol=1e-12)


def test_in_eval_mode_the_dropouts_leave_the_choice_of_backend_free() -> None:
    # recurrent and weight dropout do nothing at evaluation, so they must not send an
    # evaluation to a slower backend that happens to run them
    module = lstmlab.LSTM(4, 8, num_layers=2, recurrent_dropout=0.3, weight_dropout=0.2).eval()
    plain = lstmlab.LSTM(4, 8, num_layers=2).eval()
    plain.load_state_dict(module.state_dict())
    assert module.active_backend == plain.active_backend
    x = torch.randn(6, 3, 4)
    torch.testing.assert_close(module(x)[0], plain(x)[0], rtol=0, atol=0)
    module.train()
    assert module._running_config() is module.config
