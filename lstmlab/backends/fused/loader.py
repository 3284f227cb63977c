"""Compile the fused kernels (fused.cpp) on first use and cache the build.

The build lives in `$LSTMLAB_CACHE`, else `$XDG_CACHE_HOME/lstmlab`, else
`~/.cache/lstmlab`, in a folder keyed by a hash of the source, the compiler flags and
the torch version, so a changed source or torch gets a fresh build and an unchanged
one loads in a fraction of a second. One line goes to stderr while it compiles.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).with_name("fused.cpp")

_module: ModuleType | None = None
_error: str | None = None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cflags() -> list[str]:
    """Compiler flags: optimised, and vectorised with AVX2/FMA where the CPU has them."""
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    if platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma"} <= _cpu_flags():
        flags += ["-mavx2", "-mfma"]
    return flags


def cache_dir() -> Path:
    """Where builds are cached (one sub-folder per source/flags/torch hash)."""
    if os.environ.get("LSTMLAB_CACHE"):
        return Path(os.environ["LSTMLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstmlab"


def build_key() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(cflags()).encode())
    digest.update(torch.__version__.encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def build_dir() -> Path:
    return cache_dir() / f"fused-{build_key()}"


def _compile() -> ModuleType:
    from torch.utils import cpp_extension

    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"lstmlab_fused_{build_key()}"
    if not any(directory.glob(f"{name}*.so")) and not any(directory.glob(f"{name}*.pyd")):
        print(f"lstmlab: compiling the fused CPU kernels (once, cached in {directory})", file=sys.stderr, flush=True)
    return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=cflags(), build_directory=str(directory))


def load() -> ModuleType:
    """The compiled extension, building it if needed; raises RuntimeError naming the reason."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is not None:
        raise RuntimeError(_error)
    try:
        _module = _compile()
    except Exception as exc:  # a missing compiler, ninja or headers surface as many exception types
        lines = [line for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1] if lines else type(exc).__name__
        _error = f"the fused CPU kernels could not be compiled ({type(exc).__name__}: {detail})"
        raise RuntimeError(_error) from exc
    return _module


@torch.compiler.assume_constant_result
def error() -> str:
    """Why the extension is unavailable, or "" when it loads (building it if needed).

    torch.compile calls this once while tracing and keeps the answer as a constant.
    """
    try:
        load()
    except RuntimeError as exc:
        return str(exc)
    return ""


def reset() -> None:
    """Forget the loaded extension or the recorded failure (for tests)."""
    global _module, _error
    _module = _error = None
