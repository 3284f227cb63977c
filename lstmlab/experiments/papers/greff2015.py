"""Greff, Srivastava, Koutník, Steunebrink & Schmidhuber 2015, "LSTM: A Search Space Odyssey":
the vanilla LSTM (forget gate and peepholes), its eight variants and the GRU on four tasks
(the adding problem, temporal order, continual embedded Reber and a character-level language
model), several seeds each with equal budgets (the same number of optimiser steps, the same
learning rate), the final held-out metric compared with vanilla's by Welch's t-test.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from lstmlab.experiments.papers.report import Figure, Table
from lstmlab.experiments.papers.runner import Run
from lstmlab.experiments.papers.stats import welch
from lstmlab.train import TrainConfig

TITLE = "Greff et al. 2015, LSTM: A Search Space Odyssey: vanilla LSTM, eight variants and the GRU"
CELLS = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr", "gru")
ALPHA = 0.05


@dataclass(frozen=True)
class OdysseyTask:
    """One task of the odyssey: its key in the tables, its title, lstmlab's task and its
    options in quick and full mode; `weight` is a run's share of the wall-clock budget,
    about its cost relative to the adding problem's (measured: 16 s for 800 steps at T = 50)."""

    key: str
    title: str
    task: str
    quick: dict[str, Any]
    full: dict[str, Any]
    weight: float = 1.0


TASKS = (
    OdysseyTask("adding", "adding (Arjovsky et al. form), MSE", "adding", {"seq_len": 30}, {"seq_len": 50}),
    OdysseyTask("temporal-order", "temporal order 6a, cross-entropy", "temporal-order", {"seq_len": 30}, {"seq_len": 50}),
    OdysseyTask(
        "reber-continual",
        "continual embedded Reber, cross-entropy on a 5,000-symbol stream",
        "reber-continual",
        {"eval_len": 2_000},
        {"eval_len": 5_000},
        weight=4.0,
    ),
    OdysseyTask(
        "charlm",
        "language model (charlm, Python language reference), validation nats per character",
        "charlm",
        {"seq_len": 50},
        {"seq_len": 50},
        weight=2.0,
    ),
)
EQUAL_STEPS = True  # every run trains its task's steps; the budget only bounds the command
QUICK = {"steps": 120, "hidden": 32}
FULL = {"steps": 800, "hidden": 64}

SETUP = [
    "Greff et al. tuned each variant by random search over 200 hyperparameter settings per task (learning rate, momentum, "
    "size, input noise) and compared the distributions of the best results, on TIMIT, IAM Online and JSB Chorales. We "
    "train every cell with the same settings (Adam, lr 1e-2, clipping at 1, forget bias 1 where the cell has a forget gate) "
    "for the same number of steps on small synthetic tasks and a small language model, and compare the final held-out "
    "metric across seeds.",
    "Budgets are equal in optimiser steps (quick mode: 120 steps of 64 sequences, 32 units; full mode: 800 steps, 64 units); "
    "a run cut by its share of the wall-clock budget shows fewer steps in the table.",
    "Welch's t-test of each cell's final metric against vanilla's, two-sided, at 0.05, without correction for the nine "
    "comparisons per task; Greff et al. used Welch's t-test on the top 10% of their random-search trials.",
    "The paper's three data sets are not run here. The language model (charlm) reads lstmlab's default corpus (the "
    "Python language reference that ships with Python, about 460,000 characters, the last 10% held out) in chunks of 50 "
    "characters with the state carried, a constant learning rate (not the task's cosine decay, which follows a run's "
    "share of the budget), no dropout and no layer normalisation; "
    "its metric is the validation loss in nats per character after the fixed budget of steps.",
]


def plan(quick: bool, seeds: int) -> list[Run]:
    budget = QUICK if quick else FULL
    runs = []
    for t in TASKS:
        for cell in CELLS:
            for seed in range(seeds):
                config = TrainConfig(
                    task=t.task,
                    task_options=dict(t.quick if quick else t.full),
                    cell=cell,
                    hidden=budget["hidden"],
                    lr=1e-2,
                    forget_bias=1.0,
                    layer_norm=False,  # the plain cells (the 1997 tasks and charlm default to layer norm)
                    dropout=0.0,  # charlm's default is 0.2; the odyssey compares the cells without regularisers
                    lr_schedule="constant",  # charlm's cosine would also follow each run's share of the budget
                    backend="fused",
                    steps=budget["steps"],
                    seed=seed,
                    eval_every=budget["steps"],
                    log_every=budget["steps"],
                    stop_when_solved=False,
                )
                runs.append(Run(t.key, config, t.weight))
    return runs


def _values(runs: list[dict[str, Any]], task: str, cell: str) -> list[float]:
    return [float(r["value"]) for r in runs if r["experiment"] == task and r["cell"] == cell and r["value"] is not None]


def verdict(variant: list[float], vanilla: list[float], lower_is_better: bool = True) -> tuple[float | None, float | None, str]:
    """(t, p, "worse" / "better" / "no difference") of `variant` against `vanilla` by Welch's t-test."""
    if len(variant) < 2 or len(vanilla) < 2:
        return None, None, "too few seeds"
    r = welch(variant, vanilla)
    if r.p >= ALPHA:
        return r.t, r.p, "no difference"
    worse = r.t > 0 if lower_is_better else r.t < 0
    return r.t, r.p, "worse" if worse else "better"


def tables(runs: list[dict[str, Any]]) -> list[Table]:
    rows = []
    for t in TASKS:
        vanilla = _values(runs, t.key, "vanilla")
        for cell in CELLS:
            values = _values(runs, t.key, cell)
            if not values:
                continue
            stat, p, word = (None, None, "reference") if cell == "vanilla" else verdict(values, vanilla)
            steps = [r["steps"] for r in runs if r["experiment"] == t.key and r["cell"] == cell]
            rows.append(
                [
                    t.key,
                    cell.upper() if cell not in ("vanilla", "gru") else cell,
                    len(values),
                    statistics.fmean(values),
                    statistics.stdev(values) if len(values) > 1 else None,
                    statistics.median(values),
                    stat,
                    p,
                    word,
                    min(steps),
                ]
            )
    columns = ["task", "cell", "seeds", "mean", "sd", "median", "Welch t vs vanilla", "p", "verdict (0.05)", "fewest steps"]
    return [Table("results", "Final held-out metric (lower is better) per task and cell, against vanilla", columns, rows)]


def figures(runs: list[dict[str, Any]]) -> list[Figure]:
    out = []
    for t in TASKS:
        samples = [_values(runs, t.key, cell) for cell in CELLS]
        if any(samples):
            metric = next(r["metric"] for r in runs if r["experiment"] == t.key)
            out.append(Figure(f"{t.title}: final {metric} per seed", "boxes", metric, groups=list(CELLS), samples=samples))
    return out


def findings(runs: list[dict[str, Any]]) -> list[str]:
    """Greff et al.'s findings, each against our verdicts per task."""
    verdicts: dict[str, dict[str, str]] = {}
    for t in TASKS:
        vanilla = _values(runs, t.key, "vanilla")
        for cell in CELLS[1:]:
            values = _values(runs, t.key, cell)
            if values:
                verdicts.setdefault(cell, {})[t.key] = verdict(values, vanilla)[2]

    def said(cell: str) -> str:
        return ", ".join(f"{task}: {word}" for task, word in verdicts.get(cell, {}).items()) or "not run"

    better = [c for c, v in verdicts.items() if "better" in v.values() and "worse" not in v.values() and c != "gru"]
    lines = [
        "Greff et al.: no variant is clearly better than vanilla. Ours: "
        + (f"better on some task, never worse: {', '.join(better)}." if better else "no LSTM variant is better on any task."),
    ]
    for cell in ("nfg", "noaf"):
        worse = sum(w == "worse" for w in verdicts.get(cell, {}).values())
        lines.append(
            f"Greff et al.: {cell.upper()} clearly worse. Ours ({said(cell)}): "
            + ("reproduced on every task." if worse == len(verdicts.get(cell, {})) and worse else f"worse on {worse} task(s).")
        )
    for cell in ("cifg", "np"):
        same = sum(w == "no difference" for w in verdicts.get(cell, {}).values())
        ours = f"Ours ({said(cell)}): no difference on {same} task(s)."
        lines.append(f"Greff et al.: {cell.upper()} about equal to vanilla. {ours}")
    lines.append(f"GRU against vanilla (not in Greff et al.): {said('gru')}.")
    return lines
