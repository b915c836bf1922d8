"""What route handlers of every app share: the caller's identity (authenticated once
per request: a replica of this primary, else header credentials, else the session
cookie of web/sessions.py), absolute URLs and redirects, the serial a write committed,
JSON-only views and query flags. Passed to the apps (web/compose.py), not inherited.

Reading an index is guarded by ``readable`` (one index: acl.check_read) or
by the domain operation given the ``identity`` as its reader (simple pages, project
views: they leave out the bases the reader may not read); the refusals are those of
model/acl.py ``read_refusal``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import attrs

from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity, check_read
from devpi_twisted.model.errors import InvalidInput, NotFound
from devpi_twisted.model.ops import ServerOps, Written
from devpi_twisted.web import render, sessions
from devpi_twisted.web.auth import client_address, credentials
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.identities import RecentIdentities
from devpi_twisted.replication.feed import ChangelogFeed, FeedRefused
from devpi_twisted.replication.protocol import REPLICA_UUID
from devpi_twisted.storage.values import IndexConfig
from devpi_twisted.web.site import ServerInfo, outside_url

REPLICA_IDENTITY = Identity(replica=True)
REPLICA_UUID_HEADER = REPLICA_UUID.encode("ascii")
# set on a request whose credentials named nobody (wrong password, expired token):
# its 401 says so (web/errors.py)
BAD_CREDENTIALS = "devpi_bad_credentials"


def request_headers(request: HttpRequest) -> dict[str, str]:
    """The request's headers, names lower-cased (the last value of a repeated one)."""
    return {name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()}


class RequestHelpers:
    """Request helpers needing the server: its authentication and its outside URL."""

    def __init__(self, ops: ServerOps, info: ServerInfo, feed: ChangelogFeed | None = None) -> None:
        self._ops = ops
        self._info = info
        self._feed = feed
        self._recent = RecentIdentities(ops.now)

    async def identity(self, request: HttpRequest) -> Identity:
        """The caller's identity, found once per request (and taken from recent checks
        of the same credentials where it may: web/identities.py)."""
        cached = getattr(request, "devpi_identity", None)
        if isinstance(cached, Identity):
            return cached
        identity = await self._identify(request)
        request.devpi_identity = identity  # type: ignore[attr-defined]  # (a DevpiRequest's)
        return identity

    async def _identify(self, request: HttpRequest) -> Identity:
        # a replica of this primary (its uuid and bearer token, checked by the changelog
        # feed) reads every index; its bearer token is no API token
        if self._feed is not None and request.getHeader(REPLICA_UUID_HEADER):
            try:
                self._feed.authorize(request_headers(request))
                return REPLICA_IDENTITY
            except FeedRefused:
                pass
        creds = credentials(request)
        if creds is None and not (request.getHeader(b"X-Devpi-Auth")
                                  or request.getHeader(b"Authorization")):
            # header credentials (even unreadable ones) win over a session cookie
            creds = sessions.session_credentials(request)
            if creds is not None:  # not GET/HEAD: its CSRF token and origin, or 403
                sessions.check_csrf(request, creds[1], self.base(request))
        reading = request.method in (b"GET", b"HEAD")
        if creds is None:  # the address is for the audit, which records no anonymous reads
            return ANONYMOUS_IDENTITY if reading else Identity(client=client_address(request))
        key = self._recent.key(request)
        serial = 0
        if key is not None:
            await self._ops.sync()  # commits of other processes first: they may revoke
            serial = self._ops.identity_serial  # (uploads in between change nothing here)
            hit = self._recent.get(key, serial)
            if hit is not None:  # (the audit records writes only: their address)
                return hit if reading else attrs.evolve(hit, client=client_address(request))
        client = client_address(request)
        identity = attrs.evolve(await self._ops.authenticate(*creds, client=client), client=client)
        if not identity.authenticated:
            setattr(request, BAD_CREDENTIALS, True)
        elif key is not None:
            self._recent.add(key, identity, serial)
        return identity

    async def readable(self, request: HttpRequest, user: str, index: str,
                       project: str | None = None) -> IndexConfig:
        """The index's config if the caller may read it; NotFound or the refusal."""
        config = await self._ops.get_index(user, index)
        check_read(await self.identity(request), user, index, config.acl_read, project)
        return config


    @property
    def devpi_api(self) -> int:
        """Whose answers the API gives: devpi-server 6.20's or 7's (model/devpi_api.py)."""
        return self._info.devpi_api
    def base(self, request: HttpRequest) -> str:
        """The base URL of absolute links (web/site.py outside_url)."""
        return outside_url(request, self._info.outside_url)

    def redirect(self, request: HttpRequest, path: bytes) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"Location", self.base(request).encode() + path)
        request.setHeader(b"Vary", b"Accept, User-Agent")
        return b""


def written(request: HttpRequest, result: Written) -> None:
    """Remember the serial a write committed (sent as X-Devpi-Serial)."""
    if result.serial is not None:
        request.devpi_serial = result.serial  # type: ignore[attr-defined]  # (a DevpiRequest's)


def json_view(request: HttpRequest) -> None:
    """Management GET views are JSON only; HTML asks for a web UI we do not have."""
    if not render.json_acceptable(request):
        raise NotFound("no HTML view here; ask for application/json")


def query_params(request: HttpRequest, limit: int, what: str) -> dict[str, list[str]]:
    """The query string's parameters (blank values kept); InvalidInput (naming ``what``)
    for one longer than ``limit`` bytes or not UTF-8."""
    query = request.uri.partition(b"?")[2]
    if len(query) > limit:
        raise InvalidInput(f"{what}: the query string is longer than {limit} bytes")
    try:
        return parse_qs(query.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what}: the query string is not UTF-8") from None


def flag(request: HttpRequest, name: bytes) -> bool:
    """A query key is present, with or without a value (``?no_projects``, ``?force=``)."""
    query = request.uri.partition(b"?")[2].decode("latin-1")  # bytes would fail on non-ASCII
    return name.decode("ascii") in parse_qs(query, keep_blank_values=True, errors="replace")
