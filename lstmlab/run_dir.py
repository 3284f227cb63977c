"""A run directory's files: who owns the directory, how its files are written, how they are read back.

- `RunLock.acquire(run_dir)`: one process at a time owns a run directory. The lock is
  an advisory `flock` on `RUN_DIR/.lock`, which the operating system drops when its
  process ends, however it ends: a crashed or killed run never leaves the directory
  stuck. The file names the owner's process, for the message a second run gets.
- `write_atomic`, `append_line`: checkpoint and config are written to a temporary file
  beside the target and moved into place, so that a kill or a full disk leaves the
  last complete file; `remove_temporary_files` clears the temporary files a kill left.
- `read_metrics`: the records of `metrics.jsonl`, tolerating a torn last line (a kill or
  a full disk in the middle of a write).
- `read_checkpoint`: a checkpoint loaded with `torch.load(weights_only=True)`, so that
  a crafted file cannot run code, and checked to be one of ours; whatever is wrong
  (empty, truncated, not a torch file, foreign, hostile) is one `InvalidArgument`
  that names the file.

A file-system error (a read-only directory, a file where a directory should be, a
full disk) becomes an `InvalidArgument` about `run_dir` that names the file and the
system's reason (`run_dir_error`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lstmlab.errors import InvalidArgument

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
LOCK = ".lock"
RUN_FILES = (CHECKPOINT, CONFIG, METRICS)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]


def run_dir_error(owner: str, path: Path, error: OSError, doing: str) -> InvalidArgument:
    """`error` (raised while `doing` something to `path`) as an error about the run directory."""
    reason = error.strerror or type(error).__name__
    return InvalidArgument(owner, "run_dir", f"could not be {doing}: {str(path)!r} ({reason})")


# -- ownership --------------------------------------------------------------------


class RunLock:
    """This process's ownership of one run directory, until `release()` (or until the
    object is collected, or the process ends).

    Ownership is per process: a second `acquire` of a directory this process owns
    shares the lock (the lock file goes when the last holder releases it).
    """

    def __init__(self, key: tuple[int, int]) -> None:
        self._key = key
        self._finalizer = weakref.finalize(self, _drop, key)

    @classmethod
    def acquire(cls, run_dir: str | Path, owner: str = "train") -> RunLock:
        """Own `run_dir` (which must exist); InvalidArgument naming the process that owns it."""
        try:
            info = os.stat(run_dir)
        except OSError as error:
            raise run_dir_error(owner, Path(run_dir), error, "read") from None
        key = (info.st_dev, info.st_ino)
        held = _HELD.get(key)
        if held is not None:
            held[2] += 1
            return cls(key)
        path = Path(run_dir) / LOCK
        while True:
            try:
                file = open(path, "a+")
            except OSError as error:
                raise run_dir_error(owner, path, error, "written") from None
            if fcntl is None:  # pragma: no cover
                break
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                file.seek(0)
                holder = file.read().strip() or "another process"
                file.close()
                raise InvalidArgument(
                    owner,
                    "run_dir",
                    f"is in use by another run ({holder}); wait for it to end or choose another: {str(run_dir)!r}",
                ) from None
            # the previous owner may have removed the file between our open and our lock
            try:
                same = os.fstat(file.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            file.close()
        file.seek(0)
        file.truncate()
        file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        _HELD[key] = [file, path, 1]
        return cls(key)

    def release(self) -> None:
        """Give the directory up (the lock file goes with the process's last holder); idempotent."""
        self._finalizer()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# (device, inode) of a run directory this process owns -> [lock file, its path, holders]
_HELD: dict[tuple[int, int], list[Any]] = {}


def _drop(key: tuple[int, int]) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[2] -= 1
    if held[2] > 0:
        return
    del _HELD[key]
    file, path = held[0], held[1]
    with contextlib.suppress(OSError):
        path.unlink()  # while still locked, so that no one else holds a lock on the unlinked file
    file.close()


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Remove the temporary files (`checkpoint.pt.*.tmp`, ...) that a killed write left; return them."""
    removed = []
    for name in RUN_FILES:
        for tmp in run_dir.glob(f"{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


# -- writing ----------------------------------------------------------------------


def creation_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the process's umask (mkstemp's 0o600 ignores it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call write(file) on a temporary file beside `path`, then move it into place
    (replacing the entry at `path`: a symbolic link there is replaced, never followed).

    On any error (a full disk, an interrupt) the temporary file is removed and `path`
    keeps its previous content. The file gets the mode the user's umask gives new files.
    """
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, creation_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append `line` and a line break to the text file at `path`."""
    with open(path, "a") as f:
        f.write(line + "\n")


# -- reading ----------------------------------------------------------------------


def read_metrics(path: Path, owner: str = "train") -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (none if it is missing).

    A last line that is incomplete (no line break, or not valid JSON) is dropped: it is
    what a kill or a full disk leaves in the middle of a write. Any other line that is
    not a JSON object is an InvalidArgument naming the file and the line.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise run_dir_error(owner, path, error, "read") from None
    lines = text.split("\n")
    torn = lines.pop()  # "" after a complete last line
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and not torn:
                break  # an incomplete last line whose break made it to disk
            raise InvalidArgument(
                owner, "metrics", f"must hold one JSON object per line; {str(path)!r} line {number}: {error}"
            ) from None
        if not isinstance(record, dict):
            raise InvalidArgument(
                owner, "metrics", f"must hold one JSON object per line; {str(path)!r} line {number} holds {type(record).__name__}"
            )
        records.append(record)
    return records


# checkpoint key -> what it must be (a type or a tuple of types), for the checks of read_checkpoint
_CHECKPOINT_KEYS: dict[str, tuple[type, ...]] = {
    "config": (dict,),
    "step": (int,),
    "model": (dict,),
    "optimizer": (dict,),
    "task": (dict,),
}


def read_checkpoint(run_dir: str | Path, owner: str = "train") -> dict[str, Any]:
    """The checkpoint in `run_dir`, loaded safely (`weights_only=True`: tensors and plain
    data only, no code runs) and checked to be an lstmlab checkpoint.

    Raises InvalidArgument about `run_dir` that names the file and what is wrong with it.
    """
    import torch

    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise InvalidArgument(owner, "run_dir", f"must hold {CHECKPOINT}; got {str(run_dir)!r} without one")

    def bad(what: str) -> InvalidArgument:
        return InvalidArgument(owner, "run_dir", f"must hold a readable checkpoint; {str(path)!r} {what}")

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:
        raise bad(f"cannot be read ({error.strerror or type(error).__name__})") from None
    if not head:
        raise bad("is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it may not support
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises OSError, RuntimeError, EOFError, KeyError, UnpicklingError, ...
        if "weights only load failed" in str(error).lower():
            raise bad("holds Python objects beyond tensors and plain data, which are not loaded (that could run code)") from None
        if head == b"PK\x03\x04":
            raise bad("is truncated or corrupt (an incomplete torch file)") from None
        if isinstance(error, OSError) and error.strerror:
            raise bad(f"cannot be read ({error.strerror})") from None
        raise bad("is not a torch checkpoint") from None
    if not isinstance(checkpoint, dict):
        raise bad(f"is not an lstmlab checkpoint (it holds a {type(checkpoint).__name__})")
    for key, types in _CHECKPOINT_KEYS.items():
        if key not in checkpoint:
            raise bad(f"is not an lstmlab checkpoint (it has no {key!r})")
        if not isinstance(checkpoint[key], types) or isinstance(checkpoint[key], bool):
            raise bad(f"is not an lstmlab checkpoint (its {key!r} is a {type(checkpoint[key]).__name__})")
    if not isinstance(checkpoint.get("torch_rng"), torch.Tensor) or checkpoint["torch_rng"].dtype != torch.uint8:
        raise bad("is not an lstmlab checkpoint (it has no torch RNG state)")
    return checkpoint


def checkpoint_problem(run_dir: str | Path, error: Exception, owner: str = "train") -> InvalidArgument:
    """An error met while restoring the checkpoint in `run_dir` (a config that fails its
    checks, weights of the wrong shape), as an InvalidArgument that names the file."""
    path = Path(run_dir) / CHECKPOINT
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = " ".join(lines[:2]) if lines else type(error).__name__  # torch's: a heading, then the first mismatch
    return InvalidArgument(owner, "run_dir", f"must hold a readable checkpoint; {str(path)!r} does not fit lstmlab ({reason})")
