"""Drop-in replacements for torch.nn.LSTM, GRU and RNN (and their *Cell), with every
variant of the LSTM family. The equations are in `lstmlab.cells`; the computation
in `lstmlab.backends`; this module owns the parameters, checks arguments and inputs,
and speaks torch's API (shapes, state_dict names, PackedSequence, batch_first,
unbatched input, the attributes torch's modules expose, pickling).

Every attribute a user may set either takes effect at the next forward (`dropout`,
`batch_first`, `backend`, an RNN's `nonlinearity`, a GRU's `reset`) or is refused
with an error (the sizes and switches that fix the parameters' shapes).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmlab import _checks, backends
from lstmlab.backends import StackConfig
from lstmlab.backends.masks import regularise
from lstmlab.backends.onnx_symbolic import OnnxSymbolicBackend
from lstmlab.cells import CellSpec, GRUSpec, LayerWeights, LSTMSpec, RNNSpec, num_gates, torch_mode
from lstmlab.cells.lstm import spec_from_flags
from lstmlab.errors import FixedAttribute, InvalidArgument, LstmlabError, ShapeMismatch, Unsupported, WrongType

State = Tensor | tuple[Tensor, ...]

# LayerWeights field -> torch parameter name stem, in torch's order (then lstmlab's own)
_PARAM_NAMES = {
    "w_ih": "weight_ih",
    "w_hh": "weight_hh",
    "b_ih": "bias_ih",
    "b_hh": "bias_hh",
    "w_hr": "weight_hr",
    "w_ch": "weight_ch",
    "w_gh": "weight_gh",
    "w_ln_ih": "weight_ln_ih",
    "w_ln_hh": "weight_ln_hh",
    "w_ln_c": "weight_ln_c",
    "b_ln_c": "bias_ln_c",
}
_LAYER_NORM_GAINS = ("weight_ln_ih", "weight_ln_hh", "weight_ln_c")  # start at 1 (bias_ln_c at 0)

_ONNX_SYMBOLIC = OnnxSymbolicBackend()

_TORCHSCRIPT = (
    "TorchScript is not supported: export with torch.export.export (dynamic T and B), "
    "lstmlab.export_onnx, or torch.onnx.export(..., dynamo=True)"
)

_SPECS: dict[str, type] = {cls.__name__: cls for cls in (LSTMSpec, GRUSpec, RNNSpec)}


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
    if getattr(spec, "layer_norm", False):
        shapes["w_ln_ih"] = shapes["w_ln_hh"] = (rows,)
        if isinstance(spec, LSTMSpec):
            shapes["w_ln_c"] = shapes["b_ln_c"] = (H,)
    return shapes


def _weight_names(config: StackConfig, suffixes: list[str]) -> list[tuple[str | None, ...]]:
    """Per layer and direction, the attribute name of each LayerWeights field (None where the
    cell has no such parameter): looked up once, as the set of parameters is fixed."""
    present = _layer_shapes(config, config.input_size)
    return [
        tuple(_PARAM_NAMES[field] + suffix if field in present else None for field in LayerWeights._fields) for suffix in suffixes
    ]


def _config_as_data(config: StackConfig) -> dict[str, Any]:
    """`config` as plain data (str, int, float, bool), so a pickled module needs no lstmlab class but its own."""
    data = {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.name != "spec"}
    data["spec"] = {"class": type(config.spec).__name__, **dataclasses.asdict(config.spec)}
    return data


def _config_from_data(data: dict[str, Any]) -> StackConfig:
    spec_data = dict(data["spec"])
    spec = _SPECS[spec_data.pop("class")](**spec_data)
    return StackConfig(spec=spec, **{k: v for k, v in data.items() if k != "spec"})


def _fixed(name: str, doc: str) -> property:
    """An attribute read from the configuration that fixes the parameters' shapes: setting it
    to another value is refused (torch would accept it and fail later, or silently not use it)."""

    def get(self: _Recurrent) -> Any:
        return getattr(self.config, name)

    def set(self: _Recurrent, value: Any) -> None:
        if value != get(self):
            raise FixedAttribute(
                self._owner,
                name,
                f"cannot change after construction (it fixes the parameters' shapes): is {get(self)!r}, "
                f"got {value!r}; build a new module and load the weights that still fit",
            )

    return property(get, set, doc=doc)


class _Recurrent(nn.Module):
    """Parameters, checks and torch's calling conventions, shared by every module here.

    Stacks (LSTM, GRU, RNN) and cells (LSTMCell, ...) differ in the layout of the state
    (cells have no leading layers-times-directions axis) and in torch's wording of its
    errors; both run through `_compute`, one stack of `config` on time-major tensors.
    """

    _owner = "RNN"
    _is_cell = False
    _state_names: tuple[str, ...] = ("h_0", "c_0", "a_0")

    input_size = _fixed("input_size", "Features of the input.")
    hidden_size = _fixed("hidden_size", "Features of the cell (and of h, unless proj_size > 0).")
    num_layers = _fixed("num_layers", "Recurrent layers stacked.")
    bias = _fixed("bias", "Whether the layers have bias_ih and bias_hh.")
    bidirectional = _fixed("bidirectional", "Whether each layer also runs backwards in time.")
    proj_size = _fixed("proj_size", "Features of h after the LSTM's projection (0: no projection).")

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
        self.config = config
        self.batch_first = batch_first
        self._suffixes = suffixes
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise Unsupported(self._owner, "dtype", f"must be a floating-point torch.dtype (float32, float64, ...); got {dtype}")
        factory = {"device": device, "dtype": dtype}
        D = config.num_directions
        for index, suffix in enumerate(suffixes):
            layer = index // D
            layer_input = config.input_size if layer == 0 else D * config.output_size
            for field, shape in _layer_shapes(config, layer_input).items():
                self.register_parameter(_PARAM_NAMES[field] + suffix, nn.Parameter(torch.empty(shape, **factory)))
        self._weight_names = _weight_names(config, suffixes)
        self.reset_parameters()
        self.backend = backend  # an explicit backend that cannot run this cell fails here, not at forward

    # -- the attributes torch's modules expose, each taking effect or refused ---------

    @property
    def dropout(self) -> float:
        """Probability of dropping each output of every layer but the last (training only)."""
        return self.config.dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        self.config = dataclasses.replace(self.config, dropout=_checks.probability(self._owner, "dropout", value))

    @property
    def batch_first(self) -> bool:
        """Whether input and output are (B, T, F) rather than (T, B, F)."""
        return self._batch_first

    @batch_first.setter
    def batch_first(self, value: bool) -> None:
        self._batch_first = _checks.boolean(self._owner, "batch_first", value)

    @property
    def backend(self) -> str:
        """The backend asked for: "auto" or a name of `lstmlab.backends.names()`; see `active_backend`."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if not isinstance(value, str) or value not in backends.names():
            raise InvalidArgument(self._owner, "backend", f"must be one of {', '.join(backends.names())}; got {value!r}")
        if value != "auto":
            backends.resolve(value, self.config, self._like(), self._owner)
        self._backend = value

    @property
    def mode(self) -> str:
        """torch's name of the cell family: "LSTM", "GRU", "RNN_TANH" or "RNN_RELU" (as `nn.RNNBase.mode`)."""
        spec = self.config.spec
        if isinstance(spec, LSTMSpec):
            return "LSTM"
        return "GRU" if isinstance(spec, GRUSpec) else "RNN_" + spec.nonlinearity.upper()

    def _set_spec(self, make: Any) -> None:
        """Replace the cell by `make()` (same parameter shapes), its errors named for this module."""
        self.config = dataclasses.replace(self.config, spec=_spec(self._owner, make))

    # -- parameters ----------------------------------------------------------------

    def reset_parameters(self) -> None:
        """torch's initialisation: uniform in ±1/sqrt(hidden_size); peepholes at zero;
        layer normalisation's gains at one and its bias at zero."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.startswith(_LAYER_NORM_GAINS):
                    param.fill_(1.0)
                elif name.startswith((_PARAM_NAMES["w_ch"], _PARAM_NAMES["b_ln_c"])):
                    param.zero_()
                else:
                    param.uniform_(-bound, bound)

    def layer_weights(self) -> list[LayerWeights]:
        """The parameters of each layer and direction (index layer * D + direction), as the backends take them.

        Reads the attributes at call time, so reparametrisations such as
        `torch.nn.utils.weight_norm` (which replace a parameter by a computed tensor) take effect.
        """
        params = self._parameters  # a dict lookup; getattr (slower) for a name a reparametrisation took out of it
        return [
            LayerWeights(*[None if name is None else params[name] if name in params else getattr(self, name) for name in names])
            for names in self._weight_names
        ]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters of each layer and direction, in torch's order (weight_ih, weight_hh,
        bias_ih, bias_hh, weight_hr), then lstmlab's (weight_ch, weight_gh); as `nn.RNNBase.all_weights`."""
        return [[t for t in weights if t is not None] for weights in self.layer_weights()]

    def flatten_parameters(self) -> None:
        """Does nothing, and is there so that code written for torch's modules runs unchanged.

        torch's version packs the weights into one buffer for cuDNN; lstmlab keeps one tensor
        per parameter on every backend (the native backend lets cuDNN copy them when it needs to).
        """

    def _like(self) -> Tensor:
        """A weight tensor whose dtype and device the inputs must have."""
        name = self._weight_names[0][0]
        return self._parameters[name] if name in self._parameters else getattr(self, name)

    @property
    def active_backend(self) -> str:
        """Name of the backend that runs this module with its parameters' device and dtype:
        for a cell, that of one step; for a stack, that of a sequence (a stack fed one step
        at a time, T = 1, runs as a cell does: see `lstmlab.backends.auto_order`)."""
        steps = 1 if self._is_cell else None
        return backends.resolve(self.backend, self._running_config(), self._like(), self._owner, steps=steps).name

    def _running_config(self) -> StackConfig:
        """`config` as the next forward call runs it: in eval mode without the dropouts, which
        then do nothing, so that a backend without recurrent dropout can run the model."""
        config = self.config
        if self.training or not (config.recurrent_dropout or config.weight_dropout):
            return config
        cached = self.__dict__.get("_evaluation_config")
        if cached is None or cached[0] is not config:
            cached = self.__dict__["_evaluation_config"] = (
                config,
                dataclasses.replace(config, recurrent_dropout=0.0, weight_dropout=0.0),
            )
        return cached[1]

    def _backend_for(self, x: Tensor, steps: int | None) -> backends.Backend:
        """The backend that runs `steps` steps (1 or None: many) of inputs like x: resolved once
        per device, dtype and kind of T, and again after `backend` or `config` change."""
        config, name = self._running_config(), self._backend
        cache = self.__dict__.get("_resolved")
        if cache is None or cache[0] is not config or cache[1] != name:
            cache = self.__dict__["_resolved"] = (config, name, {})
        key = (x.device, x.dtype, steps)
        backend = cache[2].get(key)
        if backend is None:
            backend = cache[2][key] = backends.resolve(name, config, x, self._owner, steps=steps)
        return backend

    # -- TorchScript: refused, with the export paths that work ----------------------------

    def __prepare_scriptable__(self) -> nn.Module:  # torch.jit.script calls it on every submodule first
        raise Unsupported(self._owner, "", f"cannot be compiled by torch.jit.script; {_TORCHSCRIPT}")

    # -- pickling: the configuration travels as plain data ----------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["config"] = _config_as_data(self.config)
        state.pop("_resolved", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if isinstance(state.get("config"), dict):
            state["config"] = _config_from_data(state["config"])
        if "_weight_names" not in state:  # pickled before the names were kept
            state["_weight_names"] = _weight_names(state["config"], state["_suffixes"])
        super().__setstate__(state)

    # -- checks --------------------------------------------------------------------

    def _tensor(self, name: str, t: Any, like: Tensor) -> Tensor:
        """`t`, checked to be a tensor of the parameters' dtype and device (under autocast,
        a floating-point tensor of another dtype is cast to the parameters' and computed in it)."""
        owner = self._owner
        if not isinstance(t, Tensor):
            raise WrongType(owner, name, f"must be a Tensor; got {type(t).__name__}")
        if t.dtype != like.dtype:
            if t.is_floating_point() and torch.is_autocast_enabled(t.device.type):
                return t.to(like.dtype)
            if name.startswith("input"):  # torch's wording, which its tests match
                raise InvalidArgument(
                    owner,
                    name,
                    f"must have the weights' dtype (RNN input dtype {t.dtype} does not match weight dtype {like.dtype}). "
                    f"Convert input: input.to({like.dtype}), or convert model: model.to({t.dtype})",
                )
            raise InvalidArgument(owner, f"{name}.dtype", f"must equal the parameters' dtype={like.dtype}; got {t.dtype}")
        if t.device != like.device:
            raise InvalidArgument(owner, f"{name}.device", f"must equal the parameters' device={like.device}; got {t.device}")
        return t

    def _input_size_error(self, got: int) -> LstmlabError:
        return ShapeMismatch(self._owner, "input.size(-1)", f"must be equal to input_size. Expected {self.input_size}, got {got}")

    def _states(self, hx: Any, batch: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        """hx as a tuple of (L*D, B, S) tensors for a stack, (B, S) for a cell, checked; zeros when hx is None.

        A stack's hx has the leading (layers * directions) axis, a cell's has not; a batched
        input needs a batched state and an unbatched input an unbatched one.
        """
        owner, sizes = self._owner, self.config.state_sizes
        leading = () if self._is_cell else (len(self._suffixes),)
        if hx is None:
            return tuple(like.new_zeros(leading + (batch, size)) for size in sizes)
        single = len(sizes) == 1
        names = ("hx",) if single else self._state_names[: len(sizes)]
        if single:
            if isinstance(hx, (tuple, list)):
                raise WrongType(owner, "hx", f"must be a Tensor; got {type(hx).__name__}")
            parts: tuple[Any, ...] = (hx,)
        else:  # a tensor is not a tuple of tensors, even one whose first axis has the right length
            if not isinstance(hx, (tuple, list)) or len(hx) != len(sizes):
                length = f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else ""
                raise ShapeMismatch(
                    owner, "hx", f"must be a tuple ({', '.join(names)}) of {len(sizes)} tensors; got {type(hx).__name__}{length}"
                )
            parts = tuple(hx)
        prefix = leading + (batch,) if batched else leading
        dtype, device = like.dtype, like.device
        states = []
        for k, part in enumerate(parts):
            if not isinstance(part, Tensor) or part.dtype != dtype or part.device != device:
                part = self._tensor(names[k], part, like)  # refused, or cast under autocast
            if part.shape != (*prefix, sizes[k]):
                raise self._state_shape_error(k, names[k], tuple(part.shape), (*prefix, sizes[k]), batch, batched, single)
            states.append(part if batched else part.unsqueeze(-2))
        return tuple(states)

    def _state_shape_error(
        self, k: int, name: str, shape: tuple[int, ...], expected: tuple[int, ...], batch: int, batched: bool, single: bool
    ) -> LstmlabError:
        return ShapeMismatch(self._owner, name, f"must have shape {expected}; got {shape}")

    def _check_packed(self, packed: PackedSequence) -> None:
        owner = self._owner
        sizes = packed.batch_sizes
        if sizes.dim() != 1 or len(sizes) == 0 or bool((sizes <= 0).any()) or bool((sizes[1:] > sizes[:-1]).any()):
            raise InvalidArgument(
                owner,
                "input.batch_sizes",
                f"(of a PackedSequence) must be positive and non-increasing (lengths in [1, T]); got {sizes.tolist()}",
            )
        if int(sizes.sum()) != packed.data.shape[0]:
            raise ShapeMismatch(
                owner,
                "input.batch_sizes",
                f"(of a PackedSequence) must sum to data.size(0)={packed.data.shape[0]}; got {int(sizes.sum())}",
            )

    # -- the computation -----------------------------------------------------------

    def _compute(self, x: Tensor, lengths: Tensor | None, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run the stack on time-major x (T, B, I) from state (each (L*D, B, S)).

        T = 0 returns an empty output and a copy of the initial state: zero steps change nothing,
        and, as for T > 0, the state returned is a new tensor, never the caller's `hx`.
        (torch raises for T = 0; a caller that streams chunks may well send an empty one.)
        """
        if torch.jit.is_tracing():  # a trace would fix T and the backend's control flow
            raise Unsupported(self._owner, "", f"cannot be traced by torch.jit.trace; {_TORCHSCRIPT}")
        if x.shape[0] == 0:
            empty = x.new_zeros(0, x.shape[1], self.config.num_directions * self.config.output_size)
            return empty, tuple(part.clone() for part in state)
        # under torch.onnx.export, each layer as ONNX's own operator, whatever the backend
        # (is_exporting first: 0.1 us, where is_in_onnx_export alone costs 3 us a call)
        if torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export():
            backend: backends.Backend = _ONNX_SYMBOLIC
        else:
            backend = self._backend_for(x, 1 if x.shape[0] == 1 else None)
        config, weights, masks = self._running_config(), self.layer_weights(), None
        if config.regularised:
            weights, masks = regularise(config, weights, x.shape[0], x.shape[1], self.training)
        # Under autocast every backend computes in the parameters' dtype: one behaviour everywhere
        # (oneDNN's LSTM, for one, fails on the mixed dtypes autocast would hand it).
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return backend.run(config, x, lengths, state, weights, self.training, masks)
        return backend.run(config, x, lengths, state, weights, self.training, masks)

    def _run(self, input: Any, hx: Any) -> tuple[Any, tuple[Tensor, ...]]:
        """A stack's forward: check, convert to time-major padded form, compute, convert back."""
        owner = self._owner
        like = self._like()
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            self._check_packed(input)
            data = self._tensor("input.data", input.data, like)
            if data.dim() != 2:
                raise ShapeMismatch(owner, "input.data", f"(of a PackedSequence) must be 2-D; got {data.dim()}-D")
            x, lengths = pad_packed_sequence(input._replace(data=data))
            batched = True
        else:
            if not isinstance(input, Tensor) or input.dtype != like.dtype or input.device != like.device:
                input = self._tensor("input", input, like)  # refused, or cast under autocast
            if input.dim() not in (2, 3):
                raise ShapeMismatch(
                    owner,
                    "input",
                    "must be 2-D (T, input_size) or 3-D (T, B, input_size) "
                    f"(batch_first: (B, T, input_size)); got {input.dim()}-D",
                )
            batched = input.dim() == 3
            x = input if not batched else (input.transpose(0, 1) if self.batch_first else input)
            if not batched:
                x = x.unsqueeze(1)
        if x.shape[-1] != self.input_size:
            raise self._input_size_error(x.shape[-1])
        state = self._states(hx, x.shape[1], batched, like)
        y, final = self._compute(x, lengths, state)
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
        return y, final

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        # torch's order and defaults, so a module torch has prints as torch prints it
        defaults = {"proj_size": 0, "num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}
        parts += [f"{k}={getattr(self, k)}" for k in self._repr_fields(defaults) if getattr(self, k) != defaults[k]]
        spec = self.config.spec
        parts += [f"{k}={getattr(spec, k)!r}" for k in spec.__dataclass_fields__ if getattr(spec, k) != getattr(type(spec)(), k)]
        parts += [
            f"{k}={getattr(self, k)!r}" for k, fields in _REGULARISERS.items() if any(getattr(self.config, f) for f in fields)
        ]
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)

    def _repr_fields(self, defaults: dict[str, Any]) -> list[str]:
        return list(defaults)


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
    *,
    cell: bool = False,
) -> StackConfig:
    """Check the constructor arguments every module shares; warn as torch does.

    Cells accept hidden_size = 0, as torch's cells do (its stacks refuse it).
    """
    _checks.positive_int(owner, "input_size", input_size)
    (_checks.non_negative_int if cell else _checks.positive_int)(owner, "hidden_size", hidden_size)
    _checks.positive_int(owner, "num_layers", num_layers)
    _checks.boolean(owner, "bias", bias)
    dropout = _checks.probability(owner, "dropout", dropout)
    _checks.boolean(owner, "bidirectional", bidirectional)
    _checks.non_negative_int(owner, "proj_size", proj_size)
    if proj_size and not isinstance(spec, LSTMSpec):  # torch's wording
        raise InvalidArgument(owner, "proj_size", f"argument is only supported for LSTM, not RNN or GRU; got {proj_size}")
    if proj_size and proj_size >= hidden_size:
        raise InvalidArgument(owner, "proj_size", f"must be smaller than hidden_size={hidden_size}; got {proj_size}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            f"{owner}: dropout={dropout} applies between layers only, so it does nothing with num_layers=1",
            UserWarning,
            stacklevel=4,
        )
    return StackConfig(spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size)


# module attribute -> the StackConfig fields it sets (`lstmlab.cells.regularisers`)
_REGULARISERS = {
    "zoneout": ("zoneout_h", "zoneout_c"),
    "recurrent_dropout": ("recurrent_dropout",),
    "weight_dropout": ("weight_dropout",),
}


def _with_regularisers(owner: str, config: StackConfig, **values: Any) -> StackConfig:
    """`config` with the regularisers in `values` (module attribute names) checked and set."""
    fields: dict[str, float] = {}
    for name, value in values.items():
        if name != "zoneout":
            fields[name] = _checks.probability(owner, name, value)
        elif isinstance(config.spec, LSTMSpec) and isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise InvalidArgument(owner, "zoneout", f"must be a probability or a pair (z_c, z_h) of them; got {value!r}")
            fields["zoneout_c"] = _checks.probability(owner, "zoneout[0] (z_c)", value[0])
            fields["zoneout_h"] = _checks.probability(owner, "zoneout[1] (z_h)", value[1])
        else:
            z = _checks.probability(owner, "zoneout", value)
            fields["zoneout_h"], fields["zoneout_c"] = z, (z if isinstance(config.spec, LSTMSpec) else 0.0)
    return dataclasses.replace(config, **fields)


class _Regularised:
    """Zoneout, recurrent dropout and weight dropout (`lstmlab.cells.regularisers`) as
    attributes of a stack: set at construction or any time later (none changes a parameter);
    `layer_norm`, which adds parameters, readable and fixed."""

    _owner: str
    config: StackConfig
    backend: str

    def _set_regularisers(self, **values: Any) -> None:
        config = _with_regularisers(self._owner, self.config, **values)
        if self.backend != "auto":  # an explicit backend that cannot run them is refused now, not at forward
            backends.resolve(self.backend, config, self._like(), self._owner)  # type: ignore[attr-defined]
        self.config = config

    @property
    def zoneout(self) -> float | tuple[float, float]:
        """Zoneout probability: the LSTM's (z_c, z_h), or one float where they are equal (the GRU's z_h)."""
        config = self.config
        if config.zoneout_c == config.zoneout_h or not isinstance(config.spec, LSTMSpec):
            return config.zoneout_h
        return (config.zoneout_c, config.zoneout_h)

    @zoneout.setter
    def zoneout(self, value: float | tuple[float, float]) -> None:
        self._set_regularisers(zoneout=value)

    @property
    def recurrent_dropout(self) -> float:
        """Probability of dropping each unit of h in the recurrent products, one mask per sequence."""
        return self.config.recurrent_dropout

    @recurrent_dropout.setter
    def recurrent_dropout(self, value: float) -> None:
        self._set_regularisers(recurrent_dropout=value)

    @property
    def weight_dropout(self) -> float:
        """Probability of dropping each entry of weight_hh (DropConnect), one mask per forward call."""
        return self.config.weight_dropout

    @weight_dropout.setter
    def weight_dropout(self, value: float) -> None:
        self._set_regularisers(weight_dropout=value)

    @property
    def layer_norm(self) -> bool:
        """Whether the cell normalises its pre-activations (`lstmlab.cells.layer_norm`); fixed at
        construction, as it adds parameters."""
        return self.config.spec.layer_norm  # type: ignore[union-attr]

    @layer_norm.setter
    def layer_norm(self, value: bool) -> None:
        if value != self.layer_norm:
            raise FixedAttribute(
                self._owner,
                "layer_norm",
                f"cannot change after construction (it adds or removes parameters): is {self.layer_norm!r}, got {value!r}; "
                "build a new module and load the weights that still fit",
            )


def _suffixes(num_layers: int, bidirectional: bool) -> list[str]:
    directions = ("", "_reverse") if bidirectional else ("",)
    return [f"_l{layer}{direction}" for layer in range(num_layers) for direction in directions]


_LSTM_FLAGS = (
    "peephole",
    "coupled",
    "input_gate",
    "forget_gate",
    "output_gate",
    "input_activation",
    "output_activation",
    "gate_recurrence",
)


def _lstm_spec(owner: str, variant: str | None, arguments: dict[str, Any]) -> LSTMSpec:
    """The cell the flags among `arguments` and `variant` give; a flag left None is not given
    (torch's LSTM, or the variant's)."""
    given = {name: arguments[name] for name in _LSTM_FLAGS if arguments[name] is not None}
    for name in ("peephole", "coupled", "input_gate", "forget_gate", "output_gate", "gate_recurrence"):
        if name in given:
            _checks.boolean(owner, name, given[name])
    try:
        return spec_from_flags(variant, **given)
    except LstmlabError as error:
        raise error.relabel(owner=owner) from None


def _apply_forget_bias(module: _Recurrent, forget_bias: float) -> None:
    """Add `forget_bias` to the forget gate's block of every bias_ih."""
    owner, spec = module._owner, module.config.spec
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) or not math.isfinite(forget_bias):
        raise InvalidArgument(owner, "forget_bias", f"must be a finite number; got {forget_bias!r}")
    if forget_bias == 0:
        return
    assert isinstance(spec, LSTMSpec)
    if "f" not in spec.gates:
        raise InvalidArgument(owner, "forget_bias", f"needs a forget gate with its own weights; this cell has gates {spec.gates}")
    if not module.bias:
        raise InvalidArgument(owner, "forget_bias", "needs bias=True; got bias=False")
    k, H = spec.gates.index("f"), module.hidden_size
    with torch.no_grad():
        for suffix in module._suffixes:
            getattr(module, "bias_ih" + suffix)[k * H : (k + 1) * H] += forget_bias


class _FromTorch:
    """from_torch / to_torch for the modules whose configuration torch has."""

    _torch_class: type[nn.Module]
    _torch_args: tuple[str, ...]

    @classmethod
    def from_torch(cls, module: nn.Module, **kwargs: Any) -> Any:
        """A copy of the torch module `module`, parameters included.

        kwargs are lstmlab's own arguments (e.g. backend="fused"); one that changes the
        parameters' shapes (a variant with peepholes, fewer gates) cannot take torch's weights
        and is refused.
        """
        name = f"{cls.__name__}.from_torch"
        if not isinstance(module, cls._torch_class):
            raise WrongType(name, "module", f"must be a {cls._torch_class.__name__}; got {type(module).__name__}")
        args = {arg: getattr(module, arg) for arg in cls._torch_args}
        first = next(module.parameters())
        ours = cls(**args, **kwargs, device=first.device, dtype=first.dtype)
        theirs = module.state_dict()
        shapes = [{name: tuple(t.shape) for name, t in sd.items()} for sd in (theirs, ours.state_dict())]
        differ = sorted(name for name in shapes[0].keys() | shapes[1].keys() if shapes[0].get(name) != shapes[1].get(name))
        if differ:
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise InvalidArgument(
                name,
                given or "module",
                f"gives parameters that torch's {type(module).__name__} lacks or shapes it does not have "
                f"({', '.join(differ)}); from_torch copies torch's cell as it is",
            )
        ours.load_state_dict(theirs)
        ours.train(module.training)
        return ours

    def to_torch(self) -> nn.Module:
        """The equivalent torch module, parameters copied; raises if torch has no such cell."""
        owner = self._owner  # type: ignore[attr-defined]
        config: StackConfig = self.config  # type: ignore[attr-defined]
        if torch_mode(config.spec) is None:
            raise Unsupported(f"{owner}.to_torch", "", f"torch has no equivalent of this cell ({config.spec})")
        if config.regularised:
            used = ", ".join(
                f"{k}={getattr(self, k)!r}" for k, fields in _REGULARISERS.items() if any(getattr(config, f) for f in fields)
            )
            raise Unsupported(f"{owner}.to_torch", "", f"torch's module has no {used}; set them to 0 first")
        first = self._like()  # type: ignore[attr-defined]
        kwargs = {arg: getattr(self, arg) for arg in self._torch_args}
        theirs = self._torch_class(**kwargs, device=first.device, dtype=first.dtype)
        theirs.load_state_dict(self.state_dict())  # type: ignore[attr-defined]
        theirs.train(self.training)  # type: ignore[attr-defined]
        return theirs


_STACK_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")


class LSTM(_FromTorch, _Regularised, _Recurrent):
    """Multi-layer LSTM, a drop-in for torch.nn.LSTM, with every variant of the family.

    Equations and flags: `lstmlab.cells.lstm`. Arguments up to proj_size are torch's.
    The keyword-only flags select the cell (left None: as torch's LSTM); `variant` sets
    them by name (see `lstmlab.VARIANTS`): "vanilla", "peephole", "NP", "NIG", "NFG",
    "NOG", "NIAF", "NOAF", "CIFG", "FGR"; a flag given with a variant must agree with it.
    `forget_bias` is added to the forget gate's initial bias.
    Regularisers (`lstmlab.cells.regularisers`, `lstmlab.cells.layer_norm`): `zoneout`
    (a probability for both c and h, or a pair (z_c, z_h)), `recurrent_dropout` (one mask
    per sequence on h in the recurrent products), `weight_dropout` (DropConnect on
    weight_hh, one mask per forward call), settable later; `layer_norm=True` normalises the
    gate pre-activations and the cell state (adds weight_ln_ih, weight_ln_hh, weight_ln_c,
    bias_ln_c per layer and direction).
    `backend` (see `lstmlab.backends`): "auto" (default: the fastest that runs the
    configuration, from measurements), "fused" (C++ CPU kernels), "native" (torch's own
    kernels; torch's LSTM only), "triton" (GPU kernels; CUDA, or the CPU under
    TRITON_INTERPRET=1), "eager" (per-step torch ops; any device), "reference" (NumPy,
    float64, hand-written BPTT). Settable later, as are `dropout` and `batch_first`.

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
    _torch_args = (*_STACK_ARGS, "proj_size")

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
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        layer_norm: bool = False,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        spec = dataclasses.replace(
            _lstm_spec("LSTM", variant, locals()), layer_norm=_checks.boolean("LSTM", "layer_norm", layer_norm)
        )
        config = _stack_config("LSTM", spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size)
        config = _with_regularisers(
            "LSTM", config, zoneout=zoneout, recurrent_dropout=recurrent_dropout, weight_dropout=weight_dropout
        )
        super().__init__(config, batch_first, backend, _suffixes(num_layers, bidirectional), device, dtype)
        self._variant = variant
        _apply_forget_bias(self, forget_bias)

    @property
    def variant(self) -> str | None:
        """The variant name given to the constructor, or None."""
        return self._variant

    @variant.setter
    def variant(self, value: str | None) -> None:
        if value != self._variant:
            raise FixedAttribute(self._owner, "variant", f"cannot change after construction: is {self._variant!r}, got {value!r}")

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, ...] | None = None) -> tuple[Any, tuple[Tensor, ...]]:
        return self._run(input, hx)


class GRU(_FromTorch, _Regularised, _Recurrent):
    """Multi-layer GRU, a drop-in for torch.nn.GRU, with both reset conventions.

    Equations: `lstmlab.cells.gru`. `reset="after"` (default) is torch's GRU,
    `reset="before"` Cho et al. 2014's (settable later: both have the same parameters).
    Shapes as torch.nn.GRU: input (T, B, input_size) (or batch_first, unbatched, packed),
    hx (L*D, B, hidden_size); returns (output, h_n). `proj_size` exists for torch's
    signature and must be 0. `backend`, `recurrent_dropout`, `weight_dropout` and
    `layer_norm` (reset="after" only) as in `LSTM`; `zoneout` is one probability (h).

    Example:
        >>> gru = GRU(10, 20, reset="before", batch_first=True)
        >>> out, h = gru(torch.randn(3, 5, 10))
        >>> out.shape
        torch.Size([3, 5, 20])
    """

    _owner = "GRU"
    _torch_class = nn.GRU
    _torch_args = _STACK_ARGS
    _state_names = ("hx",)

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
        reset: str = "after",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        layer_norm: bool = False,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _checks.boolean("GRU", "layer_norm", layer_norm)
        spec = _spec("GRU", lambda: GRUSpec(reset=reset, layer_norm=layer_norm))
        config = _stack_config("GRU", spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size)
        config = _with_regularisers(
            "GRU", config, zoneout=zoneout, recurrent_dropout=recurrent_dropout, weight_dropout=weight_dropout
        )
        super().__init__(config, batch_first, backend, _suffixes(num_layers, bidirectional), device, dtype)

    @property
    def reset(self) -> str:
        """Where the reset gate acts: "after" the recurrent product (torch) or "before" it (Cho et al. 2014)."""
        return self.config.spec.reset

    @reset.setter
    def reset(self, value: str) -> None:
        self._set_spec(lambda: GRUSpec(reset=value, layer_norm=self.config.spec.layer_norm))

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None) -> tuple[Any, Tensor]:
        y, final = self._run(input, hx)
        return y, final[0]


class RNN(_FromTorch, _Recurrent):
    """Multi-layer Elman RNN, a drop-in for torch.nn.RNN.

    Equation: `lstmlab.cells.rnn`. Shapes as torch.nn.RNN; returns (output, h_n).
    `nonlinearity` is settable later; `proj_size` exists for torch's signature and must
    be 0. `backend` as in `LSTM`.

    Example:
        >>> rnn = RNN(10, 20, nonlinearity="relu")
        >>> out, h = rnn(torch.randn(5, 10))  # unbatched
        >>> out.shape, h.shape
        (torch.Size([5, 20]), torch.Size([1, 20]))
    """

    _owner = "RNN"
    _torch_class = nn.RNN
    _torch_args = (*_STACK_ARGS, "nonlinearity")
    _state_names = ("hx",)

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
        proj_size: int = 0,
        *,
        backend: str = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        spec = _spec("RNN", lambda: RNNSpec(nonlinearity=nonlinearity))
        config = _stack_config("RNN", spec, input_size, hidden_size, num_layers, bias, dropout, bidirectional, proj_size)
        super().__init__(config, batch_first, backend, _suffixes(num_layers, bidirectional), device, dtype)

    @property
    def nonlinearity(self) -> str:
        """The activation: "tanh" or "relu"."""
        return self.config.spec.nonlinearity

    @nonlinearity.setter
    def nonlinearity(self, value: str) -> None:
        self._set_spec(lambda: RNNSpec(nonlinearity=value))

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None) -> tuple[Any, Tensor]:
        y, final = self._run(input, hx)
        return y, final[0]


def _spec(owner: str, make: Any) -> Any:
    """`make()`, with an error of the cell spec ("GRU: reset must ...") named for `owner`."""
    try:
        return make()
    except LstmlabError as error:
        raise error.relabel(owner=owner) from None


# -- single steps ---------------------------------------------------------------------


class _Cell(_Recurrent):
    """One step of a cell: torch's *Cell signatures and error wording, computed by the same backends."""

    _is_cell = True
    _state_names = ("h", "c", "a")

    def __init__(
        self, spec: CellSpec, input_size: int, hidden_size: int, bias: bool, backend: str, device: Any, dtype: Any
    ) -> None:
        config = _stack_config(self._owner, spec, input_size, hidden_size, 1, bias, 0.0, False, cell=True)
        super().__init__(config, False, backend, [""], device, dtype)

    def _step(self, input: Any, hx: Any) -> tuple[Tensor, ...]:
        """One step, checked as torch's cells check it, run by the backend's `step` (a per-call
        cost of a few microseconds above the backend's: it is the whole cost at small sizes)."""
        (weights,) = self.layer_weights()
        like = weights.w_ih
        if not isinstance(input, Tensor) or input.dtype != like.dtype or input.device != like.device:
            input = self._tensor("input", input, like)  # refused, or cast under autocast
        rank = input.dim()
        if rank != 2 and rank != 1:
            raise ShapeMismatch(
                self._owner,
                "input",
                f"must be 1-D (input_size,) or 2-D (B, input_size); got {rank}-D "
                f"(Expected input to be 1D or 2D, got {rank}D instead)",
            )
        batched = rank == 2
        x = input if batched else input.unsqueeze(0)
        config = self.config
        if x.shape[1] != config.input_size:
            raise self._input_size_error(x.shape[1])
        state = self._states(hx, x.shape[0], batched, like)
        if torch.jit.is_tracing() or torch.compiler.is_exporting():  # as a sequence: refused, or ONNX's operators
            _, final = self._compute(x.unsqueeze(0), None, tuple(s.unsqueeze(0) for s in state))
            return tuple(s[0] for s in final) if batched else tuple(s[0, 0] for s in final)
        backend = self._backend_for(x, 1)
        if torch.is_autocast_enabled(like.device.type):  # computed in the parameters' dtype, as `_compute`
            with torch.autocast(x.device.type, enabled=False):
                final = backend.step(config, x, state, weights, self.training)
        else:
            final = backend.step(config, x, state, weights, self.training)
        return final if batched else tuple(s[0] for s in final)

    def _input_size_error(self, got: int) -> LstmlabError:  # torch's cells' wording
        return ShapeMismatch(self._owner, "input", f"has inconsistent input_size: got {got} expected {self.input_size}")

    def _state_shape_error(
        self, k: int, name: str, shape: tuple[int, ...], expected: tuple[int, ...], batch: int, batched: bool, single: bool
    ) -> LstmlabError:
        owner, torch_name = self._owner, f"hidden{k}"
        if len(shape) not in (1, 2):
            label = "hidden" if single else f"hx[{k}]"
            rank = len(shape)
            detail = f"must be 1-D or 2-D; got {rank}-D (Expected {label} to be 1D or 2D, got {rank}D instead)"
            return ShapeMismatch(owner, name, detail)
        if batched and len(shape) == 2 and shape[0] != batch:
            return ShapeMismatch(owner, "Input", f"batch size {batch} doesn't match {torch_name} batch size {shape[0]} ({name})")
        if len(shape) == len(expected) and shape[-1] != expected[-1]:
            return ShapeMismatch(
                owner, torch_name, f"has inconsistent hidden_size: got {shape[-1]}, expected {expected[-1]} ({name})"
            )
        return ShapeMismatch(owner, name, f"must have shape {expected}; got {shape}")

    def _repr_fields(self, defaults: dict[str, Any]) -> list[str]:
        return ["bias"]


class LSTMCell(_FromTorch, _Cell):
    """One LSTM step, a drop-in for torch.nn.LSTMCell, with the flags of `LSTM`.

    input (B, input_size) or (input_size,); hx (h, c) each (B, hidden_size) (FGR: (h, c, a))
    or None; returns (h', c') (FGR: (h', c', a')). `backend` as in `LSTM`.

    Example:
        >>> cell = LSTMCell(10, 20, peephole=True)
        >>> h, c = cell(torch.randn(3, 10))
    """

    _owner = "LSTMCell"
    _torch_class = nn.LSTMCell
    _torch_args = ("input_size", "hidden_size", "bias")

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
        spec = _lstm_spec("LSTMCell", variant, locals())
        super().__init__(spec, input_size, hidden_size, bias, backend, device, dtype)
        self._variant = variant
        _apply_forget_bias(self, forget_bias)

    variant = LSTM.variant

    def forward(self, input: Tensor, hx: tuple[Tensor, ...] | None = None) -> tuple[Tensor, ...]:
        return self._step(input, hx)


class GRUCell(_FromTorch, _Cell):
    """One GRU step, a drop-in for torch.nn.GRUCell; `reset` as in `GRU`.

    input (B, input_size) or (input_size,); hx (B, hidden_size) or None; returns h'.

    Example:
        >>> h = GRUCell(10, 20)(torch.randn(3, 10))
    """

    _owner = "GRUCell"
    _torch_class = nn.GRUCell
    _torch_args = ("input_size", "hidden_size", "bias")

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
        spec = _spec("GRUCell", lambda: GRUSpec(reset=reset))
        super().__init__(spec, input_size, hidden_size, bias, backend, device, dtype)

    reset = GRU.reset

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, hx)[0]


class RNNCell(_FromTorch, _Cell):
    """One Elman RNN step, a drop-in for torch.nn.RNNCell.

    input (B, input_size) or (input_size,); hx (B, hidden_size) or None; returns h'.

    Example:
        >>> h = RNNCell(10, 20, nonlinearity="relu")(torch.randn(3, 10))
    """

    _owner = "RNNCell"
    _torch_class = nn.RNNCell
    _torch_args = ("input_size", "hidden_size", "bias", "nonlinearity")

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
        spec = _spec("RNNCell", lambda: RNNSpec(nonlinearity=nonlinearity))
        super().__init__(spec, input_size, hidden_size, bias, backend, device, dtype)

    nonlinearity = RNN.nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, hx)[0]
