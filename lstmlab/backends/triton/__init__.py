"""Triton kernels for CUDA (run on the CPU by Triton's interpreter under
TRITON_INTERPRET=1): the shared launch helpers (launch), one file of kernels and time
loops per cell family (lstm_kernels, gru_kernels, rnn_kernels) and the backend that
runs them (backend). triton is optional (`pip install 'lstmlab[gpu]'`); without it
the backend says so from `unsupported` and nothing else changes.
"""

from lstmlab.backends.triton.backend import TritonBackend

__all__ = ["TritonBackend"]
