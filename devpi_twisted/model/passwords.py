"""Password hashes: argon2id through passlib (spec/model.md 2.2).

These functions burn tens of milliseconds of CPU; callers run them off the reactor.

Users imported from old devpi dumps may carry devpi's pre-4.2 form: a ``pwsalt`` and
the hex sha256 of salt then password. We keep it as ``LEGACY_PREFIX + salt + "$" +
hexdigest``; it verifies, and ``needs_rehash`` says to replace it with argon2id.
"""

from __future__ import annotations

import hashlib
import hmac

from passlib.hash import argon2

LEGACY_PREFIX = "$devpi-salted-sha256$"

_HASHER = argon2.using(
    type="ID", memory_cost=65536, rounds=3, parallelism=4, salt_size=16, digest_size=32)


def hash_password(password: str) -> str:
    return str(_HASHER.hash(password))


def verify_password(password: str, pwhash: str | None) -> bool:
    """True if ``password`` matches; False for a wrong one, a missing or an unreadable hash."""
    if not pwhash:
        return False
    if pwhash.startswith(LEGACY_PREFIX):
        return _verify_legacy(password, pwhash)
    try:
        return bool(_HASHER.verify(password, pwhash))
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
    if pwhash.startswith(LEGACY_PREFIX):
        return True
    try:
        return bool(_HASHER.needs_update(pwhash))
    except (ValueError, TypeError):
        return False


def looks_like_hash(pwhash: str) -> bool:
    return bool(_HASHER.identify(pwhash))
