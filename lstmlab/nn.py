"""Drop-in replacements for torch.nn.LSTM, GRU and RNN (and their *Cell), with every
variant of the LSTM family. The equations are in `lstmlab.cells`; the computation
in `lstmlab.backends`; this module owns the parameters, checks arguments and inputs,
and speaks torch's API (shapes, state_dict names, PackedSequence, batch_first,
unbatched input).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmlab import _checks, backends
from lstmlab.backends import StackConfig
from lstmlab.cells import CellSpec, GRUSpec, LayerWeights, LSTMSpec, RNNSpec, num_gates
from lstmlab.cells.lstm import spec_from_flags

_Spec = TypeVar("_Spec", bound=CellSpec)

State = Tensor | tuple[Tensor, ...]

# LayerWeights field -> torch parameter name stem
_PARAM_NAMES = {
    "w_ih": "weight_ih",
    "w_hh": "weight_hh",
    "b_ih": "bias_ih",
    "b_hh": "bias_hh",
    "w_hr": "weight_hr",
    "w_ch": "weight_ch",
    "w_gh": "weight_gh",
}


def _layer_shapes(config: StackConfig, layer_input: int) -> dict[str, tuple[int, ...]]:
    """Shapes of one layer's parameters, by LayerWeights field; absent ones left out."""
    spec, H = config.spec, config.hidden_size
    rows = num_gates(spec) * H
    shapes: dict[str, tuple[int, ...]] = {"w_ih": (rows, layer_input), "w_hh": (rows, config.output_size)}
    if config.bias:
        shapes["b_ih"] = shapes["b_hh"] = (rows,)
    if config.proj_size:
        shapes["w_hr"] = (config.proj_size, H)
    if isinstance(spec, LSTMSpec) and spec.peephole:
        shapes["w_ch"] = (len(spec.peephole_gates) * H,)
    if isinstance(spec, LSTMSpec) and spec.gate_recurrence:
        n = len(spec.recurrent_gates) * H
        shapes["w_gh"] = (n, n)
    return shapes


class _Recurrent(nn.Module):
    """Parameters, checks and torch's calling conventions, shared by every module here."""

    _owner = "RNN"

    def __init__(
        self,
        config: StackConfig,
        batch_first: bool,
        backend: str,
        suffixes: list[str],
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        owner = self._owner
        self.config = config
        self.input_size = config.input_size
        self.hidden_size = config.hidden_size
        self.num_layers = config.num_layers
        self.bias = config.bias
        self.batch_first = _checks.boolean(owner, "batch_first", batch_first)
        self.dropout = config.dropout
        self.bidirectional = config.bidirectional
        self.proj_size = config.proj_size
        if not isinstance(backend, str) or backend not in backends.names():
            raise ValueError(f"{owner}: backend must be one of {', '.join(backends.names())}; got {backend!r}")
        self.backend = backend
        self._suffixes = suffixes
        factory = {"device": device, "dtype": dtype}
        D = config.num_directions
        for index, suffix in enumerate(suffixes):
            layer = index // D
            layer_input = config.input_size if layer == 0 else D * config.output_size
            for field, shape in _layer_shapes(config, layer_input).items():
                self.register_parameter(_PARAM_NAMES[field] + suffix, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()
        if backend != "auto":
            self.active_backend  # noqa: B018 - an explicit backend that cannot run this cell fails here, not at forward

    # -- parameters ----------------------------------------------------------------

    def reset_parameters(self) -> None:
        """torch's initialisation: uniform in ±1/sqrt(hidden_size); peepholes at zero."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.startswith(_PARAM_NAMES["w_ch"]):
                    param.zero_()
                else:
                    param.uniform_(-bound, bound)

    def layer_weights(self) -> list[LayerWeights]:
        """The parameters of each layer and direction (index layer * D + direction), as the backends take them."""
        return [
            LayerWeights(**{field: getattr(self, stem + suffix, None) for field, stem in _PARAM_NAMES.items()})
            for suffix in self._suffixes
        ]

    @property
    def active_backend(self) -> str:
        """Name of the backend that runs this module with its parameters' device and dtype."""
        like = next(self.parameters())
        return backends.resolve(self.backend, self.config, like, self._owner).name

    # -- checks --------------------------------------------------------------------

    def _check_tensor(self, name: str, t: Any, like: Tensor) -> None:
        owner = self._owner
        if not isinstance(t, Tensor):
            raise TypeError(f"{owner}: {name} must be a Tensor; got {type(t).__name__}")
        if t.dtype != like.dtype:
            raise ValueError(f"{owner}: {name}.dtype must equal the parameters' dtype={like.dtype}; got {t.dtype}")
        if t.device != like.device:
            raise ValueError(f"{owner}: {name}.device must equal the parameters' device={like.device}; got {t.device}")

    def _check_state(self, hx: Any, batch: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        """hx as a tuple of (L*D, B, S) tensors, checked; zeros when hx is None."""
        owner, sizes = self._owner, self.config.state_sizes
        leading = (len(self._suffixes),)
        if hx is None:
            return tuple(like.new_zeros(leading + (batch, size)) for size in sizes)
        names = ("hx",) if len(sizes) == 1 else ("h_0", "c_0", "a_0")[: len(sizes)]
        if len(sizes) == 1:
            parts = (hx,)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != len(sizes):
                raise ValueError(
                    f"{owner}: hx must be a tuple ({', '.join(names)}) of {len(sizes)} tensors; got {type(hx).__name__}"
                    + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
                )
            parts = tuple(hx)
        states = []
        for name, part, size in zip(names, parts, sizes):
            self._check_tensor(name, part, like)
            expected = leading + ((batch,) if batched else ()) + (size,)
            if tuple(part.shape) != expected:
                raise ValueError(f"{owner}: {name} must have shape {expected}; got {tuple(part.shape)}")
            states.append(part if batched else part.unsqueeze(1))
        return tuple(states)

    def _check_packed(self, packed: PackedSequence) -> None:
        owner = self._owner
        sizes = packed.batch_sizes
        if sizes.dim() != 1 or len(sizes) == 0 or bool((sizes <= 0).any()) or bool((sizes[1:] > sizes[:-1]).any()):
            raise ValueError(
                f"{owner}: a PackedSequence's batch_sizes must be positive and non-increasing "
                f"(lengths in [1, T]); got {sizes.tolist()}"
            )
        if int(sizes.sum()) != packed.data.shape[0]:
            raise ValueError(
                f"{owner}: a PackedSequence's batch_sizes must sum to data.size(0)={packed.data.shape[0]}; got {int(sizes.sum())}"
            )

    # -- the computation -----------------------------------------------------------

    def _run(self, input: Any, hx: Any) -> tuple[Any, tuple[Tensor, ...], bool]:
        """Check, convert to time-major padded form, run the backend, convert back."""
        owner = self._owner
        like = next(self.parameters())
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            self._check_packed(input)
            self._check_tensor("input.data", input.data, like)
            if input.data.dim() != 2:
                raise ValueError(f"{owner}: a PackedSequence's data must be 2-D; got {input.data.dim()}-D")
            x, lengths = pad_packed_sequence(input)
            batched = True
        else:
            self._check_tensor("input", input, like)
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{owner}: input must be 2-D (T, input_size) or 3-D (T, B, input_size) "
                    f"(batch_first: (B, T, input_size)); got {input.dim()}-D"
                )
            batched = input.dim() == 3
            x = input if not batched else (input.transpose(0, 1) if self.batch_first else input)
            if not batched:
                x = x.unsqueeze(1)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{owner}: input.size(-1) must equal input_size={self.input_size}; got {x.shape[-1]}")
        state = self._check_state(hx, x.shape[1], batched, like)
        backend = backends.resolve(self.backend, self.config, like, owner)
        if x.shape[0] == 0:
            y = x.new_zeros(0, x.shape[1], self.config.num_directions * self.config.output_size)
            final = state
        else:
            y, final = backend.run(self.config, x, lengths, state, self.layer_weights(), self.training)
        if packed:
            order = input.sorted_indices
            if order is None:
                y = pack_padded_sequence(y, lengths, enforce_sorted=True)
            else:
                sorted_y = pack_padded_sequence(y.index_select(1, order), lengths[order.cpu()], enforce_sorted=True)
                y = PackedSequence(sorted_y.data, sorted_y.batch_sizes, order, input.unsorted_indices)
        elif not batched:
            y = y.squeeze(1)
            final = tuple(s.squeeze(1) for s in final)
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, final, batched

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False, "proj_size": 0}
        parts += [f"{k}={getattr(self, k)}" for k, v in defaults.items() if hasattr(self, k) and getattr(self, k) != v]
        parts += self._extra_repr_parts()
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)

    def _extra_repr_parts(self) -> list[str]:
        return []


def _stack_config(
    owner: str,
    spec: CellSpec,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    dropout: float,
    bidirectional: bool,
    proj_size: int = 0,
) -> StackConfig:
    """Check the constructor arguments every stack shares; warn as torch does."""
    _checks.positive_int(owner, "input_size", input_size)
    _checks.positive_int(owner, "hidden_size", hidden_size)
    _checks.positive_int(owner, "num_layers", num_layers)
    _checks.boolean(owner, "bias", bias)
    dropout = _checks.probability(owner, "dropout", dropout)
    _checks.boolean(owner, "bidirectional", bidirectional)
    _checks.non_negative_int(owner, "proj_size", proj_size)
    if proj_size >= hidden_size:
        raise ValueError(f"{owner}: proj_size must be smaller than hidden_size={hidden_size}; got {proj_size}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            f"{owner}: dropout={dropout} applies between layers only, so it does nothing with num_layers=1",
            UserWarning,
            stacklevel=3,
        )
    return StackConfig(spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size)


def _suffixes(num_layers: int, bidirectional: bool) -> list[str]:
    directions = ("", "_reverse") if bidirectional else ("",)
    return [f"_l{layer}{direction}" for layer in range(num_layers) for direction in directions]


def _spec_for(owner: str, make: Callable[[], _Spec]) -> _Spec:
    """`make()`, with an error of the cell spec ("GRU: reset must ...") named for `owner` ("GRUCell: ...")."""
    try:
        return make()
    except (TypeError, ValueError) as error:
        family, _, rest = str(error).partition(": ")
        if not rest or owner == family or not owner.startswith(family):
            raise
        raise type(error)(f"{owner}: {rest}") from None


def _lstm_spec(owner: str, variant: str | None, flags: dict[str, Any]) -> LSTMSpec:
    """The cell the flags and variant give; a flag left None is not given (torch's LSTM, or the variant's)."""
    given = {name: value for name, value in flags.items() if value is not None}
    for name in ("peephole", "coupled", "input_gate", "forget_gate", "output_gate", "gate_recurrence"):
        if name in given:
            _checks.boolean(owner, name, given[name])
    return _spec_for(owner, lambda: spec_from_flags(variant, **given))


def _apply_forget_bias(module: _Recurrent, forget_bias: float) -> None:
    """Add `forget_bias` to the forget gate's block of every bias_ih."""
    owner, spec = module._owner, module.config.spec
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) or not math.isfinite(forget_bias):
        raise ValueError(f"{owner}: forget_bias must be a finite number; got {forget_bias!r}")
    if forget_bias == 0:
        return
    assert isinstance(spec, LSTMSpec)
    if "f" not in spec.gates:
        raise ValueError(f"{owner}: forget_bias needs a forget gate with its own weights; this cell has gates {spec.gates}")
    if not module.bias:
        raise ValueError(f"{owner}: forget_bias needs bias=True; got bias=False")
    k, H = spec.gates.index("f"), module.hidden_size
    with torch.no_grad():
        for suffix in module._suffixes:
            getattr(module, "bias_ih" + suffix)[k * H : (k + 1) * H] += forget_bias


class _FromTorch:
    """from_torch / to_torch for the modules whose configuration torch has."""

    _torch_class: type[nn.Module]

    def _torch_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_torch(cls, module: nn.Module, **kwargs: Any) -> Any:
        """A copy of the torch module `module`, parameters included (kwargs: e.g. backend)."""
        if not isinstance(module, cls._torch_class):
            raise TypeError(
                f"{cls.__name__}.from_torch: module must be a {cls._torch_class.__name__}; got {type(module).__name__}"
            )
        args = {name: getattr(module, name) for name in _torch_args(module)}
        first = next(module.parameters())
        ours = cls(**args, **kwargs, device=first.device, dtype=first.dtype)
        ours.load_state_dict(module.state_dict())
        ours.train(module.training)
        return ours

    def to_torch(self) -> nn.Module:
        """The equivalent torch module, parameters copied; raises if torch has no such cell."""
        owner = self._owner  # type: ignore[attr-defined]
        if backends.get("native").unsupported(self.config, next(self.parameters())) is not None:  # type: ignore[attr-defined]
            raise ValueError(f"{owner}.to_torch: torch has no equivalent of this cell ({self.config.spec})")  # type: ignore[attr-defined]
        first = next(self.parameters())  # type: ignore[attr-defined]
        theirs = self._torch_class(**self._torch_kwargs(), device=first.device, dtype=first.dtype)
        theirs.load_state_dict(self.state_dict())  # type: ignore[attr-defined]
        theirs.train(self.training)  # type: ignore[attr-defined]
        return theirs


def _torch_args(module: nn.Module) -> list[str]:
    names = ["input_size", "hidden_size"]
    if isinstance(module, nn.RNNBase):
        names += ["num_layers", "bias", "batch_first", "dropout", "bidirectional"]
        if isinstance(module, nn.LSTM):
            names.append("proj_size")
        if isinstance(module, nn.RNN):
            names.append("nonlinearity")
    else:
        names.append("bias")
        if isinstance(module, nn.RNNCell):
            names.append("nonlinearity")
    return names


class LSTM(_FromTorch, _Recurrent):
    """Multi-layer LSTM, a drop-in for torch.nn.LSTM, with every variant of the family.

    Equations and flags: `lstmlab.cells.lstm`. Arguments up to proj_size are torch's.
    The keyword-only flags select the cell (left None: as torch's LSTM); `variant` sets
    them by name (see `lstmlab.VARIANTS`): "vanilla", "peephole", "NP", "NIG", "NFG",
    "NOG", "NIAF", "NOAF", "CIFG", "FGR"; a flag given with a variant must agree with it.
    `forget_bias` is added to the forget gate's initial bias.
    `backend`: "auto" (default), "native", "eager", "reference" (see `lstmlab.backends`).

    Shapes (D = 2 if bidirectional else 1, H_out = proj_size or hidden_size):
        input: (T, B, input_size), (B, T, input_size) with batch_first, (T, input_size)
            unbatched, or a PackedSequence.
        hx: (h_0, c_0) with h_0 (L*D, B, H_out), c_0 (L*D, B, hidden_size); FGR adds
            a_0 (L*D, B, n*hidden_size), the previous gate activations. Zeros if None.
        returns: output (T, B, D*H_out) (or as the input is laid out), and (h_n, c_n[, a_n]).

    Example:
        >>> lstm = LSTM(10, 20, num_layers=2, variant="CIFG")
        >>> out, (h, c) = lstm(torch.randn(5, 3, 10))
        >>> out.shape, h.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    _owner = "LSTM"
    _torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        peephole: bool | None = None,
        coupled: bool | None = None,
        input_gate: bool | None = None,
        forget_gate: bool | None = None,
        output_gate: bool | None = None,
        input_activation: str | None = None,
        output_activation: str | None = None,
        gate_recurrence: bool | None = None,
        variant: str | None = None,
        forget_bias: float = 0.0,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        flags = dict(
            peephole=peephole,
            coupled=coupled,
            input_gate=input_gate,
            forget_gate=forget_gate,
            output_gate=output_gate,
            input_activation=input_activation,
            output_activation=output_activation,
            gate_recurrence=gate_recurrence,
        )
        spec = _lstm_spec("LSTM", variant, flags)
        config = _stack_config("LSTM", spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size)
        super().__init__(config, batch_first, backend, _suffixes(num_layers, bidirectional), device, dtype)
        self.variant = variant
        _apply_forget_bias(self, forget_bias)

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, ...] | None = None) -> tuple[Any, tuple[Tensor, ...]]:
        y, final, _ = self._run(input, hx)
        return y, final

    def _torch_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _torch_args(nn.LSTM(1, 1))}

    def _extra_repr_parts(self) -> list[str]:
        return _spec_repr(self.config.spec, LSTMSpec())


class GRU(_FromTorch, _Recurrent):
    """Multi-layer GRU, a drop-in for torch.nn.GRU, with both reset conventions.

    Equations: `lstmlab.cells.gru`. `reset="after"` (default) is torch's GRU,
    `reset="before"` Cho et al. 2014's. Shapes as torch.nn.GRU: input (T, B, input_size)
    (or batch_first, unbatched, packed), hx (L*D, B, hidden_size); returns (output, h_n).

    Example:
        >>> gru = GRU(10, 20, reset="before", batch_first=True)
        >>> out, h = gru(torch.randn(3, 5, 10))
        >>> out.shape
        torch.Size([3, 5, 20])
    """

    _owner = "GRU"
    _torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        reset: str = "after",
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        spec = GRUSpec(reset=reset)
        config = _stack_config("GRU", spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional)
        super().__init__(config, batch_first, backend, _suffixes(num_layers, bidirectional), device, dtype)
        self.reset = reset

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None) -> tuple[Any, Tensor]:
        y, final, _ = self._run(input, hx)
        return y, final[0]

    def _torch_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _torch_args(nn.GRU(1, 1))}

    def _extra_repr_parts(self) -> list[str]:
        return _spec_repr(self.config.spec, GRUSpec())


class RNN(_FromTorch, _Recurrent):
    """Multi-layer Elman RNN, a drop-in for torch.nn.RNN.

    Equation: `lstmlab.cells.rnn`. Shapes as torch.nn.RNN; returns (output, h_n).

    Example:
        >>> rnn = RNN(10, 20, nonlinearity="relu")
        >>> out, h = rnn(torch.randn(5, 10))  # unbatched
        >>> out.shape, h.shape
        (torch.Size([5, 20]), torch.Size([1, 20]))
    """

    _owner = "RNN"
    _torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        spec = RNNSpec(nonlinearity=nonlinearity)
        config = _stack_config("RNN", spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional)
        super().__init__(config, batch_first, backend, _suffixes(num_layers, bidirectional), device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None) -> tuple[Any, Tensor]:
        y, final, _ = self._run(input, hx)
        return y, final[0]

    def _torch_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _torch_args(nn.RNN(1, 1))}

    def _extra_repr_parts(self) -> list[str]:
        return _spec_repr(self.config.spec, RNNSpec())


def _spec_repr(spec: Any, default: Any) -> list[str]:
    return [f"{k}={getattr(spec, k)!r}" for k in spec.__dataclass_fields__ if getattr(spec, k) != getattr(default, k)]


# -- single steps ---------------------------------------------------------------------


class _Cell(_Recurrent):
    """One step of a cell: torch's *Cell signatures, computed by the same backends."""

    def __init__(
        self, spec: CellSpec, input_size: int, hidden_size: int, bias: bool, backend: str, device: Any, dtype: Any
    ) -> None:
        config = _stack_config(self._owner, spec, input_size, hidden_size, 1, bias, 0.0, False)
        super().__init__(config, False, backend, [""], device, dtype)

    def _step(self, input: Tensor, hx: Any) -> tuple[Tensor, ...]:
        owner = self._owner
        like = next(self.parameters())
        self._check_tensor("input", input, like)
        if input.dim() not in (1, 2):
            raise ValueError(f"{owner}: input must be 1-D (input_size,) or 2-D (B, input_size); got {input.dim()}-D")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{owner}: input.size(-1) must equal input_size={self.input_size}; got {x.shape[-1]}")
        if hx is not None:  # the stack's checks expect a leading (layers * directions) axis of 1
            parts = tuple(p.reshape(1, x.shape[0], p.shape[-1]) for p in self._check_cell_state(hx, x.shape[0], batched, like))
            hx = parts if len(parts) > 1 else parts[0]
        state = self._check_state(hx, x.shape[0], True, like)
        backend = backends.resolve(self.backend, self.config, like, owner)
        _, final = backend.run(self.config, x.unsqueeze(0), None, state, self.layer_weights(), self.training)
        return tuple(s[0] if batched else s[0, 0] for s in final)

    def _check_cell_state(self, hx: Any, batch: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        """hx as a tuple of (B, S) tensors ((S,) unbatched), checked."""
        owner, sizes = self._owner, self.config.state_sizes
        names = ("hx",) if len(sizes) == 1 else ("h", "c", "a")[: len(sizes)]
        if len(sizes) == 1:
            parts = (hx,)
        else:  # a tensor is not a tuple of tensors, even one whose first axis has the right length
            if not isinstance(hx, (tuple, list)) or len(hx) != len(sizes):
                raise ValueError(
                    f"{owner}: hx must be a tuple ({', '.join(names)}) of {len(sizes)} tensors; got {type(hx).__name__}"
                    + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
                )
            parts = tuple(hx)
        for name, part, size in zip(names, parts, sizes):
            self._check_tensor(name, part, like)
            expected = ((batch,) if batched else ()) + (size,)
            if tuple(part.shape) != expected:
                raise ValueError(f"{owner}: {name} must have shape {expected}; got {tuple(part.shape)}")
        return parts


class LSTMCell(_FromTorch, _Cell):
    """One LSTM step, a drop-in for torch.nn.LSTMCell, with the flags of `LSTM`.

    input (B, input_size) or (input_size,); hx (h, c) each (B, hidden_size) (FGR: (h, c, a))
    or None; returns (h', c') (FGR: (h', c', a')).

    Example:
        >>> cell = LSTMCell(10, 20, peephole=True)
        >>> h, c = cell(torch.randn(3, 10))
    """

    _owner = "LSTMCell"
    _torch_class = nn.LSTMCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        peephole: bool | None = None,
        coupled: bool | None = None,
        input_gate: bool | None = None,
        forget_gate: bool | None = None,
        output_gate: bool | None = None,
        input_activation: str | None = None,
        output_activation: str | None = None,
        gate_recurrence: bool | None = None,
        variant: str | None = None,
        forget_bias: float = 0.0,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        flags = dict(
            peephole=peephole,
            coupled=coupled,
            input_gate=input_gate,
            forget_gate=forget_gate,
            output_gate=output_gate,
            input_activation=input_activation,
            output_activation=output_activation,
            gate_recurrence=gate_recurrence,
        )
        super().__init__(_lstm_spec("LSTMCell", variant, flags), input_size, hidden_size, bias, backend, device, dtype)
        self.variant = variant
        _apply_forget_bias(self, forget_bias)

    def forward(self, input: Tensor, hx: tuple[Tensor, ...] | None = None) -> tuple[Tensor, ...]:
        return self._step(input, hx)

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}

    def _extra_repr_parts(self) -> list[str]:
        return _spec_repr(self.config.spec, LSTMSpec())


class GRUCell(_FromTorch, _Cell):
    """One GRU step, a drop-in for torch.nn.GRUCell; `reset` as in `GRU`.

    input (B, input_size) or (input_size,); hx (B, hidden_size) or None; returns h'.

    Example:
        >>> h = GRUCell(10, 20)(torch.randn(3, 10))
    """

    _owner = "GRUCell"
    _torch_class = nn.GRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        reset: str = "after",
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        spec = _spec_for("GRUCell", lambda: GRUSpec(reset=reset))
        super().__init__(spec, input_size, hidden_size, bias, backend, device, dtype)
        self.reset = reset

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, hx)[0]

    def _torch_kwargs(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}


class RNNCell(_FromTorch, _Cell):
    """One Elman RNN step, a drop-in for torch.nn.RNNCell.

    input (B, input_size) or (input_size,); hx (B, hidden_size) or None; returns h'.

    Example:
        >>> h = RNNCell(10, 20, nonlinearity="relu")(torch.randn(3, 10))
    """

    _owner = "RNNCell"
    _torch_class = nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        spec = _spec_for("RNNCell", lambda: RNNSpec(nonlinearity=nonlinearity))
        super().__init__(spec, input_size, hidden_size, bias, backend, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, hx)[0]

    def _torch_kwargs(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "bias": self.bias,
            "nonlinearity": self.nonlinearity,
        }
