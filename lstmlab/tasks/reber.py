"""The embedded Reber grammar (Hochreiter & Schmidhuber 1997, experiment 1) and its
continual form (Gers, Schmidhuber & Cummins 2000).

The Reber grammar (Reber 1967), as a transition table: state -> [(symbol, next state)],
each branch taken with probability 1/2; strings run from B to E.

    0: B -> 1      1: T -> 2, P -> 3      2: S -> 2, X -> 4      3: T -> 3, V -> 5
    4: X -> 3, S -> 6      5: P -> 4, V -> 6      6: E -> end

An embedded Reber string is B, then T or P, then a Reber string, then the same T or
P again, then E: predicting the symbol before the last needs the second symbol,
remembered across the whole inner string.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lstmlab import _checks
from lstmlab.tasks.base import Batch, Predict, SupervisedTask, Task, as_long, eval_rng, train_rng

SYMBOLS = "BTPSXVE"
_ID = {s: k for k, s in enumerate(SYMBOLS)}
_GRAMMAR: dict[int, list[tuple[str, int]]] = {
    0: [("B", 1)],
    1: [("T", 2), ("P", 3)],
    2: [("S", 2), ("X", 4)],
    3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", 6)],
    5: [("P", 4), ("V", 6)],
    6: [("E", -1)],
}


def _legal(symbols: str) -> int:
    mask = 0
    for s in symbols:
        mask |= 1 << _ID[s]
    return mask


def embedded_string(rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """One embedded Reber string as symbol ids, and for each symbol the bit mask of
    the symbols that may legally follow it (0 after the final E)."""
    wrap = "TP"[rng.integers(2)]
    symbols, legal = ["B", wrap], [_legal("TP"), _legal("B")]
    state = 0
    while state != -1:
        branches = _GRAMMAR[state]
        symbol, state = branches[rng.integers(len(branches))] if len(branches) > 1 else branches[0]
        symbols.append(symbol)
        legal.append(_legal("".join(s for s, _ in _GRAMMAR[state])) if state != -1 else _legal(wrap))
    symbols += [wrap, "E"]
    legal += [_legal("E"), 0]
    return [_ID[s] for s in symbols], legal


def _legal_tensor(masks: np.ndarray) -> Tensor:
    """(..., 7) bool from integer bit masks."""
    bits = (masks[..., None] >> np.arange(len(SYMBOLS))) & 1
    return torch.from_numpy(bits.astype(bool))


def _step_correct(outputs: Tensor, legal: Tensor) -> Tensor:
    """The paper's test, per step: the legal next symbols are the most active outputs,
    i.e. every legal output beats every illegal one. outputs (..., 7), legal (..., 7) bool."""
    lowest_legal = outputs.masked_fill(~legal, math.inf).amin(-1)
    highest_illegal = outputs.masked_fill(legal, -math.inf).amax(-1)
    return lowest_legal > highest_illegal


def _memoryless_loss(inputs: Tensor, targets: Tensor, mask: Tensor) -> float:
    """Cross-entropy of the best predictor that sees only the current symbol: the
    conditional entropy H(next | current) of the given data, in nats."""
    n = len(SYMBOLS)
    pairs = (inputs[mask] * n + targets[mask]).bincount(minlength=n * n).reshape(n, n).double()
    p = pairs / pairs.sum(1, keepdim=True).clamp_min(1)
    return float(-(pairs * p.clamp_min(1e-300).log()).sum() / pairs.sum())


class EmbeddedReber(SupervisedTask):
    """Embedded Reber grammar: predict the next symbol of embedded Reber strings.

    Source: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", section 5.1
    (experiment 1), after Cleeremans, Servan-Schreiber & McClelland 1989.
    Input: (T, B) ids over the 7 symbols BTPSXVE (one-hot), one string per column
    without its final E, padded at the end (lengths vary; `mask` marks real steps).
    Target: the next symbol (T, B); `extra["legal"]` (T, B, 7) marks the symbols the
    grammar allows next. Loss: cross-entropy (nats) of the next symbol, over real steps.
    Baseline: the best predictor that sees only the current symbol (the conditional
    entropy of the held-out strings, computed from them).
    Success (the paper's): on every step of every held-out string (256, as the
    paper's test set) the legal next symbols are the most active outputs.
    """

    metric = "loss"
    input_size = len(SYMBOLS)
    output_size = len(SYMBOLS)
    token_inputs = True

    def __init__(self, *, batch_size: int = 64, eval_size: int = 256) -> None:
        self.batch_size = _checks.positive_int("reber", "batch_size", batch_size)
        self.eval_size = _checks.positive_int("reber", "eval_size", eval_size)
        self.eval_salt = 1

    @property
    def baseline(self) -> float:  # type: ignore[override]
        batch = self.eval_batch()
        assert batch.mask is not None
        return _memoryless_loss(batch.inputs, batch.targets, batch.mask)

    def make_batch(self, rng: np.random.Generator, size: int) -> Batch:
        strings = [embedded_string(rng) for _ in range(size)]
        T = max(len(s) for s, _ in strings) - 1
        inputs = np.zeros((T, size), dtype=np.int64)
        targets = np.zeros((T, size), dtype=np.int64)
        legal = np.zeros((T, size), dtype=np.int64)
        lengths = np.zeros(size, dtype=np.int64)
        for b, (symbols, masks) in enumerate(strings):
            n = len(symbols) - 1
            inputs[:n, b], targets[:n, b], legal[:n, b], lengths[b] = symbols[:-1], symbols[1:], masks[:-1], n
        return Batch(
            inputs=as_long(inputs),
            targets=as_long(targets),
            mask=torch.from_numpy(np.arange(T)[:, None] < lengths[None, :]),
            lengths=torch.from_numpy(lengths),
            extra={"legal": _legal_tensor(legal)},
        )

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        assert batch.mask is not None
        return F.cross_entropy(outputs[batch.mask], batch.targets[batch.mask])

    def loss_terms(self, batch: Batch) -> int:
        assert batch.mask is not None
        return int(batch.mask.sum())

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        assert batch.mask is not None
        wrong = ~_step_correct(outputs, batch.extra["legal"]) & batch.mask
        return {
            "loss": float(self.loss(outputs, batch)),
            "strings_correct": float((~wrong.any(0)).float().mean()),
            "steps_correct": float(1 - wrong.sum() / batch.mask.sum()),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["strings_correct"] == 1.0


def first_error(correct: Tensor) -> int:
    """The number of steps predicted right before the first wrong one in any stream:
    `correct` (T, B) bool; T when every step is right."""
    wrong = (~correct).any(1).nonzero()
    return int(wrong[0, 0]) if len(wrong) else int(correct.shape[0])


class ContinualReber(Task):
    """Continual embedded Reber grammar: one endless stream of embedded Reber strings,
    never reset, predicted symbol by symbol.

    Source: Gers, Schmidhuber & Cummins 2000, "Learning to forget: continual
    prediction with LSTM", section 4. The network must learn to reset itself at the
    end of each string (what the forget gate is for).
    Input: (seq_len, B) ids over BTPSXVE, B parallel streams cut into consecutive
    chunks; the state is carried from chunk to chunk (`continues`), for `stream_chunks`
    chunks, after which fresh streams start. Target: the next symbol; the symbol
    after an E is the next string's B. Loss: cross-entropy (nats) over all steps.
    Baseline: the best predictor that sees only the current symbol (computed from
    the held-out streams).
    Success (the paper's): the network, never reset, predicts every symbol of one
    unsegmented test stream of `eval_len` symbols (default 100,000, the length of the
    paper's test streams) with its legal successors as the most active outputs.
    Gers et al. stop a test stream at the first wrong prediction and measure performance
    by the symbols predicted until then; `first_error` is that count (the position of
    the first wrong prediction, `eval_len` when there is none). A shorter stream (e.g.
    `eval_len=2000`) is a weaker test: the paper's point is that the LSTM without a forget
    gate, whose cell state grows with the stream, may be right for a while and fail later.
    `eval_size` > 1 tests that many independent streams, all of which must be right.
    """

    metric = "loss"
    input_size = len(SYMBOLS)
    output_size = len(SYMBOLS)
    token_inputs = True

    def __init__(
        self, *, seq_len: int = 100, batch_size: int = 64, stream_chunks: int = 50, eval_size: int = 1, eval_len: int = 100_000
    ) -> None:
        self.seq_len = _checks.positive_int("reber-continual", "seq_len", seq_len)
        self.batch_size = _checks.positive_int("reber-continual", "batch_size", batch_size)
        self.stream_chunks = _checks.positive_int("reber-continual", "stream_chunks", stream_chunks)
        self.eval_size = _checks.positive_int("reber-continual", "eval_size", eval_size)
        self.eval_len = _checks.positive_int("reber-continual", "eval_len", eval_len)
        self._episode: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        self._eval: Batch | None = None

    @staticmethod
    def streams(rng: np.random.Generator, size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """`size` streams of `length` symbols (ids, (length, size)) and their legal-next masks."""
        symbols = np.zeros((length, size), dtype=np.int64)
        legal = np.zeros((length, size), dtype=np.int64)
        for b in range(size):
            ids: list[int] = []
            masks: list[int] = []
            while len(ids) < length:
                s, m = embedded_string(rng)
                m[-1] = _legal("B")  # after E comes the next string
                ids += s
                masks += m
            symbols[:, b], legal[:, b] = ids[:length], masks[:length]
        return symbols, legal

    def _batch(self, symbols: np.ndarray, legal: np.ndarray, continues: bool) -> Batch:
        return Batch(
            inputs=as_long(symbols[:-1]),
            targets=as_long(symbols[1:]),
            continues=continues,
            extra={"legal": _legal_tensor(legal[:-1])},
        )

    def train_batch(self, step: int, seed: int) -> Batch:
        episode, chunk = divmod(step, self.stream_chunks)
        if self._episode is None or self._episode[0] != (seed, episode):
            rng = train_rng(seed, episode, 1)
            symbols, legal = self.streams(rng, self.batch_size, self.stream_chunks * self.seq_len + 1)
            self._episode = ((seed, episode), symbols, legal)
        _, symbols, legal = self._episode
        window = slice(chunk * self.seq_len, (chunk + 1) * self.seq_len + 1)
        return self._batch(symbols[window], legal[window], continues=chunk > 0)

    def eval_batch(self) -> Batch:
        if self._eval is None:
            symbols, legal = self.streams(eval_rng(2), self.eval_size, self.eval_len + 1)
            self._eval = self._batch(symbols, legal, continues=False)
        return self._eval

    @property
    def baseline(self) -> float:  # type: ignore[override]
        batch = self.eval_batch()
        return _memoryless_loss(batch.inputs, batch.targets, torch.ones_like(batch.inputs, dtype=torch.bool))

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, self.output_size), batch.targets.reshape(-1))

    def evaluate(self, predict: Predict) -> dict[str, float]:
        batch = self.eval_batch()
        outputs, _ = predict(batch.inputs)
        correct = _step_correct(outputs, batch.extra["legal"])
        return {
            "loss": float(self.loss(outputs, batch)),
            "steps_correct": float(correct.float().mean()),
            "first_error": float(first_error(correct)),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["steps_correct"] == 1.0
