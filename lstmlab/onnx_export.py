"""`export_onnx`: a recurrent stack, or a whole task model, as an ONNX graph of ONNX's own
`LSTM`, `GRU` and `RNN` operators (one per layer, both directions in one), written
directly with `onnx.helper`.

The graph takes `input` (T, B, input_size) float32 ((B, T, input_size) with batch_first,
by transposes), or (T, B) int64 ids for a token model (one-hot encoded in the graph),
and, when the example gave a state, `h_0` (and `c_0` for an LSTM), each
(layers * directions, B, size); without it the stack starts from zeros. It returns
`output` (as the module's) and `h_n` (and `c_n`). T and B are dynamic unless
`dynamic=False`. Eval semantics: dropout is left out. Which cells the operators can
compute, and how the weights are laid out: `lstmlab.onnx_layout`.

onnx is an optional dependency (`pip install 'lstmlab[onnx]'`, which also installs
onnxruntime to run the graphs).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lstmlab.errors import ShapeMismatch, Unsupported, WrongType
from lstmlab.models import SequenceModel
from lstmlab.nn import GRU, LSTM, RNN
from lstmlab.onnx_layout import OPSET, onnx_cell, operator_weights

INSTALL = "pip install onnx onnxruntime (or pip install 'lstmlab[onnx]')"
_OWNER = "export_onnx"


def _onnx() -> Any:
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise Unsupported(_OWNER, "", f"needs the onnx package; install it with {INSTALL}") from None


def export_onnx(
    module_or_model: nn.Module | Any,
    example_input: Tensor | tuple[Tensor, Any],
    path: str | Path,
    dynamic: bool = True,
) -> Path:
    """Write `module_or_model` to `path` as an ONNX model; returns the path.

    module_or_model: an `lstmlab.LSTM`, `GRU` or `RNN` (float32), a
        `lstmlab.models.SequenceModel` (one-hot or float input, recurrent stack, linear
        readout), or a run from `lstmlab.load` (its model is exported).
    example_input: an input the module accepts (3-D, batched), or `(input, hx)` to give
        the graph initial-state inputs. It fixes the shapes only when `dynamic=False`.

    Raises `Unsupported` naming the missing operator feature for cells ONNX's operators
    cannot compute (NIG, NFG, NOG, FGR, proj_size > 0, layer_norm=True) and for zoneout
    (recurrent and weight dropout act in training only: exported, they do nothing).

    Example:
        >>> lstm = lstmlab.LSTM(8, 16, num_layers=2, variant="peephole").eval()
        >>> lstmlab.export_onnx(lstm, torch.randn(5, 3, 8), "lstm.onnx")
        >>> # onnxruntime.InferenceSession("lstm.onnx").run(None, {"input": x.numpy()})
    """
    onnx = _onnx()
    model = getattr(module_or_model, "model", module_or_model)  # a run from lstmlab.load
    if isinstance(model, SequenceModel):
        stack, readout, token_inputs = model.recurrent, model.readout, model.token_inputs
    elif isinstance(model, (LSTM, GRU, RNN)):
        stack, readout, token_inputs = model, None, False
    else:
        raise WrongType(
            _OWNER, "module_or_model", f"must be an lstmlab LSTM, GRU, RNN, SequenceModel or run; got {type(model).__name__}"
        )
    if not isinstance(path, (str, Path)):
        raise WrongType(_OWNER, "path", f"must be a str or Path; got {type(path).__name__}")
    if stack.config.zoneout_h or stack.config.zoneout_c:  # its evaluation form is no operator's
        raise Unsupported(
            _OWNER,
            "module_or_model",
            f"cannot be exported with zoneout={stack.zoneout!r}: ONNX's operators have no zoneout, whose evaluation "
            "form blends each step's state with the previous one (set zoneout=0)",
        )
    x, hx = example_input if isinstance(example_input, (tuple, list)) else (example_input, None)
    _check_example(stack, x, hx, token_inputs)
    graph = _Graph(onnx)
    # the input's leading axes: (T, B), or (B, T) with batch_first; names where dynamic
    dims: list[Any] = (["B", "T"] if stack.batch_first else ["T", "B"]) if dynamic else list(x.shape[:2])
    batch = dims[0] if stack.batch_first else dims[1]
    layers = len(stack._suffixes)  # layers * directions: the states' leading axis
    if token_inputs:
        graph.input("input", onnx.TensorProto.INT64, dims)
        depth = graph.constant("depth", np.array([stack.input_size], dtype=np.int64))
        values = graph.constant("one_hot_values", np.array([0.0, 1.0], dtype=np.float32))
        current = graph.node("OneHot", ["input", depth, values], axis=-1)
    else:
        graph.input("input", onnx.TensorProto.FLOAT, [*dims, stack.input_size])
        current = "input"
    if stack.batch_first:
        current = graph.node("Transpose", [current], perm=[1, 0, 2])
    sizes = stack.config.state_sizes
    state_names = ("h_0", "c_0")[: len(sizes)]
    if hx is not None:
        for name, size in zip(state_names, sizes):
            graph.input(name, onnx.TensorProto.FLOAT, [layers, batch, size])
    y, finals = _stack(graph, stack, current, state_names if hx is not None else None)
    if readout is not None:
        weight = graph.constant("readout.weight_t", _array(readout.weight).T.copy())
        y = graph.node("MatMul", [y, weight])
        if readout.bias is not None:
            y = graph.node("Add", [y, graph.constant("readout.bias", _array(readout.bias))])
    if stack.batch_first:
        y = graph.node("Transpose", [y], perm=[1, 0, 2])
    out_size = readout.out_features if readout is not None else stack.config.num_directions * stack.config.output_size
    graph.output(graph.node("Identity", [y], name="output"), [*dims, out_size])
    for name, final, size in zip(("h_n", "c_n"), finals, sizes):
        graph.output(graph.node("Identity", [final], name=name), [layers, batch, size])
    proto = graph.model(f"lstmlab {type(model).__name__}")
    onnx.checker.check_model(proto)
    path = Path(path)
    onnx.save(proto, path)
    return path


def _check_example(stack: LSTM | GRU | RNN, x: Any, hx: Any, token_inputs: bool) -> None:
    if not isinstance(x, Tensor):
        raise WrongType(_OWNER, "example_input", f"must be a Tensor or (Tensor, hx); got {type(x).__name__}")
    weight = stack._like()
    if weight.dtype != torch.float32:
        raise Unsupported(
            _OWNER, "module_or_model", f"must have float32 parameters (ONNX Runtime's recurrent operators); got {weight.dtype}"
        )
    if token_inputs and x.dtype != torch.int64:
        raise WrongType(_OWNER, "example_input", f"must hold int64 token ids (T, B) for a token model; got {x.dtype}")
    rank = 2 if token_inputs else 3
    if x.dim() != rank:
        layout = "(T, B) ids" if token_inputs else ("(B, T, input_size)" if stack.batch_first else "(T, B, input_size)")
        raise ShapeMismatch(_OWNER, "example_input", f"must be {rank}-D {layout}; got shape {tuple(x.shape)}")
    if not token_inputs and x.shape[-1] != stack.input_size:
        raise ShapeMismatch(
            _OWNER, "example_input", f"must have input_size={stack.input_size} features (last axis); got shape {tuple(x.shape)}"
        )
    if hx is not None:
        stack._states(hx, x.shape[0 if stack.batch_first else 1], True, weight)  # the module's own checks


def _array(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def _stack(graph: _Graph, stack: LSTM | GRU | RNN, x: str, state_names: tuple[str, ...] | None) -> tuple[str, list[str]]:
    """The layers of `stack` on time-major `x`: the output's name and the final states' names."""
    config = stack.config
    cell = onnx_cell(config.spec, config.proj_size)
    D, H = config.num_directions, config.hidden_size
    weights = stack.layer_weights()
    finals: list[list[str]] = [[] for _ in config.state_sizes]
    for layer in range(config.num_layers):
        ws = weights[layer * D : (layer + 1) * D]
        prefix = f"l{layer}"
        with torch.no_grad():
            arrays = {name: _array(t) for name, t in operator_weights(cell, ws, H).items()}
        operands = {name: graph.constant(f"{prefix}.{name}", array) for name, array in arrays.items()}
        states = ["", ""]
        if state_names is not None:
            start = graph.constant(f"{prefix}.start", np.array([layer * D]))
            end = graph.constant(f"{prefix}.end", np.array([(layer + 1) * D]))
            states = [graph.node("Slice", [name, start, end]) for name in state_names] + [""]
        # X, W, R, B, sequence_lens, initial_h[, initial_c, P]; "" leaves an optional input out
        node_inputs = [x, operands["W"], operands["R"], operands.get("B", ""), "", states[0]]
        if cell.op_type == "LSTM":
            node_inputs += [states[1], operands.get("P", "")]
        while node_inputs[-1] == "":
            node_inputs.pop()
        outputs = graph.node_outputs(cell.op_type, node_inputs, 3 if cell.op_type == "LSTM" else 2, **cell.node_attributes(D, H))
        y = outputs[0]  # (T, D, B, H)
        if D == 1:
            x = graph.node("Squeeze", [y, graph.constant(f"{prefix}.axis", np.array([1]))])
        else:
            x = graph.node("Transpose", [y], perm=[0, 2, 1, 3])
            x = graph.node("Reshape", [x, graph.constant(f"{prefix}.shape", np.array([0, 0, D * H]))])
        for k in range(len(finals)):
            finals[k].append(outputs[1 + k])
    joined = [parts[0] if len(parts) == 1 else graph.node("Concat", parts, axis=0) for parts in finals]
    return x, joined


class _Graph:
    """The nodes, initializers, inputs and outputs of one graph, with generated value names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.count = 0

    def _fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def input(self, name: str, elem_type: int, shape: list[Any]) -> None:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))

    def output(self, name: str, shape: list[Any]) -> None:
        self.outputs.append(self.helper.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT, shape))

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: list[str], name: str | None = None, **attributes: Any) -> str:
        return self.node_outputs(op_type, inputs, 1, name=name, **attributes)[0]

    def node_outputs(self, op_type: str, inputs: list[str], count: int, name: str | None = None, **attributes: Any) -> list[str]:
        outputs = [name] if name is not None and count == 1 else [self._fresh(op_type) for _ in range(count)]
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs, **attributes))
        return outputs

    def model(self, name: str) -> Any:
        graph = self.helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        proto = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", OPSET)], producer_name="lstmlab")
        proto.ir_version = 8  # what every ONNX Runtime since 1.10 reads
        return proto
