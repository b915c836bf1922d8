"""The primary's side: who may read the changelog, and what a poll gets (ops.md 6.2, 6.3).

Only a primary serves the feed, and only to a replica proving the shared secret;
everyone else gets 403 and nothing about the state. A poll for the next serial
waits (long polling) until a commit makes it, or answers 202 after a while.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from devpi_twisted.model.tokens import REPLICA_TOKEN_MAX_AGE, NotAToken, TokenExpired, TokenSigner
from devpi_twisted.replication import protocol
from devpi_twisted.storage.interface import Change, Storage


class FeedRefused(Exception):
    """The request may not read the feed; ``status`` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen
class Poll:
    """What a poll gets: 200 with changes, 202 (nothing new in time) or 404 (a serial
    beyond the next); ``serial`` is the primary's current serial."""

    status: int
    serial: int
    changes: list[Change]


def parse_start(spec: str) -> tuple[int, bool]:
    """``N`` (one entry) or ``N-`` (from N on); FeedRefused(400) otherwise."""
    many = spec.endswith("-")
    number = spec[:-1] if many else spec
    if not number.isdigit():
        raise FeedRefused(400, f"expected a serial number, got {spec!r}")
    return int(number), many


class ChangelogFeed:
    """The feed of one primary (off unless ``enabled``): replicas' authorization, their
    polls, and which replicas poll (``polling_replicas``, for ``/+status``)."""

    def __init__(self, storage: Storage, uuid: str, signer: TokenSigner, clock: IReactorTime,
                 enabled: bool) -> None:
        """``clock``: times the long polls and the polling replicas' requests."""
        self._storage = storage
        self._uuid = uuid
        self._signer = signer
        self._clock = clock
        self.enabled = enabled
        self.polling_replicas: dict[str, dict[str, Any]] = {}

    def authorize(self, headers: Mapping[str, str | None]) -> str:
        """The polling replica's uuid; FeedRefused when the request may not read."""
        if not self.enabled:
            raise FeedRefused(403, "Replication protocol disabled")
        uuid = headers.get(protocol.REPLICA_UUID.lower()) or ""
        authorization = headers.get("authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if not uuid or scheme.lower() != "bearer" or not token:
            raise FeedRefused(403, "Replication needs the replica's authorization")
        try:
            signed = self._signer.check(token.strip(), REPLICA_TOKEN_MAX_AGE)
        except TokenExpired:
            raise FeedRefused(403, "Authorization expired.") from None
        except NotAToken:
            raise FeedRefused(403, "Authorization malformed.") from None
        if signed != uuid:
            raise FeedRefused(403, "Wrong authorization value.")
        expected = headers.get(protocol.EXPECTED_PRIMARY.lower())
        if expected is None:
            expected = headers.get(protocol.EXPECTED_MASTER.lower())
        if expected is None:
            raise FeedRefused(400, "the expected primary uuid header is missing")
        if expected and expected != self._uuid:
            raise FeedRefused(400, f"expected {expected} as primary_uuid, replica sent {self._uuid}")
        return uuid

    def _note(self, uuid: str, serial: int, headers: Mapping[str, str | None], remote: str,
              waiting: bool) -> None:
        now = self._clock.seconds()
        seen = self.polling_replicas.setdefault(uuid, {"first-request": now})
        seen.update({"serial": serial, "remote-ip": remote, "in-request": waiting,
                     "is-streaming": True,
                     "last-request": now,
                     "outside-url": headers.get(protocol.REPLICA_OUTSIDE_URL.lower())})

    async def poll(self, uuid: str, start: int, many: bool, initial: bool,
                   headers: Mapping[str, str | None], remote: str) -> Poll:
        """Changes from ``start`` on (``many``) or just ``start``; waits for the next one."""
        await self._storage.sync()
        current = self._storage.serial
        self._note(uuid, start - 1, headers, remote, True)
        try:
            if start > current + 1:
                return Poll(404, current, [])
            if start == current + 1:
                if not many:
                    return Poll(404, current, [])
                waiting = self._storage.wait_for(start)
                waiting.addTimeout(protocol.INITIAL_POLL if initial else protocol.LONG_POLL,
                                   self._clock)
                try:
                    await waiting
                except defer.TimeoutError:
                    return Poll(202, self._storage.serial, [])
            limit = protocol.BATCH_CHANGES if many else 1
            changes = await self._storage.changes_since(start - 1, limit)
            if not many:
                changes = changes[:1]
            else:
                changes = _bounded(changes)
            return Poll(200, max(self._storage.serial, changes[-1].serial if changes else -1),
                        changes)
        finally:
            self._note(uuid, start - 1, headers, remote, False)


def _bounded(changes: list[Change]) -> list[Change]:
    """The first changes of a reply, about BATCH_BYTES of them at most (one at least)."""
    size = 0
    for count, change in enumerate(changes):
        size += sum(len(str(r.value)) for r in change.records)
        if size > protocol.BATCH_BYTES and count:
            return changes[:count]
    return changes
