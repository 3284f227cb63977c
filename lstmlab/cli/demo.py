"""`lstmlab demo`: gates remember what an RNN forgets, in a few minutes on a laptop CPU.

Trains the plain tanh RNN and the LSTM family (LSTM, peephole LSTM, CIFG, GRU) on
the adding problem with the same seed, data and budget, prints the table, and draws
the learning curves and the gradient that reaches each step from the loss at the
end, against the lag, for the RNN and the LSTM (at initialisation and trained).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from lstmlab.cli._errors import fail
from lstmlab.cli._training import set_threads, table

CELLS = "rnn,lstm,peephole,cifg,gru"
# Chosen so that every gated cell solves the task well within the budget on every seed we
# tried while the tanh RNN stays at the baseline, and the whole demo fits in 3 minutes on
# two CPU cores (the measurements are in the README, under `make demo`).
DEFAULTS = {"seq_len": 50, "hidden": 64, "batch": 64, "lr": 1e-2, "steps": 1500, "eval_every": 50, "eval_size": 500}
# the arguments the flags set -> the flags, so that errors name the flag (`lstmlab.cli._errors`)
FLAGS = {
    "cell": "--cells",
    "seq_len": "--seq-len",
    "steps": "--steps",
    "seed": "--seed",
    "device": "--device",
    "run_dir": "--out",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="show that gates remember what a plain RNN forgets (about a minute on a 2-core CPU)",
        description="Train the tanh RNN and the LSTM family on the adding problem (Arjovsky et al. 2016) with the "
        "same seed, data and budget; print the table (the gated cells solve it, the RNN stays at the memoryless "
        "baseline); draw the learning curves and the gradient norm reaching each step from the loss at the end, "
        "against the lag, for the RNN and the LSTM. Needs no data.",
    )
    parser.add_argument("--cells", default=CELLS, help=f"comma-separated cells (default: {CELLS})")
    parser.add_argument("--seq-len", type=int, default=DEFAULTS["seq_len"], help="time lag T (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="step budget per cell (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1; small matrices gain little)")
    parser.add_argument("--device", default="cpu", help="where to train: cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--out", metavar="DIR", default="runs/demo", help="output directory, its earlier demo files replaced (default: runs/demo)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from lstmlab.cli.compare import parse_cells, run_comparison
    from lstmlab.experiments import plots
    from lstmlab.experiments.compare import Comparison
    from lstmlab.train import TrainConfig

    start = time.perf_counter()
    try:
        plots.require("demo")
        cells = parse_cells("demo", args.cells)
        set_threads("demo", args.threads)
        config = TrainConfig(
            task="adding",
            task_options={"seq_len": args.seq_len, "batch_size": DEFAULTS["batch"], "eval_size": DEFAULTS["eval_size"]},
            cell=cells[0],
            hidden=DEFAULTS["hidden"],
            lr=DEFAULTS["lr"],
            clip=1.0,
            forget_bias=1.0,
            steps=args.steps,
            seed=args.seed,
            eval_every=DEFAULTS["eval_every"],
            device=args.device,
        )
        out = Path(args.out)
        comparison = Comparison(config, cells, out, overwrite=True)  # checks every cell's config
        _clear(out, cells)
    except (ValueError, TypeError) as error:
        return fail("demo", error, FLAGS)

    if not args.json:
        print(
            f"adding problem, T={args.seq_len}: the sum of two values marked in a sequence of {args.seq_len} random "
            f"numbers, read out at the end;\n{', '.join(cells)}, hidden {config.hidden}, Adam lr {config.lr}, clip 1, "
            f"forget bias 1, at most {args.steps} steps each (stop when held-out MSE < 0.01)\n",
            file=sys.stderr,
        )
    try:
        result = run_comparison(comparison, args.quiet or args.json)
    except (ValueError, TypeError) as error:
        return fail("demo", error, FLAGS)
    if result is None:
        return 130
    flow = _gradient_picture(comparison, config, out)
    result["gradient_flow"] = str(flow) if flow is not None else None
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["verdict"] = _verdict(result["rows"])
    if args.json:
        print(json.dumps(result))
        return 0
    from lstmlab.cli.compare import COLUMNS

    print(table(result["rows"], COLUMNS))
    print(f"\n{result['verdict']}")
    print(f"\nlearning curves: {result['curves']}")
    if flow is not None:
        print(f"gradient by lag: {flow}")
    print(f"table:           {result['table']}")
    print(f"runs:            {out}/CELL (metrics.jsonl, checkpoint; continue one with lstmlab train --resume)")
    print(f"total time:      {result['seconds']} s")
    return 0


def _clear(out: Path, cells: list[str]) -> None:
    """Remove what an earlier demo wrote in `out` (only that)."""
    for cell in cells:
        if (out / cell / "checkpoint.pt").exists():
            shutil.rmtree(out / cell)
    for name in ("curves.png", "gradient_flow.png", "results.json"):
        (out / name).unlink(missing_ok=True)


def _gradient_picture(comparison: Any, config: Any, out: Path) -> Path | None:
    """Gradient norm against lag for the RNN and the LSTM, at initialisation and trained."""
    import torch

    from lstmlab import tasks
    from lstmlab.experiments import plots
    from lstmlab.experiments.gradflow import gradient_by_lag
    from lstmlab.tasks.base import eval_rng
    from lstmlab.train import build_model

    series: dict[str, tuple[list[int], list[float]]] = {}
    T = config.task_options["seq_len"]
    for result in comparison.results:
        if result.cell not in ("rnn", "lstm"):
            continue
        trainer = result.trainer
        # twice the training length, to show the trend well past the lags seen in training
        task = tasks.get("adding", seq_len=2 * T)
        batch = task.make_batch(eval_rng(99), 256)
        torch.manual_seed(config.seed)
        fresh = build_model(trainer.config, trainer.task)
        series[f"{result.cell}, at init"] = gradient_by_lag(fresh, task, batch)
        series[f"{result.cell}, trained"] = gradient_by_lag(trainer.model, task, batch)
    if not series:
        return None
    return plots.gradient_flow(
        series,
        out / "gradient_flow.png",
        title=f"adding T={2 * T} (trained at T={T}), loss at the last step",
    )


def _verdict(rows: list[dict[str, Any]]) -> str:
    """One line: which gated cells solved the task, and where the plain RNN ended."""
    gated = [r for r in rows if r["cell"] not in ("rnn", "rnn-relu")]
    solved = [r["cell"] for r in gated if r["solved"]]
    parts = []
    if gated:
        parts.append(f"gated cells solved: {len(solved)} of {len(gated)}" + (f" ({', '.join(solved)})" if solved else ""))
    for r in rows:
        if r["cell"] in ("rnn", "rnn-relu"):
            ratio = r["value"] / r["baseline"] if r["value"] is not None and r["baseline"] else float("nan")
            state = "solved" if r["solved"] else "not solved"
            parts.append(f"{r['cell']}: {state}, held-out {r['metric']} at {ratio:.0%} of the memoryless baseline")
    return "; ".join(parts)
