"""Stopping cleanly: SIGTERM/SIGINT finish the current step; a diverging run stops with a reason."""

from __future__ import annotations

import signal
import threading


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite after every allowed rollback; the message says where and what to try."""


class StopSignals:
    """While active, SIGTERM and SIGINT only set `self.received` (the signal's name); the trainer checks it
    after each step, writes a checkpoint and returns. A second SIGINT (Ctrl-C twice) interrupts at once.
    Outside the main thread signals cannot be caught, and nothing is installed."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
