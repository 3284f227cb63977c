"""The `lstmlab` command line: the only place that reads argv or writes to stdout.

Each subcommand lives in its own module of this package and provides
`add_parser(subparsers)`, which registers the subcommand and sets `run=callable(args) -> int`
as a default. Modules are discovered, so adding a command is adding a file.

A mistake in the arguments prints one line on stderr and exits with status 2: commands
report the errors they expect in the terms of their flags (`lstmlab.cli._errors`), and
any other `lstmlab.errors.LstmlabError` is printed under the command's name (`compare:
...`, not the name of the library part that raised it).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from lstmlab.errors import LstmlabError


def build_parser() -> argparse.ArgumentParser:
    from lstmlab import __version__

    parser = argparse.ArgumentParser(prog="lstmlab", description="The LSTM family for PyTorch.")
    parser.add_argument("--version", action="version", version=f"lstmlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lstmlab` script; returns the exit status."""
    import torch

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a command that starts itself again (train --nproc)
    threads = torch.get_num_threads()  # commands may set them; a caller of main() gets its own back
    try:
        return int(args.run(args) or 0)
    except LstmlabError as error:
        print(error.relabel(owner=args.command), file=sys.stderr)  # named by the command typed, whoever raised it
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
