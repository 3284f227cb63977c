"""Gers, Schmidhuber & Cummins 2000, "Learning to forget: continual prediction with LSTM":
the continual embedded Reber grammar, for the LSTM without a forget gate (`nfg`), with one
(`lstm`) and with one and peepholes (`peephole`, Gers & Schmidhuber 2000's cell).

Each trial (a seed) trains on the endless stream (truncated BPTT over chunks of 100 symbols,
the state carried) until the task's criterion holds (one unsegmented test stream predicted
without an error: `lstmlab.tasks.reber.ContinualReber`) or its budget is spent. Then the
trained network reads a long stream from a zero state and we record the mean |cell state|
along it: without a forget gate nothing can empty the cells, and the state drifts with the
stream's length, which is the paper's explanation of the failure.
"""

from __future__ import annotations

import statistics
from typing import Any

from lstmlab.charlm.page import Curve
from lstmlab.experiments.papers.report import Figure, Table
from lstmlab.experiments.papers.runner import Run
from lstmlab.train import TrainConfig, Trainer

TITLE = "Gers, Schmidhuber & Cummins 2000, Learning to forget: continual embedded Reber grammar"
CELLS = ("nfg", "lstm", "peephole")
CELL_NAMES = {"nfg": "LSTM without forget gate", "lstm": "LSTM, forget gate", "peephole": "LSTM, forget gate and peepholes"}
# The paper's Table 2 (percentage of "perfect" solutions, no external resets), as we read it.
PAPER = {"nfg": "0%", "lstm": "18%-62% (by learning-rate schedule)", "peephole": "not in this paper"}
CHUNK = 500  # symbols between two readings of the cell-state magnitude
STREAM = {"quick": 10_000, "full": 100_000}  # symbols of the test stream

SETUP = [
    "Training: mini-batches of 64 parallel streams, truncated BPTT over chunks of 100 symbols with the state carried "
    "across chunks and fresh streams every 50 chunks, Adam (lr 1e-2), gradient norm clipped to 1, 64 units. The paper "
    "trained online, one stream at a time, by gradient descent with truncated gradients, on a network of 4 memory blocks "
    "of 2 cells, and restarted a training stream at every prediction error.",
    "Criterion: one unsegmented test stream (100,000 symbols in full mode, 10,000 in quick mode), never reset, every "
    "symbol predicted (the legal successors the most active outputs). The paper counts a trial as a 'perfect' solution "
    "when its test streams of 100,000 symbols are predicted without an error; we test one stream per trial.",
    "Each trial is stopped at its share of the wall-clock budget; the paper trained far longer (up to 30,000 streams).",
    "The peephole cell is from Gers & Schmidhuber 2000 ('Recurrent nets that time and count'), not from this paper; "
    "it is shown beside the other two as the usual modern LSTM with peepholes.",
    "Our LSTM without a forget gate keeps peephole connections (lstmlab's NFG variant).",
]


def plan(quick: bool, seeds: int, hidden: int = 64) -> list[Run]:
    """`seeds` trials per cell, each trained on the continual stream."""
    options = {"eval_len": STREAM["quick" if quick else "full"]}
    runs = []
    for cell in CELLS:
        for seed in range(seeds):
            config = TrainConfig(
                task="reber-continual",
                task_options=dict(options),
                cell=cell,
                hidden=hidden,
                lr=1e-2,
                forget_bias=1.0,
                layer_norm=False,
                backend="fused",
                steps=1_000_000,
                seed=seed,
                eval_every=100,
                log_every=50,
            )
            runs.append(Run("continual Reber", config))
    return runs


def cell_state_magnitude(trainer: Trainer, length: int) -> list[float]:
    """Mean |c| over the cells after every CHUNK symbols of the task's test stream (its first
    `length` symbols), read from a zero state."""
    batch = trainer.task.eval_batch()
    inputs = batch.inputs[:length, :1]
    state: Any = None
    means = []
    for start in range(0, inputs.shape[0], CHUNK):
        _, state = trainer.predict(inputs[start : start + CHUNK], state)
        c = state[1] if isinstance(state, tuple) else state
        means.append(float(c.abs().mean()))
    return means


def after(run: Run, trainer: Trainer) -> dict[str, Any]:
    """The trained network on the test stream: where its first error is, and its cell-state magnitude."""
    last = trainer.evaluate()
    length = int(trainer.task.options().get("eval_len", 100_000))
    return {
        "first_error": last.get("first_error"),
        "steps_correct": last.get("steps_correct"),
        "cell_state": cell_state_magnitude(trainer, length),
    }


def tables(runs: list[dict[str, Any]]) -> list[Table]:
    rows = []
    for cell in CELLS:
        mine = [r for r in runs if r["cell"] == cell]
        if not mine:
            continue
        solved = [r["sequences"] for r in mine if r["solved"]]
        rows.append(
            [
                CELL_NAMES[cell],
                PAPER[cell],
                f"{len(solved)}/{len(mine)}",
                statistics.median(solved) * mine[0]["task_options"].get("seq_len", 100) if solved else None,
                statistics.median(r["first_error"] for r in mine),
                statistics.median(r["cell_state"][-1] for r in mine),
                max(r["steps"] for r in mine),
            ]
        )
    columns = [
        "cell",
        "paper: perfect solutions",
        "trials solved",
        "median training symbols to success (64 streams)",
        "median symbols before first error",
        "median mean |c| at the stream's end",
        "most steps trained",
    ]
    return [Table("results", "Continual embedded Reber: trials solved on one long unsegmented test stream", columns, rows)]


def figures(runs: list[dict[str, Any]]) -> list[Figure]:
    curves = []
    for cell in CELLS:
        mine = [r for r in runs if r["cell"] == cell]
        if mine:
            ys = mine[0]["cell_state"]
            curves.append(Curve(f"{CELL_NAMES[cell]} (seed {mine[0]['seed']})", [CHUNK * (k + 1) for k in range(len(ys))], ys))
    return [
        Figure(
            "Mean |cell state| along the test stream, from a zero state (one trial per cell)",
            "lines",
            "mean |c|",
            xlabel="symbols read",
            curves=curves,
        )
    ]


def findings(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for cell in CELLS:
        mine = [r for r in runs if r["cell"] == cell]
        if not mine:
            continue
        k = sum(r["solved"] for r in mine)
        growth = statistics.median(r["cell_state"][-1] / max(r["cell_state"][0], 1e-12) for r in mine)
        lines.append(
            f"{CELL_NAMES[cell]}: {k}/{len(mine)} trials predict the whole test stream; the mean |c| at the stream's end "
            f"is {growth:.1f} times its value after the first {CHUNK} symbols (median over trials)."
        )
    return lines
