"""What the modules run under `torch.onnx.export`: each layer as ONNX's own `LSTM`, `GRU`
or `RNN` operator, through `torch.onnx.ops.symbolic_multi_out` (torch 2.8+).

`torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=...)` of a model holding
lstmlab modules then needs nothing more: while it captures the model
(`torch.onnx.is_in_onnx_export()`), `lstmlab.nn` runs this backend instead of the one it
would choose, so the graph holds one recurrent node per layer and direction, with the
weights reordered by `lstmlab.onnx_layout.operator_weights` (torch ops on the
parameters, folded into constants by the exporter). T and B stay dynamic. The cells
ONNX's operators cannot compute (NIG, NFG, NOG, FGR, proj_size) are refused with
`Unsupported` naming the missing feature. Not a backend a module can choose: outside an
export, the operator nodes compute nothing.
"""

from __future__ import annotations

import torch

from lstmlab.backends.base import Layer, LayeredBackend, StackConfig
from lstmlab.cells import CellSpec, LayerWeights
from lstmlab.cells.regularisers import LayerMasks
from lstmlab.errors import Unsupported
from lstmlab.onnx_layout import onnx_cell, operator_weights

_VERSION = 14  # of ONNX's LSTM, GRU and RNN operators


class OnnxSymbolicBackend(LayeredBackend):
    name = "onnx-symbolic"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        return None

    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
        masks: LayerMasks | None = None,
    ) -> Layer:
        owner = "torch.onnx.export"
        cell = onnx_cell(spec, proj_size=0 if w.w_hr is None else w.w_hr.shape[0], owner=owner)
        if masks is not None:  # zoneout (also its evaluation form), or recurrent dropout in training mode
            used = [name for name, on in (("zoneout", masks.zoneout), ("recurrent dropout", masks.recurrent is not None)) if on]
            raise Unsupported(
                owner,
                "module",
                f"cannot be exported with {' and '.join(used)}: ONNX's operators have none "
                "(set zoneout=0; recurrent dropout acts in training mode only: export the module in eval mode)",
            )
        if lengths is not None:
            raise Unsupported(owner, "input", "must not be a PackedSequence: export padded sequences of one length")
        H = w.w_hh.shape[1]
        weights = operator_weights(cell, [w], H)
        lstm = cell.op_type == "LSTM"
        # X, W, R, B, sequence_lens, initial_h[, initial_c, P], one direction (a leading axis of 1)
        inputs = [x, weights["W"], weights["R"], weights.get("B"), None, state[0].unsqueeze(0)]
        if lstm:
            inputs += [state[1].unsqueeze(0), weights.get("P")]
        T, B = x.shape[0], x.shape[1]
        count = 3 if lstm else 2
        outputs = torch.onnx.ops.symbolic_multi_out(
            cell.op_type,
            inputs,
            cell.node_attributes(1, H),
            dtypes=[x.dtype] * count,
            shapes=[[T, 1, B, H]] + [[1, B, H]] * (count - 1),
            version=_VERSION,
        )
        return outputs[0].squeeze(1), tuple(s.squeeze(0) for s in outputs[1:])
