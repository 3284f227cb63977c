"""Speed and memory of the backends against torch's own modules.

For each cell (by default rnn, lstm, peephole, cifg, gru; any name of
`lstmlab.models.CELLS`) and grid point (T, B, H; input size H),
the median time of a training step (forward + backward of y.sum()) and of inference
(no_grad forward), for the fused, native (where torch has the cell) and eager
backends, with torch's nn.LSTM at the same size as the yardstick. Repeats are
interleaved across backends so that load from other processes spreads evenly over
them, and ratios are taken within one run. Memory: the peak resident memory of one
training step at T=1000, B=32, H=256, each backend in a fresh process.

On CUDA (`device="cuda"`) the same loop times triton, native (cuDNN) and eager at
T=1024 (CUDA_GRID) in float32 and bfloat16, each against torch's module of the cell's
family (nn.LSTM, nn.GRU, nn.RNN), every time taken between two synchronisations; each
record also holds the peak CUDA memory of one training step. Eager, a Python loop of
small kernels, may be timed on the first steps of the sequence only, its times scaled
to the whole (`eager_steps`; the record says how many steps ran). `cuda_auto_table`
turns the records into `lstmlab.backends.TRITON_OVER_BEST_CUDA`.

Against ONNX Runtime (`run_ort`, when onnx and onnxruntime are installed): the
inference time of the fused backend and of ORT's `LSTM` operator computing the same
layer (`lstmlab.experiments.ort`: peepholes as its `P` input, CIFG as `input_forget=1`),
in one process, interleaved, ORT on torch's number of threads without spinning.

Pure measurement: returns records; printing and files are the CLI's business.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

from lstmlab import models
from lstmlab.cells import GRUSpec, LSTMSpec, torch_mode
from lstmlab.errors import LstmlabError

CELLS = ("rnn", "lstm", "peephole", "cifg", "gru")  # the default selection
GRID = ((100, 16, 64), (100, 32, 128), (100, 64, 256), (100, 128, 512))
QUICK_GRID = ((50, 16, 64), (50, 64, 256))
MEMORY_SIZE = (1000, 32, 256)
YARDSTICK = "nn.LSTM"

# the GPU measurement: the cells, sizes and dtypes of `lstmlab bench --device cuda`
CUDA_CELLS = ("lstm", "peephole", "cifg", "gru", "gru-before", "rnn")
CUDA_GRID = ((1024, 16, 256), (1024, 64, 512), (1024, 16, 768), (1024, 64, 1024))
CUDA_QUICK_GRID = ((64, 16, 256),)
CUDA_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
EAGER_STEPS = 256  # on CUDA, eager is timed on this many steps and scaled to T

# torch's modules, the yardsticks, and the cell each computes
TORCH_MODULES: dict[str, tuple[type[torch.nn.Module], str]] = {
    "nn.LSTM": (torch.nn.LSTM, "lstm"),
    "nn.GRU": (torch.nn.GRU, "gru"),
    "nn.RNN": (torch.nn.RNN, "rnn"),
}


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
class CudaTiming(Timing):
    """A timing on CUDA: backend "triton", "native", "eager" or torch's module
    ("nn.LSTM", "nn.GRU", "nn.RNN"); times in ms, NaN where `error` says why it failed."""

    dtype: str
    steps: int  # steps run; times are scaled by T / steps when fewer than T
    peak_mb: float  # peak CUDA memory of one training step (of `steps` steps) above model and input; NaN: not measured
    error: str | None = None


@dataclass
class OrtTiming:
    """Median inference ms of one LSTM layer on the fused backend and in onnxruntime."""

    cell: str
    T: int
    B: int
    H: int
    fused_ms: float
    ort_ms: float


@dataclass
class Memory:
    backend: str
    T: int
    B: int
    H: int
    peak_mb: float


def make_module(cell: str, size: int, backend: str, device: str = "cpu", dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The module for `cell` with input and hidden size `size` run by `backend` (or torch's
    module when `backend` names one, e.g. "nn.LSTM"), on `device` in `dtype`."""
    if backend in TORCH_MODULES:
        return TORCH_MODULES[backend][0](size, size, device=device, dtype=dtype)
    if device == "cpu" and dtype is None:
        return models.build_recurrent(cell, size, size, backend=backend)
    module = models.build_recurrent(cell, size, size, backend="eager").to(device=device, dtype=dtype)
    module.backend = backend  # checked against the parameters' device and dtype now
    return module


def _spec(cell: str) -> object:
    return models.build_recurrent(cell, 1, 1, backend="eager").config.spec


def backends_for(cell: str, device: str = "cpu") -> tuple[str, ...]:
    """Backends compared for `cell` (fused on the CPU, triton on CUDA): native only where torch has the cell."""
    first = "fused" if device == "cpu" else "triton"
    return (first, "native", "eager") if torch_mode(_spec(cell)) is not None else (first, "eager")


def yardstick(cell: str, device: str = "cpu") -> str:
    """torch's module `cell` is compared with: nn.LSTM for every cell on the CPU (as in
    benchmarks/RESULTS.md); on CUDA that of the cell's family (nn.LSTM, nn.GRU, nn.RNN)."""
    if device == "cpu":
        return YARDSTICK
    spec = _spec(cell)
    return "nn.LSTM" if isinstance(spec, LSTMSpec) else "nn.GRU" if isinstance(spec, GRUSpec) else "nn.RNN"


def _steps(module: torch.nn.Module, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    def train() -> None:
        module.zero_grad(set_to_none=True)
        y, _ = module(x)
        y.sum().backward()

    def infer() -> None:
        with torch.no_grad():
            module(x)

    return train, infer


def _time(fn: Callable[[], None], device: str = "cpu") -> float:
    # on CUDA the host waits for the device on both sides: kernels, launches and Python all count
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def _medians(
    steps: dict[str, tuple[Callable[[], None], Callable[[], None]]], repeats: int, device: str = "cpu"
) -> dict[str, tuple[float, float]]:
    """Median (train, infer) ms per name, the repeats interleaved across names."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in steps}
    for _ in range(repeats):
        for name, (train, infer) in steps.items():
            samples[name][0].append(_time(train, device))
            samples[name][1].append(_time(infer, device))
    return {name: (statistics.median(train), statistics.median(infer)) for name, (train, infer) in samples.items()}


def time_point(cell: str, T: int, B: int, H: int, repeats: int, names: tuple[str, ...], seed: int = 0) -> list[Timing]:
    """Median train and inference times at one grid point for each backend in `names`."""
    torch.manual_seed(seed)
    x = torch.randn(T, B, H)
    steps = {name: _steps(make_module(cell, H, name), x) for name in names}
    for train, infer in steps.values():  # warm up: first-call costs, allocator, extension load
        train()
        infer()
    medians = _medians(steps, repeats)
    return [Timing(cell, T, B, H, name, *medians[name]) for name in names]


ORT_CELLS = ("lstm", "peephole", "cifg")  # the cells ONNX's LSTM operator computes, of the default selection


def ort_cells(cells: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `cells` that one ONNX `LSTM` node computes (every gate, CIFG allowed, tanh)."""
    from lstmlab.experiments import ort

    out = []
    for cell in cells:
        try:
            ort.lstm_node_inputs(models.build_recurrent(cell, 1, 1, backend="eager"))
        except LstmlabError:
            continue
        out.append(cell)
    return tuple(out)


def time_ort_point(cell: str, T: int, B: int, H: int, repeats: int, seed: int = 0) -> OrtTiming:
    """Median inference ms of `cell` (input and hidden size H) on the fused backend and in
    onnxruntime's `LSTM` operator with the same weights, the repeats interleaved."""
    from lstmlab.experiments import ort

    torch.manual_seed(seed)
    x = torch.randn(T, B, H)
    x_np = x.numpy()
    module = make_module(cell, H, "fused")
    session = ort.session(module)

    def fused() -> None:
        with torch.no_grad():
            module(x)

    runs = {"fused": fused, "ort": lambda: ort.run(session, x_np)}
    for run in runs.values():  # warm up: first-call costs, the extension, ORT's allocator
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(_time(run))
    return OrtTiming(cell, T, B, H, statistics.median(samples["fused"]), statistics.median(samples["ort"]))


def run_ort(
    cells: tuple[str, ...] = ORT_CELLS, grid: tuple[tuple[int, int, int], ...] = GRID, repeats: int = 5
) -> Iterator[OrtTiming]:
    """`time_ort_point` for every cell of `cells` ONNX's LSTM computes, at every grid point."""
    for T, B, H in grid:
        for cell in ort_cells(cells):
            yield time_ort_point(cell, T, B, H, repeats)


def _cuda_peak_mb(module: torch.nn.Module, train: Callable[[], None]) -> float:
    """Peak CUDA memory of one training step above what is allocated before it, in MB."""
    module.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _failure(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def time_point_cuda(
    cell: str,
    T: int,
    B: int,
    H: int,
    repeats: int,
    names: tuple[str, ...],
    dtype: torch.dtype,
    steps: int | None = None,
    memory: bool = True,
    seed: int = 0,
    device: str = "cuda",
) -> list[CudaTiming]:
    """`time_point` on CUDA in `dtype`, with the peak memory of one training step per backend
    (`memory`). With `steps` < T only the first `steps` steps run and the times are scaled
    by T / steps. A backend that fails (a dtype it lacks, memory) gets a record with NaN
    times and the error, and the others go on. (`device`: "cpu" runs this loop on the CPU,
    triton under TRITON_INTERPRET=1, without memory: how tests check it without a GPU.)"""
    n = min(steps or T, T)
    dtype_name = str(dtype).removeprefix("torch.")
    torch.manual_seed(seed)
    x = torch.randn(n, B, H).to(device, dtype)
    failed: dict[str, str] = {}
    runs: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    peaks: dict[str, float] = {}
    for name in names:
        try:
            module = make_module(cell, H, name, device, dtype)
            train, infer = runs[name] = _steps(module, x)
            train()  # warm up: compilation, cuDNN plans, the allocator
            infer()
            peaks[name] = _cuda_peak_mb(module, train) if memory else math.nan
        except Exception as error:  # one backend's failure (bf16 unsupported, out of memory) must not end the whole measurement
            failed[name] = _failure(error)
            runs.pop(name, None)
            if device != "cpu":
                torch.cuda.empty_cache()
    try:
        medians = _medians(runs, repeats, device)
    except Exception as error:
        failed.update(dict.fromkeys(runs, _failure(error)))
        medians = {}
    scale = T / n
    out = []
    for name in names:
        if name in failed or name not in medians:
            out.append(CudaTiming(cell, T, B, H, name, math.nan, math.nan, dtype_name, n, math.nan, failed.get(name)))
        else:
            train_ms, infer_ms = medians[name]
            out.append(CudaTiming(cell, T, B, H, name, train_ms * scale, infer_ms * scale, dtype_name, n, peaks[name]))
    return out


def run_timings(
    cells: tuple[str, ...] = CELLS,
    grid: tuple[tuple[int, int, int], ...] = GRID,
    repeats: int = 5,
    eager_repeats: int | None = None,
    device: str = "cpu",
    dtypes: tuple[torch.dtype, ...] = (torch.float32,),
    eager_steps: int | None = None,
    memory: bool = True,
) -> Iterator[Timing]:
    """Yield the timings of every cell and grid point, torch's module (the yardstick) first.

    Eager is slow; it gets `eager_repeats` (default: repeats) in a separate round. On the
    CPU (float32 only) the yardstick is nn.LSTM and eager comes after the other backends.
    On CUDA, for each dtype: the yardsticks of the cells' families, then per cell eager
    first (so that each later row can be read against it), on its first `eager_steps`
    steps when given (see `time_point_cuda`).
    """
    for size in grid:
        for dtype in dtypes if device != "cpu" else (None,):
            for stick in dict.fromkeys(yardstick(cell, device) for cell in cells):
                yield from _point(device, dtype, memory, TORCH_MODULES[stick][1], size, (stick,), repeats)
            for cell in cells:
                names = backends_for(cell, device)
                rounds = [
                    (tuple(name for name in names if name != "eager"), repeats, None),
                    (("eager",) if "eager" in names else (), eager_repeats or repeats, eager_steps),
                ]
                for group, n, steps in rounds if device == "cpu" else rounds[::-1]:
                    if group:
                        yield from _point(device, dtype, memory, cell, size, group, n, steps)


def _point(
    device: str,
    dtype: torch.dtype | None,
    memory: bool,
    cell: str,
    size: tuple[int, int, int],
    names: tuple[str, ...],
    repeats: int,
    steps: int | None = None,
) -> list[Timing]:
    T, B, H = size
    if device == "cpu":
        return time_point(cell, T, B, H, repeats, names)
    assert dtype is not None
    return list(time_point_cuda(cell, T, B, H, repeats, names, dtype, steps, memory))


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


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the platform has none): how busy it was."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def as_json(timings: list[Timing], memory: list[Memory], ort: list[OrtTiming] | None = None) -> dict:
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": load_average(),  # at the end of the run
        "timings": [asdict(t) for t in timings],
        "memory": [asdict(m) for m in memory],
    }
    if ort is not None:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
        out["ort"] = [asdict(t) for t in ort]
    return out


def cuda_json(timings: list[CudaTiming], settings: dict) -> dict:
    """The records of a CUDA run with what it ran on; NaN (not measured, failed) as null."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:
        triton_version = None
    records = [{key: None if isinstance(v, float) and math.isnan(v) else v for key, v in asdict(t).items()} for t in timings]
    return {
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "triton": triton_version,
        **settings,
        "timings": records,
    }


def cuda_auto_table(records: list[dict]) -> dict[str, dict[int, tuple[float, float]]]:
    """`lstmlab.backends.TRITON_OVER_BEST_CUDA` from the "timings" of `cuda_json`: per cell
    and hidden size, (train, infer) time of triton over the fastest of the cell's other
    backends (native, eager), the worse over the dtypes measured. A point where triton
    failed in any dtype, or nothing else ran, is left out (so "auto" does not pick triton there)."""
    runs: dict[tuple, dict[str, dict]] = {}
    for record in records:
        if record["backend"] not in TORCH_MODULES:
            key = (record["cell"], record["T"], record["B"], record["H"], record["dtype"])
            runs.setdefault(key, {})[record["backend"]] = record
    ratios: dict[tuple[str, int], list[tuple[float, float] | None]] = {}
    for (cell, _, _, H, _), point in runs.items():
        triton = point.get("triton")
        rivals = [r for name, r in point.items() if name != "triton" and r["train_ms"] is not None]
        ratio = None
        if triton is not None and triton["train_ms"] is not None and rivals:
            ratio = (
                triton["train_ms"] / min(r["train_ms"] for r in rivals),
                triton["infer_ms"] / min(r["infer_ms"] for r in rivals),
            )
        ratios.setdefault((cell, H), []).append(ratio)
    table: dict[str, dict[int, tuple[float, float]]] = {}
    for (cell, H), found in sorted(ratios.items()):
        if all(r is not None for r in found):
            measured = [r for r in found if r is not None]
            worst = (max(r[0] for r in measured), max(r[1] for r in measured))
            table.setdefault(cell, {})[H] = (round(worst[0], 2), round(worst[1], 2))
    return table


# The targets for triton on CUDA: (train, infer) at most these times torch's module of the
# family; at least EAGER_SPEEDUP times faster than eager; peak memory at most torch's.
CUDA_TARGETS = {"nn.LSTM": (1.5, 1.3), "nn.GRU": (1.2, 1.2)}
EAGER_SPEEDUP = 10.0


def cuda_targets(timings: list[CudaTiming]) -> list[tuple[str, bool]]:
    """Each target of each triton record, as (what was measured against what, met)."""
    by_point = {(t.cell, t.T, t.B, t.H, t.dtype, t.backend): t for t in timings}
    checks = []
    for t in timings:
        if t.backend != "triton":
            continue
        where = f"{t.cell} {t.B}x{t.H} T={t.T} {t.dtype}"
        if t.error is not None:
            checks.append((f"{where}: triton failed ({t.error})", False))
            continue
        stick_name = yardstick(t.cell, "cuda")
        stick = by_point.get((TORCH_MODULES[stick_name][1], t.T, t.B, t.H, t.dtype, stick_name))
        eager = by_point.get((t.cell, t.T, t.B, t.H, t.dtype, "eager"))
        limits = CUDA_TARGETS.get(stick_name)
        if stick is not None and limits is not None:
            for what, ours, theirs, limit in (
                ("train", t.train_ms, stick.train_ms, limits[0]),
                ("infer", t.infer_ms, stick.infer_ms, limits[1]),
            ):
                ratio = ours / theirs
                checks.append((f"{where}: {what} {ratio:.2f}x {stick_name} (target <= {limit}x)", ratio <= limit))
        if eager is not None:
            for what, ours, theirs in (("train", t.train_ms, eager.train_ms), ("infer", t.infer_ms, eager.infer_ms)):
                speedup = theirs / ours
                checks.append(
                    (f"{where}: {what} {speedup:.1f}x faster than eager (target >= {EAGER_SPEEDUP:g}x)", speedup >= EAGER_SPEEDUP)
                )
        if stick is not None and not math.isnan(t.peak_mb) and not math.isnan(stick.peak_mb):
            ratio = t.peak_mb / stick.peak_mb
            checks.append((f"{where}: peak memory {ratio:.2f}x {stick_name} (target <= 1x)", ratio <= 1.0))
    return checks
