"""The Task interface: what the trainer (`lstmlab.train`) needs from a task.

A task is a pure, seeded data generator with its loss and its metrics. It never
prints, writes files or parses arguments. The trainer owns the model, the
optimiser, the loop, the checkpoints and the run directory; a task owns only the
data and what "good" means.

The contract, in the order the trainer uses it:

Construction
    `lstmlab.tasks.get(name, **options)` builds a task from keyword options
    (`seq_len`, `batch_size`, `eval_size`, ... and task-specific ones such as a
    text file). The options are stored in the run's config.json and the task is
    rebuilt from them on resume and by `lstmlab.train.load_run`, so construction
    must be cheap and must not require the data to still exist: read files lazily
    (on the first `train_batch` or `evaluate`).

Sizes (attributes, fixed after construction; may be properties that load lazily)
    `input_size`: features per step; with `token_inputs=True` the inputs are int64
        ids in [0, input_size) that the model one-hot encodes.
    `output_size`: features of the readout at every step (the model's output is
        (T, B, output_size); the task's `loss` picks the steps it scores).

Training data
    `train_batch(step, seed) -> Batch`: the batch for optimiser step `step` (0-based)
        of the run seeded `seed`. It must be a pure function of (step, seed, options):
        that is what makes a resumed run continue bit-identically. Use
        `train_rng(seed, step)` for randomness, or a cache keyed by them.
    `Batch.continues=True` says the batch continues the sequences of the batch of
        step-1 (a stateful stream, truncated BPTT): the trainer then feeds the
        previous batch's final recurrent state, detached, as the initial state.
        With False the state starts at zero. The carried state is saved in the
        checkpoint, so resuming mid-stream is exact.

Loss
    `loss(outputs, batch) -> Tensor`: a differentiable scalar, from the model's
        outputs (T, B, output_size) for `batch.inputs`.
    `loss_terms(batch) -> int`: how many terms the loss averages over (default: B);
        a task whose loss is a mean over the real steps of a padded batch says so, so
        that a multi-process run (each process scoring its `Batch.shard`) weighs its
        shards as the whole batch would.

Evaluation
    `evaluate(predict) -> dict[str, float]`: metrics on a fixed held-out set (the
        same at every call and every seed). `predict(inputs, state=None) ->
        (outputs, final_state)` runs the model without gradients in eval mode;
        a streaming task passes the state along to carry it across its chunks.
        The dict must hold the key `metric` (the primary metric) and "loss".
    `metric`: name of the primary metric, `higher_is_better` its direction.
    `baseline`: the primary metric of a memoryless predictor (the best constant or
        the best predictor that sees only the current input), or None if none applies.
    `solved(metrics) -> bool`: the task's success criterion on `evaluate`'s dict
        (always False for tasks that have none, such as language modelling).

Extra state
    `state_dict() -> dict` / `load_state_dict(state)`: what a trained model needs
        from the task without the data (e.g. a vocabulary), stored in every
        checkpoint and restored by resume and `load_run`. Plain Python values or
        tensors. Default: nothing.
    `verify_state(state)`: raise if the data the task reads differs from the data
        `state` was taken from (a resume checks it). Default: nothing to check.

`SupervisedTask` implements `train_batch` and `evaluate` for tasks of independent
sequences from `make_batch(rng, size)` and `metrics(outputs, batch)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from lstmlab.errors import InvalidArgument

State = Any  # a Tensor or a tuple of Tensors, as the recurrent module returns it
Predict = Callable[..., tuple[Tensor, State]]

_TRAIN_STREAM = 0x7A1

LONG_LAG_DEFAULTS: dict[str, Any] = {"forget_bias": 5.0, "regularisers": {"layer_norm": True}}
"""The LSTM's defaults for the tasks of Hochreiter & Schmidhuber 1997 at the paper's lags (long-lag,
adding-1997, temporal-order, temporal-order-3) and for the copy task of Arjovsky et al. 2016
(`copy`), measured in docs/papers.md:

- forget bias 5: at initialisation the forget gate passes about sigma(b)^T of the gradient back
  over T steps: sigma(1)^100 = 2e-14, sigma(5)^100 = 0.51;
- layer normalisation of the cell state before the output activation (`lstmlab.cells.layer_norm`):
  with a forget gate near 1 the cell state drifts, each step adding its input, until tanh(c)
  saturates. At p = 100 an LSTM with bias 5 and no layer norm held the first symbol in c
  (|c_x - c_y| up to 0.14 at the last step) while its h differed by 5e-5 between the two
  sequences, and the read-out could not tell them apart; layer normalisation rescales c
  before tanh, and the same LSTM solved p = 100 at step 100 to 500 on each seed tried.
  (The 1997 paper fought the same drift with negative input-gate biases.)

Cells without a forget gate ignore the bias; cells that cannot take layer normalisation run
without it (`TrainConfig`)."""
_EVAL_STREAM = 0xE7A1


def train_rng(seed: int, step: int, *salt: int) -> np.random.Generator:
    """The random generator of training step `step` of a run seeded `seed`."""
    return np.random.default_rng([_TRAIN_STREAM, seed, step, *salt])


def eval_rng(*salt: int) -> np.random.Generator:
    """The random generator of a task's held-out set: the same for every run seed."""
    return np.random.default_rng([_EVAL_STREAM, *salt])


@dataclass
class Batch:
    """One batch, time-major.

    inputs: (T, B, input_size) float32, or (T, B) int64 ids with `token_inputs`.
    targets: whatever the task's loss reads (e.g. (B, 1) float, (T, B) int64).
    mask: (T, B) bool, True where a step is real (for padded variable-length batches).
    lengths: (B,) int64 sequence lengths, when they vary.
    continues: the batch continues the previous batch's sequences (carry the state).
    extra: task-specific tensors, time-major (T, B, ...) (e.g. the legal next symbols of a grammar).
    target_batch_dim: the dimension of `targets` that indexes the sequences: 1 for
        time-major targets (T, B, ...), 0 for one target per sequence (B, ...).
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor | None = None
    lengths: Tensor | None = None
    continues: bool = False
    extra: dict[str, Tensor] = field(default_factory=dict)
    target_batch_dim: int = 1

    @property
    def size(self) -> int:
        return int(self.inputs.shape[1])

    def shard(self, rank: int, world_size: int) -> Batch:
        """Process `rank`'s share of the batch in a run of `world_size` processes: the
        `rank`-th of `world_size` equal, contiguous blocks of its B sequences (B/world_size
        of them), so that the shards of all processes together are the batch.

        InvalidArgument (about `world_size`) when it does not divide B.

            >>> batch.shard(1, 2).inputs.shape  # (T, B/2, ...): sequences B/2 .. B-1
        """
        B = self.size
        if B % world_size != 0:
            raise InvalidArgument("Batch", "world_size", f"must divide the batch size {B}; got {world_size}")
        rows = slice(rank * (B // world_size), (rank + 1) * (B // world_size))

        def take(t: Tensor, dim: int) -> Tensor:
            return t[rows].contiguous() if dim == 0 else t[:, rows].contiguous()

        return Batch(
            inputs=take(self.inputs, 1),
            targets=take(self.targets, self.target_batch_dim),
            mask=None if self.mask is None else take(self.mask, 1),
            lengths=None if self.lengths is None else take(self.lengths, 0),
            continues=self.continues,
            extra={k: take(v, 1) for k, v in self.extra.items()},
            target_batch_dim=self.target_batch_dim,
        )

    def last(self, outputs: Tensor) -> Tensor:
        """Each sequence's output at its last real step: (B, ...) from (T, B, ...)."""
        if self.lengths is None:
            return outputs[-1]
        return outputs[self.lengths - 1, torch.arange(outputs.shape[1])]


class Task(ABC):
    """A long-time-lag (or any sequence) task; see the module docstring for the contract."""

    name: str = ""
    input_size: int
    output_size: int
    token_inputs: bool = False
    metric: str = "loss"
    higher_is_better: bool = False
    baseline: float | None = None
    forget_bias: float = 1.0
    """The forget-gate bias `lstmlab train` starts LSTMs at for this task unless told
    (1: a forget gate that starts mostly open carries the gradient across long lags)."""
    lr_schedule: str = "constant"
    """The learning-rate schedule (`lstmlab.schedule`) `lstmlab train` uses for this task unless told."""
    regularisers: ClassVar[dict[str, Any]] = {}
    """`TrainConfig`'s regulariser fields (dropout, zoneout, recurrent_dropout, weight_dropout,
    layer_norm) this task trains with unless told; those it does not name are off."""

    @abstractmethod
    def train_batch(self, step: int, seed: int) -> Batch:
        """The training batch of step `step` (0-based) of the run seeded `seed`."""

    @abstractmethod
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Differentiable scalar loss of the model's outputs (T, B, output_size)."""

    @abstractmethod
    def evaluate(self, predict: Predict) -> dict[str, float]:
        """Metrics on the fixed held-out set; holds `self.metric` and "loss"."""

    def loss_terms(self, batch: Batch) -> int:
        """How many terms `loss` averages over on `batch` (default: one per sequence). A
        multi-process run weighs each process's loss on its shard by its share of them, so
        that the gradient is the whole batch's."""
        return batch.size

    @abstractmethod
    def solved(self, metrics: dict[str, float]) -> bool:
        """The success criterion, on a dict from `evaluate`."""

    def options(self) -> dict[str, Any]:
        """The keyword options this task was built with (set by `lstmlab.tasks.get`)."""
        return dict(getattr(self, "_options", {}))

    def state_dict(self) -> dict[str, Any]:
        """What a trained model needs from the task without its data (e.g. a vocabulary)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        return None

    def verify_state(self, state: dict[str, Any]) -> None:
        """Raise InvalidArgument if the data this task reads is not the data `state` (from
        `state_dict`) was taken from, e.g. a corpus that changed; a resume calls it."""
        return None

    def better(self, a: float, b: float) -> bool:
        """Whether primary-metric value `a` is better than `b`."""
        return a > b if self.higher_is_better else a < b


class SupervisedTask(Task):
    """A task of independent sequences: every batch starts from a zero state.

    Subclasses set `batch_size`, `eval_size` and implement `make_batch(rng, size)`,
    `loss` and `metrics(outputs, batch)` (on the whole held-out set at once).
    """

    batch_size: int = 64
    eval_size: int = 1000
    eval_salt: int = 0

    @abstractmethod
    def make_batch(self, rng: np.random.Generator, size: int) -> Batch:
        """`size` independent sequences drawn with `rng`."""

    @abstractmethod
    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """Metrics of outputs (T, B, output_size) on `batch`."""

    def train_batch(self, step: int, seed: int) -> Batch:
        return self.make_batch(train_rng(seed, step), self.batch_size)

    def eval_batch(self) -> Batch:
        """The fixed held-out set, made once."""
        cached = getattr(self, "_eval_batch", None)
        if cached is None:
            cached = self._eval_batch = self.make_batch(eval_rng(self.eval_salt), self.eval_size)
        return cached

    def evaluate(self, predict: Predict) -> dict[str, float]:
        batch = self.eval_batch()
        outputs, _ = predict(batch.inputs)
        return self.metrics(outputs, batch)


def as_float(x: np.ndarray) -> Tensor:
    """float32 tensor from a NumPy array."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def as_long(x: np.ndarray) -> Tensor:
    """int64 tensor from a NumPy array."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
