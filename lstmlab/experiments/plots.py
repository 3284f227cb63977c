"""Pictures of the experiments, written to files (PNG).

matplotlib is an optional dependency (`pip install 'lstmlab[plots]'`): it is imported
when a picture is drawn, never by `import lstmlab`. Figures are made with
`matplotlib.figure.Figure`, not pyplot, so drawing touches no global state: no
backend is chosen, no window opens, nothing is left to close.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lstmlab.errors import Unsupported

INSTALL = "pip install 'lstmlab[plots]'"


def require(owner: str = "plots") -> None:
    """Raise `Unsupported` naming `owner` and how to install matplotlib if it is missing.

    For commands that draw at the end of a long run: they call it before the run.
    """
    _figure_class(owner)


def _figure_class(owner: str = "plots") -> Any:
    try:
        return importlib.import_module("matplotlib.figure").Figure
    except ImportError:
        raise Unsupported(owner, "", f"needs matplotlib to draw its pictures; install it with {INSTALL}") from None


def _figure(width: float, height: float) -> Any:
    return _figure_class()(figsize=(width, height), dpi=110)


def line_style(k: int) -> tuple[str, str]:
    """(line style, colour) of the k-th curve: ten colours, then the next line style."""
    return ("-", "--", "-.", ":")[(k // 10) % 4], f"C{k % 10}"


def learning_curves(
    curves: dict[str, list[tuple[int, float]]],
    path: str | Path,
    *,
    metric: str,
    baseline: float | None = None,
    title: str = "",
    log: bool = True,
) -> Path:
    """Held-out metric against step, one line per cell, the memoryless baseline dashed.

    Past ten cells the colours repeat with another line style; past six the legend
    moves beside the axes so that it hides no curve.
    """
    many = len(curves) > 6
    fig = _figure(7.6 if many else 6.4, 4.0)
    ax = fig.subplots()
    for k, (label, points) in enumerate(curves.items()):
        if points:
            steps, values = zip(*points)
            linestyle, color = line_style(k)
            ax.plot(steps, values, linestyle, color=color, label=label, linewidth=1.6)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="memoryless baseline")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if many:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8)
    return _save(fig, path)


def gradient_flow(series: dict[str, tuple[list[int], list[float]]], path: str | Path, *, title: str = "") -> Path:
    """Gradient norm reaching each step against the lag to the loss, log scale.

    Labels "CELL, at init" are drawn dashed, in the colour of the other "CELL, ..." line."""
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    colors: dict[str, str] = {}
    for label, (lags, norms) in series.items():
        group = label.split(",")[0]  # "rnn, at init" and "rnn, trained" share a colour
        colors.setdefault(group, f"C{len(colors)}")
        style = "--" if "init" in label else "-"
        ax.plot(lags, [max(n, 1e-300) for n in norms], style, color=colors[group], label=label, linewidth=1.6)
    ax.set_yscale("log")
    ax.set_xlabel("lag T - 1 - t (steps between input x_t and the loss)")
    ax.set_ylabel("mean ‖∂L/∂x_t‖")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path
