"""The package imports and a drop-in LSTM runs forward and backward."""

import torch

import lstmlab


def test_lstm_runs_forward_and_backward() -> None:
    lstm = lstmlab.LSTM(3, 5, variant="CIFG")
    out, (h, c) = lstm(torch.randn(4, 2, 3))
    out.sum().backward()
    assert out.shape == (4, 2, 5) and h.shape == c.shape == (1, 2, 5)
    assert lstm.weight_ih_l0.grad is not None
