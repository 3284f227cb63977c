"""Fused CPU kernels: the C++ sources (csrc/: shared helpers, one file per cell family,
the input checks and the bindings), their build (loader), the op interface named on the
Python side (schema), the custom ops (custom_ops) and the backend that runs them (backend)."""

from lstmlab.backends.fused.backend import FusedBackend

__all__ = ["FusedBackend"]
