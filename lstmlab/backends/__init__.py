"""Backends by name, and the choice of one for a configuration.

- "reference": NumPy float64 with hand-written BPTT (`lstmlab.reference`); CPU only.
- "eager": per-step torch ops under autograd; any device, any cell.
- "native": torch's own kernels, for the configurations torch has.
- "fused": C++ kernels for the CPU (`lstmlab.backends.fused`), compiled on first use.
- "triton": Triton kernels for CUDA (`lstmlab.backends.triton`), when triton is installed;
  on the CPU only under Triton's interpreter (TRITON_INTERPRET=1), for tests. "auto" runs
  it only where TRITON_OVER_BEST_CUDA records it faster (the cells torch lacks).
- "auto": the fastest registered backend that can run the configuration (`auto_order`).
"""

from __future__ import annotations

import math
import warnings

import torch

from lstmlab.backends.base import Backend, LayeredBackend, StackConfig
from lstmlab.backends.eager import EagerBackend
from lstmlab.backends.fused import FusedBackend
from lstmlab.backends.native import NativeBackend
from lstmlab.backends.numpy_reference import ReferenceBackend
from lstmlab.backends.triton import TritonBackend
from lstmlab.cells import LSTMSpec, spec_name, torch_mode
from lstmlab.errors import InvalidArgument, Unsupported

_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> None:
    """Make `backend` selectable by its name."""
    _REGISTRY[backend.name] = backend


def names() -> tuple[str, ...]:
    """Names a module's `backend` argument accepts."""
    return ("auto", *_REGISTRY)


# Time of fused over time of native, (training step, inference), float32, T=100,
# input size = hidden size, batch 16/32/64/128 for hidden 64/128/256/512: the grid of
# `lstmlab bench`, run on a quiet 2-core Intel Xeon (AVX-512), torch 2.13.0, 2 torch
# threads; table in benchmarks/RESULTS.md. Fused goes first where the geometric mean
# of the two is below 1.
FUSED_OVER_NATIVE: dict[str, dict[int, tuple[float, float]]] = {
    "lstm": {64: (0.98, 1.34), 128: (1.20, 1.47), 256: (0.94, 1.46), 512: (0.93, 1.38)},
    "gru": {64: (0.24, 0.38), 128: (0.47, 0.63), 256: (0.76, 0.74), 512: (0.97, 0.97)},
    "rnn": {64: (0.37, 0.45), 128: (0.51, 0.65), 256: (0.74, 0.82), 512: (0.84, 0.96)},
    # LSTM with proj_size = hidden_size / 2, where torch's LSTM leaves oneDNN for its
    # default implementation (same machine, medians of 9, 5 at 512)
    "lstm-proj": {64: (0.27, 0.52), 128: (0.57, 0.70), 256: (0.78, 0.80), 512: (0.99, 0.94)},
}


# Time of triton over the fastest other backend on CUDA (native, that is cuDNN, where
# torch has the cell, else eager), (training step, inference), by cell name
# (`lstmlab.cells.spec_name`; "-proj" added with proj_size) and hidden size: T=1024, input
# size = hidden size, the grid of `lstmlab bench --device cuda` on one NVIDIA H200 (torch
# 2.11, CUDA 13.0, cuDNN 9.19, triton 3.6), the loops recorded in CUDA graphs; the worse
# of float32 and bfloat16 (`lstmlab.experiments.speed.cuda_auto_table`; the tables are in
# benchmarks/RESULTS-cuda.md). Rows for the cells torch lacks only: for lstm, gru and rnn
# triton measured faster than cuDNN up to H=768 but takes 2-3 times cuDNN's memory, so
# "auto" keeps torch's kernels there (backend="triton" chooses it). An LSTM variant
# without a row of its own (NIG, NFG, NOG, NIAF, NOAF, FGR, any with proj_size) reads the
# peephole row: the same kernels with fewer gates compiled in.
TRITON_OVER_BEST_CUDA: dict[str, dict[int, tuple[float, float]]] = {
    "peephole": {256: (0.02, 0.04), 512: (0.03, 0.07), 768: (0.03, 0.09), 1024: (0.11, 0.22)},
    "cifg": {256: (0.02, 0.02), 512: (0.04, 0.07), 768: (0.03, 0.07), 1024: (0.11, 0.2)},
    "gru-before": {256: (0.02, 0.03), 512: (0.05, 0.13), 768: (0.03, 0.11), 1024: (0.1, 0.25)},
}
UNMEASURED_LSTM_KEY = "peephole"


def _torch_kind(config: StackConfig) -> str | None:
    """ "lstm", "lstm-proj", "gru" or "rnn" when torch has this cell, else None."""
    mode = torch_mode(config.spec)
    if mode is None:
        return None
    if mode == "LSTM":
        return "lstm-proj" if config.proj_size else "lstm"
    return "gru" if mode == "GRU" else "rnn"


def _cell_key(config: StackConfig, table: dict[str, dict[int, tuple[float, float]]]) -> str | None:
    """The row of `table` (TRITON_OVER_BEST_CUDA) that speaks for `config`: its own, or for
    an LSTM torch lacks that has none, UNMEASURED_LSTM_KEY's; None when neither exists."""
    name = spec_name(config.spec)
    key = None if name is None else name + ("-proj" if config.proj_size else "")
    if key not in table and isinstance(config.spec, LSTMSpec) and torch_mode(config.spec) is None:
        key = UNMEASURED_LSTM_KEY
    return key if key in table else None


def _measured_faster(table: dict[str, dict[int, tuple[float, float]]], key: str | None, hidden_size: int) -> bool:
    """Whether `table` records its backend faster for `key`: at the measured hidden size
    nearest `hidden_size` (on a log scale), the geometric mean of the training and
    inference ratios is below 1. Nothing measured: not faster."""
    sizes = table.get(key) if key is not None else None
    if not sizes:
        return False
    nearest = min(sizes, key=lambda size: abs(math.log(size / max(hidden_size, 1))))
    train, infer = sizes[nearest]
    return train * infer < 1.0


def auto_order(
    config: StackConfig,
    device: str = "cpu",
    table: dict[str, dict[int, tuple[float, float]]] | None = None,
    *,
    steps: int | None = None,
) -> tuple[str, ...]:
    """Backends "auto" tries for `config` on a device of type `device`, fastest first,
    for an input of `steps` time steps (None: many).

    - "cpu", one step (steps=1: every *Cell, and a stack fed one step at a time): for
      the cells torch has, one layer, native (torch's cell op) first; a unidirectional
      stack of several layers, fused first (in inference, one call of the extension for
      every layer; native steps the layers from Python); then the other of the two, then
      eager. The cells torch lacks: fused (in inference one call of the extension's
      single step), then eager. The step-latency table of `lstmlab bench --step`,
      benchmarks/RESULTS.md, measured these orders.
    - "cpu": fused and native (for the cells torch has), in the order FUSED_OVER_NATIVE
      measured at the nearest hidden size; then eager.
    - "cuda": triton first only where TRITON_OVER_BEST_CUDA measured it faster than the
      best of native and eager for this cell (or, for an LSTM variant it has no row for,
      the peephole LSTM) at the nearest hidden size; else triton is left out, and native
      (cuDNN, for the cells torch has) goes before eager. With a regulariser inside the
      recurrence (`StackConfig.in_recurrence`), which native cannot run, triton goes
      before eager (without regularisers triton ran 2-98x faster than eager on every
      cell, benchmarks/RESULTS-cuda.md; with them it was not measured).
    - any other device: native, then eager.

    `table` stands in for the device's recorded table (FUSED_OVER_NATIVE or
    TRITON_OVER_BEST_CUDA): the rule is a function of its arguments only.
    """
    if device == "cpu" and steps == 1:
        if _torch_kind(config) is None:
            return ("fused", "eager")
        stack = config.num_layers > 1 and not config.bidirectional
        return ("fused", "native", "eager") if stack else ("native", "fused", "eager")
    if device == "cpu":
        kind = _torch_kind(config)
        if kind is None:
            return ("fused", "native", "eager")
        fused_first = _measured_faster(FUSED_OVER_NATIVE if table is None else table, kind, config.hidden_size)
        return ("fused", "native", "eager") if fused_first else ("native", "fused", "eager")
    if device == "cuda":
        recorded = TRITON_OVER_BEST_CUDA if table is None else table
        if config.in_recurrence() or _measured_faster(recorded, _cell_key(config, recorded), config.hidden_size):
            return ("triton", "native", "eager")
    return ("native", "eager")


def get(name: str) -> Backend:
    """The registered backend called `name`."""
    return _REGISTRY[name]


def resolve(name: str, config: StackConfig, x: torch.Tensor, owner: str = "RNN", *, steps: int | None = None) -> Backend:
    """The backend that will run `config` on tensors like `x`, for inputs of `steps` time steps (None: many).

    Raises `Unsupported` (a ValueError) naming the reason when an explicitly chosen backend cannot run it.
    """
    if name == "auto":
        for candidate in auto_order(config, x.device.type, steps=steps):
            backend = _REGISTRY.get(candidate)
            if backend is None:
                continue
            reason = backend.unsupported(config, x)
            if reason is None:
                return backend
            _warn_unavailable(candidate, reason)
        raise AssertionError("the eager backend runs every configuration")
    if name not in _REGISTRY:
        raise InvalidArgument(owner, "backend", f"must be one of {', '.join(names())}; got {name!r}")
    backend = _REGISTRY[name]
    reason = backend.unsupported(config, x)
    if reason is not None:
        raise Unsupported(owner, "backend", f"={name!r} cannot run this configuration: {reason}")
    return backend


_warned: set[str] = set()


def _warn_unavailable(name: str, reason: str) -> None:
    """Warn once per process when "auto" skips a backend that cannot run at all here
    (as opposed to one that does not support this configuration)."""
    backend = _REGISTRY[name]
    unavailable = getattr(backend, "unavailable", None)
    if unavailable is None or name in _warned or unavailable() != reason:
        return
    _warned.add(name)
    warnings.warn(f"backend='auto' runs without the {name} backend: {reason}", RuntimeWarning, stacklevel=4)


for _backend in (ReferenceBackend(), EagerBackend(), NativeBackend(), FusedBackend(), TritonBackend()):
    register(_backend)

__all__ = ["Backend", "LayeredBackend", "StackConfig", "auto_order", "get", "names", "register", "resolve"]
