"""Identities of recently seen credentials (RecentIdentities), so that an installer
sending the same Basic password or login token with every request of a private index
does not pay the password or token check each time.

An entry is used only while nothing has been committed since it was made (every change
of a user, a password or a token commits, on this process, another worker or the
primary of a replica: the caller syncs first) and for at most ``RECENT_SECONDS``
(tokens expire). Only successful checks are kept, so failed logins are still counted
and throttled. Keys are HMACs of the credentials and the client address with a
per-process key: no secret is kept in memory as given.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable

from devpi_twisted.model.acl import Identity

RECENT_SIZE = 1024
RECENT_SECONDS = 2.0


class RecentIdentities:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._key = os.urandom(32)
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Identity, int, float]] = OrderedDict()

    def key(self, user: str, secret: str, client: str) -> bytes:
        message = "\0".join((user, secret, client)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def get(self, key: bytes, serial: int) -> Identity | None:
        """The identity checked for ``key`` at ``serial``, if still good."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        identity, at_serial, until = entry
        if at_serial != serial or until < self._clock():
            del self._entries[key]
            return None
        return identity

    def add(self, key: bytes, identity: Identity, serial: int) -> None:
        """``identity`` as checked against the state at ``serial`` (read before the check)."""
        self._entries[key] = (identity, serial, self._clock() + RECENT_SECONDS)
        while len(self._entries) > RECENT_SIZE:
            self._entries.popitem(last=False)
