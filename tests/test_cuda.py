"""On a CUDA device: the eager and native backends agree with the CPU reference.

Skipped where torch sees no CUDA device; run on a GPU machine with `pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import pytest
import torch

import lstmlab
import lstmlab.backends

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [
    (lstmlab.LSTM, {}),
    (lstmlab.LSTM, {"proj_size": 3}),
    (lstmlab.LSTM, {"variant": "vanilla"}),
    (lstmlab.LSTM, {"variant": "CIFG"}),
    (lstmlab.LSTM, {"variant": "FGR"}),
    (lstmlab.GRU, {}),
    (lstmlab.GRU, {"reset": "before"}),
    (lstmlab.RNN, {"nonlinearity": "relu"}),
]


def _outputs_and_grads(module: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y, _ = module(x)
    (y * dy).sum().backward()
    return [y.detach().cpu(), x.grad.cpu()] + [p.grad.cpu() for p in module.parameters()]


@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=[f"{c.__name__}-{k}" for c, k in CASES])
def test_cuda_backends_match_cpu_reference(cls: type, kwargs: dict) -> None:
    torch.manual_seed(0)
    cpu = cls(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64, backend="reference", **kwargs)
    with torch.no_grad():
        for name, p in cpu.named_parameters():
            if name.startswith("weight_ch"):
                p.uniform_(-0.5, 0.5)
    x = torch.randn(7, 4, 5, dtype=torch.float64)
    out_size = 2 * (kwargs.get("proj_size") or 6)
    dy = torch.randn(7, 4, out_size, dtype=torch.float64)
    expected = _outputs_and_grads(cpu, x, dy)
    backends = ["eager"] + (["native"] if lstmlab.backends.get("native").unsupported(cpu.config, x) is None else [])
    for backend in backends:
        gpu = cls(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64, backend=backend, device="cuda", **kwargs)
        gpu.load_state_dict(cpu.state_dict())
        assert gpu.active_backend == backend
        got = _outputs_and_grads(gpu, x.cuda(), dy.cuda())
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_auto_on_cuda_picks_a_backend_that_runs_there() -> None:
    assert lstmlab.LSTM(3, 4, device="cuda").active_backend == "native"
    peephole = lstmlab.LSTM(3, 4, variant="peephole", device="cuda")
    assert peephole.active_backend not in ("reference", "native")
    y, _ = peephole(torch.randn(5, 2, 3, device="cuda"))
    assert y.device.type == "cuda"


def test_auto_on_cuda_runs_triton_only_where_the_table_says(monkeypatch: pytest.MonkeyPatch) -> None:
    peephole = lstmlab.LSTM(3, 4, variant="peephole", device="cuda")
    monkeypatch.setattr(lstmlab.backends, "TRITON_OVER_BEST_CUDA", {})
    assert peephole.active_backend == "eager"  # nothing measured: never triton
    monkeypatch.setitem(lstmlab.backends.TRITON_OVER_BEST_CUDA, "peephole", {4: (0.5, 0.5)})
    triton_runs = lstmlab.backends.get("triton").unsupported(peephole.config, next(peephole.parameters())) is None
    assert peephole.active_backend == ("triton" if triton_runs else "eager")
    assert lstmlab.LSTM(3, 4, device="cuda").active_backend == "native"  # measured for the peephole LSTM only
