"""A bounded pool of threads of its own for argon2 (password checks and new hashes).

Each check costs tens of milliseconds of CPU and 64 MiB; on the reactor's shared
thread pool a flood of logins would queue ahead of uploads, downloads and pages.
Here at most ``threads`` run at once and at most ``queue`` more wait; any further
call fails at once with ``Unavailable`` (503 with ``Retry-After``), so the memory and
time argon2 can take is bounded whatever clients send.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from devpi_twisted.model.errors import Unavailable

# argon2 at our parameters runs 4 lanes, on threads of its own: one check already
# keeps two cores busy, so the pool stays small and the rest wait briefly.
THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))
QUEUE = 16
RETRY_AFTER = 2.0


class HashingPool(Service):
    """Runs ``fn(*args)`` on the pool's threads (``pool(fn, *args)`` returns a Deferred);
    started and stopped with the service tree."""

    def __init__(self, reactor: IReactorFromThreads, threads: int = THREADS, queue: int = QUEUE) -> None:
        self._reactor = reactor
        self._threads = ThreadPool(minthreads=0, maxthreads=threads, name="devpi-passwords")
        self._limit = threads + queue
        self._pending = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        """Calls running or waiting."""
        return self._pending

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # untyped in twisted
        self._threads.start()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]  # untyped in twisted
        self._threads.stop()  # joins: at most the checks already running finish first

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._pending >= self._limit:
            self.refused += 1
            return fail(Unavailable("too many password checks at once, try again shortly",
                                    retry_after=RETRY_AFTER))
        self._pending += 1
        d = deferToThreadPool(self._reactor, self._threads, fn, *args)

        def done(result: Any) -> Any:
            self._pending -= 1
            return result

        return d.addBoth(done)
