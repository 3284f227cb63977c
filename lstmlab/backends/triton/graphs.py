"""CUDA graphs of the Triton backend's time loops.

The loops launch one to four kernels per step from Python, and on a GPU the launches,
not the arithmetic, set the pace: about 120 µs per step against cuDNN's 20 (see
benchmarks/RESULTS-cuda.md). A CUDA graph records a loop's launches once and replays
them all in one call, so `LoopGraphs` runs a loop like this:

- the first call with a new signature (the shapes, strides, dtypes and devices of the
  tensors, the values of everything else) runs the loop as it is: Triton compiles its
  kernels then, which a capture must not do;
- the second call records the loop on copies of its inputs (the static inputs), in a
  graph whose memory pool holds the loop's outputs;
- that call and every later one copy their inputs into the static inputs, replay the
  graph and return copies of the outputs, made storage by storage so that outputs that
  were views of one another (y and the tape's h) stay so, and nothing a later replay
  writes can reach a caller.

A loop must therefore be a function of its arguments alone, never write into them, and
do nothing a capture forbids (no copies from the host, no synchronisation): the
backend hands it lengths already on the device. A capture that fails anyway is
reported once as a warning, and that signature runs unrecorded from then on.

At most `CAPACITY` graphs are kept; the least recently used is dropped first. Each
holds its static inputs and outputs, so a recorded loop takes about twice the memory
of an unrecorded one. `LSTMLAB_CUDA_GRAPHS=0` turns recording off.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

CAPACITY = 8
SEEN_LIMIT = 4096  # signatures remembered as run once; forgotten all at once past this
ENV = "LSTMLAB_CUDA_GRAPHS"

# capture(fn, static_args) -> (replay, outputs): records fn(*static_args); replay() redoes it into outputs
Capture = Callable[[Callable[..., Any], tuple[Any, ...]], tuple[Callable[[], None], Any]]


def enabled() -> bool:
    """Whether loops on CUDA are recorded (LSTMLAB_CUDA_GRAPHS, read at each call; default on)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def cuda_capture(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Callable[[], None], Any]:
    """Record fn(*args) in a CUDA graph, after one run on a side stream (torch's recipe:
    lazy initialisations such as cuBLAS's workspace happen outside the capture)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(*args)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(*args)
    return graph.replay, outputs


def _signature(leaf: Any) -> Hashable:
    if isinstance(leaf, Tensor):
        return (tuple(leaf.shape), leaf.stride(), leaf.dtype, leaf.device)
    return leaf


def _static_copy(leaf: Any) -> Any:
    return leaf.clone() if isinstance(leaf, Tensor) else leaf


def copy_outputs(leaves: list[Any]) -> list[Any]:
    """Fresh copies of the tensors among `leaves`, one copy per storage they use, with
    each tensor's view of it kept (views of one storage stay views of one copy)."""
    copies: dict[int, torch.UntypedStorage] = {}
    out = []
    for leaf in leaves:
        if not isinstance(leaf, Tensor):
            out.append(leaf)
            continue
        storage = leaf.untyped_storage()
        key = storage.data_ptr()
        if key not in copies:
            copies[key] = storage.clone()
        fresh = torch.empty(0, dtype=leaf.dtype, device=leaf.device)
        fresh.set_(copies[key], leaf.storage_offset(), leaf.shape, leaf.stride())
        out.append(fresh)
    return out


@dataclass
class _Recording:
    static: list[Any]  # the flattened static inputs
    replay: Callable[[], None]
    outputs: list[Any]  # the flattened outputs the replay writes
    spec: pytree.TreeSpec


class LoopGraphs:
    """Runs loops through recorded graphs: `graphs.run(fn, *args)` returns fn(*args).

    `args` and the result are tensors, None, constants and tuples, named tuples and
    dicts of those. `capture` records a call (`cuda_capture` on a GPU; tests pass one
    that emulates it)."""

    def __init__(self, capture: Capture = cuda_capture, capacity: int = CAPACITY) -> None:
        self.capture = capture
        self.capacity = capacity
        self._seen: set[Hashable] = set()
        self._failed: set[Hashable] = set()
        self._recordings: OrderedDict[Hashable, _Recording] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recordings)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        leaves, spec = pytree.tree_flatten(args)
        key = (fn, str(spec), tuple(_signature(leaf) for leaf in leaves))
        recording = self._recordings.get(key)
        if recording is None:
            if key in self._failed or key not in self._seen:
                if len(self._seen) >= SEEN_LIMIT:
                    self._seen.clear()
                self._seen.add(key)  # the first run compiles the kernels
                return fn(*args)
            recording = self._record(fn, key, leaves, spec)
            if recording is None:
                return fn(*args)
        self._recordings.move_to_end(key)
        for static, leaf in zip(recording.static, leaves, strict=True):
            if isinstance(leaf, Tensor):
                static.copy_(leaf)
        recording.replay()
        return pytree.tree_unflatten(copy_outputs(recording.outputs), recording.spec)

    def _record(self, fn: Callable[..., Any], key: Hashable, leaves: list[Any], spec: pytree.TreeSpec) -> _Recording | None:
        static = [_static_copy(leaf) for leaf in leaves]
        try:
            replay, outputs = self.capture(fn, tuple(pytree.tree_unflatten(static, spec)))
        except Exception as error:  # a loop the capture cannot take (or memory): run it unrecorded
            self._failed.add(key)
            warnings.warn(
                f"lstmlab triton: recording the time loop {getattr(fn, '__qualname__', fn)} in a CUDA graph failed "
                f"({type(error).__name__}: {error}); it runs unrecorded (set {ENV}=0 to stop trying)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        out_leaves, out_spec = pytree.tree_flatten(outputs)
        recording = _Recording(static, replay, out_leaves, out_spec)
        self._recordings[key] = recording
        while len(self._recordings) > self.capacity:
            self._recordings.popitem(last=False)
        return recording


_GRAPHS: dict[torch.device, LoopGraphs] = {}


def graphs_for(device: torch.device) -> LoopGraphs | None:
    """The recorded graphs of a CUDA device (made on first use); None elsewhere or when disabled."""
    if device.type != "cuda" or not enabled():
        return None
    if device not in _GRAPHS:
        _GRAPHS[device] = LoopGraphs()
    return _GRAPHS[device]


def run_loop(fn: Callable[..., Any], device: torch.device, *args: Any) -> Any:
    """fn(*args), through the device's recorded graphs where there are some."""
    graphs = graphs_for(device)
    return fn(*args) if graphs is None else graphs.run(fn, *args)
