"""Run directories: one owner at a time, Ctrl-C anywhere in a step, torn and corrupt files,
file-system errors, moved corpora, resume conflicts and overrides, compare reruns."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lstmlab.cli import main
from lstmlab.train import CHECKPOINT, METRICS, TrainConfig, Trainer, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seq-len", "8", "--batch", "8", "--hidden", "8", "--eval-every", "5", "--log-every", "2", "--quiet"]
TIMINGS = ("seconds", "steps_per_second")


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only cost time
    yield
    torch.set_num_threads(threads)


def tiny(**overrides: Any) -> TrainConfig:
    """eval_every not a multiple of log_every, so that checkpoints fall inside a train record's window."""
    values: dict[str, Any] = {
        "task": "adding",
        "task_options": {"seq_len": 8, "batch_size": 8, "eval_size": 16},
        "cell": "lstm",
        "hidden": 8,
        "layers": 2,
        "dropout": 0.3,
        "steps": 12,
        "eval_every": 5,
        "log_every": 2,
    }
    values.update(overrides)
    return TrainConfig(**values)


def records(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the timings (wall-clock, never repeatable)."""
    lines = (run_dir / METRICS).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in lines]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / CHECKPOINT, weights_only=True)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def python(code: str, *args: str, **kwargs: Any) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kwargs)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of `tiny()`."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    with Trainer(tiny(), run_dir) as trainer:
        list(trainer.run())
    return run_dir


# -- 1. one owner per run directory --------------------------------------------------


HOLDER = """
import sys
from lstmlab.train import TrainConfig, Trainer
config = TrainConfig(task_options={"seq_len": 8, "batch_size": 8}, hidden=8, steps=5)
trainer = Trainer(config, sys.argv[1])  # owns the directory from here on
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_run_directory_is_owned_by_one_process_and_a_dead_owner_does_not_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with python(HOLDER, str(out), stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
            assert main(["train", "--steps", "3", "--out", str(out), *TINY]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"train: --out is in use by another run (process {holder.pid} on ") and err.count("\n") == 1
            assert records(out) == []  # the refused run wrote nothing into the other's metrics
            assert main(["train", "--resume", str(out), "--quiet"]) == 2  # nor may a resume take it over
            assert capsys.readouterr().err.startswith(f"train: --resume is in use by another run (process {holder.pid} on ")
        finally:
            holder.kill()  # like kill -9 or a crash: nothing released by hand
            holder.wait()
    assert f"process {holder.pid} " in (out / ".lock").read_text()  # the dead owner's lock file stays behind...
    assert main(["train", "--steps", "3", "--out", str(out), *TINY]) == 0  # ...and does not block
    assert read_checkpoint(out)["step"] == 3 and not (out / ".lock").exists()


# -- 2. Ctrl-C anywhere in a step, then a bit-identical resume ------------------------


def interrupt_inside_the_loss(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer.task.loss

    def loss(outputs: torch.Tensor, batch: Any) -> torch.Tensor:
        value = real(outputs, batch)  # the dropout masks of this step are drawn by now
        if trainer.step == 6:
            raise KeyboardInterrupt
        return value

    monkeypatch.setattr(trainer.task, "loss", loss)


def interrupt_inside_backward(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer.task.loss

    def stop(grad: torch.Tensor) -> None:
        raise KeyboardInterrupt

    def loss(outputs: torch.Tensor, batch: Any) -> torch.Tensor:
        if trainer.step == 6:
            outputs.register_hook(stop)  # runs in the middle of loss.backward()
        return real(outputs, batch)

    monkeypatch.setattr(trainer.task, "loss", loss)


def interrupt_inside_the_update(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer.optimizer.step

    def step(*args: Any, **kwargs: Any) -> Any:
        if trainer.step == 6:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, arriving as the update begins
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer.optimizer, "step", step)


def interrupt_the_checkpoint_write(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.save

    def save(obj: Any, f: Any) -> None:
        if obj["step"] == 10:
            monkeypatch.setattr(torch, "save", real)
            f.write(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt
        real(obj, f)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize(
    ("interrupt", "saved_step"),
    [
        (interrupt_inside_the_loss, 6),
        (interrupt_inside_backward, 6),
        (interrupt_inside_the_update, 7),  # the update ends, then the interrupt is handled
        (interrupt_the_checkpoint_write, 10),
    ],
    ids=["loss", "backward", "optimizer-step", "checkpoint-write"],
)
def test_ctrl_c_anywhere_in_a_step_resumes_bit_identically_with_dropout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, straight: Path, interrupt: Any, saved_step: int
) -> None:
    run_dir = tmp_path / "run"
    trainer = Trainer(tiny(), run_dir)
    interrupt(trainer, monkeypatch)
    losses = [r["loss"] for r in trainer.run() if r["kind"] == "step"]
    monkeypatch.undo()
    trainer.close()
    assert trainer.interrupted and trainer.step == saved_step and len(losses) in (saved_step, saved_step - 1)
    assert read_checkpoint(run_dir)["step"] == saved_step  # the last finished step, saved
    assert not list(run_dir.glob("*.tmp"))
    with Trainer.resume(run_dir) as resumed:
        list(resumed.run())
    assert same_weights(weights(run_dir), weights(straight))
    assert records(run_dir) == records(straight)


def test_a_killed_run_resumes_from_inside_a_train_record_window(tmp_path: Path, straight: Path) -> None:
    """kill -9 after step 6: the checkpoint is step 5's, in the middle of the window of the record at step 6."""
    run_dir = tmp_path / "run"
    trainer = Trainer(tiny(), run_dir)
    for record in trainer.run():
        if record["kind"] == "step" and record["step"] == 7:
            break  # nothing saved after this point, as with kill -9
    trainer.close()
    assert read_checkpoint(run_dir)["step"] == 5 and records(run_dir)[-1]["step"] == 6
    with Trainer.resume(run_dir) as resumed:
        list(resumed.run())
    assert records(run_dir) == records(straight)
    assert same_weights(weights(run_dir), weights(straight))


# -- 3. a torn last line of metrics.jsonl -------------------------------------------


def test_a_torn_last_metrics_line_is_dropped_and_other_bad_lines_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lstmlab.charlm.page import learning_curves
    from lstmlab.run_dir import read_metrics

    out = tmp_path / "run"
    assert main(["train", "--steps", "6", "--out", str(out), *TINY]) == 0
    good = (out / METRICS).read_text()
    with open(out / METRICS, "a") as f:
        f.write('{"kind": "train", "step": 8, "loss": 0.0')  # a write cut short
    assert len(read_metrics(out / METRICS)) == good.count("\n")
    assert [c.label for c in learning_curves(out)] == ["training loss", "validation loss"]  # what inspect draws
    assert main(["train", "--resume", str(out), "--steps", "8", "--quiet"]) == 0
    assert [r["step"] for r in records(out) if r["kind"] == "train"] == [2, 4, 6, 8]

    (out / METRICS).write_text(good.replace("\n", "\nnot json\n", 1))
    assert main(["train", "--resume", str(out), "--steps", "10", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train: metrics must hold one JSON object per line; {str(out / METRICS)!r} line 2: Expecting value")


# -- 4. corrupt, empty, truncated, foreign and hostile checkpoints ----------------------


class Payload:
    """What a crafted checkpoint would run on load: it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def corrupt(path: Path, kind: str, good: bytes, marker: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "text":
        path.write_text("hello, this is not a checkpoint\n")
    elif kind == "directory":
        path.unlink()
        path.mkdir()
    elif kind == "a-tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "a-state-dict":
        torch.save({"weight": torch.zeros(3)}, path)
    elif kind == "hostile-torch":
        torch.save({"config": Payload(marker)}, path)
    elif kind == "hostile-pickle":
        path.write_bytes(pickle.dumps({"config": Payload(marker)}))
    else:  # an lstmlab checkpoint whose content does not fit: a bad config, weights of other shapes
        checkpoint = torch.load(path, weights_only=True)
        if kind == "bad-config":
            checkpoint["config"]["hidden"] = -1
        else:
            checkpoint["model"] = {k: torch.zeros(2, 2) for k in checkpoint["model"]}
        torch.save(checkpoint, path)


CORRUPT = {
    "empty": "is empty (0 bytes)",
    "truncated": "is truncated or corrupt (an incomplete torch file)",
    "text": "is not a torch checkpoint",
    "directory": "cannot be read (Is a directory)",
    "a-tensor": "is not an lstmlab checkpoint (it holds a Tensor)",
    "a-state-dict": "is not an lstmlab checkpoint (it has no 'config')",
    "hostile-torch": "holds Python objects beyond tensors and plain data, which are not loaded (that could run code)",
    "hostile-pickle": "holds Python objects beyond tensors and plain data, which are not loaded (that could run code)",
    "bad-config": "does not fit lstmlab (train: hidden must be greater than zero; got -1)",
    "wrong-shapes": "does not fit lstmlab (Error(s) in loading state_dict for SequenceModel: size mismatch for ",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    with Trainer(tiny(steps=5), run_dir) as trainer:
        list(trainer.run())
    return run_dir


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_a_bad_checkpoint_is_one_message_that_names_the_file(
    kind: str, tmp_path: Path, finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    path, marker = run_dir / CHECKPOINT, tmp_path / "payload-ran"
    corrupt(path, kind, (finished / CHECKPOINT).read_bytes(), marker)
    for argv, command in (
        (["train", "--resume", str(run_dir)], "train: --resume"),
        (["sample", str(run_dir)], "sample: RUN_DIR"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{command} must hold a readable checkpoint; {str(path)!r} {CORRUPT[kind]}")
        assert err.count("\n") == 1 and "weights_only" not in err
    assert not marker.exists()  # nothing in the file ran


# -- 5. file-system errors ------------------------------------------------------------


def test_an_out_that_is_a_file_or_below_one_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    for out, reason in ((file, "File exists"), (file / "run", "Not a directory")):
        assert main(["train", "--steps", "1", "--out", str(out), *TINY]) == 2
        assert capsys.readouterr().err == f"train: --out could not be created: {str(out)!r} ({reason})\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories; run as a user to check this")
def test_read_only_run_directories_are_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert main(["train", "--steps", "1", "--out", str(parent / "run"), *TINY]) == 2
        assert capsys.readouterr().err == f"train: --out could not be created: {str(parent / 'run')!r} (Permission denied)\n"
    finally:
        parent.chmod(0o700)
    out = tmp_path / "run"
    assert main(["train", "--steps", "1", "--out", str(out), *TINY]) == 0
    out.chmod(0o500)
    try:
        assert main(["train", "--resume", str(out), "--steps", "2", "--quiet"]) == 2
        assert capsys.readouterr().err == f"train: --resume could not be written: {str(out / '.lock')!r} (Permission denied)\n"
    finally:
        out.chmod(0o700)
    assert read_checkpoint(out)["step"] == 1


FULL_DISK = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (12000, 12000))  # bytes per file: less than a checkpoint
from lstmlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_while_writing_a_checkpoint_is_a_message_and_keeps_the_old_one(tmp_path: Path, finished: Path) -> None:
    resource = pytest.importorskip("resource", reason="no resource module (RLIMIT_FSIZE) on this platform")
    if not hasattr(resource, "RLIMIT_FSIZE"):
        pytest.skip("no RLIMIT_FSIZE on this platform")
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    assert (run_dir / CHECKPOINT).stat().st_size > 12000
    child = python(FULL_DISK, "train", "--resume", str(run_dir), "--steps", "10", "--quiet", stderr=subprocess.PIPE)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 2, err
    path = run_dir / CHECKPOINT
    assert err == f"train: --resume could not be written: {str(path)!r} (File too large); the checkpoint of step 5 is kept\n"
    assert read_checkpoint(run_dir)["step"] == 5 and not list(run_dir.glob("*.tmp"))


def test_temporary_files_of_a_killed_write_are_removed_on_the_next_start(tmp_path: Path, finished: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / "checkpoint.pt.k1ll3d.tmp").write_bytes(b"half")
    (run_dir / "notes.tmp").write_text("not ours")
    with Trainer.resume(run_dir):
        assert sorted(p.name for p in run_dir.glob("*.tmp")) == ["notes.tmp"]


# -- 6. a charlm corpus that moves or changes -----------------------------------------


CHARLM = ["--task", "charlm", "--seq-len", "4", "--batch", "2", "--hidden", "4", "--eval-every", "2", "--quiet"]


def test_a_charlm_run_resumes_from_anywhere_and_refuses_a_changed_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    corpus = tmp_path / "data" / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 4)
    monkeypatch.chdir(tmp_path / "data")
    assert main(["train", *CHARLM, "--text", "corpus.txt", "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    inspect = ["inspect", str(tmp_path / "run"), "--chars", "20", "--analyse", "20", "--sample-length", "5"]
    assert main([*inspect, "--out", str(tmp_path)]) == 2  # (5.) --out naming a directory
    assert (
        capsys.readouterr().err == f"inspect: --out must name a file, not a directory; got {str(tmp_path)!r} (Is a directory)\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the stored path is absolute
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task_options"]["text"] == str(corpus)
    assert main(["train", "--resume", "run", "--steps", "4", "--quiet"]) == 0

    moved = tmp_path / "moved.txt"
    corpus.rename(moved)
    assert main(["train", "--resume", "run", "--steps", "6", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: --text must name the run's corpus, which cannot be read (") and "give its new place" in err
    assert main(["train", "--resume", "run", "--steps", "6", "--text", str(moved), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task_options"]["text"] == str(moved)

    moved.write_text(moved.read_text().replace("fox", "cat"))
    assert main(["train", "--resume", "run", "--steps", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train: --text must be the corpus the run trained on; {str(moved)!r} has other content (sha256 ")
    assert read_checkpoint(tmp_path / "run")["step"] == 6


# -- 10. --resume: conflicts and overrides ----------------------------------------------


def test_resume_refuses_flags_that_redefine_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--steps", "2", "--out", str(out), *TINY]) == 0
    argv = ["train", "--resume", str(out), "--task", "copy", "--cell", "gru", "--lr", "0.5", "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train: --resume must continue a run as it was defined; {str(out)!r} differs in ")
    for flag in ("--task 'copy' (the run's: 'adding')", "--cell 'gru' (the run's: 'lstm')", "--out "):
        assert flag in err
    assert "--lr" not in err and err.count("\n") == 1
    assert main(["train", "--resume", str(out), "--hidden", "16", "--batch", "4"]) == 2
    err = capsys.readouterr().err
    assert "--hidden 16 (the run's: 8)" in err and "--batch 4 (the run's: 8)" in err
    # the same values, spelt out, are no conflict
    assert main(["train", "--resume", str(out), "--task", "adding", "--cell", "LSTM", "--hidden", "8", *TINY]) == 0
    assert read_checkpoint(out)["step"] == 2


def test_resume_applies_and_records_the_settings_it_may_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--steps", "4", "--out", str(out), *TINY]) == 0  # finished: 4 of 4 steps
    capsys.readouterr()
    argv = ["train", "--resume", str(out), "--steps", "9", "--lr", "0.01", "--eval-every", "3", "--no-early-stop"]
    assert main([*argv, "--threads", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 9  # a finished run goes on with a larger --steps
    resume = [r for r in records(out) if r["kind"] == "resume"]
    assert resume == [
        {
            "kind": "resume",
            "step": 4,
            "changed": {
                "steps": {"from": 4, "to": 9},
                "lr": {"from": 0.003, "to": 0.01},
                "stop_when_solved": {"from": True, "to": False},
                "eval_every": {"from": 5, "to": 3},
            },
            "threads": 1,
        }
    ]
    assert [r["step"] for r in records(out) if r["kind"] == "eval"] == [0, 4, 6, 9]
    checkpoint = read_checkpoint(out)
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 0.01 and checkpoint["config"]["lr"] == 0.01
    assert json.loads((out / "config.json").read_text())["eval_every"] == 3


# -- 11. reruns: --overwrite, compare --resume -----------------------------------------


def test_train_overwrite_starts_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--steps", "4", "--out", str(out), *TINY]) == 0
    assert main(["train", "--steps", "2", "--out", str(out), *TINY]) == 2
    assert "already holds a run (resume it, overwrite it or choose another)" in capsys.readouterr().err
    assert main(["train", "--steps", "2", "--out", str(out), "--overwrite", *TINY]) == 0
    assert read_checkpoint(out)["step"] == 2 and [r["step"] for r in records(out) if r["kind"] == "train"] == [2]


def test_compare_rerun_is_refused_resumed_or_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="compare draws curves: pip install matplotlib")
    out = tmp_path / "cmp"
    argv = ["compare", "--cells", "rnn,gru", "--out", str(out), *TINY]
    assert main([*argv, "--steps", "4"]) == 0
    capsys.readouterr()
    assert main([*argv, "--steps", "4"]) == 2
    err = capsys.readouterr().err
    held = "which already holds a comparison (resume it, overwrite it or choose another)"
    assert err == f"compare: --out must be new; got {str(out)!r}, {held}\n"

    # an interrupted comparison: rnn finished, gru never ran
    shutil.rmtree(out / "gru")
    (out / "results.json").unlink()
    rnn_checkpoint = read_checkpoint(out / "rnn")
    assert main([*argv, "--steps", "4", "--resume"]) == 0
    assert [row["steps"] for row in json.loads((out / "results.json").read_text())["rows"]] == [4, 4]
    assert same_weights(read_checkpoint(out / "rnn")["model"], rnn_checkpoint["model"])  # finished: kept as it was
    assert main([*argv, "--steps", "6", "--resume"]) == 0  # a larger budget: both go on
    assert [row["steps"] for row in json.loads((out / "results.json").read_text())["rows"]] == [6, 6]
    eval_steps = [r["step"] for r in records(out / "rnn") if r["kind"] == "eval"]
    assert eval_steps == [0, 4, 5, 6]
    curve = json.loads((out / "results.json").read_text())["curves"]["rnn"]
    assert [step for step, _ in curve] == eval_steps  # the curve holds the steps before the resume too

    assert main([*argv, "--steps", "6", "--resume", "--hidden", "16"]) == 2
    assert "compare: --resume must continue a run as it was defined;" in capsys.readouterr().err

    assert main([*argv, "--steps", "2", "--overwrite"]) == 0
    assert [r["step"] for r in records(out / "rnn") if r["kind"] == "eval"] == [0, 2]


def test_resume_checks_the_schedule_and_applies_a_new_time_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--steps", "2", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--lr-schedule", "cosine", "--warmup", "3"]) == 2
    err = capsys.readouterr().err
    assert "--lr-schedule 'cosine' (the run's: 'constant')" in err and "--warmup 3 (the run's: 0)" in err
    assert main(["train", "--resume", str(out), "--steps", "3", "--max-minutes", "5", "--quiet"]) == 0
    (resume,) = [r for r in records(out) if r["kind"] == "resume"]
    assert resume["changed"]["max_minutes"] == {"from": None, "to": 5.0}
    assert read_checkpoint(out)["config"]["max_minutes"] == 5.0
