"""The reactor interface of a serving process: what ``build_service`` and the services it
makes use of the reactor (``makeService`` casts the global reactor to it; tests pass
any reactor providing these)."""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore, IReactorFromThreads, IReactorPluggableNameResolver, IReactorProcess,
    IReactorSocket, IReactorTCP, IReactorThreads, IReactorTime, IReactorUNIX,
)


class IServerReactor(IReactorCore, IReactorTime, IReactorThreads, IReactorFromThreads,
                     IReactorTCP, IReactorUNIX, IReactorSocket, IReactorProcess,
                     IReactorPluggableNameResolver):
    """Time, threads, listening (TCP, unix, inherited sockets), worker processes and
    the name resolver of upstream requests."""
