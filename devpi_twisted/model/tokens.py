"""Login tokens signed with a key derived from the server secret (spec/model.md 4).

The format is itsdangerous' timed signature over a JSON payload, as devpi makes
it, so that tokens stay valid between nodes sharing a secret. A login token's payload
is devpi's ``[username, groups, from_local_user]`` plus a fourth element, the user's
``stamp``: a keyed digest of what identifies the user's current password, so a token
stops working when that changes (ServerOps checks it against the stored user).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
from itsdangerous import BadSignature, TimestampSigner

from devpi_twisted.model.apitokens import TokenKeys

LOGIN_TOKEN_MAX_AGE = 36000
REPLICA_TOKEN_MAX_AGE = 37.6


@attrs.frozen
class DerivedKeys:
    auth: bytes
    replica: bytes


AUTH_SALT, REPLICA_SALT = b"devpi-server-auth", b"devpi-server-replica"


def derive_key(secret: bytes, salt: bytes, time_cost: int, memory_cost: int,
               parallelism: int) -> bytes:
    """Raw argon2id of the secret with one of devpi's salts; slow by design (run in
    keychild's process: argon2-cffi is imported here, not by the server)."""
    from argon2.low_level import Type, hash_secret_raw
    return hash_secret_raw(secret, salt, time_cost=time_cost, memory_cost=memory_cost,
                           parallelism=parallelism, hash_len=16, type=Type.ID, version=19)


def derive_keys(secret: bytes, time_cost: int, memory_cost: int, parallelism: int) -> DerivedKeys:
    """Both keys of the secret (run once at start)."""
    costs = (time_cost, memory_cost, parallelism)
    return DerivedKeys(auth=derive_key(secret, AUTH_SALT, *costs),
                       replica=derive_key(secret, REPLICA_SALT, *costs))


class _ClockSigner(TimestampSigner):
    def __init__(self, key: bytes, clock: Callable[[], float]) -> None:
        super().__init__(key, salt=b"itsdangerous", key_derivation="django-concat",
                         digest_method=hashlib.sha1)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class TokenExpired(Exception):
    """A token with a valid signature, too old to use."""


class NotAToken(Exception):
    """The value is not a token signed with our key."""


class TokenSigner:
    """Makes and checks timed tokens over JSON payloads.

    Checking a signature derives the key anew each time (itsdangerous), which is most
    of an upload's authentication; tokens that checked out are remembered with the
    time they were signed (a few hundred, oldest dropped first), so a repeated token
    costs a dict lookup and an age comparison.
    """

    CHECKED_MAX = 512

    def __init__(self, key: bytes, clock: Callable[[], float]) -> None:
        self._stamp_key = hmac.new(key, b"devpi-twisted user stamp", hashlib.sha256).digest()
        self.api_keys = TokenKeys(key)  # API tokens' signing keys (model/apitokens.py)
        self._signer = _ClockSigner(key, clock)
        self._clock = clock
        self._checked: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def stamp(self, *parts: str) -> str:
        """A short keyed digest of ``parts``: equal parts and key, equal stamp; it tells
        nothing about the parts to whoever reads a token."""
        message = "\0".join(parts).encode("utf-8", "surrogatepass")
        digest = hmac.new(self._stamp_key, message, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def make(self, payload: Any) -> str:
        return self._signer.sign(json.dumps(payload)).decode("ascii")

    def check(self, token: str, max_age: float) -> Any:
        """The payload (a fresh copy); raises TokenExpired or NotAToken."""
        known = self._checked.get(token)
        if known is None:
            known = self._unsign(token)
            self._checked[token] = known
            if len(self._checked) > self.CHECKED_MAX:
                self._checked.popitem(last=False)
        payload, signed_at = known
        if not 0 <= int(self._clock()) - signed_at <= max_age:  # too old, or from the future
            raise TokenExpired()
        return json.loads(payload)

    def _unsign(self, token: str) -> tuple[str, int]:
        try:
            raw, signed_at = self._signer.unsign(token, return_timestamp=True)
        except (BadSignature, UnicodeError, ValueError):
            raise NotAToken() from None
        try:
            json.loads(raw)
        except ValueError:
            raise NotAToken() from None
        return raw.decode("utf-8"), int(signed_at.timestamp())
