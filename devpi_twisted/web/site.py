"""The twisted.web Site, channel and Request: devpi's headers on every response, a
deadline for request heads, body limits by kind of body (body_kind: the upload form or
JSON, from the request's route in web/routes.py) enforced while the body arrives and
answered at once, outside-URL mount points stripped before routing, the route looked
up once per request (its name labels the request's metrics). (Twisted's Request
already percent-decodes ``postpath``.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import RESPONSES, HTTPChannel, _ChunkedTransferDecoder
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from devpi_twisted import __version__
from devpi_twisted.model.errors import TooLarge
from devpi_twisted.web.auth import client_address
from devpi_twisted.web import routes
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.metrics import RequestMetrics
from devpi_twisted.web.routes import MATCHER, RouteMatch

_log = Logger()

# Bodies of every request but the upload form; uploads get --max-request-body-size.
MAX_JSON_BODY = 10 * 1024 * 1024
# Objects, arrays and strings a JSON body may hold (a bound on its parsed size).
MAX_JSON_VALUES = 200_000
# A request's head (request line and headers) must be complete this long after its
# first byte (or after the connection opened): slow-header clients are dropped.
HEADER_TIMEOUT = 30.0
# After refusing a body we still read (and drop) what the client sends for this long
# before closing, so that it sees our answer instead of a reset connection.
LINGER = 2.0
# More digits than any body size we could accept (and than int() parses quickly).
_LENGTH_DIGITS = 18

UPLOAD, JSON_BODY, FORM = routes.UPLOAD, routes.JSON, routes.FORM
FORM_MEDIA = b"application/x-www-form-urlencoded"
MAX_FORM_BODY = 64 * 1024  # an HTML form (login): a few fields
# reason phrases twisted.web.http.RESPONSES lacks
_REASONS = {431: b"Request Header Fields Too Large"}


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
    max_json_body: int = MAX_JSON_BODY
    # where the state lives, as the status page says it (not part of /+status's JSON)
    storage: str = "sqlite"
    # whose answers the API gives: devpi-server 6.20's or 7's (model/devpi_api.py)
    devpi_api: int = 6


def body_kind(method: bytes, target: bytes, content_type: bytes | None, mount: str = "") -> str:
    """What a request's body may be, from its request line and headers alone (before a
    byte of the body is read): UPLOAD only for the legacy upload form, a
    ``multipart/form-data`` POST to the route whose body is the upload form (``/USER/INDEX``,
    web/routes.py) below the mount path (what twine and devpi-client send, spec/api.md
    8); FORM for an urlencoded POST to a route taking HTML forms (``+login``), which
    gets MAX_FORM_BODY; JSON_BODY for everything else (push, toxresults, every API
    call, other urlencoded bodies), which gets the JSON limit."""
    if method != b"POST":
        return JSON_BODY
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    wanted = {b"multipart/form-data": routes.UPLOAD, FORM_MEDIA: routes.FORM}.get(media)
    if wanted is None:
        return JSON_BODY
    path = target.split(b"?", 1)[0]
    if path[:1] != b"/":  # absolute form: http://host/path
        path = b"/" + path.split(b"://", 1)[-1].partition(b"/")[2]
    path = unquote_to_bytes(path)
    prefix = mount.rstrip("/").encode("utf-8")
    if prefix and path.startswith(prefix + b"/"):
        path = path[len(prefix):]
    found = MATCHER.match_segments(method, path[1:].split(b"/"))
    return wanted if found is not None and found.route.body == wanted else JSON_BODY


class DevpiChannel(HTTPChannel):
    """twisted.web's HTTP/1.1 channel with deadlines and early refusals: the request
    head must arrive within the site's ``header_timeout``; an impossible or too large
    Content-Length or chunk size is answered at once (``refuse``), the connection
    closed after a short linger. (Request bodies: DevpiRequest.)"""

    site: DevpiSite
    _head_deadline: IDelayedCall | None = None
    _linger: IDelayedCall | None = None
    refused = False

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]  # untyped in twisted
        self._start_deadline()

    def _start_deadline(self) -> None:
        if self._head_deadline is None and not self.refused:
            self._head_deadline = self.callLater(self.site.header_timeout, self._head_late)  # type: ignore[no-untyped-call]  # untyped in twisted

    def _stop_deadline(self) -> None:
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        self.refuse(408, f"request head not complete within {self.site.header_timeout} s",
                    linger=False)

    def dataReceived(self, data: bytes) -> None:
        if self.refused:  # lingering: what the client still sends is dropped
            return
        if self.line_mode:  # between requests or within a head
            self._start_deadline()
        super().dataReceived(data)  # type: ignore[no-untyped-call]  # untyped in twisted

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)  # type: ignore[no-untyped-call]  # untyped in twisted
        if self.line_mode and self._buffer:  # part of a pipelined head came meanwhile
            self._start_deadline()

    def lineReceived(self, line: bytes) -> None:
        if not self.refused:
            super().lineReceived(line)  # type: ignore[no-untyped-call]  # untyped in twisted

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header line over MAX_LENGTH (16 KiB): answered 414 or 431
        instead of the plain disconnect of LineReceiver."""
        if getattr(self, "_HTTPChannel__first_line", 0):  # (twisted's private state, 26.x)
            self.refuse(414, f"request line longer than {self.MAX_LENGTH} bytes")
        else:
            self.refuse(431, f"header line longer than {self.MAX_LENGTH} bytes")

    def headerReceived(self, line: bytes) -> bool:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            value = value.strip(b" \t")
            if not value.isdigit():  # negative, hexadecimal, empty, ...
                self.refuse(400, "Content-Length is not a number of bytes")
                return False
            if len(value) > _LENGTH_DIGITS:
                self.refuse(413, "Content-Length larger than any body accepted here")
                return False
        return bool(super().headerReceived(line))  # type: ignore[no-untyped-call]  # untyped in twisted

    def allHeadersReceived(self) -> None:
        self._stop_deadline()
        super().allHeadersReceived()  # type: ignore[no-untyped-call]  # untyped in twisted
        decoder = self._transferDecoder  # (twisted's private attribute, 26.x)
        if not self.refused and type(decoder) is _ChunkedTransferDecoder:
            request = self.requests[-1]
            self._transferDecoder = _BoundedChunks(
                request.handleContentChunk, self._finishRequestBody, request.body_room)

    def _send100Continue(self) -> None:
        if not self.refused:  # a refused body is not to be sent
            super()._send100Continue()  # type: ignore[no-untyped-call]  # untyped in twisted

    def refuse(self, code: int, message: str, linger: bool = True) -> None:
        """Answer ``code`` with a JSON message at once, whatever the state of the
        request, and close: after LINGER seconds of dropping input (so the client can
        read the answer while it is still sending), or at once."""
        if self.refused or self.transport is None:
            return
        self.refused = True
        self._stop_deadline()
        _log.info("answered {code} at once to {peer}: {message}", code=code, message=message,
                  peer=str(self.transport.getPeer()))
        body = json.dumps({"message": message}).encode()
        head = [b"HTTP/1.1 %d %s" % (code, _REASONS.get(code) or RESPONSES.get(code, b"Error")),
                b"Content-Type: application/json", b"Content-Length: %d" % len(body),
                b"Connection: close", *(b"%s: %s" % item for item in self.site.fixed_headers)]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if linger and half_close is not None:
            half_close()
            self._linger = self.callLater(LINGER, self._close)  # type: ignore[no-untyped-call]  # untyped in twisted
        else:
            self._close()

    def _close(self) -> None:
        self._linger = None
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stop_deadline()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # untyped in twisted


class _BoundedChunks(_ChunkedTransferDecoder):
    """A chunked body decoder that refuses a chunk larger than the room left for the
    body as soon as its size line arrives, instead of waiting for its bytes."""

    def __init__(self, data: Callable[[bytes], None], finish: Callable[[bytes], None],
                 room: Callable[[int], bool]) -> None:
        super().__init__(data, finish)
        self._room = room

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        done = super()._dataReceived_CHUNK_LENGTH()
        if done and self.state == "BODY" and not self._room(self.length):
            self.state = "REFUSED"
            return False
        return done

    def _dataReceived_REFUSED(self) -> bool:
        del self._buffer[:]
        return False


class DevpiRequest(Request):
    """Adds devpi's response headers and refuses oversized bodies without storing them:
    the limit depends on what the body may be (body_kind); a body over it is answered
    413 at once (DevpiChannel.refuse). Upload forms are parsed by us, streaming from the
    spooled body, not by twisted.web (which would read a whole multipart body into memory)."""

    channel: DevpiChannel
    devpi_serial: int | None = None  # set by a handler that committed a change
    devpi_route = "other"  # label for /+metrics, set when the resource is looked up
    devpi_match: RouteMatch | None = None  # the route, likewise (web/dispatch.py)
    devpi_started = 0.0
    body_limit = MAX_JSON_BODY
    _body_seen = 0

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        info = channel.site.info
        kind = body_kind(getattr(channel, "_command", b""), getattr(channel, "_path", b""),
                         self.requestHeaders.getRawHeaders(b"Content-Type", [None])[0],
                         mount_path(self, info.outside_url))
        self.body_limit = {UPLOAD: info.max_body, FORM: MAX_FORM_BODY}.get(kind,
                                                                         info.max_json_body)
        if length is not None and length > self.body_limit:
            self._too_large()
            length = 0
        super().gotLength(length)  # type: ignore[no-untyped-call]  # untyped in twisted

    def body_room(self, more: int) -> bool:
        """Whether ``more`` bytes of body still fit under the limit; refuses if not."""
        if self._body_seen + more > self.body_limit:
            self._too_large()
            return False
        return True

    def _too_large(self) -> None:
        self.channel.refuse(413, f"request body larger than the {self.body_limit} bytes "
                                 "accepted here")

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel.refused or not self.body_room(len(data)):
            return
        self._body_seen += len(data)
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]  # untyped in twisted

    def process(self) -> None:
        if self.channel is not None and self.channel.refused:  # answered already
            return
        self.devpi_started = time.monotonic()
        super().process()  # type: ignore[no-untyped-call]  # untyped in twisted

    def write(self, data: bytes) -> None:
        site = self.site
        if not self.startedWriting and isinstance(site, DevpiSite):
            site.add_headers(self)
        super().write(data)  # type: ignore[no-untyped-call]  # untyped in twisted


def json_bytes(request: HttpRequest) -> bytes:
    """The body of a request that must be JSON; TooLarge if its spool is bigger than
    the JSON limit (a body spooled under the upload limit is never parsed as JSON) or
    if it could hold more than MAX_JSON_VALUES objects, arrays and strings: parsed,
    each costs 50-60 bytes of memory for its 2-5 bytes of text (10 MB of ``[{},{},...``
    would take 210 MiB)."""
    content = request.content
    if content is None:
        return b""
    site = getattr(request, "site", None)
    limit = site.info.max_json_body if site is not None else MAX_JSON_BODY
    content.seek(0)
    data: bytes = content.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"request body larger than the {limit} bytes accepted for JSON")
    if data.count(b"{") + data.count(b"[") + data.count(b'"') // 2 > MAX_JSON_VALUES:
        raise TooLarge(f"JSON body with more than {MAX_JSON_VALUES} objects, arrays and strings")
    return data


class DevpiSite(Site):
    protocol = DevpiChannel  # type: ignore[assignment]  # HTTP/1.1 only (no TLS, no h2 here)
    requestFactory = DevpiRequest
    displayTracebacks = False

    log_events = Logger()

    def __init__(self, resource: IResource, info: ServerInfo, serial: Callable[[], int],
                 access_log: bool = False, metrics: RequestMetrics | None = None,
                 primary_uuid: Callable[[], str] | None = None,
                 header_timeout: float = HEADER_TIMEOUT, **kwargs: Any) -> None:
        """``primary_uuid``: on a replica, its primary's uuid once known (sent as
        X-Devpi-Primary-Uuid instead of our own). ``header_timeout``: seconds a
        request's head may take to arrive (DevpiChannel)."""
        super().__init__(resource, parsePOSTFormSubmission=False, **kwargs)  # type: ignore[no-untyped-call]  # untyped in twisted
        self.info = info
        self.header_timeout = header_timeout
        self._primary_uuid = primary_uuid
        self._access_log = access_log
        self.metrics = metrics if metrics is not None else RequestMetrics()
        self._serial = serial
        self.fixed_headers = [
            (b"X-Devpi-Api-Version", b"2"),
            (b"X-Devpi-Server-Version", f"devpi-twisted {info.version}".encode()),
            (b"X-Devpi-Uuid", info.uuid.encode()),
            (b"X-Devpi-Primary-Uuid", info.uuid.encode()),
            (b"X-Devpi-Master-Uuid", info.uuid.encode()),
        ]

    def add_headers(self, request: DevpiRequest) -> None:
        out: HttpRequest = request
        for name, value in self.fixed_headers:
            out.setHeader(name, value)
        primary = self._primary_uuid() if self._primary_uuid is not None else ""
        if primary:
            out.setHeader(b"X-Devpi-Primary-Uuid", primary.encode())
            out.setHeader(b"X-Devpi-Master-Uuid", primary.encode())
        serial = request.devpi_serial if request.devpi_serial is not None else self._serial()
        out.setHeader(b"X-Devpi-Serial", b"%d" % serial)

    def log(self, request: http.Request) -> None:
        """Called by twisted.web once a response ended: counts it for /+metrics and,
        with --access-log (or --debug), logs it in the combined log format."""
        started = getattr(request, "devpi_started", 0.0)
        seconds = time.monotonic() - started if started else 0.0
        route = getattr(request, "devpi_route", "other")
        method = request.method.decode("latin-1")
        self.metrics.observe(route, method if method in _METHODS else "other", request.code,
                             seconds)
        if self._access_log and isinstance(request, Request):
            access_event(self.log_events, request, seconds)

    def getResourceFor(self, request: Request) -> IResource:
        prefix = mount_path(request, self.info.outside_url)
        if prefix:
            wanted = prefix.strip("/").encode("utf-8").split(b"/")
            postpath = request.postpath or []
            if postpath[:len(wanted)] == wanted:
                request.postpath = postpath[len(wanted):] or [b""]
        found = MATCHER.match_segments(request.method, request.postpath or ())
        if isinstance(request, DevpiRequest):
            request.devpi_match = found
            request.devpi_route = found.route.name if found is not None else "other"
        resource: IResource = super().getResourceFor(request)  # type: ignore[no-untyped-call]  # untyped in twisted
        return resource


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "PUSH", "OPTIONS"})
ACCESS_FORMAT = ('{client} - {user} [{when}] "{method} {uri} {protocol}" {status} {size} '
                 '"{referer}" "{agent}" {duration:.4f}')


def _header(request: HttpRequest, name: bytes) -> str:
    value = request.getHeader(name)
    return value.decode("latin-1").replace('"', "%22") if value else "-"


def access_event(log: Logger, request: HttpRequest, seconds: float) -> None:
    """One access log event: combined log format as text, the same fields in JSON
    lines. The client is the one the login throttle counts (``X-Real-IP`` only from a
    trusted proxy); the user is the one authenticated; no credentials are in the fields."""
    identity = getattr(request, "devpi_identity", None)
    user = identity.username if identity is not None and identity.authenticated else "-"
    log.info(ACCESS_FORMAT, access=True, client=client_address(request), user=user,
             when=time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
             method=request.method.decode("latin-1"),
             uri=request.uri.decode("latin-1").replace('"', "%22"),
             protocol=request.clientproto.decode("latin-1"), status=request.code,
             size=request.sentLength, referer=_header(request, b"Referer"),
             agent=_header(request, b"User-Agent"), duration=seconds)


def outside_url(request: HttpRequest, configured: str | None) -> str:
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


def mount_path(request: HttpRequest, configured: str | None) -> str:
    header = request.getHeader(b"X-Outside-Url")
    base = header.decode("utf-8", "replace") if header else configured
    if not base:
        return ""
    return urlsplit(base).path.rstrip("/")
