"""The command line's newer flags and conventions: --version, --device, --max-minutes, --config,
--lr-schedule/--warmup, default threads, progress lines without a terminal, bench --json-out and
its busy-machine warning, and messages that start with the command typed."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lstmlab.cli import build_parser, main
from lstmlab.cli._training import default_threads
from lstmlab.cli.bench import busy_warning
from lstmlab.schedule import learning_rate
from lstmlab.train import TrainConfig, Trainer

TINY = ["--seq-len", "8", "--hidden", "8", "--eval-every", "5"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from lstmlab import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"lstmlab {__version__}"


# -- learning-rate schedules: against torch's own schedulers ---------------------------------


def _torch_rates(scheduler_of: object, steps: int, lr: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = scheduler_of(optimizer)  # type: ignore[operator]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_and_step_schedules_match_torchs_schedulers() -> None:
    from torch.optim import lr_scheduler

    steps = 40
    cosine = _torch_rates(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=steps, eta_min=0.0), steps)
    assert [learning_rate(0.1, "cosine", s, steps) for s in range(steps)] == pytest.approx(cosine, rel=1e-9, abs=1e-12)
    multi = _torch_rates(lambda o: lr_scheduler.MultiStepLR(o, milestones=[20, 30], gamma=0.1), steps)
    assert [learning_rate(0.1, "step", s, steps) for s in range(steps)] == pytest.approx(multi, rel=1e-9)
    assert [learning_rate(0.1, "constant", s, steps) for s in range(steps)] == [0.1] * steps


def test_warmup_matches_torchs_linear_warmup_then_the_schedule() -> None:
    from torch.optim import lr_scheduler

    warmup, steps = 5, 25
    linear = _torch_rates(lambda o: lr_scheduler.LinearLR(o, start_factor=1 / warmup, total_iters=warmup - 1), warmup)
    assert [learning_rate(0.1, "cosine", s, steps, warmup) for s in range(warmup)] == pytest.approx(linear, rel=1e-9)
    after = [learning_rate(0.1, "cosine", s, steps, warmup) for s in range(warmup, steps)]
    assert after == pytest.approx([learning_rate(0.1, "cosine", s, steps - warmup) for s in range(steps - warmup)])


def test_the_trainer_updates_with_the_scheduled_rates(tmp_path: Path) -> None:
    config = TrainConfig(task="adding", task_options={"seq_len": 8}, hidden=4, lr=0.01, lr_schedule="cosine", warmup=2, steps=6)
    trainer = Trainer(config)
    seen: list[float] = []
    step = trainer.optimizer.step

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = spy  # type: ignore[method-assign]
    for _ in trainer.run():
        pass
    assert seen == pytest.approx([learning_rate(0.01, "cosine", s, 6, 2) for s in range(6)])
    assert seen[:3] == pytest.approx([0.005, 0.01, 0.01])  # warm-up, then the top of the cosine
    assert seen[-1] < seen[3] < seen[2]


def test_a_wall_clock_budget_stretches_the_schedule_over_itself() -> None:
    # cosine with half of the budget spent: half way down, whatever the step
    assert learning_rate(0.1, "cosine", 0, 1000, spent=0.5) == pytest.approx(0.05)
    assert learning_rate(0.1, "cosine", 750, 1000, spent=0.5) == pytest.approx(learning_rate(0.1, "cosine", 750, 1000))
    assert learning_rate(0.1, "step", 0, 1000, spent=0.8) == pytest.approx(0.001)
    assert learning_rate(0.1, "constant", 0, 1000, spent=0.9) == 0.1
    assert learning_rate(0.1, "cosine", 0, 1000, warmup=10, spent=0.5) == pytest.approx(0.01)  # warm-up counts steps
    assert learning_rate(0.1, "cosine", 20, 1000, spent=2.0) == 0.0  # past the budget: the end of the schedule


def test_the_trainer_passes_the_share_of_the_budget_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmlab.train as train_module

    trainers: list[Trainer] = []
    calls: list[tuple[int, float, float]] = []  # (step, spent passed, the trainer's seconds at the time)

    def spy(lr: float, schedule: str, step: int, steps: int, warmup: int = 0, spent: float = 0.0) -> float:
        calls.append((step, spent, trainers[-1].seconds))
        return learning_rate(lr, schedule, step, steps, warmup, spent)

    monkeypatch.setattr(train_module, "learning_rate", spy)
    config = TrainConfig(task="adding", task_options={"seq_len": 8}, hidden=4, lr_schedule="cosine", steps=5, max_minutes=10)
    trainers.append(Trainer(config))
    for _ in trainers[-1].run():
        pass
    assert [step for step, _, _ in calls] == list(range(5))
    assert all(spent == seconds / 600 for _, spent, seconds in calls)  # the time of the last finished step
    assert calls[0][1] == 0.0 and all(0 < a[1] < b[1] for a, b in zip(calls[1:], calls[2:]))
    calls.clear()
    trainers.append(Trainer(replace(config, max_minutes=None)))
    for _ in trainers[-1].run():
        pass
    assert {spent for _, spent, _ in calls} == {0.0}


def test_the_schedule_defaults_to_the_tasks() -> None:
    assert TrainConfig(task="charlm").check().lr_schedule == "cosine"
    assert TrainConfig(task="adding").check().lr_schedule == "constant"
    assert TrainConfig(task="charlm", lr_schedule="constant").check().lr_schedule == "constant"


def test_schedule_flags_reach_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--lr-schedule", "step", "--warmup", "1", "--out", str(out), "-q"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["lr_schedule"] == "step" and config["warmup"] == 1
    with pytest.raises(SystemExit):  # argparse's choices refuse it
        build_parser().parse_args(["train", "--lr-schedule", "linear"])
    capsys.readouterr()
    assert main(["train", "--warmup", "-1", "--out", str(tmp_path / "w")]) == 2
    assert capsys.readouterr().err.startswith("train: --warmup must be")


# -- wall-clock budget -------------------------------------------------------------------------


def test_max_minutes_stops_after_the_step_that_spends_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", *TINY, "--steps", "100000", "--no-early-stop", "--max-minutes", "1e-7", "--out", str(out)]
    assert main([*argv, "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("eval", 0), ("train", 1), ("eval", 1)]  # the last step, evaluated
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 1
    assert json.loads((out / "config.json").read_text())["max_minutes"] == 1e-7


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_max_minutes_must_be_a_positive_number(minutes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--max-minutes", minutes, "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("train: --max-minutes must be a positive number of minutes")


# -- --config ----------------------------------------------------------------------------------


def test_config_file_with_flags_overriding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = tmp_path / "first"
    argv = ["--task", "copy", "--seq-len", "6", "--hidden", "12", "--lr", "0.02", "--seed", "3", "--steps", "2", "-q"]
    assert main(["train", *argv, "--cell", "gru", "--no-early-stop", "--lr-schedule", "cosine", "--out", str(first)]) == 0
    again = tmp_path / "again"
    # --hidden 64 is the flag's default, but given, so it overrides the file
    overrides = ["--lr", "0.5", "--hidden", "64"]
    assert main(["train", "--config", str(first / "config.json"), *overrides, "--out", str(again), "-q"]) == 0
    a, b = (json.loads((d / "config.json").read_text()) for d in (first, again))
    assert b["task"] == "copy" and b["task_options"] == a["task_options"] and b["task_options"]["seq_len"] == 6
    assert (b["lr"], b["hidden"]) == (0.5, 64)
    for key in ("cell", "seed", "steps", "stop_when_solved", "lr_schedule", "forget_bias"):
        assert b[key] == a[key], key
    # another task: the file's task options no longer apply
    other = tmp_path / "other"
    assert main(["train", "--config", str(first / "config.json"), "--task", "adding", "--out", str(other), "-q"]) == 0
    c = json.loads((other / "config.json").read_text())
    assert c["task"] == "adding" and c["task_options"]["seq_len"] == 100 and c["hidden"] == 12
    capsys.readouterr()


def test_config_does_not_apply_on_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path), "--config", "c.json"]) == 2
    assert capsys.readouterr().err == "train: --config does not apply with --resume (the run keeps its own); got 'c.json'\n"


def test_config_file_in_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tomllib", reason="TOML configs need Python 3.11 or later")
    path = tmp_path / "run.toml"
    path.write_text('task = "adding"\nhidden = 6\nsteps = 2\n[task_options]\nseq_len = 5\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "-q"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden"], config["steps"], config["task_options"]["seq_len"]) == (6, 2, 5)


def test_toml_config_with_an_unknown_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tomllib", reason="TOML configs need Python 3.11 or later")
    path = tmp_path / "run.toml"
    path.write_text('task = "adding"\nhiddn = 6\nsteps = 2\n')
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: --config must use only TrainConfig fields (") and err.endswith(f"{str(path)!r} has hiddn\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "must be a readable file"), ("{not json", "must hold a JSON object"), ("[1, 2]", "must hold a JSON object")],
)
def test_bad_config_file(content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train: --config {message}") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_config_json_records_the_task_options_with_their_defaults(tmp_path: Path) -> None:
    import inspect

    from lstmlab.tasks.adding import Adding

    out = tmp_path / "run"
    assert main(["train", "--seq-len", "9", "--hidden", "4", "--steps", "1", "--out", str(out), "-q"]) == 0
    defaults = {k: p.default for k, p in inspect.signature(Adding.__init__).parameters.items() if k != "self"}
    assert json.loads((out / "config.json").read_text())["task_options"] == {**defaults, "seq_len": 9}


# -- devices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "compare", "demo"])
def test_device_flag(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--device", "tpu", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith(f"{command}: --device must be cpu, cuda or cuda:N; got 'tpu'")
    assert main([command, "--device", "cuda:99", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith(f"{command}: --device must be a device this machine has")


def test_train_on_cpu_by_flag(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "2", "--device", "cpu", "--out", str(out), "-q"]) == 0
    assert json.loads((out / "config.json").read_text())["device"] == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (and a CUDA build of torch)")
def test_train_and_resume_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--device", "cuda", "--out", str(out), "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    assert json.loads((out / "config.json").read_text())["device"] == "cuda"
    assert main(["train", "--resume", str(out), "--steps", "6", "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 6


# -- threads -----------------------------------------------------------------------------------


def test_default_threads_follow_the_models_size() -> None:
    assert default_threads(TrainConfig(task="adding", hidden=64).check()) == 1
    assert default_threads(TrainConfig(task="reber", hidden=64).check()) == 1
    assert default_threads(TrainConfig(task="adding", hidden=512).check()) is None


def test_small_models_train_on_one_thread_and_the_callers_threads_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    run = Trainer.run

    def spy(self: Trainer) -> object:
        seen.append(torch.get_num_threads())
        return run(self)

    monkeypatch.setattr(Trainer, "run", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["train", *TINY, "--steps", "1", "--out", str(tmp_path / "a"), "-q"]) == 0
        assert torch.get_num_threads() == 2
        assert main(["train", *TINY, "--steps", "1", "--threads", "2", "--out", str(tmp_path / "b"), "-q"]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help_says_how_threads_are_chosen(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "default: 1 for small models" in " ".join(capsys.readouterr().out.split())


# -- progress without a terminal ---------------------------------------------------------------


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", *TINY, "--steps", "7", "--progress-every", "3", "--no-early-stop", "--out", str(tmp_path / "a")]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lstm step")]
    steps = [int(re.search(r"step (\d+)/7", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert steps == [3, 6, 7]
    pattern = r"^lstm step \d+/7  loss [-+0-9.e]+  val mse [0-9.e+-]+  [0-9.e+]+ steps/s  eta \d+s$"
    assert all(re.match(pattern, line) for line in lines), lines
    assert main([*argv[:-1], str(tmp_path / "b"), "--quiet"]) == 0
    assert "step 3/7" not in capsys.readouterr().err


# -- consistency -------------------------------------------------------------------------------


def test_task_flags_a_task_lacks_list_only_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--task", "adding", "--text", "x", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == "train: --text does not apply to task 'adding'; its flags are --seq-len, --batch\n"
    assert main(["train", "--task", "reber", "--seq-len", "5", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == "train: --seq-len does not apply to task 'reber'; its flags are --batch\n"


def test_compare_help_shows_the_cells_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: rnn,lstm,peephole,cifg,gru)" in text


def test_a_cell_refusing_its_settings_is_reported_by_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--cells", "lstm", "--backend", "zzz", *TINY, "--out", str(tmp_path / "c"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compare: --backend must be one of") and err.count("\n") == 1


def test_help_spells_optimizer_and_analyze_one_way(capsys: pytest.CaptureFixture[str]) -> None:
    texts = []
    for command in ("train", "compare", "demo", "inspect", "sample", "bench", "build"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        texts.append(capsys.readouterr().out)
    text = "\n".join(texts).lower()
    assert "optimiser" not in text and "analyse" not in text
    assert build_parser().parse_args(["inspect", "R", "--analyse", "7"]).analyze == 7  # the old spelling still works


def test_bench_writes_json_with_json_out_and_the_old_spelling() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "--json-out", "a.json"]).json_out == "a.json"
    assert parser.parse_args(["bench", "--json", "a.json"]).json_out == "a.json"


def test_bench_warns_when_the_machine_is_busy() -> None:
    assert busy_warning(load=0.5, cores=2) == ""
    warning = busy_warning(load=3.5, cores=2)
    assert warning.startswith("lstmlab bench: warning: the machine is busy (load average 3.5 on 2 cores)")
    assert isinstance(busy_warning(), str)  # this machine's own load, whatever it is


def test_an_unexpected_library_error_is_named_by_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lstmlab.cli import sample
    from lstmlab.errors import InvalidArgument

    def run(args: object) -> int:
        raise InvalidArgument("models", "cell", "must be one of rnn, lstm; got 'lsmt'")

    monkeypatch.setattr(sample, "run", run)
    assert main(["sample", "R"]) == 2
    assert capsys.readouterr().err == "sample: cell must be one of rnn, lstm; got 'lsmt'\n"


def test_on_a_terminal_the_final_bar_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(["train", *TINY, "--steps", "7", "--no-early-stop", "--out", str(tmp_path / "a")]) == 0
    text = screen.getvalue()
    assert "lstm step" not in text  # no plain lines on a terminal
    last = text.rstrip("\n").split("\r")[-1]  # what the terminal shows at the end
    assert "7/7" in last and "100%" in last and text.endswith("\n")


def test_regulariser_flags_reach_the_module_and_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    flags = ["--zoneout", "0.1", "--recurrent-dropout", "0.2", "--weight-dropout", "0.3", "--layer-norm"]
    assert (
        main(["train", "--task", "adding", "--seq-len", "5", "--hidden", "8", "--steps", "2", "-q", "--out", str(run), *flags])
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert (config["zoneout"], config["recurrent_dropout"], config["weight_dropout"], config["layer_norm"]) == (
        0.1,
        0.2,
        0.3,
        True,
    )
    import lstmlab

    module = lstmlab.load(run).model.recurrent
    assert (module.zoneout, module.recurrent_dropout, module.weight_dropout, module.config.spec.layer_norm) == (
        0.1,
        0.2,
        0.3,
        True,
    )
    # they define the run: --resume with another value is refused, naming the flag
    assert main(["train", "--resume", str(run), "--zoneout", "0.2", "--steps", "4", "-q"]) == 2
    assert "--zoneout" in capsys.readouterr().err
    # --no-layer-norm says "off" (over a --config that turns it on)
    args = build_parser().parse_args(["train", "--no-layer-norm"])
    assert args.layer_norm is False and "layer_norm" in args.given


@pytest.mark.parametrize(
    ("cell", "flags", "message"),
    [
        ("rnn", ["--zoneout", "0.1"], "--zoneout applies to LSTM and GRU cells; got cell 'rnn'"),
        ("gru-before", ["--layer-norm"], "--layer-norm needs the GRU's reset='after'"),
        ("lstm", ["--weight-dropout", "1.5"], "--weight-dropout must be a number in [0, 1]; got 1.5"),
    ],
)
def test_bad_regulariser_flags(
    cell: str, flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--task", "adding", "--cell", cell, "--steps", "1", "--out", str(tmp_path / "r"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_run_stored_before_the_regularisers_existed_resumes_without_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmlab import tasks

    monkeypatch.setattr(type(tasks.get("adding")), "regularisers", {"zoneout": 0.1})  # a task that now defaults to zoneout
    stored = {"task": "adding", "cell": "lstm", "forget_bias": 1.0}  # a config.json without the regulariser keys
    assert TrainConfig.from_dict(stored).check().regularisers() == {"zoneout": 0.1}  # a new run: the task's
    assert TrainConfig.from_stored(stored).check().regularisers() == {}  # the stored run: as it was


def test_a_tasks_default_regularisers_apply_where_the_cell_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmlab import tasks

    monkeypatch.setattr(type(tasks.get("adding")), "regularisers", {"dropout": 0.1, "zoneout": 0.1, "layer_norm": True})
    regularisers = lambda cell: TrainConfig(task="adding", cell=cell).check().regularisers()
    assert regularisers("lstm") == {"zoneout": 0.1, "layer_norm": True}
    assert regularisers("gru-before") == {"zoneout": 0.1}  # its layer norm does not exist
    assert regularisers("rnn") == {} and TrainConfig(task="adding", cell="rnn").check().dropout == 0.1
    with pytest.raises(ValueError, match="train: layer_norm applies to LSTM and GRU cells; got cell 'rnn'"):
        TrainConfig(task="adding", cell="rnn", layer_norm=True).check()  # asked for: refused, not dropped
