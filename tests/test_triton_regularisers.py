"""The triton backend's regularisers inside the recurrence (zoneout, recurrent dropout and
layer normalisation) against the eager backend, which runs the reference
unroll under autograd: outputs, final states and every gradient, with the same masks.

Each comparison draws its masks from torch's generator after the same `torch.manual_seed`
on both sides; in evaluation zoneout's masks are the expanded constant z (stride 0). On the
CPU the kernels run under Triton's interpreter (TRITON_INTERPRET=1, set per test); where
torch sees a CUDA device the same tests run there too, compiled. Without triton they skip,
naming the install command.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from helpers import INPUT_SIZE, assert_not_trivial, assert_same, make_input, make_state, randomize_, run_with_grads

import lstmlab
from lstmlab import backends
from lstmlab.backends.base import StackConfig
from lstmlab.backends.masks import draw_masks
from lstmlab.backends.triton import graphs
from lstmlab.backends.triton.backend import INSTALL, import_error
from lstmlab.cells import LayerWeights, LSTMSpec, RNNSpec

needs_triton = pytest.mark.skipif(import_error() is not None, reason=f"{import_error()} ({INSTALL})")

T, B, H = 3, 3, 3
LENGTHS = [2, 3, 1]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
BOTH = {"zoneout": (0.3, 0.5), "recurrent_dropout": 0.4}  # the LSTM's zoneout is (z_c, z_h)

# case -> (module class, constructor arguments, packed input with LENGTHS)
CASES: dict[str, tuple[type, dict[str, Any], bool]] = {
    "LSTM-zoneout": (lstmlab.LSTM, {"zoneout": (0.3, 0.5)}, False),
    "LSTM-recurrent_dropout": (lstmlab.LSTM, {"recurrent_dropout": 0.4}, True),
    "LSTM-peephole-both": (lstmlab.LSTM, {"variant": "peephole", **BOTH}, True),
    "LSTM-CIFG-both-2layers-bidirectional": (
        lstmlab.LSTM,
        {"variant": "CIFG", "num_layers": 2, "bidirectional": True, **BOTH},
        True,
    ),
    "LSTM-FGR-proj-zoneout_h-recurrent_dropout": (
        lstmlab.LSTM,
        {"variant": "FGR", "proj_size": 2, "zoneout": (0.0, 0.5), "recurrent_dropout": 0.4},
        True,
    ),
    "LSTM-layer_norm": (lstmlab.LSTM, {"layer_norm": True}, False),
    "LSTM-NOAF-nobias-layer_norm-zoneout_c": (
        lstmlab.LSTM,
        {"variant": "NOAF", "bias": False, "layer_norm": True, "zoneout": (0.5, 0.0)},
        True,
    ),
    "LSTM-FGR-proj-layer_norm-both": (lstmlab.LSTM, {"variant": "FGR", "proj_size": 2, "layer_norm": True, **BOTH}, True),
    "GRU-after-both": (lstmlab.GRU, {"zoneout": 0.4, "recurrent_dropout": 0.4}, True),
    "GRU-before-both-bidirectional": (
        lstmlab.GRU,
        {"reset": "before", "bidirectional": True, "zoneout": 0.4, "recurrent_dropout": 0.4},
        True,
    ),
    "GRU-layer_norm": (lstmlab.GRU, {"layer_norm": True}, False),
    "GRU-layer_norm-both-2layers-bidirectional": (
        lstmlab.GRU,
        {"layer_norm": True, "num_layers": 2, "bidirectional": True, "zoneout": 0.4, "recurrent_dropout": 0.4},
        True,
    ),
}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The device under test: the CPU under Triton's interpreter, or CUDA compiled."""
    if request.param == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return request.param


def pair(cls: type, kwargs: dict[str, Any], device: str, training: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same module (random weights, float32) on the eager and the triton backend, both on
    `device`: the masks come from that device's generator, so the same seed draws the same
    masks on one device (not across devices, as for torch's dropout)."""
    eager = randomize_(cls(INPUT_SIZE, H, **kwargs, backend="eager", dtype=torch.float32)).to(device)
    triton = cls(INPUT_SIZE, H, **kwargs, backend="triton", dtype=torch.float32, device=device)
    triton.load_state_dict(eager.state_dict())
    return eager.train(training), triton.train(training)


def seeded(module: torch.nn.Module, x: torch.Tensor, lengths: list[int] | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """run_with_grads from a random initial state after torch.manual_seed(seed): the masks the
    forward draws depend on the seed alone."""
    state = tuple(s.to(x.device, torch.float32) for s in make_state(module, B))
    torch.manual_seed(seed)
    out = run_with_grads(module, x, state, lengths)
    return {key: value.cpu() for key, value in out.items()}


@needs_triton
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", CASES)
def test_matches_eager(case: str, mode: str, device: str) -> None:
    cls, kwargs, packed = CASES[case]
    eager, triton = pair(cls, kwargs, device, mode == "train")
    assert triton.active_backend == "triton"
    x = make_input(T, B, INPUT_SIZE, torch.float32).to(device)
    lengths = LENGTHS if packed else None
    expected = seeded(eager, x, lengths)
    assert_not_trivial(expected)
    assert_same(seeded(triton, x, lengths), expected, atol=1e-5, rtol=1e-5)

    # the regularisers that act change the numbers (the comparison above could fail), and the seed picks the masks
    acting = ("zoneout", "recurrent_dropout") if mode == "train" else ("zoneout",)  # no dropout at evaluation
    plain_kwargs = {k: v for k, v in kwargs.items() if k not in acting}
    if plain_kwargs != kwargs:
        plain = cls(INPUT_SIZE, H, **plain_kwargs, backend="eager", dtype=torch.float32, device=device).train(mode == "train")
        plain.load_state_dict(eager.state_dict())
        assert not torch.allclose(seeded(plain, x, lengths)["y"], expected["y"])
    if mode == "train" and plain_kwargs != kwargs:
        assert not torch.allclose(seeded(eager, x, lengths, seed=1)["y"], expected["y"])


def run_backend(
    name: str,
    config: StackConfig,
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    hx: tuple[torch.Tensor, ...],
    weights: list[LayerWeights],
    masks: list,
    training: bool,
) -> dict[str, torch.Tensor]:
    """Backend.run on leaves of x, hx and weights; y, the final state and the gradients of a random loss."""
    x = x.detach().clone().requires_grad_(True)
    hx = tuple(h.detach().clone().requires_grad_(True) for h in hx)
    weights = [LayerWeights(*(None if t is None else t.detach().clone().requires_grad_(True) for t in w)) for w in weights]
    y, final = backends.get(name).run(config, x, lengths, hx, weights, training, masks)
    generator = torch.Generator().manual_seed(5)
    outputs = (y, *final)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=torch.float64).to(o.device, o.dtype)).sum() for o in outputs)
    leaves = [x, *hx, *(t for w in weights for t in w if t is not None)]
    grads = torch.autograd.grad(loss, leaves)
    out = {f"out{k}": o.detach() for k, o in enumerate(outputs)}
    return out | {f"grad{k}": g for k, g in enumerate(grads)}


def cast(value: Any, dtype: torch.dtype, device: str) -> Any:
    """Tensors in value (nested tuples, lists, named tuples, None) on device, the floating ones as dtype."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(cast(v, dtype, device) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(cast(v, dtype, device) for v in value)
    return value


def backend_inputs(config: StackConfig, training: bool, seed: int = 0) -> tuple:
    """float64 x, hx, weights and masks for `config` at (T, B)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * 0.8

    G = len(config.spec.gates)
    D = config.num_directions
    weights = []
    for layer in range(config.num_layers):
        size = config.input_size if layer == 0 else D * H
        weights += [LayerWeights(rand(G * H, size), rand(G * H, H), rand(G * H), rand(G * H)) for _ in range(D)]
    hx = (rand(config.num_layers * D, B, H),)
    torch.manual_seed(seed)
    masks = draw_masks(config, T, B, weights[0].w_ih, training)
    return make_input(T, B, config.input_size, torch.float64), hx, weights, masks


@needs_triton
@pytest.mark.parametrize(
    "nonlinearity, zoneout, dropout, training, bidirectional",
    [
        ("tanh", 0.4, 0.0, True, False),
        ("relu", 0.0, 0.4, True, False),
        ("tanh", 0.4, 0.4, True, True),
        ("tanh", 0.4, 0.4, False, True),
    ],
)
def test_rnn_matches_eager(
    nonlinearity: str, zoneout: float, dropout: float, training: bool, bidirectional: bool, device: str
) -> None:
    """The RNN module has no regularisers; its kernels have, and are checked at the backend."""
    config = StackConfig(
        RNNSpec(nonlinearity), INPUT_SIZE, H, bidirectional=bidirectional, zoneout_h=zoneout, recurrent_dropout=dropout
    )
    assert backends.get("triton").unsupported(config, torch.zeros(1, device=device)) is None
    x, hx, weights, masks = backend_inputs(config, training)
    assert masks is not None
    lengths = torch.tensor(LENGTHS) if bidirectional else None
    expected = run_backend("eager", config, *cast((x, lengths, hx, weights, masks), torch.float32, "cpu"), training)
    actual = run_backend("triton", config, *cast((x, lengths, hx, weights, masks), torch.float32, device), training)
    assert_same({k: v.cpu() for k, v in actual.items()}, expected, atol=1e-5, rtol=1e-5)
    plain = run_backend("eager", config, *cast((x, lengths, hx, weights, None), torch.float32, "cpu"), training)
    assert not torch.allclose(plain["out0"], expected["out0"])


@needs_triton
@pytest.mark.parametrize("case", ["LSTM-FGR-proj-layer_norm-both", "GRU-layer_norm-both-2layers-bidirectional"])
def test_float16_matches_eager_float64(case: str, device: str) -> None:
    """float16 on triton (float32 inside the kernels) against float64 on eager, the same masks."""
    cls, kwargs, packed = CASES[case]
    eager = randomize_(cls(INPUT_SIZE, H, **kwargs, backend="eager", dtype=torch.float64))
    config = eager.config
    assert backends.get("triton").unsupported(config, torch.zeros(1, device=device, dtype=torch.float16)) is None
    weights = [LayerWeights(*(None if t is None else t.detach() for t in w)) for w in eager.layer_weights()]
    state_sizes = config.state_sizes
    generator = torch.Generator().manual_seed(4)
    L = config.num_layers * config.num_directions
    hx = tuple(torch.randn(L, B, size, generator=generator, dtype=torch.float64) for size in state_sizes)
    torch.manual_seed(0)
    masks = draw_masks(config, T, B, weights[0].w_ih, training=True)
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    lengths = torch.tensor(LENGTHS) if packed else None
    expected = run_backend("eager", config, x, lengths, hx, weights, masks, True)
    actual = run_backend("triton", config, *cast((x, lengths, hx, weights, masks), torch.float16, device), True)
    assert_same({k: v.cpu() for k, v in actual.items()}, expected, atol=1e-2, rtol=1e-2)


@needs_triton
def test_what_runs_and_what_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    triton, cpu = backends.get("triton"), torch.zeros(1)
    for cls, kwargs in [
        (lstmlab.LSTM, {"variant": "FGR", "proj_size": 2, **BOTH, "weight_dropout": 0.2}),
        (lstmlab.LSTM, {"variant": "CIFG", "layer_norm": True, **BOTH}),
        (lstmlab.GRU, {"layer_norm": True, "zoneout": 0.1, "recurrent_dropout": 0.2}),
        (lstmlab.GRU, {"reset": "before", "zoneout": 0.1}),
    ]:
        assert triton.unsupported(cls(2, 3, **kwargs, backend="eager").config, cpu) is None
    # what the backend refuses is the dtype, as without regularisers
    config = lstmlab.LSTM(2, 3, layer_norm=True, zoneout=0.1, backend="eager").config
    assert "got torch.float64" in triton.unsupported(config, cpu.double())


GRAPH_CASES = ["LSTM-peephole-both", "GRU-before-both-bidirectional"]


def replay_calls(cls: type, kwargs: dict[str, Any], device: str) -> None:
    """Four calls with new inputs and masks (three in training, then evaluation's constants),
    each as eager gives with the same masks: a replay never computes with stale masks."""
    for call, mode in enumerate(["train", "train", "train", "eval"]):
        eager, triton = pair(cls, kwargs, device, mode == "train")
        x = make_input(T, B, INPUT_SIZE, torch.float32).to(device) * (1 + call)
        expected = seeded(eager, x, LENGTHS, seed=call)
        assert_same(seeded(triton, x, LENGTHS, seed=call), expected, atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("case", GRAPH_CASES)
def test_loops_through_emulated_recordings(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The regularised loops through the CUDA-graph recording (emulated on the CPU: see
    test_triton_graphs): the masks are among the recorded loop's inputs."""
    from test_triton_graphs import EmulatedCapture

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    capture = EmulatedCapture()
    recorded = graphs.LoopGraphs(capture)
    monkeypatch.setattr(graphs, "graphs_for", lambda device: recorded)
    cls, kwargs, _ = CASES[case]
    replay_calls(cls, kwargs, "cpu")
    assert capture.captures > 0 and capture.replays > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_triton
@pytest.mark.parametrize("case", [*GRAPH_CASES, "LSTM-FGR-proj-layer_norm-both", "GRU-layer_norm-both-2layers-bidirectional"])
def test_cuda_graphs_replay_with_new_masks(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    graphs._GRAPHS.clear()
    cls, kwargs, _ = CASES[case]
    replay_calls(cls, kwargs, "cuda")
    assert len(graphs._GRAPHS[torch.device("cuda", torch.cuda.current_device())]) > 0


@needs_triton
@pytest.mark.parametrize("case", ["LSTM-FGR-proj-layer_norm-both", "GRU-before-both-bidirectional"])
def test_inference_gives_the_forward_with_grad(case: str, device: str) -> None:
    """Without grad the loops keep no tape (one step's scratch buffers): the same numbers."""
    cls, kwargs, _ = CASES[case]
    _, triton = pair(cls, kwargs, device, training=True)
    x = make_input(T, B, INPUT_SIZE, torch.float32).to(device)
    torch.manual_seed(0)
    with torch.no_grad():
        y_infer, final_infer = triton(x)
    torch.manual_seed(0)
    y_train, final_train = triton(x.requires_grad_())
    assert y_train.requires_grad and not y_infer.requires_grad
    torch.testing.assert_close(y_infer, y_train, atol=0, rtol=0)
    final_infer = (final_infer,) if isinstance(final_infer, torch.Tensor) else final_infer
    final_train = (final_train,) if isinstance(final_train, torch.Tensor) else final_train
    for a, b in zip(final_infer, final_train, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_auto_on_cuda_runs_triton_for_regularisers_native_cannot_run() -> None:
    """torch's LSTM on CUDA: native (cuDNN) without regularisers; with zoneout, recurrent
    dropout or layer normalisation, which native cannot run, triton before eager."""
    table = {"lstm": {64: (2.0, 2.0)}}  # triton measured slower than cuDNN here
    plain = StackConfig(LSTMSpec(), 2, 64)
    assert backends.auto_order(plain, "cuda", table) == ("native", "eager")
    assert backends.auto_order(replace(plain, weight_dropout=0.2), "cuda", table) == ("native", "eager")  # native runs it
    for config in (
        replace(plain, zoneout_h=0.1),
        replace(plain, recurrent_dropout=0.1),
        replace(plain, spec=LSTMSpec(layer_norm=True)),
    ):
        assert backends.auto_order(config, "cuda", table)[0] == "triton"
        assert backends.get("native").unsupported(config, torch.zeros(1)) is not None
