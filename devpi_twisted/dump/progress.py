"""A progress line for long exports and imports: at most one every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

EVERY_SECONDS = 2.0


class Progress:
    def __init__(self, what: str, total: int, out: IO[str], every: float = EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._total = total
        self._out = out
        self._every = every
        self._clock = clock
        self._started = self._last = clock()
        self.count = 0

    def step(self, count: int = 1) -> None:
        self.count += count
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        count = f"{self.count}/{self._total} files ({100 * self.count // self._total}%)" \
            if self._total else f"{self.count} files"
        self._out.write(f"devpi-twisted: {self._what} {count}, "
                        f"{now - self._started:.1f}s\n")
        self._out.flush()

    def done(self) -> float:
        """Print the final line; returns the seconds taken."""
        now = self._clock()
        self._line(now)
        return now - self._started
