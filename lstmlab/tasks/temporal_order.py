"""The temporal order problems of Hochreiter & Schmidhuber 1997 (experiments 6a, 6b)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lstmlab import _checks
from lstmlab.errors import InvalidArgument
from lstmlab.tasks.base import LONG_LAG_DEFAULTS, Batch, SupervisedTask, as_long

SYMBOLS = ("E", "B", "a", "b", "c", "d", "X", "Y")
_E, _B, _X = 0, 1, 6
# where the relevant symbols go, as fractions of the minimum length T (the paper's, at T = 100)
_WINDOWS = {2: ((0.10, 0.20), (0.50, 0.60)), 3: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76))}


class TemporalOrder(SupervisedTask):
    """Temporal order: classify a sequence by the order of X and Y far apart in noise.

    Source: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", section 5.6,
    experiments 6a (`relevant=2`, task "temporal-order") and 6b (`relevant=3`,
    "temporal-order-3").
    Input: (T', B) ids over 8 symbols E, B, a, b, c, d, X, Y (one-hot), lengths T'
    drawn from [T, 1.1 T] (padded at the end): E first, B (the trigger) last,
    random a..d elsewhere except X or Y at t1 in [0.1T, 0.2T] and t2 in [0.5T, 0.6T]
    (6b: X or Y at t1 in [0.1T, 0.2T], t2 in [0.33T, 0.43T], t3 in [0.66T, 0.76T]); T = 100 gives the paper's.
    Target: the class (4 for 6a: XX, XY, YX, YY; 8 for 6b) at each sequence's last step.
    Loss: cross-entropy (nats) of the softmax output at the last step.
    Baseline: a memoryless (uniform) guess scores ln 4 (6b: ln 8).
    Success (the paper's): every held-out sequence is classified correctly, correct
    meaning every output unit within 0.3 of the one-hot target.
    Defaults: T = 100, the paper's; forget bias 5 and layer normalisation for the LSTMs
    (`LONG_LAG_DEFAULTS`): with them the LSTM solves 6a at step 100 and 6b at step 200
    (seed 11, lr 3e-3: 6,400 and 12,800 sequences, against the paper's 31,390 and
    571,100); with bias 5 and no layer norm 6a stays at ln 4 after 1,000 steps, with bias 1
    and layer norm it is solved at step 300 (docs/papers.md).
    """

    metric = "loss"
    forget_bias = LONG_LAG_DEFAULTS["forget_bias"]
    regularisers: ClassVar[dict[str, Any]] = LONG_LAG_DEFAULTS["regularisers"]
    input_size = len(SYMBOLS)
    token_inputs = True
    tolerance = 0.3

    def __init__(self, *, relevant: int = 2, seq_len: int = 100, batch_size: int = 64, eval_size: int = 1000) -> None:
        owner = "temporal-order" if relevant == 2 else "temporal-order-3"
        if relevant not in _WINDOWS:
            raise InvalidArgument(owner, "relevant", f"must be 2 or 3; got {relevant!r}")
        self.relevant = relevant
        self.seq_len = _checks.positive_int(owner, "seq_len", seq_len)
        if seq_len < 20:
            raise InvalidArgument(owner, "seq_len", f"must be at least 20 (room for the relevant symbols); got {seq_len}")
        self.batch_size = _checks.positive_int(owner, "batch_size", batch_size)
        self.eval_size = _checks.positive_int(owner, "eval_size", eval_size)
        self.output_size = 2**relevant
        self.baseline = math.log(self.output_size)
        self.eval_salt = relevant

    def make_batch(self, rng: np.random.Generator, size: int) -> Batch:
        T = self.seq_len
        lengths = rng.integers(T, T + T // 10 + 1, size=size)
        inputs = rng.integers(2, 6, size=(int(lengths.max()), size))
        columns = np.arange(size)
        inputs[0] = _E
        inputs[lengths - 1, columns] = _B
        which = rng.integers(0, 2, size=(self.relevant, size))  # 0: X, 1: Y
        for k, (lo, hi) in enumerate(_WINDOWS[self.relevant]):
            t = rng.integers(round(lo * T), round(hi * T) + 1, size=size)
            inputs[t, columns] = _X + which[k]
        label = np.zeros(size, dtype=np.int64)
        for k in range(self.relevant):
            label = 2 * label + which[k]
        valid = np.arange(inputs.shape[0])[:, None] < lengths[None, :]
        inputs[~valid] = _E
        return Batch(
            inputs=as_long(inputs),
            targets=as_long(label),
            mask=torch.from_numpy(valid),
            lengths=torch.from_numpy(lengths.astype(np.int64)),
            target_batch_dim=0,
        )

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(batch.last(outputs), batch.targets)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        logits = batch.last(outputs)
        p = logits.softmax(-1)
        error = (p - F.one_hot(batch.targets, self.output_size)).abs().amax(-1)
        return {
            "loss": float(F.cross_entropy(logits, batch.targets)),
            "accuracy": float((logits.argmax(-1) == batch.targets).float().mean()),
            "correct": float((error < self.tolerance).float().mean()),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["correct"] == 1.0
