"""Test-wide settings."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # torch's own LSTM (and so the native backend) says so on CPU whenever it projects
    config.addinivalue_line("filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning")
