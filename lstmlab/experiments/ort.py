"""ONNX Runtime's `LSTM` operator as a yardstick for inference speed.

One lstmlab LSTM layer (time-major, one direction) becomes one ONNX `LSTM` node with
the same weights: torch's gate rows (i, f, g, o) reordered to ONNX's (i, o, f, c),
the peephole vectors as the node's `P` input (p_i, p_o, p_f), and the coupled input
and forget gate (CIFG, f = 1 - i) as `input_forget=1`, which onnxruntime computes as
f = 1 - i too (its forget weights are then unused; they are given as zeros). The
session runs on `threads` intra-op threads (torch's by default), one inter-op
thread, and with its thread pool not spinning between calls, so that it does not
take the cores from the other side of the comparison.

Needs the optional packages onnx and onnxruntime (`pip install onnx onnxruntime`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lstmlab.cells import LSTMSpec
from lstmlab.errors import Unsupported

ONNX_GATES = ("i", "o", "f", "g")  # ONNX's i, o, f, c
ONNX_PEEPHOLES = ("i", "o", "f")


def available() -> str | None:
    """None when onnx and onnxruntime import, else why not (with the install command)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (pip install onnx onnxruntime)"
    return None


def _blocks(array: np.ndarray, names: tuple[str, ...], H: int) -> dict[str, np.ndarray]:
    return {name: array[k * H : (k + 1) * H] for k, name in enumerate(names)}


def lstm_node_inputs(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """W, R, B and (with peepholes) P of the ONNX `LSTM` node computing `module`'s first
    layer, a one-layer, one-direction lstmlab LSTM whose gates all exist (CIFG's forget
    gate excepted) with tanh activations, no projection and no gate recurrence."""
    config = module.config
    spec = config.spec
    if not isinstance(spec, LSTMSpec):
        raise Unsupported("ort", "module", f"must be an lstmlab LSTM; got a {type(spec).__name__[:-4]}")
    plain = spec.input_gate and spec.forget_gate and spec.output_gate and not spec.gate_recurrence
    tanh = spec.input_activation == spec.output_activation == "tanh"
    if not (plain and tanh) or config.proj_size or config.num_layers != 1 or config.bidirectional:
        raise Unsupported(
            "ort",
            "module",
            "must be a one-layer, one-direction LSTM with every gate (CIFG allowed), tanh activations, no "
            f"projection and no gate recurrence; got {spec} with {config.num_layers} layer(s), proj_size={config.proj_size}",
        )
    H = config.hidden_size
    params = {name: p.detach().to(torch.float32).numpy() for name, p in module.named_parameters()}
    w_ih, w_hh = _blocks(params["weight_ih_l0"], spec.gates, H), _blocks(params["weight_hh_l0"], spec.gates, H)
    zero_rows = {"f": np.zeros((H, params["weight_ih_l0"].shape[1]), np.float32)}  # CIFG: unused by input_forget
    W = np.concatenate([w_ih.get(g, zero_rows.get(g)) for g in ONNX_GATES])[None]
    R = np.concatenate([w_hh.get(g, np.zeros((H, H), np.float32)) for g in ONNX_GATES])[None]
    inputs = {"W": W, "R": R}
    if config.bias:
        b_ih, b_hh = _blocks(params["bias_ih_l0"], spec.gates, H), _blocks(params["bias_hh_l0"], spec.gates, H)
        zero = np.zeros(H, np.float32)
        inputs["B"] = np.concatenate([b.get(g, zero) for b in (b_ih, b_hh) for g in ONNX_GATES])[None]
    if spec.peephole:
        p = _blocks(params["weight_ch_l0"], spec.peephole_gates, H)
        inputs["P"] = np.concatenate([p.get(g, np.zeros(H, np.float32)) for g in ONNX_PEEPHOLES])[None]
    return inputs


def lstm_model(module: torch.nn.Module) -> Any:
    """An ONNX model of one `LSTM` node computing `module` (see `lstm_node_inputs`): input
    "X" (T, B, I) float32, output "Y" (T, 1, B, H); the weights are initializers."""
    from onnx import TensorProto, helper, numpy_helper

    weights = lstm_node_inputs(module)
    order = ("W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
    node_inputs = ["X"] + [name if name in weights else "" for name in order]
    while node_inputs[-1] == "":
        node_inputs.pop()
    node = helper.make_node(
        "LSTM",
        node_inputs,
        ["Y"],
        hidden_size=module.config.hidden_size,
        input_forget=int(module.config.spec.coupled),
    )
    inputs, H = weights["W"].shape[2], module.config.hidden_size
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", inputs])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H])],
        initializer=[numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def session(module: torch.nn.Module, threads: int | None = None) -> Any:
    """An onnxruntime session running `lstm_model(module)` on `threads` intra-op threads
    (default: torch's), one inter-op thread, its thread pool not spinning."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = lstm_model(module).SerializeToString()
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(sess: Any, x: np.ndarray) -> np.ndarray:
    """The session's output sequence (T, B, H) for input `x` (T, B, I) float32."""
    return sess.run(None, {"X": x})[0][:, 0]
