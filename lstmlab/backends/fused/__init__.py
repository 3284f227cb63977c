"""Fused CPU kernels: C++ source (fused.cpp), its build (loader), the custom ops (custom_ops)
and the backend that runs them (backend)."""

from lstmlab.backends.fused.backend import FusedBackend

__all__ = ["FusedBackend"]
