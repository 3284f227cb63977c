"""Tier 4: properties of the cells and modules, over shapes and flags drawn by hypothesis."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from helpers import CASES, HIDDEN_SIZE, INPUT_SIZE, build, make_input, make_state
from hypothesis import given, settings
from hypothesis import strategies as st

import lstmlab
from lstmlab.cells import LSTMSpec
from lstmlab.cells.lstm import VARIANTS

PROPERTY = settings(max_examples=25, deadline=None)
H = HIDDEN_SIZE


def _states(final: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (final,) if isinstance(final, torch.Tensor) else tuple(final)


def _hx(state: tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    return state if len(state) > 1 else state[0]


@PROPERTY
@given(
    case=st.sampled_from(list(CASES)),
    T1=st.integers(0, 3),
    T2=st.integers(0, 3),
    B=st.integers(1, 3),
    num_layers=st.integers(1, 2),
    with_hx=st.booleans(),
)
def test_two_pieces_carrying_the_state_equal_one_run(case: str, T1: int, T2: int, B: int, num_layers: int, with_hx: bool) -> None:
    module = build(case, num_layers=num_layers)
    x = make_input(T1 + T2, B, INPUT_SIZE, torch.float64)
    hx = _hx(make_state(module, B)) if with_hx else None
    y, final = module(x, hx)
    y1, mid = module(x[:T1], hx)
    y2, final2 = module(x[T1:], mid)
    if case.startswith("LSTM-FGR"):
        assert len(_states(mid)) == 3  # (h, c, a): the gate activations are carried too
    torch.testing.assert_close(torch.cat([y1, y2]), y, atol=1e-12, rtol=1e-12)
    for s, s2 in zip(_states(final), _states(final2), strict=True):
        torch.testing.assert_close(s2, s, atol=1e-12, rtol=1e-12)


@PROPERTY
@given(
    case=st.sampled_from(list(CASES)),
    T=st.integers(1, 3),
    perm=st.permutations(range(3)),
    bidirectional=st.booleans(),
    packed=st.booleans(),
)
def test_permuting_the_batch_permutes_outputs_and_states(
    case: str, T: int, perm: list[int], bidirectional: bool, packed: bool
) -> None:
    module = build(case, bidirectional=bidirectional, backend="eager")
    B, index = 3, torch.tensor(perm)
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    state = make_state(module, B)
    lengths = torch.tensor([T, max(T - 1, 1), 1])

    def run(x: torch.Tensor, state: tuple, lengths: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        y, final = module(inp, _hx(state))
        if packed:
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)
        return y, _states(final)

    y, final = run(x, state, lengths)
    y_p, final_p = run(x[:, index], tuple(s[:, index] for s in state), lengths[index])
    torch.testing.assert_close(y_p, y[:, index], atol=1e-12, rtol=1e-12)
    for s, s_p in zip(final, final_p, strict=True):
        torch.testing.assert_close(s_p, s[:, index], atol=1e-12, rtol=1e-12)


PEEPHOLE_VARIANTS = [name for name, (flags, _) in VARIANTS.items() if flags.get("peephole") and name != "peephole"]


@pytest.mark.parametrize("variant", PEEPHOLE_VARIANTS)
def test_zero_peepholes_equal_no_peepholes(variant: str) -> None:
    with_peep = build(f"LSTM-{variant}", num_layers=2, backend="eager")
    flags = dict(VARIANTS[variant][0], peephole=False)
    without = lstmlab.LSTM(INPUT_SIZE, H, num_layers=2, **flags, backend="eager", dtype=torch.float64)
    state = without.state_dict()
    for name, value in with_peep.state_dict().items():
        if name.startswith("weight_ch"):
            assert value.abs().min() > 0  # random, so this is not the trivial case
        else:
            state[name] = value
    without.load_state_dict(state)
    x = make_input(3, 2, INPUT_SIZE, torch.float64)
    y_peep, _ = with_peep(x)
    assert not torch.allclose(y_peep, without(x)[0])
    with torch.no_grad():
        for name, param in with_peep.named_parameters():
            if name.startswith("weight_ch"):
                param.zero_()
    for a, b in zip(with_peep(x)[1], without(x)[1], strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(with_peep(x)[0], without(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_cifg_equals_an_lstm_whose_forget_preactivation_is_the_negated_input_one(bias: bool) -> None:
    coupled = lstmlab.LSTM(INPUT_SIZE, H, num_layers=2, bias=bias, coupled=True, dtype=torch.float64)
    build_weights = build("LSTM-NP", bias=bias, num_layers=2).state_dict()
    plain = lstmlab.LSTM(INPUT_SIZE, H, num_layers=2, bias=bias, dtype=torch.float64)
    state = {}
    for name, value in build_weights.items():  # rows i, f, g, o
        i, _, g, o = value.split(H)
        state[name] = torch.cat([i, -i, g, o])
    plain.load_state_dict(state)
    coupled.load_state_dict({name: torch.cat([value.split(H)[k] for k in (0, 2, 3)]) for name, value in state.items()})
    assert coupled.weight_ih_l0.shape[0] == 3 * H
    x = make_input(4, 2, INPUT_SIZE, torch.float64)
    y, (h, c) = coupled(x)
    y_plain, (h_plain, c_plain) = plain(x)
    for a, b in ((y, y_plain), (h, h_plain), (c, c_plain)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_batch_of_one_and_unbatched_agree_with_a_row_of_the_batch(case: str) -> None:
    module = build(case, bidirectional=True)
    x = make_input(3, 2, INPUT_SIZE, torch.float64)
    state = make_state(module, 2)
    y, final = module(x, _hx(state))
    y1, final1 = module(x[:, 1:], _hx(tuple(s[:, 1:] for s in state)))
    y0, final0 = module(x[:, 1], _hx(tuple(s[:, 1] for s in state)))
    assert y1.shape[1] == 1 and y0.dim() == 2
    torch.testing.assert_close(y1, y[:, 1:], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(y0, y[:, 1], atol=1e-12, rtol=1e-12)
    for s, s1, s0 in zip(_states(final), _states(final1), _states(final0), strict=True):
        torch.testing.assert_close(s1, s[:, 1:], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(s0, s[:, 1], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_empty_sequence_returns_the_initial_state(case: str) -> None:
    module = build(case)
    x = torch.zeros(0, 2, INPUT_SIZE, dtype=torch.float64)
    y, final = module(x)
    assert y.shape == (0, 2, module.config.output_size)
    for s, size in zip(_states(final), module.config.state_sizes, strict=True):
        assert s.shape == (1, 2, size) and not s.any()
    y, final = module(torch.zeros(0, INPUT_SIZE, dtype=torch.float64))  # unbatched
    assert y.shape == (0, module.config.output_size)
    assert [s.shape for s in _states(final)] == [(1, size) for size in module.config.state_sizes]


# -- variants and their parameters ----------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_names_are_case_insensitive(name: str) -> None:
    specs = {lstmlab.LSTM(2, 3, variant=spelling).config.spec for spelling in (name, name.lower(), name.upper())}
    assert specs == {LSTMSpec(**VARIANTS[name][0])}


def _conflicts() -> list[tuple[str, str, object]]:
    """(variant, flag, value) for every flag value that differs from what the variant sets."""
    out = []
    for name, (flags, _) in VARIANTS.items():
        for field in fields(LSTMSpec):
            if field.name == "layer_norm":  # not a variant's flag: it combines with every variant
                continue
            value = flags.get(field.name, field.default)
            other = (not value) if isinstance(value, bool) else ("identity" if value == "tanh" else "tanh")
            out.append((name, field.name, other))
    return out


@pytest.mark.parametrize(("variant", "flag", "value"), _conflicts())
def test_a_variant_with_a_conflicting_flag_is_an_error(variant: str, flag: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"LSTM: {flag}={value!r} conflicts with variant={variant!r}"):
        lstmlab.LSTM(2, 3, variant=variant, **{flag: value})
    flags = VARIANTS[variant][0]
    agreeing = flags.get(flag, LSTMSpec.__dataclass_fields__[flag].default)
    assert lstmlab.LSTM(2, 3, variant=variant, **{flag: agreeing}).config.spec == LSTMSpec(**flags)


@pytest.mark.parametrize(
    ("variant", "gates", "peepholes"),
    [
        ("vanilla", ("i", "f", "g", "o"), 3),
        ("NP", ("i", "f", "g", "o"), 0),
        ("NIG", ("f", "g", "o"), 2),
        ("NFG", ("i", "g", "o"), 2),
        ("NOG", ("i", "f", "g"), 2),
        ("CIFG", ("i", "g", "o"), 2),
        ("FGR", ("i", "f", "g", "o"), 3),
    ],
)
def test_weight_rows_and_peephole_shapes(variant: str, gates: tuple[str, ...], peepholes: int) -> None:
    module = lstmlab.LSTM(INPUT_SIZE, H, num_layers=2, bidirectional=True, proj_size=2, variant=variant)
    assert module.config.spec.gates == gates
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        layer_input = INPUT_SIZE if suffix.startswith("_l0") else 4
        assert getattr(module, "weight_ih" + suffix).shape == (len(gates) * H, layer_input)
        assert getattr(module, "weight_hh" + suffix).shape == (len(gates) * H, 2)
        assert getattr(module, "bias_ih" + suffix).shape == (len(gates) * H,)
        peephole = getattr(module, "weight_ch" + suffix, None)
        assert (peephole is None) if peepholes == 0 else (peephole.shape == (peepholes * H,))
        if variant == "FGR":
            assert getattr(module, "weight_gh" + suffix).shape == (3 * H, 3 * H)
        else:
            assert not hasattr(module, "weight_gh" + suffix)


@pytest.mark.parametrize("variant", ["NP", "vanilla", "NIG", "NOG", "FGR"])
def test_forget_bias_adds_to_the_forget_block_of_bias_ih_only(variant: str) -> None:
    torch.manual_seed(0)
    plain = lstmlab.LSTM(INPUT_SIZE, H, num_layers=2, bidirectional=True, variant=variant)
    torch.manual_seed(0)
    biased = lstmlab.LSTM(INPUT_SIZE, H, num_layers=2, bidirectional=True, variant=variant, forget_bias=1.5)
    f = plain.config.spec.gates.index("f")
    for name, value in plain.state_dict().items():
        delta = biased.state_dict()[name] - value
        if name.startswith("bias_ih"):
            expected = torch.zeros_like(value)
            expected[f * H : (f + 1) * H] = 1.5
            torch.testing.assert_close(delta, expected)
        else:
            assert not delta.any(), name
