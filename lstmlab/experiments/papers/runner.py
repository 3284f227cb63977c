"""The shared runner of `lstmlab paper NAME`: train a list of runs within a wall-clock budget,
printing progress, the elapsed time and an ETA, and collect one outcome per run.

A paper module (`lstmlab.experiments.papers.hochreiter1997`, ...) says which runs to make
(`Run`: an experiment key, a cell, a seed and the `TrainConfig`) and how to tabulate the
outcomes; this module only trains them, through the public trainer (`lstmlab.train.Trainer`).
Each run gets a share of the budget left (`max_minutes`) in proportion to its `weight` among
the runs left, so time a run does not use goes to the later ones and the whole command ends
within its budget whatever the machine's speed; a run cut by its share counts as not solved,
and the tables say how many steps each trained. With `jobs` > 1 that many runs train at once,
each in its own process with `threads` threads, and the budget left is shared as `jobs` times
as many run-minutes; the outcomes come back in the plan's order either way.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import torch

from lstmlab.train import TrainConfig, Trainer

Printer = Callable[[str], None]
After = Callable[["Run", Trainer], dict[str, Any]]


@dataclass
class Run:
    """One training run of a paper's experiment: `experiment` (a key of the paper's table),
    `cell`, `seed` and the full `config` (its `cell` and `seed` are these); `weight` is its
    share of the budget relative to the other runs; `label` names the cell in the tables
    where one cell is run in two settings (default: the config's cell)."""

    experiment: str
    config: TrainConfig
    weight: float = 1.0
    label: str | None = None

    @property
    def cell(self) -> str:
        return self.label or self.config.cell

    @property
    def seed(self) -> int:
        return self.config.seed


def clock(seconds: float) -> str:
    """Seconds as `1h02m03s`, `2m03s` or `3s`."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def outcome(run: Run, trainer: Trainer) -> dict[str, Any]:
    """The row of one finished run: its settings, whether and when it was solved, the final metric."""
    summary = trainer.summary()
    batch = int(trainer.task.options().get("batch_size", getattr(trainer.task, "batch_size", 64)))
    solved_at = summary["solved_at"]
    return {
        "experiment": run.experiment,
        "task": run.config.task,
        "task_options": dict(run.config.task_options),
        "cell": run.cell,
        "seed": run.seed,
        "hidden": run.config.hidden,
        "lr": run.config.lr,
        "forget_bias": run.config.forget_bias,
        "layer_norm": run.config.layer_norm,
        "batch_size": batch,
        "steps": summary["steps"],
        "solved": summary["solved"],
        "solved_at": solved_at,
        "sequences": None if solved_at is None else solved_at * batch,
        "metric": summary["metric"],
        "value": summary["value"],
        "baseline": summary["baseline"],
        "seconds": summary["seconds"],
    }


def train_one(run: Run, share_minutes: float, after: After | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train `run` within `share_minutes` (or its own `max_minutes`, if smaller) and return its
    outcome, with what `after(run, trainer)` adds; `threads`: torch's threads in this process."""
    if threads is not None:
        torch.set_num_threads(threads)
    limit = run.config.max_minutes
    config = replace(run.config, max_minutes=share_minutes if limit is None else min(share_minutes, limit))
    trainer = Trainer(config)
    for _ in trainer.run():
        pass
    row = outcome(run, trainer)
    if after is not None:
        row.update(after(run, trainer))
    return row


def execute(
    runs: list[Run],
    budget_minutes: float,
    *,
    after: After | None = None,
    echo: Printer = print,
    threads: int = 1,
    jobs: int = 1,
    equal_steps: bool = False,
) -> list[dict[str, Any]]:
    """Train `runs` within `budget_minutes` of wall-clock time, `jobs` at once (each in its own
    process when `jobs` > 1), each within its share of the budget left, and return their
    outcomes in the order of `runs` (`outcome`, plus what `after(run, trainer)` adds; `after`
    must be a module-level function when `jobs` > 1). Prints one line per finished run with
    the elapsed time and an ETA: the mean time per unit of weight so far times the weight
    left, and at most the budget left.

    equal_steps: every run ends at its number of steps (the budget is only a bound), so the
    time the runs finished so far took per unit of weight predicts what the others need; a run
    may then use the run-minutes that prediction leaves spare, beyond its proportional share,
    so that a cell slower than its task's weight says still trains all its steps when the
    budget allows it. (Not for runs that stop when solved: the fast early solutions would
    predict too little and hand an unsolvable run the time of all the later ones.)"""
    total_weight = sum(r.weight for r in runs) or 1.0
    start = time.perf_counter()
    done_weight = 0.0
    used_minutes = 0.0  # run-minutes the finished runs took
    finished = 0
    echo(f"{len(runs)} runs within {clock(budget_minutes * 60)}" + (f", {jobs} at once" if jobs > 1 else ""))

    def share(run: Run) -> float:
        """The run's part of the run-minutes left: `jobs` workers for the minutes left, in
        proportion to its weight among the runs not finished, or with `equal_steps` what the
        others' predicted need leaves, if more; never past the budget's end."""
        left_minutes = max(budget_minutes - (time.perf_counter() - start) / 60, 1e-3)
        unfinished = max(total_weight - done_weight, run.weight)
        part = jobs * left_minutes * run.weight / unfinished
        if equal_steps and done_weight > 0:
            part = max(part, jobs * left_minutes - used_minutes / done_weight * (unfinished - run.weight))
        return min(left_minutes, part)

    def report(run: Run, row: dict[str, Any], minutes: float) -> None:
        nonlocal done_weight, used_minutes, finished
        done_weight += run.weight
        used_minutes += minutes
        finished += 1
        elapsed = time.perf_counter() - start
        left = total_weight - done_weight
        at_most = max(0.0, budget_minutes * 60 - elapsed) if left > 0 else 0.0
        eta = min(elapsed / done_weight * left, at_most)
        status = f"solved at step {row['solved_at']}" if row["solved"] else f"not solved in {row['steps']} steps"
        value = row["value"]
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
        echo(
            f"[{finished}/{len(runs)}] {run.experiment} {run.cell} seed {run.seed}: {status}, {row['metric']} {shown} "
            f"({row['seconds']:.0f}s) | elapsed {clock(elapsed)}, ETA {clock(eta)} (at most {clock(at_most)})"
        )

    results: dict[int, dict[str, Any]] = {}
    if jobs <= 1:
        torch.set_num_threads(threads)
        for k, run in enumerate(runs):
            began = time.perf_counter()
            results[k] = train_one(run, share(run), after)
            report(run, results[k], (time.perf_counter() - began) / 60)
        return [results[k] for k in range(len(runs))]

    # spawn: each worker starts its own interpreter (no forked OpenMP or autograd state)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        waiting = list(enumerate(runs))
        running: dict[Future[dict[str, Any]], tuple[int, float]] = {}
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    k, run = waiting.pop(0)
                    running[pool.submit(train_one, run, share(run), after, threads)] = (k, time.perf_counter())
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    k, began = running.pop(future)
                    results[k] = future.result()
                    report(runs[k], results[k], (time.perf_counter() - began) / 60)
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return [results[k] for k in range(len(runs))]
