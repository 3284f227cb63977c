"""Which ONNX operator computes a cell, and where its weights go: the one mapping both
ONNX exporters use (`lstmlab.onnx_export`, the graph written directly, and
`lstmlab.backends.onnx_symbolic`, what the modules run under `torch.onnx.export`).

ONNX's recurrent operators (opset 14+) and their conventions, against `lstmlab.cells`:

- `LSTM`: gate blocks of W, R and each half of B = [Wb, Rb] in the order i, o, f, c
  (lstmlab's rows are i, f, g, o, with c = g); peepholes are the input P in the order
  i, o, f; the input and output gates peek as in (L1), (L2), (L5). activations
  [f, g, h] = [Sigmoid, G, H], with NIAF's and NOAF's identity as `Affine` (alpha 1,
  beta 0). CIFG (f = 1 - i, (L2)) is `input_forget=1`: ONNX Runtime then computes
  f = 1 - i and ignores the forget block of W, R, B and P (checked by filling them),
  which are written as zeros.
- `GRU`: blocks in the order z, r, h (lstmlab: r, z, n); `linear_before_reset=1` is
  (G3), torch's reset after the product, 0 is (G3'), Cho et al.'s.
- `RNN`: one block; activations [Tanh] or [Relu].

What ONNX's operators cannot express is refused with `Unsupported` naming the missing
feature: no input, forget or output gate (NIG, NFG, NOG: the LSTM operator always has
all three), full gate recurrence (FGR) and the LSTM's projection (proj_size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lstmlab.cells import CellSpec, GRUSpec, LayerWeights, LSTMSpec
from lstmlab.errors import Unsupported

OPSET = 17  # LSTM, GRU, RNN at version 14 (the `layout` attribute); Squeeze with axes as an input (13)

_LSTM_BLOCKS = ("i", "o", "f", "g")  # ONNX's i, o, f, c
_LSTM_PEEPHOLES = ("i", "o", "f")
_GRU_BLOCKS = ("z", "r", "n")  # ONNX's z, r, h
_ACTIVATION = {"tanh": "Tanh", "identity": "Affine", "relu": "Relu"}


@dataclass(frozen=True)
class OnnxCell:
    """How one ONNX operator computes a cell.

    `blocks[k]` is the index of lstmlab's H-row block (in `spec.gates` order) that fills
    ONNX's k-th gate block, None for a block of zeros; `peepholes[k]` likewise indexes
    the vectors of `weight_ch` for P's k-th block (LSTM with peepholes only, else empty).
    `activations` are one direction's; `attributes` the rest of the operator's.
    """

    op_type: str
    blocks: tuple[int | None, ...]
    peepholes: tuple[int | None, ...] = ()
    activations: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    def node_attributes(self, num_directions: int, hidden_size: int) -> dict[str, Any]:
        """The operator's attributes for a layer of `num_directions` directions."""
        activations = list(self.activations) * num_directions
        return {
            "hidden_size": hidden_size,
            "direction": "bidirectional" if num_directions == 2 else "forward",
            "activations": activations,
            # one value per activation: ONNX Runtime reads them in order, each function taking what it uses
            "activation_alpha": [1.0] * len(activations),
            "activation_beta": [0.0] * len(activations),
            **self.attributes,
        }


def onnx_cell(spec: CellSpec, proj_size: int = 0, owner: str = "export_onnx") -> OnnxCell:
    """The ONNX operator for `spec`; `Unsupported` naming the missing operator feature if none can compute it."""
    if isinstance(spec, GRUSpec):
        if spec.layer_norm:
            raise Unsupported(owner, "module", "cannot be exported to ONNX's GRU operator, which lacks layer normalisation")
        return OnnxCell(
            "GRU",
            tuple(spec.gates.index(gate) for gate in _GRU_BLOCKS),
            activations=("Sigmoid", "Tanh"),
            attributes={"linear_before_reset": 1 if spec.reset == "after" else 0},
        )
    if not isinstance(spec, LSTMSpec):  # RNNSpec
        return OnnxCell("RNN", (0,), activations=(_ACTIVATION[spec.nonlinearity],))
    missing = [
        (not spec.input_gate, "no input gate (NIG): the operator always has the input gate i"),
        (not spec.forget_gate, "no forget gate (NFG): the operator always has the forget gate f (or f = 1 - i)"),
        (not spec.output_gate, "no output gate (NOG): the operator always has the output gate o"),
        (spec.gate_recurrence, "full gate recurrence (FGR): the operator has no gate-to-gate weights (weight_gh)"),
        (proj_size > 0, f"a projection (proj_size={proj_size}): the operator has no projection weights (weight_hr)"),
        (spec.layer_norm, "layer normalisation (layer_norm=True): the operator has no normalisation"),
    ]
    for refused, feature in missing:
        if refused:
            raise Unsupported(owner, "module", f"cannot be exported to ONNX's LSTM operator, which lacks {feature}")
    gates, peeps = spec.gates, spec.peephole_gates
    return OnnxCell(
        "LSTM",
        tuple(gates.index(gate) if gate in gates else None for gate in _LSTM_BLOCKS),
        tuple(peeps.index(gate) if gate in peeps else None for gate in _LSTM_PEEPHOLES) if spec.peephole else (),
        activations=("Sigmoid", _ACTIVATION[spec.input_activation], _ACTIVATION[spec.output_activation]),
        attributes={"input_forget": 1 if spec.coupled else 0},
    )


def operator_weights(cell: OnnxCell, ws: list[LayerWeights], H: int) -> dict[str, Tensor]:
    """The operator's W, R (and B, P where the layer has them) for the directions `ws`
    of one layer, stacked on a leading axis of len(ws): ONNX's layouts, as torch tensors."""

    def blocks(t: Tensor, order: tuple[int | None, ...]) -> Tensor:
        zero = t.new_zeros((H, *t.shape[1:]))
        return torch.cat([zero if k is None else t[k * H : (k + 1) * H] for k in order])

    out = {
        "W": torch.stack([blocks(w.w_ih, cell.blocks) for w in ws]),
        "R": torch.stack([blocks(w.w_hh, cell.blocks) for w in ws]),
    }
    if ws[0].b_ih is not None:
        out["B"] = torch.stack([torch.cat([blocks(w.b_ih, cell.blocks), blocks(w.b_hh, cell.blocks)]) for w in ws])
    elif cell.peepholes:  # P comes after B among the operator's inputs
        out["B"] = ws[0].w_ih.new_zeros((len(ws), 2 * len(cell.blocks) * H))
    if cell.peepholes:
        out["P"] = torch.stack([blocks(w.w_ch, cell.peepholes) for w in ws])
    return out
