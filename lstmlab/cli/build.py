"""`lstmlab build`: compile the fused CPU kernels ahead of time (they are cached)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="compile the fused CPU kernels now rather than on first use",
        description="Compile the fused CPU kernels (C++, torch cpp_extension) into the user cache, "
        "so the first model that uses them starts at once. A no-op when the build is cached.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.backends.fused import loader

    try:
        module = loader.load()
    except RuntimeError as exc:
        print(f"lstmlab build: {exc}", file=sys.stderr)
        return 1
    print(f"fused CPU kernels ready: {module.__file__}")
    return 0
