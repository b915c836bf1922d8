"""A bounded pool of its own for argon2 (password checks and new hashes).

Each check costs tens of milliseconds of CPU and 64 MiB; on the reactor's shared
thread pool a flood of logins would queue ahead of uploads, downloads and pages.
Here at most ``threads`` run at once and at most ``queue`` more wait; any further
call fails at once with ``Unavailable`` (503 with ``Retry-After``), so the memory and
time argon2 can take is bounded whatever clients send.

The checks themselves run in child processes (``processes``, the default: at most one
per thread, childcalls.Child, started at the first check and kept): argon2's 64 MiB
per check is then never part of the server's own peak resident size. Each thread
only waits for its child. ``fn`` must be a module-level function taking and giving
JSON values. A child that dies (killed, out of memory) fails the check it had; the
next check starts another. A child ends when the server does, even killed with -9.
Given a ``clock``, the children end after ``idle`` seconds without a check (checked
passwords are remembered, so checks come in bursts: logins, new clients), and the
next check starts them again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from devpi_twisted.childcalls import Child
from devpi_twisted.model.errors import Unavailable

# argon2 at our parameters runs 4 lanes, on threads of its own: one check already
# keeps two cores busy, so the pool stays small and the rest wait briefly.
THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))
QUEUE = 16
RETRY_AFTER = 2.0
IDLE = 120.0  # seconds without a check before the children end


class HashingPool(Service):
    """Runs ``fn(*args)`` on the pool's threads (``pool(fn, *args)`` returns a Deferred);
    started and stopped with the service tree."""

    def __init__(self, reactor: IReactorFromThreads, threads: int = THREADS, queue: int = QUEUE,
                 processes: bool = True, clock: IReactorTime | None = None,
                 idle: float = IDLE) -> None:
        """``processes``: run each call in a child process (False: on the thread);
        ``clock``: end the children after ``idle`` seconds without a call."""
        self._reactor = reactor
        self._threads = ThreadPool(minthreads=0, maxthreads=threads, name="devpi-passwords")
        self._limit = threads + queue
        self._pending = 0
        self.refused = 0
        self._processes = processes
        self._idle_children: list[Child] = []  # started, not in a call
        self._lock = threading.Lock()
        self._clock, self._idle = clock, idle
        self._closing: IDelayedCall | None = None

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
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        self._close_children()

    def _close_idle(self) -> None:
        """The idle time is up: the children end, waited for on a pool thread (never on
        the reactor's)."""
        self._closing = None
        self._threads.callInThread(self._close_children)

    def _close_children(self) -> None:
        """End the children not in a call (all of them, when nothing is pending)."""
        with self._lock:
            children, self._idle_children = self._idle_children, []
        for child in children:
            child.close()

    def _in_child(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a child of its own (on a pool thread, which waits)."""
        with self._lock:
            child = self._idle_children.pop() if self._idle_children else Child()
        try:
            return child.call(fn, *args)
        finally:
            if child.pid is not None:  # alive: for the next call
                with self._lock:
                    self._idle_children.append(child)

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._pending >= self._limit:
            self.refused += 1
            return fail(Unavailable("too many password checks at once, try again shortly",
                                    retry_after=RETRY_AFTER))
        self._pending += 1
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        if self._processes:
            d = deferToThreadPool(self._reactor, self._threads, self._in_child, fn, *args)
        else:
            d = deferToThreadPool(self._reactor, self._threads, fn, *args)

        def done(result: Any) -> Any:
            self._pending -= 1
            if self._pending == 0 and self._processes and self._clock is not None:
                self._closing = self._clock.callLater(self._idle, self._close_idle)
            return result

        return d.addBoth(done)
