"""Hochreiter & Schmidhuber 1997, "Long Short-Term Memory": experiments 1, 2a, 4, 6a and 6b
at the paper's lags, with the paper's success criteria (each task's `solved`), and beside
them the copy task of Arjovsky, Shah & Bengio 2016 at two of its lags (T = 100 and 200),
where that paper found the LSTM stuck at the memoryless baseline.

Cells: the LSTM as in 1997 (`nfg`: no forget gate; lstmlab's NFG keeps peepholes, which
the 1997 cell did not have), the LSTM with a forget gate (`lstm`, torch's cell) started at
forget-gate bias `FORGET_BIAS`, the same with layer normalisation (`lstm-ln`, the 1997 tasks'
defaults: `lstmlab.tasks.base.LONG_LAG_DEFAULTS`), the GRU and the tanh RNN; only `lstm-ln`
is layer-normalised.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from lstmlab.experiments.papers.report import Figure, Table
from lstmlab.experiments.papers.runner import Run
from lstmlab.train import TrainConfig

TITLE = "Hochreiter & Schmidhuber 1997, Long Short-Term Memory: experiments 1, 2a, 4, 6a, 6b (and the copy task)"


@dataclass(frozen=True)
class CellSetting:
    """The network behind one row label: lstmlab's cell, whether its layers are normalised, its name in the table."""

    cell: str
    layer_norm: bool
    name: str


CELLS = {
    "nfg": CellSetting("nfg", False, "LSTM 1997 (no forget gate)"),
    "lstm": CellSetting("lstm", False, "LSTM, forget gate (bias 5)"),
    "lstm-ln": CellSetting("lstm", True, "LSTM, forget gate (bias 5), layer norm"),
    "gru": CellSetting("gru", False, "GRU"),
    "rnn": CellSetting("rnn", False, "tanh RNN"),
}


@dataclass(frozen=True)
class Experiment:
    """One row group of the table: the paper's experiment at the paper's lag."""

    key: str
    title: str
    task: str
    options: dict[str, Any]
    paper_sequences: str  # training sequences the paper's LSTM needed (its table and number)
    lr: float = 1e-2
    weight: float = 1.0  # share of the budget


_T100, _T500, _T1000 = {"seq_len": 100}, {"seq_len": 500, "eval_size": 500}, {"seq_len": 1000, "eval_size": 500}
_STUCK = "never: at the baseline (Arjovsky et al. 2016, 4.1)"  # their LSTM on the copy task, at T = 100 to 500
EXPERIMENTS = (
    Experiment("1", "embedded Reber grammar", "reber", {}, "8,440-39,740 (Table 1)", weight=1.0),
    Experiment("2a", "noise-free long lag, p = 100", "long-lag", {"seq_len": 100}, "5,040 (Table 2)", weight=1.5),
    Experiment("4 T=100", "adding, T = 100", "adding-1997", _T100, "74,000 (Table 7)", lr=3e-3, weight=2.0),
    Experiment("4 T=500", "adding, T = 500", "adding-1997", _T500, "209,000 (Table 7)", lr=3e-3, weight=2.0),
    Experiment("4 T=1000", "adding, T = 1000", "adding-1997", _T1000, "853,000 (Table 7)", lr=3e-3, weight=2.0),
    Experiment("6a", "temporal order, 2 symbols, T = 100", "temporal-order", _T100, "31,390 (Table 9)", lr=3e-3, weight=2.0),
    Experiment("6b", "temporal order, 3 symbols, T = 100", "temporal-order-3", _T100, "571,100 (Table 9)", lr=3e-3, weight=2.0),
    Experiment("copy T=100", "copy memory, T = 100 (Arjovsky et al. 2016)", "copy", _T100, _STUCK, lr=3e-3, weight=3.0),
    Experiment(
        "copy T=200", "copy memory, T = 200 (Arjovsky et al. 2016)", "copy", {"seq_len": 200}, _STUCK, lr=3e-3, weight=3.0
    ),
)
QUICK = ("1", "2a")

SETUP = [
    "Training: mini-batches of 64 sequences, Adam, gradient norm clipped to 1, one layer of 64 units and a linear "
    "read-out. The paper trained online (one sequence per update) by gradient descent with truncated gradients, on "
    "networks of a few memory blocks (e.g. 2 blocks of 2 cells for experiment 1).",
    "Sequences to success are ours counted as optimiser steps until the first evaluation at which the task's criterion "
    "holds, times 64; evaluations are every 50 steps, so our counts are rounded up to a multiple of 3,200.",
    "The 1997 LSTM is lstmlab's NFG: the LSTM without a forget gate, but with peephole connections, which 1997's "
    "cell did not have; it has no output squashing bias or input-gate bias tricks of the paper. The LSTM with a "
    "forget gate is run twice: plain, and with layer normalisation (of the gate pre-activations and of the cell state "
    "before tanh), which keeps its drifting cell state out of tanh's saturation, as the paper's negative input-gate "
    "biases were meant to.",
    "Each run is stopped at its share of the wall-clock budget, not at a number of sequences; a run that is not solved "
    "within it counts as not solved. The paper's numbers are means over trials that succeeded.",
    "Success criteria are the paper's, implemented in each task's `solved` (see lstmlab/tasks/): exp. 1, every "
    "symbol of 256 test strings predicted (legal next symbols the most active outputs); exp. 2a, the next symbol the "
    "most active output at every step of both sequences; exp. 4, absolute error below 0.04 on every test sequence "
    "(the paper: on 2,560 test sequences; we test 1,000 at T = 100 and 500 at T = 500, 1000); exp. 6, every output "
    "unit within 0.3 of its target on every test sequence.",
    "The copy task is not in the 1997 paper: Arjovsky, Shah & Bengio 2016 (section 4.1) ran it at T = 100, 200, 300 and "
    "500 and report the LSTM at the memoryless baseline, 10 ln 8 / (T + 20), at every lag; they show loss curves only, "
    "so the criterion is ours (99% of the copied symbols right on 1,000 test sequences). Compare each cell's final loss "
    "with the baseline column.",
]


FORGET_BIAS = 5.0
"""The forget-gate bias the LSTM with a forget gate starts at. At initialisation a forget gate
near sigma(b) passes sigma(b)^p of the gradient back over p steps: sigma(1)^100 = 2e-14,
sigma(5)^100 = 0.51, the smallest round bias that keeps half of it over the paper's longest
lag of experiment 2a (Gers et al. 2000 and Jozefowicz et al. 2015 advise a positive, large
bias). It is not enough on its own: at p = 100 biases 3, 5 and 10 left the LSTM with a forget
gate unsolved in 1,500 to 4,000 steps, its cell state drifting into tanh's saturation; with
layer normalisation (`lstm-ln`) it solves (docs/papers.md)."""


def plan(quick: bool, seeds: int, hidden: int = 64) -> list[Run]:
    """The runs: every experiment (quick: 1 and 2a) x every cell x `seeds` seeds."""
    runs = []
    for exp in EXPERIMENTS:
        if quick and exp.key not in QUICK:
            continue
        for label, setting in CELLS.items():
            for seed in range(seeds):
                config = TrainConfig(
                    task=exp.task,
                    task_options=dict(exp.options),
                    cell=setting.cell,
                    hidden=hidden,
                    lr=exp.lr,
                    forget_bias=FORGET_BIAS,
                    layer_norm=setting.layer_norm,
                    backend="fused",
                    steps=1_000_000,
                    seed=seed,
                    eval_every=50,
                    log_every=50,
                )
                runs.append(Run(exp.key, config, exp.weight, label=label))
    return runs


def tables(runs: list[dict[str, Any]]) -> list[Table]:
    """One row per (experiment, cell): seeds solved, median sequences to success, median final metric."""
    rows = []
    for exp in EXPERIMENTS:
        for cell in CELLS:
            mine = [r for r in runs if r["experiment"] == exp.key and r["cell"] == cell]
            if not mine:
                continue
            solved = [r["sequences"] for r in mine if r["solved"]]
            values = [r["value"] for r in mine if r["value"] is not None]
            rows.append(
                [
                    exp.key,
                    exp.title,
                    exp.paper_sequences,
                    CELLS[cell].name,
                    f"{len(solved)}/{len(mine)}",
                    statistics.median(solved) if solved else None,
                    statistics.median(values) if values else None,
                    mine[0]["metric"],
                    mine[0]["baseline"],
                    max(r["steps"] for r in mine),
                ]
            )
    columns = [
        "experiment",
        "task",
        "paper: LSTM sequences to success",
        "cell",
        "seeds solved",
        "ours: median sequences to success",
        "median final metric",
        "metric",
        "memoryless baseline",
        "most steps trained",
    ]
    return [Table("results", "Fraction of seeds solved and training sequences to success, beside the paper's", columns, rows)]


def figures(runs: list[dict[str, Any]]) -> list[Figure]:
    keys = [e.key for e in EXPERIMENTS if any(r["experiment"] == e.key for r in runs)]
    series = {}
    for cell in CELLS:
        fractions = []
        for key in keys:
            mine = [r for r in runs if r["experiment"] == key and r["cell"] == cell]
            fractions.append(sum(r["solved"] for r in mine) / len(mine) if mine else 0.0)
        series[CELLS[cell].name] = fractions
    title = "Fraction of seeds solved, per experiment and cell"
    return [Figure(title, "bars", "fraction of seeds solved", groups=keys, series=series)]


def findings(runs: list[dict[str, Any]]) -> list[str]:
    """Plain statements of what the runs show, experiment by experiment."""
    lines = []
    for exp in EXPERIMENTS:
        mine = [r for r in runs if r["experiment"] == exp.key]
        if not mine:
            continue
        parts = []
        for cell in CELLS:
            cell_runs = [r for r in mine if r["cell"] == cell]
            if cell_runs:
                k = sum(r["solved"] for r in cell_runs)
                parts.append(f"{CELLS[cell].name} {k}/{len(cell_runs)}")
        lines.append(f"Experiment {exp.key} ({exp.title}), seeds solved: " + ", ".join(parts) + ".")
    return lines
