"""`lstmlab.load`: a trained run round-trips for every task family, and `Run.generate`
gives the text `lstmlab sample` prints for the same arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lstmlab
from lstmlab.cli import main
from lstmlab.train import TrainConfig, Trainer

PLAY = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo? (Deny thy father.)\n\n"
) * 20

# one task of each family: float inputs (adding), token inputs (copy, reber, temporal order,
# the long-lag sequences) and the character-level language model
TASKS = {
    "adding": ("peephole", {"seq_len": 8, "batch_size": 4}),
    "copy": ("gru", {"seq_len": 4, "batch_size": 4, "eval_size": 8}),
    "reber": ("lstm", {"batch_size": 4, "eval_size": 8}),
    "temporal-order": ("cifg", {"seq_len": 20, "batch_size": 4, "eval_size": 8}),
    "long-lag": ("rnn", {"seq_len": 8, "batch_size": 4}),
    "charlm": ("gru-before", {"seq_len": 16, "batch_size": 4}),
}


@pytest.fixture(scope="module")
def play(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "play.txt"
    path.write_text(PLAY, encoding="utf-8")
    return path


def train(run_dir: Path, task: str, play: Path, steps: int = 3) -> Trainer:
    cell, options = TASKS[task]
    if task == "charlm":
        options = {**options, "text": str(play)}
    config = TrainConfig(task=task, task_options=options, cell=cell, hidden=8, steps=steps, eval_every=2, log_every=1)
    trainer = Trainer(config, run_dir)
    for _ in trainer.run():
        pass
    return trainer


@pytest.mark.parametrize("task", list(TASKS))
def test_load_round_trips_a_run(task: str, play: Path, tmp_path: Path) -> None:
    trainer = train(tmp_path / "run", task, play)
    run = lstmlab.load(tmp_path / "run")
    assert isinstance(run, lstmlab.Run)
    assert not run.model.training and run.device == torch.device("cpu")
    assert run.config.task == task and run.config.cell == TASKS[task][0] and run.step == 3
    for name, want in trainer.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], want.cpu()), name
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert run.metrics == [json.loads(line) for line in lines]
    assert {r["kind"] for r in run.metrics} == {"train", "eval"}
    batch = run.task.train_batch(0, 0)
    want, _ = trainer.predict(batch.inputs)
    with torch.no_grad():
        got, _ = run.model(batch.inputs)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert run.task.state_dict() == trainer.task.state_dict()


@pytest.mark.parametrize(
    "options, flags",
    [
        (
            {"prime": "ROMEO:", "length": 40, "temperature": 0.8, "top_k": 0, "seed": 3},
            ["--prime", "ROMEO:", "--length", "40", "--seed", "3"],
        ),
        (
            {"prime": "", "length": 30, "temperature": 1.0, "top_k": 5, "seed": 0},
            ["--length", "30", "--temperature", "1.0", "--top-k", "5"],
        ),
        (
            {"prime": "O", "length": 25, "temperature": 0, "seed": 1},
            ["--prime", "O", "--length", "25", "--temperature", "0", "--seed", "1"],
        ),
    ],
    ids=["prime", "default-prime-top-k", "greedy"],
)
def test_generate_equals_lstmlab_sample(
    options: dict, flags: list[str], play: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tmp_path / "run", "charlm", play, steps=4)
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), *flags]) == 0
    printed = capsys.readouterr().out
    text = lstmlab.load(tmp_path / "run").generate(**options)
    assert printed == text + "\n"
    assert len(text) == len(options["prime"]) + options["length"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_loaded_onto_cuda_generates_the_cpu_text(play: Path, tmp_path: Path) -> None:
    """The model steps on CUDA, the draws stay on the CPU's seeded generator: greedy text is the CPU's."""
    train(tmp_path / "run", "charlm", play, steps=4)
    on_cpu = lstmlab.load(tmp_path / "run").generate("ROMEO", length=40, temperature=0)
    on_cuda = lstmlab.load(tmp_path / "run", map_location="cuda")
    assert next(on_cuda.model.parameters()).is_cuda
    assert on_cuda.generate("ROMEO", length=40, temperature=0) == on_cpu


def test_generate_with_no_seed_draws_a_fresh_one(play: Path, tmp_path: Path) -> None:
    train(tmp_path / "run", "charlm", play, steps=2)
    run = lstmlab.load(tmp_path / "run")
    texts = {run.generate("R", length=60, temperature=2.0) for _ in range(4)}
    assert len(texts) > 1
    assert len(set(run.generate("R", length=60, temperature=2.0, seed=7) for _ in range(2))) == 1


def test_load_errors_name_the_argument(play: Path, tmp_path: Path) -> None:
    train(tmp_path / "run", "adding", play, steps=1)
    run = lstmlab.load(tmp_path / "run", map_location="cpu")
    with pytest.raises(ValueError, match=r"Run.generate: needs a charlm run; '.*run' holds a 'adding' run"):
        run.generate()
    with pytest.raises(ValueError, match=r"load: device must agree with map_location='cpu' \(give one\); got 'meta'"):
        lstmlab.load(tmp_path / "run", map_location="cpu", device="meta")
    with pytest.raises(ValueError, match=r"^load: run_dir must hold checkpoint.pt"):
        lstmlab.load(tmp_path / "nowhere")
    with pytest.raises(TypeError, match=r"^load: run_dir must be a path \(str or os.PathLike\); got int$"):
        lstmlab.load(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^load: device must be cpu, cuda or cuda:N; got 'meta'$"):
        lstmlab.load(tmp_path / "run", device="meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_load_onto_cuda_without_cuda_is_a_message(play: Path, tmp_path: Path) -> None:
    train(tmp_path / "run", "adding", play, steps=1)
    with pytest.raises(RuntimeError, match=r"^load: device needs CUDA, which this torch build or machine lacks; got 'cuda'$"):
        lstmlab.load(tmp_path / "run", map_location="cuda")


def test_generate_errors_name_generate_and_the_argument(play: Path, tmp_path: Path) -> None:
    train(tmp_path / "run", "charlm", play, steps=1)
    run = lstmlab.load(tmp_path / "run")
    bad = [
        ({"length": -1}, r"length must be an integer >= 0; got -1"),
        ({"temperature": -1.0}, r"temperature must be a finite number >= 0"),
        ({"top_k": -1}, r"top_k must be an integer >= 0"),
        ({"prime": "R€"}, r"prime must use only characters of the model's vocabulary"),
    ]
    for kwargs, rule in bad:
        with pytest.raises(ValueError, match=rf"^Run\.generate: {rule}"):
            run.generate(**{"length": 5, "seed": 0, **kwargs})


def test_readme_example_runs(play: Path, tmp_path: Path) -> None:
    train(tmp_path / "run", "charlm", play, steps=2)
    run = lstmlab.load(tmp_path / "run")
    assert run.generate("JULIET:", length=20, seed=0).startswith("JULIET:")


def test_metrics_leave_out_a_last_line_cut_short(play: Path, tmp_path: Path) -> None:
    train(tmp_path / "run", "adding", play, steps=2)
    path = tmp_path / "run" / "metrics.jsonl"
    whole = lstmlab.load(tmp_path / "run").metrics
    path.write_text(path.read_text() + '{"kind": "tra')  # a kill in the middle of a write
    assert lstmlab.load(tmp_path / "run").metrics == whole
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "not json", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"load: run_dir holds a metrics.jsonl whose line 2 is not JSON: 'not json'"):
        lstmlab.load(tmp_path / "run")
