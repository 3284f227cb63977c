"""What a run leaves on disk and a few edge values: the inspect page with hostile text (read by
an HTML5 parser), report.html replaced rather than followed when it is a symbolic link, file
modes under the user's umask, a one-character corpus's baseline, the state returned for T = 0,
and temperatures so small that the scaled logits overflow."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

import lstmlab
from lstmlab.charlm.corpus import Vocabulary
from lstmlab.charlm.page import script_json
from lstmlab.charlm.sampling import generate, next_distribution
from lstmlab.cli import main
from lstmlab.train import TrainConfig, Trainer

HOSTILE = 'He wrote <!--<script> and </script><b>"&amp;"</b> once.\n'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny charlm run whose corpus (and so its validation passage and sample) holds `HOSTILE`."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus.txt"
    corpus.write_text(("ROMEO:\nA line, and more.\n" + HOSTILE) * 30, encoding="utf-8")
    config = TrainConfig(
        task="charlm",
        task_options={"text": str(corpus), "seq_len": 16, "batch_size": 4},
        hidden=8,
        steps=2,
        eval_every=2,
        log_every=1,
    )
    for _ in Trainer(config, root / "run").run():
        pass
    return root / "run"


def test_script_json_escapes_every_angle_bracket_and_round_trips() -> None:
    value = {"passage": HOSTILE, "n": [1, 2]}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def test_inspect_page_with_hostile_text_parses_whole_in_html5(
    hostile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html5lib = pytest.importorskip("html5lib", reason="the HTML5 parser of this test: pip install html5lib")
    page = tmp_path / "page.html"
    argv = ["inspect", str(hostile_run), "--out", str(page), "--text", str(hostile_run.parent / "corpus.txt")]
    assert main([*argv, "--chars", "400", "--analyse", "400", "--sample-length", "20"]) == 0
    capsys.readouterr()
    tree = html5lib.parse(page.read_text(encoding="utf-8"), namespaceHTMLElements=False)
    data = tree.find(".//script[@id='cell-data']")
    assert data is not None
    payload = json.loads(data.text)  # the data block ends where it should ...
    assert HOSTILE in payload["passage"]
    # ... and everything after it is still the page's: the code script and the closing sections
    scripts = tree.findall(".//script")
    assert [s.get("id") for s in scripts] == ["cell-data", None]
    assert "getElementById" in scripts[1].text
    assert tree.find(".//div[@id='passage']") is not None and tree.find(".//select[@id='cell']") is not None


def test_inspect_replaces_a_symbolic_link_at_report_html(
    hostile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = hostile_run / "report.html"
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    try:
        assert main(["inspect", str(hostile_run), "--chars", "50", "--analyse", "100", "--sample-length", "5"]) == 0
        capsys.readouterr()
        assert target.read_text() == "keep me"
        assert not link.is_symlink() and link.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
        assert not list(hostile_run.glob("report.html.*"))  # no temporary file left
    finally:
        link.unlink(missing_ok=True)


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        for _ in Trainer(TrainConfig(task="adding", task_options={"seq_len": 8}, hidden=4, steps=2, eval_every=2), run).run():
            pass
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir()}
        assert modes == {"checkpoint.pt": 0o644, "config.json": 0o644, "metrics.jsonl": 0o644}
        os.umask(0o077)
        Trainer.resume(run, steps=3)  # rewrites metrics.jsonl and config.json
        assert {stat.S_IMODE(p.stat().st_mode) for p in run.iterdir()} <= {0o600, 0o644}
        assert stat.S_IMODE((run / "config.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_one_character_corpus_has_a_zero_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "a.txt"
    corpus.write_text("a" * 400, encoding="utf-8")
    argv = ["train", "--task", "charlm", "--text", str(corpus), "--seq-len", "8", "--batch", "2", "--hidden", "4"]
    assert main([*argv, "--steps", "1", "--out", str(tmp_path / "run"), "--quiet", "--json"]) == 0
    baseline = json.loads(capsys.readouterr().out)["baseline"]
    assert baseline == 0 and math.copysign(1.0, baseline) == 1.0
    assert main([*argv, "--steps", "1", "--out", str(tmp_path / "run2"), "--quiet"]) == 0
    assert "baseline 0)" in capsys.readouterr().out


@pytest.mark.parametrize("module", [lstmlab.LSTM(3, 4), lstmlab.GRU(3, 4), lstmlab.RNN(3, 4, num_layers=2)])
@pytest.mark.parametrize("batched", [True, False])
def test_zero_steps_return_a_copy_of_the_state(module: torch.nn.Module, batched: bool) -> None:
    shape = (module.num_layers, 2, 4) if batched else (module.num_layers, 4)
    x = torch.zeros((0, 2, 3) if batched else (0, 3))
    hx = (torch.randn(shape), torch.randn(shape)) if isinstance(module, lstmlab.LSTM) else torch.randn(shape)
    _, final = module(x, hx)
    for given, returned in zip(hx if isinstance(hx, tuple) else (hx,), final if isinstance(final, tuple) else (final,)):
        assert torch.equal(given, returned)
        assert returned.data_ptr() != given.data_ptr()  # not the caller's tensor, nor a view of it
        returned.add_(1.0)
        assert not torch.equal(given, returned)


@pytest.mark.parametrize("temperature", [1e-310, 5e-324, 1e-45])
def test_temperatures_that_overflow_the_logits_are_greedy(temperature: float) -> None:
    logits = torch.tensor([0.0, 2.0, 1.9, -1.0])
    probs = next_distribution(logits, temperature)
    assert probs.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert next_distribution(logits, temperature, top_k=2).tolist() == [0.0, 1.0, 0.0, 0.0]
    # -inf logits (a masked character) at an ordinary temperature stay a distribution, not greedy
    masked = next_distribution(torch.tensor([0.0, float("-inf"), 0.0]), 1.0)
    assert masked.tolist() == [0.5, 0.0, 0.5]


def test_sample_and_inspect_accept_a_tiny_temperature(hostile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["sample", str(hostile_run), "--length", "30", "--temperature", "1e-310"]) == 0
    tiny = capsys.readouterr().out
    assert main(["sample", str(hostile_run), "--length", "30", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == tiny  # the limit of T -> 0 is greedy
    page = tmp_path / "p.html"
    argv = ["inspect", str(hostile_run), "--out", str(page), "--chars", "50", "--analyse", "100", "--sample-length", "10"]
    assert main([*argv, "--temperature", "1e-310"]) == 0
    assert "temperature 1e-310" in page.read_text(encoding="utf-8")


def test_generate_with_a_tiny_temperature_is_the_argmax() -> None:
    def step(ids: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        return torch.tensor([0.0, 3.0, 1.0]).expand(ids.shape[0], 1, 3), state

    assert "".join(generate(step, Vocabulary("abc"), "a", 20, temperature=1e-310)) == "b" * 20
