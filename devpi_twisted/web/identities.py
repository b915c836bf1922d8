"""Identities of recently seen credentials (RecentIdentities), so that an installer
sending the same Basic password or login token with every request of a private index
does not pay the password or token check each time.

An entry is used only while no change to users, passwords, API tokens or indexes has
been committed since it was made (every such change commits, on this process, another
worker or the primary of a replica: the caller syncs first, then compares the storage's
``identity_serial``; uploads and other release changes in between keep entries good, so
a client uploading one file after another pays the check once) and for at most
``RECENT_SECONDS`` (tokens expire). Only successful checks are kept, so failed logins are still counted
and throttled. Keys are keyed hashes (per-process key) of the credential headers as
sent and of what the client address is made of (the peer, ``X-Real-IP``): no secret
is kept in memory as given, and a hit costs no decoding.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable

from devpi_twisted.model.acl import Identity
from devpi_twisted.web.deps import HttpRequest

RECENT_SIZE = 1024
RECENT_SECONDS = 2.0


class RecentIdentities:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._key = os.urandom(32)
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Identity, int, float]] = OrderedDict()

    def key(self, request: HttpRequest) -> bytes | None:
        """The key of the request's credentials and client; None without credentials."""
        devpi_auth = request.getHeader(b"X-Devpi-Auth") or b""
        authorization = request.getHeader(b"Authorization") or b""
        if not devpi_auth and not authorization:
            return None
        peer = getattr(request.getClientAddress(), "host", "unix")
        message = b"\0".join((devpi_auth, authorization, request.getHeader(b"X-Real-IP") or b"",
                              peer.encode("utf-8", "replace")))
        return hashlib.blake2b(message, key=self._key, digest_size=32).digest()

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
