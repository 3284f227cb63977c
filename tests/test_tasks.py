"""The long-time-lag tasks: shapes, ranges, determinism, baselines and success tests."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lstmlab import tasks
from lstmlab.tasks.base import Batch, Task
from lstmlab.tasks.reber import _GRAMMAR, SYMBOLS, embedded_string

# the tasks of this module (charlm has its own tests)
NAMES = ["adding", "adding-1997", "copy", "temporal-order", "temporal-order-3", "reber", "reber-continual", "long-lag"]
SMALL = {
    "adding": {"seq_len": 20, "eval_size": 2000},
    "adding-1997": {"seq_len": 40, "eval_size": 2000},
    "copy": {"seq_len": 15, "eval_size": 50},
    "temporal-order": {"seq_len": 30, "eval_size": 100},
    "temporal-order-3": {"seq_len": 30, "eval_size": 100},
    "reber": {"eval_size": 64},
    "reber-continual": {"seq_len": 30, "stream_chunks": 3, "eval_size": 4, "eval_len": 300},
    "long-lag": {"seq_len": 12},
}


def make(name: str) -> Task:
    return tasks.get(name, **SMALL[name])


def test_registry_lists_the_tasks_and_rejects_unknown_names_and_options() -> None:
    assert set(NAMES) <= set(tasks.names())
    with pytest.raises(ValueError, match=r"tasks: name must be one of .*; got 'nope'"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="tasks: text does not apply to task 'adding'; its options are seq_len, ") as caught:
        tasks.get("adding", text="x")
    assert (caught.value.owner, caught.value.argument) == ("tasks", "text")
    assert tasks.get("adding", seq_len=7).options() == {"seq_len": 7}


@pytest.mark.parametrize("name", NAMES)
def test_batches_are_a_pure_function_of_seed_and_step(name: str) -> None:
    task, again = make(name), make(name)
    a, b = task.train_batch(3, seed=1), again.train_batch(3, seed=1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    other = task.train_batch(4, seed=1) if name != "long-lag" else task.train_batch(3, seed=2)
    different_seed = task.train_batch(3, seed=2)
    assert not torch.equal(a.inputs, different_seed.inputs) or not torch.equal(a.targets, different_seed.targets)
    assert not (torch.equal(a.inputs, other.inputs) and torch.equal(a.targets, other.targets))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_sizes(name: str) -> None:
    task = make(name)
    batch = task.train_batch(0, seed=0)
    T, B = batch.inputs.shape[:2]
    assert B == 64
    if task.token_inputs:
        assert batch.inputs.dtype == torch.int64 and batch.inputs.dim() == 2
        assert 0 <= int(batch.inputs.min()) and int(batch.inputs.max()) < task.input_size
    else:
        assert batch.inputs.dtype == torch.float32 and batch.inputs.shape[2] == task.input_size
    outputs = torch.randn(T, B, task.output_size, requires_grad=True)
    loss = task.loss(outputs, batch)
    loss.backward()
    assert loss.dim() == 0 and math.isfinite(float(loss.detach())) and outputs.grad is not None


def test_adding_ranges_markers_and_target() -> None:
    task = make("adding")
    batch = task.train_batch(0, seed=0)
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    half = task.seq_len // 2
    assert torch.equal(markers[:half].sum(0), torch.ones(64)) and torch.equal(markers[half:].sum(0), torch.ones(64))
    assert torch.allclose((values * markers).sum(0), batch.targets[:, 0])


def test_adding_1997_lengths_markers_and_target() -> None:
    task = make("adding-1997")
    T = task.seq_len
    batch = task.train_batch(0, seed=0)
    assert batch.lengths is not None and batch.mask is not None
    assert int(batch.lengths.min()) >= T and int(batch.lengths.max()) <= T + T // 10
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    assert values.abs().max() <= 1
    assert torch.equal((markers == 1).sum(0), torch.full((64,), 2))
    marked = (markers == 1).float()
    assert marked[: T // 2 - 1].sum() == marked.sum()  # both markers among the first T/2 - 1 steps
    assert bool((marked[:10].sum(0) >= 1).all())  # one among the first ten
    x_sum = (values * marked).sum(0)
    assert torch.allclose(batch.targets[:, 0], 0.5 + x_sum / 4)
    assert bool((values[~batch.mask] == 0).all())


@pytest.mark.parametrize(
    ("name", "constant", "expected", "tolerance"),
    [("adding", 1.0, 1 / 6, 0.015), ("adding-1997", 0.5, 1 / 24, 0.004)],
)
def test_adding_baselines_are_what_a_constant_scores(name: str, constant: float, expected: float, tolerance: float) -> None:
    task = make(name)
    assert task.baseline == pytest.approx(expected)
    batch = task.eval_batch()
    outputs = torch.full((batch.inputs.shape[0], batch.size, 1), constant)
    assert task.metrics(outputs, batch)["mse"] == pytest.approx(expected, abs=tolerance)


def test_copy_layout_and_baseline() -> None:
    task = make("copy")
    T = task.seq_len
    batch = task.train_batch(0, seed=0)
    x, y = batch.inputs, batch.targets
    assert x.shape == y.shape == (T + 20, 64)
    assert bool(((x[:10] >= 1) & (x[:10] <= 8)).all()) and bool((x[10 : T + 9] == 0).all())
    assert bool((x[T + 9] == 9).all()) and bool((x[T + 10 :] == 0).all())
    assert bool((y[: T + 10] == 0).all()) and torch.equal(y[T + 10 :], x[:10])
    assert task.baseline == pytest.approx(10 * math.log(8) / (T + 20))
    # the memoryless strategy: blanks, then a uniform guess among the 8 symbols
    logits = torch.full((T + 20, 64, 9), -1e9)
    logits[: T + 10, :, 0] = 0
    logits[T + 10 :, :, 1:] = 0
    assert float(task.loss(logits, batch)) == pytest.approx(task.baseline, rel=1e-5)


@pytest.mark.parametrize("name", ["temporal-order", "temporal-order-3"])
def test_temporal_order_layout(name: str) -> None:
    task = make(name)
    batch = task.train_batch(0, seed=0)
    assert batch.lengths is not None
    x = batch.inputs
    columns = torch.arange(64)
    assert bool((x[0] == 0).all()) and bool((x[batch.lengths - 1, columns] == 1).all())  # E first, B last
    relevant = ((x == 6) | (x == 7)).sum(0)
    assert torch.equal(relevant, torch.full((64,), task.relevant))
    assert int(batch.targets.max()) < task.output_size
    # the class is the order of X (6) and Y (7)
    for b in range(8):
        seq = x[: int(batch.lengths[b]), b]
        bits = [int(s) - 6 for s in seq if int(s) in (6, 7)]
        assert int(batch.targets[b]) == int("".join(map(str, bits)), 2)
    assert task.baseline == pytest.approx(math.log(2**task.relevant))


def test_embedded_reber_strings_follow_the_grammar() -> None:
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(200):
        ids, legal = embedded_string(rng)
        text = "".join(SYMBOLS[i] for i in ids)
        assert text[0] == "B" and text[-1] == "E" and text[1] == text[-2] and text[1] in "TP" and text[2] == "B"
        for k in range(len(ids) - 1):
            assert legal[k] >> ids[k + 1] & 1  # the symbol that follows is legal
        assert legal[-1] == 0
        # the inner string is a Reber string
        state, inner = 0, text[2:-2]
        for symbol in inner:
            state = dict(_GRAMMAR[state])[symbol]
        assert state == -1


def test_reber_baseline_is_between_perfect_and_uniform() -> None:
    task = make("reber")
    assert 0.5 < task.baseline < math.log(7)
    cont = make("reber-continual")
    assert 0.5 < cont.baseline < math.log(7)


def test_continual_reber_streams_are_contiguous_and_carry_state() -> None:
    task = make("reber-continual")
    batches = [task.train_batch(step, seed=0) for step in range(4)]
    assert [b.continues for b in batches] == [False, True, True, False]
    for a, b in zip(batches[:2], batches[1:3]):
        assert torch.equal(a.targets[-1], b.inputs[0])
        assert torch.equal(a.inputs[1:], a.targets[:-1])
    # after an inner E comes T or P, after an outer E the next string's B
    x, y = batches[0].inputs, batches[0].targets
    after_e = y[x == SYMBOLS.index("E")]
    assert set(after_e.tolist()) == {SYMBOLS.index(s) for s in "BTP"}


def test_long_lag_sequences() -> None:
    task = make("long-lag")
    p = task.seq_len
    batch = task.train_batch(0, seed=0)
    assert batch.inputs.shape == (p, 64) and task.input_size == p + 1
    first = batch.inputs[0]
    assert bool(((first == p - 1) | (first == p)).all())
    assert torch.equal(batch.targets[-1], first)
    assert torch.equal(batch.inputs[1:, 0], torch.arange(p - 1))
    assert task.baseline == pytest.approx(math.log(2))


# -- success criteria: a perfect predictor passes, a constant one fails ------------------------


def perfect_outputs(task: Task, batch: Batch) -> torch.Tensor:
    T, B = batch.inputs.shape[:2]
    if "legal" in batch.extra:  # grammar tasks: the legal next symbols most active
        return batch.extra["legal"].float() * 10
    if task.name.startswith("adding"):
        out = torch.zeros(T, B, 1)
        last = batch.lengths - 1 if batch.lengths is not None else torch.full((B,), T - 1)
        out[last, torch.arange(B)] = batch.targets
        return out
    if task.name.startswith("temporal-order"):
        out = torch.zeros(T, B, task.output_size)
        out[batch.lengths - 1, torch.arange(B)] = F.one_hot(batch.targets, task.output_size).float() * 20
        return out
    return F.one_hot(batch.targets, task.output_size).float() * 20


@pytest.mark.parametrize("name", NAMES)
def test_a_perfect_predictor_solves_and_a_constant_one_does_not(name: str) -> None:
    task = make(name)
    batch = task.eval_batch()

    def perfect(inputs: torch.Tensor, state: object = None) -> tuple[torch.Tensor, None]:
        assert torch.equal(inputs, batch.inputs)
        return perfect_outputs(task, batch), None

    def constant(inputs: torch.Tensor, state: object = None) -> tuple[torch.Tensor, None]:
        out = torch.zeros(*inputs.shape[:2], task.output_size)
        return out + (0.5 if name.startswith("adding") else 0.0), None

    good, bad = task.evaluate(perfect), task.evaluate(constant)
    assert task.metric in good and "loss" in good
    assert task.solved(good) and not task.solved(bad)
    assert task.better(good[task.metric], bad[task.metric])
