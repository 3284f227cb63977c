"""PyTorch's own tests of its recurrent modules, ported to lstmlab's drop-ins.

Adapted from PyTorch's `test/test_nn.py` (the RNN tests of TestNN and TestNNDeviceType)
and the RNN entries of `torch/testing/_internal/common_modules.py` (their sample and
error inputs); PyTorch's licence (BSD-3-Clause) is reproduced at the end of this file.
Each test keeps torch's assertions; `nn.X(...)` became `make("X", ...)`, which builds
lstmlab's module on the backend under test. Left out: tests that read torch-private
attributes (`_flat_weights`; `all_weights` stands in where it can) and tests of cuDNN.

Every test runs on the default backend ("auto") and on "fused".
"""

from __future__ import annotations

import copy
import io
import pickle
import re
from itertools import product
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import rnn as rnn_utils

import lstmlab
from lstmlab.backends.fused import loader

BACKENDS = ["auto", "fused"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "fused" and loader.error():
        pytest.skip(loader.error())
    return request.param


@pytest.fixture
def make(backend: str) -> Any:
    def build(name: str, *args: Any, **kwargs: Any) -> nn.Module:
        return getattr(lstmlab, name)(*args, backend=backend, **kwargs)

    return build


# -- TestNN: cells ---------------------------------------------------------------------


def test_RNN_cell(make: Any) -> None:
    # this is just a smoke test; these modules are implemented through autograd so no Jacobian test is needed
    for module in ("RNNCell", "GRUCell"):
        for bias in (True, False):
            input = torch.randn(3, 10)
            hx = torch.randn(3, 20)
            cell = make(module, 10, 20, bias=bias)
            for _ in range(6):
                hx = cell(input, hx)
            hx.sum().backward()


def test_LSTM_cell(make: Any) -> None:
    for bias in (True, False):
        input = torch.randn(3, 10)
        hx = torch.randn(3, 20)
        cx = torch.randn(3, 20)
        lstm = make("LSTMCell", 10, 20, bias=bias)
        for _ in range(6):
            hx, cx = lstm(input, (hx, cx))
        (hx + cx).sum().backward()


def test_RNN_cell_forward_zero_hidden_size(make: Any) -> None:
    input = torch.randn(3, 10)
    hx = torch.randn(3, 0)
    cell_shared_param = (10, 0)
    for cell in (
        make("RNNCell", *cell_shared_param, nonlinearity="relu"),
        make("RNNCell", *cell_shared_param, nonlinearity="tanh"),
        make("GRUCell", *cell_shared_param),
    ):
        assert cell(input, hx).shape == torch.Size([3, 0])


def test_LSTM_cell_forward_zero_hidden_size(make: Any) -> None:
    h, c = make("LSTMCell", 10, 0)(torch.randn(3, 10), (torch.randn(3, 0), torch.randn(3, 0)))
    assert h.shape == c.shape == torch.Size([3, 0])


def test_RNN_cell_no_broadcasting(make: Any) -> None:
    def test(cell_module: str, input: torch.Tensor, hx: Any, input_size: int, hidden_size: int) -> None:
        cell = make(cell_module, input_size, hidden_size)
        with pytest.raises(RuntimeError):
            cell(input, hx)

    def test_all(hidden_size: int, bad_hx: torch.Tensor, good_hx: torch.Tensor, input_size: int, input: torch.Tensor) -> None:
        test("RNNCell", input, bad_hx, input_size, hidden_size)
        test("GRUCell", input, bad_hx, input_size, hidden_size)
        test("LSTMCell", input, (bad_hx, good_hx), input_size, hidden_size)
        test("LSTMCell", input, (good_hx, bad_hx), input_size, hidden_size)

    hidden_size = 20
    input_size = 10
    input = torch.randn(3, input_size)
    bad_hx = torch.randn(1, hidden_size)
    good_hx = torch.randn(3, hidden_size)
    # Test hidden/input batch size broadcasting
    test_all(hidden_size, bad_hx, good_hx, input_size, input)
    # Test hx's hidden_size vs module's hidden_size broadcasting
    bad_hx = torch.randn(3, 1)
    test_all(hidden_size, bad_hx, good_hx, input_size, input)
    # Test input's input_size vs module's input_size broadcasting
    bad_input = torch.randn(3, 1)
    test_all(hidden_size, good_hx, good_hx, input_size, bad_input)


def test_RNN_cell_empty_batch(make: Any) -> None:  # the cells' share of test_RNN_input_size_zero
    assert make("GRUCell", 4, 8)(torch.randn(0, 4)).shape == (0, 8)
    assert make("RNNCell", 4, 8)(torch.randn(0, 4)).shape == (0, 8)
    h, c = make("LSTMCell", 4, 8)(torch.randn(0, 4), (torch.zeros(0, 8),) * 2)
    assert h.shape == c.shape == (0, 8)


# -- TestNN: stacks --------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
def test_RNN_input_size_zero(make: Any, num_layers: int) -> None:
    for module in ("RNN", "LSTM", "GRU"):
        input = torch.zeros((5, 0, 3))
        rnn = make(module, input_size=3, hidden_size=4, num_layers=num_layers)
        outs = rnn(input)
        assert outs[0].shape == torch.Size([5, 0, 4])
        hidden = outs[1][0] if module == "LSTM" else outs[1]
        assert hidden.shape == torch.Size([num_layers, 0, 4])
        # Check that backward does not cause a hard error
        outs[0].sum().backward()


def test_rnn_args_check(make: Any) -> None:
    input_size, hidden_size, num_layers, batch_size, seq_len, num_directions, bad_size = 3, 5, 2, 4, 6, 1, 7

    def test(input_shape: tuple, hidden_shape: tuple, mode: str) -> None:
        for input, hidden in get_inputs(input_shape, hidden_shape, mode):
            model = make(mode, input_size, hidden_size, num_layers)
            with pytest.raises(RuntimeError):
                model(input, hidden)

    correct_input_shape = (seq_len, batch_size, input_size)
    correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)

    def update_shape(shape: tuple, dim: int, new_dim_size: int) -> tuple:
        new_shape = list(shape)
        new_shape[dim] = new_dim_size
        return tuple(new_shape)

    def get_inputs(input_shape: tuple, hidden_shape: tuple, mode: str) -> list:
        """returns list( tuple(input, hidden) ) where input, hidden are inputs to a model"""
        input = torch.randn(input_shape)
        hidden = torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(input, hidden)]
        if hidden_shape == correct_hidden_shape:
            return [(input, (hidden, hidden))]
        good_hidden = torch.randn(correct_hidden_shape)
        return [(input, (hidden, good_hidden)), (input, (good_hidden, hidden))]

    for mode in ("RNN", "GRU", "LSTM"):
        # Incorrect input batch size
        test(update_shape(correct_input_shape, 1, bad_size), correct_hidden_shape, mode)
        # Incorrect hidden batch size
        test(correct_input_shape, update_shape(correct_hidden_shape, 1, bad_size), mode)
        # Incorrect input size
        test(update_shape(correct_input_shape, 2, bad_size), correct_hidden_shape, mode)
        # Incorrect hidden size
        test(correct_input_shape, update_shape(correct_hidden_shape, 2, bad_size), mode)
        # Incorrect hidden[0]
        test(correct_input_shape, update_shape(correct_hidden_shape, 0, bad_size), mode)


def test_projections_lstm_args_check(make: Any) -> None:
    input_size, hidden_size, proj_size, num_layers, batch_size, seq_len, num_directions, bad_size = 3, 5, 2, 2, 4, 6, 1, 7

    def test(input_shape: tuple, hidden_h_shape: tuple, hidden_c_shape: tuple) -> None:
        for input, hidden in get_inputs(input_shape, hidden_h_shape, hidden_c_shape):
            model = make("LSTM", input_size, hidden_size, num_layers, proj_size=proj_size)
            with pytest.raises(RuntimeError):
                model(input, hidden)

    correct_input_shape = (seq_len, batch_size, input_size)
    correct_h_shape = (num_layers * num_directions, batch_size, proj_size)
    correct_c_shape = (num_layers * num_directions, batch_size, hidden_size)

    def update_shape(shape: tuple, dim: int, new_dim_size: int) -> tuple:
        new_shape = list(shape)
        new_shape[dim] = new_dim_size
        return tuple(new_shape)

    def get_inputs(input_shape: tuple, hidden_h_shape: tuple, hidden_c_shape: tuple) -> list:
        """returns list( tuple(input, hidden) ) where input, hidden are inputs to a model"""
        input = torch.randn(input_shape)
        hidden_h = torch.randn(hidden_h_shape)
        hidden_c = torch.randn(hidden_c_shape)
        return [(input, (hidden_h, hidden_c))]

    # Incorrect input batch size
    test(update_shape(correct_input_shape, 1, bad_size), correct_h_shape, correct_c_shape)
    # Incorrect hidden batch size
    test(correct_input_shape, update_shape(correct_h_shape, 1, bad_size), update_shape(correct_c_shape, 1, bad_size))
    # Incorrect input size
    test(update_shape(correct_input_shape, 2, bad_size), correct_h_shape, correct_c_shape)
    # Incorrect hidden size
    test(correct_input_shape, update_shape(correct_h_shape, 2, bad_size), update_shape(correct_c_shape, 2, bad_size))
    # Incorrect hidden[0]
    test(correct_input_shape, update_shape(correct_h_shape, 0, bad_size), update_shape(correct_c_shape, 0, bad_size))
    # Incorrect proj size = hidden size
    test(correct_input_shape, update_shape(correct_h_shape, 0, hidden_size), correct_c_shape)
    # Incorrect proj size != hidden size
    test(correct_input_shape, update_shape(correct_h_shape, 0, bad_size), correct_c_shape)
    # Incorrect cell size != hidden size
    test(correct_input_shape, correct_h_shape, update_shape(correct_c_shape, 0, bad_size))


def test_rnn_initial_hidden_state(make: Any) -> None:
    for mode in ("RNN", "GRU", "LSTM"):
        rnn = make(mode, 30, 20, 2)
        input = torch.randn(10, 32, 30)
        hidden = torch.zeros(2, 32, 20)
        if mode == "LSTM":
            hidden = (hidden, hidden)
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        torch.testing.assert_close(output1, output2)
        torch.testing.assert_close(hidden1, hidden2)


def test_projections_lstm_initial_hidden_state(make: Any) -> None:
    for bidir in (False, True):
        rnn = make("LSTM", 30, 20, 2, bidirectional=bidir, proj_size=10)
        num_dirs = 2 if bidir else 1
        input = torch.randn(10, 32, 30)
        hidden_h = torch.zeros(2 * num_dirs, 32, 10)
        hidden_c = torch.zeros(2 * num_dirs, 32, 20)
        hidden = (hidden_h, hidden_c)
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        torch.testing.assert_close(output1, output2)
        torch.testing.assert_close(hidden1, hidden2)


def test_RNN_nonlinearity(make: Any) -> None:
    rnn = make("RNN", 1, 10)
    assert rnn.nonlinearity == "tanh"
    rnn = make("RNN", 1, 10, nonlinearity="relu")
    assert rnn.nonlinearity == "relu"
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        make("RNN", 1, 10, nonlinearity="garbage")


def test_RNN_nonlinearity_passed_as_arg(make: Any) -> None:
    rnn = make("RNN", 2, 3, 1, "relu")
    assert rnn.input_size == 2
    assert rnn.hidden_size == 3
    assert rnn.num_layers == 1
    assert rnn.nonlinearity == "relu"


def test_RNN_dropout(make: Any) -> None:
    # checking the assumption that dropout acts in between RNN layers
    for p in (0, 0.276, 0.731, 1):
        for train in (True, False):
            rnn = make("RNN", 10, 1000, 2, bias=False, dropout=p, nonlinearity="relu")
            rnn.train(train)
            with torch.no_grad():
                rnn.weight_ih_l0.fill_(1)
                rnn.weight_hh_l0.fill_(1)
                rnn.weight_ih_l1.fill_(1)
                rnn.weight_hh_l1.fill_(1)
            input = torch.ones(1, 1, 10)
            hx = torch.zeros(2, 1, 1000)
            output, hy = rnn(input, hx)
            assert output.min() == output.max()
            output_val = output[0][0][0]
            if p == 0 or not train:
                assert output_val == 10000
            elif p == 1:
                assert output_val == 0
            else:
                assert 8000 < output_val < 12000
                denorm_mod = (output_val * (1 - p)) % 10
                assert min(denorm_mod, 10 - denorm_mod) < 1e-2
            assert hy[0].min() == hy[0].max()
            assert hy[1].min() == hy[1].max()
            assert hy[0][0][0] == 10
            assert hy[1][0][0] == output_val


def test_RNN_dropout_state(make: Any) -> None:
    for p in (0, 0.1234):
        for train in (True, False):
            rnn = make("RNN", 100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
            rnn.train(train)
            input = torch.rand(1, 1, 100)
            hx = torch.rand(2, 1, 100)
            output1, hy1 = rnn(input, hx)
            output2, hy2 = rnn(input, hx)
            buf = io.BytesIO()
            torch.save(rnn, buf)
            buf.seek(0)
            rnn2 = torch.load(buf, weights_only=False)
            rnn2.flatten_parameters()
            output3, hy3 = rnn2(input, hx)
            if p == 0 or not train:
                torch.testing.assert_close(output1, output2)
                torch.testing.assert_close(output1, output3)
                torch.testing.assert_close(hy1, hy2)
                torch.testing.assert_close(hy1, hy3)
            else:
                assert not torch.equal(output1, output2)
                assert not torch.equal(output1, output3)
                assert not torch.equal(hy1, hy2)
                assert not torch.equal(hy1, hy3)


def test_RNN_change_dropout(make: Any) -> None:
    for train in (True, False):
        rnn = make("RNN", 100, 100, 2, dropout=0, nonlinearity="relu")
        input = torch.rand(3, 2, 100)
        rnn.train(train)
        prev_output = None
        for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
            rnn.dropout = p
            output1, hy1 = rnn(input)
            output2, hy2 = rnn(input)
            if p == 0 or p == 1 or not train:
                torch.testing.assert_close(output1, output2)
                torch.testing.assert_close(hy1, hy2)
            else:
                assert not torch.equal(output1, output2)
                assert not torch.equal(hy1, hy2)
            if prev_output is not None:
                if not train:
                    torch.testing.assert_close(output1, prev_output)
                    torch.testing.assert_close(output2, prev_output)
                else:
                    assert not torch.equal(output1, prev_output)
                    assert not torch.equal(output2, prev_output)
            prev_output = output1


def test_rnn_weight_norm(make: Any) -> None:
    def check_weight_norm(layer: nn.Module, name: str, num_params: int) -> None:
        # This module has 4 or 5 parameters called 'weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0',
        # 'bias_hh_l0', 'weight_hr_l0'; applying weight norm on one of them turns it into a tensor.
        # (torch reads _flat_weights here; all_weights is the public view of the same list.)
        def params() -> int:
            return sum(isinstance(p, nn.Parameter) for p in layer.all_weights[0])

        x = torch.randn(5, 2, 32)
        expected = layer(x)[0]
        with pytest.warns(FutureWarning):  # torch deprecates weight_norm for parametrizations
            layer = nn.utils.weight_norm(layer, name=name)
        assert params() == num_params - 1
        torch.testing.assert_close(layer(x)[0], expected)  # the reparametrisation computes the same weight
        # Removing the weight norm reparametrization restores the Parameter
        layer = nn.utils.remove_weight_norm(layer, name=name)
        assert params() == num_params
        # Make sure that, upon removal of the reparametrization, the `._parameters` and
        # `.named_parameters` contain the right params. Specifically, the original weight
        # ('weight_ih_l0') should be placed back in the parameters, while the reparametrization
        # components ('weight_ih_l0_v' and 'weight_ih_l0_g') should be removed.
        assert name in layer._parameters
        assert layer._parameters[name] is not None
        assert name + "_v" not in layer._parameters
        assert name + "_g" not in layer._parameters
        assert name in dict(layer.named_parameters())
        assert name + "_v" not in dict(layer.named_parameters())
        assert name + "_g" not in dict(layer.named_parameters())

    check_weight_norm(make("LSTM", 32, 32), "weight_ih_l0", 4)
    check_weight_norm(make("LSTM", 32, 32, proj_size=16), "weight_hr_l0", 5)


def test_rnn_retain_variables(make: Any) -> None:
    for dtype in (torch.float32, torch.float64):
        rnns = [make(mode, 10, 20, num_layers=2).to(dtype) for mode in ("LSTM", "GRU", "RNN")]
        for rnn in rnns:
            input = torch.randn(5, 6, 10, dtype=dtype, requires_grad=True)
            output = rnn(input)
            output[0].sum().backward(retain_graph=True)
            grads = [input.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
            for _ in range(4):
                rnn.zero_grad()
                input.grad.zero_()
                output[0].sum().backward(retain_graph=True)
                grads2 = [input.grad] + [p.grad for p in rnn.parameters()]
                for a, b in zip(grads, grads2):
                    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("enforce_sorted", "lengths"),
    [
        (True, [5]),
        (False, [5]),
        (True, [10, 10, 6, 2, 2, 1, 1]),
        (False, [10, 10, 6, 2, 2, 1, 1]),
        (False, [2, 1, 3, 2, 10, 5, 3]),
    ],
)
def test_variable_sequence(make: Any, enforce_sorted: bool, lengths: list[int]) -> None:
    def pad(var: torch.Tensor, length: int) -> torch.Tensor:
        if var.size(0) == length:
            return var
        return torch.cat([var, var.new_zeros(length - var.size(0), *var.size()[1:])])

    def maybe_index_tuple(maybe_tuple_of_tensors: Any, index: int) -> Any:
        if maybe_tuple_of_tensors is None:
            return None
        return tuple(t[:, index : index + 1, :].contiguous() for t in maybe_tuple_of_tensors)

    for use_default_hiddens, proj_size in product((True, False), (0, 2)):
        input_size, hidden_size, num_layers, bidirectional = 3, 4, 2, True
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), input_size, requires_grad=True)
        num_directions = 2
        lstm = make("LSTM", input_size, hidden_size, bidirectional=bidirectional, num_layers=num_layers, proj_size=proj_size)
        lstm2 = copy.deepcopy(lstm)
        x = x_leaf
        hidden0 = None
        if not use_default_hiddens:
            real_hidden_size = hidden_size if proj_size == 0 else proj_size
            hidden0 = (
                torch.randn(num_directions * num_layers, len(lengths), real_hidden_size),
                torch.randn(num_directions * num_layers, len(lengths), hidden_size),
            )
        # Compute sequences separately
        seq_outs, seq_hiddens = [], []
        for i, length in enumerate(lengths):
            hidden_i = maybe_index_tuple(hidden0, i)
            out, hid = lstm2(x[:length, i : i + 1], hidden_i)
            seq_outs.append(pad(out, max_length))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens))
        # Use packed format
        packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
        # Check forward
        prec = 1e-5
        torch.testing.assert_close(packed_hidden, seq_hidden, atol=prec, rtol=0)
        torch.testing.assert_close(unpacked, seq_out, atol=prec, rtol=0)
        assert unpacked_len.tolist() == lengths
        # Check backward
        seq_out.sum().backward()
        grad_x = x_leaf.grad.clone()
        x_leaf.grad.zero_()
        unpacked.sum().backward()
        torch.testing.assert_close(x_leaf.grad, grad_x, atol=prec, rtol=0)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters()):
            torch.testing.assert_close(p1.grad, p2.grad, atol=prec, rtol=0)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_packed_unsorted_input_against_torch(make: Any, mode: str) -> None:
    """The packed, unsorted batch of test_variable_sequence, against torch's module with the same weights."""
    lengths = [2, 1, 3, 2, 10, 5, 3]
    theirs = getattr(nn, mode)(3, 4, num_layers=2, bidirectional=True)
    ours = getattr(lstmlab, mode).from_torch(theirs, backend=make("GRU", 1, 1).backend)
    x = torch.randn(max(lengths), len(lengths), 3)
    packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=False)
    (y_ours, h_ours), (y_theirs, h_theirs) = ours(packed), theirs(packed)
    torch.testing.assert_close(y_ours.data, y_theirs.data, atol=1e-5, rtol=0)
    assert torch.equal(y_ours.sorted_indices, y_theirs.sorted_indices)
    torch.testing.assert_close(h_ours, h_theirs, atol=1e-5, rtol=0)
    y_ours.data.sum().backward()
    y_theirs.data.sum().backward()
    for (name, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-5, rtol=0, msg=name)


# -- common_modules: sample inputs (no batch dimension) ----------------------------------


def _stack_samples() -> list[tuple[str, dict[str, Any], bool]]:
    samples = []
    for mode in ("RNN", "GRU", "LSTM"):
        nonlinearities = ("relu", "tanh") if mode == "RNN" else (None,)
        proj_sizes = (0, 2) if mode == "LSTM" else (0,)
        flags = (False, True)
        for nl, bias, batch_first, bidir, proj in product(nonlinearities, flags, flags, flags, proj_sizes):
            kwargs: dict[str, Any] = {"num_layers": 2, "batch_first": batch_first, "bias": bias, "bidirectional": bidir}
            if nl:
                kwargs["nonlinearity"] = nl
            if proj:
                kwargs["proj_size"] = proj
            for with_hidden in (False, True):
                samples.append((mode, kwargs, with_hidden))
    return samples


@pytest.mark.parametrize(("mode", "kwargs", "with_hidden"), _stack_samples())
def test_no_batch_dim_stack(make: Any, mode: str, kwargs: dict[str, Any], with_hidden: bool) -> None:
    """An unbatched input gives what the same input with a batch of one gives (torch's no_batch_dim_reference_*)."""
    hidden_size = 3
    module = make(mode, 2, hidden_size, **kwargs)
    D = 2 if kwargs["bidirectional"] else 1
    x = torch.randn(3, 2)
    hx: Any = None
    if with_hidden:
        h_out = kwargs.get("proj_size") or hidden_size
        hx = torch.randn(2 * D, h_out)
        if mode == "LSTM":
            hx = (hx, torch.randn(2 * D, hidden_size))
    out, h = module(x, hx)
    batched_hx = None if hx is None else (tuple(t.unsqueeze(1) for t in hx) if mode == "LSTM" else hx.unsqueeze(1))
    xb = x.unsqueeze(0 if kwargs["batch_first"] else 1)
    out_b, h_b = module(xb, batched_hx)
    torch.testing.assert_close(out, out_b.squeeze(0 if kwargs["batch_first"] else 1))
    if mode == "LSTM":
        for a, b in zip(h, h_b):
            torch.testing.assert_close(a, b.squeeze(1))
    else:
        torch.testing.assert_close(h, h_b.squeeze(1))


@pytest.mark.parametrize(
    ("mode", "kwargs"), [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("GRUCell", {}), ("LSTMCell", {})]
)
@pytest.mark.parametrize("bias", [True, False])
def test_no_batch_dim_cell(make: Any, mode: str, kwargs: dict[str, Any], bias: bool) -> None:
    cell = make(mode, 5, 10, bias=bias, **kwargs)
    x = torch.randn(5)
    hx: Any = (torch.randn(10), torch.randn(10)) if mode == "LSTMCell" else torch.randn(10)
    out = cell(x, hx)
    out_b = cell(x.unsqueeze(0), tuple(t.unsqueeze(0) for t in hx) if mode == "LSTMCell" else hx.unsqueeze(0))
    if mode == "LSTMCell":
        for a, b in zip(out, out_b):
            torch.testing.assert_close(a, b.squeeze(0))
    else:
        torch.testing.assert_close(out, out_b.squeeze(0))


# -- common_modules: error inputs --------------------------------------------------------

# (constructor args, input shape, hidden shape, error type, torch's regex), for each of torch's cells
_CELL_ERRORS = [
    ((10, 20), (3, 11), (3, 20), RuntimeError, "input has inconsistent input_size: got 11 expected 10"),
    ((10, 20), (3, 10), (3, 21), RuntimeError, "hidden0 has inconsistent hidden_size: got 21, expected 20"),
    ((10, 20), (3, 10), (5, 20), RuntimeError, "Input batch size 3 doesn't match hidden0 batch size 5"),
    ((10, 20), (3, 10), (3, 1, 1, 20), ValueError, "Expected hidden to be 1D or 2D, got 4D instead"),
]
CELL_ERRORS = [(mode, *case) for mode in ("RNNCell", "GRUCell", "LSTMCell") for case in _CELL_ERRORS] + [
    ("RNNCell", (10, 20, True, "relu"), *_CELL_ERRORS[1][1:]),
]
CELL_ERRORS = [  # torch's LSTMCell names its state hx[0] in the rank error
    (m, a, x, h, e, r.replace("hidden to", r"hx\[0\] to") if m == "LSTMCell" else r) for m, a, x, h, e, r in CELL_ERRORS
]


@pytest.mark.parametrize(("mode", "args", "x_shape", "h_shape", "error", "regex"), CELL_ERRORS)
def test_cell_error_inputs(make: Any, mode: str, args: tuple, x_shape: tuple, h_shape: tuple, error: type, regex: str) -> None:
    x, h = torch.randn(x_shape), torch.randn(h_shape)
    hx = (h, h) if mode == "LSTMCell" else h
    with pytest.raises(error, match=regex):
        make(mode, *args)(x, hx)


@pytest.mark.parametrize("mode", ["RNN", "GRU", "LSTM"])
def test_stack_error_inputs(make: Any, mode: str) -> None:
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        make(mode, 10, 0, 1)
    with pytest.raises(ValueError, match="num_layers must be greater than zero"):
        make(mode, 10, 10, 0)
    module = make(mode, 3, 5)
    regex = r"RNN input dtype .* does not match weight dtype .* Convert input: input\.to\(.*\), or convert model: model\.to\(.*\)"
    with pytest.raises(ValueError, match=regex):
        module(torch.randn(2, 4, 3, dtype=torch.float64))
    for bias, name in ((0, "int"), (1, "int"), ("True", "str")):
        with pytest.raises(TypeError, match=f"bias should be of type bool, got: {name}"):
            make(mode, 3, 5, bias=bias)


@pytest.mark.parametrize("mode", ["RNN", "GRU", "LSTM"])
def test_sizes_of_the_wrong_type_are_type_errors_as_in_torch(make: Any, mode: str) -> None:
    for args in ((3.0, 5), (3, "5")):
        with pytest.raises(TypeError):
            getattr(nn, mode)(*args)  # torch's own behaviour, so that the assertion below compares like with like
        with pytest.raises(TypeError):
            make(mode, *args)


@pytest.mark.parametrize("mode", ["RNN", "GRU"])
def test_proj_size_is_for_the_lstm_only(make: Any, mode: str) -> None:
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        getattr(nn, mode)(3, 5, proj_size=2)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        make(mode, 3, 5, proj_size=2)


# -- test_modules: repr, pickling, factory kwargs, gradients -----------------------------

TORCH_CONFIGS = [
    ("LSTM", (10, 20)),
    ("LSTM", (10, 20, 2)),
    ("LSTM", (10, 20, 2, False, True, 0.5, True, 5)),
    ("GRU", (10, 20, 3, True, False, 0.0, True)),
    ("RNN", (10, 20, 2, "relu")),
    ("LSTMCell", (10, 20, False)),
    ("GRUCell", (10, 20)),
    ("RNNCell", (10, 20, True, "tanh")),
]


@pytest.mark.parametrize(("mode", "args"), TORCH_CONFIGS)
def test_repr_as_torch(backend: str, mode: str, args: tuple) -> None:
    ours = getattr(lstmlab, mode)(*args)  # repr shows a backend only when one is chosen
    theirs = repr(getattr(nn, mode)(*args))
    if mode == "RNN" and "relu" in args:  # torch's RNN does not show its nonlinearity; lstmlab's does
        theirs = theirs[:-1] + ", nonlinearity='relu')"
    assert repr(ours) == theirs
    assert "backend='fused'" in repr(getattr(lstmlab, mode)(*args, backend="fused")) or backend == "auto"


@pytest.mark.parametrize(("mode", "args"), TORCH_CONFIGS)
def test_save_load(make: Any, mode: str, args: tuple) -> None:
    module = make(mode, *args).eval()
    x = torch.randn(4, 10) if mode.endswith("Cell") else torch.randn(3, 4, 10)
    expected = module(x)
    for save, load in ((torch.save, lambda b: torch.load(b, weights_only=False)), (pickle.dump, pickle.load)):
        buf = io.BytesIO()
        save(module, buf)
        buf.seek(0)
        again = load(buf)
        assert type(again) is type(module) and repr(again) == repr(module)
        torch.testing.assert_close(again(x), expected)


@pytest.mark.parametrize(("mode", "args"), TORCH_CONFIGS)
def test_whole_module_loads_with_weights_only_and_its_class_alone(make: Any, mode: str, args: tuple) -> None:
    """As pytorch/examples' word_language_model saves and loads a model (issue of its drop-in use)."""
    module = make(mode, *args)
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    with torch.serialization.safe_globals([getattr(lstmlab, mode)]):
        again = torch.load(buf, weights_only=True)
    assert repr(again) == repr(module)
    for (name, a), b in zip(module.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("mode", "args"), TORCH_CONFIGS)
def test_factory_kwargs(make: Any, mode: str, args: tuple) -> None:
    module = make(mode, *args, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in module.parameters())
    if make("GRU", 1, 1).backend == "fused":  # CPU kernels: another device is refused, with the reason
        with pytest.raises(ValueError, match="the fused kernels run on the CPU only; got device meta"):
            make(mode, *args, device="meta")
        return
    module = make(mode, *args, device="meta")
    assert all(p.device.type == "meta" for p in module.parameters())


@pytest.mark.parametrize(("mode", "args"), [c for c in TORCH_CONFIGS if "0.5" not in repr(c[1])])
def test_grad(make: Any, mode: str, args: tuple) -> None:
    """torch's test_grad: gradcheck in float64, input and every parameter (sizes 10, 20 made 3, 4:
    finite differences cost two forwards per parameter)."""
    module = make(mode, 3, 4, *args[2:], dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    if not mode.endswith("Cell"):
        x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    params = list(module.parameters())

    def f(x: torch.Tensor, *ps: torch.Tensor) -> Any:
        out = torch.func.functional_call(module, dict(zip(dict(module.named_parameters()), ps)), (x,))
        return out if isinstance(out, torch.Tensor) else out[0]

    assert torch.autograd.gradcheck(f, (x, *params), atol=1e-6)


def test_gradgrad_needs_eager_on_fused(backend: str) -> None:
    """torch's test_gradgrad: double backward works on "eager"; "fused" says so clearly instead."""
    module = lstmlab.GRU(3, 4, backend="eager", dtype=torch.float64)
    x = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: module(x)[0], (x,))
    if backend == "fused":
        module.backend = "fused"
        (g,) = torch.autograd.grad(module(x)[0].sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match=re.escape('backend="eager"') + "|backend='eager'"):
            g.sum().backward()


@pytest.mark.parametrize(("mode", "args"), TORCH_CONFIGS)
def test_non_contiguous_tensors(make: Any, mode: str, args: tuple) -> None:
    module = make(mode, *args).eval()
    x = torch.randn(10, 4).t() if mode.endswith("Cell") else torch.randn(10, 4, 3).permute(2, 1, 0)
    assert not x.is_contiguous()
    torch.testing.assert_close(module(x), module(x.contiguous()))


# -- drop-in extras: what training scripts written for torch call ------------------------


def test_flatten_parameters_and_all_weights_as_torch(make: Any) -> None:
    ours = make("LSTM", 4, 8, 2, bidirectional=True, proj_size=3)
    theirs = nn.LSTM(4, 8, 2, bidirectional=True, proj_size=3)
    ours.flatten_parameters()  # pytorch/examples' word_language_model calls it before every forward
    assert [[tuple(p.shape) for p in layer] for layer in ours.all_weights] == [
        [tuple(p.shape) for p in layer] for layer in theirs.all_weights
    ]
    assert all(isinstance(p, nn.Parameter) for layer in ours.all_weights for p in layer)
    assert ours.mode == theirs.mode == "LSTM"


# PyTorch's licence, under which the tests above were adapted:
#
# From PyTorch:
#
# Copyright (c) 2016-     Facebook, Inc            (Adam Paszke)
# Copyright (c) 2014-     Facebook, Inc            (Soumith Chintala)
# Copyright (c) 2011-2014 Idiap Research Institute (Ronan Collobert)
# Copyright (c) 2012-2014 Deepmind Technologies    (Koray Kavukcuoglu)
# Copyright (c) 2011-2012 NEC Laboratories America (Koray Kavukcuoglu)
# Copyright (c) 2011-2013 NYU                      (Clement Farabet)
# Copyright (c) 2006-2010 NEC Laboratories America (Ronan Collobert, Leon Bottou, Iain Melvin, Jason Weston)
# Copyright (c) 2006      Idiap Research Institute (Samy Bengio)
# Copyright (c) 2001-2004 Idiap Research Institute (Ronan Collobert, Samy Bengio, Johnny Mariethoz)
#
# All rights reserved.
#
# Redistribution and use in source and binary forms, with or without modification, are permitted
# provided that the following conditions are met:
#
# 1. Redistributions of source code must retain the above copyright notice, this list of conditions
#    and the following disclaimer.
# 2. Redistributions in binary form must reproduce the above copyright notice, this list of conditions
#    and the following disclaimer in the documentation and/or other materials provided with the distribution.
# 3. Neither the names of Facebook, Deepmind Technologies, NYU, NEC Laboratories America and IDIAP Research
#    Institute nor the names of its contributors may be used to endorse or promote products derived from
#    this software without specific prior written permission.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED
# WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
# PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE FOR ANY
# DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
# PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION)
# HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING
# NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
# POSSIBILITY OF SUCH DAMAGE.
