"""The upstream client: simple pages and files from another index server, over treq.

One shared connection pool (the treq client the service builds); every request has a
timeout; connection errors, timeouts and 5xx answers are retried with exponential
back-off and jitter on the reactor clock; page bodies are capped; credentials embedded
in a mirror URL become a Basic Authorization header and never appear in URLs we log
or show. Concurrent requests for the same page share one upstream request.
"""

from __future__ import annotations

import random
from base64 import b64encode
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request

import attrs
import treq
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from devpi_twisted import __version__
from devpi_twisted.mirror.urls import masked_url
from devpi_twisted.reactors import IClientReactor

PAGE_ACCEPT = ("application/vnd.pypi.simple.v1+json, "
               "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01")
MAX_PAGE = 64 << 20  # bytes of one simple page (PyPI's whole project list is ~30 MB)
RETRIES = 2  # after the first try
BACKOFF = 0.25  # seconds before the first retry; doubled each time, with jitter
USER_AGENT = f"devpi-twisted/{__version__}"
_log = Logger()
T = TypeVar("T")


class NoCookies(IndexableCookieJar):
    """A cookie jar that keeps and sends nothing: an index server needs no cookies, and
    treq's cookie handling costs a large share of a small request's CPU."""

    def add_cookie_header(self, request: Request) -> None:
        pass

    def extract_cookies(self, response: object, request: Request) -> None:
        pass


@implementer(IAgentEndpointFactory)
class KeptEndpoints:
    """Where an Agent connects (TCP for http, TLS over it for https), one endpoint kept
    per scheme, host and port: Twisted's own factory builds a new one, IDNA-encoding
    the host again, for every request, even one that reuses a pooled connection."""

    LIMIT = 256  # hosts; an index server talks to a handful

    def __init__(self, reactor: IClientReactor, tls: IPolicyForHTTPS | None = None) -> None:
        self._reactor = reactor
        self._tls = tls or BrowserLikePolicyForHTTPS()
        self._kept: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._kept.get(key)
        if endpoint is None:
            if uri.scheme not in (b"http", b"https"):
                raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")
            endpoint = HostnameEndpoint(self._reactor, uri.host.decode("ascii"), uri.port)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
            if len(self._kept) >= self.LIMIT:
                self._kept.clear()
            self._kept[key] = endpoint
        return endpoint


def http_client(reactor: IClientReactor, tls: IPolicyForHTTPS | None = None,
                pool: HTTPConnectionPool | None = None) -> HTTPClient:
    """A treq client without cookies, on ``pool`` (default: a new pool of persistent
    connections); ``tls``: how https peers are checked (default: the system's CAs)."""
    # (twisted's Agent and HTTPConnectionPool are unannotated)
    pool = pool or HTTPConnectionPool(reactor)
    agent = Agent.usingEndpointFactory(
        reactor, KeptEndpoints(reactor, tls), pool=pool)
    return HTTPClient(agent, cookiejar=NoCookies())


class UpstreamError(Exception):
    """No usable answer: connection refused or reset, timeout, 5xx, oversized body."""


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names, first value
    body: bytes
    url: str


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:password@``, and the Basic Authorization value for them."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1/": the request fails on it (a stored URL of old)
        return url, None
    if parts.username is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]  # as written: a bad port fails the request, not this
    plain = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    secret = f"{parts.username}:{parts.password or ''}".encode()
    return plain, "Basic " + b64encode(secret).decode()


def public_url(url: str) -> str:
    """``url`` fit to show or log: credentials removed, secrets in the query masked."""
    return masked_url(split_credentials(url)[0])


def with_credentials(url: str, credentials_from: str) -> str:
    """``url`` with the user and password of ``credentials_from`` put in, if it has some
    and both name the same host (mirror.md 1: external file URLs of a private mirror)."""
    source, target = urlsplit(credentials_from), urlsplit(url)
    if source.username is None or target.username is not None \
            or source.hostname != target.hostname:
        return url
    netloc = f"{source.username}:{source.password or ''}@{target.netloc}"
    return urlunsplit((target.scheme, netloc, target.path, target.query, target.fragment))


def _headers(response: IResponse) -> dict[str, str]:
    found = {}
    for name, values in response.headers.getAllRawHeaders():
        found[name.decode("latin-1").lower()] = values[0].decode("latin-1")
    return found


class Upstream:
    def __init__(self, reactor: IReactorTime, http: HTTPClient, timeout: float = 5.0,
                 retries: int = RETRIES, max_page: int = MAX_PAGE,
                 random: Callable[[], float] = random.random) -> None:
        """``reactor``: the clock of timeouts and retries; ``random``: the jitter of the
        back-off, a number in [0, 1)."""
        self._reactor = reactor
        self._http = http
        self._random = random
        self.timeout = timeout
        self._retries = retries
        self._max_page = max_page
        self._pages: dict[tuple[str, str | None], Shared[Reply]] = {}
        self.stats = {"requests": 0, "errors": 0, "retries": 0}

    def get_page(self, url: str, etag: str | None = None,
                 timeout: float | None = None) -> Deferred[Reply]:
        """GET a simple page (JSON preferred); 304 when ``etag`` still matches. Callers
        asking for the same page meanwhile share the request (cancelling one of them
        does not cancel it for the others)."""
        key = (url, etag)
        shared = self._pages.get(key)
        if shared is None:
            work = Deferred.fromCoroutine(self._get_page(url, etag, timeout or self.timeout))
            shared = Shared(work, lambda: self._pages.pop(key, None))
            if not shared.done:
                self._pages[key] = shared
        return shared.wait()

    async def _get_page(self, url: str, etag: str | None, timeout: float) -> Reply:
        headers = {"Accept": PAGE_ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        response = await self._request("GET", url, headers, timeout)
        try:
            body = await self._read_capped(response)
        except UpstreamError:
            raise
        except Exception as e:  # the connection broke while the body came in
            self.stats["errors"] += 1
            raise UpstreamError(f"{type(e).__name__} reading {public_url(url)}") from None
        return Reply(response.code, _headers(response), body, public_url(url))

    async def open(self, url: str, auth: str | None = None,
                   timeout: float | None = None) -> IResponse:
        """GET a file, with ``auth`` as Authorization unless ``url`` has credentials of its
        own; the treq response, its body not read yet (deliverBody / collect)."""
        headers = {"Authorization": auth} if auth else {}
        return await self._request("GET", url, headers, timeout or self.timeout, unbuffered=True)

    async def _request(self, method: str, url: str, headers: dict[str, str], timeout: float,
                       unbuffered: bool = False) -> IResponse:
        plain, auth = split_credentials(url)
        sent: dict[bytes | str, bytes | str] = {"User-Agent": USER_AGENT}
        sent.update(headers)
        if auth:
            sent["Authorization"] = auth
        delay = BACKOFF
        for attempt in range(self._retries + 1):
            self.stats["requests"] += 1
            try:
                response = await self._http.request(  # (tests: treq.testing.StubTreq)
                    method, plain, headers=sent, timeout=timeout, unbuffered=unbuffered,
                    reactor=self._reactor)  # type: ignore[arg-type]  # a clock is all it needs
            except CancelledError:
                raise
            except Exception as e:  # refused, reset, DNS, TLS, timeout
                error = f"{type(e).__name__} on {method} {masked_url(plain)}"
            else:
                if response.code < 500:
                    return response
                error = f"{response.code} status on {method} {masked_url(plain)}"
                await discard(response)
            self.stats["errors"] += 1
            if attempt < self._retries:
                self.stats["retries"] += 1
                await deferLater(self._reactor, delay * (0.5 + self._random()), lambda: None)
                delay *= 2
        _log.warn("upstream: {error}", error=error)
        raise UpstreamError(error)

    async def _read_capped(self, response: IResponse) -> bytes:
        length = response.length if isinstance(response.length, int) else None
        if length is not None and length > self._max_page:
            await discard(response)
            raise UpstreamError(f"page of {length} bytes is over the {self._max_page} accepted")
        chunks: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size <= self._max_page:
                chunks.append(data)

        await treq.collect(response, collect)
        if size > self._max_page:
            raise UpstreamError(f"page over the {self._max_page} bytes accepted")
        return b"".join(chunks)


class Shared(Generic[T]):
    """One result awaited by many: each ``wait()`` gets a Deferred of its own, so that
    cancelling one (a client hung up) cancels neither the work nor the other waiters.
    A failure reaches every waiter (and is never left unhandled)."""

    def __init__(self, work: Deferred[T], on_done: Callable[[], Any] = lambda: None) -> None:
        """``on_done`` runs when the work ends, before any waiter learns of it (a waiter
        may start the same work again at once)."""
        self._waiters: list[Deferred[T]] = []
        self._result: Any = None
        self._done = False
        self._on_done = on_done
        work.addBoth(self._fire)

    @property
    def done(self) -> bool:
        return self._done

    def _fire(self, result: Any) -> None:
        self._done, self._result = True, result
        self._on_done()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _deliver(waiter, result)

    def wait(self) -> Deferred[T]:
        waiter: Deferred[T] = Deferred(lambda _: None)
        if self._done:
            _deliver(waiter, self._result)
        else:
            self._waiters.append(waiter)
        return waiter


def _deliver(waiter: Deferred[Any], result: Any) -> None:
    if waiter.called:  # cancelled meanwhile
        return
    if isinstance(result, Failure):
        waiter.errback(result)
    else:
        waiter.callback(result)


async def discard(response: IResponse) -> None:
    try:
        await treq.collect(response, lambda _: None)
    except Exception:  # nothing to read: the answer is already decided
        pass
