"""How much gradient from the loss at the last step reaches each earlier step.

For a model and a batch, the loss is computed from the output at the last step
only, and the norm of its gradient with respect to the input at step t,
‖∂L/∂x_t‖ (averaged over the batch), is reported against the lag T - 1 - t. In a
tanh RNN it shrinks geometrically with the lag (the vanishing gradient, Hochreiter
1991; Bengio et al. 1994); in an LSTM the cell state's additive path keeps it up.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmlab.models import SequenceModel
from lstmlab.tasks.base import Batch, Task


def gradient_by_lag(model: SequenceModel, task: Task, batch: Batch) -> tuple[list[int], list[float]]:
    """(lags, mean gradient norms) of the task's loss with respect to each step's input.

    Needs float inputs (not token ids); the model's parameters are left untouched.
    """
    if task.token_inputs:
        raise ValueError(f"gradflow: the task must have float inputs; got token inputs ({task.name})")
    was_training = model.training
    model.eval()
    x: Tensor = batch.inputs.clone().requires_grad_(True)
    try:
        outputs, _ = model(x)
        loss = task.loss(outputs, batch)
        (grad,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was_training)
    T = x.shape[0]
    norms = grad.norm(dim=-1).mean(dim=1)  # (T,)
    lags = list(range(T - 1, -1, -1))
    return lags, [float(v) for v in norms]
