"""The reactor interface of a serving process: what ``build_service`` and the services it
makes use of the reactor (``makeService`` casts the global reactor to it; tests pass
any reactor providing these)."""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore, IReactorFDSet, IReactorFromThreads, IReactorPluggableNameResolver,
    IReactorProcess, IReactorSocket, IReactorTCP, IReactorThreads, IReactorTime, IReactorUNIX,
)


class IClientReactor(IReactorTCP, IReactorTime, IReactorPluggableNameResolver):
    """What a treq client needs of the reactor (its connections and timeouts)."""


class IServerReactor(IClientReactor, IReactorCore, IReactorThreads, IReactorFromThreads,
                     IReactorFDSet, IReactorUNIX, IReactorSocket, IReactorProcess):
    """Time, threads, file descriptors (txpostgres), listening (TCP, unix, inherited
    sockets), worker processes and the name resolver of upstream requests."""
