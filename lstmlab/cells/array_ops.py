"""Array namespaces that let one cell step run on NumPy arrays and torch tensors.

The forward step of every cell is written once, against an `Ops` namespace, so the
NumPy reference and the eager torch backend execute the very same equations. Only
the hand-written backward (NumPy) is specific to the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmlab.errors import InvalidArgument

Array = Any  # a NumPy array or a torch tensor, whichever the Ops namespace handles


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: exact, and never overflows the way 1 / (1 + exp(-x)) does
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True)
class Ops:
    """The few array operations a cell step needs beyond `+`, `*` and `@`."""

    sigmoid: Callable[[Array], Array]
    tanh: Callable[[Array], Array]
    relu: Callable[[Array], Array]
    concat: Callable[[list[Array]], Array]
    stack: Callable[[list[Array]], Array]
    normalize: Callable[[Array, float], Array]  # (v - mean) / sqrt(var + eps) over the last axis

    def activation(self, name: str) -> Callable[[Array], Array]:
        """The activation called `name` ("tanh", "relu" or "identity")."""
        if name == "identity":
            return _identity
        return getattr(self, name)


def _identity(x: Array) -> Array:
    return x


def _np_normalize(v: np.ndarray, eps: float) -> np.ndarray:
    centred = v - v.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + eps)


NUMPY_OPS = Ops(
    sigmoid=_np_sigmoid,
    tanh=np.tanh,
    relu=lambda x: np.maximum(x, 0.0),
    concat=lambda xs: np.concatenate(xs, axis=-1),
    stack=np.stack,
    normalize=_np_normalize,
)


def torch_ops() -> Ops:
    """The torch namespace (imported lazily so the math layer does not need torch)."""
    import torch
    import torch.nn.functional as F

    return Ops(
        sigmoid=torch.sigmoid,
        tanh=torch.tanh,
        relu=torch.relu,
        concat=lambda xs: torch.cat(xs, dim=-1),
        stack=torch.stack,
        normalize=lambda v, eps: F.layer_norm(v, (v.shape[-1],), eps=eps),
    )


def activation_derivative(name: str, y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray | float:
    """d act(x) / dx for a NumPy activation, from its output `y` (or input `x` for relu)."""
    if name == "tanh":
        return 1.0 - y * y
    if name == "identity":
        return 1.0
    if name == "relu":
        return (y > 0).astype(y.dtype)
    raise InvalidArgument("activation_derivative", "name", f"must be tanh, relu or identity; got {name!r}")


def split(z: Array, names: tuple[str, ...], size: int) -> dict[str, Array]:
    """Cut the last axis of `z` into blocks of `size`, one per name, in order."""
    return {name: z[..., k * size : (k + 1) * size] for k, name in enumerate(names)}
