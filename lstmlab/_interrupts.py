"""Keeping Ctrl-C out of a block that must run to its end (an optimiser's update), or noting it for later."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within the block, SIGINT (Ctrl-C) is noted instead of handled; when the block ends,
    a noted signal goes to the handler that was installed (by default: KeyboardInterrupt,
    raised after the block).

    Only in the main thread and when a Python handler is installed (the signal is
    handled nowhere else); elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    noted: list[FrameType | None] = []

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        previous(signal.SIGINT, noted[0])


@contextmanager
def noted_interrupts() -> Iterator[list[FrameType | None]]:
    """Within the block, SIGINT (Ctrl-C) is noted in the list it yields instead of handled,
    for the code in the block to act on at a moment of its choosing (processes that must
    stop together). Only in the main thread; elsewhere the list stays empty."""
    noted: list[FrameType | None] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(frame)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
