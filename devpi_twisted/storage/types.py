"""Narrow types for what the storage layer is given: the clock it reads, and where its
blocking work runs. Layers above may import them (storage imports nothing above it).

- ``Now``: a function returning seconds since the epoch (``time.time``, or a test's
  fixed clock); what a commit records as its time.
- ``Offload``: runs a blocking call elsewhere and fires with its result; ``ThreadOffload``
  is the one on a Twisted thread pool, as the blob stores use it.

Reactors are typed with twisted.internet.interfaces (IReactorThreads, IReactorTime...),
the narrowest one a collaborator uses; ``TxReactor`` is what txpostgres needs of one.
``shielded`` keeps a storage call running when the Deferred its caller awaits is
cancelled (adapter.py and the web layer use it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorThreads, IReadDescriptor, IWriteDescriptor
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.python.failure import Failure

P = ParamSpec("P")
T = TypeVar("T")

Now = Callable[[], float]


class Offload(Protocol):
    """Run ``fn(*args, **kwargs)`` where it may block (not on the reactor's thread)."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...


class ThreadOffload:
    """An Offload onto ``pool`` (by default the reactor's own thread pool)."""

    def __init__(self, reactor: IReactorThreads, pool: ThreadPool | None = None) -> None:
        self._reactor = reactor
        self.pool = pool if pool is not None else reactor.getThreadPool()

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self.pool, fn, *args, **kwargs)


class TxReactor(Protocol):
    """What txpostgres uses of the reactor: IReactorFDSet's readers and writers and
    IReactorTime's callLater (every reactor provides both)."""

    def addReader(self, reader: IReadDescriptor) -> None: ...

    def addWriter(self, writer: IWriteDescriptor) -> None: ...

    def removeReader(self, reader: IReadDescriptor) -> None: ...

    def removeWriter(self, writer: IWriteDescriptor) -> None: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: object,
                  **kw: object) -> IDelayedCall: ...


def shielded(inner: Deferred[T]) -> Deferred[T]:
    """``inner``'s result, in a Deferred whose cancellation leaves ``inner`` running.

    twisted.web cancels a handler when its client hangs up; a transaction must then
    finish (or fail) on its own terms rather than be cut off inside the driver."""
    outer: Deferred[T] = Deferred(lambda _: None)

    def forward(result: Any) -> None:
        if not outer.called:
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)

    inner.addBoth(forward)
    return outer
