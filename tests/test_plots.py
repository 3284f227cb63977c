"""The pictures: files written, curves that stay apart when there are many, and commands that say when matplotlib is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lstmlab.cli import main
from lstmlab.errors import Unsupported
from lstmlab.experiments.plots import learning_curves, line_style


def test_every_curve_of_a_large_comparison_has_its_own_style() -> None:
    styles = [line_style(k) for k in range(12)]  # the eleven cells of a variant comparison, and one more
    assert len(set(styles)) == len(styles)
    assert line_style(0) == ("-", "C0") and line_style(10) == ("--", "C0")


def test_learning_curves_write_a_png_for_few_and_many_cells(tmp_path: Path) -> None:
    for count in (3, 11):
        curves = {f"cell{k}": [(0, 1.0), (50, 0.5 / (k + 1)), (100, 0.1 / (k + 1))] for k in range(count)}
        path = learning_curves(curves, tmp_path / f"curves{count}.png", metric="mse", baseline=1 / 6, title="t")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.parametrize("command", ["compare", "demo"])
def test_commands_that_draw_ask_for_matplotlib_before_they_train(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    with pytest.raises(Unsupported, match=r"plots: needs matplotlib .*pip install 'lstmlab\[plots\]'"):
        learning_curves({"a": [(0, 1.0)]}, tmp_path / "c.png", metric="mse")
    assert main([command, "--cells", "rnn", "--steps", "1", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"{command}: needs matplotlib to draw its pictures; install it with pip install 'lstmlab[plots]'\n"
    assert not (tmp_path / "out").exists()
