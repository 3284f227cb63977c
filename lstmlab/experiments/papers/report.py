"""What `lstmlab paper NAME` writes: results.json, runs.csv, one CSV per table, figures.png
(when matplotlib is installed) and report.html.

The report follows the `lstmlab inspect` page's conventions (`lstmlab.charlm.page`): one
self-contained file, inline CSS and SVG, nothing fetched, no script but the data, which
travels as JSON made safe inside <script> (`script_json`).
"""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lstmlab.charlm.page import _CSS, Curve, curves_svg, script_json


@dataclass
class Table:
    """A table of the report: `key` names its CSV file (`table-KEY.csv`)."""

    key: str
    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Figure:
    """A figure, drawn as SVG in the report and as a panel of figures.png.

    kind "bars": `groups` on the x axis, `series` {label: one value per group};
    kind "boxes": `groups` are the boxes, `samples` one list of values per group;
    kind "lines": `curves`.
    """

    title: str
    kind: str
    ylabel: str
    xlabel: str = ""
    groups: list[str] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    samples: list[list[float]] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)


@dataclass
class Report:
    """Everything one `lstmlab paper` command reports."""

    paper: str
    title: str
    quick: bool
    settings: dict[str, Any]
    setup: list[str]
    tables: list[Table]
    figures: list[Figure]
    findings: list[str]
    runs: list[dict[str, Any]]
    elapsed_seconds: float = 0.0


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def cell_text(value: Any) -> str:
    """A table cell as text: numbers rounded, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# -- SVG -----------------------------------------------------------------------------

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_W, _H, _L, _B = 720, 300, 56, 70


def _frame(ylabel: str, lo: float, hi: float) -> tuple[list[str], Any]:
    y0, y1 = _H - _B, 12
    sy = lambda v: y0 - (v - lo) / ((hi - lo) or 1.0) * (y0 - y1)
    parts = [
        f'<line x1="{_L}" y1="{y0}" x2="{_W - 10}" y2="{y0}" stroke="#444"/>',
        f'<line x1="{_L}" y1="{y0}" x2="{_L}" y2="{y1}" stroke="#444"/>',
        f'<text x="14" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" class="ax" transform="rotate(-90 14 {(y0 + y1) / 2:.1f})">'
        f"{_esc(ylabel)}</text>",
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{_L - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
        parts.append(f'<line x1="{_L}" y1="{sy(v):.1f}" x2="{_W - 10}" y2="{sy(v):.1f}" stroke="#eee"/>')
    return parts, sy


def _xlabel(x: float, text: str) -> str:
    y = _H - _B + 14
    return f'<text x="{x:.1f}" y="{y}" text-anchor="end" class="tick" transform="rotate(-35 {x:.1f} {y})">{_esc(text)}</text>'


def _svg(figure: Figure, parts: list[str]) -> str:
    box = f'width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}"'
    return f'<svg class="plot" {box} role="img" aria-label="{_esc(figure.title)}">{"".join(parts)}</svg>'


def bars_svg(figure: Figure) -> str:
    values = [v for vs in figure.series.values() for v in vs if v is not None and math.isfinite(v)]
    hi = max(values + [1e-12])
    parts, sy = _frame(figure.ylabel, 0.0, hi)
    n, m = len(figure.groups), max(1, len(figure.series))
    slot = (_W - 10 - _L) / max(1, n)
    bar = slot * 0.8 / m
    for g, group in enumerate(figure.groups):
        parts.append(_xlabel(_L + slot * (g + 0.5), group))
        for s, (label, vs) in enumerate(figure.series.items()):
            v = vs[g]
            if v is None or not math.isfinite(v):
                continue
            x = _L + slot * g + slot * 0.1 + bar * s
            parts.append(
                f'<rect x="{x:.1f}" y="{sy(v):.1f}" width="{bar:.1f}" height="{sy(0) - sy(v):.1f}" fill="{_COLOURS[s % 10]}">'
                f"<title>{_esc(label)} {_esc(group)}: {v:.3g}</title></rect>"
            )
    for s, label in enumerate(figure.series):
        parts.append(f'<rect x="{_W - 150}" y="{14 + 14 * s}" width="10" height="10" fill="{_COLOURS[s % 10]}"/>')
        parts.append(f'<text x="{_W - 135}" y="{23 + 14 * s}" class="tick">{_esc(label)}</text>')
    return _svg(figure, parts)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile (linear interpolation between order statistics)."""
    v = sorted(values)

    def at(q: float) -> float:
        pos = q * (len(v) - 1)
        lo = math.floor(pos)
        return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)

    return at(0.25), at(0.5), at(0.75)


def boxes_svg(figure: Figure) -> str:
    values = [v for vs in figure.samples for v in vs if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.05 * ((hi - lo) or 1.0)
    parts, sy = _frame(figure.ylabel, lo - pad, hi + pad)
    slot = (_W - 10 - _L) / max(1, len(figure.groups))
    for g, (group, sample) in enumerate(zip(figure.groups, figure.samples)):
        cx = _L + slot * (g + 0.5)
        parts.append(_xlabel(cx, group))
        sample = [v for v in sample if math.isfinite(v)]
        if not sample:
            continue
        q1, med, q3 = quartiles(sample)
        w = slot * 0.3
        parts.append(f'<line x1="{cx:.1f}" y1="{sy(min(sample)):.1f}" x2="{cx:.1f}" y2="{sy(max(sample)):.1f}" stroke="#444"/>')
        parts.append(
            f'<rect x="{cx - w:.1f}" y="{sy(q3):.1f}" width="{2 * w:.1f}" height="{max(sy(q1) - sy(q3), 1):.1f}" '
            f'fill="#cfe0f3" stroke="#1f77b4"><title>{_esc(group)}: median {med:.4g}</title></rect>'
        )
        ym = sy(med)
        parts.append(f'<line x1="{cx - w:.1f}" y1="{ym:.1f}" x2="{cx + w:.1f}" y2="{ym:.1f}" stroke="#d62728" stroke-width="2"/>')
        for v in sample:
            parts.append(f'<circle cx="{cx:.1f}" cy="{sy(v):.1f}" r="2" fill="#333"/>')
    return _svg(figure, parts)


def figure_svg(figure: Figure) -> str:
    if figure.kind == "bars":
        return bars_svg(figure)
    if figure.kind == "boxes":
        return boxes_svg(figure)
    return curves_svg(figure.curves, figure.xlabel, figure.ylabel)


# -- files ---------------------------------------------------------------------------


def table_html(table: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(cell_text(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{_esc(table.caption)}</caption>"
    return f'<table class="results">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_EXTRA_CSS = """
table.results { margin: 0.8em 0 1.4em; } table.results td, table.results th { border-bottom: 1px solid #eee; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
"""


def render(report: Report) -> str:
    """The complete, self-contained HTML report."""
    mode = "quick mode (small budgets: a check of the qualitative result, not the paper's scale)" if report.quick else "full mode"
    settings = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in report.settings.items())
    setup = "".join(f"<li>{_esc(s)}</li>" for s in report.setup)
    findings = "".join(f"<li>{_esc(s)}</li>" for s in report.findings)
    tables = "".join(table_html(t) for t in report.tables)
    figures = "".join(f"<figure>{figure_svg(f)}<figcaption>{_esc(f.title)}</figcaption></figure>" for f in report.figures)
    payload = script_json({"runs": report.runs, "tables": [asdict(t) for t in report.tables]})
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(report.title)}</title>
<style>{_CSS}{_EXTRA_CSS}</style>
</head>
<body>
<h1>{_esc(report.title)}</h1>
<p class="note">{_esc(mode)}; {len(report.runs)} runs in {report.elapsed_seconds / 60:.1f} minutes.</p>
<table class="summary">{settings}</table>
<h2>What we find</h2>
<ul>{findings}</ul>
<h2>Results</h2>
{tables}
<h2>Figures</h2>
{figures}
<h2>How our set-up differs from the paper's</h2>
<ul>{setup}</ul>
<script type="application/json" id="report-data">{payload}</script>
</body>
</html>
"""


def draw_png(report: Report, path: Path) -> bool:
    """figures.png, one panel per figure; False (nothing written) without matplotlib."""
    try:
        from matplotlib.figure import Figure as MplFigure
    except ImportError:
        return False
    n = max(1, len(report.figures))
    fig = MplFigure(figsize=(8, 3.6 * n), dpi=100)
    for k, f in enumerate(report.figures):
        ax = fig.add_subplot(n, 1, k + 1)
        if f.kind == "bars":
            m = max(1, len(f.series))
            for s, (label, vs) in enumerate(f.series.items()):
                xs = [g + (s - (m - 1) / 2) * 0.8 / m for g in range(len(f.groups))]
                ax.bar(xs, [v if v is not None else 0.0 for v in vs], width=0.8 / m, label=label, color=_COLOURS[s % 10])
            ax.set_xticks(range(len(f.groups)), f.groups, rotation=30, ha="right", fontsize=8)
            ax.legend(fontsize=7)
        elif f.kind == "boxes":
            ax.boxplot([[v for v in s if math.isfinite(v)] or [math.nan] for s in f.samples])
            ax.set_xticks(range(1, len(f.groups) + 1), f.groups, rotation=30, ha="right", fontsize=8)
        else:
            for c in f.curves:
                ax.plot(c.x, c.y, label=c.label)
            ax.set_xlabel(f.xlabel)
            ax.legend(fontsize=7)
        ax.set_title(f.title, fontsize=9)
        ax.set_ylabel(f.ylabel, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return True


def write(report: Report, out_dir: str | Path) -> dict[str, str]:
    """Write the report's files into `out_dir`; returns {kind: path} of what was written
    (and "note" when the PNG was skipped)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    data = {
        "paper": report.paper,
        "title": report.title,
        "quick": report.quick,
        "settings": report.settings,
        "elapsed_seconds": report.elapsed_seconds,
        "findings": report.findings,
        "setup": report.setup,
        "tables": [asdict(t) for t in report.tables],
        "runs": report.runs,
    }
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    written["json"] = str(out / "results.json")
    columns = list(dict.fromkeys(k for run in report.runs for k in run))
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for run in report.runs:
            writer.writerow([json.dumps(run.get(c)) if isinstance(run.get(c), (dict, list)) else run.get(c) for c in columns])
    written["csv"] = str(out / "runs.csv")
    for table in report.tables:
        with open(out / f"table-{table.key}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table.columns)
            writer.writerows(table.rows)
    if draw_png(report, out / "figures.png"):
        written["png"] = str(out / "figures.png")
    else:
        written["note"] = "figures.png skipped: matplotlib is missing (pip install 'lstmlab[plots]'); report.html has the figures"
    (out / "report.html").write_text(render(report))
    written["html"] = str(out / "report.html")
    return written
