"""Password hashes: argon2id through passlib (spec/model.md 2.2).

These functions burn tens of milliseconds of CPU; callers run them off the reactor.
"""

from __future__ import annotations

from passlib.hash import argon2

_HASHER = argon2.using(
    type="ID", memory_cost=65536, rounds=3, parallelism=4, salt_size=16, digest_size=32)


def hash_password(password: str) -> str:
    return str(_HASHER.hash(password))


def verify_password(password: str, pwhash: str | None) -> bool:
    """True if ``password`` matches; False for a wrong one, a missing or an unreadable hash."""
    if not pwhash:
        return False
    try:
        return bool(_HASHER.verify(password, pwhash))
    except (ValueError, TypeError):
        return False


def needs_rehash(pwhash: str) -> bool:
    try:
        return bool(_HASHER.needs_update(pwhash))
    except (ValueError, TypeError):
        return False


def looks_like_hash(pwhash: str) -> bool:
    return bool(_HASHER.identify(pwhash))
