"""`lstmlab bench`: speed of every cell on every backend against torch's nn.LSTM, and memory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from lstmlab.experiments.speed import CELLS

    parser = subparsers.add_parser(
        "bench",
        help="time the backends against torch's nn.LSTM and measure training memory",
        description="For each cell and size (T, B, H; input size H): median milliseconds of a training step "
        "(forward + backward) and of inference, for the fused, native and eager backends, with ratios to "
        "torch's nn.LSTM at the same size; then the peak memory of one training step at T=1000, B=32, H=256.",
    )
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the numbers to FILE as JSON")
    parser.add_argument("--quick", action="store_true", help="two small sizes at T=50 and 3 repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default: 7, quick: 3)")
    parser.add_argument("--eager-repeats", type=int, default=None, help="repeats for the slow eager backend (default: 3)")
    parser.add_argument(
        "--cells",
        default=",".join(CELLS),
        help=f"comma-separated cells to time, any of `lstmlab train --cell` (default: {','.join(CELLS)})",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own setting)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lstmlab import models
    from lstmlab.cli._training import set_threads
    from lstmlab.errors import InvalidArgument
    from lstmlab.experiments import speed

    cells = tuple(c.strip().lower() for c in args.cells.split(",") if c.strip())
    unknown = [c for c in cells if c not in models.CELLS]
    if unknown or not cells:
        got = ", ".join(unknown) or repr(args.cells)
        raise InvalidArgument("bench", "--cells", f"must be among {', '.join(models.CELLS)}; got {got}")
    repeats = args.repeats or (3 if args.quick else 7)
    if repeats < 1:
        raise InvalidArgument("bench", "--repeats", f"must be positive; got {repeats}")
    if args.threads is not None:
        set_threads("bench", args.threads)
    grid = speed.QUICK_GRID if args.quick else speed.GRID
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeats} repeats; ms")
    header = f"{'cell':<10} {'T':>4} {'B x H':>9}  {'backend':<8} {'train':>9} {'/nn.LSTM':>8} {'infer':>9} {'/nn.LSTM':>8}"
    print(header)
    print("-" * len(header))
    timings, yardstick = [], None
    for t in speed.run_timings(cells, grid, repeats, args.eager_repeats or min(repeats, 3)):
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
        print(f"\npeak memory of one training step, T={T}, B={B}, H={H} (peephole LSTM on fused):")
        for m in memory:
            print(f"  {m.backend:<8} {m.peak_mb:8.1f} MB  {m.peak_mb / base:5.2f} x nn.LSTM")
    if args.json:
        Path(args.json).write_text(json.dumps(speed.as_json(timings, memory), indent=1) + "\n")
    return 0
