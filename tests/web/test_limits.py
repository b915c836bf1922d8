"""Body limits by route (body_kind), the JSON spool guard, and the request-head deadline
on a real listening socket."""

from __future__ import annotations

import io
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from devpi_twisted.model.errors import TooLarge
from devpi_twisted.web.site import (
    JSON_BODY, MAX_JSON_BODY, MAX_JSON_VALUES, UPLOAD, DevpiSite, ServerInfo, body_kind, json_bytes,
)

FORM = b"multipart/form-data; boundary=xyz"


@pytest.mark.parametrize("method,target,ctype,mount,kind", [
    (b"POST", b"/alice/dev", FORM, "", UPLOAD),
    (b"POST", b"/alice/dev/", FORM, "", UPLOAD),
    (b"POST", b"/alice/dev/?x=1", b"Multipart/Form-Data;boundary=a", "", UPLOAD),
    (b"POST", b"/devpi/alice/dev/", FORM, "/devpi", UPLOAD),
    (b"POST", b"http://host:3141/alice/dev/", FORM, "", UPLOAD),
    # everything else gets the JSON limit
    (b"PUSH", b"/alice/dev", FORM, "", JSON_BODY),
    (b"POST", b"/alice/dev", b"application/json", "", JSON_BODY),
    (b"POST", b"/alice/dev", None, "", JSON_BODY),
    (b"POST", b"/alice/dev", b"application/x-www-form-urlencoded", "", JSON_BODY),
    (b"POST", b"/alice/dev/+f/a/b/x-1.0.tar.gz", FORM, "", JSON_BODY),
    (b"POST", b"/alice/dev/+f/a/b/x-1.0.tar.gz", b"application/json", "", JSON_BODY),
    (b"POST", b"/alice/dev/pkg", FORM, "", JSON_BODY),
    (b"POST", b"/+login", FORM, "", JSON_BODY),
    (b"POST", b"/%2Blogin/x", FORM, "", JSON_BODY),
    (b"POST", b"/alice//", FORM, "", JSON_BODY),
    (b"PUT", b"/alice/dev", FORM, "", JSON_BODY),
    (b"PATCH", b"/alice/dev", FORM, "", JSON_BODY),
    (b"POST", b"/devpi/alice/dev/", FORM, "", JSON_BODY),  # not below the mount: 3 segments
])
def test_only_the_upload_form_gets_the_upload_limit(method: bytes, target: bytes,
                                                     ctype: bytes | None, mount: str,
                                                     kind: str) -> None:
    assert body_kind(method, target, ctype, mount) == kind


@attrs.define
class _Spooled:
    content: Any
    site: Any


def test_a_spool_bigger_than_the_json_limit_is_never_parsed() -> None:
    class Site:
        info = ServerInfo(uuid="u", serverdir="/", max_json_body=100)

    assert json_bytes(_Spooled(io.BytesIO(b"x" * 100), Site())) == b"x" * 100
    with pytest.raises(TooLarge):
        json_bytes(_Spooled(io.BytesIO(b"x" * 101), Site()))


@pytest.mark.parametrize("item", [b"{}", b"[]", b'"ab"'])
def test_json_that_would_take_hundreds_of_mib_parsed_is_refused(item: bytes) -> None:
    """Under the 10 MB limit, but ~20 times its size once parsed."""
    class Site:
        info = ServerInfo(uuid="u", serverdir="/")

    fits = b"[" + b",".join([item] * (MAX_JSON_VALUES // 2)) + b"]"
    assert json_bytes(_Spooled(io.BytesIO(fits), Site())) == fits
    bomb = b"[" + b",".join([item] * (MAX_JSON_BODY // (len(item) + 1))) + b"]"
    bomb = bomb[:MAX_JSON_BODY - 1] + b"]"
    with pytest.raises(TooLarge):
        json_bytes(_Spooled(io.BytesIO(bomb), Site()))


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello"


class _Client(Protocol):
    """Sends ``lines`` (one every 50 ms, then ``then`` lines more, forever if None);
    ``closed`` fires with all it received once the server closes."""

    def __init__(self, lines: list[bytes], forever: bool) -> None:
        self.lines = lines
        self.forever = forever
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self._sender = LoopingCall(self._send)

    def connectionMade(self) -> None:
        self._sender.start(0.05)

    def _send(self) -> None:
        if self.lines:
            self.transport.write(self.lines.pop(0) + b"\r\n")
        elif self.forever:
            self.transport.write(b"X-Slow: %d\r\n" % len(self.received))
        else:
            self._sender.stop()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._sender.running:
            self._sender.stop()
        self.closed.callback(self.received)


async def _talk(lines: list[bytes], forever: bool) -> bytes:
    from twisted.internet import reactor

    site = DevpiSite(_Hello(), ServerInfo(uuid="u", serverdir="/"), lambda: 0,
                     header_timeout=0.5)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        client = _Client(lines, forever)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        # a server that never drops the client fails the test here instead of hanging
        return await client.closed.addTimeout(30, reactor)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_client_sending_its_headers_slowly_is_dropped() -> None:
    received = await _talk([b"GET / HTTP/1.1", b"Host: x"], forever=True)
    assert received.startswith(b"HTTP/1.1 408 ")


@pytest_twisted.ensureDeferred
async def test_a_client_that_connects_and_says_nothing_is_dropped() -> None:
    received = await _talk([], forever=False)
    assert received.startswith(b"HTTP/1.1 408 ")


@pytest_twisted.ensureDeferred
async def test_a_request_line_too_long_is_answered_414() -> None:
    received = await _talk([b"GET /" + b"a" * 20000 + b" HTTP/1.1"], forever=False)
    assert received.startswith(b"HTTP/1.1 414 ")


@pytest_twisted.ensureDeferred
async def test_a_header_line_too_long_is_answered_431() -> None:
    received = await _talk([b"GET / HTTP/1.1", b"X-Big: " + b"b" * 20000], forever=False)
    assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


@pytest_twisted.ensureDeferred
async def test_a_request_whose_head_arrives_in_time_is_served() -> None:
    received = await _talk([b"GET / HTTP/1.1", b"Host: x", b"Connection: close", b""],
                           forever=False)
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"hello")
