"""`lstmlab train`: train one cell on one task, in a run directory that can be resumed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lstmlab.cli._errors import fail
from lstmlab.cli._training import (
    FLAGS,
    Given,
    add_training_arguments,
    choose_threads,
    format_value,
    progress,
    set_threads,
    train_config,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from lstmlab.models import CELLS

    parser = subparsers.add_parser(
        "train",
        help="train a cell on a task",
        description="Train one cell on one task. The run directory gets config.json, metrics.jsonl and "
        "checkpoint.pt (written atomically); Ctrl-C saves and stops, --resume DIR continues bit-identically. "
        "Stops early once the task's success criterion holds.",
    )
    parser.add_argument("--cell", default="lstm", type=str.lower, action=Given, help=f"one of {', '.join(CELLS)} (default: lstm)")
    add_training_arguments(parser)
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="run directory, created (a folder, not a file; default: runs/TASK-CELL-sSEED)"
    )
    parser.add_argument("--resume", metavar="DIR", default=None, help="continue the run in DIR (up to --steps if given)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.errors import InvalidArgument
    from lstmlab.train import Diverged, Trainer

    flags = {**FLAGS, "run_dir": "--resume"} if args.resume is not None else FLAGS
    try:
        if args.resume is not None and args.config is not None:
            detail = f"does not apply with --resume (the run keeps its own); got {args.config!r}"
            raise InvalidArgument("train", "--config", detail)
        if args.resume is not None:
            if args.threads is not None:
                set_threads("train", args.threads)
            trainer = Trainer.resume(args.resume, steps=args.steps)
            choose_threads("train", args, trainer.config)
        else:
            config = train_config("train", args, args.cell)
            out = args.out or str(Path("runs") / f"{config.task}-{config.cell}-s{config.seed}")
            trainer = Trainer(config, out)
    except (ValueError, TypeError) as error:
        return fail("train", error, flags)

    if not args.quiet and not args.json:
        what = "resuming" if args.resume else "training"
        print(
            f"{what} {trainer.config.cell} on {trainer.config.task} ({trainer.model.active_backend} backend, "
            f"{trainer.describe()['parameters']} parameters) in {trainer.run_dir}, from step {trainer.step}",
            file=sys.stderr,
        )
    try:
        for _ in progress(trainer, args.quiet, trainer.config.cell, args.progress_every):
            pass
    except Diverged as error:
        print(str(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        trainer.interrupted = True
        trainer.save()

    summary = trainer.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(render_summary(summary))
    if trainer.interrupted:
        print(
            f"interrupted at step {trainer.step}; checkpoint at step {trainer.checkpoint_step} in {trainer.run_dir}; "
            f"continue with: lstmlab train --resume {trainer.run_dir}",
            file=sys.stderr,
        )
        return 130
    return 0


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned `key: value` lines."""
    rows = [
        ("task", summary["task"]),
        ("cell", f"{summary['cell']} ({summary['active_backend']} backend, {summary['parameters']} parameters)"),
        ("steps", summary["steps"]),
        (f"val {summary['metric']}", f"{format_value(summary['value'])} (baseline {format_value(summary['baseline'])})"),
        ("solved", f"yes, at step {summary['solved_at']}" if summary["solved"] else "no"),
        ("seconds", summary["seconds"]),
        ("run", summary["run_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
