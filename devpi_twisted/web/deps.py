"""What the web apps use of a request, of the mirror cache and of a replica's loop,
as narrow Protocols (twisted.web's Request, mirror/cache.py's Mirror and
replication/replica.py's Replica provide them): the apps depend on these, not on the
concrete classes. (HttpRequest: twisted's IRequest declares its methods without
types; this says what we call and with what.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IConsumer, IPushProducer
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from devpi_twisted.storage.values import MirrorConfig

Offload = Callable[..., Deferred[Any]]  # runs a blocking call on a thread


class HttpRequest(Protocol):
    """A twisted.web request as the handlers use it (what they read, what they call)."""

    @property
    def method(self) -> bytes: ...

    @property
    def uri(self) -> bytes: ...

    @property
    def path(self) -> bytes: ...

    @property
    def args(self) -> dict[bytes, list[bytes]]: ...

    @property
    def code(self) -> int: ...

    @property
    def content(self) -> IO[bytes] | None: ...

    @property
    def prepath(self) -> list[bytes] | None: ...

    @property
    def postpath(self) -> list[bytes] | None: ...

    @property
    def requestHeaders(self) -> Headers: ...

    @property
    def responseHeaders(self) -> Headers: ...

    @property
    def clientproto(self) -> bytes: ...

    @property
    def finished(self) -> int | bool: ...

    @property
    def channel(self) -> HTTPChannel | None: ...

    @property
    def producer(self) -> IPushProducer | None: ...

    @property
    def startedWriting(self) -> int | bool: ...

    sentLength: int  # (sendfile counts what it sent)

    def getHeader(self, key: bytes) -> bytes | None: ...

    def setHeader(self, name: bytes, value: bytes) -> None: ...

    def setResponseCode(self, code: int, message: bytes | None = None) -> None: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def notifyFinish(self) -> Deferred[None]: ...

    def processingFailed(self, reason: Failure) -> object: ...

    def getClientAddress(self) -> IAddress: ...

    def getRequestHostname(self) -> bytes: ...

    def getHost(self) -> IAddress: ...

    def isSecure(self) -> bool: ...

    def loseConnection(self) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


class MirrorStatus(Protocol):
    """Counters of the mirror cache shown by /+status and /+metrics."""

    stats: dict[str, int]
    offline: bool

    @property
    def upstream_stats(self) -> Mapping[str, int]: ...


class MirrorPages(Protocol):
    """The mirror cache as the simple pages and project views use it."""

    offline: bool

    def names(self, name: str, config: MirrorConfig) -> Mapping[str, str] | None: ...

    def names_stamp(self, name: str, config: MirrorConfig) -> str | None: ...

    def known(self, name: str, config: MirrorConfig, project: str) -> str | None: ...

    async def ensure(self, name: str, config: MirrorConfig, project: str) -> str: ...

    def forget(self, name: str, project: str) -> None: ...

    async def page_stored(self, name: str, project: str) -> None: ...


class MirrorFiles(Protocol):
    """The mirror cache as release file downloads use it."""

    def none_stored(self, name: str, project: str) -> bool: ...

    async def link_for(self, name: str, project: str,
                       relpath: str) -> Mapping[str, Any] | None: ...

    async def find_link(self, name: str, project: str, relpath: str,
                        config: MirrorConfig | None) -> Mapping[str, Any] | None: ...

    async def download(self, name: str, project: str, version: str, relpath: str,
                       start: Callable[[Mapping[str, str]], IConsumer | None],
                       checked: Callable[[], None] = ...,
                       config: MirrorConfig | None = None) -> int: ...


class ReplicaStatus(Protocol):
    """A replica's loop as /+status and /+metrics show it."""

    @property
    def primary_serial(self) -> int | None: ...

    def status(self) -> dict[str, Any]: ...


class ReplicaFiles(Protocol):
    """A replica's loop fetching a file's body from the primary on demand."""

    async def fetch_now(self, relpath: str) -> bool: ...

    async def download(self, relpath: str) -> tuple[Path, int, str]: ...


class MirrorCache(MirrorPages, MirrorFiles, MirrorStatus, Protocol):
    """All the web layer uses of the mirror cache (web/compose.py hands out the parts)."""


class ReplicaLoop(ReplicaStatus, ReplicaFiles, Protocol):
    """All the web layer uses of a replica's loop, writes relayed to the primary too."""

    async def relay(self, method: str, path: str, headers: Mapping[str, list[str]],
                    body: IO[bytes] | None,
                    timeout: float) -> tuple[int, bytes, list[tuple[str, str]], bytes]: ...
