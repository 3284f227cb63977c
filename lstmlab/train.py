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
  step, config and the task's `state_dict()`, written atomically (temporary file,
  then `os.replace`), so a kill at any moment leaves the last good one.

Determinism: the batch of step s is a pure function of (task options, seed, s) (see
`lstmlab.tasks.base`) and the checkpoint holds everything else that changes, so
`Trainer.resume(run_dir)` continues with bit-identical losses.

Stopping: when the task's success criterion holds at an evaluation (if
`stop_when_solved`), at `steps`, after the step that spends the wall-clock budget
`max_minutes` (that step is logged and evaluated as a last one), on KeyboardInterrupt
(the state of the last finished step is saved; `interrupted` is set), or with
`Diverged` when the loss or gradient norm stops being finite (nothing is saved: the
last good checkpoint stays).

Learning rate: `lr` shaped by `lr_schedule` and `warmup` (`lstmlab.schedule`), set
before each update from the step alone, so a resumed run gets the same rates.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstmlab import __version__, _checks, tasks
from lstmlab.errors import InvalidArgument, LstmlabError
from lstmlab.models import SequenceModel, cell_name, detach_state, num_parameters
from lstmlab.schedule import SCHEDULES, learning_rate
from lstmlab.tasks.base import Batch, Task

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
OPTIMIZERS = ("adam", "adamw")


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
    dropout: float = 0.0
    forget_bias: float | None = None  # None: the task's (`Task.forget_bias`)
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
    lr_schedule: str = "constant"  # `lstmlab.schedule.SCHEDULES`
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
        _checks.probability(owner, "dropout", self.dropout)
        task = tasks.get(self.task, **self.task_options)
        if self.forget_bias is None:
            self.forget_bias = task.forget_bias
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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config from `asdict(config)` (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


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


def _creation_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the process's umask (mkstemp's 0o600 ignores it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomic(path: Path, write: Any) -> None:
    """Call write(file) on a temporary file beside `path`, then move it into place (replacing
    the entry at `path`: a symbolic link there is replaced, never followed). The file gets
    the mode the user's umask gives new files."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _creation_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Trainer:
    """Trains `config` and keeps its run directory (if `run_dir` is given).

    A fresh run refuses a directory that already holds a checkpoint; use `resume`.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path | None = None, *, _checkpoint: dict | None = None) -> None:
        self.config = config.check()
        self.task = tasks.get(config.task, **config.task_options)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if _checkpoint is not None:
            self.task.load_state_dict(_checkpoint["task"])
        torch.manual_seed(config.seed)
        self.model = build_model(config, self.task)
        self.optimizer = build_optimizer(config, self.model)
        self.step = 0
        self.seconds = 0.0
        self.carry: Any = None
        self.last_eval: dict[str, Any] | None = None
        self.solved_at: int | None = None
        self.interrupted = False
        self.checkpoint_step: int | None = None
        self._in_update = False
        if _checkpoint is not None:
            self._restore(_checkpoint)
        elif self.run_dir is not None:
            if (self.run_dir / CHECKPOINT).exists():
                held = f"got {str(self.run_dir)!r}, which already holds a run (resume it or choose another)"
                raise InvalidArgument("train", "run_dir", f"must be new; {held}")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / METRICS).write_text("")
            self._write_config()

    # -- run directory -------------------------------------------------------------

    @classmethod
    def resume(cls, run_dir: str | Path, *, steps: int | None = None) -> Trainer:
        """The trainer of the run in `run_dir`, at its last checkpoint; `steps` raises the budget."""
        run_dir = Path(run_dir)
        checkpoint = read_checkpoint(run_dir)
        config = TrainConfig.from_dict(checkpoint["config"])
        if steps is not None:
            config.steps = steps
        trainer = cls(config, run_dir, _checkpoint=checkpoint)
        # records written after the checkpoint would be repeated by the continuation
        path = run_dir / METRICS
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= trainer.step]
        _write_atomic(path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))
        trainer._write_config()
        return trainer

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
            "lstmlab": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }

    def _write_config(self) -> None:
        assert self.run_dir is not None
        text = json.dumps(self.describe(), indent=2) + "\n"
        _write_atomic(self.run_dir / CONFIG, lambda f: f.write(text.encode()))

    def _log(self, record: dict[str, Any]) -> None:
        if self.run_dir is not None:
            with open(self.run_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- checkpoints ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: what `checkpoint.pt` holds."""
        return {
            "format": 1,
            "config": asdict(self.config),
            "step": self.step,
            "seconds": self.seconds,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "carry": self.carry,
            "task": self.task.state_dict(),
            "last_eval": self.last_eval,
            "solved_at": self.solved_at,
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["torch_rng"])
        self.step = checkpoint["step"]
        self.seconds = checkpoint["seconds"]
        self.carry = checkpoint["carry"]
        self.last_eval = checkpoint["last_eval"]
        self.solved_at = checkpoint["solved_at"]
        self.checkpoint_step = self.step

    def save(self) -> bool:
        """Write the checkpoint atomically; False (nothing written) when there is no run
        directory or the state is between two halves of an update."""
        if self.run_dir is None or self._in_update:
            return False
        state = self.state()
        _write_atomic(self.run_dir / CHECKPOINT, lambda f: torch.save(state, f))
        self.checkpoint_step = self.step
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

    def run(self) -> Iterator[dict[str, Any]]:
        """Train until solved, out of steps or interrupted, yielding records.

        Every step yields `{"kind": "step", "step", "loss", "grad_norm"}`; the logged
        records (`kind` "train" and "eval", as in metrics.jsonl) are yielded too.
        Raises `Diverged` on a non-finite loss or gradient norm.
        """
        config, task, model = self.config, self.task, self.model
        params = [p for p in model.parameters() if p.requires_grad]
        clip = config.clip if config.clip > 0 else math.inf
        checkpoint_every = config.checkpoint_every or config.eval_every
        window_loss, window_norm, window_steps = 0.0, 0.0, 0
        clock, base = time.perf_counter(), self.seconds
        window_start = base

        def elapsed() -> float:
            return base + (time.perf_counter() - clock)

        if self.last_eval is None:
            record = {"kind": "eval", "step": self.step, "seconds": round(elapsed(), 3), **self.evaluate()}
            self.last_eval = record
            if record["solved"]:
                self.solved_at = self.step
            self._log(record)
            yield record
        if self.solved_at is not None and config.stop_when_solved:
            return
        model.train()
        try:
            while self.step < config.steps and not self.out_of_time():
                batch = _batch_to(task.train_batch(self.step, config.seed), config.device)
                outputs, final = model(batch.inputs, self.carry if batch.continues else None)
                loss = task.loss(outputs, batch)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise self._diverged("loss", value)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(nn.utils.clip_grad_norm_(params, clip))
                if not math.isfinite(norm):
                    raise self._diverged("gradient norm", norm)
                for group in self.optimizer.param_groups:
                    group["lr"] = learning_rate(config.lr, config.lr_schedule, self.step, config.steps, config.warmup)
                self._in_update = True
                self.optimizer.step()
                self.carry = detach_state(final)
                self.step += 1
                self.seconds = elapsed()
                self._in_update = False

                step = self.step
                last = step == config.steps or self.out_of_time()  # the last step: log and evaluate it
                yield {"kind": "step", "step": step, "loss": value, "grad_norm": norm}
                window_loss, window_norm, window_steps = window_loss + value, window_norm + norm, window_steps + 1
                if step % config.log_every == 0 or last:
                    now = elapsed()
                    record = {
                        "kind": "train",
                        "step": step,
                        "loss": window_loss / window_steps,
                        "grad_norm": window_norm / window_steps,
                        "steps_per_second": round(window_steps / max(now - window_start, 1e-9), 2),
                        "seconds": round(now, 3),
                    }
                    window_loss, window_norm, window_steps, window_start = 0.0, 0.0, 0, now
                    self._log(record)
                    yield record
                if step % config.eval_every == 0 or last:
                    record = {"kind": "eval", "step": step, "seconds": round(elapsed(), 3), **self.evaluate()}
                    self.last_eval = record
                    self._log(record)
                    if record["solved"] and self.solved_at is None:
                        self.solved_at = step
                    yield record
                    if record["solved"] and config.stop_when_solved:
                        break
                if step % checkpoint_every == 0:
                    self.save()
                if last:
                    break
        except KeyboardInterrupt:
            self.interrupted = True
        if self.checkpoint_step != self.step:
            self.save()  # the final state, unless an interrupt cut an update in half

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


def read_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint of the run in `run_dir`."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise InvalidArgument("train", "run_dir", f"must hold {CHECKPOINT}; got {str(run_dir)!r} without one")
    return torch.load(path, map_location="cpu", weights_only=True)


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
    config = TrainConfig.from_dict(checkpoint["config"])
    config.device = device
    task = tasks.get(config.task, **config.task_options)
    task.load_state_dict(checkpoint["task"])
    model = build_model(config, task)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return LoadedRun(model=model, task=task, config=config, step=checkpoint["step"], checkpoint=checkpoint)
