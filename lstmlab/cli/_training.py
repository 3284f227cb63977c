"""Arguments and output shared by `lstmlab train`, `compare` and `demo`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from lstmlab import _checks

# task option (`lstmlab.tasks.get`) -> the flag that sets it; a flag given for a task that
# lacks the option is an error (the task registry's)
TASK_FLAGS = {"seq_len": "--seq-len", "batch_size": "--batch", "text": "--text"}

# argument (a `TrainConfig` field, a task option, the run directory) -> the flag that sets it,
# so that the library's errors name the flag (`lstmlab.cli._errors`)
FLAGS = {
    **TASK_FLAGS,
    "task": "--task",
    "cell": "--cell",
    "hidden": "--hidden",
    "layers": "--layers",
    "dropout": "--dropout",
    "forget_bias": "--forget-bias",
    "backend": "--backend",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "clip": "--clip",
    "steps": "--steps",
    "seed": "--seed",
    "eval_every": "--eval-every",
    "log_every": "--log-every",
    "run_dir": "--out",
    "out_dir": "--out",
    "overwrite": "--overwrite",
    "resume": "--resume",
}

# what --resume may change (`lstmlab.train.RESUME_CHANGES` and how the command runs); other flags define the run
RESUME_FLAGS = ("--steps", "--lr", "--eval-every", "--no-early-stop", "--threads", "--quiet", "--text")


def add_training_arguments(parser: argparse.ArgumentParser, *, steps: int = 5000) -> None:
    """The task, model and optimiser flags (the cell flags are the caller's)."""
    from lstmlab import tasks

    parser.add_argument("--task", default="adding", choices=tasks.names(), help="the task (default: adding)")
    parser.add_argument("--seq-len", type=int, default=None, help="sequence length or time lag T (default: the task's)")
    parser.add_argument("--batch", type=int, default=None, help="sequences per batch (default: the task's, 64)")
    parser.add_argument("--text", default=None, help="text file, for tasks that read one (charlm)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units per layer (default: 64)")
    parser.add_argument("--layers", type=int, default=1, help="recurrent layers (default: 1)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout between layers and before the readout (default: 0)")
    parser.add_argument(
        "--forget-bias",
        type=float,
        default=None,
        help="added to the forget gate's initial bias, LSTMs with one (default: the task's; 1, charlm 0)",
    )
    parser.add_argument("--backend", default="auto", help="backend of the recurrent module (default: auto)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw"), help="(default: adam)")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (default: 3e-3)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default: 0)")
    parser.add_argument("--clip", type=float, default=1.0, help="clip the gradient's global norm to this; 0: off (default: 1)")
    parser.add_argument("--steps", type=int, default=None, help=f"optimiser steps at most (default: {steps})")
    parser.set_defaults(default_steps=steps)
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data (default: 0)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between held-out evaluations (default: 100)")
    parser.add_argument("--log-every", type=int, default=10, help="steps between train records in metrics.jsonl (default: 10)")
    parser.add_argument("--no-early-stop", action="store_true", help="keep training after the task is solved")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace the run(s) that --out already holds")


def track_given(parser: argparse.ArgumentParser, dests: list[str]) -> None:
    """Let the command tell which of the flags `dests` were given (`given_flags`): they parse
    to None when absent, and their defaults are kept aside."""
    defaults = {dest: parser.get_default(dest) for dest in dests}
    parser.set_defaults(**dict.fromkeys(dests), flag_defaults=defaults)


def given_flags(args: argparse.Namespace) -> set[str]:
    """The tracked flags (`track_given`) given on the command line, by dest; the others are set to their defaults."""
    given = set()
    for dest, default in getattr(args, "flag_defaults", {}).items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
        else:
            given.add(dest)
    return given


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The task options the flags give (those given; `TrainConfig.check` checks them)."""
    options = {}
    for option in TASK_FLAGS:
        value = getattr(args, option if option != "batch_size" else "batch")
        if value is not None:
            options[option] = value
    return options


def train_config(command: str, args: argparse.Namespace, cell: str) -> Any:
    """The TrainConfig of the flags, checked (errors name the library's arguments: see `FLAGS`)."""
    from lstmlab.train import TrainConfig

    if args.threads is not None:
        set_threads(command, args.threads)
    return TrainConfig(
        task=args.task,
        task_options=task_options(args),
        cell=cell,
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
        forget_bias=args.forget_bias,
        backend=args.backend,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        clip=args.clip,
        steps=args.steps if args.steps is not None else args.default_steps,
        seed=args.seed,
        eval_every=args.eval_every,
        log_every=args.log_every,
        stop_when_solved=not args.no_early_stop,
    ).check()


def set_threads(command: str, threads: int) -> None:
    import torch

    torch.set_num_threads(_checks.positive_int(command, "--threads", threads))


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress(trainer: Any, quiet: bool, label: str = "") -> Iterator[dict[str, Any]]:
    """trainer.run()'s records, with a progress bar (loss, the task's metric, rate) on a terminal."""
    from tqdm import tqdm

    metric = trainer.task.metric
    disable = quiet or not sys.stderr.isatty()
    bar = tqdm(total=trainer.config.steps, initial=trainer.step, desc=label or None, disable=disable, leave=False, unit="step")
    postfix: dict[str, str] = {}
    with contextlib.closing(bar):
        for record in trainer.run():
            if record["kind"] == "step":
                bar.update(1)
            elif record["kind"] == "train":
                postfix["loss"] = f"{record['loss']:.4g}"
                bar.set_postfix(postfix, refresh=False)
            elif record["kind"] == "eval":
                postfix[f"val {metric}"] = f"{record[metric]:.4g}"
                bar.set_postfix(postfix, refresh=False)
            yield record


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table of `rows` with (key, heading) columns."""
    cells = [[heading for _, heading in columns]] + [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
