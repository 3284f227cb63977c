"""The fused kernels' build cache: the key ignores the build tools, a library already built
for the key is imported without running the build (whichever ninja is found), and a build
that does run always says so. No compiler runs here: the build is replaced by a stub."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from lstmlab.backends.fused import loader


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LSTMLAB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Calls of torch's cpp_extension.load, which returns a stub module instead of building."""
    from torch.utils import cpp_extension

    calls: list[dict] = []

    def load(**kwargs: object) -> ModuleType:
        calls.append(kwargs)
        return ModuleType(str(kwargs["name"]))

    monkeypatch.setattr(cpp_extension, "load", load)
    return calls


def test_key_ignores_the_path_and_the_ninja_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = loader.build_key()
    other = tmp_path / "venv-bin"
    other.mkdir()
    ninja = other / "ninja"
    ninja.write_text("#!/bin/sh\necho 1.11.1.git.kitware\n")
    ninja.chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path))
    assert loader.build_key() == key
    monkeypatch.setenv("PATH", "")
    assert loader.build_key() == key


def test_a_built_library_is_imported_without_a_build(
    cache: Path, builds: list[dict], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"lstmlab_fused_{loader.build_key()}"
    library = loader.build_dir() / f"{name}.so"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"")
    imported: list[tuple[str, Path]] = []
    monkeypatch.setattr(loader, "import_library", lambda n, p: imported.append((n, p)) or ModuleType(n))
    module = loader._compile()
    assert module.__name__ == name and imported == [(name, library)]
    assert builds == []  # ninja never ran, so neither its version nor its log could trigger a rebuild
    assert capsys.readouterr().err == ""


def test_a_build_says_so_every_time_it_starts(cache: Path, builds: list[dict], capsys: pytest.CaptureFixture[str]) -> None:
    loader._compile()
    assert len(builds) == 1 and builds[0]["build_directory"] == str(loader.build_dir())
    assert "compiling the fused CPU kernels" in capsys.readouterr().err
    # a library that cannot be imported (a killed build's) is built again, and that is said too
    (loader.build_dir() / f"lstmlab_fused_{loader.build_key()}.so").write_bytes(b"not a library")
    loader._compile()
    assert len(builds) == 2
    assert "compiling the fused CPU kernels" in capsys.readouterr().err


def test_a_lock_left_by_a_killed_build_is_removed(cache: Path, builds: list[dict]) -> None:
    """torch's builder waits forever on its `lock` file; one that no live lstmlab build holds is stale."""
    directory = loader.build_dir()
    directory.mkdir(parents=True)
    (directory / "lock").write_text("")  # as a build killed with Ctrl-C leaves it
    loader._compile()
    assert len(builds) == 1 and not (directory / "lock").exists()


@pytest.mark.skipif(os.name != "posix", reason="the build lock uses fcntl")
def test_builds_of_one_key_take_turns(cache: Path, builds: list[dict], capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys
    import time

    directory = loader.build_dir()
    directory.mkdir(parents=True)
    hold = (
        "import fcntl, sys, time; h = open(sys.argv[1], 'a'); fcntl.flock(h, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(1.5)"
    )
    lock = str(directory / "lstmlab-build.lock")
    with subprocess.Popen([sys.executable, "-c", hold, lock], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        (directory / "lock").write_text("")  # the holder's torch build in progress: untouched while it holds the lock
        start = time.monotonic()
        with loader.build_lock(directory):
            waited = time.monotonic() - start
            assert not (directory / "lock").exists()  # removed only once the holder had gone
    assert waited > 0.5
    assert "waiting for another process building the fused CPU kernels" in capsys.readouterr().err


def test_a_compiler_without_openmp_builds_without_it(
    cache: Path, builds: list[dict], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """clang without libomp rejects -fopenmp: the kernels are built without it rather than not at all."""
    monkeypatch.setattr(loader, "openmp_flags", lambda: ["-fopenmp"])
    probed: list[list[str]] = []
    monkeypatch.setattr(loader, "compiler_accepts", lambda flags: probed.append(flags) and False)
    loader._compile()
    assert probed == [["-fopenmp"]]
    assert len(builds) == 1 and "-fopenmp" not in builds[0]["extra_cflags"] and builds[0]["extra_ldflags"] == []
    assert "-O3" in builds[0]["extra_cflags"]
    assert "does not build OpenMP programs (-fopenmp)" in capsys.readouterr().err


def test_a_compiler_with_openmp_builds_with_it(cache: Path, builds: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "openmp_flags", lambda: ["-fopenmp"])
    monkeypatch.setattr(loader, "compiler_accepts", lambda flags: True)
    loader._compile()
    assert "-fopenmp" in builds[0]["extra_cflags"] and builds[0]["extra_ldflags"] == ["-fopenmp"]


def test_the_openmp_probe_runs_the_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    compiler = shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (c++) on the PATH")
    monkeypatch.delenv("CXX", raising=False)
    assert not loader.compiler_accepts(["-fopenmp", "--no-such-compiler-option"])
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    if "clang" not in version:  # GCC ships its OpenMP runtime; clang may lack libomp
        assert loader.compiler_accepts(["-fopenmp"])
    monkeypatch.setenv("CXX", "/no/such/compiler")
    assert not loader.compiler_accepts(["-fopenmp"])
