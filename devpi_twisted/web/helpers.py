"""What route handlers of every app share: the caller's identity (authenticated once
per request), absolute URLs and redirects, the serial a write committed, JSON-only
views and query flags. Passed to the apps (web/compose.py), not inherited.

Reading an index is guarded by ``readable`` (one index: acl.check_read) or
by the domain operation given the ``identity`` as its reader (simple pages, project
views: they leave out the bases the reader may not read); the refusals are those of
model/acl.py ``read_refusal``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity, check_read
from devpi_twisted.model.errors import NotFound
from devpi_twisted.model.ops import ServerOps, Written
from devpi_twisted.web import render
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


async def request_identity(ops: ServerOps, request: HttpRequest,
                           feed: ChangelogFeed | None = None,
                           recent: RecentIdentities | None = None) -> Identity:
    """The caller's identity, authenticated once per request (and taken from ``recent``
    checks where it may); a replica of this primary (its uuid and bearer token, checked
    by the changelog ``feed``) is a reader of all."""
    cached = getattr(request, "devpi_identity", None)
    if isinstance(cached, Identity):
        return cached
    key, serial = (None, 0) if recent is None else (recent.key(request), 0)
    if key is not None and recent is not None:
        await ops.sync()  # commits of other processes first: they may revoke
        serial = ops.serial
        hit = recent.get(key, serial)
        if hit is not None:
            request.devpi_identity = hit  # type: ignore[attr-defined]  # (a DevpiRequest's)
            return hit
    creds = credentials(request)
    identity = ANONYMOUS_IDENTITY
    if creds is not None:
        identity = await ops.authenticate(*creds, client=client_address(request))
        if key is not None and identity.authenticated and recent is not None:
            recent.add(key, identity, serial)
    if creds is not None and not identity.authenticated:
        setattr(request, BAD_CREDENTIALS, True)
    if creds is None and feed is not None and request.getHeader(REPLICA_UUID_HEADER):
        try:
            feed.authorize(request_headers(request))
            identity = REPLICA_IDENTITY
        except FeedRefused:
            pass
    request.devpi_identity = identity  # type: ignore[attr-defined]  # (a DevpiRequest's)
    return identity


class RequestHelpers:
    """Request helpers needing the server: its authentication and its outside URL."""

    def __init__(self, ops: ServerOps, info: ServerInfo, feed: ChangelogFeed | None = None) -> None:
        self._ops = ops
        self._info = info
        self._feed = feed
        self._recent = RecentIdentities(ops.now)

    async def identity(self, request: HttpRequest) -> Identity:
        return await request_identity(self._ops, request, self._feed, self._recent)

    async def readable(self, request: HttpRequest, user: str, index: str,
                       project: str | None = None) -> IndexConfig:
        """The index's config if the caller may read it; NotFound or the refusal."""
        config = await self._ops.get_index(user, index)
        check_read(await self.identity(request), user, index, config.acl_read, project)
        return config

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


def flag(request: HttpRequest, name: bytes) -> bool:
    """A query key is present, with or without a value (``?no_projects``, ``?force=``)."""
    query = request.uri.partition(b"?")[2].decode("latin-1")  # bytes would fail on non-ASCII
    return name.decode("ascii") in parse_qs(query, keep_blank_values=True, errors="replace")
