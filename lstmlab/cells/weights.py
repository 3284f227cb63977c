"""The parameters of one layer in one direction, as plain arrays (no nn.Parameter)."""

from __future__ import annotations

from typing import Any, NamedTuple


class LayerWeights(NamedTuple):
    """One layer's weights, named and shaped as torch names them.

    G is the number of gate blocks the cell has (LSTM: up to 4, GRU: 3, RNN: 1),
    H the hidden size, I the layer's input size, P the projection size (LSTM only).

    - w_ih: (G*H, I), w_hh: (G*H, P or H), b_ih, b_hh: (G*H,) or None (bias=False).
    - w_hr: (P, H) or None: LSTM projection (proj_size > 0).
    - w_ch: (n*H,) or None: LSTM peephole vectors, see `lstmlab.cells.lstm`.
    - w_gh: (n*H, n*H) or None: LSTM full gate recurrence (FGR), see `lstmlab.cells.lstm`.
    - w_ln_ih, w_ln_hh: (G*H,) or None: layer-normalisation gains, see `lstmlab.cells.layer_norm`;
      w_ln_c, b_ln_c: (H,) or None: the LSTM cell state's gain and bias there.
    """

    w_ih: Any
    w_hh: Any
    b_ih: Any = None
    b_hh: Any = None
    w_hr: Any = None
    w_ch: Any = None
    w_gh: Any = None
    w_ln_ih: Any = None
    w_ln_hh: Any = None
    w_ln_c: Any = None
    b_ln_c: Any = None
