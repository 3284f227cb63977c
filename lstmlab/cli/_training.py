"""Arguments and output shared by `lstmlab train`, `compare` and `demo`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
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
    "zoneout": "--zoneout",
    "recurrent_dropout": "--recurrent-dropout",
    "weight_dropout": "--weight-dropout",
    "layer_norm": "--layer-norm",
    "backend": "--backend",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "clip": "--clip",
    "steps": "--steps",
    "seed": "--seed",
    "eval_every": "--eval-every",
    "log_every": "--log-every",
    "device": "--device",
    "max_minutes": "--max-minutes",
    "lr_schedule": "--lr-schedule",
    "warmup": "--warmup",
    "run_dir": "--out",
    "out_dir": "--out",
    "overwrite": "--overwrite",
    "resume": "--resume",
}

# what --resume may change (`lstmlab.train.RESUME_CHANGES` and how the command runs); other flags define the run
RESUME_FLAGS = ("--steps", "--lr", "--eval-every", "--no-early-stop", "--max-minutes", "--threads", "--quiet", "--text")


class Given(argparse.Action):
    """Store the value and remember that the flag was given, so that it overrides --config."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


class GivenSwitch(Given):
    """`--NAME` / `--no-NAME`: True or False, remembering that one was given (default None: not said)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=None, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, not str(option).startswith("--no-"), option)


class GivenTrue(Given):
    """`store_true`, remembering that the flag was given."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, True, option)


# the run's flags (argparse dest) -> the TrainConfig field each sets (task options apart: `TASK_FLAGS`)
CONFIG_FIELDS = {
    "task": "task",
    "hidden": "hidden",
    "layers": "layers",
    "dropout": "dropout",
    "forget_bias": "forget_bias",
    "zoneout": "zoneout",
    "recurrent_dropout": "recurrent_dropout",
    "weight_dropout": "weight_dropout",
    "layer_norm": "layer_norm",
    "backend": "backend",
    "optimizer": "optimizer",
    "lr": "lr",
    "lr_schedule": "lr_schedule",
    "warmup": "warmup",
    "weight_decay": "weight_decay",
    "clip": "clip",
    "steps": "steps",
    "max_minutes": "max_minutes",
    "seed": "seed",
    "eval_every": "eval_every",
    "log_every": "log_every",
    "no_early_stop": "stop_when_solved",
    "device": "device",
}

# a model whose largest per-step product (batch x (input + hidden) x gates*hidden multiply-adds)
# is below this trains on one thread: waking more costs more than it saves at that size
ONE_THREAD_BELOW = 1 << 22


def add_training_arguments(parser: argparse.ArgumentParser, *, steps: int = 5000) -> None:
    """The task, model and optimizer flags (the cell flags are the caller's)."""
    from lstmlab import tasks
    from lstmlab.schedule import SCHEDULES

    given, given_true = Given, GivenTrue
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="start from the settings of FILE: an earlier run's config.json, or a TOML file with the same keys; "
        "flags given as well override it",
    )
    parser.add_argument("--task", default="adding", choices=tasks.names(), action=given, help="the task (default: adding)")
    parser.add_argument(
        "--seq-len", type=int, default=None, action=given, help="sequence length or time lag T (default: the task's)"
    )
    parser.add_argument("--batch", type=int, default=None, action=given, help="sequences per batch (default: the task's, 64)")
    parser.add_argument("--text", default=None, action=given, help="text file, for tasks that read one (charlm)")
    parser.add_argument("--hidden", type=int, default=64, action=given, help="hidden units per layer (default: 64)")
    parser.add_argument("--layers", type=int, default=1, action=given, help="recurrent layers (default: 1)")
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        action=given,
        help="dropout between layers and before the readout (default: the task's, 0)",
    )
    parser.add_argument(
        "--forget-bias",
        type=float,
        default=None,
        action=given,
        help="added to the forget gate's initial bias, LSTMs with one (default: the task's; 1, charlm 0, "
        "copy and the 1997 tasks long-lag, adding-1997, temporal-order, temporal-order-3: 5)",
    )
    for flag, what in (
        ("--zoneout", "probability that each unit keeps its previous c and h at a step (Krueger et al. 2016)"),
        ("--recurrent-dropout", "dropout of h in the recurrent products, one mask per sequence (Gal & Ghahramani 2016)"),
        ("--weight-dropout", "DropConnect on the recurrent weights, one mask per batch (Merity et al. 2017)"),
    ):
        parser.add_argument(
            flag, type=float, default=None, action=given, help=f"{what}; LSTM and GRU cells (default: the task's, 0)"
        )
    parser.add_argument(
        "--layer-norm",
        "--no-layer-norm",
        dest="layer_norm",
        action=GivenSwitch,
        help="layer-normalise the gate pre-activations and the cell state (Ba et al. 2016); LSTM and GRU cells "
        "(default: the task's: on for charlm, copy and the 1997 tasks, off for the others)",
    )
    parser.add_argument("--backend", default="auto", action=given, help="backend of the recurrent module (default: auto)")
    parser.add_argument("--device", default="cpu", action=given, help="where to train: cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw"), action=given, help="(default: adam)")
    parser.add_argument("--lr", type=float, default=3e-3, action=given, help="learning rate (default: 3e-3)")
    parser.add_argument(
        "--lr-schedule",
        default=None,
        choices=SCHEDULES,
        action=given,
        help="learning rate over the run: constant; cosine down to 0 at --steps; step: /10 at half, /100 at three "
        "quarters of --steps; with --max-minutes, over the steps or the budget, whichever ends first "
        "(default: the task's: cosine for charlm, constant for the others)",
    )
    parser.add_argument(
        "--warmup", type=int, default=0, action=given, help="steps over which the learning rate rises linearly first (default: 0)"
    )
    parser.add_argument("--weight-decay", type=float, default=0.0, action=given, help="weight decay (default: 0)")
    parser.add_argument(
        "--clip", type=float, default=1.0, action=given, help="clip the gradient's global norm to this; 0: off (default: 1)"
    )
    parser.add_argument("--steps", type=int, default=None, action=given, help=f"optimizer steps at most (default: {steps})")
    parser.set_defaults(default_steps=steps)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        action=given,
        help="wall-clock budget: stop after the step that spends it, evaluate and save (default: none)",
    )
    parser.add_argument("--seed", type=int, default=0, action=given, help="seed of the initialisation and the data (default: 0)")
    parser.add_argument(
        "--eval-every", type=int, default=100, action=given, help="steps between held-out evaluations (default: 100)"
    )
    parser.add_argument(
        "--log-every", type=int, default=10, action=given, help="steps between train records in metrics.jsonl (default: 10)"
    )
    parser.add_argument("--no-early-stop", action=given_true, help="keep training after the task is solved")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for small models, whose per-step product is under 4M multiply-adds, "
        "e.g. 64 units at batch 64; torch's choice for larger ones)",
    )
    parser.add_argument(
        "--progress-every",
        type=int,
        default=None,
        metavar="N",
        help="when stderr is not a terminal, print a progress line every N steps (default: --eval-every)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or progress lines")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace the run(s) that --out already holds")


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The task options the flags give (those given; `TrainConfig.check` checks them)."""
    options = {}
    for option in TASK_FLAGS:
        value = getattr(args, option if option != "batch_size" else "batch")
        if value is not None:
            options[option] = value
    return options


def read_config_file(command: str, path: str) -> dict[str, Any]:
    """The TrainConfig fields held in `path`: a run's config.json (its other keys are ignored) or a TOML file."""
    from lstmlab.errors import InvalidArgument
    from lstmlab.train import TrainConfig

    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise InvalidArgument(command, "--config", f"must be a readable file; got {path!r} ({error.strerror})") from None
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise InvalidArgument(command, "--config", f"TOML needs Python 3.11 or later; got {path!r}") from None
            values = tomllib.loads(raw.decode("utf-8"))
        else:
            values = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise InvalidArgument(command, "--config", f"must hold a {kind} object; got {path!r} ({error})") from None
    if not isinstance(values, dict):
        raise InvalidArgument(command, "--config", f"must hold a JSON object; got {path!r} with a {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown and path.endswith(".toml"):  # a hand-written file: a misspelt key would be silently ignored
        raise InvalidArgument(
            command,
            "--config",
            f"must use only TrainConfig fields ({', '.join(sorted(names))}); {path!r} has {', '.join(unknown)}",
        )
    return {key: value for key, value in values.items() if key in names}


def train_config(command: str, args: argparse.Namespace, cell: str) -> Any:
    """The TrainConfig of the flags over --config's file, checked (errors name the library's
    arguments: see `FLAGS`); sets the torch threads (`choose_threads`)."""
    from lstmlab.train import TrainConfig

    given = getattr(args, "given", set())
    if args.progress_every is not None:
        _checks.positive_int(command, "--progress-every", args.progress_every)
    flags = {field: getattr(args, dest) for dest, field in CONFIG_FIELDS.items()}
    flags["stop_when_solved"] = not args.no_early_stop
    flags["steps"] = args.steps if args.steps is not None else args.default_steps
    values = read_config_file(command, args.config) if args.config is not None else {}
    if "task" in given and values.get("task", args.task) != args.task:
        # another task: the file's task options (and the forget bias it filled in from its task) do not apply
        values.pop("task_options", None)
        values.pop("forget_bias", None)
    for dest, field in CONFIG_FIELDS.items():
        if dest in given or field not in values:
            values[field] = flags[field]
    check_task_flags(command, values["task"], args)
    options = values.get("task_options") or {}
    values["task_options"] = {**(options if isinstance(options, dict) else {}), **task_options(args)}
    if "cell" in given or "cell" not in values:  # the caller's cell, unless --config names one and no --cell was given
        values["cell"] = cell
    config = TrainConfig.from_dict(values).check()
    choose_threads(command, args, config)
    return config


def check_task_flags(command: str, task: str, args: argparse.Namespace) -> None:
    """InvalidArgument naming a task flag given for a task that lacks its option, and the flags the task takes."""
    from lstmlab import tasks
    from lstmlab.errors import InvalidArgument

    if task not in tasks.names():
        return  # TrainConfig.check says so
    accepted = tasks.option_names(task)
    for option, flag in TASK_FLAGS.items():
        if option in task_options(args) and option not in accepted:
            takes = [f for o, f in TASK_FLAGS.items() if o in accepted]
            raise InvalidArgument(
                command, flag, f"does not apply to task {task!r}; its flags are {', '.join(takes) if takes else '(none)'}"
            )


def default_threads(config: Any) -> int | None:
    """1 for a model whose largest per-step product is small (see `ONE_THREAD_BELOW`); None (torch's choice) otherwise."""
    from lstmlab import tasks

    task = tasks.get(config.task, **config.task_options)
    batch = getattr(task, "batch_size", 64)
    gates = {"rnn": 1, "rnn-relu": 1, "gru": 3, "gru-before": 3}.get(config.cell, 4)
    work = batch * (max(task.input_size, config.hidden) + config.hidden) * gates * config.hidden
    return 1 if work < ONE_THREAD_BELOW else None


def choose_threads(command: str, args: argparse.Namespace, config: Any) -> None:
    """Set torch's CPU threads: --threads if given, else `default_threads(config)` (on a CPU run)."""
    if args.threads is not None:
        set_threads(command, args.threads)
    elif config.device == "cpu" and default_threads(config) is not None:
        set_threads(command, default_threads(config))


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


def progress(trainer: Any, quiet: bool, label: str = "", every: int | None = None) -> Iterator[dict[str, Any]]:
    """trainer.run()'s records, with progress on stderr unless `quiet`: on a terminal a bar (loss, the
    task's metric, rate) left on screen at the end; otherwise a plain line every `every` steps
    (default: the run's eval_every) and at the last step (`progress_line`)."""
    from tqdm import tqdm

    metric = trainer.task.metric
    terminal = sys.stderr.isatty()
    every = every or trainer.config.eval_every
    bar = tqdm(total=trainer.config.steps, initial=trainer.step, desc=label or None, disable=quiet or not terminal, unit="step")
    postfix: dict[str, str] = {}
    window_loss, window_steps = 0.0, 0
    start_step, start = trainer.step, time.perf_counter()
    with contextlib.closing(bar):
        for record in trainer.run():
            if record["kind"] == "step":
                bar.update(1)
                window_loss, window_steps = window_loss + record["loss"], window_steps + 1
                if not quiet and not terminal and record["step"] % every == 0:
                    done = record["step"] - start_step
                    rate = done / max(time.perf_counter() - start, 1e-9)
                    line = progress_line(label, record["step"], trainer, window_loss / window_steps, rate)
                    print(line, file=sys.stderr, flush=True)
                    window_loss, window_steps = 0.0, 0
            elif record["kind"] == "train":
                postfix["loss"] = f"{record['loss']:.4g}"
                bar.set_postfix(postfix, refresh=False)
            elif record["kind"] == "eval":
                postfix[f"val {metric}"] = f"{record[metric]:.4g}"
                bar.set_postfix(postfix, refresh=False)
            yield record
        if not quiet and not terminal and window_steps:  # the last step, unless a line just said it
            rate = (trainer.step - start_step) / max(time.perf_counter() - start, 1e-9)
            print(progress_line(label, trainer.step, trainer, window_loss / window_steps, rate), file=sys.stderr, flush=True)


def progress_line(label: str, step: int, trainer: Any, loss: float, rate: float) -> str:
    """`LABEL step S/N  loss L  val METRIC V  R steps/s  eta T`: the mean loss since the last line,
    the last held-out metric, and the time left at this rate (within --max-minutes if it is sooner)."""
    config = trainer.config
    left = (config.steps - step) / rate if rate > 0 else math.inf
    if config.max_minutes is not None:
        left = min(left, max(config.max_minutes * 60 - trainer.seconds, 0.0))
    parts = [f"{label + ' ' if label else ''}step {step}/{config.steps}", f"loss {loss:.4g}"]
    last = trainer.last_eval or {}
    metric = trainer.task.metric
    if last.get(metric) is not None:
        parts.append(f"val {metric} {last[metric]:.4g}")
    parts += [f"{rate:.3g} steps/s", f"eta {_duration(left)}"]
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table of `rows` with (key, heading) columns."""
    cells = [[heading for _, heading in columns]] + [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
