"""The character-level language model: corpus, vocabulary, contiguous batches with the
state carried, sampling, errors, and train -> sample -> inspect end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmlab import tasks
from lstmlab.charlm.corpus import Streams, Vocabulary, default_text, minimum_length, split
from lstmlab.charlm.sampling import generate, next_distribution
from lstmlab.charlm.task import CharLM
from lstmlab.cli import main
from lstmlab.models import CELLS
from lstmlab.train import TrainConfig, Trainer, load_run

PLAY = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo? (Deny thy father.)\n\n"
    "MERCUTIO:\nA plague o' both your houses! \"They have made worms' meat of me.\"\n\n"
)


@pytest.fixture(scope="module")
def play(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "play.txt"
    path.write_text(PLAY * 12, encoding="utf-8")
    return path


def tiny(play: Path, **overrides) -> TrainConfig:
    values = dict(
        task="charlm",
        task_options={"text": str(play), "seq_len": 16, "batch_size": 4},
        cell="lstm",
        hidden=16,
        layers=2,
        steps=4,
        eval_every=2,
        log_every=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


# -- vocabulary and corpus -------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_vocabulary_round_trip(text: str) -> None:
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    assert list(vocab.chars) == sorted(set(text))


def test_vocabulary_names_unknown_characters() -> None:
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(ValueError, match=r"prime must use only characters.*got 2 others: 'x', 'é'$"):
        vocab.encode("axbé", argument="prime")
    with pytest.raises(ValueError, match=r"got 1 other: 'x'$"):
        vocab.encode("axxa", argument="prime")


def test_default_corpus_comes_with_python() -> None:
    text = default_text()
    assert len(text) > 100_000
    task = CharLM()
    assert task.input_size == task.output_size == len(set(text))
    assert "pydoc_data" in task.source


def test_split_is_90_10_and_in_order() -> None:
    ids = torch.arange(1000)
    train, valid = split(ids)
    assert len(train) == 900 and len(valid) == 100
    assert torch.equal(torch.cat([train, valid]), ids)


# -- batches -----------------------------------------------------------------------


@pytest.mark.parametrize("drop_last", [True, False])
def test_batches_are_contiguous_streams(drop_last: bool) -> None:
    ids = torch.arange(1007)  # 4 rows of 251 inputs: 25 full chunks of 10 and one of 1
    streams = Streams(ids, batch_size=4, seq_len=10, drop_last=drop_last)
    width = 250 if drop_last else 251
    assert len(streams) == (25 if drop_last else 26)
    rows = torch.cat([x for x, _ in streams], dim=1)
    targets = torch.cat([y for _, y in streams], dim=1)
    assert rows.shape == (4, width)
    assert torch.equal(targets, rows + 1)
    # each row is one unbroken run of the text, and batch k+1 starts where batch k ended
    assert torch.equal(rows, rows[:, :1] + torch.arange(width))
    assert torch.equal(rows[:, 0], torch.arange(4) * 251)
    assert streams.num_chars == 4 * width


def test_task_batches_are_time_major_and_say_when_they_continue(play: Path) -> None:
    task = tasks.get("charlm", text=str(play), seq_len=16, batch_size=4)
    train, _ = task.streams()
    batches = [task.train_batch(step, seed=0) for step in range(len(train) + 2)]
    assert batches[0].inputs.shape == (16, 4) and batches[0].targets.shape == (16, 4)
    assert [b.continues for b in batches] == [False] + [True] * (len(train) - 1) + [False, True]
    for before, after in zip(batches, batches[1 : len(train)]):
        # the next chunk of stream b follows the last character of this one
        assert torch.equal(after.inputs[0], before.targets[-1])
    # the next pass starts the streams elsewhere; the same (step, seed) gives the same batch
    assert not torch.equal(batches[len(train)].inputs, batches[0].inputs)
    assert torch.equal(task.train_batch(len(train) + 1, seed=0).inputs, batches[len(train) + 1].inputs)
    assert not torch.equal(task.train_batch(len(train), seed=1).inputs, batches[len(train)].inputs)
    text = task.vocabulary.decode(train.inputs.reshape(-1)) + task.vocabulary.decode(train.targets[-1, -1:])
    row = task.vocabulary.decode(batches[len(train)].inputs[:, 0]) + task.vocabulary.decode(batches[len(train) + 1].inputs[:, 0])
    assert row in text + text  # a row of a later pass is still a contiguous run of the (rotated) text


def test_carried_state_equals_one_long_pass(play: Path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(tiny(play))
    model, task = trainer.model.eval(), trainer.task
    b0, b1 = task.train_batch(0, 0), task.train_batch(1, 0)
    with torch.no_grad():
        y0, state = model(b0.inputs)
        y1, _ = model(b1.inputs, state)
        whole, _ = model(torch.cat([b0.inputs, b1.inputs]))
    torch.testing.assert_close(torch.cat([y0, y1]), whole)


def test_trainer_carries_the_detached_state_across_batches(play: Path) -> None:
    trainer = Trainer(tiny(play, steps=3, dropout=0.0))
    seen, finals = [], []
    forward = trainer.model.forward

    def spy(inputs: torch.Tensor, state=None):
        outputs, final = forward(inputs, state)
        if torch.is_grad_enabled():
            seen.append(state)
            finals.append(final)
        return outputs, final

    trainer.model.forward = spy
    for _ in trainer.run():
        pass
    assert seen[0] is None
    for before, state in zip(finals, seen[1:]):
        assert all(not s.requires_grad for s in state)
        assert all(torch.equal(s, f.detach()) for s, f in zip(state, before))


def test_validation_loss_is_reported_in_nats_and_bits(play: Path) -> None:
    task = tasks.get("charlm", text=str(play), seq_len=16, batch_size=4)
    V = task.output_size
    uniform = lambda inputs, state=None: (torch.zeros(*inputs.shape, V), state)
    metrics = task.evaluate(uniform)
    assert metrics["loss"] == pytest.approx(math.log(V))
    assert metrics["bpc"] == pytest.approx(math.log2(V))
    assert 0 < task.baseline < math.log(V)


# -- sampling ----------------------------------------------------------------------


class FixedLogits:
    """A stand-in model: the same logits at every step; records the lengths it is fed."""

    def __init__(self, logits: list[float]) -> None:
        self.logits = torch.tensor(logits)
        self.lengths: list[int] = []

    def __call__(self, ids: torch.Tensor, state):
        self.lengths.append(ids.shape[0])
        count = 0 if state is None else state
        return self.logits.expand(ids.shape[0], 1, -1), count + ids.shape[0]


def test_sampling_is_deterministic_per_seed_and_one_step_at_a_time() -> None:
    vocab = Vocabulary("abcd")
    step = FixedLogits([0.0, 0.5, 1.0, 0.2])
    first = "".join(generate(step, vocab, "abc", 200, temperature=1.0, seed=3))
    assert step.lengths == [3] + [1] * 199  # the prime once, then one character per step
    again = "".join(generate(FixedLogits([0.0, 0.5, 1.0, 0.2]), vocab, "abc", 200, temperature=1.0, seed=3))
    other = "".join(generate(FixedLogits([0.0, 0.5, 1.0, 0.2]), vocab, "abc", 200, temperature=1.0, seed=4))
    assert first == again and first != other and len(first) == 200


@pytest.mark.parametrize("temperature", [0.0, 1e-4])
def test_temperature_near_zero_picks_the_argmax(temperature: float) -> None:
    text = "".join(generate(FixedLogits([0.0, 2.0, 1.9, -1.0]), Vocabulary("abcd"), "a", 100, temperature=temperature))
    assert text == "b" * 100


def test_temperature_and_top_k_shape_the_distribution() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0])
    for temperature in (0.5, 1.0, 2.0):
        torch.testing.assert_close(next_distribution(logits, temperature), torch.softmax(logits / temperature, -1))
    hot, cold = next_distribution(logits, 2.0), next_distribution(logits, 0.5)
    assert hot.max() < cold.max()  # higher temperature, flatter distribution
    top2 = next_distribution(logits, 1.0, top_k=2)
    assert torch.equal(top2 > 0, torch.tensor([False, True, True, False]))
    torch.testing.assert_close(top2[1:3], torch.softmax(torch.tensor([3.0, 2.0]), -1))
    text = "".join(generate(FixedLogits(logits.tolist()), Vocabulary("abcd"), "a", 300, top_k=2, seed=0))
    assert set(text) == {"b", "c"}
    assert next_distribution(logits, 1.0, top_k=9).gt(0).all()  # k beyond the vocabulary keeps everything


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": -1.0}, "temperature must be a finite number >= 0"),
        ({"temperature": math.nan}, "temperature must be a finite number >= 0"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
        ({"length": -5}, "length must be an integer >= 0"),
    ],
)
def test_sampling_options_are_checked(options: dict, message: str) -> None:
    args = {"temperature": 1.0, "top_k": 0, "length": 5, **options}
    with pytest.raises(ValueError, match=message):
        list(generate(FixedLogits([0.0, 0.0]), Vocabulary("ab"), "a", **args))


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"charlm: text must not be empty"),
        (b"caf\xe9 latin-1", r"charlm: text must be UTF-8 text; .* invalid byte at offset 3"),
        (b"too short", r"charlm: corpus must have at least \d+ characters .* has 9"),
    ],
)
def test_bad_corpus_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        _ = tasks.get("charlm", text=str(path), seq_len=16, batch_size=4).input_size
    with pytest.raises(ValueError, match=message):
        Trainer(tiny(path))


def test_missing_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"charlm: text must name a readable file; got '.*nowhere.txt'"):
        _ = tasks.get("charlm", text=str(tmp_path / "nowhere.txt")).input_size


def test_corpus_one_batch_long_is_enough(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("ab" * (minimum_length(4, 16) // 2 + 1), encoding="utf-8")
    task = tasks.get("charlm", text=str(path), seq_len=16, batch_size=4)
    assert len(task.streams()[0]) == 1


# -- every cell, resume, and the command line ---------------------------------------


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_cell_trains_on_text(play: Path, cell: str) -> None:
    trainer = Trainer(tiny(play, cell=cell, steps=2, hidden=8, dropout=0.1))
    records = [r for r in trainer.run() if r["kind"] == "eval"]
    assert len(records) == 2 and all(math.isfinite(r["loss"]) and r["bpc"] > 0 for r in records)


def test_resume_continues_the_stream_exactly(play: Path, tmp_path: Path) -> None:
    # a constant rate: the task's cosine spans `steps`, which the resume raises (lstmlab.schedule)
    constant = {"eval_every": 4, "lr_schedule": "constant"}
    straight = [r["loss"] for r in Trainer(tiny(play, steps=8, **constant), tmp_path / "a").run() if r["kind"] == "step"]
    first = [r["loss"] for r in Trainer(tiny(play, steps=5, **constant), tmp_path / "b").run() if r["kind"] == "step"]
    rest = [r["loss"] for r in Trainer.resume(tmp_path / "b", steps=8).run() if r["kind"] == "step"]
    assert first + rest == straight
    assert load_run(tmp_path / "b").task.vocabulary == Vocabulary.from_text(PLAY)


def test_train_sample_inspect_end_to_end(play: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    for _ in Trainer(tiny(play, steps=6, eval_every=3), run).run():
        pass
    capsys.readouterr()
    assert main(["sample", str(run), "--prime", "ROMEO:", "--length", "60", "--seed", "1", "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 60 + 1
    assert "characters per second" in err
    assert main(["sample", str(run), "--prime", "ROMEO:", "--length", "60", "--seed", "1"]) == 0
    assert capsys.readouterr().out == out
    assert main(["sample", str(run), "--length", "40", "--temperature", "0", "--top-k", "3"]) == 0

    page = tmp_path / "report.html"
    assert main(["inspect", str(run), "--out", str(page), "--chars", "150", "--analyse", "400", "--sample-length", "30"]) == 0
    html = page.read_text(encoding="utf-8")
    for part in ('id="passage"', 'id="layer"', 'id="cell"', "Gate saturation", "Learning curves", "line position"):
        assert part in html
    text_file = tmp_path / "other.txt"
    text_file.write_text("JULIET:\nO Romeo!\n" * 20, encoding="utf-8")
    assert main(["inspect", str(run), "--text", str(text_file), "--out", str(tmp_path / "other.html")]) == 0


def test_bad_prime_and_text_are_clear_errors(play: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    for _ in Trainer(tiny(play, steps=1), run).run():
        pass
    capsys.readouterr()
    assert main(["sample", str(run), "--prime", "ROMEO€", "--length", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sample: --prime must use only characters of the model's vocabulary") and "'€'" in err
    assert main(["sample", str(run), "--prime", ""]) == 2
    assert capsys.readouterr().err == "sample: --prime must have at least one character; got ''\n"
    assert main(["sample", str(run), "--temperature", "-1"]) == 2
    assert capsys.readouterr().err.startswith("sample: --temperature must be a finite number >= 0")
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("sample: RUN_DIR must hold checkpoint.pt; got ")
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("Ωμέγα", encoding="utf-8")
    assert main(["inspect", str(run), "--text", str(foreign), "--out", str(tmp_path / "x.html")]) == 2
    assert capsys.readouterr().err.startswith("inspect: --text must use only characters of the model's vocabulary")
    assert main(["inspect", str(run), "--sample-length", "-1"]) == 2
    assert capsys.readouterr().err == "inspect: --sample-length must be an integer >= 0; got -1\n"
    assert main(["inspect", str(run), "--chars", "0"]) == 2
    assert capsys.readouterr().err == "inspect: --chars must be greater than zero; got 0\n"


def test_inspect_asks_for_text_when_the_corpus_is_gone(play: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "gone.txt"
    corpus.write_text(play.read_text(encoding="utf-8"), encoding="utf-8")
    for _ in Trainer(tiny(corpus, steps=1), tmp_path / "run").run():
        pass
    corpus.unlink()
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("inspect: --text must be given, since the run's corpus cannot be read")
    assert main(["sample", str(tmp_path / "run"), "--length", "3"]) == 0  # the vocabulary is in the checkpoint


def test_trace_matches_the_model(play: Path) -> None:
    from lstmlab.charlm.trace import trace

    for cell in ("lstm", "gru", "rnn", "cifg"):
        trainer = Trainer(tiny(play, cell=cell, steps=1))
        model = trainer.model.eval()
        ids = trainer.task.vocabulary.encode(PLAY[:40])
        layers = trace(model.recurrent, F.one_hot(ids, model.input_size).float())
        with torch.no_grad():
            _, final = model(ids[:, None])
        c_or_h = final[1] if isinstance(final, tuple) else final
        expected = torch.tanh(c_or_h[-1, 0]) if isinstance(final, tuple) else c_or_h[-1, 0]
        torch.testing.assert_close(torch.from_numpy(layers[-1].cell[-1]).float(), expected, atol=1e-5, rtol=1e-4)
        assert all(((g >= 0) & (g <= 1)).all() for layer in layers for g in layer.gates.values())


def test_train_command_runs_charlm_and_resumes(play: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    common = ["--task", "charlm", "--text", str(play), "--seq-len", "16", "--batch", "4", "--quiet"]
    model = ["--cell", "gru", "--layers", "2", "--hidden", "16", "--dropout", "0.1", "--eval-every", "2"]
    assert main(["train", *common, *model, "--steps", "4", "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--steps", "6", "--quiet"]) == 0
    assert "val loss" in capsys.readouterr().out
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [r["step"] for r in evals] == [0, 2, 4, 6] and all("bpc" in r for r in evals)
    assert load_run(run).step == 6


def test_train_command_reports_a_bad_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café ".encode("latin-1") * 2000)
    assert main(["train", "--task", "charlm", "--text", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("train: --text must be UTF-8 text")


@pytest.mark.parametrize(
    ("task", "flags", "expected"),
    [("charlm", [], 0.0), ("charlm", ["--forget-bias", "2"], 2.0), ("adding", [], 1.0)],
)
def test_train_starts_the_forget_gate_at_the_tasks_bias_unless_told(
    play: Path, tmp_path: Path, task: str, flags: list[str], expected: float
) -> None:
    text = ["--text", str(play)] if task == "charlm" else []
    command = ["train", "--task", task, *text, "--hidden", "8", "--batch", "4", "--seq-len", "10", "--steps", "1"]
    assert main([*command, "--quiet", "--out", str(tmp_path / "run"), *flags]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["forget_bias"] == expected
    bias = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["recurrent.bias_ih_l0"]
    assert abs(float(bias[8:16].mean()) - expected) < 0.4  # the forget block, around its offset


def test_shakespeare_benchmark_trains_to_a_budget_and_reports(play: Path, tmp_path: Path) -> None:
    """benchmarks/charlm_shakespeare.py on a tiny model and budget: it stops after the
    budget, writes result.json with the curve and a sample, and --report tabulates it."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "charlm_shakespeare.py"
    run = tmp_path / "bench-run"
    small = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch", "4", "--eval-every", "4"]
    trained = subprocess.run(
        [
            sys.executable,
            str(script),
            str(play),
            "--cell",
            "gru",
            "--minutes",
            "0.005",
            "--out",
            str(run),
            "--sample-length",
            "25",
            *small,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert trained.returncode == 0, trained.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["cell"] == "gru" and result["steps"] >= 1
    assert result["minutes"] < 0.5  # stopped by the budget, not the trainer's step limit
    assert len(result["curve_minutes"]) == len(result["curve_loss"]) >= 2
    assert result["curve_minutes"] == sorted(result["curve_minutes"])
    assert result["curve_loss"][-1] == pytest.approx(result["final_loss"], abs=1e-5)
    assert result["best_loss"] <= result["final_loss"]
    assert len(result["sample"]) == 25 and set(result["sample"]) <= set(PLAY * 12)

    plot = tmp_path / "curves.png"
    reported = subprocess.run(
        [sys.executable, str(script), "--report", str(run), "--plot", str(plot)], capture_output=True, text=True, timeout=120
    )
    assert reported.returncode == 0, reported.stderr
    row = reported.stdout.splitlines()[2]
    assert row.startswith("| bench-run | gru |") and f"{result['final_loss']:.3f}" in row
    assert plot.stat().st_size > 1000
