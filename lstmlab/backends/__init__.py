"""Backends by name, and the choice of one for a configuration.

- "reference": NumPy float64 with hand-written BPTT (`lstmlab.reference`); CPU only.
- "eager": per-step torch ops under autograd; any device, any cell.
- "native": torch's own kernels, for the configurations torch has.
- "auto": the fastest registered backend that can run the configuration.
"""

from __future__ import annotations

import torch

from lstmlab.backends.base import Backend, LayeredBackend, StackConfig
from lstmlab.backends.eager import EagerBackend
from lstmlab.backends.native import NativeBackend
from lstmlab.backends.reference import ReferenceBackend

_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> None:
    """Make `backend` selectable by its name."""
    _REGISTRY[backend.name] = backend


def names() -> tuple[str, ...]:
    """Names a module's `backend` argument accepts."""
    return ("auto", *_REGISTRY)


def auto_order(config: StackConfig) -> tuple[str, ...]:
    """Backends "auto" tries for `config`, fastest first."""
    return ("native", "fused", "eager")


def get(name: str) -> Backend:
    """The registered backend called `name`."""
    return _REGISTRY[name]


def resolve(name: str, config: StackConfig, x: torch.Tensor, owner: str = "RNN") -> Backend:
    """The backend that will run `config` on tensors like `x`.

    Raises ValueError naming the reason when an explicitly chosen backend cannot run it.
    """
    if name == "auto":
        for candidate in auto_order(config):
            backend = _REGISTRY.get(candidate)
            if backend is not None and backend.unsupported(config, x) is None:
                return backend
        raise AssertionError("the eager backend runs every configuration")
    if name not in _REGISTRY:
        raise ValueError(f"{owner}: backend must be one of {', '.join(names())}; got {name!r}")
    backend = _REGISTRY[name]
    reason = backend.unsupported(config, x)
    if reason is not None:
        raise ValueError(f"{owner}: backend={name!r} cannot run this configuration: {reason}")
    return backend


for _backend in (ReferenceBackend(), EagerBackend(), NativeBackend()):
    register(_backend)

__all__ = ["Backend", "LayeredBackend", "StackConfig", "auto_order", "get", "names", "register", "resolve"]
