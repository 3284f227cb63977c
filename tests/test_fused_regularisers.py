"""The fused kernels' zoneout, recurrent dropout and layer normalisation (and weight dropout,
which reaches them as a changed weight_hh) against the reference backend's hand-written BPTT,
with the same masks; gradcheck of the op with masks and gains; float32 against float64."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmlab
from lstmlab.backends.base import StackConfig
from lstmlab.backends.fused import custom_ops, loader, schema
from lstmlab.backends.fused.backend import FusedBackend
from lstmlab.cells import GRUSpec, LSTMSpec

T, B, I, H = 5, 3, 4, 6  # noqa: E741 - the house names for sizes
LENGTHS = torch.tensor([5, 2, 4])

CASES = {
    "LSTM-NP": ("LSTM", {"variant": "NP"}),
    "LSTM-peephole": ("LSTM", {"variant": "peephole"}),
    "LSTM-CIFG": ("LSTM", {"variant": "CIFG"}),
    "LSTM-NOAF": ("LSTM", {"variant": "NOAF"}),
    "LSTM-NIG": ("LSTM", {"variant": "NIG"}),
    "LSTM-FGR": ("LSTM", {"variant": "FGR"}),
    "LSTM-peephole-proj": ("LSTM", {"variant": "peephole", "proj_size": 4}),
    "LSTM-FGR-proj": ("LSTM", {"variant": "FGR", "proj_size": 4}),
    "GRU-after": ("GRU", {"reset": "after"}),
    "GRU-before": ("GRU", {"reset": "before"}),
    "RNN-tanh": ("RNN", {"nonlinearity": "tanh"}),
    "RNN-relu": ("RNN", {"nonlinearity": "relu"}),
}

# StackConfig fields per setting (layer_norm: the cell's flag); the LSTM's zoneout differs
# between c and h, so a swap shows
REGULARISERS = {
    "zoneout": {"zoneout_h": 0.3, "zoneout_c": 0.5},
    "zoneout_h": {"zoneout_h": 0.4},
    "zoneout_c": {"zoneout_c": 0.4},
    "recurrent_dropout": {"recurrent_dropout": 0.4},
    "weight_dropout": {"weight_dropout": 0.3},
    "layer_norm": {"layer_norm": True},
    "all": {"zoneout_h": 0.3, "zoneout_c": 0.5, "recurrent_dropout": 0.4, "weight_dropout": 0.3, "layer_norm": True},
}
NORMALISED = [case for case in CASES if case.startswith("LSTM") or case == "GRU-after"]  # the cells with layer_norm


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    loader.load()


def build(case: str, backend: str, regularisers: dict[str, float], dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A 2-layer bidirectional stack of `case` with `regularisers` (StackConfig fields) set;
    layer_norm where the cell has it."""
    family, flags = CASES[case]
    regularisers = dict(regularisers)
    if regularisers.pop("layer_norm", False) and case in NORMALISED:
        flags = {**flags, "layer_norm": True}
    torch.manual_seed(0)
    module = getattr(lstmlab, family)(I, H, num_layers=2, bidirectional=True, backend=backend, dtype=dtype, **flags)
    with torch.no_grad():
        for name, p in module.named_parameters():  # peepholes, V, the gains start constant; make them count
            if "weight_ch" in name or "weight_gh" in name or "bias_ln" in name:
                p.uniform_(-0.6, 0.6)
            elif "weight_ln" in name:
                p.uniform_(0.5, 1.5)
    # set on the configuration: the RNN module has no regulariser arguments, its kernels do
    module.config = dataclasses.replace(module.config, **regularisers)
    return module


def run(module: torch.nn.Module, x: torch.Tensor, state: tuple, lengths: torch.Tensor | None) -> list[torch.Tensor]:
    """Outputs, final states and every gradient, with masks drawn from seed 5 and random upstream gradients."""
    for p in module.parameters():
        p.grad = None
    x = x.detach().requires_grad_(True)
    state = tuple(s.detach().requires_grad_(True) for s in state)
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    torch.manual_seed(5)  # the masks: the same draws for every backend
    y, final = module(inp, state if len(state) > 1 else state[0])
    if lengths is not None:
        y = pad_packed_sequence(y, total_length=x.shape[0])[0]
    final = final if isinstance(final, tuple) else (final,)
    torch.manual_seed(1)
    loss = (y * torch.randn_like(y)).sum() + sum((s * torch.randn_like(s)).sum() for s in final)
    loss.backward()
    return [y, *final, x.grad, *(s.grad for s in state), *(p.grad for p in module.parameters())]


def inputs(module: torch.nn.Module, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, tuple]:
    torch.manual_seed(2)
    D = module.config.num_directions * module.num_layers
    x = torch.randn(T, B, I, dtype=dtype)
    return x, tuple(torch.randn(D, B, size, dtype=dtype) * 0.5 for size in module.config.state_sizes)


# zoneout of h or of c alone: on a few LSTMs (the other cells' zoneout is h's only)
ONE_STATE_CASES = ("LSTM-CIFG", "LSTM-FGR", "LSTM-peephole-proj")
COMBINATIONS = [
    (case, regulariser)
    for case in CASES
    for regulariser in REGULARISERS
    if (regulariser not in ("zoneout_h", "zoneout_c") or case in ONE_STATE_CASES)
    and (regulariser != "layer_norm" or case in NORMALISED)
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("case", "regulariser"), COMBINATIONS, ids=[f"{c}-{r}" for c, r in COMBINATIONS])
def test_fused_equals_reference_with_regularisers(case: str, regulariser: str, training: bool) -> None:
    settings = REGULARISERS[regulariser]
    fused = build(case, "fused", settings).train(training)
    assert fused.active_backend == "fused"
    x, state = inputs(fused)
    got = run(fused, x, state, LENGTHS)
    reference = build(case, "reference", settings).train(training)
    reference.load_state_dict(fused.state_dict())
    want = run(reference, x, state, LENGTHS)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # the regulariser changes the result (eval: zoneout only), so the comparison is not idle
    acts = training or any(name.startswith("zoneout") or name == "layer_norm" for name in settings)
    if acts:
        plain = build(case, "fused", {}).train(training)
        assert not torch.allclose(run(plain, x, state, LENGTHS)[0], got[0])


def test_every_regulariser_runs_fused() -> None:
    x = torch.zeros(1, 1, 3)
    for spec in (LSTMSpec(layer_norm=True), GRUSpec(layer_norm=True), GRUSpec(reset="before")):
        config = StackConfig(spec, 3, 4, zoneout_h=0.1, recurrent_dropout=0.2, weight_dropout=0.3)
        assert FusedBackend().unsupported(config, x) is None


def test_layer_norm_with_reset_before_is_refused_by_the_kernel() -> None:
    args, _ = _op_inputs("GRU-after", torch.float64, training=True, layer_norm=True)
    args = args._replace(flags=[1])  # reset "before"
    with pytest.raises(RuntimeError, match=r"w_ln_ih \(layer normalisation\) must be None except for an LSTM or a GRU"):
        custom_ops.fused_layer(*args)


# -- the op itself -----------------------------------------------------------------


def _op_inputs(
    case: str, dtype: torch.dtype, *, training: bool, layer_norm: bool = False, seed: int = 3
) -> tuple[schema.ForwardInputs, list[int]]:
    """Tiny arguments of lstmlab::fused_layer for `case` (T=4, B=2, H=3, P=2 when it projects),
    lengths (4, 2), every regulariser's mask, the gains of layer normalisation if asked; and
    the positions of the tensors that need grad."""
    family, flags = CASES[case]
    spec = build(case, "reference", {}).config.spec
    cell, cell_flags = schema.encode(spec)
    T_, B_, I_, H_ = 4, 2, 3, 3
    P_ = 2 if "proj" in case else H_
    G = len(spec.gates)
    n_peep = len(getattr(spec, "peephole_gates", ()))
    n_rec = len(getattr(spec, "recurrent_gates", ()))
    lstm = family == "LSTM"
    g = torch.Generator().manual_seed(seed)
    t = lambda *shape, mean=0.0: (
        (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5 + mean).to(dtype).requires_grad_(True)
    )
    bern = lambda *shape, p: torch.bernoulli(torch.full(shape, p, dtype=torch.float64), generator=g).to(dtype)
    if training:
        zoneout_h, zoneout_c = bern(T_, B_, P_, p=0.4), bern(T_, B_, H_, p=0.5) if lstm else None
        recurrent = bern(B_, P_, p=0.7) / 0.7
    else:  # evaluation: d = z expanded, no dropout mask
        zoneout_h = torch.full((1, 1, 1), 0.4, dtype=dtype).expand(T_, B_, P_)
        zoneout_c = torch.full((1, 1, 1), 0.5, dtype=dtype).expand(T_, B_, H_) if lstm else None
        recurrent = None
    args = schema.ForwardInputs(
        x=t(T_, B_, I_), h0=t(B_, P_), c0=t(B_, H_) if lstm else None,
        w_ih=t(G * H_, I_), w_hh=t(G * H_, P_), b_ih=t(G * H_), b_hh=t(G * H_),
        w_ch=t(n_peep * H_) if n_peep else None,
        a0=t(B_, n_rec * H_) if n_rec else None, w_gh=t(n_rec * H_, n_rec * H_) if n_rec else None,
        w_hr=t(P_, H_) if P_ != H_ else None, lengths=torch.tensor([4, 2]),
        cell=int(cell), flags=list(cell_flags), save=True,
        recurrent_mask=recurrent, zoneout_h=zoneout_h, zoneout_c=zoneout_c,
        w_ln_ih=t(G * H_, mean=1.0) if layer_norm else None, w_ln_hh=t(G * H_, mean=1.0) if layer_norm else None,
        w_ln_c=t(H_, mean=1.0) if layer_norm and lstm else None, b_ln_c=t(H_) if layer_norm and lstm else None,
    )  # fmt: skip
    differentiable = [k for k, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    return args, differentiable


def _outputs(out: schema.ForwardResult) -> tuple[torch.Tensor, ...]:
    return tuple(t for t in (out.y, out.h_n, out.c_n, out.a_n) if t is not None)


def _layer_of(args: schema.ForwardInputs, positions: list[int]) -> object:
    def f(*present: torch.Tensor) -> tuple[torch.Tensor, ...]:
        full = list(args)
        for k, a in zip(positions, present, strict=True):
            full[k] = a
        return _outputs(custom_ops.layer(schema.ForwardInputs(*full)))

    return f


GRADCHECK_CASES = [
    ("LSTM-peephole", True), ("LSTM-CIFG", True), ("LSTM-NOAF", True), ("LSTM-FGR-proj", True), ("LSTM-NP", False),
    ("GRU-after", True), ("GRU-after", False), ("GRU-before", False), ("RNN-tanh", False),
]  # fmt: skip
# layer normalisation makes gradcheck slow (4-12 s a case here): two of them run by default
FAST_NORMALISED = {("LSTM-peephole", True), ("GRU-after", True)}


def _gradcheck_params() -> list:
    params = []
    for case, layer_norm in GRADCHECK_CASES:
        for training in (True, False):
            slow = layer_norm and (case, training) not in FAST_NORMALISED
            name = f"{case}{'-ln' * layer_norm}-{'train' if training else 'eval'}"
            params.append(pytest.param(case, layer_norm, training, id=name, marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize(("case", "layer_norm", "training"), _gradcheck_params())
def test_gradcheck_with_masks(case: str, layer_norm: bool, training: bool) -> None:
    args, positions = _op_inputs(case, torch.float64, training=training, layer_norm=layer_norm)
    assert torch.autograd.gradcheck(_layer_of(args, positions), [args[k] for k in positions])


@pytest.mark.parametrize("case", ["LSTM-peephole", "LSTM-FGR-proj", "GRU-after", "GRU-before", "RNN-relu"])
def test_float32_agrees_with_float64(case: str) -> None:
    results = {}
    for dtype in (torch.float32, torch.float64):
        args, positions = _op_inputs(case, dtype, training=True, layer_norm=case in NORMALISED)
        outs = _layer_of(args, positions)(*(args[k] for k in positions))
        torch.manual_seed(1)
        upstream = [torch.randn(o.shape, dtype=torch.float64).to(dtype) for o in outs]
        grads = torch.autograd.grad(outs, [args[k] for k in positions], upstream)
        results[dtype] = [*outs, *grads]
    for a, b in zip(results[torch.float32], results[torch.float64], strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["LSTM-peephole-proj", "GRU-after", "RNN-tanh"])
def test_expanded_zoneout_mask_equals_its_copy(case: str) -> None:
    """The evaluation form (one value, strides 0) is read without a copy: the same as the copy."""
    args, positions = _op_inputs(case, torch.float64, training=False)
    assert args.zoneout_h.stride() == (0, 0, 0)
    copied = args._replace(
        zoneout_h=args.zoneout_h.contiguous(), zoneout_c=None if args.zoneout_c is None else args.zoneout_c.contiguous()
    )
    results = []
    for a in (args, copied):
        outs = _layer_of(a, positions)(*(a[k] for k in positions))
        grads = torch.autograd.grad(outs, [a[k] for k in positions], [torch.ones_like(o) for o in outs])
        results.append([*outs, *grads])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
