"""The inspect page in headless Chromium: it loads with no console errors and no
network requests, the layer and cell selectors change the colouring, and a
screenshot is not blank.

Needs Chromium (Debian: `apt-get install chromium`; or set LSTMLAB_CHROMIUM to a
Chromium or Chrome binary). Without it the test is skipped, except under CI (the
CI environment variable set), where its absence is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lstmlab.cli import main

HOW_TO_ENABLE = (
    "headless Chromium not found: install it (Debian/Ubuntu: apt-get install chromium) "
    "or set LSTMLAB_CHROMIUM to a Chromium or Chrome binary to run the browser test"
)

# Installed first in <head>: collects uncaught errors and console.error calls.
_CATCH = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push("error: " + (e.message || e.type)); }, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
</script>"""

# Appended at the end of <body>: exercises the selectors and writes what it saw into the DOM.
_EXERCISE = """<script>
(function () {
  var result = { errors: window.__errors };
  try {
    var spans = document.querySelectorAll("#passage span");
    var colours = function () { return Array.prototype.map.call(spans, function (s) { return s.style.backgroundColor; }); };
    var layer = document.getElementById("layer"), cell = document.getElementById("cell");
    result.spans = spans.length;
    result.layers = layer.options.length;
    result.cells = cell.options.length;
    var before = colours();
    cell.value = String((+cell.value + 1) % cell.options.length);
    cell.dispatchEvent(new Event("change"));
    var afterCell = colours();
    layer.value = String((+layer.value + 1) % layer.options.length);
    layer.dispatchEvent(new Event("change"));
    var afterLayer = colours();
    result.coloured = before.filter(function (c) { return c !== ""; }).length;
    result.cellChanges = before.filter(function (c, k) { return c !== afterCell[k]; }).length;
    result.layerChanges = afterCell.filter(function (c, k) { return c !== afterLayer[k]; }).length;
    result.resources = performance.getEntriesByType("resource").map(function (r) { return r.name; });
  } catch (e) {
    result.errors.push("harness: " + e);
  }
  var pre = document.createElement("pre");
  pre.id = "harness-result";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
})();
</script>"""


def _chromium() -> str:
    candidates = [os.environ.get("LSTMLAB_CHROMIUM", "")] + ["chromium", "chromium-browser", "google-chrome", "chrome"]
    for name in candidates:
        found = shutil.which(name) if name else None
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail(HOW_TO_ENABLE + " (CI must run it: .ci/run installs chromium)")
    pytest.skip(HOW_TO_ENABLE)


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page `lstmlab inspect` writes for a tiny two-layer LSTM trained a few steps on hostile text."""
    from lstmlab.train import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("inspect")
    corpus = root / "corpus.txt"
    # `<!--<script>` in the text: HTML5 would let it swallow the rest of the page unless `<` is escaped in the data block
    lines = 'He said "yes" (and [then] no).\nROMEO:\nA line, <!--<script> and "quoted (words)" here.\n'
    corpus.write_text(lines * 40, encoding="utf-8")
    config = TrainConfig(
        task="charlm",
        task_options={"text": str(corpus), "seq_len": 20, "batch_size": 4},
        cell="lstm",
        hidden=12,
        layers=2,
        steps=4,
        eval_every=2,
        log_every=1,
    )
    for _ in Trainer(config, root / "run").run():
        pass
    out = root / "report.html"
    assert main(["inspect", str(root / "run"), "--out", str(out), "--chars", "200", "--sample-length", "40"]) == 0
    return out


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page must not load anything from the network"
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_page_loads_and_selectors_recolour(page: Path, tmp_path: Path) -> None:
    browser = _chromium()
    html = page.read_text(encoding="utf-8")
    harnessed = tmp_path / "harnessed.html"
    harnessed.write_text(
        html.replace("<head>", "<head>" + _CATCH, 1).replace("</body>", _EXERCISE + "</body>", 1), encoding="utf-8"
    )
    with tempfile.TemporaryDirectory() as profile:
        done = _headless(browser, Path(profile), "--dump-dom", harnessed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="harness-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page's scripts did not run; stderr: {done.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert result["errors"] == []
    assert result["resources"] == []
    assert result["spans"] == 200 and result["layers"] == 2 and result["cells"] == 12
    assert result["coloured"] == 200
    assert result["cellChanges"] > 0, "choosing another cell must change the colouring"
    assert result["layerChanges"] > 0, "choosing another layer must change the colouring"


def test_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    import matplotlib.image

    browser = _chromium()
    shot = tmp_path / "page.png"
    with tempfile.TemporaryDirectory() as profile:
        done = _headless(browser, Path(profile), "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 900
    assert float(pixels.std()) > 0.02, "the screenshot is blank"
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50, "the screenshot has almost no colours: the passage was not coloured"
