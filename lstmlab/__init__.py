"""lstmlab: the LSTM family for PyTorch.

Drop-in modules for torch.nn.LSTM, GRU and RNN (and their cells), with the peephole
LSTM, the coupled input-forget gate LSTM, the GRU with reset before the product and
every variant of Greff et al. 2015. Equations: `lstmlab.cells`; NumPy reference with
hand-written backpropagation through time: `lstmlab.reference`; backends:
`lstmlab.backends`. Deploying: `load` (a trained run) and `export_onnx`;
`torch.onnx.export` of the modules works as well (`lstmlab.backends.onnx_symbolic`).
"""

from lstmlab.cells import VARIANTS as _VARIANT_FLAGS
from lstmlab.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from lstmlab.onnx_export import export_onnx
from lstmlab.runs import Run, load

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it from here

VARIANTS: dict[str, str] = {name: description for name, (_, description) in _VARIANT_FLAGS.items()}
"""LSTM variant names accepted by `LSTM(variant=...)`, with one-line descriptions."""

__all__ = [
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "VARIANTS",
    "Run",
    "__version__",
    "export_onnx",
    "load",
]
