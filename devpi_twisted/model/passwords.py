"""Password hashes: argon2id through passlib (spec/model.md 2.2).

These functions burn tens of milliseconds of CPU; callers run them off the reactor.
The server checks passwords in child processes (``check_password``, which also says
whether to rehash), so passlib is imported at the first hash or check made in this
process (about 1 MB resident for good otherwise); ``hash_refusal``, which the server
itself asks, reads the PHC string.

Users imported from old devpi dumps may carry devpi's pre-4.2 form: a ``pwsalt`` and
the hex sha256 of salt then password. We keep it as ``LEGACY_PREFIX + salt + "$" +
hexdigest``; it verifies, and ``needs_rehash`` says to replace it with argon2id.

The cost of checking an argon2 hash is written in the hash itself, so a hash must stay
within known costs before anything computes with it: ``hash_refusal`` admits what a
client may set (our own parameters), ``verify_password`` also what devpi dumps carry
(argon2-cffi's defaults before 21.2, m=102400,t=2,p=8). Anything dearer never verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import functools
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

LEGACY_PREFIX = "$devpi-salted-sha256$"
_DIGEST_SIZE = 32


@functools.cache
def _hasher() -> Any:
    """passlib's argon2id at our parameters (imported here: see above)."""
    from passlib.hash import argon2
    return argon2.using(type="ID", memory_cost=OUR_COST.memory, rounds=OUR_COST.time,
                        parallelism=OUR_COST.lanes, salt_size=16, digest_size=_DIGEST_SIZE)


@attrs.frozen
class Argon2Cost:
    """Ceilings of an argon2 hash's parameters: memory in KiB, passes, lanes."""

    memory: int
    time: int
    lanes: int

    def admits(self, memory: int, time: int, lanes: int) -> bool:
        return 8 * lanes <= memory <= self.memory and 1 <= time <= self.time \
            and 1 <= lanes <= self.lanes


OUR_COST = Argon2Cost(memory=65536, time=3, lanes=4)
DEVPI_DUMP_COST = Argon2Cost(memory=102400, time=2, lanes=8)
SETTABLE = (OUR_COST,)
VERIFIABLE = (OUR_COST, DEVPI_DUMP_COST)

# PHC strings as argon2-cffi writes them: salt 8-48 bytes, digest 16-64 bytes (base64, no padding).
_PHC = re.compile(
    r"\$argon2(?:id|i|d)\$(?:v=(?:16|19)\$)?m=([0-9]{1,7}),t=([0-9]{1,4}),p=([0-9]{1,3})"
    r"\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{22,86}")
_LEGACY = re.compile(re.escape(LEGACY_PREFIX) + r"[\x21-\x7e]{1,64}\$[0-9a-fA-F]{64}")

# A hash of a random password at our parameters: unknown users are checked against it,
# so they cost what a wrong password costs (it never matches anything a client sends).
DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$"
              "Ver9nxMiZGytlTLG+L9XKg$GSu8tTU0Z4OYlMJdId9No23nYZZPzzlDbnf2+h0c/Pc")


def hash_refusal(pwhash: str, allowed: tuple[Argon2Cost, ...] = SETTABLE) -> str | None:
    """Why ``pwhash`` may not be stored, or None if it may: an argon2 PHC string within
    ``allowed`` costs, or the legacy salted sha256 form of devpi dumps."""
    if _LEGACY.fullmatch(pwhash):
        return None
    match = _PHC.fullmatch(pwhash)
    if match is None:
        return ("pwhash must be an argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash) "
                "or devpi's legacy salted sha256")
    memory, time, lanes = (int(g) for g in match.groups())
    if not any(cost.admits(memory, time, lanes) for cost in allowed):
        ceiling = allowed[0]
        return (f"pwhash parameters m={memory},t={time},p={lanes} are outside the accepted "
                f"range (at most m={ceiling.memory},t={ceiling.time},p={ceiling.lanes})")
    return None


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify_password(password: str, pwhash: str | None) -> bool:
    """True if ``password`` matches; False for a wrong one, a missing or an unreadable hash,
    and without computing anything for a hash outside ``VERIFIABLE`` costs."""
    if not pwhash or hash_refusal(pwhash, VERIFIABLE) is not None:
        return False  # unreadable, or dearer than any hash we made or imported: never computed
    if pwhash.startswith(LEGACY_PREFIX):
        return _verify_legacy(password, pwhash)
    try:
        return bool(_hasher().verify(password, pwhash))
    except (ValueError, TypeError):
        return False


def legacy_hash(salt: str, hexdigest: str) -> str:
    return f"{LEGACY_PREFIX}{salt}${hexdigest}"


def split_legacy(pwhash: str) -> tuple[str, str] | None:
    """(salt, hexdigest) of a legacy hash, None for any other."""
    if not pwhash.startswith(LEGACY_PREFIX):
        return None
    salt, _, hexdigest = pwhash[len(LEGACY_PREFIX):].rpartition("$")
    return salt, hexdigest


def _verify_legacy(password: str, pwhash: str) -> bool:
    salt, hexdigest = split_legacy(pwhash) or ("", "")
    try:
        actual = hashlib.sha256(salt.encode("ascii") + password.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        return False
    return bool(hexdigest) and hmac.compare_digest(actual, hexdigest.lower())


def needs_rehash(pwhash: str) -> bool:
    """True for the legacy form and for an argon2 hash passlib would redo at our
    parameters; False for anything else."""
    if pwhash.startswith(LEGACY_PREFIX):
        return True
    try:
        return bool(_hasher().needs_update(pwhash))
    except (ValueError, TypeError):
        return False


def check_password(password: str, pwhash: str) -> tuple[bool, bool]:
    """(``verify_password``, whether a match should be rehashed: ``needs_rehash``) in one
    call, for the process that checks passwords (web/hashing.py's child, where passlib is
    loaded anyway)."""
    matches = verify_password(password, pwhash)
    return matches, matches and needs_rehash(pwhash)


def looks_like_hash(pwhash: str) -> bool:
    return bool(_hasher().identify(pwhash))


VERIFIED_CACHE_SIZE = 1024
VERIFIED_CACHE_SECONDS = 600.0


class VerifiedPasswords:
    """Remembers recent successful password checks, so Basic auth on every request
    (twine, pip) does not pay argon2 each time. Keys are HMACs over user, password,
    the stored hash and the client address with a per-process key: a changed password
    misses. A remembered check passes even while failed logins throttle the user, so
    the key holds the client: another address guessing cannot learn from it."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._key = os.urandom(32)
        self._clock = clock
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _digest(self, user: str, password: str, pwhash: str, client: str) -> bytes:
        msg = "\0".join((user, password, pwhash, client)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def known(self, user: str, password: str, pwhash: str, client: str) -> bool:
        key = self._digest(user, password, pwhash, client)
        until = self._entries.get(key)
        if until is None or until < self._clock():
            self._entries.pop(key, None)
            return False
        return True

    def add(self, user: str, password: str, pwhash: str, client: str) -> None:
        key = self._digest(user, password, pwhash, client)
        self._entries[key] = self._clock() + VERIFIED_CACHE_SECONDS
        while len(self._entries) > VERIFIED_CACHE_SIZE:
            self._entries.popitem(last=False)
