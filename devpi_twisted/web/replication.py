"""The changelog feed's route (ReplicationApp: a primary's side of replication,
spec/ops.md 6.3)."""

from __future__ import annotations

from devpi_twisted.replication import protocol
from devpi_twisted.replication.feed import ChangelogFeed, FeedRefused, parse_start
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import flag, request_headers


class ReplicationApp:
    """``GET /+changelog/N`` and ``/+changelog/N-``: needs the primary's changelog feed
    (None where this node does not serve one: 403)."""

    def __init__(self, feed: ChangelogFeed | None) -> None:
        self._feed = feed

    async def changelog(self, request: HttpRequest, spec: str) -> bytes:
        headers = request_headers(request)
        try:
            if self._feed is None:
                raise FeedRefused(403, "Replication protocol disabled")
            uuid = self._feed.authorize(headers)
            start, many = parse_start(spec)
        except FeedRefused as e:
            return render.error(request, e.status, e.message)
        remote = getattr(request.getClientAddress(), "host", "")
        poll = await self._feed.poll(uuid, start, many, flag(request, b"initial_fetch"),
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
