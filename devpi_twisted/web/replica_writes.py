"""A replica's root resource (ReplicaWrites): reads are served here, writes go to the primary
(spec/ops.md 6.6) and are answered once their serial has been replicated here."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from devpi_twisted.replication import protocol
from devpi_twisted.replication.client import PrimaryUnreachable
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest, ReplicaLoop
from devpi_twisted.web.site import ServerInfo, outside_url

READS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_log = Logger()


class ReplicaWrites(Resource):
    isLeaf = True

    def __init__(self, inner: IResource, replica: ReplicaLoop, primary_url: str, info: ServerInfo,
                 timeout: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in twisted
        self._inner = inner
        self._replica = replica
        self._primary_url = primary_url.rstrip("/")
        self._info = info
        self._timeout = timeout

    def render(self, request: Request) -> bytes | int:
        if request.method in READS:
            rendered: bytes | int = self._inner.render(request)
            return rendered
        done = Deferred.fromCoroutine(self._relay(request))
        done.addErrback(lambda f: _log.failure("relaying a write to the primary", f))
        return NOT_DONE_YET

    async def _relay(self, request: HttpRequest) -> None:
        headers: dict[str, list[str]] = {}
        for raw, values in request.requestHeaders.getAllRawHeaders():
            headers[raw.decode("latin-1")] = [v.decode("latin-1") for v in values]
        if not request.getHeader(b"X-Outside-Url"):  # the primary sees the client's origin
            headers["X-Outside-Url"] = [outside_url(request, self._info.outside_url)]
        content = request.content
        body = None
        if content is not None:
            content.seek(0, 2)
            body = content if content.tell() else None
            content.seek(0)
        try:
            code, phrase, passed, answer = await self._replica.relay(
                request.method.decode("ascii"), request.uri.decode("latin-1"), headers, body,
                self._timeout)
        except PrimaryUnreachable as e:
            _log.warn("A write could not be relayed to the primary: {error}", error=str(e))
            body_bytes = render.error(request, 502, f"the primary is unreachable: {e}")
            self._finish(request, body_bytes)
            return
        request.setResponseCode(code, phrase)
        base = outside_url(request, self._info.outside_url)
        for name, value in passed:
            if name.lower() == "location" and value.startswith(self._primary_url):
                value = base + value[len(self._primary_url):]
            request.responseHeaders.addRawHeader(name, value)
        request.setHeader(protocol.PROXY.encode(), b"replica")
        request.setHeader(b"Content-Length", b"%d" % len(answer))
        self._finish(request, answer)

    @staticmethod
    def _finish(request: HttpRequest, body: bytes) -> None:
        if request.finished or request.channel is None:
            return
        if body:
            request.write(body)
        request.finish()
