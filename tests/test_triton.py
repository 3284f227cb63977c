"""The triton backend against the NumPy reference: every cell and flag of the core
(helpers.CASES), outputs, final states and every gradient, float32 (tight) and float16
(loose), plain and packed (padded) input, one layer and two bidirectional layers.

On the CPU the kernels run under Triton's interpreter: each test sets TRITON_INTERPRET=1
for itself (the backend reads it at each call). Where torch sees a CUDA device the same
tests run there too, compiled. Without triton they skip, naming the install command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    CASES,
    INPUT_SIZE,
    assert_not_trivial,
    assert_same,
    build,
    make_input,
    make_state,
    run_with_grads,
    with_backend,
)
from torch.nn.utils.rnn import pack_padded_sequence

import lstmlab
from lstmlab import backends
from lstmlab.backends.base import StackConfig
from lstmlab.backends.masks import draw_masks
from lstmlab.backends.triton.backend import import_error
from lstmlab.cells import LayerWeights, RNNSpec

needs_triton = pytest.mark.skipif(import_error() is not None, reason=str(import_error()))

T, B = 3, 3
LENGTHS = [2, 3, 1]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

# layout -> (constructor arguments, packed input with LENGTHS, dtype); the interpreter
# takes tens of milliseconds per kernel launch, so float16 runs on one layer only
LAYOUTS: dict[str, tuple[dict, bool, torch.dtype]] = {
    "time-major-f32": ({}, False, torch.float32),
    "packed-batch_first-bidirectional-2layers-f32": (
        {"num_layers": 2, "bidirectional": True, "batch_first": True},
        True,
        torch.float32,
    ),
    "packed-batch_first-f16": ({"batch_first": True}, True, torch.float16),
}

# dtype -> absolute and relative tolerance against the float64 reference
TOLERANCES = {torch.float32: 1e-5, torch.float16: 1e-2}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The device under test: the CPU under Triton's interpreter, or CUDA compiled."""
    if request.param == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return request.param


@needs_triton
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES)
def test_matches_reference(case: str, layout: str, device: str) -> None:
    kwargs, packed, dtype = LAYOUTS[layout]
    reference = build(case, backend="reference", **kwargs)
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    if reference.batch_first:
        x = x.transpose(0, 1)  # (B, T, I), not contiguous
    state = make_state(reference, B)
    lengths = LENGTHS if packed else None
    expected = run_with_grads(reference, x, state, lengths)
    assert_not_trivial(expected)

    module = with_backend(reference, "triton", x.to(device, dtype))
    assert module.active_backend == "triton"
    actual = run_with_grads(module, x.to(device, dtype), tuple(s.to(device, dtype) for s in state), lengths)
    assert actual["y"].dtype == dtype and actual["y"].device.type == device
    tolerance = TOLERANCES[dtype]
    assert_same({key: value.cpu() for key, value in actual.items()}, expected, atol=tolerance, rtol=tolerance)


@needs_triton
@pytest.mark.parametrize("case", ["LSTM-FGR-proj", "LSTM-CIFG", "GRU-after", "GRU-before", "RNN-relu"])
def test_inference_gives_the_training_forward(case: str, device: str) -> None:
    """Without grad the loops keep no tape (one step's scratch buffers): same numbers."""
    module = with_backend(build(case, num_layers=2, bidirectional=True), "triton", torch.zeros(1, device=device))
    x = make_input(T, B, INPUT_SIZE, torch.float32).to(device)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    with torch.no_grad():
        y_infer, final_infer = module(packed)
    y_train, final_train = module(pack_padded_sequence(x.requires_grad_(), torch.tensor(LENGTHS), enforce_sorted=False))
    assert y_train.data.requires_grad and not y_infer.data.requires_grad
    torch.testing.assert_close(y_infer.data, y_train.data, atol=0, rtol=0)
    final_infer = (final_infer,) if isinstance(final_infer, torch.Tensor) else final_infer
    final_train = (final_train,) if isinstance(final_train, torch.Tensor) else final_train
    for a, b in zip(final_infer, final_train, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@needs_triton
def test_backward_is_the_hand_written_function(device: str) -> None:
    module = with_backend(build("LSTM-vanilla"), "triton", torch.zeros(1, device=device))
    y, _ = module(make_input(T, B, INPUT_SIZE, torch.float32).to(device).requires_grad_())
    assert type(y.grad_fn).__name__ == "_TritonLayerBackward"  # not autograd through per-step ops


@needs_triton
def test_refusals_name_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    config, triton = build("LSTM-NP").config, backends.get("triton")
    cpu = torch.zeros(1)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "set TRITON_INTERPRET=1" in triton.unsupported(config, cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # read at the call, not at import
    assert triton.unsupported(config, cpu) is None
    assert triton.unsupported(config, cpu.half()) is None
    assert "float32, float16 or bfloat16; got torch.float64" in triton.unsupported(config, cpu.double())
    assert "#4972" in triton.unsupported(config, cpu.bfloat16())  # the interpreter's bfloat16 is broken upstream
    with pytest.raises(ValueError, match=r"backend='triton' cannot run this configuration: .*got torch.float64"):
        build("GRU-before", backend="triton")


@needs_triton
def test_kernels_compile_for_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled path, checked without a GPU: each kernel as the interpreter launched
    it for every cell (float16, padded), compiled for sm_90 with bfloat16 for float16.
    Triton's compiler and ptxas need no device; its front end refuses what the
    interpreter lets pass (a non-constexpr global, a call of a non-jit function)."""
    launches = _record_launches(monkeypatch)
    for case in CASES:
        module = with_backend(build(case), "triton", torch.zeros(1, dtype=torch.float16))
        run_with_grads(module, make_input(2, 2, INPUT_SIZE, torch.float16), None, [2, 1])
    assert {name for name, _, _ in launches} == {
        kernel.fn.__name__ for family in ("lstm", "gru", "rnn") for kernel in _kernels_of(family)
    }
    _compile_for_sm90(launches)


@needs_triton
def test_regularised_kernels_compile_for_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, for the kernels' forms with zoneout (a mask per unit in training, a constant
    at evaluation), recurrent dropout and the LSTM's layer normalisation (one program per row)."""
    launches = _record_launches(monkeypatch)
    like = torch.zeros(1, dtype=torch.float16)
    x = make_input(2, 2, INPUT_SIZE, torch.float16)
    both = {"zoneout": 0.3, "recurrent_dropout": 0.3}
    for cls, kwargs in [
        (lstmlab.LSTM, {"variant": "FGR", **both}),
        (lstmlab.LSTM, {"variant": "CIFG", "proj_size": 2, **both}),
        (lstmlab.LSTM, {"variant": "peephole", "layer_norm": True, **both}),
        (lstmlab.GRU, {"layer_norm": True, **both}),
        (lstmlab.GRU, {"reset": "before", **both}),
    ]:
        for training in (True, False):
            module = cls(INPUT_SIZE, 3, **kwargs, backend="triton", dtype=torch.float16).train(training)
            run_with_grads(module, x, None, [2, 1])
    for training in (True, False):  # the RNN module has no regularisers; its kernels have
        config = StackConfig(RNNSpec(), INPUT_SIZE, 3, zoneout_h=0.3, recurrent_dropout=0.3)
        module = lstmlab.RNN(INPUT_SIZE, 3, dtype=torch.float16)
        weights = [LayerWeights(*(None if t is None else t.detach().requires_grad_() for t in w)) for w in module.layer_weights()]
        masks = draw_masks(config, 2, 2, like, training)
        y, _ = backends.get("triton").run(config, x, torch.tensor([2, 1]), (x.new_zeros(1, 2, 3),), weights, training, masks)
        y.sum().backward()
    zoned = {(name, dict(constexprs)["ZH"]) for name, _, constexprs in launches if dict(constexprs).get("ZH")}
    assert {zone for _, zone in zoned} == {1, 2}  # both forms of zoneout, in each kernel that has it
    assert len(zoned) == 2 * len({name for name, _ in zoned})
    assert any(dict(constexprs).get("RD") for _, _, constexprs in launches)
    assert any(dict(constexprs).get("LN") for _, _, constexprs in launches)
    regularised = {key: k for key, k in launches.items() if any(dict(key[2]).get(f) for f in ("ZH", "ZC", "RD", "LN"))}
    _compile_for_sm90(regularised)  # the other forms are the test above's


def _record_launches(monkeypatch: pytest.MonkeyPatch) -> dict[tuple, Any]:
    """From now on (under the interpreter), every kernel launch as (name, argument types,
    constexprs) -> Kernel, in the dictionary returned."""
    from lstmlab.backends.triton.launch import Kernel

    launches: dict[tuple, Kernel] = {}
    launcher = Kernel.__getitem__

    def record(kernel: Kernel, grid: tuple[int, ...]) -> Any:
        run = launcher(kernel, grid)

        def launch(*args: Any, **constexprs: Any) -> Any:
            types = tuple(f"*{_TRITON_TYPES[a.dtype]}" if isinstance(a, torch.Tensor) else "i32" for a in args)
            launches[(kernel.fn.__name__, types, tuple(sorted(constexprs.items())))] = kernel
            return run(*args, **constexprs)

        return launch

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(Kernel, "__getitem__", record)
    return launches


def _compile_for_sm90(launches: dict[tuple, Any]) -> None:
    """Compile each recorded launch's kernel for sm_90, as Triton would for the same arguments."""
    from triton import compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", 90, 32)
    for (_, types, constexprs), kernel in launches.items():
        jit = kernel.form(interpret=False)
        given = iter(types)
        signature = {name: "constexpr" if name in dict(constexprs) else next(given) for name in jit.arg_names}
        compile(ASTSource(jit, signature, dict(constexprs)), target=target)


def _kernels_of(family: str) -> list:
    """The Kernel objects defined in lstmlab.backends.triton.<family>_kernels."""
    import importlib

    from lstmlab.backends.triton.launch import Kernel

    module = importlib.import_module(f"lstmlab.backends.triton.{family}_kernels")
    return [value for value in vars(module).values() if isinstance(value, Kernel)]


# torch dtype -> Triton pointer element type as compiled: float16 buffers stand for bfloat16 too
_TRITON_TYPES = {torch.float32: "fp32", torch.float16: "bf16", torch.int32: "i32"}


def test_auto_never_picks_triton_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for case in CASES:  # "auto" tries only these, in this order
        assert "triton" not in backends.auto_order(build(case, dtype=torch.float32).config)


def test_lstmlab_runs_without_triton() -> None:
    """With triton absent lstmlab imports and runs, and backend="triton" says how to install it."""
    code = (
        "import sys\n"
        "sys.modules['triton'] = None  # `import triton` now fails as when it is not installed\n"
        "import torch, lstmlab\n"
        "lstmlab.LSTM(2, 3, variant='CIFG', backend='eager', dtype=torch.float32)(torch.randn(4, 1, 2))\n"
        "try:\n"
        "    lstmlab.GRU(2, 3, backend='triton', dtype=torch.float32)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(lstmlab.__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert "GRU: backend='triton' cannot run this configuration: triton cannot be imported" in run.stdout
    assert "pip install 'triton>=3.0'" in run.stdout
