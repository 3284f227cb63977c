"""The fused CPU backend against the reference and eager backends, gradcheck, torch.compile,
inference mode and the fallbacks when the kernels cannot be built."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmlab
from lstmlab import backends
from lstmlab.backends.fused import custom_ops, loader, schema

T, B, I, H = 5, 3, 4, 6  # noqa: E741 - the house names for sizes
LENGTHS = torch.tensor([5, 2, 4])

CASES = {
    **{f"LSTM-{v}": ("LSTM", {"variant": v}) for v in ("NP", "vanilla", "NIG", "NFG", "NOG", "NIAF", "NOAF", "CIFG")},
    "LSTM-CIFG-noaf": ("LSTM", {"coupled": True, "output_activation": "identity"}),
    "LSTM-FGR": ("LSTM", {"variant": "FGR"}),
    "LSTM-FGR-CIFG-NOG": ("LSTM", {"gate_recurrence": True, "coupled": True, "output_gate": False}),
    "GRU-after": ("GRU", {"reset": "after"}),
    "GRU-before": ("GRU", {"reset": "before"}),
    "RNN-tanh": ("RNN", {"nonlinearity": "tanh"}),
    "RNN-relu": ("RNN", {"nonlinearity": "relu"}),
}


@pytest.fixture(scope="session", autouse=True)
def extension() -> None:
    """Build (or load from the cache) the extension once per session."""
    loader.load()


def build(case: str, backend: str, dtype: torch.dtype = torch.float64, **kwargs: object) -> torch.nn.Module:
    family, flags = CASES[case]
    torch.manual_seed(0)
    module = getattr(lstmlab, family)(I, H, backend=backend, dtype=dtype, **flags, **kwargs)
    with torch.no_grad():
        for name, p in module.named_parameters():  # peepholes start at zero; make them count
            p.uniform_(-0.6, 0.6) if "weight_ch" in name or "weight_gh" in name else None
    return module


def run(module: torch.nn.Module, x: torch.Tensor, state: tuple, lengths: torch.Tensor | None) -> list[torch.Tensor]:
    """Outputs, final states and every gradient (input, initial state, parameters)."""
    for p in module.parameters():
        p.grad = None
    x = x.detach().requires_grad_(True)
    state = tuple(s.detach().requires_grad_(True) for s in state)
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    y, final = module(inp, state if len(state) > 1 else state[0])
    if lengths is not None:
        y = pad_packed_sequence(y, total_length=x.shape[0])[0]
    final = final if isinstance(final, tuple) else (final,)
    torch.manual_seed(1)  # random upstream gradients
    loss = (y * torch.randn_like(y)).sum() + sum((s * torch.randn_like(s)).sum() for s in final)
    loss.backward()
    return [y, *final, x.grad, *(s.grad for s in state), *(p.grad for p in module.parameters())]


def inputs(module: torch.nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, tuple]:
    torch.manual_seed(2)
    D = module.config.num_directions * module.num_layers
    x = torch.randn(T, B, I, dtype=dtype)
    state = tuple(torch.randn(D, B, size, dtype=dtype) * 0.5 for size in module.config.state_sizes)
    return x, state


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("case", CASES)
def test_fused_equals_reference_and_eager(case: str, bidirectional: bool, padded: bool) -> None:
    fused = build(case, "fused", num_layers=2, bidirectional=bidirectional)
    assert fused.active_backend == "fused"
    x, state = inputs(fused, torch.float64)
    lengths = LENGTHS if padded else None
    got = run(fused, x, state, lengths)
    for other in ("reference", "eager"):
        module = build(case, other, num_layers=2, bidirectional=bidirectional)
        module.load_state_dict(fused.state_dict())
        want = run(module, x, state, lengths)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    if padded:  # the padding changes the result: the axis is not idle
        full = run(fused, x, state, None)
        assert not torch.allclose(full[0], got[0])


@pytest.mark.parametrize("case", ["LSTM-NP", "LSTM-vanilla", "LSTM-CIFG", "LSTM-FGR", "GRU-after", "GRU-before", "RNN-tanh"])
def test_fused_float32_matches_eager(case: str) -> None:
    fused = build(case, "fused", dtype=torch.float32, batch_first=True)
    eager = build(case, "eager", dtype=torch.float32, batch_first=True)
    eager.load_state_dict(fused.state_dict())
    x, state = inputs(fused, torch.float32)
    x = x.transpose(0, 1).contiguous().transpose(0, 1)  # batch_first input, non-contiguous once time-major
    for a, b in zip(run(fused, x.transpose(0, 1), state, None), run(eager, x.transpose(0, 1), state, None), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["LSTM-vanilla", "LSTM-FGR", "GRU-after", "GRU-before", "RNN-tanh"])
def test_products_large_enough_to_thread_match_eager(case: str) -> None:
    """Small per-step products run serially in BLAS, large ones threaded: at B=64, H=128
    every per-step product is past the threshold, so this covers the other path."""
    family, flags = CASES[case]
    modules = {}
    for backend in ("fused", "eager"):
        torch.manual_seed(0)
        modules[backend] = getattr(lstmlab, family)(8, 128, backend=backend, dtype=torch.float64, **flags)
    torch.manual_seed(2)
    x = torch.randn(3, 64, 8, dtype=torch.float64)
    state = tuple(torch.randn(1, 64, size, dtype=torch.float64) for size in modules["fused"].config.state_sizes)
    got, want = (run(modules[b], x, state, None) for b in ("fused", "eager"))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", ["LSTM-vanilla", "LSTM-CIFG", "LSTM-NOAF", "LSTM-FGR", "GRU-after", "GRU-before", "RNN-tanh"])
def test_gradcheck(case: str, padded: bool) -> None:
    family, flags = CASES[case]
    spec = build(case, "fused").config.spec
    cell, cell_flags = schema.encode(spec)
    G = len(spec.gates)
    torch.manual_seed(3)
    t = lambda *shape: (torch.randn(*shape, dtype=torch.float64) * 0.5).requires_grad_(True)
    n_peep = len(getattr(spec, "peephole_gates", ()))
    tensors = [t(4, 2, 3), t(2, 3), t(2, 3) if family == "LSTM" else None, t(G * 3, 3), t(G * 3, 3), t(G * 3), t(G * 3)]
    tensors.append(t(n_peep * 3) if n_peep else None)
    n_rec = len(getattr(spec, "recurrent_gates", ()))  # FGR: a0 and w_gh
    tensors += [t(2, n_rec * 3), t(n_rec * 3, n_rec * 3)] if n_rec else [None, None]
    tensors.append(None)  # no projection: test_projection_gradcheck
    lengths = torch.tensor([4, 2]) if padded else None
    outputs = ["y", "h_n", "c_n"] if family == "LSTM" else ["y", "h_n"]
    _gradcheck_fused_layer(tensors, lengths, cell, cell_flags, outputs + (["a_n"] if n_rec else []))


def _gradcheck_fused_layer(
    tensors: list[torch.Tensor | None],
    lengths: torch.Tensor | None,
    cell: schema.Cell,
    flags: schema.Flags,
    outputs: list[str],
) -> None:
    """torch.autograd.gradcheck of the named `outputs` of the fused layer in each tensor given (None: an absent argument)."""
    positions = [k for k, a in enumerate(tensors) if a is not None]

    def f(*present: torch.Tensor) -> tuple[torch.Tensor, ...]:
        full = list(tensors)
        for k, a in zip(positions, present, strict=True):
            full[k] = a
        out = custom_ops.layer(schema.ForwardInputs(*full, lengths, cell, list(flags), True))
        return tuple(getattr(out, name) for name in outputs)

    assert torch.autograd.gradcheck(f, [tensors[k] for k in positions])


def test_inference_saves_nothing() -> None:
    fused = build("LSTM-vanilla", "fused")
    x, state = inputs(fused, torch.float64)
    with torch.no_grad():
        y_nograd, _ = fused(x, state)
    w = fused.layer_weights()[0]
    cell, flags = schema.encode(fused.config.spec)
    for save in (True, False):
        args = schema.ForwardInputs(
            x, state[0][0], state[1][0], w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_ch, None, None, None, None,
            cell, list(flags), save,
        )  # fmt: skip
        out = custom_ops.layer(args)
        saved = [out.hs, out.cs, out.gates, out.extra, out.acts, out.ms]
        assert [t is not None for t in saved] == [False, save, save, False, False, False]
        assert all(t.numel() == 0 for t in custom_ops.fused_layer(*args)[3:]) == (not save)
    y, _ = fused(x, state)
    torch.testing.assert_close(y_nograd, y, rtol=1e-12, atol=1e-12)  # the LSTM's inference has its own path
    assert y.requires_grad and not y_nograd.requires_grad


@pytest.fixture
def two_threads(monkeypatch: pytest.MonkeyPatch) -> object:
    """Two torch threads, so that the LSTM's inference splits its work across threads, with
    that inference path on (as by default; LSTMLAB_FUSED_INFERENCE=0 turns it off)."""
    monkeypatch.delenv("LSTMLAB_FUSED_INFERENCE", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# (size, batch, steps) of the LSTM's inference path: split across two threads by units, 136
# of them in slices of 80 and 56 (one not a multiple of the vector width), or by rows, 37 in
# blocks of 18 and 19 (weights small enough for each thread to keep them all); one row of a
# few steps (matrix-vector products; 4 x 37 gate rows, 37 inputs: tails of rows and lanes)
SPLITS = {"units": (136, 64, 8), "rows": (48, 37, 8), "one-row": (37, 1, 5)}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_inference_equals_training_forward(case: str, dtype: torch.dtype, split: str, two_threads: object) -> None:
    """The no-grad forward (for the LSTM its own path: units or rows split across threads,
    weights packed, one pass per row storing h and c only; or one row's matrix-vector
    products) against the forward that saves for backward, with and without padding."""
    family, flags = CASES[case]
    torch.manual_seed(0)
    size, batch, steps = SPLITS[split]
    module = getattr(lstmlab, family)(size, size, backend="fused", dtype=dtype, **flags)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.2, 0.2)
    x = torch.randn(steps, batch, size, dtype=dtype)  # the path runs from 8 steps and 8 rows, or 1 row
    state = tuple(torch.randn(1, batch, n, dtype=dtype) * 0.5 for n in module.config.state_sizes)
    lengths = torch.randint(1, steps + 1, (batch,)) if batch > 1 else torch.tensor([steps - 2])
    state = state if len(state) > 1 else state[0]
    for padded in (False, True):
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if padded else x
        with torch.no_grad():
            inferred = module(inp, state)
        trained = module(inp, state)  # the parameters require grad: this forward saves for backward
        for a, b in zip(torch.utils._pytree.tree_leaves(inferred), torch.utils._pytree.tree_leaves(trained), strict=True):
            assert b.requires_grad or not a.is_floating_point()
            torch.testing.assert_close(a, b.detach())


STACK_EXTRAS = {"plain": {}, "layer-norm": {"layer_norm": True}, "projection": {"proj_size": 3}}


@pytest.mark.parametrize("extra", STACK_EXTRAS)
@pytest.mark.parametrize("case", CASES)
def test_inference_of_a_stack_is_one_call_and_equals_the_training_forward(
    case: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three layers without gradients, at T = 1 and 5: one call of the extension's `infer`
    (never the op layer by layer), the same numbers as the forward that saves for backward;
    a bidirectional stack still goes layer by layer."""
    family, _ = CASES[case]
    kwargs = STACK_EXTRAS[extra]
    if kwargs and family != "LSTM" and not (case == "GRU-after" and "layer_norm" in kwargs):
        pytest.skip(f"{case} has no {', '.join(kwargs)}")
    module = build(case, "fused", num_layers=3, **kwargs)
    layers = []
    original = custom_ops.layer
    monkeypatch.setattr(custom_ops, "layer", lambda args: layers.append(1) or original(args))
    for steps in (1, T):
        x = torch.randn(steps, B, I, dtype=torch.float64)
        state = tuple(torch.randn(3, B, n, dtype=torch.float64) for n in module.config.state_sizes)
        hx = state if len(state) > 1 else state[0]
        with torch.no_grad():
            inferred = module(x, hx)
        assert not layers
        trained = module(x, hx)
        assert len(layers) == 3
        layers.clear()
        for a, b in zip(torch.utils._pytree.tree_leaves(inferred), torch.utils._pytree.tree_leaves(trained), strict=True):
            torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
    both_ways = build(case, "fused", num_layers=2, bidirectional=True)
    with torch.no_grad():
        both_ways(torch.randn(T, B, I, dtype=torch.float64))
    assert len(layers) == 4


# (I, H, B), T = 8 and B >= 8 for the packed inference path (T = 3 for one row): the split across threads, by
# units and by rows (tiles of 6 + 6 + 6 and 5 + 5 + 5 + 4 rows); a last panel of 4 gate rows
# (4 x 33 = 132) and 13 rows (5 + 4 + 4); an input wider than a pass of 512 (passes of 512
# and 88 of it, one of the state); nothing but tails; one row of 3 steps (matrix-vector
# products, 180 gate rows: tails of rows and lanes)
INFERENCE_SHAPES = {
    "136-136-64": (136, 136, 64),
    "60-64-37": (60, 64, 37),
    "5-33-13": (5, 33, 13),
    "600-20-9": (600, 20, 9),
    "3-3-8": (3, 3, 8),
    "37-45-1": (37, 45, 1),
}


@pytest.mark.parametrize("shape", INFERENCE_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_inference_equals_torch_lstm(dtype: torch.dtype, shape: str, two_threads: object) -> None:
    """The standard cell's no-grad forward on the fused backend against torch's nn.LSTM, at
    shapes that leave partial tiles in every direction of the inference path's products."""
    n_in, hidden, batch = INFERENCE_SHAPES[shape]
    torch.manual_seed(0)
    ours = lstmlab.LSTM(n_in, hidden, backend="fused", dtype=dtype)
    theirs = torch.nn.LSTM(n_in, hidden, dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    steps = 3 if batch == 1 else 8
    sizes = ((steps, batch, n_in), (1, batch, hidden), (1, batch, hidden))
    x, h0, c0 = (torch.randn(size, dtype=dtype) for size in sizes)
    with torch.no_grad():
        got, want = ours(x, (h0, c0)), theirs(x, (h0, c0))
    for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("batch", [16, 1], ids=["packed", "one-row"])
def test_inference_keeps_nan_and_saturates_as_torch(batch: int) -> None:
    """The float activations clamp their argument: a NaN must still come out as NaN (in its
    row only) and huge pre-activations saturate, as in torch's nn.LSTM."""
    torch.manual_seed(0)
    ours = lstmlab.LSTM(16, 40, backend="fused")
    theirs = torch.nn.LSTM(16, 40)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(8, batch, 16)
    x[2, 0, 3] = float("nan")
    big = torch.randn(8, batch, 16) * 1e6  # gates far beyond the clamp
    with torch.no_grad():
        got, want = ours(x)[0], theirs(x)[0]
        assert torch.equal(torch.isnan(got), torch.isnan(want)) and bool(torch.isnan(got[2:, 0]).all())
        torch.testing.assert_close(ours(big)[0], theirs(big)[0])


class _Stack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = build("LSTM-vanilla", "fused", dtype=torch.float32, num_layers=2, bidirectional=True)
        self.gru = lstmlab.GRU(2 * H, H, reset="before", backend="fused")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        z, h = self.gru(y)
        return z.sum() + h.sum()


# inductor's own import of torch.jit warns; that is torch's business, not ours
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_fullgraph() -> None:
    torch._dynamo.reset()
    model = _Stack()
    x = torch.randn(T, B, I)
    want = model(x)
    want.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    got = torch.compile(model, fullgraph=True)(x)
    got.backward()
    torch.testing.assert_close(got, want)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_fake_kernels_agree_with_real_ones() -> None:
    projected = [build(case, "fused", dtype=torch.float32, proj_size=2) for case in ("LSTM-NP", "LSTM-FGR")]
    for module in [build(case, "fused", dtype=torch.float32) for case in CASES] + projected:
        cell, flags = schema.encode(module.config.spec)
        w = module.layer_weights()[0]
        x, state = inputs(module, torch.float32)
        for save in (False, True):
            for lengths in (None, LENGTHS):
                c0 = state[1][0] if cell == schema.Cell.LSTM else None
                a0 = state[2][0] if len(state) > 2 else None
                args = (x, state[0][0], c0, *w[:4], w.w_ch, a0, w.w_gh, w.w_hr, lengths, cell, list(flags), save)
                torch.library.opcheck(custom_ops.fused_layer, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", ["LSTM-NP", "LSTM-vanilla", "LSTM-CIFG-noaf", "LSTM-FGR"])
def test_projection_equals_reference_and_eager(case: str, padded: bool) -> None:
    fused = build(case, "fused", num_layers=2, bidirectional=True, proj_size=4)
    assert fused.active_backend == "fused"
    x, state = inputs(fused, torch.float64)
    lengths = LENGTHS if padded else None
    got = run(fused, x, state, lengths)
    assert got[0].shape[-1] == 2 * 4
    for other in ("reference", "eager"):
        module = build(case, other, num_layers=2, bidirectional=True, proj_size=4)
        module.load_state_dict(fused.state_dict())
        for a, b in zip(got, run(module, x, state, lengths), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", ["LSTM-vanilla", "LSTM-FGR"])
def test_projection_gradcheck(case: str, padded: bool) -> None:
    spec = build(case, "fused").config.spec
    cell, cell_flags = schema.encode(spec)
    G, n_peep, n_rec = len(spec.gates), len(spec.peephole_gates), len(spec.recurrent_gates)
    torch.manual_seed(4)
    t = lambda *shape: (torch.randn(*shape, dtype=torch.float64) * 0.5).requires_grad_(True)
    Hc, P = 3, 2  # cell size, projection size
    tensors = [t(4, 2, 3), t(2, P), t(2, Hc), t(G * Hc, 3), t(G * Hc, P), t(G * Hc), t(G * Hc), t(n_peep * Hc)]
    tensors += [t(2, n_rec * Hc), t(n_rec * Hc, n_rec * Hc)] if n_rec else [None, None]
    tensors.append(t(P, Hc))
    lengths = torch.tensor([4, 2]) if padded else None
    _gradcheck_fused_layer(tensors, lengths, cell, cell_flags, ["y", "h_n", "c_n"] + (["a_n"] if n_rec else []))


def test_auto_prefers_fused_for_cells_torch_lacks() -> None:
    for case in ("LSTM-vanilla", "LSTM-CIFG", "LSTM-FGR", "GRU-before"):
        assert build(case, "auto", dtype=torch.float32).active_backend == "fused"
    assert build("LSTM-vanilla", "auto", dtype=torch.float32, proj_size=2).active_backend == "fused"
    assert build("LSTM-NP", "auto", dtype=torch.float32, proj_size=2).active_backend == "fused"  # measured faster
    assert build("LSTM-NP", "auto", dtype=torch.float32).active_backend == "native"


def test_auto_order_follows_measurements(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build("GRU-after", "auto").config
    monkeypatch.setitem(backends.FUSED_OVER_NATIVE, "gru", {64: (2.0, 1.0), 512: (0.5, 0.5)})
    assert backends.auto_order(config)[0] == "native"  # H=6 is nearest 64
    monkeypatch.setitem(backends.FUSED_OVER_NATIVE, "gru", {4: (0.5, 1.5), 512: (2.0, 2.0)})
    assert backends.auto_order(config)[0] == "fused"


def test_without_a_compiler_auto_warns_once_and_fused_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler() -> None:
        raise OSError("g++: command not found")

    monkeypatch.setattr(loader, "_compile", no_compiler)
    monkeypatch.setattr(backends, "_warned", set())
    loader.reset()
    try:
        module = build("LSTM-vanilla", "auto", dtype=torch.float32)
        x = torch.randn(T, B, I)
        with pytest.warns(RuntimeWarning, match=r"without the fused backend: .*could not be compiled .*g\+\+: command not found"):
            assert module.active_backend == "eager"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            module(x)  # warned once already
        with pytest.raises(ValueError, match=r"backend='fused' cannot run this configuration: .*could not be compiled"):
            module.backend = "fused"
    finally:
        monkeypatch.undo()
        loader.reset()
        loader.load()


def test_build_key_covers_every_source_and_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "csrc"
    shutil.copytree(loader.CSRC, copy)
    monkeypatch.setattr(loader, "CSRC", copy)
    assert [path.name for path in loader.sources()] == [
        "bindings.cpp",
        "checks.cpp",
        "gru.cpp",
        "lstm.cpp",
        "lstm_inference.cpp",
        "products.cpp",
        "rnn.cpp",
    ]
    assert len(loader.headers()) >= 5
    key = loader.build_key()
    for path in loader.sources() + loader.headers():
        original = path.read_bytes()
        path.write_bytes(original + b"// changed\n")
        assert loader.build_key() != key, path.name
        path.write_bytes(original)
    assert loader.build_key() == key
