"""Tier 1: the NumPy reference against central finite differences (float64), and its
forward against the equations of `lstmlab.cells.lstm` written out gate by gate.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CASES, build, np_seed, numpy_weights

from lstmlab import reference
from lstmlab.cells import LayerWeights, LSTMSpec
from lstmlab.cells.lstm import VARIANTS, spec_from_flags

T, B = 3, 2
EPS = 1e-6


def _problem(case: str, seed: int = 0) -> tuple:
    module = build(case, seed=seed)
    spec, (w,) = module.config.spec, numpy_weights(module)
    rng = np_seed(seed)
    x = rng.standard_normal((T, B, module.input_size))
    state = tuple(rng.standard_normal((B, size)) for size in module.config.state_sizes)
    return spec, w, x, state, rng


def _loss(spec, x, state, w, lengths, dy, dfinal) -> float:
    y, final, _ = reference.forward(spec, x, state, w, lengths)
    return float((dy * y).sum() + sum((d * s).sum() for d, s in zip(dfinal, final)))


def _finite_difference(f, array: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to each entry of `array`, in place."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + EPS
        up = f()
        array[index] = saved - EPS
        down = f()
        array[index] = saved
        grad[index] = (up - down) / (2 * EPS)
    return grad


@pytest.mark.parametrize("lengths", [None, [3, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_finite_differences(case: str, lengths: list[int] | None) -> None:
    spec, w, x, state, rng = _problem(case)
    y, final, tape = reference.forward(spec, x, state, w, lengths)
    dy = rng.standard_normal(y.shape)
    dfinal = tuple(rng.standard_normal(s.shape) for s in final)
    dx, dstate, dw = reference.backward(spec, w, tape, dy, dfinal)

    present = [field for field in LayerWeights._fields if getattr(w, field) is not None]
    assert [field for field in LayerWeights._fields if getattr(dw, field) is not None] == present
    analytic = {"x": dx, **{f"state{k}": d for k, d in enumerate(dstate)}, **{f: getattr(dw, f) for f in present}}
    arrays = {"x": x, **{f"state{k}": s for k, s in enumerate(state)}, **{f: getattr(w, f) for f in present}}
    assert analytic.keys() == arrays.keys()
    f = lambda: _loss(spec, x, state, w, lengths, dy, dfinal)  # reads the arrays perturbed in place
    for name, array in arrays.items():
        assert analytic[name].shape == array.shape, name
        np.testing.assert_allclose(analytic[name], _finite_difference(f, array), rtol=1e-6, atol=1e-8, err_msg=name)
        assert np.abs(analytic[name]).max() > 0, name


@pytest.mark.parametrize("case", CASES)
def test_lengths_freeze_the_state_and_zero_the_padding(case: str) -> None:
    spec, w, x, state, _ = _problem(case)
    lengths = [3, 1]
    y, final, _ = reference.forward(spec, x, state, w, lengths)
    for b, n in enumerate(lengths):
        row_state = tuple(s[b : b + 1] for s in state)
        y_b, final_b, _ = reference.forward(spec, x[:n, b : b + 1], row_state, w)
        np.testing.assert_allclose(y[:n, b : b + 1], y_b, rtol=1e-13, atol=1e-15)
        assert not y[n:, b].any()
        for s, s_b in zip(final, final_b):
            np.testing.assert_allclose(s[b : b + 1], s_b, rtol=1e-13, atol=1e-15)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _lstm_by_equations(spec: LSTMSpec, x: np.ndarray, state: tuple, w: LayerWeights) -> tuple:
    """Equations (L1)-(L7) of lstmlab.cells.lstm, one step, each gate spelled out."""
    h, c = state[0], state[1]
    H = c.shape[-1]
    rows = {gate: slice(k * H, (k + 1) * H) for k, gate in enumerate(spec.gates)}
    peep = {gate: w.w_ch[k * H : (k + 1) * H] for k, gate in enumerate(spec.peephole_gates)}
    recur = {gate: w.w_gh[k * H : (k + 1) * H] for k, gate in enumerate(spec.recurrent_gates)}

    def pre(gate: str) -> np.ndarray:
        a = x @ w.w_ih[rows[gate]].T + h @ w.w_hh[rows[gate]].T
        if w.b_ih is not None:
            a = a + w.b_ih[rows[gate]] + w.b_hh[rows[gate]]
        if gate in recur:
            a = a + state[2] @ recur[gate].T
        return a

    G = np.tanh if spec.input_activation == "tanh" else (lambda a: a)
    Hact = np.tanh if spec.output_activation == "tanh" else (lambda a: a)
    one = np.ones_like(c)
    i = _sigmoid(pre("i") + peep.get("i", 0) * c) if spec.input_gate else one
    if spec.coupled:
        f = 1 - i
    else:
        f = _sigmoid(pre("f") + peep.get("f", 0) * c) if spec.forget_gate else one
    g = G(pre("g"))
    c_new = f * c + i * g
    o = _sigmoid(pre("o") + peep.get("o", 0) * c_new) if spec.output_gate else one
    h_new = o * Hact(c_new)
    if w.w_hr is not None:
        h_new = h_new @ w.w_hr.T
    final = (h_new, c_new)
    if spec.gate_recurrence:
        final += (np.concatenate([{"i": i, "f": f, "o": o}[gate] for gate in spec.recurrent_gates], axis=-1),)
    return h_new, final


@pytest.mark.parametrize("case", [case for case, (_, flags) in CASES.items() if case.startswith("LSTM")])
def test_lstm_forward_matches_the_equations(case: str) -> None:
    spec, w, x, state, _ = _problem(case)
    y, final, _ = reference.forward(spec, x, state, w)
    expected_state = state
    for t in range(T):
        h, expected_state = _lstm_by_equations(spec, x[t], expected_state, w)
        np.testing.assert_allclose(y[t], h, rtol=1e-12, atol=1e-12)
    assert len(final) == len(expected_state)
    for s, e in zip(final, expected_state):
        np.testing.assert_allclose(s, e, rtol=1e-12, atol=1e-12)


def test_every_variant_is_covered() -> None:
    covered = {build(case).config.spec for case in CASES if case.startswith("LSTM")}
    assert {spec_from_flags(name) for name in VARIANTS} <= covered
