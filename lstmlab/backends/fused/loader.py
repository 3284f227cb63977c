"""Compile the fused kernels (csrc/) on first use and cache the build.

The build lives in `$LSTMLAB_CACHE`, else `$XDG_CACHE_HOME/lstmlab`, else
`~/.cache/lstmlab`, in a folder keyed by a hash of every source and header, the
compiler flags, the torch and the Python version, so a changed file or torch gets a
fresh build and an unchanged one loads in a fraction of a second. Nothing about the
build tools is in the key, and a library already built for the key is imported
directly, without running ninja: which ninja is on the PATH (the system's, a venv's),
and the build log another ninja version left, never cause a rebuild. A line goes to
stderr whenever a build starts. Builds of one key take turns (`build_lock`), and a build
killed half-way blocks none after it. A loaded extension whose interface names differ from
`schema`'s is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

from lstmlab.backends.fused import schema

CSRC = Path(__file__).with_name("csrc")


def sources() -> list[Path]:
    """The C++ translation units, in a fixed order."""
    return sorted(CSRC.glob("*.cpp"))


def headers() -> list[Path]:
    """The C++ headers the translation units share (found in CSRC, on the include path)."""
    return sorted(CSRC.glob("*.h"))


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
    return flags + openmp_flags()


def openmp_flags() -> list[str]:
    """-fopenmp where torch runs its threads on OpenMP (compiling and linking): `at::parallel_for`
    is inlined from ATen's headers, and without the flag it compiles to a serial loop. The
    extension then links the libgomp.so.1 that torch has loaded, not a second runtime."""
    return ["-fopenmp"] if torch.backends.openmp.is_available() and sys.platform.startswith("linux") else []


OPENMP_PROBE = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def compiler_accepts(flags: list[str]) -> bool:
    """Whether the C++ compiler torch builds with ($CXX, else c++) compiles and links a small
    OpenMP program with `flags` (clang without libomp, for one, does not take -fopenmp)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        command = [os.environ.get("CXX", "c++"), *flags, "-x", "c++", "-", "-o", str(Path(folder) / "probe")]
        try:
            done = subprocess.run(command, input=OPENMP_PROBE, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def cache_dir() -> Path:
    """Where builds are cached (one sub-folder per source/flags/torch hash)."""
    if os.environ.get("LSTMLAB_CACHE"):
        return Path(os.environ["LSTMLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstmlab"


def build_key() -> str:
    """The cache key: a hash of the sources, headers, compiler flags, torch and Python versions
    (and of nothing about the build tools or the environment, such as the PATH)."""
    digest = hashlib.sha256()
    for path in sources() + headers():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join(cflags()).encode())
    digest.update(torch.__version__.encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def build_dir() -> Path:
    return cache_dir() / f"fused-{build_key()}"


def built_library(directory: Path, name: str) -> Path | None:
    """The extension library `name` built in `directory`, if there is one."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES + [".so", ".pyd"]:
        path = directory / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def import_library(name: str, path: Path) -> ModuleType:
    """Import the extension module `name` from the library at `path` (as torch's loader does)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {name} from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_built(directory: Path, name: str) -> ModuleType | None:
    library = built_library(directory, name)
    if library is None:
        return None
    try:
        return import_library(name, library)
    except ImportError:  # e.g. a library cut short by a killed build: build it again
        return None


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Hold the build folder's lock: one lstmlab build of a key at a time, across processes.

    The operating system releases it when its holder dies, so a killed build never leaves
    it stuck. While it is held no other lstmlab process builds here, so the `lock` file of
    torch's own builder found then was left by a killed build, and is removed (torch's
    builder would otherwise wait for it forever). Without fcntl (Windows), torch's alone.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(directory / "lstmlab-build.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"lstmlab: waiting for another process building the fused CPU kernels in {directory}", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (directory / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile() -> ModuleType:
    from torch.utils import cpp_extension

    directory = build_dir()
    name = f"lstmlab_fused_{build_key()}"
    module = _import_built(directory, name)
    if module is not None:
        return module
    directory.mkdir(parents=True, exist_ok=True)
    with build_lock(directory):
        module = _import_built(directory, name)  # built by the process this one waited for
        if module is not None:
            return module
        print(f"lstmlab: compiling the fused CPU kernels (a minute or so, once; cached in {directory})", file=sys.stderr)
        compile_flags, link_flags = cflags(), openmp_flags()
        if link_flags and not compiler_accepts(link_flags):
            print(
                f"lstmlab: the C++ compiler does not build OpenMP programs ({' '.join(link_flags)}); the fused "
                "CPU kernels are built without it, and their own loops run on one thread",
                file=sys.stderr,
            )
            compile_flags, link_flags = [f for f in compile_flags if f not in link_flags], []
        return cpp_extension.load(
            name=name,
            sources=[str(path) for path in sources()],
            extra_cflags=compile_flags,
            extra_ldflags=link_flags,
            extra_include_paths=[str(CSRC)],
            build_directory=str(directory),
        )


def load() -> ModuleType:
    """The compiled extension, building it if needed; raises RuntimeError naming the reason."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is not None:
        raise RuntimeError(_error)
    try:
        module = _compile()
    except Exception as exc:  # a missing compiler, ninja or headers surface as many exception types
        lines = [line for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1] if lines else type(exc).__name__
        _error = f"the fused CPU kernels could not be compiled ({type(exc).__name__}: {detail})"
        raise RuntimeError(_error) from exc
    disagreements = schema.mismatches(module)
    if disagreements:
        _error = "the fused CPU kernels do not match lstmlab/backends/fused/schema.py: " + "; ".join(disagreements)
        raise RuntimeError(_error)
    _module = module
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
