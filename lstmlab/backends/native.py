"""The native backend: torch's own LSTM, GRU and RNN kernels (oneDNN, cuDNN, ...),
for the configurations torch has: the plain LSTM (with or without projection), the
GRU with reset after the product, and the tanh or relu RNN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmlab.backends.base import Backend, StackConfig
from lstmlab.cells import GRUSpec, LayerWeights, LSTMSpec, torch_mode


def _kernel(config: StackConfig) -> Callable[..., Any]:
    """torch.lstm, torch.gru, torch.rnn_tanh or torch.rnn_relu, whichever runs `config`."""
    spec = config.spec
    if isinstance(spec, LSTMSpec):
        return torch.lstm
    if isinstance(spec, GRUSpec):
        return torch.gru
    return torch.rnn_tanh if spec.nonlinearity == "tanh" else torch.rnn_relu


class NativeBackend(Backend):
    name = "native"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        spec = config.spec
        if torch_mode(spec) is not None:
            if config.hidden_size == 0 and isinstance(spec, LSTMSpec) and x.device.type == "cpu":
                return "torch's LSTM kernel on the CPU (oneDNN) cannot run hidden_size=0"
            return None
        if isinstance(spec, LSTMSpec):
            return "torch.nn.LSTM has no peepholes, coupled gates, missing gates, other activations or gate recurrence"
        return "torch.nn.GRU applies the reset gate after the recurrent product only (reset='after')"

    def run(
        self,
        config: StackConfig,
        x: torch.Tensor,
        lengths: torch.Tensor | None,
        hx: tuple[torch.Tensor, ...],
        weights: list[LayerWeights],
        training: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        params = [t for w in weights for t in (w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr) if t is not None]
        kernel = _kernel(config)
        state = list(hx) if isinstance(config.spec, LSTMSpec) else hx[0]
        flags = (config.bias, config.num_layers, config.dropout, training, config.bidirectional)
        with warnings.catch_warnings():
            # cuDNN wants all weights in one buffer and copies them into one per call when they are not;
            # lstmlab keeps one tensor per parameter (the same on every backend) and accepts that copy.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
            if lengths is None:
                y, *hn = kernel(x, state, params, *flags, False)
                return y, tuple(hn)
            packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
            order, unorder = packed.sorted_indices, packed.unsorted_indices
            state = [s.index_select(1, order) for s in state] if isinstance(state, list) else state.index_select(1, order)
            data, *hn = kernel(packed.data, packed.batch_sizes, state, params, *flags)
        y, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes, order, unorder), total_length=x.shape[0])
        return y, tuple(h.index_select(1, unorder) for h in hn)
