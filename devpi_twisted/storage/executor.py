"""Where blocking database calls run: one dedicated thread, or inline for fast tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class Executor(Protocol):
    """Runs blocking database calls, one at a time, in the order asked."""

    def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...

    def stop(self) -> None: ...


class InlineExecutor:
    """Runs each call at once on the calling thread (tests, command-line tools)."""

    def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        try:
            return succeed(fn(*args, **kwargs))
        except BaseException:
            return fail()

    def stop(self) -> None:
        pass


class ThreadExecutor:
    """Runs calls one at a time, in order, on a single thread of its own."""

    def __init__(self, reactor: IReactorFromThreads, name: str) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._pool.start()

    def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, fn, *args, **kwargs)

    def stop(self) -> None:
        self._pool.stop()
