"""`lstmlab paper NAME`: Welch's t-test against known values, tiny-budget runs of each command
(every file written and parsed, every table row present, the report whole in an HTML5 parser),
and, marked slow, the qualitative results at the papers' lags."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from lstmlab.cli import main
from lstmlab.experiments.papers import PAPERS, paper_module
from lstmlab.experiments.papers.report import quartiles
from lstmlab.experiments.papers.stats import incomplete_beta, t_two_sided, welch

# -- Welch's t-test ------------------------------------------------------------------------

# Welch's (1947) test on two samples of 15, the worked example of Wikipedia's "Welch's t-test"
# article: t = -2.46, df = 24.99, p = 0.021.
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_matches_the_published_worked_example() -> None:
    r = welch(A1, A2)
    assert r.t == pytest.approx(-2.46, abs=0.005) and r.df == pytest.approx(24.99, abs=0.01)
    assert r.p == pytest.approx(0.021, abs=5e-4)
    swapped = welch(A2, A1)
    assert (swapped.t, swapped.df, swapped.p) == pytest.approx((-r.t, r.df, r.p))


def test_student_t_tails_match_their_closed_forms() -> None:
    for t in (0.3, 1.0, 2.5, 10.0):
        assert t_two_sided(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-10)  # Cauchy
        assert t_two_sided(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-10)
    assert t_two_sided(1.959963984540054, 1e9) == pytest.approx(0.05, rel=1e-6)  # the normal limit
    assert t_two_sided(0.0, 5) == pytest.approx(1.0)
    # equal variances and sizes: Welch's df is 2n - 2 and its t is Student's; p from the df = 6 closed form
    r = welch([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    assert r.df == pytest.approx(6.0) and r.t == pytest.approx(-2 / math.sqrt(5 / 6))
    # df = 6: p = 1 - s (1 + c^2/2 + 3 c^4/8) with s = t / sqrt(6 + t^2) = 2/3, c^2 = 5/9, i.e. 23/324
    assert r.p == pytest.approx(23 / 324)


def test_incomplete_beta_special_cases() -> None:
    for x in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert incomplete_beta(1, 1, x) == pytest.approx(x)
        assert incomplete_beta(3, 1, x) == pytest.approx(x**3)
        assert incomplete_beta(1, 4, x) == pytest.approx(1 - (1 - x) ** 4)
    assert incomplete_beta(0.5, 0.5, 0.25) == pytest.approx(2 / math.pi * math.asin(0.5))
    with pytest.raises(ValueError, match="x must be in"):
        incomplete_beta(1, 1, 1.5)


def test_welch_edge_cases() -> None:
    assert welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert welch([1.0, 1.0], [2.0, 2.0]).p == 0.0
    with pytest.raises(ValueError, match="b must hold at least two values; got 1"):
        welch([1.0, 2.0], [1.0])


def test_quartiles() -> None:
    assert quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)


# -- the commands on tiny budgets -----------------------------------------------------------


def run_tiny(name: str, out: Path, capsys: pytest.CaptureFixture[str], seeds: int = 2, *extra: str) -> dict:
    flags = ["--quick", "--seeds", str(seeds), "--minutes", "0.02", "--jobs", "1", *extra]
    assert main(["paper", name, *flags, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "ETA" in captured.err and "elapsed" in captured.err
    assert f"json: {out / 'results.json'}" in captured.out
    return json.loads((out / "results.json").read_text())


def check_files(out: Path, data: dict) -> None:
    html5lib = pytest.importorskip("html5lib", reason="the HTML5 parser of this test: pip install html5lib")
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data["runs"]) > 0
    for table in data["tables"]:
        with open(out / f"table-{table['key']}.csv", newline="") as f:
            assert len(list(csv.reader(f))) == len(table["rows"]) + 1
    if (out / "figures.png").exists():
        assert (out / "figures.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tree = html5lib.parse((out / "report.html").read_text(encoding="utf-8"), namespaceHTMLElements=False)
    scripts = tree.findall(".//script")
    assert [s.get("id") for s in scripts] == ["report-data"]  # the data, no code
    assert json.loads(scripts[0].text)["runs"] == json.loads(json.dumps(data["runs"]))
    for node in tree.iter():
        for attribute in ("src", "href"):
            assert not (node.get(attribute) or "").startswith(("http:", "https:", "//"))
    body_rows = tree.findall(".//table[@class='results']/tbody/tr")
    assert len(body_rows) == sum(len(t["rows"]) for t in data["tables"])
    assert tree.findall(".//{http://www.w3.org/2000/svg}svg") and tree.find(".//h2") is not None


def test_hochreiter1997_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_tiny("hochreiter1997", tmp_path, capsys, seeds=1)
    module = paper_module("hochreiter1997")
    rows = data["tables"][0]["rows"]
    assert [(r[0], r[3]) for r in rows] == [(e, module.CELLS[c].name) for e in module.QUICK for c in module.CELLS]
    assert {r[2] for r in rows} == {"8,440-39,740 (Table 1)", "5,040 (Table 2)"}  # the paper's figures beside ours
    check_files(tmp_path, data)


def test_gers2000_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    module = paper_module("gers2000")
    monkeypatch.setitem(module.STREAM, "quick", 2000)
    data = run_tiny("gers2000", tmp_path, capsys, seeds=1)
    assert [r[0] for r in data["tables"][0]["rows"]] == [module.CELL_NAMES[c] for c in module.CELLS]
    for run in data["runs"]:
        assert len(run["cell_state"]) == 2000 // module.CHUNK and run["first_error"] <= 2000
    check_files(tmp_path, data)


def test_greff2015_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    module = paper_module("greff2015")
    monkeypatch.setitem(module.QUICK, "steps", 2)
    monkeypatch.setitem(module.QUICK, "hidden", 4)
    monkeypatch.setattr(module, "CELLS", ("vanilla", "nfg"))  # two of the ten cells keep this test short
    data = run_tiny("greff2015", tmp_path, capsys, seeds=2)
    rows = data["tables"][0]["rows"]
    assert [(r[0], r[1].lower()) for r in rows] == [(t.key, c) for t in module.TASKS for c in module.CELLS]
    assert all(r[2] == 2 for r in rows)
    assert all(r[8] in ("reference", "worse", "better", "no difference") for r in rows)
    assert len(data["findings"]) == 6
    check_files(tmp_path, data)


def test_two_jobs_at_once_give_the_runs_of_one_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs bounded by their steps, not their shares, end the same in two worker processes as
    in this one, and come back in the plan's order."""
    module = paper_module("greff2015")
    monkeypatch.setitem(module.QUICK, "steps", 3)
    monkeypatch.setitem(module.QUICK, "hidden", 4)
    monkeypatch.setattr(module, "CELLS", ("vanilla", "gru"))
    outcomes = {}
    for jobs in ("1", "2"):
        out = tmp_path / jobs
        flags = ["--quick", "--seeds", "2", "--minutes", "10", "--jobs", jobs, "--only", "adding,temporal-order"]
        assert main(["paper", "greff2015", *flags, "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert ("2 at once" in err) == (jobs == "2")
        data = json.loads((out / "results.json").read_text())
        assert data["settings"]["jobs"] == int(jobs) and data["settings"]["experiments"] == "adding,temporal-order"
        outcomes[jobs] = [(r["experiment"], r["cell"], r["seed"], r["steps"], r["value"]) for r in data["runs"]]
    assert len(outcomes["1"]) == 8 and {r[3] for r in outcomes["1"]} == {3}
    assert outcomes["2"] == outcomes["1"]


@pytest.mark.parametrize("equal_steps", [False, True])
def test_a_run_slower_than_its_weight_gets_the_spare_time_only_when_runs_end_at_their_steps(
    monkeypatch: pytest.MonkeyPatch, equal_steps: bool
) -> None:
    """Four runs of weight 1 in a 10-minute budget; each needs a minute but the third needs
    five. Shares in proportion to weight give it 8 * 1/2 = 4 minutes and cut it; with
    `equal_steps` the two minutes the first two runs took predict that the last needs one,
    which leaves the third 8 - 1 = 7."""
    from lstmlab.experiments.papers import runner
    from lstmlab.train import TrainConfig

    now = [0.0]
    shares: list[float] = []

    def fake_train(run: runner.Run, share: float, after: object = None, threads: object = None) -> dict:
        shares.append(share)
        need = 5.0 if run.seed == 2 else 1.0
        now[0] += 60 * min(need, share)
        steps = 100 if need <= share else 80
        return {"solved": False, "solved_at": None, "steps": steps, "metric": "mse", "value": 0.5, "seconds": 60.0}

    monkeypatch.setattr(runner, "train_one", fake_train)
    monkeypatch.setattr(runner.time, "perf_counter", lambda: now[0])
    runs = [runner.Run("x", TrainConfig(seed=k)) for k in range(4)]
    rows = runner.execute(runs, 10.0, echo=lambda line: None, equal_steps=equal_steps)
    assert shares[:3] == pytest.approx([2.5, 3.0 if not equal_steps else 9 - 2, 4.0 if not equal_steps else 7.0])
    assert [r["steps"] for r in rows] == [100, 100, 100 if equal_steps else 80, 100]
    assert now[0] <= 600  # within the budget either way


def test_only_selects_experiments_by_key_or_prefix() -> None:
    from lstmlab.experiments.papers import select

    runs = paper_module("hochreiter1997").plan(False, 1)
    assert {r.experiment for r in select(runs, "4,2a")} == {"2a", "4 T=100", "4 T=500", "4 T=1000"}
    assert {r.experiment for r in select(runs, "copy")} == {"copy T=100", "copy T=200"}
    assert select(runs, None) == runs
    for bad in ("4 T=50", "", "2a,"):
        with pytest.raises(ValueError, match=f"paper: only must name experiments of this mode .*; got {bad.split(',')[-1]!r}"):
            select(runs, bad)


def test_paper_rejects_an_unknown_name_and_bad_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["paper", "lecun1998"]) == 2
    assert "paper: NAME must be one of hochreiter1997, gers2000, greff2015; got 'lecun1998'" in capsys.readouterr().err
    assert main(["paper", "gers2000", "--seeds", "0"]) == 2
    assert "paper: --seeds must be a positive int; got 0" in capsys.readouterr().err
    assert main(["paper", "gers2000", "--jobs", "0"]) == 2
    assert "paper: --jobs must be a positive int; got 0" in capsys.readouterr().err
    assert main(["paper", "gers2000", "--quick", "--only", "2a"]) == 2
    assert "paper: --only must name experiments of this mode (continual Reber); got '2a'" in capsys.readouterr().err
    assert set(PAPERS) == {"hochreiter1997", "gers2000", "greff2015"}


def test_paper_refuses_an_out_that_is_a_file_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    for out, reason in ((file, "File exists"), (file / "sub", "Not a directory")):
        assert main(["paper", "gers2000", "--quick", "--minutes", "10", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"paper: --out could not be created: {str(out)!r} ({reason})\n"  # no progress lines: nothing ran


# -- the qualitative results (slow) ------------------------------------------------------------


def train_once(task: str, options: dict, cell: str, lr: float, steps: int, seed: int = 0, **extra):
    from lstmlab.train import TrainConfig, Trainer

    settings = {"eval_every": 50, **extra}
    config = TrainConfig(task=task, task_options=options, cell=cell, lr=lr, steps=steps, seed=seed, backend="fused", **settings)
    trainer = Trainer(config)
    for _ in trainer.run():
        pass
    return trainer


@pytest.mark.slow
def test_lstm_solves_long_lag_at_p_100_and_the_rnn_does_not() -> None:
    """With the task's defaults (forget bias 5, layer normalisation) and lstmlab train's rate."""
    lstm = train_once("long-lag", {"seq_len": 100}, "lstm", lr=3e-3, steps=1000)
    assert lstm.config.forget_bias == 5.0 and lstm.config.layer_norm
    assert lstm.solved_at is not None
    rnn = train_once("long-lag", {"seq_len": 100}, "rnn", lr=3e-3, steps=1000)
    assert rnn.solved_at is None


@pytest.mark.slow
def test_without_layer_norm_the_forget_gate_lstm_stays_at_chance_at_p_100() -> None:
    """The control: the same LSTM, bias 5, layer normalisation off (docs/papers.md)."""
    lstm = train_once("long-lag", {"seq_len": 100}, "lstm", lr=3e-3, steps=1000, layer_norm=False)
    assert lstm.solved_at is None


@pytest.mark.slow
@pytest.mark.parametrize("task", ["temporal-order", "temporal-order-3", "adding-1997"])
def test_the_lstm_solves_each_1997_task_at_t_100_with_its_defaults(task: str) -> None:
    trainer = train_once(task, {"seq_len": 100}, "lstm", lr=3e-3, steps=2000, eval_every=100)
    assert trainer.solved_at is not None


@pytest.mark.slow
def test_the_lstm_solves_copy_at_t_10_with_its_defaults() -> None:
    """Measured: solved at step 2,750 with seed 11 (3,050 and 3,800 with seeds 1 and 0); with
    forget bias 1 and no layer norm 67% of the copied symbols were right after 5,000 steps
    (docs/papers.md, "The copy task")."""
    trainer = train_once("copy", {"seq_len": 10}, "lstm", lr=1e-2, steps=3500, seed=11)
    assert trainer.config.forget_bias == 5.0 and trainer.config.layer_norm
    assert trainer.solved_at is not None


@pytest.mark.slow
@pytest.mark.xfail(reason="measured: with seed 0 the NFG predicts a whole 100,000-symbol stream at step 1,200 (docs/papers.md)")
def test_lstm_without_forget_gate_fails_continual_reber_at_the_papers_stream_length() -> None:
    nfg = train_once("reber-continual", {}, "nfg", lr=1e-2, steps=2000, eval_every=100)
    assert nfg.solved_at is None
    assert nfg.last_eval is not None and nfg.last_eval["first_error"] < 100_000


@pytest.mark.slow
def test_without_a_forget_gate_the_cell_state_grows_with_the_stream_and_with_one_it_does_not() -> None:
    from lstmlab.experiments.papers.gers2000 import cell_state_magnitude

    options = {"eval_len": 10_000}
    nfg = train_once("reber-continual", options, "nfg", lr=1e-2, steps=500, eval_every=500, stop_when_solved=False)
    lstm = train_once("reber-continual", options, "lstm", lr=1e-2, steps=500, eval_every=500, stop_when_solved=False)
    grows, bounded = cell_state_magnitude(nfg, 10_000), cell_state_magnitude(lstm, 10_000)
    assert grows[-1] > 5 * grows[0] and all(a < b for a, b in zip(grows, grows[1:]))  # growing all along
    assert max(bounded) < 3 * bounded[0]
    assert lstm.last_eval is not None and lstm.last_eval["solved"]
