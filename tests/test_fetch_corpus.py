"""benchmarks/fetch_tinyshakespeare.py: writes the corpus only when its SHA-256 is right.
Uses file:// URLs: no network."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fetch_tinyshakespeare.py"


@pytest.fixture
def fetch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_tinyshakespeare", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_wrong_file_is_refused_and_nothing_written(fetch: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_text("not shakespeare\n")
    dest = tmp_path / "data" / "tinyshakespeare.txt"
    with pytest.raises(SystemExit, match="not tiny-shakespeare"):
        fetch.main([str(dest), "--url", source.as_uri()])
    assert not dest.exists() and not list(tmp_path.rglob("*.tmp"))


def test_the_right_file_is_written_and_then_kept(
    fetch: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "input.txt"
    source.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    monkeypatch.setattr(fetch, "SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    dest = tmp_path / "data" / "tinyshakespeare.txt"
    assert fetch.main([str(dest), "--url", source.as_uri()]) == 0
    assert dest.read_bytes() == source.read_bytes()
    assert "SHA-256 checked" in capsys.readouterr().out
    source.unlink()  # a second run does not download again
    assert fetch.main([str(dest), "--url", source.as_uri()]) == 0
    assert "already holds" in capsys.readouterr().out


def test_an_unreachable_url_is_one_message(fetch: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot download"):
        fetch.main([str(tmp_path / "x.txt"), "--url", (tmp_path / "missing.txt").as_uri()])
