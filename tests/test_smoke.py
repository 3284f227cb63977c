"""The package imports (without matplotlib) and a drop-in LSTM runs forward and backward."""

import subprocess
import sys

import torch

import lstmlab


def test_lstm_runs_forward_and_backward() -> None:
    lstm = lstmlab.LSTM(3, 5, variant="CIFG")
    out, (h, c) = lstm(torch.randn(4, 2, 3))
    out.sum().backward()
    assert out.shape == (4, 2, 5) and h.shape == c.shape == (1, 2, 5)
    assert lstm.weight_ih_l0.grad is not None


def test_import_lstmlab_and_the_command_line_do_not_import_matplotlib() -> None:
    """matplotlib is an optional extra (`lstmlab[plots]`): the modules and the commands load without it."""
    code = "import sys, lstmlab, lstmlab.cli; lstmlab.cli.build_parser(); assert 'matplotlib' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
