"""What route handlers of every app share: the caller's identity (authenticated once
per request, from header credentials or else the session cookie: web/sessions.py),
absolute URLs and redirects, the serial a write committed, JSON-only views and query
flags. Passed to the apps (web/compose.py), not inherited."""

from __future__ import annotations

from urllib.parse import parse_qs

import attrs

from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity
from devpi_twisted.model.errors import NotFound
from devpi_twisted.model.ops import ServerOps, Written
from devpi_twisted.web import render, sessions
from devpi_twisted.web.auth import client_address, credentials
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.site import ServerInfo, outside_url


class RequestHelpers:
    """Request helpers needing the server: its authentication and its outside URL."""

    def __init__(self, ops: ServerOps, info: ServerInfo) -> None:
        self._ops = ops
        self._info = info

    async def identity(self, request: HttpRequest) -> Identity:
        cached = getattr(request, "devpi_identity", None)
        if isinstance(cached, Identity):
            return cached
        creds = credentials(request)
        if creds is None and not (request.getHeader(b"X-Devpi-Auth")
                                  or request.getHeader(b"Authorization")):
            # header credentials (even unreadable ones) win over a session cookie
            creds = sessions.session_credentials(request)
            if creds is not None:  # not GET/HEAD: its CSRF token and origin, or 403
                sessions.check_csrf(request, creds[1], self.base(request))
        if creds is None:  # the address is for the audit, which records no anonymous reads
            identity = ANONYMOUS_IDENTITY if request.method in (b"GET", b"HEAD") \
                else Identity(client=client_address(request))
        else:
            client = client_address(request)
            identity = attrs.evolve(await self._ops.authenticate(*creds, client=client),
                                    client=client)
        request.devpi_identity = identity  # type: ignore[attr-defined]  # (a DevpiRequest's)
        return identity

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
