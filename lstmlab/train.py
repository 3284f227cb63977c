"""The training loop: one trainer for every task, with run directories and checkpoints.

    trainer = Trainer(TrainConfig(task="adding", cell="lstm", task_options={"seq_len": 50}), "runs/a")
    for record in trainer.run():   # one record per step, and the logged ones
        ...
    trainer.summary()

A run directory holds
- `config.json`: the `TrainConfig`, the task's metric and baseline, the model's size
  and active backend, library versions;
- `metrics.jsonl`: one JSON object per line, `{"kind": "train", ...}` every
  `log_every` steps (mean loss and gradient norm, rate) and `{"kind": "eval", ...}`
  every `eval_every` steps (the task's held-out metrics and whether it is solved);
- `checkpoint.pt`: model, optimiser, torch RNG state, carried recurrent state,
  step, config, the task's `state_dict()`, the running means of the next train
  record and whether the step's evaluation is still due, written atomically
  (temporary file, then `os.replace`), so a kill at any moment leaves the last good one.

One process at a time owns a run directory (`lstmlab.run_dir.RunLock`, released by
`Trainer.close()` or when the process ends); a second trainer on it is refused.

Determinism: the batch of step s is a pure function of (task options, seed, s) (see
`lstmlab.tasks.base`) and the checkpoint holds everything else that changes, so
`Trainer.resume(run_dir)` continues with bit-identical losses, and metrics.jsonl ends
as an uninterrupted run's would (but for the timings).

Stopping: when the task's success criterion holds at an evaluation (if
`stop_when_solved`), at `steps`, after the step that spends the wall-clock budget
`max_minutes` (that step is logged and evaluated as a last one), on KeyboardInterrupt
(the state of the last finished step is saved, with the RNG state from before the
interrupted step; a Ctrl-C during the optimiser's update is held until the update ends;
`interrupted` is set), or with `Diverged` when the loss or gradient norm stops being
finite (nothing is saved: the last good checkpoint stays). A file-system error (a full
disk, a read-only directory) stops the run with an `InvalidArgument` about `run_dir` that
names the file; the last complete checkpoint stays.

Several processes (`world`, a `lstmlab.distributed.World`): DistributedDataParallel, each
process training on its share of the (global) batch; rank 0 alone evaluates, writes the
run directory and owns its lock; config.json records `world_size` and `dist_backend`, and
a resume must have the run's number of processes. See `lstmlab.distributed`.

Learning rate: `lr` shaped by `lr_schedule` and `warmup` (`lstmlab.schedule`), set
before each update from the step and, in a run with `max_minutes`, the share of the budget
spent (the processes of a multi-process run use the time they agreed on at the last step),
so that a schedule spans the budget; a resumed run continues the schedule where it was.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstmlab import __version__, _checks, tasks
from lstmlab._interrupts import deferred_interrupts, noted_interrupts
from lstmlab.distributed import World, check_batch, check_resume
from lstmlab.errors import InvalidArgument, LstmlabError
from lstmlab.models import SequenceModel, cell_name, detach_state, num_parameters
from lstmlab.run_dir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    RUN_FILES,
    RunLock,
    append_line,
    checkpoint_problem,
    read_checkpoint,
    read_metrics,
    remove_temporary_files,
    run_dir_error,
    write_atomic,
)
from lstmlab.schedule import SCHEDULES, learning_rate
from lstmlab.tasks.base import Batch, Task

OPTIMIZERS = ("adam", "adamw")
# the settings a resumed run may change (`Trainer.resume`); every other field defines the run
RESUME_CHANGES = ("steps", "lr", "stop_when_solved", "eval_every", "max_minutes")


class Diverged(LstmlabError, RuntimeError):
    """The loss or the gradient norm (the `argument`) stopped being finite; training stopped."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Task options go to `lstmlab.tasks.get`."""

    task: str = "adding"
    task_options: dict[str, Any] = field(default_factory=dict)
    cell: str = "lstm"
    hidden: int = 64
    layers: int = 1
    dropout: float | None = None  # between layers and before the readout; None: the task's (`Task.regularisers`)
    forget_bias: float | None = None  # None: the task's (`Task.forget_bias`)
    # the regularisers of `lstmlab.cells.regularisers` (LSTM and GRU cells); None: the task's (`Task.regularisers`)
    zoneout: float | None = None
    recurrent_dropout: float | None = None
    weight_dropout: float | None = None
    layer_norm: bool | None = None
    backend: str = "auto"
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    steps: int = 5000
    seed: int = 0
    eval_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 0
    stop_when_solved: bool = True
    device: str = "cpu"
    max_minutes: float | None = None  # wall-clock budget of the run (resumes included); None: none
    lr_schedule: str | None = None  # `lstmlab.schedule.SCHEDULES`; None: the task's (`Task.lr_schedule`)
    warmup: int = 0  # steps of linear warm-up of the learning rate

    def check(self) -> TrainConfig:
        """Raise an `lstmlab.errors.LstmlabError` naming the field (or the task option), the
        rule and the value; return self. The task is built to check its options (cheap: tasks
        read their data on first use)."""
        owner = "train"
        if self.task not in tasks.names():
            raise InvalidArgument(owner, "task", f"must be one of {', '.join(tasks.names())}; got {self.task!r}")
        self.cell = cell_name(self.cell)
        for name in ("hidden", "layers", "steps", "eval_every", "log_every"):
            _checks.positive_int(owner, name, getattr(self, name))
        _checks.non_negative_int(owner, "checkpoint_every", self.checkpoint_every)
        _checks.non_negative_int(owner, "warmup", self.warmup)
        if self.lr_schedule is not None:
            _checks.one_of(owner, "lr_schedule", self.lr_schedule, SCHEDULES)
        if self.max_minutes is not None and (
            isinstance(self.max_minutes, bool)
            or not isinstance(self.max_minutes, (int, float))
            or not self.max_minutes > 0
            or not math.isfinite(self.max_minutes)
        ):
            got = f"got {self.max_minutes!r}"
            raise InvalidArgument(owner, "max_minutes", f"must be a positive number of minutes (or None); {got}")
        self.device = check_device(owner, self.device)
        _checks.non_negative_int(owner, "seed", self.seed)
        _checks.one_of(owner, "optimizer", self.optimizer, OPTIMIZERS)
        if isinstance(self.task_options.get("text"), str):  # a file: stored resolved, so a resume elsewhere finds it
            self.task_options = {**self.task_options, "text": str(Path(self.task_options["text"]).resolve())}
        task = tasks.get(self.task, **self.task_options)
        if self.forget_bias is None:
            self.forget_bias = task.forget_bias
        if self.lr_schedule is None:
            self.lr_schedule = task.lr_schedule
        self._check_regularisers(task)
        for name in ("lr", "weight_decay", "clip", "forget_bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidArgument(owner, name, f"must be a finite number; got {value!r}")
        if self.lr <= 0:
            raise InvalidArgument(owner, "lr", f"must be positive; got {self.lr!r}")
        for name in ("weight_decay", "clip"):
            if getattr(self, name) < 0:
                raise InvalidArgument(owner, name, f"must be non-negative (0 turns it off); got {getattr(self, name)!r}")
        return self

    def _check_regularisers(self, task: Task) -> None:
        """Fill dropout and the regularisers left None from the task's, and check them against the cell."""
        owner = "train"
        for name, off in REGULARISERS_OFF.items():
            if getattr(self, name) is None:  # the task's, where this cell can take it (else off)
                setattr(self, name, task.regularisers.get(name, off) if self._cell_takes(name) else off)
        for name in ("dropout", "zoneout", "recurrent_dropout", "weight_dropout"):
            setattr(self, name, _checks.probability(owner, name, getattr(self, name)))
        _checks.boolean(owner, "layer_norm", self.layer_norm)
        for name, off in REGULARISERS_OFF.items():
            if getattr(self, name) != off and not self._cell_takes(name):
                if name == "layer_norm" and self.cell == "gru-before":
                    raise InvalidArgument(owner, name, "needs the GRU's reset='after' (cell gru); got cell 'gru-before'")
                raise InvalidArgument(owner, name, f"applies to LSTM and GRU cells; got cell {self.cell!r}")

    def _cell_takes(self, name: str) -> bool:
        """Whether `cell` has the regulariser `name` (dropout: every cell; the rest: LSTM and GRU;
        layer_norm: not the GRU with reset before)."""
        if name == "dropout":
            return True
        if self.cell in ("rnn", "rnn-relu"):
            return False
        return not (name == "layer_norm" and self.cell == "gru-before")

    def regularisers(self) -> dict[str, Any]:
        """The regulariser options of the recurrent module (`lstmlab.LSTM`'s keyword arguments) that are on."""
        return {
            name: getattr(self, name)
            for name, off in REGULARISERS_OFF.items()
            if name != "dropout" and getattr(self, name) not in (None, off)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config from `asdict(config)` (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> TrainConfig:
        """The config a run stored (its checkpoint's or config.json's): as `from_dict`, and a
        regulariser it does not name was off (the run was written before the option existed)."""
        return cls.from_dict({**REGULARISERS_OFF, **values})


# the regulariser fields of TrainConfig (dropout, then the recurrent module's own) and the value that turns each off
REGULARISERS_OFF: dict[str, Any] = {
    "dropout": 0.0,
    "zoneout": 0.0,
    "recurrent_dropout": 0.0,
    "weight_dropout": 0.0,
    "layer_norm": False,
}


def check_device(owner: str, device: Any) -> str:
    """`device` ("cpu", "cuda", "cuda:N") as torch names it; InvalidArgument naming "device" when it
    is not one of those or this machine has no such device."""
    try:
        parsed = torch.device(device) if isinstance(device, str) else None
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda") or (parsed.type == "cpu" and parsed.index not in (None, 0)):
        raise InvalidArgument(owner, "device", f"must be cpu, cuda or cuda:N; got {device!r}")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            got = f"got {device!r}, and torch sees no CUDA device"
            raise InvalidArgument(owner, "device", f"must be a device this machine has; {got}")
        if parsed.index is not None and parsed.index >= count:
            got = f"got {device!r}"
            raise InvalidArgument(owner, "device", f"must be a device this machine has (cuda:0 to cuda:{count - 1}); {got}")
    return str(parsed)


def build_model(config: TrainConfig, task: Task) -> SequenceModel:
    """The model `config` describes, sized for `task` (initialised from the global torch RNG)."""
    return SequenceModel(
        config.cell,
        task.input_size,
        task.output_size,
        config.hidden,
        config.layers,
        token_inputs=task.token_inputs,
        dropout=config.dropout,
        forget_bias=config.forget_bias,
        backend=config.backend,
        regularisers=config.regularisers(),
    ).to(config.device)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _batch_to(batch: Batch, device: str) -> Batch:
    if device == "cpu":
        return batch
    move = lambda t: None if t is None else t.to(device)
    return Batch(
        inputs=move(batch.inputs),
        targets=move(batch.targets),
        mask=move(batch.mask),
        lengths=move(batch.lengths),
        continues=batch.continues,
        extra={k: v.to(device) for k, v in batch.extra.items()},
    )


def _new_window(seconds: float) -> dict[str, float]:
    """The running sums of the next train record, opened at `seconds`."""
    return {"loss": 0.0, "grad_norm": 0.0, "steps": 0, "start": seconds}


class Trainer:
    """Trains `config` and keeps its run directory (if `run_dir` is given).

    A fresh run refuses a directory that already holds a checkpoint (use `resume`), unless
    `overwrite`, which removes the run's files first. The trainer owns its run directory
    until `close()` (a context manager closes it too); another trainer on the same
    directory, in this process or another, is refused meanwhile.

    world: this process's place in a run of several (`lstmlab.distributed.join`); every
    process makes its trainer with the same config and run directory, and rank 0 owns it.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        *,
        overwrite: bool = False,
        world: World | None = None,
        _checkpoint: dict | None = None,
        _lock: RunLock | None = None,
    ) -> None:
        self._lock = _lock
        self.world = world or World()
        if _checkpoint is None:  # (a resume builds the trainer in every process or in none itself)
            self.world.together(lambda: self._start(config, run_dir, overwrite, None), lambda _: self.close())
        else:
            self._start(config, run_dir, overwrite, _checkpoint)

    def _start(self, config: TrainConfig, run_dir: str | Path | None, overwrite: bool, checkpoint: dict | None) -> None:
        try:
            self._setup(config, run_dir, overwrite, checkpoint)
        except BaseException:
            self.close()
            raise

    def _setup(self, config: TrainConfig, run_dir: str | Path | None, overwrite: bool, checkpoint: dict | None) -> None:
        self.config = config.check()
        self.task = tasks.get(config.task, **config.task_options)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if checkpoint is not None:
            self.task.load_state_dict(checkpoint["task"])
        torch.manual_seed(config.seed)
        self.model = build_model(config, self.task)
        self.optimizer = build_optimizer(config, self.model)
        check_batch(getattr(self.task, "batch_size", None), self.world)
        self._ddp: nn.Module | None = None  # the model in DistributedDataParallel, made by the first `run`
        self.step = 0
        self.seconds = 0.0
        self.carry: Any = None
        self.last_eval: dict[str, Any] | None = None
        self.solved_at: int | None = None
        self.interrupted = False
        self.checkpoint_step: int | None = None
        self.eval_pending = True  # the evaluation of `step` is still to be done (at step 0: the first one)
        self.window = _new_window(0.0)
        self._in_update = False
        self._unsaved = True
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.run_dir is not None and self.world.rank == 0:
            self._claim(overwrite)

    def _claim(self, overwrite: bool) -> None:
        """Make the (fresh) run directory and own it: a run already there is refused, or removed with `overwrite`."""
        assert self.run_dir is not None
        held = f"got {str(self.run_dir)!r}, which already holds a run (resume it, overwrite it or choose another)"
        if not overwrite and (self.run_dir / CHECKPOINT).exists():
            raise InvalidArgument("train", "run_dir", f"must be new; {held}")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise run_dir_error("train", self.run_dir, error, "created") from None
        if not self.run_dir.is_dir():
            raise InvalidArgument("train", "run_dir", f"must be a directory; got {str(self.run_dir)!r}, which is a file")
        self._lock = RunLock.acquire(self.run_dir)
        if not overwrite and (self.run_dir / CHECKPOINT).exists():  # a run that ended while we waited for the lock
            raise InvalidArgument("train", "run_dir", f"must be new; {held}")
        remove_temporary_files(self.run_dir)
        try:
            if overwrite:
                for name in RUN_FILES:
                    (self.run_dir / name).unlink(missing_ok=True)
            (self.run_dir / METRICS).write_text("")
        except OSError as error:
            raise run_dir_error("train", self.run_dir / METRICS, error, "written") from None
        self._write_config()

    def close(self) -> None:
        """Give the run directory up (the lock) and, with several processes, the model's
        DistributedDataParallel wrapper (while the process group lives); the trainer may still
        be read, not run."""
        if self._lock is not None:
            self._lock.release()
        self._ddp = None

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- run directory -------------------------------------------------------------

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        text: str | None = None,
        settings: dict[str, Any] | None = None,
        world: World | None = None,
        **changes: Any,
    ) -> Trainer:
        """The trainer of the run in `run_dir`, at its last checkpoint.

        changes: new values of the settings in `RESUME_CHANGES` (`steps` raises the budget,
        also of a finished run; `lr`, `stop_when_solved`, `eval_every`, `max_minutes`); those that differ
        from the run's are noted in metrics.jsonl as a `{"kind": "resume", ...}` record,
        with `settings` (e.g. `{"threads": 1}`, for the record only).
        text: the corpus of a run that reads one (charlm), where it is now, if it moved; the
        corpus must be the one the run trained on (its content's hash is in the checkpoint).
        world: this process's place in a run of several (`lstmlab.distributed`); the run must
        have been trained by as many processes.
        """
        world = world or World()
        return world.together(lambda: cls._resume(run_dir, text, settings, world, changes), lambda trainer: trainer.close())

    @classmethod
    def _resume(
        cls, run_dir: str | Path, text: str | None, settings: dict[str, Any] | None, world: World, changes: dict[str, Any]
    ) -> Trainer:
        for name in changes:
            if name not in RESUME_CHANGES:
                rule = f"cannot change on resume (only {', '.join(RESUME_CHANGES)} can); it defines the run"
                raise InvalidArgument("train", name, rule)
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            read_checkpoint(run_dir)  # the message for a missing run
        lock = RunLock.acquire(run_dir) if world.rank == 0 else None
        try:
            if lock is not None:
                remove_temporary_files(run_dir)
            checkpoint = read_checkpoint(run_dir)
            check_resume(run_dir, checkpoint.get("world_size", 1), world)
            config = _from_checkpoint(run_dir, lambda: TrainConfig.from_stored(checkpoint["config"]).check())
            stored = asdict(config)
            for name, value in changes.items():
                if value is not None:
                    setattr(config, name, value)
            if text is not None:
                config.task_options = {**config.task_options, "text": text}
            config.check()
            trainer = _from_checkpoint(run_dir, lambda: cls(config, run_dir, world=world, _checkpoint=checkpoint, _lock=lock))
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            trainer.task.verify_state(checkpoint["task"])
            if world.rank != 0:
                return trainer
            trainer._trim_metrics(checkpoint)
            changed = {
                k: {"from": stored[k], "to": v} for k, v in asdict(trainer.config).items() if k in changes and stored[k] != v
            }
            if changed or settings:
                trainer._log({"kind": "resume", "step": trainer.step, "changed": changed, **(settings or {})})
            trainer._write_config()
        except BaseException:
            trainer.close()
            raise
        return trainer

    def _trim_metrics(self, checkpoint: dict[str, Any]) -> None:
        """Rewrite metrics.jsonl with the records up to the checkpoint only: the continuation
        writes the later ones again (a torn last line is dropped)."""
        assert self.run_dir is not None
        path = self.run_dir / METRICS

        def kept(record: dict[str, Any]) -> bool:
            step = record.get("step", 0)
            if not isinstance(step, int) or step > self.step:
                return False
            return not (step == self.step and self.eval_pending and record.get("kind") == "eval")

        lines = "".join(json.dumps(r) + "\n" for r in read_metrics(path) if kept(r))
        try:
            write_atomic(path, lambda f: f.write(lines.encode()))
        except OSError as error:
            raise run_dir_error("train", path, error, "written") from None

    def describe(self) -> dict[str, Any]:
        """The run's settings and context, as config.json holds them."""
        return {
            **asdict(self.config),
            "task_options": {**tasks.option_defaults(self.config.task), **self.config.task_options},
            "metric": self.task.metric,
            "higher_is_better": self.task.higher_is_better,
            "baseline": self.task.baseline,
            "parameters": num_parameters(self.model),
            "active_backend": self.model.active_backend,
            "world_size": self.world.size,
            "dist_backend": self.world.backend,
            "lstmlab": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }

    def _write_config(self) -> None:
        assert self.run_dir is not None
        text = json.dumps(self.describe(), indent=2) + "\n"
        path = self.run_dir / CONFIG
        try:
            write_atomic(path, lambda f: f.write(text.encode()))
        except OSError as error:
            raise run_dir_error("train", path, error, "written") from None

    def _log(self, record: dict[str, Any]) -> None:
        if self.run_dir is not None and self.world.rank == 0:
            path = self.run_dir / METRICS
            try:
                append_line(path, json.dumps(record))
            except OSError as error:
                raise run_dir_error("train", path, error, "written") from None

    # -- checkpoints ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: what `checkpoint.pt` holds."""
        return {
            "format": 2,
            "config": asdict(self.config),
            "step": self.step,
            "seconds": self.seconds,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "carry": self.world.gather_state(self.carry),
            "task": self.task.state_dict(),
            "last_eval": self.last_eval,
            "solved_at": self.solved_at,
            "eval_pending": self.eval_pending,
            "window": dict(self.window),
            "world_size": self.world.size,
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["torch_rng"])
        self.step = checkpoint["step"]
        self.seconds = float(checkpoint.get("seconds", 0.0))
        self.carry = self.world.shard_state(checkpoint.get("carry"))
        self.last_eval = checkpoint.get("last_eval")
        self.solved_at = checkpoint.get("solved_at")
        # format 1 checkpoints: evaluated at every checkpoint but the first; no window kept
        self.eval_pending = bool(checkpoint.get("eval_pending", self.last_eval is None))
        self.window = {**_new_window(self.seconds), **checkpoint.get("window", {})}
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr  # the stored one, or the one a resume changed
        self.checkpoint_step = self.step
        self._unsaved = False

    def save(self) -> bool:
        """Write the checkpoint atomically; False (nothing written) when there is no run
        directory or the state is between two halves of an update. With several processes,
        every one must call it (the carried state is gathered): rank 0 writes, and none goes
        on before the checkpoint is written."""
        if self.run_dir is None or self._in_update:
            return False
        state = self.state()
        path = self.run_dir / CHECKPOINT

        def write() -> None:
            try:
                if self.world.rank == 0:
                    write_atomic(path, lambda f: torch.save(state, f))
            except OSError as error:
                problem = run_dir_error("train", path, error, "written")
                if self.checkpoint_step is not None:
                    problem = InvalidArgument(
                        "train", "run_dir", f"{problem.detail}; the checkpoint of step {self.checkpoint_step} is kept"
                    )
                raise problem from None

        self.world.together(write, lambda _: None)
        self.checkpoint_step = self.step
        self._unsaved = False
        return True

    # -- the loop ------------------------------------------------------------------

    def predict(self, inputs: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """The model's outputs (on the CPU) and final state, without gradients, in eval mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                outputs, final = self.model(inputs.to(self.config.device), state)
        finally:
            self.model.train(was_training)
        return outputs.cpu(), final

    def evaluate(self) -> dict[str, Any]:
        """The task's held-out metrics at the current step, and whether it is solved."""
        metrics = self.task.evaluate(self.predict)
        return {**metrics, "solved": bool(self.task.solved(metrics))}

    def _diverged(self, what: str, value: float) -> Diverged:
        self._log({"kind": "diverged", "step": self.step + 1, what: str(value)})
        where = "no checkpoint was written"
        if self.run_dir is not None and (self.run_dir / CHECKPOINT).exists():
            step = read_checkpoint(self.run_dir)["step"]
            where = f"the last good checkpoint (step {step}) is {self.run_dir / CHECKPOINT}"
        settings = f"lr={self.config.lr}, clip={self.config.clip}"
        return Diverged("train", what, f"became {value} at step {self.step + 1} ({settings}); stopped; {where}")

    def _pending_evaluation(self, seconds: float) -> dict[str, Any]:
        """Evaluate at the current step, then log the record and mark the evaluation done
        (together, whatever the moment of a Ctrl-C)."""
        record = None
        if self.world.rank == 0:
            record = {"kind": "eval", "step": self.step, "seconds": round(seconds, 3), **self.evaluate()}
        if self.world.size > 1:
            record = self.world.from_rank0(record)
        assert record is not None
        with deferred_interrupts():
            self._log(record)
            self.last_eval = record
            if record["solved"] and self.solved_at is None:
                self.solved_at = self.step
            self.eval_pending = False
            self._unsaved = True
        return record

    def run(self) -> Iterator[dict[str, Any]]:
        """Train until solved, out of steps or interrupted, yielding records.

        Every step yields `{"kind": "step", "step", "loss", "grad_norm"}`; the logged
        records (`kind` "train" and "eval", as in metrics.jsonl) are yielded too.
        Raises `Diverged` on a non-finite loss or gradient norm, and InvalidArgument about
        `run_dir` when a file of the run cannot be written.

        With several processes, a Ctrl-C (in any of them) is noted and acted on by all at
        the next step, and the `seconds` are rank 0's when the step's loss is agreed.
        """
        if self.world.size == 1:
            yield from self._run([])
            return
        with noted_interrupts() as noted:
            yield from self._run(noted)

    def _run(self, noted: list[Any]) -> Iterator[dict[str, Any]]:
        """`run`'s loop; `noted`: the Ctrl-Cs a run of several processes noted instead of raising."""
        config, task, world = self.config, self.task, self.world
        if self._ddp is None and world.size > 1:
            self._ddp = world.wrap(self.model)
        model = self.model if self._ddp is None else self._ddp
        params = [p for p in model.parameters() if p.requires_grad]
        clip = config.clip if config.clip > 0 else math.inf
        checkpoint_every = config.checkpoint_every or config.eval_every
        clock, base = time.perf_counter(), self.seconds

        def elapsed() -> float:
            return base + (time.perf_counter() - clock)

        rng_before_step = None
        try:
            if self.eval_pending:
                record = self._pending_evaluation(elapsed())
                yield record
            stop = self.solved_at is not None and config.stop_when_solved
            model.train()
            while not stop and self.step < config.steps and not self.out_of_time():
                # until the update, a Ctrl-C leaves the state of the last finished step but for
                # the RNG (dropout masks drawn): keep its state to put back
                rng_before_step = torch.get_rng_state()
                batch, agreed_seconds = task.train_batch(self.step, config.seed), None
                if world.size > 1:
                    batch, share = self._share(batch)
                batch = _batch_to(batch, config.device)
                outputs, final = model(batch.inputs, self.carry if batch.continues else None)
                loss = task.loss(outputs, batch)
                value = float(loss.detach())
                if world.size > 1:  # the whole batch's loss; all processes stop together
                    loss = loss * share
                    value, interrupted, agreed_seconds = world.agree_on_step(value * share, bool(noted), elapsed())
                    if interrupted:
                        raise KeyboardInterrupt
                if not math.isfinite(value):
                    raise self._diverged("loss", value)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(nn.utils.clip_grad_norm_(params, clip))
                if not math.isfinite(norm):
                    raise self._diverged("gradient norm", norm)
                rate = learning_rate(config.lr, config.lr_schedule, self.step, config.steps, config.warmup, self.budget_spent())
                for group in self.optimizer.param_groups:
                    group["lr"] = rate
                with deferred_interrupts():  # the update and its records, whole or not at all
                    self._in_update = True
                    self.optimizer.step()
                    self.carry = detach_state(final)
                    self.step += 1
                    self.seconds = elapsed() if agreed_seconds is None else agreed_seconds
                    rng_before_step = None
                    self._in_update = False
                    self._unsaved = True
                    step, window = self.step, self.window
                    window["loss"] += value
                    window["grad_norm"] += norm
                    window["steps"] += 1
                    last = step == config.steps or self.out_of_time()  # the last step: log and evaluate it
                    train = None
                    if step % config.log_every == 0 or last:
                        train = {
                            "kind": "train",
                            "step": step,
                            "loss": window["loss"] / window["steps"],
                            "grad_norm": window["grad_norm"] / window["steps"],
                            "steps_per_second": round(window["steps"] / max(self.seconds - window["start"], 1e-9), 2),
                            "seconds": round(self.seconds, 3),
                        }
                        self.window = _new_window(self.seconds)
                        self._log(train)
                    self.eval_pending = step % config.eval_every == 0 or last
                yield {"kind": "step", "step": step, "loss": value, "grad_norm": norm}
                if train is not None:
                    yield train
                if self.eval_pending:
                    record = self._pending_evaluation(elapsed())
                    yield record
                    if record["solved"] and config.stop_when_solved:
                        break
                if step % checkpoint_every == 0:
                    self.save()
                if last:
                    break
        except KeyboardInterrupt:
            self.interrupted = True
            if rng_before_step is not None and not self._in_update:
                torch.set_rng_state(rng_before_step)  # as it was after the last finished step
        if self._unsaved:
            self.save()  # the final state, unless an interrupt cut an update in half

    def _share(self, batch: Batch) -> tuple[Batch, float]:
        """This process's shard of `batch`, and the weight of its loss: the shard's share of the
        loss's terms times the number of processes (1 for equal shares), so that DDP's mean of
        the processes' gradients is the whole batch's."""
        shard = batch.shard(self.world.rank, self.world.size)
        terms, total = self.task.loss_terms(shard), self.task.loss_terms(batch)
        return shard, 1.0 if terms * self.world.size == total else terms * self.world.size / total

    def budget_spent(self) -> float:
        """The share of the wall-clock budget (`max_minutes`) used by the last finished step; 0 without one."""
        return 0.0 if self.config.max_minutes is None else self.seconds / (self.config.max_minutes * 60)

    def out_of_time(self) -> bool:
        """Whether the run's wall-clock budget (`max_minutes`, resumes included) is spent."""
        return self.config.max_minutes is not None and self.seconds >= self.config.max_minutes * 60

    # -- results ---------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Where the run stands: steps, the primary metric against the baseline, solved, seconds."""
        last = self.last_eval or {}
        return {
            "task": self.config.task,
            "cell": self.config.cell,
            "parameters": num_parameters(self.model),
            "active_backend": self.model.active_backend,
            "steps": self.step,
            "metric": self.task.metric,
            "value": last.get(self.task.metric),
            "baseline": self.task.baseline,
            "solved": self.solved_at is not None,
            "solved_at": self.solved_at,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 2),
            "run_dir": None if self.run_dir is None else str(self.run_dir),
        }


def task_option_values(config: TrainConfig) -> dict[str, Any]:
    """Every option of the config's task: the given ones, and the defaults of the others."""
    params = inspect.signature(tasks.task_class(config.task).__init__).parameters
    return {name: config.task_options.get(name, params[name].default) for name in tasks.option_names(config.task)}


def resume_conflicts(stored: TrainConfig, wanted: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Where `wanted` differs from `stored` in what defines a run: name -> (stored value,
    wanted value), by `TrainConfig` field or task option. The settings a resume may change
    (`RESUME_CHANGES`) and the corpus's place (`text`, checked by content) are not compared."""
    differ: dict[str, tuple[Any, Any]] = {}
    for f in fields(TrainConfig):
        if f.name in (*RESUME_CHANGES, "task_options"):
            continue
        a, b = getattr(stored, f.name), getattr(wanted, f.name)
        if a != b:
            differ[f.name] = (a, b)
    if stored.task == wanted.task:
        a, b = task_option_values(stored), task_option_values(wanted)
        differ.update({k: (a[k], b[k]) for k in a if k != "text" and a[k] != b[k]})
    return differ


def conflict_error(
    owner: str, argument: str, run_dir: str | Path, conflicts: dict[str, tuple[Any, Any]], names: dict[str, str] | None = None
) -> InvalidArgument:
    """The error for a resume whose settings conflict with the stored run's (see
    `resume_conflicts`), each named as `names` (e.g. field -> flag) calls it; the error
    carries `conflicts` and `run_dir`, so that a caller can name them its own way."""
    names = names or {}
    shown = ", ".join(f"{names.get(k, k)} {b!r} (the run's: {a!r})" for k, (a, b) in conflicts.items())
    error = InvalidArgument(owner, argument, f"must continue a run as it was defined; {str(run_dir)!r} differs in {shown}")
    error.conflicts, error.run_dir = conflicts, run_dir  # type: ignore[attr-defined]
    return error


def _from_checkpoint(run_dir: str | Path, build: Any) -> Any:
    """build(), with an error that a checkpoint's content causes (a config that fails its
    checks, weights of the wrong shape) reported as a problem of the checkpoint's file."""
    try:
        return build()
    except (ValueError, TypeError, KeyError, RuntimeError, AttributeError) as error:
        raise checkpoint_problem(run_dir, error) from None


@dataclass
class LoadedRun:
    """A trained run, ready to use: the model (eval mode), its task and config."""

    model: SequenceModel
    task: Task
    config: TrainConfig
    step: int
    checkpoint: dict[str, Any]


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The model, task and config of the run in `run_dir`, from its checkpoint.

    The task is rebuilt from its stored options and given its stored `state_dict()`
    (e.g. a vocabulary) before the model is sized from it.
    """
    checkpoint = read_checkpoint(run_dir)

    def build() -> tuple[TrainConfig, Task, SequenceModel]:
        config = TrainConfig.from_stored(checkpoint["config"]).check()
        config.device = device
        task = tasks.get(config.task, **config.task_options)
        task.load_state_dict(checkpoint["task"])
        model = build_model(config, task)
        model.load_state_dict(checkpoint["model"])
        return config, task, model

    config, task, model = _from_checkpoint(run_dir, build)
    model.eval()
    return LoadedRun(model=model, task=task, config=config, step=checkpoint["step"], checkpoint=checkpoint)
