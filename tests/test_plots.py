"""The pictures: files written, and curves that stay apart when there are many."""

from __future__ import annotations

from pathlib import Path

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
