"""The regularisers that act inside the recurrence, for every cell family.

Masks are random in training and drawn once per forward call (`lstmlab.backends.masks`);
at evaluation each regulariser is deterministic. With s the state a step leaves (h, and c
for the LSTM) and s~ the state the cell's equations compute from the previous one:

    (Z1) s' = d ⊙ s + (1 − d) ⊙ s~        zoneout (Krueger et al. 2016): in training d is
                                          Bernoulli(z) per unit and step; at evaluation d = z
    (D1) U h  →  U (m ⊙ h)                recurrent dropout (Gal & Ghahramani 2016): m is one
                                          mask per sequence, Bernoulli(1 − p) / (1 − p), over
                                          the units of h; it enters the recurrent products only
    (D2) U  →  U ⊙ M / (1 − p)            weight dropout (DropConnect on weight_hh, Merity et
                                          al. 2017): M is Bernoulli(1 − p), one per forward call

The LSTM's output is the zoned-out h'. In the GRU, (D1) masks h in U h (and in U_n (r ⊙ h)
with reset="before"), not in (G4)'s z ⊙ h. FGR's gate state a has no zoneout. Layer
normalisation changes the cell itself: `lstmlab.cells.layer_norm`.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class LayerMasks(NamedTuple):
    """The regularisers' masks for one layer in one direction, as arrays of any kind.

    - recurrent: (B, S_h), m of (D1), or None: no recurrent dropout.
    - zoneout: one entry per state tensor (h, c[, a]): (T, B, S_k), d of (Z1), indexed by the
      step the layer computes (for a reversed direction, its own order), or None for a state
      without zoneout; () when there is no zoneout at all.
    """

    recurrent: Any = None
    zoneout: tuple = ()


def zoneout(d: Any, old: Any, new: Any) -> Any:
    """(Z1): the state a step leaves when each unit keeps its old value with weight d."""
    return new + d * (old - new)


def masked_input(h: Any, mask: Any) -> Any:
    """(D1): the recurrent products' input, h or m ⊙ h."""
    return h if mask is None else h * mask
