"""`lstmlab build`: compile the fused CPU kernels ahead of time (they are cached)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="compile the fused CPU kernels now rather than on first use",
        description="Compile the fused CPU kernels (C++, torch cpp_extension) into the user cache, "
        "so the first model that uses them starts at once. A library already built for these sources, flags, "
        "torch and Python is reused (whichever ninja is on the PATH); a line on stderr says when a build starts.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.backends.fused import loader

    try:
        module = loader.load()
    except RuntimeError as exc:
        print(f"lstmlab build: {exc}", file=sys.stderr)
        return 1
    print(f"fused CPU kernels ready: {module.__file__}")  # a build, if there was one, said so on stderr
    return 0
