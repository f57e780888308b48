"""A one-line progress display for long runs (rewritten in place with a carriage return)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    """Counts sent (in flight or done) and finished requests of a run and shows them on one
    refreshed line.

    `clock()` gives seconds since the run started. Mutated by `sent`/`finished`; `run` writes to
    its stream until `stop` is called, then writes the final line and a newline.
    """

    def __init__(self, total: int, clock: Callable[[], float], interval_s: float = 0.5) -> None:
        self._total = total
        self._clock = clock
        self._interval_s = interval_s
        self._sent = 0
        self._done = 0
        self._failed = 0
        self._stopped = asyncio.Event()

    def sent(self) -> None:
        self._sent += 1

    def finished(self, success: bool) -> None:
        self._done += 1
        self._failed += 0 if success else 1

    def text(self) -> str:
        elapsed = self._clock()
        rate = self._done / elapsed if elapsed > 0 else 0.0
        return (
            f"[serve_load] {self._done}/{self._total} done ({self._failed} failed), "
            f"{self._sent - self._done} in flight, {rate:.2f} req/s, {elapsed:.1f} s"
        )

    def stop(self) -> None:
        self._stopped.set()

    async def run(self, out: TextIO) -> None:
        while not self._stopped.is_set():
            out.write("\r" + self.text())
            out.flush()
            with contextlib.suppress(TimeoutError):  # the refresh tick, not an error
                await asyncio.wait_for(self._stopped.wait(), self._interval_s)
        out.write("\r" + self.text() + "\n")
        out.flush()
