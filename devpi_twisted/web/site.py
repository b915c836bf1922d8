"""The twisted.web Site and Request: devpi's headers on every response, body size
limits enforced while the body arrives, outside-URL mount points stripped before
routing. (Twisted's Request already percent-decodes ``postpath``.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from devpi_twisted import __version__
from devpi_twisted.web.metrics import RequestMetrics, route_of

# Bodies of management (JSON) requests; uploads get --max-request-body-size.
MAX_JSON_BODY = 10 * 1024 * 1024
_SPOOL_IN_MEMORY = 256 * 1024


@attrs.frozen
class ServerInfo:
    """What the web layer shows about this node."""

    uuid: str
    serverdir: str
    role: str = "standalone"
    host: str | None = None
    port: int | None = None
    outside_url: str | None = None
    max_body: int = 1024 * 1024 * 1024
    requests_only: bool = False
    version: str = __version__


def _is_upload(method: bytes, path: bytes) -> bool:
    """POST/PUSH to an index or a file (upload, push, toxresult) may carry big bodies."""
    if method not in (b"POST", b"PUSH"):
        return False
    parts = [p for p in path.split(b"?", 1)[0].split(b"/") if p]
    return len(parts) >= 2 and not parts[0].startswith(b"+")


class DevpiRequest(Request):
    """Adds devpi's response headers and refuses oversized bodies without storing them.
    Upload forms are parsed by us, streaming from the spooled body, not by twisted.web
    (which would read a whole multipart body into memory)."""

    devpi_serial: int | None = None  # set by a handler that committed a change
    devpi_route = "other"  # label for /+metrics, set when the resource is looked up
    devpi_started = 0.0
    body_too_large = False
    _body_limit = MAX_JSON_BODY
    _body_seen = 0

    def gotLength(self, length: int | None) -> None:
        site = self.channel.site
        method, path = getattr(self.channel, "_command", b""), getattr(self.channel, "_path", b"")
        self._body_limit = site.info.max_body if _is_upload(method, path) else MAX_JSON_BODY
        if length is not None and length > self._body_limit:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_seen += len(data)
        if self._body_seen > self._body_limit:
            if not self.body_too_large:
                self.body_too_large = True
                self.content.seek(0)
                self.content.truncate()
            return
        if not self.body_too_large:
            super().handleContentChunk(data)

    def process(self) -> None:
        self.devpi_started = time.monotonic()
        if self.body_too_large:
            self.site = self.channel.site
            self.setResponseCode(413)
            self.setHeader(b"Content-Type", b"application/json")
            limit = self._body_limit
            body = {"message": f"request body larger than the {limit} bytes accepted here"}
            self.write(json.dumps(body).encode())
            self.finish()
            return
        super().process()

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self.site.add_headers(self)
        super().write(data)


class DevpiSite(Site):
    requestFactory = DevpiRequest
    displayTracebacks = False

    log_events = Logger()

    def __init__(self, resource: IResource, info: ServerInfo, serial: Callable[[], int],
                 access_log: bool = False, metrics: RequestMetrics | None = None,
                 primary_uuid: Callable[[], str] | None = None, **kwargs: Any) -> None:
        """``primary_uuid``: on a replica, its primary's uuid once known (sent as
        X-Devpi-Primary-Uuid instead of our own)."""
        super().__init__(resource, parsePOSTFormSubmission=False, **kwargs)
        self.info = info
        self._primary_uuid = primary_uuid
        self._access_log = access_log
        self.metrics = metrics if metrics is not None else RequestMetrics()
        self._serial = serial
        self._fixed_headers = [
            (b"X-Devpi-Api-Version", b"2"),
            (b"X-Devpi-Server-Version", f"devpi-twisted {info.version}".encode()),
            (b"X-Devpi-Uuid", info.uuid.encode()),
            (b"X-Devpi-Primary-Uuid", info.uuid.encode()),
            (b"X-Devpi-Master-Uuid", info.uuid.encode()),
        ]

    def add_headers(self, request: DevpiRequest) -> None:
        for name, value in self._fixed_headers:
            request.setHeader(name, value)
        primary = self._primary_uuid() if self._primary_uuid is not None else ""
        if primary:
            request.setHeader(b"X-Devpi-Primary-Uuid", primary.encode())
            request.setHeader(b"X-Devpi-Master-Uuid", primary.encode())
        serial = request.devpi_serial if request.devpi_serial is not None else self._serial()
        request.setHeader(b"X-Devpi-Serial", b"%d" % serial)

    def log(self, request: Request) -> None:
        """Called by twisted.web once a response ended: counts it for /+metrics and,
        with --access-log (or --debug), logs it in the combined log format."""
        started = getattr(request, "devpi_started", 0.0)
        seconds = time.monotonic() - started if started else 0.0
        route = getattr(request, "devpi_route", "other")
        method = request.method.decode("latin-1")
        self.metrics.observe(route, method if method in _METHODS else "other", request.code,
                             seconds)
        if self._access_log:
            access_event(self.log_events, request, seconds)

    def getResourceFor(self, request: Request) -> IResource:
        prefix = mount_path(request, self.info.outside_url)
        if prefix:
            wanted = prefix.strip("/").encode("utf-8").split(b"/")
            if request.postpath[:len(wanted)] == wanted:
                request.postpath = request.postpath[len(wanted):] or [b""]
        route = route_of(request.postpath, request.method)
        request.devpi_route = route  # type: ignore[attr-defined]
        return super().getResourceFor(request)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "PUSH", "OPTIONS"})
ACCESS_FORMAT = ('{client} - {user} [{when}] "{method} {uri} {protocol}" {status} {size} '
                 '"{referer}" "{agent}" {duration:.4f}')


def _header(request: Request, name: bytes) -> str:
    value = request.getHeader(name)
    return value.decode("latin-1").replace('"', "%22") if value else "-"


def access_event(log: Logger, request: Request, seconds: float) -> None:
    """One access log event: combined log format as text, the same fields in JSON
    lines. The user is the one authenticated; no credentials are in the fields."""
    identity = getattr(request, "devpi_identity", None)
    user = identity.username if identity is not None and identity.authenticated else "-"
    real_ip = request.getHeader(b"X-Real-IP")
    client = real_ip.decode("latin-1") if real_ip else getattr(request.getClientAddress(),
                                                               "host", "-")
    log.info(ACCESS_FORMAT, access=True, client=client, user=user,
             when=time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
             method=request.method.decode("latin-1"),
             uri=request.uri.decode("latin-1").replace('"', "%22"),
             protocol=request.clientproto.decode("latin-1"), status=request.code,
             size=request.sentLength, referer=_header(request, b"Referer"),
             agent=_header(request, b"User-Agent"), duration=seconds)


def outside_url(request: Request, configured: str | None) -> str:
    """Base URL for absolute links: X-Outside-Url, else --outside-url, else scheme://Host."""
    header = request.getHeader(b"X-Outside-Url")
    if header:
        return header.decode("utf-8", "replace").rstrip("/")
    if configured:
        return configured.rstrip("/")
    host = request.getHeader(b"Host")
    if host:
        host_text = host.decode("latin-1")
    else:
        address = request.getHost()
        host_text = f"{getattr(address, 'host', 'localhost')}:{getattr(address, 'port', 80)}"
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host_text}"


def mount_path(request: Request, configured: str | None) -> str:
    header = request.getHeader(b"X-Outside-Url")
    base = header.decode("utf-8", "replace") if header else configured
    if not base:
        return ""
    return urlsplit(base).path.rstrip("/")
