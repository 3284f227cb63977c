"""`lstmlab compare`: several cells on one task, same seed and budget: a table and learning curves."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lstmlab.cli._errors import fail
from lstmlab.cli._training import FLAGS, add_training_arguments, progress, table, train_config

COLUMNS = [
    ("cell", "cell"),
    ("parameters", "parameters"),
    ("steps_to_solve", "steps to solve"),
    ("value", "final metric"),
    ("baseline", "baseline"),
    ("solved", "solved"),
    ("seconds", "seconds"),
]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="train several cells on a task and compare them",
        description="Train each cell with the same seed, data and budget; print a table (cell, parameters, steps "
        "to solve, final held-out metric against the memoryless baseline, solved, seconds), and write the "
        "learning curves (curves.png) and the table (results.json) to the output directory.",
    )
    parser.add_argument("--cells", default="rnn,lstm,peephole,cifg,gru", help="comma-separated cell names (default: %(default)s)")
    add_training_arguments(parser)
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output directory, one run directory per cell (default: runs/compare-TASK)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the comparison in --out (same flags; --steps, --lr, --eval-every, --no-early-stop may change): "
        "finished cells are kept, unfinished ones continued",
    )
    parser.set_defaults(run=run)


def conflicts_in_flag_terms(error: Exception, flags: dict[str, str]) -> Exception:
    """A resume conflict (`lstmlab.train.conflict_error`) named by the flags; other errors unchanged."""
    from lstmlab.train import conflict_error

    conflicts = getattr(error, "conflicts", None)
    if conflicts is None:
        return error
    return conflict_error("compare", "--resume", error.run_dir, conflicts, {**flags, "batch_size": "--batch", "cell": "--cells"})  # type: ignore[attr-defined]


def parse_cells(command: str, text: str) -> list[str]:
    """The cells of a comma-separated --cells flag, each checked: an unknown one is an error about
    the argument `cell`, which the command names --cells."""
    from lstmlab.errors import InvalidArgument
    from lstmlab.models import cell_name

    cells = [cell_name(c.strip()) for c in text.split(",") if c.strip()]
    if not cells:
        raise InvalidArgument(command, "--cells", f"must name at least one cell; got {text!r}")
    return cells


def run(args: argparse.Namespace) -> int:
    from lstmlab.experiments import plots
    from lstmlab.experiments.compare import Comparison

    flags = {**FLAGS, "cell": "--cells"}
    try:
        plots.require("compare")
        cells = parse_cells("compare", args.cells)
        config = train_config("compare", args, cells[0])
        out = Path(args.out or Path("runs") / f"compare-{config.task}")
        comparison = Comparison(config, cells, out, resume=args.resume, overwrite=args.overwrite)
    except (ValueError, TypeError) as error:
        return fail("compare", conflicts_in_flag_terms(error, flags), flags)
    try:
        result = run_comparison(comparison, args.quiet or args.json, args.progress_every)
    except (ValueError, TypeError) as error:  # a cell's model refusing its settings, a run directory that cannot be written
        return fail("compare", conflicts_in_flag_terms(error, flags), flags)
    if result is None:
        print("continue with the same command and --resume", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result["rows"], COLUMNS))
        print(f"\ncurves: {result['curves']}\ntable:  {result['table']}")
    return 0


def run_comparison(comparison: Any, quiet: bool, every: int | None = None) -> dict[str, Any] | None:
    """Run `comparison` with progress bars, write curves.png and results.json; None if interrupted."""
    from lstmlab.experiments import plots
    from lstmlab.train import Diverged

    start = time.perf_counter()
    current = None
    try:
        for _, trainer, _ in comparison.run(lambda t: progress(t, quiet, t.config.cell, every)):
            current = trainer
    except Diverged as error:
        print(str(error), file=sys.stderr)
    except KeyboardInterrupt:
        if current is not None:
            current.save()
        print("interrupted", file=sys.stderr)
        return None
    if current is not None and current.interrupted:
        print("interrupted", file=sys.stderr)
        return None
    out = comparison.out_dir
    task = comparison.results[0].trainer.task
    curves = plots.learning_curves(
        {r.cell: r.curve for r in comparison.results},
        out / "curves.png",
        metric=task.metric,
        baseline=task.baseline,
        title=f"{task.name}: " + ", ".join(f"{k}={v}" for k, v in task.options().items()),
    )
    rows = comparison.rows()
    path = out / "results.json"
    path.write_text(json.dumps({"rows": rows, "curves": {r.cell: r.curve for r in comparison.results}}, indent=1) + "\n")
    return {"rows": rows, "curves": str(curves), "table": str(path), "seconds": round(time.perf_counter() - start, 1)}
