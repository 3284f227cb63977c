"""The papers' experiments at their own scale, one module per paper, run by `lstmlab paper NAME`.

A paper module provides TITLE, SETUP (how our set-up differs, as sentences), `plan(quick,
seeds) -> list[Run]`, `tables(runs)`, `figures(runs)`, `findings(runs)` and optionally
`after(run, trainer)` (extra measurements of each trained network) and EQUAL_STEPS (True
when every run trains a fixed number of steps: `runner.execute`'s `equal_steps`). `run_paper` trains
the plan within a wall-clock budget (`runner.execute`) and writes the files (`report.write`).

    >>> from lstmlab.experiments.papers import PAPERS
    >>> sorted(PAPERS)
    ['gers2000', 'greff2015', 'hochreiter1997']
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lstmlab.errors import InvalidArgument
from lstmlab.experiments.papers.report import Report, write
from lstmlab.experiments.papers.runner import Run, clock, execute

PAPERS = {
    "hochreiter1997": "Hochreiter & Schmidhuber 1997 (experiments 1, 2a, 4, 6a, 6b; the copy task of Arjovsky et al. 2016)",
    "gers2000": "Gers, Schmidhuber & Cummins 2000 (continual embedded Reber)",
    "greff2015": "Greff et al. 2015 (the LSTM odyssey: eight variants against vanilla)",
}
QUICK_MINUTES = 4.5  # `--quick` ends within 5 minutes on a 2-core CPU, writing the files included
FULL_MINUTES = 55.0
DEFAULT_SEEDS = {"hochreiter1997": (1, 3), "gers2000": (2, 5), "greff2015": (2, 4)}  # (quick, full)
DEFAULT_JOBS = min(2, os.cpu_count() or 1)  # runs at once, one thread each: both cores of a 2-core machine


def select(runs: list[Run], only: str | None) -> list[Run]:
    """The runs of the experiments named in `only` (comma-separated keys; a key also selects the
    experiments whose key starts with it and a space, so "4" selects "4 T=100", "4 T=500", ...);
    all runs when `only` is None. A key that selects nothing is an error listing the keys."""
    if only is None:
        return runs
    keys = list(dict.fromkeys(r.experiment for r in runs))
    wanted = [k.strip() for k in only.split(",")]
    chosen = set()
    for want in wanted:
        matches = {k for k in keys if k == want or k.startswith(want + " ")}
        if not want or not matches:
            raise InvalidArgument("paper", "only", f"must name experiments of this mode ({', '.join(keys)}); got {want!r}")
        chosen |= matches
    return [r for r in runs if r.experiment in chosen]


def paper_module(name: str) -> Any:
    """The module of paper `name`; an unknown name is an error naming the argument."""
    if name not in PAPERS:
        raise InvalidArgument("paper", "name", f"must be one of {', '.join(PAPERS)}; got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def run_paper(
    name: str,
    out_dir: str | Path,
    *,
    quick: bool = False,
    seeds: int | None = None,
    minutes: float | None = None,
    jobs: int | None = None,
    only: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, str]:
    """Run paper `name`'s experiments and write its files into `out_dir`; returns what was
    written ({"json", "csv", "png" or "note", "html"}: paths or the note).

    jobs: runs trained at once, each in its own process with one thread (default
    `DEFAULT_JOBS`); only: the experiments to run (`select`), default all of the mode."""
    module = paper_module(name)
    if seeds is None:
        seeds = DEFAULT_SEEDS[name][0 if quick else 1]
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidArgument("paper", "seeds", f"must be a positive int; got {seeds!r}")
    if minutes is None:
        minutes = QUICK_MINUTES if quick else FULL_MINUTES
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0:
        raise InvalidArgument("paper", "minutes", f"must be a positive number; got {minutes!r}")
    if jobs is None:
        jobs = DEFAULT_JOBS
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidArgument("paper", "jobs", f"must be a positive int; got {jobs!r}")
    runs = select(module.plan(quick, seeds), only)
    start = time.perf_counter()
    equal_steps = getattr(module, "EQUAL_STEPS", False)
    rows = execute(runs, minutes, after=getattr(module, "after", None), echo=echo, jobs=jobs, equal_steps=equal_steps)
    elapsed = time.perf_counter() - start
    report = Report(
        paper=name,
        title=module.TITLE,
        quick=quick,
        settings={
            "mode": "quick" if quick else "full",
            "seeds": seeds,
            "budget": clock(minutes * 60),
            "jobs": jobs,
            "experiments": only or "all",
            "elapsed": clock(elapsed),
        },
        setup=list(module.SETUP),
        tables=module.tables(rows),
        figures=module.figures(rows),
        findings=module.findings(rows),
        runs=rows,
        elapsed_seconds=elapsed,
    )
    return write(report, out_dir)
