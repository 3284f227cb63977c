"""`lstmlab bench`: speed of every cell on every backend against torch's nn.LSTM, and memory;
with `--device cuda`, the GPU measurement (triton, cuDNN, eager against nn.LSTM/GRU/RNN)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from lstmlab.experiments.speed import CELLS, CUDA_CELLS, EAGER_STEPS

    parser = subparsers.add_parser(
        "bench",
        help="time the backends against torch's nn.LSTM and measure training memory",
        description="For each cell and size (T, B, H; input size H): median milliseconds of a training step "
        "(forward + backward) and of inference, for the fused, native and eager backends, with ratios to "
        "torch's nn.LSTM at the same size; then the peak memory of one training step at T=1000, B=32, H=256; then, "
        "when onnx and onnxruntime are installed, the inference of the LSTM, peephole and CIFG cells on the fused backend "
        "against ONNX Runtime's LSTM operator (peepholes as its P input, CIFG as input_forget=1) on as many threads.",
    )
    parser.add_argument("--json-out", metavar="FILE", default=None, help="also write the numbers to FILE as JSON")
    # the old spelling, kept working; `--json` prints to stdout in train, compare and demo, so it is not shown
    parser.add_argument("--json", dest="json_out", metavar="FILE", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="two small sizes at T=50 and 3 repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default: 7, quick: 3)")
    parser.add_argument("--eager-repeats", type=int, default=None, help="repeats for the slow eager backend (default: 3)")
    parser.add_argument(
        "--cells",
        default=None,
        help=f"comma-separated cells to time, any of `lstmlab train --cell` (default: {','.join(CELLS)}; "
        f"with --device cuda: {','.join(CUDA_CELLS)})",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--ort-only",
        action="store_true",
        help="only the comparison with ONNX Runtime (no backend table, no memory)",
    )
    parser.add_argument(
        "--no-ort",
        action="store_true",
        help="skip the inference comparison with ONNX Runtime's LSTM operator (run when onnx and onnxruntime are installed)",
    )
    parser.add_argument(
        "--step",
        action="store_true",
        help="instead of the sequence grid: the latency of one step (B=1, H=256, no_grad, one thread) of "
        "LSTMCell, peephole LSTMCell, GRUCell, RNNCell and 2-layer LSTM/GRU at T=1 against torch's, and the "
        "characters per second of `lstmlab sample` for a 2 x 256 LSTM (--quick: H=32, fewer repeats)",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="with --step: time this thread's CPU time instead of elapsed time (steadier on a machine other jobs "
        "share, blind to waits)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own setting)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: time triton, native (cuDNN) and eager against torch's nn.LSTM/GRU/RNN of the cell's family at "
        "T=1024, B x H = 16x256, 64x512, 16x768, 64x1024 (--quick: T=64, 16x256), with the peak CUDA memory of one "
        "training step per backend (default: cpu)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "both"),
        default=None,
        help="with --device cuda: the dtypes to time (default: both); the CPU bench times float32",
    )
    parser.add_argument(
        "--eager-steps",
        type=int,
        default=None,
        help=f"with --device cuda: time eager on the first N steps only and scale its times to T (default: {EAGER_STEPS}; "
        "N >= T: every step)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lstmlab import models
    from lstmlab.cli._training import set_threads
    from lstmlab.errors import InvalidArgument
    from lstmlab.experiments import speed

    if args.device == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "torch.cuda.is_available() is False"
        raise InvalidArgument("bench", "--device", f"=cuda needs a CUDA device; torch {torch.__version__} sees none ({why})")
    if args.device == "cpu":
        for flag, value in (("--dtype", args.dtype if args.dtype != "float32" else None), ("--eager-steps", args.eager_steps)):
            if value is not None:
                raise InvalidArgument(
                    "bench", flag, f"applies with --device cuda only (the CPU bench times float32); got {value}"
                )
    default_cells = speed.CELLS if args.device == "cpu" else speed.CUDA_CELLS
    cells_arg = ",".join(default_cells) if args.cells is None else args.cells
    cells = tuple(c.strip().lower() for c in cells_arg.split(",") if c.strip())
    unknown = [c for c in cells if c not in models.CELLS]
    if unknown or not cells:
        got = ", ".join(unknown) or repr(cells_arg)
        raise InvalidArgument("bench", "--cells", f"must be among {', '.join(models.CELLS)}; got {got}")
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    eager_repeats = args.eager_repeats if args.eager_repeats is not None else min(repeats, 3)
    for flag, value in (("--repeats", repeats), ("--eager-repeats", eager_repeats)):
        if value < 1:
            raise InvalidArgument("bench", flag, f"must be positive; got {value}")
    if args.json_out is not None and Path(args.json_out).is_dir():  # found before the bench, not after it
        raise InvalidArgument("bench", "--json-out", f"must name a file, not a directory; got {args.json_out!r}")
    if args.step and (args.ort_only or args.no_ort):
        flag = "--ort-only" if args.ort_only else "--no-ort"
        raise InvalidArgument("bench", flag, "does not apply with --step (it times no ONNX Runtime)")
    if args.cpu_time and not args.step:
        raise InvalidArgument("bench", "--cpu-time", "applies with --step only")
    if args.step:
        if args.device != "cpu":
            raise InvalidArgument("bench", "--step", f"times the CPU (one thread); got --device {args.device}")
        return _run_step(args, repeats)
    if args.threads is not None:
        set_threads("bench", args.threads)
    if args.device == "cuda":
        if args.ort_only:
            raise InvalidArgument("bench", "--ort-only", "applies to the CPU bench only; got --device cuda")
        return _run_cuda(args, cuda_settings(args, cells, repeats))
    grid = speed.QUICK_GRID if args.quick else speed.GRID
    busy = busy_warning()
    if busy:
        print(busy, file=sys.stderr, flush=True)
    if args.ort_only and args.no_ort:
        raise InvalidArgument("bench", "--ort-only", "and --no-ort exclude each other; got both")
    if args.ort_only:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        ort_timings = _run_ort(cells, grid, repeats)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(speed.as_json([], [], ort_timings), indent=1) + "\n")
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeats} repeats; ms")
    header = f"{'cell':<10} {'T':>4} {'B x H':>9}  {'backend':<8} {'train':>9} {'/nn.LSTM':>8} {'infer':>9} {'/nn.LSTM':>8}"
    print(header)
    print("-" * len(header))
    timings, yardstick = [], None
    for t in speed.run_timings(cells, grid, repeats, eager_repeats):
        timings.append(t)
        if t.backend == speed.YARDSTICK:
            yardstick = t
        assert yardstick is not None and (yardstick.T, yardstick.B, yardstick.H) == (t.T, t.B, t.H)
        cell = "-" if t.backend == speed.YARDSTICK else t.cell
        print(
            f"{cell:<10} {t.T:>4} {f'{t.B}x{t.H}':>9}  {t.backend:<8} {t.train_ms:>9.1f} {t.train_ms / yardstick.train_ms:>8.2f}"
            f" {t.infer_ms:>9.1f} {t.infer_ms / yardstick.infer_ms:>8.2f}",
            flush=True,
        )
    memory = []
    if not args.no_memory:
        T, B, H = speed.MEMORY_SIZE
        memory = speed.run_memory()
        base = next(m.peak_mb for m in memory if m.backend == speed.YARDSTICK)
        print(
            f"\npeak resident memory of one training step, T={T}, B={B}, H={H}, each in a fresh process, above what "
            "model and input hold (peephole LSTM on fused; nn.LSTM):"
        )
        for m in memory:
            print(f"  {m.backend:<8} {m.peak_mb:8.1f} MB  {m.peak_mb / base:5.2f} x nn.LSTM")
    ort_timings = None if args.no_ort else _run_ort(cells, grid, repeats)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(speed.as_json(timings, memory, ort_timings), indent=1) + "\n")
    return 0


def _run_ort(cells: tuple[str, ...], grid: tuple[tuple[int, int, int], ...], repeats: int) -> list | None:
    """The fused backend's inference against ONNX Runtime's LSTM operator, printed as rows
    arrive; None (and a line saying why) when onnxruntime is missing or no cell applies."""
    import torch

    from lstmlab.experiments import ort, speed

    missing = ort.available()
    chosen = speed.ort_cells(cells)
    if missing is not None or not chosen:
        why = missing or f"none of {', '.join(cells)} is a cell ONNX's LSTM operator computes ({', '.join(speed.ORT_CELLS)})"
        print(f"\nno comparison with ONNX Runtime: {why}")
        return None
    import onnxruntime

    print(
        f"\ninference against ONNX Runtime {onnxruntime.__version__}'s LSTM operator ({torch.get_num_threads()} intra-op "
        f"threads, not spinning; peepholes as P, CIFG as input_forget=1); median of {repeats}, interleaved; ms"
    )
    header = f"{'cell':<10} {'T':>4} {'B x H':>9}  {'fused':>9} {'ORT':>9} {'/ORT':>6}"
    print(header)
    print("-" * len(header))
    out = []
    for t in speed.run_ort(chosen, grid, repeats):
        out.append(t)
        print(
            f"{t.cell:<10} {t.T:>4} {f'{t.B}x{t.H}':>9}  {t.fused_ms:>9.2f} {t.ort_ms:>9.2f} {t.fused_ms / t.ort_ms:>6.2f}",
            flush=True,
        )
    return out


def busy_warning(load: float | None = None, cores: int | None = None) -> str:
    """A warning when the machine is busy (the 1-minute load average above half its cores): other
    work then takes the bench's cores and its times and ratios mean little; "" otherwise."""
    from lstmlab.experiments.speed import load_average

    load = load_average() if load is None else load
    if load is None:  # no load average on this platform
        return ""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load <= cores / 2:
        return ""
    return (
        f"lstmlab bench: warning: the machine is busy (load average {load:.1f} on {cores} cores); other work shares "
        "the cores being timed, so times and ratios may be far off: run it on an idle machine"
    )


def _run_step(args: argparse.Namespace, repeats: int) -> int:
    """`lstmlab bench --step`: the step-latency table, then the characters per second of `lstmlab sample`."""
    import torch

    from lstmlab.experiments import step

    hidden = 32 if args.quick else step.HIDDEN
    repeats = repeats if args.repeats else (3 if args.quick else 21)
    block = 10 if args.quick else 100
    clock = "cpu" if args.cpu_time else "wall"
    print(
        f"torch {torch.__version__}, one thread, no_grad, B=1, H={hidden} (input size = hidden size); "
        f"median of {repeats} interleaved blocks of {block} calls; microseconds per call, "
        + ("this thread's CPU time" if args.cpu_time else "elapsed")
    )
    header = f"{'lstmlab':<26} {'backend':<8} {'us':>8}  {'torch':<18} {'us':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    timings = step.time_steps(hidden=hidden, repeats=repeats, block=block, clock=clock)
    for t in timings:
        print(f"{t.case:<26} {t.backend:<8} {t.lstmlab_us:>8.1f}  {t.yardstick:<18} {t.torch_us:>8.1f} {t.ratio:>6.2f}")
    length = 200 if args.quick else step.SAMPLE_LENGTH
    rate = step.sample_rate(hidden=hidden, length=length, repeats=3 if args.quick else 5, clock=clock)
    print(
        f"\nlstmlab sample: {rate:.0f} characters per second ({step.LAYERS} x {hidden} LSTM, "
        f"{step.SAMPLE_VOCABULARY} characters, temperature 0.8, one thread; median of {3 if args.quick else 5} runs "
        f"of {length} characters)"
    )
    if args.json_out:
        record = {
            "torch": torch.__version__,
            "threads": 1,
            "clock": clock,
            "hidden": hidden,
            "batch": 1,
            "repeats": repeats,
            "block": block,
            "steps": [{**asdict(t), "ratio": t.ratio} for t in timings],
            "sample_chars_per_s": rate,
        }
        Path(args.json_out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


def _ratio(a: float, b: float, width: int = 7) -> str:
    return f"{a / b:>{width}.2f}" if not (math.isnan(a) or math.isnan(b)) else f"{'-':>{width}}"


def cuda_settings(args: argparse.Namespace, cells: tuple[str, ...], repeats: int) -> dict:
    """What `lstmlab bench --device cuda` measures, from its flags (as recorded in its JSON);
    needs no GPU."""
    from lstmlab.errors import InvalidArgument
    from lstmlab.experiments import speed

    dtypes = list(speed.CUDA_DTYPES) if args.dtype in (None, "both") else [args.dtype]
    grid = speed.CUDA_QUICK_GRID if args.quick else speed.CUDA_GRID
    eager_repeats = args.eager_repeats if args.eager_repeats is not None else min(repeats, 3)
    eager_steps = speed.EAGER_STEPS if args.eager_steps is None else args.eager_steps
    for flag, value in (("--eager-repeats", eager_repeats), ("--eager-steps", eager_steps)):
        if value < 1:
            raise InvalidArgument("bench", flag, f"must be positive; got {value}")
    return {
        "repeats": repeats,
        "eager_repeats": eager_repeats,
        "eager_steps": eager_steps,
        "cells": list(cells),
        "grid": [list(size) for size in grid],
        "dtypes": dtypes,
    }


def _run_cuda(args: argparse.Namespace, settings: dict) -> int:
    """`lstmlab bench --device cuda`: the table, as rows arrive (and the JSON rewritten after
    each), then the targets met and the auto table these numbers give."""
    from lstmlab.experiments import speed

    cells, grid = tuple(settings["cells"]), tuple(tuple(size) for size in settings["grid"])
    repeats, eager_repeats, eager_steps = settings["repeats"], settings["eager_repeats"], settings["eager_steps"]
    dtypes = tuple(speed.CUDA_DTYPES[name] for name in settings["dtypes"])
    info = speed.cuda_json([], settings)
    print(f"{info['gpu']}; torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, triton {info['triton']}")
    longest = max(T for T, _, _ in grid)
    if eager_steps < longest:
        scale = f"x{longest / eager_steps:g} at T={longest}"
        eager_note = f"eager: median of {eager_repeats} on the first {eager_steps} steps, times scaled to T ({scale})"
    else:
        eager_note = f"eager: median of {eager_repeats} over every step"
    print(f"median of {repeats} repeats, ms between synchronisations; {eager_note}")
    print("peak: CUDA memory of one training step above model and input, MB; /torch: over torch's module of the family (cuDNN)")
    header = (
        f"{'cell':<10} {'T':>4} {'B x H':>8} {'dtype':<8} {'backend':<8} {'train':>8} {'/torch':>7} {'/eager':>7}"
        f" {'infer':>8} {'/torch':>7} {'/eager':>7} {'peak':>8} {'/torch':>7}"
    )
    print(header)
    print("-" * len(header))
    timings: list[speed.CudaTiming] = []
    seen: dict[tuple, speed.CudaTiming] = {}
    for t in speed.run_timings(
        cells, grid, repeats, eager_repeats, device="cuda", dtypes=dtypes, eager_steps=eager_steps, memory=not args.no_memory
    ):
        assert isinstance(t, speed.CudaTiming)
        timings.append(t)
        seen[(t.cell, t.T, t.B, t.H, t.dtype, t.backend)] = t
        torch_module = t.backend in speed.TORCH_MODULES
        stick_name = t.backend if torch_module else speed.yardstick(t.cell, "cuda")
        stick = seen[(speed.TORCH_MODULES[stick_name][1], t.T, t.B, t.H, t.dtype, stick_name)]
        eager = None if torch_module else seen.get((t.cell, t.T, t.B, t.H, t.dtype, "eager"))
        nan = math.nan
        row = (
            f"{'-' if torch_module else t.cell:<10} {t.T:>4} {f'{t.B}x{t.H}':>8} {t.dtype:<8} {t.backend:<8}"
            f" {t.train_ms:>8.1f} {_ratio(t.train_ms, stick.train_ms)} {_ratio(t.train_ms, eager.train_ms if eager else nan)}"
            f" {t.infer_ms:>8.1f} {_ratio(t.infer_ms, stick.infer_ms)} {_ratio(t.infer_ms, eager.infer_ms if eager else nan)}"
            f" {t.peak_mb:>8.1f} {_ratio(t.peak_mb, stick.peak_mb)}"
        )
        if t.error is not None:
            row += f"  failed: {t.error}"
        elif t.steps < t.T:
            row += f"  ({t.steps} steps, x{t.T / t.steps:g})"
        print(row, flush=True)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(speed.cuda_json(timings, settings), indent=1) + "\n")
    checks = speed.cuda_targets(timings)
    missed = [what for what, met in checks if not met]
    print(f"\ntargets for triton: {len(checks) - len(missed)} of {len(checks)} met")
    for what in missed:
        print(f"  missed: {what}")
    table = speed.cuda_auto_table(speed.cuda_json(timings, settings)["timings"])
    print("\nTRITON_OVER_BEST_CUDA as measured here (lstmlab/backends/__init__.py; triton first where train x infer < 1):")
    print("{" + "".join(f"\n    {cell!r}: {sizes!r}," for cell, sizes in table.items()) + ("\n}" if table else "}"))
    return 0
