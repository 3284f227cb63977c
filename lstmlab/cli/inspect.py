"""`lstmlab inspect RUN_DIR`: a self-contained HTML page that looks inside a charlm run's cells."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmlab.cli._errors import fail
from lstmlab.errors import InvalidArgument

# the arguments the flags set -> the flags, so that errors name the flag (`lstmlab.cli._errors`)
FLAGS = {
    "run_dir": "RUN_DIR",
    "text": "--text",
    "chars": "--chars",
    "analyse": "--analyze",
    "sample_length": "--sample-length",
    "temperature": "--temperature",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="write an HTML page that looks inside a charlm run's cells",
        description="Write one self-contained HTML page (no network) for a charlm run: a passage coloured by any cell, "
        "the cells ranked by the readable features they track, gate saturation, a sample and the learning curves.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a charlm run")
    parser.add_argument("--text", metavar="FILE", default=None, help="UTF-8 text to look at (default: the run's validation text)")
    parser.add_argument(
        "--out", metavar="FILE", default=None, help="the page's file (a file, not a directory; default: RUN_DIR/report.html)"
    )
    parser.add_argument("--chars", type=int, default=2000, help="characters of the passage to colour (default: 2000)")
    parser.add_argument(
        "--analyze", type=int, default=10000, help="characters used to rank cells and measure saturation (default: 10000)"
    )
    parser.add_argument("--analyse", dest="analyze", type=int, help=argparse.SUPPRESS)  # the earlier spelling, kept working
    parser.add_argument("--sample-length", type=int, default=500, help="characters of the sample shown (default: 500)")
    parser.add_argument("--temperature", type=float, default=0.8, help="temperature of the sample (default: 0.8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.charlm.corpus import read_text
    from lstmlab.charlm.page import build, render
    from lstmlab.run_dir import write_atomic

    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "report.html"
    try:
        text = read_text(args.text) if args.text is not None else None
        data = build(args.run_dir, text, args.chars, args.analyze, args.sample_length, args.temperature, args.seed)
    except (ValueError, TypeError) as error:
        return fail("inspect", error, FLAGS)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        page = render(data).encode("utf-8")
        write_atomic(out, lambda f: f.write(page))  # a new file, then os.replace: a link at `out` is replaced, not followed
    except OSError as error:
        rule = "must name a file, not a directory" if out.is_dir() else "must name a file that can be written"
        return fail("inspect", InvalidArgument("inspect", "--out", f"{rule}; got {str(out)!r} ({error.strerror})"))
    print(out)
    return 0
