"""The changelog feed's routes (a primary's side of replication, spec/ops.md 6.3)."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from devpi_twisted.replication import protocol
from devpi_twisted.replication.feed import ChangelogFeed, FeedRefused, parse_start
from devpi_twisted.web import render
from devpi_twisted.web.app import ManagementApp, _flag, _route


def request_headers(request: IRequest) -> dict[str, str]:
    """The request's headers, names lower-cased (the last value of a repeated one)."""
    return {name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()}


class ReplicationRoutes(ManagementApp):
    """``GET /+changelog/N`` and ``/+changelog/N-``; IndexApp sets ``_feed``."""

    app = ManagementApp.app
    _feed: ChangelogFeed | None = None

    @_route(app, "/+changelog/<spec>", ["GET"])
    async def changelog(self, request: IRequest, spec: str) -> bytes:
        headers = request_headers(request)
        try:
            if self._feed is None:
                raise FeedRefused(403, "Replication protocol disabled")
            uuid = self._feed.authorize(headers)
            start, many = parse_start(spec)
        except FeedRefused as e:
            return render.error(request, e.status, e.message)
        remote = getattr(request.getClientAddress(), "host", "")
        poll = await self._feed.poll(uuid, start, many, _flag(request, b"initial_fetch"),
                                     headers, remote)
        request.devpi_serial = poll.serial  # type: ignore[attr-defined]
        if poll.status == 404:
            return render.error(request, 404, "can only wait for next serial")
        if poll.status == 202:
            request.setResponseCode(202)
            return b""
        if many:
            body = protocol.encode_changes(poll.changes)
            request.setHeader(b"Content-Type", protocol.CHANGES_TYPE.encode())
        else:
            body = protocol.encode_change(poll.changes[0])
            request.setHeader(b"Content-Type", protocol.CHANGE_TYPE.encode())
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    def _replication_status(self) -> dict[str, Any]:
        if self._feed is None or not self._feed.enabled:
            return {}
        return {"polling_replicas": {u: dict(v) for u, v in self._feed.polling_replicas.items()}}
