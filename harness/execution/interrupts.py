"""Interrupts that let cleanup run: CI cancels a job with SIGTERM, a user with Ctrl-C.

``trainmark``'s entry point runs every command inside ``sigterm_as_interrupt``, so a cancelled
sweep kills its worker process and a cancelled A/B removes its worktree exactly as Ctrl-C
does, instead of leaving an orphaned worker training on a CI runner.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises ``KeyboardInterrupt`` (in the main thread only: Python
    delivers signals there, and ``signal.signal`` refuses other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Let cleanup finish even if Ctrl-C is pressed again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
