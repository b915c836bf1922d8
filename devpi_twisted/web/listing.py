"""Project lists (``+simple/`` of an index) rendered once per state and kept
precompressed (ListBodies).

A list is rendered, on a thread, when first asked for in a state (model/simple.py
``listing``: the readable stages and a text that changes with the last serial that
touched them and with each mirror's upstream list), as HTML or PEP 691 JSON, in
identity and each coding of web/encoding.py at once, part by part: a list of PyPI's
size (700,000 names) is never one string. Bodies up to encoding.SMALL stay in memory;
bigger ones are files in the staging directory, sent with sendfile (or read on a
thread where the transport takes no sendfile), so however many clients ask, one copy is
kept per coding and none of them in this process's memory. Every answer carries an
ETag (the state, the format and the coding), ``Vary: Accept, Accept-Encoding`` and
``Content-Encoding``; If-None-Match with it is a 304.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer

from devpi_twisted.storage.adapter import shielded
from devpi_twisted.storage.blobs import BlobReadStopped, ChunkPump
from devpi_twisted.web import encoding
from devpi_twisted.web.deps import HttpRequest, Offload
from devpi_twisted.web.encoding import IDENTITY, Body, chosen, coded_body, compress, encode_all
from devpi_twisted.web.sendfile import SendfileBody, transport_of
from devpi_twisted.web.simple import list_type, project_list_chunks

KEPT_LISTS = 32  # (index, readable stages, format) rendered lists kept
VARY = b"Accept, Accept-Encoding"


@attrs.frozen
class Rendered:
    state: str  # what it was rendered from (ListBodies.answer's ``state``)
    etag: str  # without quotes and coding
    bodies: dict[str, Body]


def matches(request: HttpRequest, etag: bytes) -> bool:
    """Whether If-None-Match names ``etag`` (or is ``*``)."""
    header = request.getHeader(b"If-None-Match")
    if not header:
        return False
    for item in header.split(b","):
        item = item.strip()
        if item == b"*" or item.removeprefix(b"W/") == etag:
            return True
    return False


def coded(request: HttpRequest, etag: str | None, ctype: bytes,
          vary: bytes = VARY) -> tuple[str, bytes]:
    """The coding this request gets, and the headers of any answer set (ETag of the
    coding unless ``etag`` is None, Vary, Content-Type, Content-Encoding): (coding,
    ETag)."""
    coding = chosen(request)
    tagged = (f'"{etag}"' if coding == IDENTITY else f'"{etag}-{coding}"').encode()
    request.setHeader(b"Content-Type", ctype)
    request.setHeader(b"Vary", vary)
    if etag is not None:
        request.setHeader(b"ETag", tagged)
    if coding != IDENTITY:
        request.setHeader(b"Content-Encoding", coding.encode())
    return coding, tagged


def compressed(request: HttpRequest, body: bytes, coding: str) -> bytes:
    """``body`` in ``coding`` with its Content-Length set (nothing for HEAD)."""
    data = body if coding == IDENTITY else compress(body, coding)
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return b"" if request.method == b"HEAD" else data


class ListBodies:
    """Rendered project lists by (index, readable stages, format), the last KEPT_LISTS
    asked for; ``offload`` runs the rendering, ``spool`` holds the big bodies."""

    def __init__(self, offload: Offload, spool: Path) -> None:
        self._offload = offload
        self._spool = spool
        self._kept: OrderedDict[tuple[str, tuple[str, ...], bool], _Entry] = OrderedDict()

    async def answer(self, request: HttpRequest, index: str, order: tuple[str, ...], state: str,
                     as_json: bool, names: Callable[[], Awaitable[Sequence[str]]],
                     vary: bytes = VARY) -> bytes:
        """Answer ``request`` with the list of ``index`` (``order`` its readable stages)
        in ``state``; ``names`` gives the names when it has to be rendered."""
        rendered = await self._rendered(index, order, state, as_json, names)
        coding, etag = coded(request, rendered.etag, list_type(as_json), vary)
        if matches(request, etag):
            request.setResponseCode(304)
            return b""
        return await self.send(request, rendered.bodies[coding])

    async def send(self, request: HttpRequest, body: Body) -> bytes:
        """``body`` as the response (with its Content-Length): bytes to write, or sent
        here from its file (then b"")."""
        request.setHeader(b"Content-Length", b"%d" % body.size)
        if request.method == b"HEAD":
            return b""
        if body.data is not None:
            return body.data
        assert body.path is not None
        # opened before anything else runs: a body replaced later still reads to the end
        with body.path.open("rb") as spooled:
            await self._send_file(request, spooled.fileno(), body.size)
        return b""

    async def keep(self, raw: bytes, coding: str) -> Body:
        """``raw`` in ``coding`` as a Body to ``send``: a small body compressed here, a
        big one compressed on a thread into a file of the spool (the reactor never
        spends long on one page)."""
        if len(raw) <= encoding.SMALL:
            return coded_body(raw, coding, self._spool)
        kept_body: Body = await self._offload(coded_body, raw, coding, self._spool)
        return kept_body

    async def _rendered(self, index: str, order: tuple[str, ...], state: str, as_json: bool,
                        names: Callable[[], Awaitable[Sequence[str]]]) -> Rendered:
        key = (index, order, as_json)
        kept = self._kept.get(key)
        if kept is not None and kept.state == state:
            self._kept.move_to_end(key)
            if kept.rendered is not None:
                return kept.rendered
            waiter: Deferred[Rendered] = Deferred()  # being rendered: wait for the same
            kept.waiters.append(waiter)
            return await waiter
        entry = self._kept[key] = _Entry(state)
        self._kept.move_to_end(key)
        if kept is not None:
            kept.drop()
        while len(self._kept) > KEPT_LISTS:
            self._kept.popitem(last=False)[1].drop()
        try:
            rendered = await self._render(index, order, state, as_json, names)
        except Exception as e:
            if self._kept.get(key) is entry:
                del self._kept[key]
            for waiting in entry.waiters:
                waiting.errback(e)
            raise
        entry.done(rendered)
        return rendered

    async def _render(self, index: str, order: tuple[str, ...], state: str, as_json: bool,
                      names: Callable[[], Awaitable[Sequence[str]]]) -> Rendered:
        listed = await names()
        bodies: dict[str, Body] = await self._offload(
            encode_all, project_list_chunks(index, listed, as_json), self._spool)
        digest = hashlib.blake2b(f"{index}\n{order}\n{state}".encode(), digest_size=8).hexdigest()
        return Rendered(state, f"{digest}-{'json' if as_json else 'html'}", bodies)

    async def _send_file(self, request: HttpRequest, fd: int, size: int) -> None:
        transport = transport_of(request)
        try:
            if transport is not None:
                await shielded(SendfileBody(request, transport, fd, 0, size, self._offload).send())
            else:  # read on a thread, as fast as the client takes it

                def fetch(position: int, count: int) -> Deferred[bytes]:
                    return self._offload(os.pread, fd, count, position)

                await shielded(Deferred.fromCoroutine(ChunkPump(IConsumer(request), fetch, 0, size).run()))
        except BlobReadStopped:  # the client went away
            if request.producer is not None and request.channel is not None:
                request.unregisterProducer()
            request.loseConnection()

    def clear(self) -> None:
        """Drop every rendered list and its files (at shutdown)."""
        for kept in self._kept.values():
            kept.drop()
        self._kept.clear()


class _Entry:
    """A list being rendered or rendered in one state, and who waits for it."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.rendered: Rendered | None = None
        self.waiters: list[Deferred[Rendered]] = []
        self._dropped = False

    def done(self, rendered: Rendered) -> None:
        self.rendered = rendered
        waiters, self.waiters = self.waiters, []
        for waiting in waiters:
            waiting.callback(rendered)
        if self._dropped:
            _discard(rendered)

    def drop(self) -> None:
        """No longer kept: its files go (now, or when its rendering ends)."""
        self._dropped = True
        if self.rendered is not None:
            _discard(self.rendered)


def _discard(rendered: Rendered) -> Rendered:
    for body in rendered.bodies.values():
        body.discard()
    return rendered
