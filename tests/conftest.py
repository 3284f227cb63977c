"""Test-wide settings."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU, the triton backend runs its kernels under Triton's interpreter, so that the
# cross-backend tests check it on the CPU like every other backend (set before triton loads).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config: pytest.Config) -> None:
    # torch's own LSTM (and so the native backend) says so on CPU whenever it projects
    config.addinivalue_line("filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning")
