"""The papers' success criteria, each against hand-built outputs just inside and just outside it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmlab import tasks
from lstmlab.tasks.reber import SYMBOLS, first_error


def test_long_lag_needs_the_right_symbol_most_active_at_every_step_of_both_sequences() -> None:
    task = tasks.get("long-lag", seq_len=100)
    batch = task.eval_batch()
    assert batch.inputs.shape == (100, 2) and task.seq_len == 100  # the paper's p
    good = F.one_hot(batch.targets, task.output_size).float()
    assert task.solved(task.metrics(good, batch))
    # the last prediction of the y-sequence says x (a lag of p steps forgotten): not solved
    bad = good.clone()
    bad[-1, 1] = F.one_hot(batch.targets[-1, 0], task.output_size).float()
    metrics = task.metrics(bad, batch)
    assert metrics["sequences_correct"] == 0.5 and not task.solved(metrics)
    # a tie at the last step is not "most active"
    tied = good.clone()
    tied[-1] = 0.0
    tied[-1, :, [task.seq_len - 1, task.seq_len]] = 1.0
    assert not task.solved(task.metrics(tied, batch))


def test_adding_1997_needs_every_absolute_error_below_0_04() -> None:
    task = tasks.get("adding-1997", seq_len=100, eval_size=50)
    batch = task.eval_batch()
    T, B = batch.inputs.shape[:2]
    last = batch.lengths - 1

    def outputs(errors: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(T, B, 1)
        out[last, torch.arange(B)] = batch.targets + errors[:, None]
        return out

    signs = torch.where(torch.arange(B) % 2 == 0, 1.0, -1.0)
    assert task.solved(task.metrics(outputs(0.039 * signs), batch))
    one_off = 0.039 * signs
    one_off[7] = 0.041
    metrics = task.metrics(outputs(one_off), batch)
    assert metrics["accuracy"] == pytest.approx(49 / 50) and not task.solved(metrics)
    # the output at any step but each sequence's own last one is not read
    shifted = torch.zeros(T, B, 1)
    shifted[last - 1, torch.arange(B)] = batch.targets
    assert not task.solved(task.metrics(shifted, batch))


@pytest.mark.parametrize("name, classes", [("temporal-order", 4), ("temporal-order-3", 8)])
def test_temporal_order_needs_every_output_within_0_3_of_its_target(name: str, classes: int) -> None:
    task = tasks.get(name, seq_len=100, eval_size=20)
    batch = task.eval_batch()
    T, B = batch.inputs.shape[:2]

    def with_probability(p_right: float) -> torch.Tensor:
        # softmax gives p_right to the right class and the rest shared equally
        rest = (1 - p_right) / (classes - 1)
        logits = torch.full((B, classes), math.log(rest))
        logits[torch.arange(B), batch.targets] = math.log(p_right)
        out = torch.zeros(T, B, classes)
        out[batch.lengths - 1, torch.arange(B)] = logits
        return out

    inside, outside = task.metrics(with_probability(0.75), batch), task.metrics(with_probability(0.65), batch)
    assert task.solved(inside)  # |1 - 0.75| = 0.25 < 0.3 and every wrong unit below 0.3
    assert outside["accuracy"] == 1.0 and not task.solved(outside)  # right by argmax, but 0.35 from the target


def test_embedded_reber_needs_the_legal_successors_most_active_on_every_string() -> None:
    task = tasks.get("reber", eval_size=256)
    batch = task.eval_batch()
    assert batch.inputs.shape[1] == 256  # the paper's test set
    legal = batch.extra["legal"].float()
    assert task.solved(task.metrics(legal * 5, batch))
    # one string: at the step that must recall T or P, both get the same activation
    bad = legal * 5
    b = 3
    t = int(batch.lengths[b]) - 2  # the input is the inner string's E; the next symbol is the remembered T or P
    assert int(batch.extra["legal"][t, b].sum()) == 1
    bad[t, b, SYMBOLS.index("T")] = bad[t, b, SYMBOLS.index("P")] = 5.0
    metrics = task.metrics(bad, batch)
    assert metrics["strings_correct"] == pytest.approx(255 / 256) and not task.solved(metrics)


def test_first_error_counts_the_symbols_predicted_before_the_first_wrong_one() -> None:
    correct = torch.ones(10, 2, dtype=torch.bool)
    assert first_error(correct) == 10
    correct[7, 0] = False
    correct[4, 1] = False
    assert first_error(correct) == 4


def test_continual_reber_is_judged_on_one_long_unsegmented_stream() -> None:
    task = tasks.get("reber-continual")
    assert (task.eval_size, task.eval_len) == (1, 100_000)  # the paper's test-stream length
    short = tasks.get("reber-continual", eval_len=3000)
    batch = short.eval_batch()
    assert batch.inputs.shape == (3000, 1) and not batch.continues
    legal = batch.extra["legal"].float()

    def predictor(wrong_at: int | None):
        def predict(inputs: torch.Tensor, state: object = None) -> tuple[torch.Tensor, None]:
            out = legal * 5
            if wrong_at is not None:
                out[wrong_at, 0] = 5.0 - out[wrong_at, 0]  # legal and illegal swapped at one symbol
            return out, None

        return predict

    assert short.solved(short.evaluate(predictor(None)))
    late = short.evaluate(predictor(2500))  # right on the first 2,500 symbols only
    assert late["first_error"] == 2500 and not short.solved(late)
    # the same mistake passes a 2,000-symbol criterion, which is why the test stream must be long
    shorter = tasks.get("reber-continual", eval_len=2000)
    assert np.array_equal(shorter.eval_batch().inputs.numpy(), batch.inputs[:2000].numpy())
    assert shorter.solved(shorter.evaluate(lambda inputs, state=None: (legal[:2000] * 5, None)))
