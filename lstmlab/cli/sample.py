"""`lstmlab sample RUN_DIR`: text from a trained character-level language model, streamed as it is drawn."""

from __future__ import annotations

import argparse
import sys
import time

from lstmlab.cli._errors import fail

# the arguments the flags set -> the flags, so that errors name the flag (`lstmlab.cli._errors`)
FLAGS = {"run_dir": "RUN_DIR", "prime": "--prime", "length": "--length", "temperature": "--temperature", "top_k": "--top-k"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate text from a charlm run",
        description="Generate text from a character-level language model trained with `lstmlab train --task charlm`. "
        "The text is printed as it is drawn; the same seed gives the same text.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a charlm run")
    parser.add_argument("--prime", default=None, help="text to start from (default: a line break); printed first")
    parser.add_argument("--length", type=int, default=500, help="characters to generate after the prime (default: 500)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="divides the logits; lower is more conservative, 0 is greedy (default: 0.8)",
    )
    parser.add_argument(
        "--top-k", type=int, default=0, help="draw only among the k most likely characters; 0 for all (default: 0)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--verbose", "-v", action="store_true", help="report characters per second on stderr")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lstmlab.charlm.sampling import check_options, default_prime, encode_prime, generate, model_step
    from lstmlab.charlm.task import CharLM
    from lstmlab.errors import InvalidArgument
    from lstmlab.train import load_run

    try:
        check_options(args.temperature, args.top_k, args.length)
        loaded = load_run(args.run_dir)
        if not isinstance(loaded.task, CharLM):
            raise InvalidArgument(
                "sample", "RUN_DIR", f"must hold a charlm run; {args.run_dir!r} holds a {loaded.config.task!r} run"
            )
        vocab = loaded.task.vocabulary
        prime = default_prime(vocab) if args.prime is None else args.prime
        encode_prime(vocab, prime)  # now, not at the first draw
        stream = generate(model_step(loaded.model), vocab, prime, args.length, args.temperature, args.top_k, args.seed)
    except (ValueError, TypeError) as error:
        return fail("sample", error, FLAGS)
    out = sys.stdout
    if args.prime is not None:
        out.write(prime)
    start, count = time.perf_counter(), 0
    for char in stream:
        out.write(char)
        out.flush()
        count += 1
    seconds = time.perf_counter() - start
    out.write("\n")
    out.flush()
    if args.verbose:
        rate = count / seconds if seconds > 0 else float("inf")
        print(f"{count} characters in {seconds:.2f} s: {rate:.0f} characters per second", file=sys.stderr)
    return 0
