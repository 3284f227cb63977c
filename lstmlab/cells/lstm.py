"""The LSTM family: one cell whose flags give every variant of Greff et al. 2015.

Notation: x input, h and c the previous hidden and cell state, W input weights,
U recurrent weights, b = b_ih + b_hh, p peephole vectors (diagonal), a the previous
step's gate activations (FGR only), σ the logistic sigmoid, ⊙ elementwise product.

    (L1) i  = σ(W_i x + U_i h + b_i + p_i ⊙ c  + V_i a)   NIG: i = 1
    (L2) f  = σ(W_f x + U_f h + b_f + p_f ⊙ c  + V_f a)   NFG: f = 1;  CIFG: f = 1 − i
    (L3) g  = G(W_g x + U_g h + b_g)                      G = tanh;  NIAF: identity
    (L4) c' = f ⊙ c + i ⊙ g
    (L5) o  = σ(W_o x + U_o h + b_o + p_o ⊙ c' + V_o a)   NOG: o = 1
    (L6) m  = o ⊙ H(c')                                   H = tanh;  NOAF: identity
    (L7) h' = m,  or  h' = W_hr m  with a projection (proj_size > 0)

With `layer_norm=True`, W x + b_ih, U h + b_hh and the argument of H take the forms
(N1)-(N3) of `lstmlab.cells.layer_norm`; zoneout and recurrent dropout act around this
step as `lstmlab.cells.regularisers` says.

The input and forget gates peek at the previous cell state, the output gate at the
new one (Gers & Schmidhuber 2000, Greff et al. 2015, ONNX `LSTM`). Peephole terms
exist only with `peephole=True`, the V terms only with `gate_recurrence=True` (FGR).

Parameter layout (one layer, one direction):
- weight rows exist only for gates that exist, in the order i, f, g, o
  (`LSTMSpec.gates`): CIFG has rows i, g, o; NIG f, g, o; NOG i, f, g.
- `weight_ch` (n*H,): the peephole vectors of the gates among (i, f, o) that exist,
  in that order (`LSTMSpec.peephole_gates`); a CIFG peephole LSTM holds (p_i, p_o).
- `weight_gh` (n*H, n*H): FGR's gate-to-gate matrices V. Rows are the receiving
  gates, columns the previous activations a, both over `LSTMSpec.recurrent_gates`
  (the sigmoid gates among i, f, o that exist). Block (r, s) is V_{r←s}.
  FGR carries a = [i, f, o] of the last step as a third state tensor, zero at start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from lstmlab.cells.array_ops import Ops, activation_derivative, split
from lstmlab.cells.layer_norm import affine_backward, normalize, recurrent_projection, recurrent_projection_backward
from lstmlab.cells.regularisers import masked_input
from lstmlab.cells.weights import LayerWeights
from lstmlab.errors import InvalidArgument, WrongType

GATES = ("i", "f", "g", "o")  # torch's row order; every other order derives from it
SIGMOID_GATES = ("i", "f", "o")
ACTIVATIONS = ("tanh", "identity")


@dataclass(frozen=True)
class LSTMSpec:
    """The flags of one LSTM cell; `LSTMSpec()` is torch's LSTM (Greff's NP)."""

    peephole: bool = False
    coupled: bool = False
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    input_activation: str = "tanh"
    output_activation: str = "tanh"
    gate_recurrence: bool = False
    layer_norm: bool = False

    def __post_init__(self) -> None:
        for name in ("input_activation", "output_activation"):
            value = getattr(self, name)
            if value not in ACTIVATIONS:
                raise InvalidArgument("LSTM", name, f"must be one of {', '.join(ACTIVATIONS)}; got {value!r}")
        if self.coupled and not (self.input_gate and self.forget_gate):
            missing = "input_gate" if not self.input_gate else "forget_gate"
            rule = "=True derives the forget gate from the input gate (f = 1 - i), so it needs both gates"
            raise InvalidArgument("LSTM", "coupled", f"{rule}; got {missing}=False")
        for flag in ("peephole", "gate_recurrence"):
            if getattr(self, flag) and not self.sigmoid_gates:
                raise InvalidArgument("LSTM", flag, "=True needs at least one of the input, forget or output gates; got none")

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate blocks that have weight rows, in torch's order i, f, g, o."""
        present = {
            "i": self.input_gate,
            "f": self.forget_gate and not self.coupled,
            "g": True,
            "o": self.output_gate,
        }
        return tuple(gate for gate in GATES if present[gate])

    @property
    def sigmoid_gates(self) -> tuple[str, ...]:
        return tuple(gate for gate in self.gates if gate in SIGMOID_GATES)

    @property
    def peephole_gates(self) -> tuple[str, ...]:
        """Gates with a peephole vector in `weight_ch`, in order."""
        return self.sigmoid_gates if self.peephole else ()

    @property
    def recurrent_gates(self) -> tuple[str, ...]:
        """Gates that send and receive FGR's gate-to-gate recurrence, in order."""
        return self.sigmoid_gates if self.gate_recurrence else ()


# name: (flags relative to LSTMSpec(), one-line description)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "vanilla": ({"peephole": True}, "Greff's vanilla LSTM: forget gate and peepholes"),
    "peephole": ({"peephole": True}, "the peephole LSTM of Gers & Schmidhuber 2000 (same cell as vanilla)"),
    "NP": ({}, "no peepholes: torch's nn.LSTM"),
    "NIG": ({"peephole": True, "input_gate": False}, "no input gate (i = 1)"),
    "NFG": ({"peephole": True, "forget_gate": False}, "no forget gate (f = 1)"),
    "NOG": ({"peephole": True, "output_gate": False}, "no output gate (o = 1)"),
    "NIAF": ({"peephole": True, "input_activation": "identity"}, "no input activation (g is linear)"),
    "NOAF": ({"peephole": True, "output_activation": "identity"}, "no output activation (h = o ⊙ c)"),
    "CIFG": ({"peephole": True, "coupled": True}, "coupled input and forget gate (f = 1 - i), peepholes kept"),
    "FGR": ({"peephole": True, "gate_recurrence": True}, "full gate recurrence: gates also see last step's gates"),
}


_BY_LOWER = {name.lower(): name for name in VARIANTS}


def canonical_variant(name: str) -> str:
    """The variant's name as `VARIANTS` spells it, from any case ("cifg" -> "CIFG")."""
    if not isinstance(name, str) or name.lower() not in _BY_LOWER:
        raise InvalidArgument("LSTM", "variant", f"must be one of {', '.join(VARIANTS)}; got {name!r}")
    return _BY_LOWER[name.lower()]


def spec_from_flags(variant: str | None = None, **flags: Any) -> LSTMSpec:
    """Build an LSTMSpec from a variant name and/or explicit flags.

    Every flag given with a variant must agree with it, whether or not the value is the
    flag's default: `spec_from_flags("CIFG", peephole=False)` is an error, not a CIFG
    with peepholes.
    >>> spec_from_flags("CIFG").gates
    ('i', 'g', 'o')
    """
    spec = LSTMSpec()
    if variant is None:
        return replace(spec, **flags)
    if not isinstance(variant, str):
        raise WrongType("LSTM", "variant", f"must be a str or None; got {type(variant).__name__}")
    name = canonical_variant(variant)
    variant_flags = VARIANTS[name][0]
    defaults = {field.name: field.default for field in fields(LSTMSpec)}
    for flag, value in flags.items():
        if value != variant_flags.get(flag, defaults[flag]):
            wanted = variant_flags.get(flag, defaults[flag])
            raise InvalidArgument("LSTM", flag, f"={value!r} conflicts with variant={name!r}, which sets {flag}={wanted!r}")
    return replace(spec, **variant_flags)


def state_sizes(spec: LSTMSpec, hidden_size: int, proj_size: int = 0) -> tuple[int, ...]:
    """Sizes of the state tensors: (h, c) or, with FGR, (h, c, a)."""
    sizes = (proj_size or hidden_size, hidden_size)
    if spec.gate_recurrence:
        sizes += (len(spec.recurrent_gates) * hidden_size,)
    return sizes


def step(spec: LSTMSpec, ops: Ops, zx: Any, state: tuple, w: LayerWeights, recurrent_mask: Any = None) -> tuple[tuple, Any, dict]:
    """One time step. zx = W x + b_ih for this step (B, G*H) (`layer_norm.input_projection`);
    state (h, c[, a]); recurrent_mask (B, P or H) or None: m of (D1).

    Returns the new state, the output h', and the intermediates backward needs.
    """
    h, c = state[0], state[1]
    H = c.shape[-1]
    hp = masked_input(h, recurrent_mask)  # (D1)
    zh, uh = recurrent_projection(ops, hp, w)  # (N2) with layer_norm
    z = zx + zh
    if w.b_hh is not None:
        z = z + w.b_hh
    pre = split(z, spec.gates, H)
    if spec.gate_recurrence:
        a = state[2]
        for gate, za in split(a @ w.w_gh.T, spec.recurrent_gates, H).items():
            pre[gate] = pre[gate] + za
    p = split(w.w_ch, spec.peephole_gates, H) if spec.peephole else {}

    def gate(name: str, cell: Any) -> Any:
        if name in p:
            return ops.sigmoid(pre[name] + p[name] * cell)
        return ops.sigmoid(pre[name])

    i = gate("i", c) if spec.input_gate else 1.0  # (L1)
    if spec.coupled:
        f = 1.0 - i  # (L2) CIFG
    else:
        f = gate("f", c) if spec.forget_gate else 1.0  # (L2)
    g = ops.activation(spec.input_activation)(pre["g"])  # (L3)
    c_new = f * c + i * g  # (L4)
    o = gate("o", c_new) if spec.output_gate else 1.0  # (L5)
    cn = normalize(ops, c_new) * w.w_ln_c + w.b_ln_c if spec.layer_norm else c_new  # (N3)
    hc = ops.activation(spec.output_activation)(cn)
    m = o * hc  # (L6)
    h_new = m @ w.w_hr.T if w.w_hr is not None else m  # (L7)
    new_state: tuple = (h_new, c_new)
    if spec.gate_recurrence:
        act = {"i": i, "f": f, "o": o}
        new_state += (ops.concat([act[name] for name in spec.recurrent_gates]),)
    cache = {"h": hp, "uh": uh, "mask": recurrent_mask, "c": c, "i": i, "f": f, "g": g, "o": o, "c_new": c_new, "hc": hc, "m": m}
    if spec.gate_recurrence:
        cache["a"] = state[2]
    return new_state, h_new, cache


def step_backward(
    spec: LSTMSpec, cache: dict, dstate: tuple, w: LayerWeights, grads: dict[str, np.ndarray]
) -> tuple[np.ndarray, tuple]:
    """Backward of `step` in NumPy, derived by hand.

    dstate holds the gradients of the loss with respect to the new state (dh', dc'[, da']),
    dh' including the output's own gradient. Adds the weight gradients into `grads`
    (keys named as LayerWeights fields) and returns (dzx, gradients of the old state).
    """
    dh, dc_new = dstate[0], dstate[1]
    c, c_new, i, f, g, o, hc = (cache[k] for k in ("c", "c_new", "i", "f", "g", "o", "hc"))
    H = c.shape[-1]
    da = split(dstate[2], spec.recurrent_gates, H) if spec.gate_recurrence else {}
    p = split(w.w_ch, spec.peephole_gates, H) if spec.peephole else {}
    dpre: dict[str, np.ndarray] = {}
    dp: dict[str, np.ndarray] = {}

    if w.w_hr is not None:  # (L7)
        grads["w_hr"] += dh.T @ cache["m"]
        dm = dh @ w.w_hr
    else:
        dm = dh
    dcn = dm * o * activation_derivative(spec.output_activation, hc)  # (L6)
    if spec.layer_norm:  # (N3)
        dcn_raw, dgain = affine_backward(c_new, dcn, w.w_ln_c)
        grads["w_ln_c"] += dgain
        grads["b_ln_c"] += dcn.sum(axis=0)
        dcn = dcn_raw
    dc_new = dc_new + dcn
    if spec.output_gate:  # (L5)
        dpre["o"] = (dm * hc + da.get("o", 0.0)) * o * (1.0 - o)
        if "o" in p:
            dc_new = dc_new + dpre["o"] * p["o"]
            dp["o"] = (dpre["o"] * c_new).sum(axis=0)
    df = dc_new * c  # (L4)
    di = dc_new * g
    dg = dc_new * i
    dc = dc_new * f
    dpre["g"] = dg * activation_derivative(spec.input_activation, g)  # (L3)
    if spec.coupled:  # (L2) f = 1 - i
        di = di - df
    elif spec.forget_gate:  # (L2)
        dpre["f"] = (df + da.get("f", 0.0)) * f * (1.0 - f)
        if "f" in p:
            dc = dc + dpre["f"] * p["f"]
            dp["f"] = (dpre["f"] * c).sum(axis=0)
    if spec.input_gate:  # (L1)
        dpre["i"] = (di + da.get("i", 0.0)) * i * (1.0 - i)
        if "i" in p:
            dc = dc + dpre["i"] * p["i"]
            dp["i"] = (dpre["i"] * c).sum(axis=0)

    dz = np.concatenate([dpre[gate] for gate in spec.gates], axis=-1)
    if w.b_hh is not None:
        grads["b_hh"] += dz.sum(axis=0)
    if spec.peephole:
        grads["w_ch"] += np.concatenate([dp[gate] for gate in spec.peephole_gates])
    dh = recurrent_projection_backward(cache["h"], cache["uh"], dz, w, grads)  # (N2)
    if cache["mask"] is not None:  # (D1)
        dh = dh * cache["mask"]
    dstate_old: tuple = (dh, dc)
    if spec.gate_recurrence:
        dza = np.concatenate([dpre[gate] for gate in spec.recurrent_gates], axis=-1)
        grads["w_gh"] += dza.T @ cache["a"]
        dstate_old += (dza @ w.w_gh,)
    return dz, dstate_old
