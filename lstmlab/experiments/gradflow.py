"""How much gradient from the loss at the last step reaches each earlier step.

For a model and a batch, the loss is computed from the output at the last step
only, and the norm of its gradient with respect to the input at step t,
‖∂L/∂x_t‖ (averaged over the batch), is reported against the lag T - 1 - t. In a
tanh RNN it shrinks geometrically with the lag (the vanishing gradient, Hochreiter
1991; Bengio et al. 1994); in an LSTM the cell state's additive path keeps it up.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from lstmlab.errors import InvalidArgument
from lstmlab.models import SequenceModel
from lstmlab.tasks.base import Batch, Task


def gradient_by_lag(model: SequenceModel, task: Task, batch: Batch) -> tuple[list[int], list[float]]:
    """(lags, mean gradient norms) of the task's loss with respect to each step's input.

    Needs float inputs (not token ids). Computed in float64 on a CPU copy of the model,
    so that gradients far below float32's range still show; the model is untouched.
    """
    if task.token_inputs:
        raise InvalidArgument("gradflow", "task", f"must have float inputs; got {task.name!r}, whose inputs are token ids")
    probe = copy.deepcopy(model).cpu().double().eval()
    x: Tensor = batch.inputs.double().requires_grad_(True)
    outputs, _ = probe(x)
    loss = task.loss(outputs, Batch(x, batch.targets.double(), batch.mask, batch.lengths, batch.continues, batch.extra))
    (grad,) = torch.autograd.grad(loss, x)
    T = x.shape[0]
    norms = grad.norm(dim=-1).mean(dim=1)  # (T,)
    lags = list(range(T - 1, -1, -1))
    return lags, [float(v) for v in norms]
