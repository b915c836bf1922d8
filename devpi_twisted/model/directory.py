"""Users of an outside directory (LDAP): what the model asks of one, and what it remembers.

A ``Directory`` checks a user name and password and tells the user's groups; where it
gets them (devpi_twisted/identity/) is not the model's business. ServerOps asks it only
for names no local user has (local users win, root is always local), through the same
login throttle as local passwords. Its answers are remembered for a few minutes
(``DirectoryLogins``) so that Basic auth on every request of an upload does not ask the
directory each time; a login token carries the groups for its lifetime instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from devpi_twisted.model.acl import ROOT, Identity
from devpi_twisted.model.errors import InvalidInput, TooManyAttempts, Unauthenticated
from devpi_twisted.model.names import MAX_NAME, can_be_stored, check_name
from devpi_twisted.model.throttle import LoginThrottle
from devpi_twisted.model.tokens import LOGIN_TOKEN_MAX_AGE, TokenSigner
from devpi_twisted.storage.interface import Storage

REMEMBERED_LOGINS = 1024
REMEMBER_SECONDS = 300.0
THROTTLED_ANSWER_DELAY = 1.0


class Directory(Protocol):
    """An outside directory of users and groups."""

    @property
    def name(self) -> str:
        """What identifies the directory (its URL): login tokens it vouched for bind to it."""

    def check(self, username: str, password: str) -> Awaitable[frozenset[str] | None]:
        """The user's groups if the directory accepts the password, None if it does not
        know the user or refuses the password; raises errors.Unavailable when it cannot
        answer (down, too slow)."""


class DirectoryLogins:
    """Successful directory checks of the last ``REMEMBER_SECONDS``, keyed by an HMAC of
    user, password and client address with a per-process key (nothing reversible is
    kept); the value is the groups the directory told."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._key = os.urandom(32)
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, frozenset[str]]] = OrderedDict()

    def _digest(self, user: str, password: str, client: str) -> bytes:
        message = "\0".join((user, password, client)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def groups(self, user: str, password: str, client: str) -> frozenset[str] | None:
        key = self._digest(user, password, client)
        entry = self._entries.get(key)
        if entry is None or entry[0] < self._clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def remember(self, user: str, password: str, client: str, groups: frozenset[str]) -> None:
        self._entries[self._digest(user, password, client)] = \
            (self._clock() + REMEMBER_SECONDS, groups)
        while len(self._entries) > REMEMBERED_LOGINS:
            self._entries.popitem(last=False)


class DirectoryUsers:
    """How ServerOps logs directory users in: only names no local user has (``serves``),
    passwords through the login throttle, login tokens ``[name, groups, False, stamp]``
    (devpi's payload; False: not a local user) whose groups hold for the token's life."""

    def __init__(self, directory: Directory, storage: Storage, signer: TokenSigner,
                 throttle: LoginThrottle, clock: Callable[[], float],
                 pause: Callable[[float], Awaitable[Any]] | None = None) -> None:
        self._directory = directory
        self._storage = storage
        self._signer = signer
        self._throttle = throttle
        self._pause = pause
        self._remembered = DirectoryLogins(clock)

    async def serves(self, username: str) -> bool:
        """Whether the directory is asked about ``username``: a valid user name (a
        directory matches `` alice`` or ``alice `` as alice, which would make one person
        several users), not root in any case, no local user."""
        if username.lower() == ROOT or not username or username.startswith("+") \
                or len(username) > MAX_NAME or not can_be_stored(username):
            return False
        try:
            check_name("username", username)
        except InvalidInput:
            return False
        return await self._storage.get_user(username) is None

    async def identity(self, username: str, password: str, client: str,
                       fresh: bool = False) -> Identity | None:
        """The identity the directory vouches for, None for a refused password; raises
        TooManyAttempts while failures throttle the user or client, Unavailable when the
        directory cannot answer (that is no failure of the user's). ``fresh``: ask the
        directory even if it vouched for these credentials a moment ago."""
        groups = None if fresh else self._remembered.groups(username, password, client)
        if groups is not None:
            return Identity(username, groups)
        wait = self._throttle.wait(username, client)
        if wait > 0:
            if self._pause is not None:
                await self._pause(min(wait, THROTTLED_ANSWER_DELAY))
            raise TooManyAttempts("too many failed logins, try again later", retry_after=wait)
        if not password:  # an empty password would be an anonymous bind, which succeeds
            self._throttle.failed(username, client)
            return None
        self._throttle.started(username, client)
        try:
            groups = await self._directory.check(username, password)
        finally:
            self._throttle.settled(username, client)
        if groups is None:
            self._throttle.failed(username, client)
            return None
        self._throttle.succeeded(username)
        self._remembered.remember(username, password, client, groups)
        return Identity(username, groups)

    async def login(self, username: str, password: str, client: str) -> dict[str, Any]:
        """A login token (POST /+login), always from a fresh check; raises
        Unauthenticated and what ``identity`` raises."""
        identity = await self.identity(username, password, client, fresh=True)
        if identity is None:
            raise Unauthenticated(f"user '{username}' could not be authenticated")
        token = self._signer.make([username, sorted(identity.groups), False,
                                   self._stamp(username)])
        return {"password": token, "expiration": LOGIN_TOKEN_MAX_AGE}

    def _stamp(self, username: str) -> str:
        return self._signer.stamp("directory", self._directory.name, username)

    @staticmethod
    def vouched(payload: Any) -> bool:
        """Whether a login token's payload is one of a directory user's."""
        return isinstance(payload, list) and len(payload) == 4 and payload[2] is False

    async def token_identity(self, username: str, payload: list[Any]) -> Identity | None:
        """The identity of a directory user's login token; None if it names another user,
        another directory, bad groups, or a name a local user has taken since."""
        name, groups, _, stamp = payload
        if name != username or not isinstance(stamp, str) or not isinstance(groups, list) \
                or not all(isinstance(g, str) for g in groups):
            return None
        if not hmac.compare_digest(stamp, self._stamp(name)) or not await self.serves(name):
            return None
        return Identity(name, frozenset(groups))
