"""Latency of one step: lstmlab's cells, and its stacks fed one time step, against torch's.

What decoders, agents, streaming recognisers and `lstmlab sample` run: batch 1, input
size = hidden size, no_grad, one torch thread. Each case pairs a lstmlab module with
its torch yardstick (torch's cell, torch's stack at T = 1, or torch's cells chained
layer by layer); calls are timed in blocks, the blocks interleaved across every module
so that load from other processes spreads evenly, and each time is the median block's
per-call time. `sample_rate` times `lstmlab.charlm.sampling.generate`, the loop of
`lstmlab sample`, on an untrained character model (speed does not depend on the weights).

Pure measurement: returns records; printing is the CLI's business.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import lstmlab
from lstmlab.charlm.corpus import Vocabulary
from lstmlab.charlm.sampling import generate, model_step
from lstmlab.models import SequenceModel

HIDDEN = 256  # input size = hidden size
LAYERS = 2  # of the stacks
SAMPLE_VOCABULARY = 65  # characters of a Shakespeare corpus
SAMPLE_LENGTH = 2000  # characters drawn per repeat


@dataclass
class StepTiming:
    """Median microseconds of one call of a lstmlab module (run by `backend`) and of its torch yardstick."""

    case: str  # what lstmlab runs, e.g. "LSTMCell(peephole=True)" or "LSTM 2 layers, T=1"
    backend: str  # the backend that ran lstmlab's module
    yardstick: str  # torch's counterpart, e.g. "nn.LSTMCell" or "2 x nn.GRUCell"
    lstmlab_us: float
    torch_us: float

    @property
    def ratio(self) -> float:
        return self.lstmlab_us / self.torch_us


Call = Callable[[], Any]


def _cell_pair(ours: nn.Module, theirs: nn.Module, batch: int, hidden: int, lstm: bool) -> tuple[Call, Call]:
    x, h, c = (torch.randn(batch, hidden) for _ in range(3))
    state = (h, c) if lstm else h
    return (lambda: ours(x, state)), (lambda: theirs(x, state))


def _stack_pair(ours: nn.Module, theirs: nn.Module, batch: int, hidden: int, lstm: bool) -> tuple[Call, Call]:
    x = torch.randn(1, batch, hidden)
    h, c = (torch.randn(LAYERS, batch, hidden) for _ in range(2))
    state = (h, c) if lstm else h
    return (lambda: ours(x, state)), (lambda: theirs(x, state))


def _chained_cells(cells: list[nn.Module], batch: int, hidden: int, lstm: bool) -> Call:
    """torch's cells stepping a stack: layer k's h' is layer k+1's input (as lstmlab's stack at T = 1)."""
    x = torch.randn(batch, hidden)
    states = [(torch.randn(batch, hidden), torch.randn(batch, hidden)) if lstm else torch.randn(batch, hidden) for _ in cells]

    def step() -> None:
        inp = x
        for cell, state in zip(cells, states):
            out = cell(inp, state)
            inp = out[0] if lstm else out

    return step


def cases(batch: int = 1, hidden: int = HIDDEN) -> list[tuple[str, str, str, nn.Module, Call, Call]]:
    """(case, backend, yardstick, lstmlab module, lstmlab call, torch call) for every case of the table."""
    torch.manual_seed(0)
    out = []
    pairs = [
        ("LSTMCell", lstmlab.LSTMCell(hidden, hidden), nn.LSTMCell(hidden, hidden)),
        ("LSTMCell(peephole=True)", lstmlab.LSTMCell(hidden, hidden, peephole=True), nn.LSTMCell(hidden, hidden)),
        ("GRUCell", lstmlab.GRUCell(hidden, hidden), nn.GRUCell(hidden, hidden)),
        ("RNNCell", lstmlab.RNNCell(hidden, hidden), nn.RNNCell(hidden, hidden)),
    ]
    if lstmlab.backends.get("fused").unavailable() is None:  # the eager step, what "auto" takes without the extension
        eager = lstmlab.LSTMCell(hidden, hidden, peephole=True, backend="eager")
        pairs.insert(2, ("LSTMCell(peephole=True)", eager, nn.LSTMCell(hidden, hidden)))
    for name, ours, theirs in pairs:
        lstm = isinstance(theirs, nn.LSTMCell)
        out.append((name, ours, f"nn.{type(theirs).__name__}", *_cell_pair(ours, theirs, batch, hidden, lstm)))
    for family, ours_class, stack_class, cell_class in (
        ("LSTM", lstmlab.LSTM, nn.LSTM, nn.LSTMCell),
        ("GRU", lstmlab.GRU, nn.GRU, nn.GRUCell),
    ):
        lstm = family == "LSTM"
        ours = ours_class(hidden, hidden, LAYERS)
        ours_call, stack_call = _stack_pair(ours, stack_class(hidden, hidden, LAYERS), batch, hidden, lstm)
        case = f"{family} {LAYERS} layers, T=1"
        out.append((case, ours, f"nn.{family} at T=1", ours_call, stack_call))
        chained = _chained_cells([cell_class(hidden, hidden) for _ in range(LAYERS)], batch, hidden, lstm)
        out.append((case, ours, f"{LAYERS} x nn.{cell_class.__name__}", ours_call, chained))
    return [(case, _backend(module, call), stick, module, call, theirs) for case, module, stick, call, theirs in out]


def _backend(module: nn.Module, call: Call) -> str:
    """The backend that runs `call` of `module` (one step: a cell's, or a stack's at T = 1)."""
    choice = module.backend
    if choice != "auto":
        return choice
    like = next(module.parameters())
    return lstmlab.backends.resolve("auto", module.config, like, steps=1).name


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
"""wall: elapsed time (the latency a caller sees); cpu: this thread's CPU time, which leaves out the
time other processes hold the core (a steadier reading on a shared machine, blind to waits)."""


def _medians(calls: dict[Any, Call], repeats: int, block: int, clock: str = "wall") -> dict[Any, float]:
    """Median over `repeats` of the per-call microseconds of a block of `block` calls, blocks interleaved."""
    now = CLOCKS[clock]
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    for call in calls.values():  # warm up: first-call costs, allocator, extension load
        for _ in range(max(3, block // 10)):
            call()
    for _ in range(repeats):
        for key, call in calls.items():
            start = now()
            for _ in range(block):
                call()
            samples[key].append((now() - start) / block * 1e6)
    return {key: statistics.median(values) for key, values in samples.items()}


def time_steps(
    batch: int = 1, hidden: int = HIDDEN, repeats: int = 21, block: int = 100, threads: int = 1, clock: str = "wall"
) -> list[StepTiming]:
    """The step-latency table: one record per case (see `cases`), under no_grad, on `threads` torch
    threads, timed by `clock` (see CLOCKS)."""
    table = cases(batch, hidden)
    calls: dict[Any, Call] = {}
    for k, (_, _, _, _, ours, theirs) in enumerate(table):
        calls[(k, "lstmlab")] = ours
        calls[(k, "torch")] = theirs
    with _threads(threads), torch.no_grad():
        medians = _medians(calls, repeats, block, clock)
    return [
        StepTiming(case, backend, stick, medians[(k, "lstmlab")], medians[(k, "torch")])
        for k, (case, backend, stick, _, _, _) in enumerate(table)
    ]


def sample_rate(
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    vocabulary: int = SAMPLE_VOCABULARY,
    length: int = SAMPLE_LENGTH,
    repeats: int = 5,
    threads: int = 1,
    cell: str = "lstm",
    clock: str = "wall",
) -> float:
    """Median characters per second of `lstmlab sample`'s loop (temperature 0.8) on a `layers` x `hidden`
    character model of `cell` with `vocabulary` characters, on `threads` torch threads, timed by `clock`."""
    now = CLOCKS[clock]
    torch.manual_seed(0)
    vocab = Vocabulary("".join(chr(33 + k) for k in range(vocabulary)))
    model = SequenceModel(cell, vocabulary, vocabulary, hidden, layers, token_inputs=True)
    step = model_step(model)
    rates = []
    with _threads(threads):
        for _ in generate(step, vocab, vocab.chars[0], 20):  # warm up
            pass
        for seed in range(repeats):
            start = now()
            for _ in generate(step, vocab, vocab.chars[0], length, temperature=0.8, seed=seed):
                pass
            rates.append(length / (now() - start))
    return statistics.median(rates)
