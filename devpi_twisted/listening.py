"""Where the server listens: the endpoints of ``--host``/``--port``/``--unix-socket``
(ListenService, which reports the bound addresses in the server directory), the sockets
a ``--workers`` child inherits (AdoptService), and the root service that ends the
process with one line when it cannot listen (DevpiService).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IFileDescriptor, IListeningPort, IReactorSocket
from twisted.web.server import Site
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted import serverdir as sd
from devpi_twisted.reactors import IServerReactor

log = Logger()


class ListenService(Service):
    """Listens on every endpoint at start; a port that cannot be bound ends start-up."""

    def __init__(self, reactor: IServerReactor, descriptions: tuple[str, ...],
                 factory: Site, report: Path) -> None:
        self._reactor = reactor
        self._descriptions = descriptions
        self._factory = factory
        self._report = report
        self._ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        bound = []
        for description in self._descriptions:
            endpoint = serverFromString(
                self._reactor, description)
            failures: list[Failure] = []
            endpoint.listen(self._factory).addCallbacks(self._ports.append, failures.append)
            if failures:  # listening on the reactor's sockets is synchronous
                failures[0].raiseException()
            address = self._ports[-1].getHost()
            if isinstance(address, (IPv4Address, IPv6Address)):
                host = address.host if ":" not in address.host else f"[{address.host}]"
                bound.append(f"http://{host}:{address.port}")
            else:
                assert isinstance(address, UNIXAddress)
                bound.append(f"unix:{address.name!s}")
        sd.write_listening(self._report, bound)
        log.info("devpi-twisted serving on {addresses}", addresses=", ".join(bound))

    def stopService(self) -> Deferred[list[Any]]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        return _stop_listening(self)

    @property
    def ports(self) -> list[IListeningPort]:
        return list(self._ports)


class AdoptService(Service):
    """A worker's side of --workers: serve the listening sockets inherited from the main process."""

    FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}

    def __init__(self, reactor: IReactorSocket, fds: tuple[tuple[int, str], ...],
                 factory: Site) -> None:
        self._reactor = reactor
        self._fds = fds
        self._factory = factory
        self._ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        for fd, family in self._fds:
            # twisted's annotation asks for a ServerFactory of its default protocol type
            # (an invariant generic), which a Site is not to mypy: it is one at run time
            factory: Any = self._factory
            self._ports.append(self._reactor.adoptStreamPort(fd, self.FAMILIES[family], factory))
            os.close(fd)

    def stopService(self) -> Deferred[list[Any]]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        return _stop_listening(self)


def _stop_listening(service: ListenService | AdoptService) -> Deferred[list[Any]]:
    ports, service._ports = service._ports, []
    return gatherResults([maybeDeferred(p.stopListening) for p in ports])


def listening_sockets(service: ListenService) -> list[tuple[int, str]]:
    found = []
    for port in service.ports:
        address = port.getHost()
        if isinstance(address, IPv6Address):
            family = "INET6"
        elif isinstance(address, IPv4Address):
            family = "INET"
        else:
            family = "UNIX"
        found.append((IFileDescriptor(port).fileno(), family))
    return found


class DevpiService(MultiService):
    """The root service: a failure to listen ends the process with one line."""

    def __init__(self, lock: IO[bytes] | None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        self._lock = lock  # held while the process runs

    def attach(self, service: IService) -> None:
        """Add a child service (a typed ``service.setServiceParent(self)``)."""
        service.setServiceParent(self)

    def startService(self) -> None:
        try:
            super().startService()  # type: ignore[no-untyped-call]  # unannotated
        except (CannotListenError, OSError) as e:  # OSError: a unix socket path, .listening
            for service in reversed(list(self)):
                if service.running:
                    service.stopService()
            if isinstance(e, OSError):
                raise SystemExit(f"devpi-twisted: cannot start serving: "
                                 f"{sd.explain_oserror(None, e)}") from None
            raise SystemExit(f"devpi-twisted: cannot listen on {e.interface or '*'}:{e.port}: "
                             f"{e.socketError}") from None

