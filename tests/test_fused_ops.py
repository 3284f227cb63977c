"""The fused ops' interface: the schema both sides name, the checks of every input,
empty batches and zero sizes, autocast, and the refusal of double backward."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import lstmlab
from lstmlab.backends.fused import custom_ops, loader, schema
from lstmlab.cells import GRUSpec, LSTMSpec, RNNSpec
from tests.helpers import CASES, TORCH_CASES, build, make_input, make_state, run_with_grads

T, B, I, H = 5, 3, 4, 6  # noqa: E741 - the house names for sizes

SPECS = {
    "LSTM-vanilla": LSTMSpec(peephole=True),
    "LSTM-FGR": LSTMSpec(peephole=True, gate_recurrence=True),
    "LSTM-CIFG": LSTMSpec(peephole=True, coupled=True),
    "GRU-after": GRUSpec(reset="after"),
    "GRU-before": GRUSpec(reset="before"),
    "RNN-tanh": RNNSpec(),
}


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    loader.load()


def layer_inputs(
    spec: Any, *, T: int = T, B: int = B, H: int = H, P: int | None = None, lengths: bool = False, save: bool = True
) -> schema.ForwardInputs:
    """Valid arguments of lstmlab::fused_layer for `spec`, float64, requiring grad; P < H projects."""
    P = H if P is None else P
    cell, flags = schema.encode(spec)
    G = len(spec.gates)
    n_peep, n_rec = len(getattr(spec, "peephole_gates", ())), len(getattr(spec, "recurrent_gates", ()))
    generator = torch.Generator().manual_seed(0)
    t = lambda *shape: (torch.randn(*shape, generator=generator, dtype=torch.float64) * 0.5).requires_grad_(True)
    lstm = cell == schema.Cell.LSTM
    return schema.ForwardInputs(
        x=t(T, B, I), h0=t(B, P), c0=t(B, H) if lstm else None,
        w_ih=t(G * H, I), w_hh=t(G * H, P), b_ih=t(G * H), b_hh=t(G * H),
        w_ch=t(n_peep * H) if n_peep else None,
        a0=t(B, n_rec * H) if n_rec else None, w_gh=t(n_rec * H, n_rec * H) if n_rec else None,
        w_hr=t(P, H) if P != H else None,
        lengths=torch.arange(B, dtype=torch.int64) % T + 1 if lengths else None,
        cell=int(cell), flags=list(flags), save=save,
    )  # fmt: skip


# -- the schema --------------------------------------------------------------------


def test_python_and_cpp_name_the_same_interface() -> None:
    extension = loader.load()
    assert schema.mismatches(extension) == []
    assert extension.lstm_flag_names() == list(schema.LSTMFlags._fields)
    assert extension.forward_result_names() == list(schema.ForwardResult._fields)
    assert extension.backward_result_names() == list(schema.BackwardResult._fields)
    assert extension.forward_argument_names() == list(schema.ForwardInputs._fields)
    renamed = SimpleNamespace(**{name: getattr(extension, name) for name in dir(extension) if name.endswith("_names")})
    renamed.forward_result_names = lambda: ["y", "h_n", "c_n", "hs", "cs", "gates", "extra", "acts", "a_n", "ms", "wx", "uh"]
    assert schema.mismatches(renamed) == [
        "forward_result_names: the extension has ['y', 'h_n', 'c_n', 'hs', 'cs', 'gates', 'extra', 'acts', 'a_n', 'ms', "
        "'wx', 'uh'], schema.py ['y', 'h_n', 'c_n', 'hs', 'cs', 'gates', 'extra', 'a_n', 'acts', 'ms', 'wx', 'uh']"
    ]


def test_op_arguments_and_results_are_as_the_schema_names_them() -> None:
    ops = [
        (torch.ops.lstmlab.fused_layer.default, schema.ForwardInputs, schema.ForwardResult),
        (torch.ops.lstmlab.fused_layer_backward.default, schema.BackwardInputs, schema.BackwardResult),
    ]
    for op, inputs, results in ops:
        assert [argument.name for argument in op._schema.arguments] == list(inputs._fields)
        assert len(op._schema.returns) == len(results._fields)


def test_loader_refuses_an_extension_whose_names_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    real = loader.load()
    stale = SimpleNamespace(**{name: getattr(real, name) for name in dir(real) if not name.startswith("_")})
    stale.lstm_flag_names = lambda: real.lstm_flag_names()[:-1]
    monkeypatch.setattr(loader, "_compile", lambda: stale)
    loader.reset()
    try:
        with pytest.raises(RuntimeError, match=r"do not match .*schema.py: lstm_flag_names: the extension has"):
            loader.load()
    finally:
        monkeypatch.undo()
        loader.reset()
        loader.load()


@pytest.mark.parametrize("case", SPECS)
def test_the_extension_returns_what_the_schema_says_is_present(case: str) -> None:
    extension = loader.load()
    projections = (None, 4) if case.startswith("LSTM") else (None,)
    for save, lengths, P in itertools.product((False, True), (False, True), projections):
        args = layer_inputs(SPECS[case], P=P, lengths=lengths, save=save)
        with torch.no_grad():
            out = extension.forward(*args)
        shapes = [(0,) if shape is None else shape for shape in schema.forward_shapes(args).values()]
        assert [tuple(t.shape) for t in out] == shapes  # absent ones: empty placeholders
    for need_dx in (False, True):
        back = _backward_inputs(case)._replace(need_dx=need_dx)
        with torch.no_grad():
            out = extension.backward(*back)
        shapes = [(0,) if shape is None else shape for shape in schema.backward_shapes(back).values()]
        assert [tuple(t.shape) for t in out] == shapes


def test_encode_names_every_flag() -> None:
    cell, flags = schema.encode(LSTMSpec(peephole=True, coupled=True, output_activation="identity"))
    assert cell == schema.Cell.LSTM
    assert flags == schema.LSTMFlags(
        gate_i=0, gate_f=-1, gate_g=1, gate_o=2, peephole_i=0, peephole_f=-1, peephole_o=1,
        coupled=1, tanh_g=1, tanh_h=0, gate_recurrence=0,
    )  # fmt: skip
    assert schema.encode(GRUSpec(reset="before")) == (schema.Cell.GRU, schema.GRUFlags(reset_before=1))
    assert schema.encode(RNNSpec(nonlinearity="relu")) == (schema.Cell.RNN, schema.RNNFlags(relu=1))


# -- the checks of every input -----------------------------------------------------

# id: (cell, a change to valid arguments, the message expected)
BAD_FORWARD: dict[str, tuple[str, Any, str]] = {
    "flag-count": (
        "LSTM-vanilla",
        lambda a: a._replace(flags=a.flags[:-1]),
        r"the lstm cell takes 11 flags \(gate_i, gate_f, .*gate_recurrence\); got 10",
    ),
    "gru-flag-count": ("GRU-after", lambda a: a._replace(flags=[0, 1]), r"the gru cell takes 1 flags \(reset_before\); got 2"),
    "cell": ("RNN-tanh", lambda a: a._replace(cell=3), r"cell must be the index of one of lstm, gru, rnn; got 3"),
    "flag-value": ("RNN-tanh", lambda a: a._replace(flags=[2]), r"the flag relu must be 0 or 1; got 2"),
    "gate-blocks": (
        "LSTM-vanilla",
        lambda a: a._replace(flags=[0, 2, 1, 3, *a.flags[4:]]),
        r"the flags gate_i, gate_f, gate_g, gate_o must number the blocks that exist 0, 1, \.\.\. in that order, "
        r"-1 for an absent one; got \[0, 2, 1, 3\]",
    ),
    "peephole-without-gate": (
        "LSTM-CIFG",
        lambda a: a._replace(flags=[0, -1, 1, 2, 0, 1, 2, *a.flags[7:]]),
        r"a peephole needs its gate",
    ),
    "w_ih-shape": (
        "LSTM-vanilla",
        lambda a: a._replace(w_ih=a.w_ih[:, :-1]),
        r"w_ih must have shape \(G\*H, I\) = \[24, 4\] \(T=5, B=3, I=4, H=6, P=6, G=4, NP=3, R=0\); got \[24, 3\]",
    ),
    "w_hh-shape": (
        "GRU-before",
        lambda a: a._replace(w_hh=a.w_hh[:-1]),
        r"w_hh must have shape \(G\*H, P\) = \[18, 6\] .*; got \[17, 6\]",
    ),
    "bias-shape": ("RNN-tanh", lambda a: a._replace(b_hh=a.b_hh[:-1]), r"b_hh must have shape \(G\*H,\) = \[6\] .*; got \[5\]"),
    "one-bias": ("RNN-tanh", lambda a: a._replace(b_hh=None), r"b_ih and b_hh must both be given or both be None; got b_ih only"),
    "peepholes-missing": (
        "LSTM-vanilla",
        lambda a: a._replace(w_ch=None),
        r"w_ch \(NP\*H,\) must be given with peepholes .*; got None",
    ),
    "peepholes-shape": (
        "LSTM-CIFG",
        lambda a: a._replace(w_ch=torch.zeros(3 * H, dtype=torch.float64)),
        r"w_ch must have shape \(NP\*H,\) = \[12\]",
    ),
    "c0-missing": ("LSTM-vanilla", lambda a: a._replace(c0=None), r"c0 must be a 2-D \(B, H\) tensor for an LSTM; got None"),
    "c0-not-lstm": (
        "GRU-after",
        lambda a: a._replace(c0=a.h0),
        r"c0 must be None except for an LSTM; got a tensor of shape \[3, 6\]",
    ),
    "a0-missing": (
        "LSTM-FGR",
        lambda a: a._replace(a0=None),
        r"a0 \(B, R\*H\) must be given with full gate recurrence \(gate_recurrence=1\); got None",
    ),
    "w_gh-shape": ("LSTM-FGR", lambda a: a._replace(w_gh=a.w_gh[:-1]), r"w_gh must have shape \(R\*H, R\*H\) = \[18, 18\]"),
    "w_hr-shape": (
        "LSTM-vanilla",
        lambda a: a._replace(w_hr=torch.zeros(6, 5, dtype=torch.float64)),
        r"w_hr must have shape \(P, H\) = \[6, 6\]",
    ),
    "h0-shape": (
        "LSTM-vanilla",
        lambda a: a._replace(h0=a.h0[:, :-1], w_hh=a.w_hh[:, :-1]),
        r"h0 must be \(B, H\) = \[3, 6\] without a projection \(w_hr None\); got \[3, 5\]",
    ),
    "h0-batch": ("RNN-tanh", lambda a: a._replace(h0=a.h0[:-1]), r"h0 must have shape \(B, P\) = \[3, 6\] .*; got \[2, 6\]"),
    "dtype": ("GRU-after", lambda a: a._replace(w_hh=a.w_hh.float()), r"w_hh must have x's dtype Double; got Float"),
    "x-dtype": ("RNN-tanh", lambda a: a._replace(x=a.x.bfloat16()), r"x must be float32 or float64; got BFloat16"),
    "x-dim": ("RNN-tanh", lambda a: a._replace(x=a.x[0]), r"x must be a 3-D \(T, B, I\) tensor; got 2-D"),
    "T=0": ("GRU-after", lambda a: a._replace(x=a.x[:0]), r"x.size\(0\) = T must be positive"),
    "lengths-dtype": (
        "LSTM-vanilla",
        lambda a: a._replace(lengths=torch.tensor([5, 2, 4], dtype=torch.int32)),
        r"lengths must be an int64 tensor of shape \(B,\) = \[3\]; got Int of shape \[3\]",
    ),
    "lengths-size": (
        "LSTM-vanilla",
        lambda a: a._replace(lengths=torch.tensor([5, 2])),
        r"lengths must be an int64 tensor of shape \(B,\) = \[3\]; got Long of shape \[2\]",
    ),
    "lengths-zero": (
        "GRU-before",
        lambda a: a._replace(lengths=torch.tensor([5, 0, 4])),
        r"lengths must lie in \[1, T\] = \[1, 5\]; got values from 0 to 5",
    ),
    "lengths-past-T": (
        "RNN-tanh",
        lambda a: a._replace(lengths=torch.tensor([6, 1, 4])),
        r"lengths must lie in \[1, T\] = \[1, 5\]; got values from 1 to 6",
    ),
}


@pytest.mark.parametrize("bad", BAD_FORWARD)
def test_fused_layer_checks_its_inputs(bad: str) -> None:
    case, change, message = BAD_FORWARD[bad]
    args = layer_inputs(SPECS[case], save=False)
    custom_ops.fused_layer(*args)  # the valid arguments run: the change is what fails
    with pytest.raises(RuntimeError, match=r"lstmlab::fused_layer: " + message):
        custom_ops.fused_layer(*change(args))


def _backward_inputs(case: str) -> schema.BackwardInputs:
    args = layer_inputs(SPECS[case])
    out = custom_ops.layer(args)
    return schema.BackwardInputs(
        dy=torch.ones_like(out.y), dh_n=torch.ones_like(out.h_n), dc_n=out.c_n, da_n=out.a_n,
        x=args.x, h0=args.h0, c0=args.c0, a0=args.a0, w_ih=args.w_ih, w_hh=args.w_hh, has_bias=True,
        w_ch=args.w_ch, w_gh=args.w_gh, w_hr=args.w_hr, lengths=args.lengths,
        hs=out.y, cs=out.cs, gates=out.gates, extra=out.extra, acts=out.acts, ms=out.ms,
        cell=args.cell, flags=args.flags, need_dx=True,
    )  # fmt: skip


BAD_BACKWARD: dict[str, tuple[str, Any, str]] = {
    "dy-shape": (
        "LSTM-vanilla",
        lambda a: a._replace(dy=a.dy[:-1]),
        r"dy must have shape \(T, B, P\) = \[5, 3, 6\] .*; got \[4, 3, 6\]",
    ),
    "gates-missing": (
        "GRU-after",
        lambda a: a._replace(gates=None),
        r"gates \(T, B, G\*H\) must be given for an LSTM or a GRU; got None",
    ),
    "extra-not-lstm": ("LSTM-vanilla", lambda a: a._replace(extra=a.cs), r"extra must be None except for a GRU"),
    "acts-shape": (
        "LSTM-FGR",
        lambda a: a._replace(acts=a.acts[:, :, :-1]),
        r"acts must have shape \(T, B, R\*H\) = \[5, 3, 18\]",
    ),
    "dc_n-dtype": ("LSTM-CIFG", lambda a: a._replace(dc_n=a.dc_n.float()), r"dc_n must have x's dtype Double; got Float"),
    "flag-count": ("RNN-tanh", lambda a: a._replace(flags=[]), r"the rnn cell takes 1 flags \(relu\); got 0"),
}


@pytest.mark.parametrize("bad", BAD_BACKWARD)
def test_fused_layer_backward_checks_its_inputs(bad: str) -> None:
    case, change, message = BAD_BACKWARD[bad]
    args = _backward_inputs(case)
    custom_ops.fused_layer_backward(*args)
    with pytest.raises(RuntimeError, match=r"lstmlab::fused_layer_backward: " + message):
        custom_ops.fused_layer_backward(*change(args))


def test_non_contiguous_inputs_give_the_same_results() -> None:
    args = layer_inputs(SPECS["LSTM-FGR"], lengths=True)
    want = custom_ops.layer(args)
    strided = args._replace(
        x=args.x.transpose(0, 1).contiguous().transpose(0, 1),
        w_hh=args.w_hh.t().contiguous().t(),
        lengths=torch.stack([args.lengths, args.lengths], 1)[:, 0],
    )
    assert not (strided.x.is_contiguous() or strided.w_hh.is_contiguous() or strided.lengths.is_contiguous())
    got = custom_ops.layer(strided)
    for a, b in zip(got, want, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


# -- empty batches and zero sizes --------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_empty_batch_matches_torch(case: str, num_layers: int) -> None:
    module = build(case, backend="fused", num_layers=num_layers, bidirectional=num_layers == 2)
    ours = run_with_grads(module, make_input(4, 0, 2, torch.float64), make_state(module, 0))
    theirs = run_with_grads(module.to_torch(), make_input(4, 0, 2, torch.float64), make_state(module, 0))
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key].shape == theirs[key].shape, key
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    assert ours["y"].shape == (4, 0, 2 * module.config.output_size if num_layers == 2 else module.config.output_size)
    assert ours["d_weight_ih_l0"].shape == module.weight_ih_l0.shape  # present, all zeros, as torch's


@pytest.mark.parametrize("case", ["LSTM-vanilla", "LSTM-FGR-proj", "GRU-before"])
def test_empty_batch_matches_eager_where_torch_lacks_the_cell(case: str) -> None:
    assert case in CASES
    module = build(case, backend="fused", num_layers=2)
    eager = build(case, backend="eager", num_layers=2)
    ours = run_with_grads(module, make_input(4, 0, 2, torch.float64), make_state(module, 0))
    theirs = run_with_grads(eager, make_input(4, 0, 2, torch.float64), make_state(module, 0))
    for key in theirs:
        assert ours[key].shape == theirs[key].shape, key
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)


def test_the_example_of_an_empty_batch() -> None:
    gru = lstmlab.GRU(3, 64, backend="fused")
    x = torch.randn(4, 0, 3, requires_grad=True)
    y, h = gru(x)
    assert y.shape == (4, 0, 64) and h.shape == (1, 0, 64)
    (y.sum() + h.sum()).backward()
    assert x.grad.shape == (4, 0, 3)
    assert gru.weight_hh_l0.grad.shape == (192, 64) and not gru.weight_hh_l0.grad.any()


@pytest.mark.parametrize("family", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_with_an_empty_batch_match_torch(family: str) -> None:
    torch.manual_seed(0)
    theirs = getattr(torch.nn, family)(3, 5, dtype=torch.float64)
    ours = getattr(lstmlab, family).from_torch(theirs, backend="fused")
    results = []
    for module in (ours, theirs):
        x = torch.randn(0, 3, dtype=torch.float64, requires_grad=True)
        h = torch.randn(0, 5, dtype=torch.float64, requires_grad=True)
        out = module(x, (h, torch.zeros(0, 5, dtype=torch.float64)) if family == "LSTMCell" else h)
        out = out if isinstance(out, tuple) else (out,)
        sum(o.sum() for o in out).backward()
        results.append([*out, x.grad, h.grad, *(p.grad for p in module.parameters())])
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", SPECS)
def test_hidden_size_zero_gives_empty_results_and_gradients(case: str, lengths: bool) -> None:
    args = layer_inputs(SPECS[case], H=0, lengths=lengths)
    out = custom_ops.layer(args)
    assert out.y.shape == (T, B, 0) and out.h_n.shape == (B, 0)
    assert (out.c_n is not None) == case.startswith("LSTM")
    if out.c_n is not None:
        assert out.c_n.shape == (B, 0)
    leaves = [t for t in args if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(out.y.sum() + out.h_n.sum(), leaves, allow_unused=True)
    dx = grads[0]
    assert dx.shape == (T, B, I) and not dx.any()  # y has no features: nothing depends on x
    for leaf, grad in zip(leaves, grads, strict=True):
        assert grad is None or grad.shape == leaf.shape


@pytest.mark.parametrize("case", SPECS)
def test_empty_batch_at_the_op(case: str) -> None:
    args = layer_inputs(SPECS[case], B=0, lengths=True)
    out = custom_ops.layer(args)
    assert out.y.shape == (T, 0, H) and out.h_n.shape == (0, H)
    assert out.gates is None or out.gates.shape[:2] == (T, 0)  # present though empty, when saved
    assert (out.gates is not None) == (not case.startswith("RNN"))
    torch.library.opcheck(custom_ops.fused_layer, tuple(args), test_utils=("test_schema", "test_faketensor"))
    leaves = [t for t in args if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(out.y.sum() + out.h_n.sum(), leaves, allow_unused=True)
    for leaf, grad in zip(leaves, grads, strict=True):
        assert grad is not None and grad.shape == leaf.shape and not grad.any()


@pytest.mark.parametrize("case", ["LSTM-FGR", "GRU-after", "RNN-tanh"])
def test_backward_fake_kernel_agrees_with_the_real_one(case: str) -> None:
    args = _backward_inputs(case)
    for need_dx in (True, False):
        inputs = tuple(args._replace(need_dx=need_dx))
        torch.library.opcheck(custom_ops.fused_layer_backward, inputs, test_utils=("test_schema", "test_faketensor"))


# -- autocast and double backward --------------------------------------------------


@pytest.mark.parametrize("family", ["LSTM", "GRU"])
def test_autocast_leaves_the_kernels_in_their_inputs_dtype(family: str) -> None:
    torch.manual_seed(0)
    flags = {"peephole": True} if family == "LSTM" else {}
    module = getattr(lstmlab, family)(8, 16, backend="fused", **flags)
    x = torch.randn(5, 3, 8)
    want, _ = module(x)
    want.sum().backward()
    want_grad = module.weight_hh_l0.grad.clone()
    module.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = module(x)
        got.sum().backward()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(module.weight_hh_l0.grad, want_grad, rtol=0, atol=0)


def test_double_backward_is_refused_with_the_fix() -> None:
    results = {}
    for backend in ("fused", "eager"):
        torch.manual_seed(0)
        module = lstmlab.LSTM(3, 4, backend=backend, dtype=torch.float64)
        x = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
        y, _ = module(x)
        (dx,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        if backend == "fused":
            with pytest.raises(RuntimeError, match=r"double backward \(gradients of gradients.*use backend=\"eager\""):
                dx.sum().backward()
        else:  # the fix the message names works
            dx.sum().backward()
            results[backend] = x.grad
    assert results["eager"].abs().sum() > 0
