"""The `lstmlab inspect` page: one self-contained HTML file, no network, no external scripts.

Sections: a passage coloured by the activation of a chosen cell (layer and cell
selectors, cells ranked by the readable feature they follow best), gate saturation
scatter plots, a sample of the model's text, and the run's learning curves. Plots are
inline SVG written here; the only script is the inline one that recolours the passage.

The activations travel in the page as base64 int8 (value * 127), one block per layer,
cell-major (H blocks of N characters), so that one cell's row is a contiguous slice.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstmlab import _checks
from lstmlab.cells import LSTMSpec
from lstmlab.charlm.trace import FEATURES, LEFT, RIGHT, Ranked, rank_cells, saturation, trace
from lstmlab.errors import InvalidArgument, LstmlabError

GATE_COLOURS = {"i": "#1f77b4", "f": "#2ca02c", "o": "#d62728", "r": "#9467bd", "z": "#ff7f0e"}
GATE_NAMES = {"i": "input gate", "f": "forget gate", "o": "output gate", "r": "reset gate", "z": "update gate"}


@dataclass
class Curve:
    """A learning curve: x values (e.g. optimiser steps) against y values (loss, nats per character)."""

    label: str
    x: list[float]
    y: list[float]


@dataclass
class PageData:
    """Everything the page shows.

    passage: the N characters coloured; cells: per layer, (N, H) values in about [-1, 1];
    saturation: per layer, gate name -> (left fractions (H,), right fractions (H,));
    ranking: the best cells per feature; absent: features the passage lacks.
    """

    title: str
    summary: dict[str, str]
    passage: str
    cells: list[np.ndarray]
    ranking: list[Ranked]
    absent: list[str]
    saturation: list[dict[str, tuple[np.ndarray, np.ndarray]]]
    sample: str
    curves: list[Curve] = field(default_factory=list)
    curve_axis: str = "step"
    cell_name: str = "cell"


def _encode(cells: np.ndarray) -> tuple[str, float]:
    scale = float(max(1.0, np.abs(cells).max(initial=0.0)))
    q = np.clip(np.rint(cells / scale * 127), -127, 127).astype(np.int8)
    return base64.b64encode(np.ascontiguousarray(q.T).tobytes()).decode("ascii"), scale


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


# -- plots ---------------------------------------------------------------------------

_W, _H, _PAD = 360, 300, 44


def _axes(
    xlabel: str, ylabel: str, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]], width: int = _W
) -> list[str]:
    """Axis lines, ticks and labels in a width x _H box with the plot area inside _PAD."""
    x0, y0, x1, y1 = _PAD, _H - _PAD, width - 10, 10
    parts = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#444"/>',
        f'<text x="{(x0 + x1) / 2:.1f}" y="{_H - 6}" text-anchor="middle" class="ax">{_esc(xlabel)}</text>',
        f'<text x="12" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" class="ax" '
        f'transform="rotate(-90 12 {(y0 + y1) / 2:.1f})">{_esc(ylabel)}</text>',
    ]
    for px, label in xticks:
        parts.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + 4}" stroke="#444"/>')
        parts.append(f'<text x="{px:.1f}" y="{y0 + 16}" text-anchor="middle" class="tick">{_esc(label)}</text>')
    for py, label in yticks:
        parts.append(f'<line x1="{x0 - 4}" y1="{py:.1f}" x2="{x0}" y2="{py:.1f}" stroke="#444"/>')
        parts.append(f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end" class="tick">{_esc(label)}</text>')
    return parts


def saturation_svg(layer: int, gates: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Scatter of right- against left-saturated fraction, one dot per gate unit (Karpathy et al. 2015, Fig. 3)."""
    x0, y0, x1, y1 = _PAD, _H - _PAD, _W - 10, 10
    sx = lambda v: x0 + v * (x1 - x0)
    sy = lambda v: y0 - v * (y0 - y1)
    ticks = [0.0, 0.5, 1.0]
    parts = _axes(
        f"fraction left-saturated (< {LEFT})",
        f"fraction right-saturated (> {RIGHT})",
        [(sx(t), f"{t:g}") for t in ticks],
        [(sy(t), f"{t:g}") for t in ticks],
    )
    parts.append(f'<line x1="{sx(0)}" y1="{sy(1)}" x2="{sx(1)}" y2="{sy(0)}" stroke="#bbb" stroke-dasharray="4 3"/>')
    legend = []
    for k, (gate, (left, right)) in enumerate(gates.items()):
        colour = GATE_COLOURS.get(gate, "#333")
        for lv, rv in zip(left, right):
            parts.append(
                f'<circle cx="{sx(float(lv)):.1f}" cy="{sy(float(rv)):.1f}" r="2.2" fill="{colour}" fill-opacity="0.55"/>'
            )
        legend.append(
            f'<circle cx="{x1 - 80}" cy="{y1 + 8 + 14 * k}" r="4" fill="{colour}"/>'
            f'<text x="{x1 - 72}" y="{y1 + 12 + 14 * k}" class="tick">{_esc(GATE_NAMES.get(gate, gate))}</text>'
        )
    body = "".join(parts + legend)
    return (
        f'<figure><svg class="plot" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="gate saturation, layer {layer + 1}">{body}</svg><figcaption>layer {layer + 1}</figcaption></figure>'
    )


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** np.floor(np.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    start = np.ceil(lo / step) * step
    return [float(v) for v in np.arange(start, hi + step * 1e-9, step)]


def curves_svg(curves: list[Curve], xlabel: str, ylabel: str = "loss (nats per character)") -> str:
    """Line plot of the learning curves."""
    points = [(x, y) for c in curves for x, y in zip(c.x, c.y) if np.isfinite(y)]
    if not points:
        return "<p>No learning curve was recorded for this run.</p>"
    xs, ys = zip(*points)
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = min(ys), max(ys)
    if xhi == xlo:
        xhi = xlo + 1
    if yhi == ylo:
        yhi = ylo + 1
    ylo, yhi = ylo - 0.03 * (yhi - ylo), yhi + 0.03 * (yhi - ylo)
    width = 2 * _W
    x0, y0, x1, y1 = _PAD, _H - _PAD, width - 10, 10
    sx = lambda v: x0 + (v - xlo) / (xhi - xlo) * (x1 - x0)
    sy = lambda v: y0 - (v - ylo) / (yhi - ylo) * (y0 - y1)
    xticks = [(sx(t), f"{t:g}") for t in _nice_ticks(xlo, xhi)]
    parts = _axes(xlabel, ylabel, xticks, [(sy(t), f"{t:.2f}") for t in _nice_ticks(ylo, yhi)], width)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]
    for k, c in enumerate(curves):
        colour = colours[k % len(colours)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(c.x, c.y) if np.isfinite(y))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        ly = y1 + 10 + 16 * k
        parts.append(f'<line x1="{x1 - 150}" y1="{ly}" x2="{x1 - 130}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{x1 - 124}" y="{y1 + 14 + 16 * k}" class="tick">{_esc(c.label)}</text>')
    box = f'width="{width}" height="{_H}" viewBox="0 0 {width} {_H}"'
    return f'<svg class="plot" {box} role="img" aria-label="learning curves">{"".join(parts)}</svg>'


# -- the page ------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 2px 8px; text-align: left; }
tr.pick { cursor: pointer; } tr.pick:hover { background: #eef; } tr.chosen { background: #dde; }
#passage { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.45; font-size: 14px;
  border: 1px solid #ccc; padding: 8px; background: #fff; }
#passage span { border-radius: 2px; }
.controls { margin: 0.6em 0; display: flex; gap: 1.2em; align-items: center; flex-wrap: wrap; }
.legend { display: inline-block; width: 160px; height: 12px; vertical-align: middle;
  background: linear-gradient(to right, rgb(40,90,255), #fff, rgb(255,60,40)); border: 1px solid #ccc; }
.plot { background: #fff; } .ax { font-size: 12px; } .tick { font-size: 11px; fill: #333; }
figure { display: inline-block; margin: 0 1em 1em 0; } figcaption { text-align: center; font-size: 0.9em; }
pre.sample { white-space: pre-wrap; background: #f7f7f7; padding: 8px; border: 1px solid #ddd; }
.note { color: #666; font-size: 0.9em; }
"""

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("cell-data").textContent);
  var passage = document.getElementById("passage");
  var layerSel = document.getElementById("layer");
  var cellSel = document.getElementById("cell");
  var info = document.getElementById("cell-info");
  var stretch = document.getElementById("stretch");
  var spans = [];
  var text = data.passage;
  for (var t = 0; t < text.length; t++) {
    var s = document.createElement("span");
    s.textContent = text[t];
    passage.appendChild(s);
    spans.push(s);
  }
  var layers = data.layers.map(function (layer) {
    var raw = atob(layer.values);
    var q = new Int8Array(raw.length);
    for (var k = 0; k < raw.length; k++) { q[k] = (raw.charCodeAt(k) << 24) >> 24; }
    return { q: q, scale: layer.scale, size: layer.size };
  });
  function colour(v) {
    var a = Math.min(1, Math.abs(v));
    var r, g, b;
    if (v >= 0) { r = 255; g = Math.round(255 - 195 * a); b = Math.round(255 - 215 * a); }
    else { r = Math.round(255 - 215 * a); g = Math.round(255 - 165 * a); b = 255; }
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function fillCells() {
    var size = layers[+layerSel.value].size;
    var keep = Math.min(+cellSel.value || 0, size - 1);
    cellSel.innerHTML = "";
    for (var c = 0; c < size; c++) {
      var opt = document.createElement("option");
      opt.value = String(c);
      opt.textContent = "cell " + c;
      cellSel.appendChild(opt);
    }
    cellSel.value = String(keep);
  }
  function paint() {
    var layer = layers[+layerSel.value];
    var c = +cellSel.value;
    var n = text.length;
    var lo = Infinity, hi = -Infinity, top = 0;
    for (var t = 0; t < n; t++) {
      var v = layer.q[c * n + t] / 127;
      if (v < lo) { lo = v; }
      if (v > hi) { hi = v; }
      top = Math.max(top, Math.abs(v));
    }
    var gain = stretch.checked && top > 0 ? 1 / top : 1;
    for (var t = 0; t < n; t++) {
      var v = layer.q[c * n + t] / 127;
      spans[t].style.backgroundColor = colour(v * gain);
      spans[t].title = (v * layer.scale).toFixed(3);
    }
    info.textContent = "layer " + (+layerSel.value + 1) + ", cell " + c + ": values from " +
      (lo * layer.scale).toFixed(2) + " to " + (hi * layer.scale).toFixed(2);
    var rows = document.querySelectorAll("tr.pick");
    for (var k = 0; k < rows.length; k++) {
      var row = rows[k];
      var chosen = row.getAttribute("data-layer") === layerSel.value && row.getAttribute("data-cell") === cellSel.value;
      row.className = chosen ? "pick chosen" : "pick";
    }
  }
  layerSel.addEventListener("change", function () { fillCells(); paint(); });
  cellSel.addEventListener("change", paint);
  stretch.addEventListener("change", paint);
  var rows = document.querySelectorAll("tr.pick");
  for (var k = 0; k < rows.length; k++) {
    rows[k].addEventListener("click", function () {
      layerSel.value = this.getAttribute("data-layer");
      fillCells();
      cellSel.value = this.getAttribute("data-cell");
      paint();
    });
  }
  layerSel.value = String(data.start.layer);
  fillCells();
  cellSel.value = String(data.start.cell);
  paint();
})();
"""


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a <script> element: `<`, `>` and `&` are written as
    \\u003c, \\u003e and \\u0026 (the same string to a JSON parser), so no text in it, such as
    `<!--<script>` or `</script>`, can change how HTML5 reads the rest of the page."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(data: PageData) -> str:
    """The complete HTML page."""
    layers = []
    for cells in data.cells:
        values, scale = _encode(cells)
        layers.append({"values": values, "scale": scale, "size": int(cells.shape[1])})
    start = {"layer": data.ranking[0].layer, "cell": data.ranking[0].cell} if data.ranking else {"layer": 0, "cell": 0}
    payload = script_json({"passage": data.passage, "layers": layers, "start": start})

    layer_options = "".join(f'<option value="{k}">layer {k + 1}</option>' for k in range(len(data.cells)))
    rows = []
    for item in data.ranking:
        rows.append(
            f'<tr class="pick" data-layer="{item.layer}" data-cell="{item.cell}"><td>{_esc(item.feature)}</td>'
            f"<td>{item.layer + 1}</td><td>{item.cell}</td><td>{item.r:+.3f}</td></tr>"
        )
    feature_notes = "".join(f"<li><b>{_esc(name)}</b>: {_esc(text)}</li>" for name, text in FEATURES.items())
    absent = f'<p class="note">Not in this passage, so not ranked: {_esc(", ".join(data.absent))}.</p>' if data.absent else ""
    ranking = (
        "<table><thead><tr><th>feature</th><th>layer</th><th>cell</th><th>correlation r</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="note">No feature varies in this passage.</p>'
    )
    if any(data.saturation):
        saturation = "".join(saturation_svg(k, gates) for k, gates in enumerate(data.saturation) if gates)
    else:
        saturation = '<p class="note">This cell has no gates.</p>'
    summary = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in data.summary.items())

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(data.title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_esc(data.title)}</h1>
<table class="summary">{summary}</table>

<h2>Cells</h2>
<p>Each character is coloured by the {_esc(data.cell_name)} of the chosen cell after reading it
(blue negative, white zero, red positive; hover for the value). The table ranks the cells by
the absolute correlation of that value with a readable property of the text, as in Karpathy,
Johnson and Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks". Click a row to show its cell.</p>
<div class="controls">
<label>Layer <select id="layer">{layer_options}</select></label>
<label>Cell <select id="cell"></select></label>
<span><span class="legend"></span> &minus;1 &hellip; +1</span>
<label><input type="checkbox" id="stretch" checked> stretch the colours to the cell's largest |value|</label>
<span id="cell-info" class="note"></span>
</div>
<div id="passage"></div>
<h3>Cells that track something readable</h3>
<ul class="note">{feature_notes}</ul>
{absent}
{ranking}

<h2>Gate saturation</h2>
<p>For each gate, every unit is a dot: the fraction of characters at which it is left-saturated
(&lt; {LEFT}, nearly closed) against the fraction at which it is right-saturated (&gt; {RIGHT}, nearly open).
Units on the dashed diagonal are always saturated one way or the other; units near the origin are rarely saturated.</p>
{saturation}

<h2>Sample</h2>
<pre class="sample">{_esc(data.sample)}</pre>

<h2>Learning curves</h2>
{curves_svg(data.curves, data.curve_axis)}

<script type="application/json" id="cell-data">{payload}</script>
<script>{_JS}</script>
</body>
</html>
"""


# -- from a run ----------------------------------------------------------------------


def learning_curves(run_dir: str | Path) -> list[Curve]:
    """Training loss (logged means) and validation loss against the step, from the run's metrics.jsonl."""
    from lstmlab.run_dir import METRICS, read_metrics

    train, valid = Curve("training loss", [], []), Curve("validation loss", [], [])
    for record in read_metrics(Path(run_dir) / METRICS, owner="inspect"):
        curve = {"train": train, "eval": valid}.get(record.get("kind"))
        if curve is not None and isinstance(record.get("loss"), (int, float)):
            curve.x.append(float(record["step"]))
            curve.y.append(float(record["loss"]))
    return [c for c in (train, valid) if c.x]


def build(
    run_dir: str | Path,
    text: str | None = None,
    chars: int = 2000,
    analyse: int = 10000,
    sample_length: int = 500,
    temperature: float = 0.8,
    seed: int = 0,
) -> PageData:
    """Everything the page shows for the char-lm run in `run_dir`.

    text: the text to look at (it must use the run's characters); None takes the run's
    validation text. The first `chars` characters are coloured; the first `analyse`
    (at least `chars`) feed the ranking and the saturation statistics.
    """
    from lstmlab.charlm.sampling import check_options, default_prime, generate, model_step
    from lstmlab.charlm.task import CharLM
    from lstmlab.train import load_run

    _checks.positive_int("inspect", "chars", chars)
    _checks.positive_int("inspect", "analyse", analyse)
    try:
        check_options(temperature, 0, sample_length)
    except LstmlabError as error:
        raise error.relabel(owner="inspect", argument={"length": "sample_length"}.get(error.argument)) from None
    run = load_run(run_dir)
    task = run.task
    if not isinstance(task, CharLM):
        raise InvalidArgument("inspect", "run_dir", f"must hold a charlm run; {str(run_dir)!r} holds a {run.config.task!r} run")
    vocab = task.vocabulary
    passage_source = "the given text"
    if text is None:
        try:
            text = task.validation_text()
        except LstmlabError as error:
            raise InvalidArgument("inspect", "text", f"must be given, since the run's corpus cannot be read ({error})") from None
        passage_source = "the validation text"
    analysed = text[: max(chars, analyse)]
    ids = vocab.encode(analysed, argument="text")
    model = run.model.eval()
    x = torch.nn.functional.one_hot(ids, len(vocab)).to(model.readout.weight.dtype)
    layers = trace(model.recurrent, x)
    ranking, absent = rank_cells(layers, analysed)
    sat = [{gate: saturation(values) for gate, values in layer.gates.items()} for layer in layers]
    prime = default_prime(vocab)
    sample = "".join(generate(model_step(model), vocab, prime, sample_length, temperature, 0, seed))
    cfg = run.config
    last = run.checkpoint.get("last_eval") or {}
    summary = {
        "run": Path(run_dir).name,
        "cell": f"{cfg.cell}, {cfg.layers} x {cfg.hidden}, dropout {cfg.dropout:g}",
        "corpus": f"{task.source}, {len(vocab)} characters in the vocabulary",
        "trained": f"{run.step} steps of {task.batch_size} x {task.seq_len} characters",
        "passage": f"{len(analysed)} characters of {passage_source} ({min(chars, len(analysed))} shown)",
    }
    summary["sample"] = f"{sample_length} characters after {prime!r}, temperature {temperature:g}, seed {seed}"
    if isinstance(last.get("loss"), (int, float)):
        summary["validation loss"] = f"{last['loss']:.4f} nats ({last['loss'] / math.log(2):.4f} bits) per character"
    lstm = isinstance(model.recurrent.config.spec, LSTMSpec)
    return PageData(
        title=f"Inside a character-level {cfg.cell.upper()} language model",
        summary=summary,
        passage=analysed[:chars],
        cells=[layer.cell[:chars] for layer in layers],
        ranking=ranking,
        absent=absent,
        saturation=sat,
        sample=sample,
        curves=learning_curves(run_dir),
        curve_axis="optimiser step",
        cell_name="cell state tanh(c)" if lstm else "hidden state h",
    )
