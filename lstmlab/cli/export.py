"""`lstmlab export RUN_DIR --onnx FILE`: a trained run's whole model as an ONNX graph of ONNX's recurrent operators."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lstmlab.cli._errors import fail
from lstmlab.errors import InvalidArgument

if TYPE_CHECKING:
    import torch

# the arguments the flags set -> the flags, so that errors name the flag (`lstmlab.cli._errors`)
FLAGS = {"run_dir": "RUN_DIR", "path": "--onnx", "module_or_model": "RUN_DIR", "module": "RUN_DIR"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a run's model to ONNX",
        description="Write a trained run's model (input encoding, recurrent stack, readout) as an ONNX model whose "
        "recurrent layers are ONNX's own LSTM, GRU and RNN operators. Inputs: `input` (T, B, features) float32, or "
        "(T, B) int64 ids for a charlm run; outputs: `output`, `h_n` (and `c_n`). T and B are dynamic. "
        "Needs onnx: pip install 'lstmlab[onnx]'.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (from `lstmlab train`)")
    parser.add_argument("--onnx", metavar="FILE", required=True, help="where to write the ONNX model")
    parser.add_argument(
        "--state-inputs", action="store_true", help="give the graph inputs h_0 (and c_0) for the initial state (default: zeros)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the written model in onnxruntime on a random input and print its largest difference from lstmlab's",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lstmlab.onnx_export import export_onnx
    from lstmlab.runs import load

    try:
        loaded = load(args.run_dir)
        model = loaded.model
        example = _example(model, T=3, B=2)
        with torch.no_grad():
            state = model(example)[1] if args.state_inputs else None  # a state as the model takes it, for its shapes
        path = export_onnx(model, (example, state) if state is not None else example, args.onnx)
    except (ValueError, TypeError) as error:
        return fail("export", error, FLAGS)
    except OSError as error:
        rule = "must name a file, not a directory" if Path(args.onnx).is_dir() else "must name a file that can be written"
        return fail("export", InvalidArgument("export", "--onnx", f"{rule}; got {args.onnx!r} ({error.strerror})"))
    print(path)
    if args.verify:
        try:
            import onnxruntime
        except ImportError:
            return fail("export", ValueError("export: --verify needs onnxruntime; install it with pip install onnxruntime"))
        x = _example(model, T=7, B=3, seed=1)
        feed = {"input": x.numpy()}
        with torch.no_grad():
            expected, final = model(x)
        if state is not None:
            finals = final if isinstance(final, tuple) else (final,)
            feed.update({name: torch.zeros_like(s).numpy() for name, s in zip(("h_0", "c_0"), finals)})
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(["output"], feed)[0]
        print(f"largest difference from lstmlab on a (7, 3) input: {float(abs(torch.from_numpy(got) - expected).max()):.3g}")
    return 0


def _example(model: torch.nn.Module, T: int, B: int, seed: int = 0) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    if model.token_inputs:
        return torch.randint(model.input_size, (T, B), generator=generator)
    return torch.randn(T, B, model.input_size, generator=generator)
