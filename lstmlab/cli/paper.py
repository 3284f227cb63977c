"""`lstmlab paper NAME`: a paper's experiments at its own scale, with a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstmlab.cli._errors import fail
from lstmlab.errors import InvalidArgument

FLAGS = {"seeds": "--seeds", "minutes": "--minutes", "jobs": "--jobs", "only": "--only", "name": "NAME"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from lstmlab.experiments.papers import PAPERS

    names = "; ".join(f"{k}: {v}" for k, v in PAPERS.items())
    parser = subparsers.add_parser(
        "paper",
        help="run a paper's experiments (hochreiter1997, gers2000, greff2015) and write a report",
        description=f"Run the experiments of a paper at its lags with its success criteria, several seeds per cell, "
        f"within a wall-clock budget (--quick: 4.5 minutes; full: 55 minutes), printing progress, the elapsed time and "
        f"an ETA; write results.json, runs.csv, table-*.csv, figures.png (with matplotlib) and a self-contained "
        f"report.html into --out. Papers: {names}.",
    )
    parser.add_argument("name", metavar="NAME", help="hochreiter1997, gers2000 or greff2015")
    parser.add_argument("--quick", action="store_true", help="small budgets: the qualitative result in under 5 minutes")
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds (trials) per cell (default: per paper, fewer with --quick)"
    )
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget of all runs (default: 4.5 quick, 55 full)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained at once, each in its own process with one thread (default: 2 where there are 2 cores, else 1)",
    )
    parser.add_argument(
        "--only",
        metavar="KEYS",
        default=None,
        help="comma-separated experiments to run (e.g. 2a,6a; '4' selects every lag of experiment 4); default all",
    )
    parser.add_argument("--out", metavar="DIR", default=None, help="output directory (default: runs/paper-NAME)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.experiments.papers import paper_module, run_paper

    try:
        paper_module(args.name)
    except ValueError as error:
        return fail("paper", error, FLAGS)
    out = Path(args.out or Path("runs") / f"paper-{args.name}")
    try:  # before the runs, not after their budget is spent
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return fail("paper", InvalidArgument("paper", "--out", f"could not be created: {str(out)!r} ({error.strerror})"))
    try:
        echo = lambda line: print(line, file=sys.stderr, flush=True)  # progress on stderr, the files on stdout
        written = run_paper(
            args.name, out, quick=args.quick, seeds=args.seeds, minutes=args.minutes, jobs=args.jobs, only=args.only, echo=echo
        )
    except (ValueError, TypeError) as error:
        return fail("paper", error, FLAGS)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0
