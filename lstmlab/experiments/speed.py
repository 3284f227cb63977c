"""Speed and memory of the backends against torch's own modules.

For each cell (by default rnn, lstm, peephole, cifg, gru; any name of
`lstmlab.models.CELLS`) and grid point (T, B, H; input size H),
the median time of a training step (forward + backward of y.sum()) and of inference
(no_grad forward), for the fused, native (where torch has the cell) and eager
backends, with torch's nn.LSTM at the same size as the yardstick. Repeats are
interleaved across backends so that load from other processes spreads evenly over
them, and ratios are taken within one run. Memory: the peak resident memory of one
training step at T=1000, B=32, H=256, each backend in a fresh process.

Pure measurement: returns records; printing and files are the CLI's business.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

from lstmlab import models
from lstmlab.cells import torch_mode

CELLS = ("rnn", "lstm", "peephole", "cifg", "gru")  # the default selection
GRID = ((100, 16, 64), (100, 32, 128), (100, 64, 256), (100, 128, 512))
QUICK_GRID = ((50, 16, 64), (50, 64, 256))
MEMORY_SIZE = (1000, 32, 256)
YARDSTICK = "nn.LSTM"


@dataclass
class Timing:
    cell: str
    T: int
    B: int
    H: int
    backend: str  # "fused", "native", "eager", or "nn.LSTM" for the yardstick
    train_ms: float
    infer_ms: float


@dataclass
class Memory:
    backend: str
    T: int
    B: int
    H: int
    peak_mb: float


def make_module(cell: str, size: int, backend: str) -> torch.nn.Module:
    """The module for `cell` with input and hidden size `size` run by `backend`."""
    if backend == YARDSTICK:
        return torch.nn.LSTM(size, size)
    return models.build_recurrent(cell, size, size, backend=backend)


def backends_for(cell: str) -> tuple[str, ...]:
    """Backends compared for `cell`: native only where torch has the cell."""
    has_torch_cell = torch_mode(models.build_recurrent(cell, 1, 1).config.spec) is not None
    return ("fused", "native", "eager") if has_torch_cell else ("fused", "eager")


def _steps(module: torch.nn.Module, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    def train() -> None:
        module.zero_grad(set_to_none=True)
        y, _ = module(x)
        y.sum().backward()

    def infer() -> None:
        with torch.no_grad():
            module(x)

    return train, infer


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def time_point(cell: str, T: int, B: int, H: int, repeats: int, names: tuple[str, ...], seed: int = 0) -> list[Timing]:
    """Median train and inference times at one grid point for each backend in `names`."""
    torch.manual_seed(seed)
    x = torch.randn(T, B, H)
    steps = {name: _steps(make_module(cell, H, name), x) for name in names}
    for train, infer in steps.values():  # warm up: first-call costs, allocator, extension load
        train()
        infer()
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for _ in range(repeats):
        for name, (train, infer) in steps.items():
            samples[name][0].append(_time(train))
            samples[name][1].append(_time(infer))
    return [
        Timing(cell, T, B, H, name, statistics.median(samples[name][0]), statistics.median(samples[name][1])) for name in names
    ]


def run_timings(
    cells: tuple[str, ...] = CELLS,
    grid: tuple[tuple[int, int, int], ...] = GRID,
    repeats: int = 5,
    eager_repeats: int | None = None,
) -> Iterator[Timing]:
    """Yield the timings of every cell and grid point, the nn.LSTM yardstick first.

    Eager is slow; it gets `eager_repeats` (default: repeats) in a separate round.
    """
    for T, B, H in grid:
        yield from time_point("lstm", T, B, H, repeats, (YARDSTICK,))
        for cell in cells:
            names = backends_for(cell)
            fast = tuple(name for name in names if name != "eager")
            yield from time_point(cell, T, B, H, repeats, fast)
            if "eager" in names:
                yield from time_point(cell, T, B, H, eager_repeats or repeats, ("eager",))


def _peak_child(backend: str, T: int, B: int, H: int) -> None:
    """In a fresh process: one training step of a peephole LSTM (nn.LSTM for the yardstick);
    prints the peak resident memory above what model and input hold, in MB."""
    torch.manual_seed(0)
    cell = "peephole" if backend != YARDSTICK else "lstm"
    module = make_module(cell, H, backend)
    x = torch.randn(T, B, H)
    with torch.no_grad():  # load the extension and touch the code paths without training memory
        module(x[:2])
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * resource.getpagesize()
    y, _ = module(x)
    y.sum().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_mb": (peak - before) / 2**20}))


def run_memory(backends: tuple[str, ...] = ("fused", YARDSTICK), size: tuple[int, int, int] = MEMORY_SIZE) -> list[Memory]:
    """Peak training-step memory per backend, each measured in its own process."""
    out = []
    for backend in backends:
        code = f"from lstmlab.experiments.speed import _peak_child; _peak_child({backend!r}, {size[0]}, {size[1]}, {size[2]})"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        peak = json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]
        out.append(Memory(backend, *size, peak))
    return out


def as_json(timings: list[Timing], memory: list[Memory]) -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "timings": [asdict(t) for t in timings],
        "memory": [asdict(m) for m in memory],
    }
