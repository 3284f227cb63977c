"""Noise-free sequences with long time lags (Hochreiter & Schmidhuber 1997, experiment 2a)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from lstmlab import _checks
from lstmlab.errors import InvalidArgument
from lstmlab.tasks.base import LONG_LAG_DEFAULTS, Batch, SupervisedTask, as_long


class LongLag(SupervisedTask):
    """Two sequences that differ only at both ends: (x, a1, ..., a_{p-1}, x) and
    (y, a1, ..., a_{p-1}, y); predict the next symbol at every step.

    Source: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", section 5.2,
    experiment 2a (p = 100 there; `seq_len` is p).
    Input: (p, B) ids over p + 1 symbols (a1..a_{p-1} are 0..p-2, x is p-1, y is p),
    one-hot; each sequence is x's or y's with probability 1/2; the input is the
    sequence without its last symbol. Target: the next symbol at each of the p steps.
    Only the last one depends on the past, p steps back.
    Loss: cross-entropy (nats) averaged over the p steps.
    Metric: `last_loss`, the cross-entropy of the last prediction. Baseline: ln 2, a
    memoryless guess between x and y.
    Success (the paper's): the next symbol is the most active output at every step
    of both sequences.
    Defaults: p = 100, the paper's; forget bias 5 and layer normalisation for the LSTMs
    (`LONG_LAG_DEFAULTS`): with them `lstmlab train --task long-lag --cell lstm` solves
    p = 100 at step 100 (seed 11, lr 3e-3); with bias 1 to 10 and no layer norm it did not
    in 1,500 to 4,000 steps (docs/papers.md).
    """

    metric = "last_loss"
    baseline = math.log(2)
    forget_bias = LONG_LAG_DEFAULTS["forget_bias"]
    regularisers: ClassVar[dict[str, Any]] = LONG_LAG_DEFAULTS["regularisers"]

    def __init__(self, *, seq_len: int = 100, batch_size: int = 64) -> None:
        self.seq_len = _checks.positive_int("long-lag", "seq_len", seq_len)
        if seq_len < 2:
            raise InvalidArgument("long-lag", "seq_len", f"must be at least 2; got {seq_len}")
        self.batch_size = _checks.positive_int("long-lag", "batch_size", batch_size)
        self.input_size = self.output_size = seq_len + 1
        self.token_inputs = True
        self.eval_size = 2

    def sequences(self, first: np.ndarray) -> np.ndarray:
        """Full sequences (p + 1, B) for first symbols `first` (each x or y)."""
        p = self.seq_len
        middle = np.repeat(np.arange(p - 1)[:, None], len(first), axis=1)
        return np.concatenate([first[None], middle, first[None]])

    def make_batch(self, rng: np.random.Generator, size: int) -> Batch:
        p = self.seq_len
        first = rng.integers(p - 1, p + 1, size=size)
        seq = self.sequences(first)
        return Batch(inputs=as_long(seq[:-1]), targets=as_long(seq[1:]))

    def eval_batch(self) -> Batch:
        seq = self.sequences(np.array([self.seq_len - 1, self.seq_len]))
        return Batch(inputs=as_long(seq[:-1]), targets=as_long(seq[1:]))

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, self.output_size), batch.targets.reshape(-1))

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        correct = outputs.argmax(-1) == batch.targets
        return {
            "loss": float(self.loss(outputs, batch)),
            "last_loss": float(F.cross_entropy(outputs[-1], batch.targets[-1])),
            "sequences_correct": float(correct.all(0).float().mean()),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["sequences_correct"] == 1.0
