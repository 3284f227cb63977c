"""The native backend: torch's own LSTM, GRU and RNN kernels (oneDNN, cuDNN, ...),
for the configurations torch has: the plain LSTM (with or without projection), the
GRU with reset after the product, and the tanh or relu RNN.

One step (T = 1, no lengths) runs torch's cell ops (`torch.lstm_cell`, `torch.gru_cell`,
`torch.rnn_tanh_cell`, `torch.rnn_relu_cell`: what torch's *Cell modules call) layer by
layer, as torch's whole-sequence kernels cost several times a step at small sizes
(oneDNN prepares its weights at every call). Both are differentiable. The LSTM with
a projection has no cell op and keeps the sequence kernel.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmlab.backends.base import Backend, StackConfig, regularisers_missing
from lstmlab.cells import GRUSpec, LayerWeights, LSTMSpec, torch_mode
from lstmlab.cells.regularisers import LayerMasks


def _cell_op(config: StackConfig) -> Callable[..., Any] | None:
    """torch's op for one step of one layer of `config`, or None when it has none (the projected LSTM)."""
    spec = config.spec
    if isinstance(spec, LSTMSpec):
        return None if config.proj_size else torch.lstm_cell
    if isinstance(spec, GRUSpec):
        return torch.gru_cell
    return torch.rnn_tanh_cell if spec.nonlinearity == "tanh" else torch.rnn_relu_cell


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
        missing = regularisers_missing(config, "torch's kernels")
        if missing is not None:
            return missing
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
        masks: list[LayerMasks] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if x.shape[0] == 1 and lengths is None:
            cell_op = _cell_op(config)
            if cell_op is not None:
                return _one_step(cell_op, config, x, hx, weights, training)
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

    def step(
        self,
        config: StackConfig,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        training: bool,
    ) -> tuple[torch.Tensor, ...]:
        spec = config.spec
        if isinstance(spec, LSTMSpec):
            if config.proj_size:
                return super().step(config, x, state, w, training)
            return torch.lstm_cell(x, state, w.w_ih, w.w_hh, w.b_ih, w.b_hh)
        if isinstance(spec, GRUSpec):
            return (torch.gru_cell(x, state[0], w.w_ih, w.w_hh, w.b_ih, w.b_hh),)
        cell_op = torch.rnn_tanh_cell if spec.nonlinearity == "tanh" else torch.rnn_relu_cell
        return (cell_op(x, state[0], w.w_ih, w.w_hh, w.b_ih, w.b_hh),)


def _one_step(
    cell_op: Callable[..., Any],
    config: StackConfig,
    x: torch.Tensor,
    hx: tuple[torch.Tensor, ...],
    weights: list[LayerWeights],
    training: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """`NativeBackend.run` at T = 1 with torch's cell op, layer by layer (a direction's one step
    reads its one input either way)."""
    lstm, D, L = isinstance(config.spec, LSTMSpec), config.num_directions, config.num_layers
    inp = x[0]
    h0 = hx[0].unbind(0)
    c0 = hx[1].unbind(0) if lstm else ()
    hs, cs = [], []
    for layer in range(L):
        for direction in range(D):
            index = layer * D + direction
            w = weights[index]
            if lstm:
                h, c = cell_op(inp, (h0[index], c0[index]), w.w_ih, w.w_hh, w.b_ih, w.b_hh)
                cs.append(c)
            else:
                h = cell_op(inp, h0[index], w.w_ih, w.w_hh, w.b_ih, w.b_hh)
            hs.append(h)
        inp = torch.cat(hs[-D:], dim=-1) if D > 1 else hs[-1]
        if training and config.dropout > 0 and layer < L - 1:
            inp = F.dropout(inp, config.dropout, training=True)
    if len(hs) == 1:  # y a tensor of its own, as torch's stacks return it, not a view of h_n
        return inp.unsqueeze(0).clone(), (hs[0].unsqueeze(0), cs[0].unsqueeze(0)) if lstm else (hs[0].unsqueeze(0),)
    return inp.unsqueeze(0), (torch.stack(hs), torch.stack(cs)) if lstm else (torch.stack(hs),)
