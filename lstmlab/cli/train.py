"""`lstmlab train`: train one cell on one task, in a run directory that can be resumed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lstmlab import _checks
from lstmlab.cli._errors import fail
from lstmlab.cli._training import (
    CONFIG_FIELDS,
    FLAGS,
    RESUME_FLAGS,
    Given,
    add_training_arguments,
    choose_threads,
    format_value,
    progress,
    set_threads,
    train_config,
)

# flags (argparse dest) a resume applies or ignores rather than checks against the run
RESUMABLE = {"steps", "lr", "eval_every", "no_early_stop", "max_minutes", "text"}
# dest -> the task option it sets
TASK_OPTIONS = {"seq_len": "seq_len", "batch": "batch_size"}


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
        "--out",
        metavar="DIR",
        default=None,
        action=Given,
        help="run directory, created (a folder, not a file; default: runs/TASK-CELL-sSEED)",
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help=f"continue the run in DIR; of the other flags only {', '.join(RESUME_FLAGS)} may change it "
        "(--text: where a charlm corpus is now, if it moved)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="train in N processes on this machine (DistributedDataParallel, started with torchrun; --batch is "
        "the global batch, split among them); the same as torchrun --standalone --nproc-per-node N -m lstmlab train",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.distributed import World, launched, leave
    from lstmlab.errors import InvalidArgument
    from lstmlab.train import Trainer

    given = set(getattr(args, "given", ()))
    flags = {**FLAGS, "run_dir": "--resume"} if args.resume is not None else FLAGS
    flags = {**flags, "world_size": "--nproc"}
    world = World()
    try:
        if args.resume is not None and args.config is not None:
            detail = f"does not apply with --resume (the run keeps its own); got {args.config!r}"
            raise InvalidArgument("train", "--config", detail)
        if args.nproc is not None and args.nproc != 1 and not launched():
            return launch(args)
        if args.resume is not None:
            world = join(args, _stored_config(args.resume).device) if launched() else World()
            trainer = resume(args, given, world)
            choose_threads("train", args, trainer.config)
        else:
            config = train_config("train", args, args.cell)
            out = args.out or str(Path("runs") / f"{config.task}-{config.cell}-s{config.seed}")
            world = join(args, config.device) if launched() else World()
            trainer = Trainer(config, out, overwrite=args.overwrite, world=world)
    except (ValueError, TypeError) as error:
        leave(world)
        return fail("train", error, flags)

    try:
        with trainer:
            return train(trainer, args, flags)
    finally:
        leave(world)


def _stored_config(run_dir: str) -> Any:
    from lstmlab.train import TrainConfig, read_checkpoint

    return TrainConfig.from_dict(read_checkpoint(run_dir)["config"])


def join(args: argparse.Namespace, device: str) -> Any:
    """This process's `lstmlab.distributed.World` in the process group torchrun started it in;
    --nproc, if given, must be torchrun's number of processes."""
    import os

    from lstmlab import distributed
    from lstmlab.errors import InvalidArgument

    size = int(os.environ["WORLD_SIZE"])
    if args.nproc is not None and args.nproc != size:
        raise InvalidArgument("train", "--nproc", f"must be the number of processes torchrun started, {size}; got {args.nproc}")
    return distributed.join(device)


def launch(args: argparse.Namespace) -> int:
    """Run this command in --nproc processes, started by torchrun on this machine (on a free
    port), once the settings are checked here; torchrun's exit status."""
    import signal
    import subprocess

    from lstmlab import distributed, tasks
    from lstmlab.train import read_checkpoint

    world = distributed.World(rank=0, size=_checks.positive_int("train", "--nproc", args.nproc))
    if args.resume is not None:
        distributed.check_resume(args.resume, int(read_checkpoint(args.resume).get("world_size", 1)), world)
    else:
        config = train_config("train", args, args.cell)
        distributed.check_batch(getattr(tasks.get(config.task, **config.task_options), "batch_size", None), world)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world.size)]
    process = subprocess.Popen([*command, "-m", "lstmlab", *without_nproc(getattr(args, "argv", sys.argv[1:]))])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the processes, which save and stop
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def without_nproc(argv: list[str]) -> list[str]:
    """`argv` without --nproc and its value (in any spelling argparse takes): the processes
    torchrun starts learn their number from it, and torchrun would read the flag as its own."""
    kept: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        name, equals, _ = token.partition("=")
        if len(name) > 3 and "--nproc".startswith(name):  # --np, --npr, ... --nproc
            if not equals:
                next(tokens, None)  # its value
        else:
            kept.append(token)
    return kept


def resume(args: argparse.Namespace, given: set[str], world: Any = None) -> Any:
    """The trainer of the run in --resume, with the changes the flags allow; an error naming
    the flags that would change what defines the run."""
    from lstmlab.errors import InvalidArgument
    from lstmlab.models import cell_name
    from lstmlab.train import TrainConfig, Trainer, conflict_error, read_checkpoint, resume_conflicts

    if args.overwrite:
        raise InvalidArgument("train", "--overwrite", "cannot go with --resume; choose one")
    defining = sorted(given - RESUMABLE)
    if defining:  # (else the checkpoint is read once, by the resume that owns the directory)
        stored = TrainConfig.from_stored(read_checkpoint(args.resume)["config"])
        wanted = TrainConfig.from_dict({**vars(stored)})
        wanted.task_options = dict(stored.task_options)
        conflicts: dict[str, tuple[Any, Any]] = {}
        for dest in defining:
            if dest == "out":
                if Path(args.out).resolve() != Path(args.resume).resolve():
                    conflicts["out"] = (args.resume, args.out)
            elif dest in TASK_OPTIONS:
                wanted.task_options[TASK_OPTIONS[dest]] = getattr(args, dest)
            else:
                setattr(wanted, CONFIG_FIELDS.get(dest, dest), cell_name(args.cell) if dest == "cell" else getattr(args, dest))
        conflicts.update(resume_conflicts(stored, wanted))
        if conflicts:
            raise conflict_error("train", "--resume", args.resume, conflicts, {**FLAGS, "batch_size": "--batch", "out": "--out"})
    settings = {}
    if args.threads is not None:
        set_threads("train", args.threads)
        settings["threads"] = args.threads
    changes = {
        "steps": args.steps,
        "lr": args.lr if "lr" in given else None,
        "eval_every": args.eval_every if "eval_every" in given else None,
        "stop_when_solved": False if args.no_early_stop else None,
        "max_minutes": args.max_minutes if "max_minutes" in given else None,
    }
    return Trainer.resume(args.resume, text=args.text, settings=settings, world=world, **changes)


def train(trainer: Any, args: argparse.Namespace, flags: dict[str, str]) -> int:
    """Run `trainer` with a progress bar, print the summary; the exit status."""
    from lstmlab.train import Diverged

    if trainer.world.rank != 0:
        return follow(trainer, flags)
    if not args.quiet and not args.json:
        what = "resuming" if args.resume else "training"
        print(
            f"{what} {trainer.config.cell} on {trainer.config.task} ({trainer.model.active_backend} backend, "
            f"{trainer.describe()['parameters']} parameters) in {trainer.run_dir}, from step {trainer.step}",
            file=sys.stderr,
        )
    if args.resume and not args.json:
        if trainer.solved_at is not None and trainer.config.stop_when_solved:
            print(f"the run was solved at step {trainer.solved_at}; add --no-early-stop to train on", file=sys.stderr)
        elif trainer.step >= trainer.config.steps:
            print(f"the run is at step {trainer.step} of {trainer.config.steps}; give a larger --steps to go on", file=sys.stderr)
    try:
        for _ in progress(trainer, args.quiet, trainer.config.cell, args.progress_every):
            pass
    except Diverged as error:
        print(str(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        trainer.interrupted = True
        trainer.save()
    except (ValueError, TypeError) as error:  # a file of the run that cannot be written
        return fail("train", error, flags)

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


def follow(trainer: Any, flags: dict[str, str]) -> int:
    """Run `trainer` in a process other than rank 0, which speaks for the run: quietly; the exit status."""
    from lstmlab.train import Diverged

    try:
        for _ in trainer.run():
            pass
    except Diverged:
        return 1
    except (ValueError, TypeError) as error:
        return fail("train", error, flags)
    return 130 if trainer.interrupted else 0


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
