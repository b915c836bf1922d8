"""Scoped API tokens in devpi-tokens' format (spec/access.md): making, parsing, verifying.

A token is ``devpi-`` and a macaroon (version 2 binary serialisation, base64url)
whose identifier is ``{user}-{id}``; restrictions are first-party caveats
``name=value`` (lists joined with ``,``, sorted). Clients may add caveats themselves
(``devpi token-derive``); every caveat present must hold. The signing key of a token
is an HMAC of the server's derived auth key with the token's user, id and a random
salt stored beside it: a database leak alone (the salt) reproduces no token. The
signature chain is recomputed here and compared in constant time.

Pure: time comes in as ``now``, randomness from ``secrets``; storage is the caller's.
pymacaroons (and PyNaCl under it, about 1.2 MB resident) is imported at the first
token made or presented: a server used without API tokens never loads it.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from devpi_twisted.model.acl import PERMISSIONS, USER_PERMISSIONS, Scope
from devpi_twisted.model.errors import Forbidden, InvalidInput
from devpi_twisted.model.names import normalize_project

ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
ID_LENGTH = 8
PREFIX = "devpi-"
ONE_YEAR = 366 * 24 * 60 * 60 + 10  # devpi-tokens' default and limit: a leap year, and spare
MAX_TOKEN_CHARS = 8192  # a token with a few derived caveats is well under 1 KB
MAX_CAVEATS = 64
MAX_LIST_ITEMS = 256
MAX_ITEM_CHARS = 200
RESTRICTIONS = ("allowed", "expires", "indexes", "not_before", "projects")
LIST_RESTRICTIONS = ("allowed", "indexes", "projects")
_ID = re.compile(f"[{ALPHABET}]{{{ID_LENGTH}}}\\Z")


class TokenRefused(Exception):
    """A presented API token that cannot be used; ``str(e)`` says why (no secrets)."""


class TokenUserMismatch(Exception):
    """Basic auth named another user than the token's."""


def new_token_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def new_salt() -> str:
    return secrets.token_urlsafe(32)


class TokenKeys:
    """Per-token signing keys from the server's derived auth key (model/tokens.py)."""

    def __init__(self, auth_key: bytes) -> None:
        self._key = hmac.new(auth_key, b"devpi-twisted api tokens", hashlib.sha256).digest()

    def key(self, user: str, token_id: str, salt: str) -> bytes:
        message = "\0".join((user, token_id, salt)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()


# -- restrictions asked for when creating a token -------------------------------------


def _timestamp(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"Invalid value '{value}' for {name}")
    try:
        return int(value)
    except (ValueError, OverflowError):
        raise InvalidInput(f"Invalid value '{value}' for {name}") from None


def _string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"The {name} restriction must be a list")
    if len(value) > MAX_LIST_ITEMS:
        raise InvalidInput(f"The {name} restriction has more than {MAX_LIST_ITEMS} items")
    for position, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise InvalidInput(f"Item at position {position} is not a string in {name} list")
        if not item.strip() or "," in item or len(item) > MAX_ITEM_CHARS:
            raise InvalidInput(f"Bad item at position {position} in {name} list")
    return sorted(item.strip() for item in value)


def restrictions(body: Any, now: float, extended_expiry: bool) -> list[str]:
    """The caveats of a new token from a ``+token-create`` body (keys optional, sorted
    as devpi-tokens adds them); ``extended_expiry``: the caller may create tokens that
    never expire or live longer than a year (root, ``--restrict-modify`` admins)."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise InvalidInput("Bad request: expected a JSON object")
    data = dict(body)
    for key in data:
        if key not in RESTRICTIONS:
            raise InvalidInput(f"Unknown restriction '{key}'.")
    default_expires = int(now) + ONE_YEAR
    if data.get("expires") is None:
        data["expires"] = default_expires
    caveats = []
    for key in sorted(data):
        value = data[key]
        if key == "expires":
            if value == "never":
                if not extended_expiry:
                    raise Forbidden("Not allowed to create token with no expiration")
                caveats.append("expires=never")
                continue
            expires = _timestamp("expiration", value)
            if expires <= now:
                raise InvalidInput("Can't set expiration before current time")
            if expires > default_expires and not extended_expiry:
                raise Forbidden("Not allowed to set expiration to more than one year")
            caveats.append(f"expires={expires}")
        elif key == "not_before":
            caveats.append(f"not_before={_timestamp('not before', value)}")
        else:
            items = _string_list(key, value)
            if key == "allowed":
                unknown = sorted(set(items) - PERMISSIONS)
                if unknown:
                    raise InvalidInput(f"Unknown permissions: {', '.join(unknown)}")
            caveats.append(f"{key}={','.join(items)}")
    return caveats


def mint(keys: TokenKeys, user: str, token_id: str, salt: str, caveats: Iterable[str]) -> str:
    """The token (``devpi-`` and the serialised macaroon)."""
    import pymacaroons  # type: ignore[import-untyped]  # untyped library; lazy (see above)
    macaroon = pymacaroons.Macaroon(identifier=f"{user}-{token_id}",
                                    key=keys.key(user, token_id, salt),
                                    version=pymacaroons.MACAROON_V2)
    for caveat in caveats:
        macaroon.add_first_party_caveat(caveat)
    return PREFIX + str(macaroon.serialize())


# -- tokens presented -------------------------------------------------------------------


@attrs.frozen(eq=False)
class Presented:
    """A value shaped like an API token: its user and id, and the macaroon to verify."""

    user: str
    token_id: str
    macaroon: Any


def parse(value: str) -> Presented | None:
    """The token ``value`` holds (with or without the ``devpi-`` prefix: derived tokens
    come without), None if it is not a macaroon at all (a password, a login token);
    TokenRefused if it says it is a token (the prefix) but cannot be read."""
    prefixed = value.startswith(PREFIX)
    text = value[len(PREFIX):] if prefixed else value
    refused = TokenRefused("the API token is malformed (truncated or damaged)")
    if len(value) > MAX_TOKEN_CHARS or not text or not text.isascii():
        if prefixed:
            raise refused
        return None
    import pymacaroons  # lazy (see above)
    try:
        macaroon = pymacaroons.Macaroon.deserialize(text)
        identifier = macaroon.identifier_bytes.decode("ascii")
        caveats = list(macaroon.caveats)
        signature = macaroon.signature_bytes
    except Exception:  # the library raises anything for damaged input
        if prefixed:
            raise refused from None
        return None
    user, _, token_id = identifier.rpartition("-")
    if not user or not _ID.match(token_id) or not isinstance(signature, bytes) \
            or len(caveats) > MAX_CAVEATS:
        if prefixed:
            raise refused
        return None
    return Presented(user, token_id, macaroon)


def _when(value: int) -> str:
    try:
        return f"{value} ({datetime.fromtimestamp(value, tz=timezone.utc).isoformat()})"
    except (ValueError, OverflowError, OSError):
        return str(value)


def _check_signature(keys: TokenKeys, token: Presented, salt: str) -> list[str]:
    """The caveats, once the signature chain checks out (compared in constant time)."""
    from pymacaroons.utils import (  # type: ignore[import-untyped]  # untyped; lazy (see above)
        create_initial_signature, sign_first_party_caveat,
    )
    macaroon = token.macaroon
    signature = create_initial_signature(keys.key(token.user, token.token_id, salt),
                                         macaroon.identifier_bytes)
    caveats = []
    for caveat in macaroon.caveats:
        if caveat.verification_key_id or caveat.location:
            raise TokenRefused("the API token carries a third-party caveat, not accepted")
        signature = sign_first_party_caveat(binascii.unhexlify(signature), caveat.caveat_id_bytes)
        caveats.append(caveat.caveat_id_bytes)
    if not hmac.compare_digest(signature, macaroon.signature_bytes):
        raise TokenRefused("the API token's signature does not verify (forged or altered)")
    try:
        return [c.decode("utf-8") for c in caveats]
    except UnicodeDecodeError:
        raise TokenRefused("the API token carries an unreadable restriction") from None


def _narrow(current: frozenset[str] | None, values: Iterable[str]) -> frozenset[str]:
    found = frozenset(values)
    return found if current is None else current & found


@attrs.frozen
class Verified:
    """A token whose signature checked out: its scope and the window of time it is
    valid in (``None``: unbounded on that side), checked at each use."""

    scope: Scope
    not_before: int | None = None
    expires: int | None = None

    def scope_at(self, now: float) -> Scope:
        """The scope, or TokenRefused if ``now`` is outside the window."""
        if self.not_before is not None and now < self.not_before:
            raise TokenRefused(f"the API token is not valid before {_when(self.not_before)}")
        if self.expires is not None and now >= self.expires:
            raise TokenRefused(f"the API token expired at {_when(self.expires)}")
        return self.scope


def checked(keys: TokenKeys, token: Presented, salt: str) -> Verified:
    """The token's restrictions once its signature (with the stored ``salt``) checks
    out; TokenRefused if forged or carrying a restriction we do not know."""
    indexes = projects = allowed = None
    not_before = expires = None
    for caveat in _check_signature(keys, token, salt):
        name, sep, value = caveat.partition("=")
        if not sep or name not in RESTRICTIONS:
            raise TokenRefused(f"the API token carries an unknown restriction '{name[:40]}'")
        if name == "expires":
            if value != "never":
                at = _caveat_time(value)
                expires = at if expires is None else min(expires, at)
        elif name == "not_before":
            at = _caveat_time(value)
            not_before = at if not_before is None else max(not_before, at)
        else:
            items = [v.strip() for v in value.split(",") if v.strip()]
            if name == "indexes":
                indexes = _narrow(indexes, items)
            elif name == "projects":
                projects = _narrow(projects, (normalize_project(p) for p in items))
            else:
                allowed = _narrow(allowed, (p for p in items if p not in USER_PERMISSIONS))
    return Verified(Scope(indexes, projects, allowed), not_before, expires)


def verify(keys: TokenKeys, token: Presented, salt: str, now: float) -> Scope:
    """The scope of a token whose stored salt is ``salt`` at the time ``now``;
    TokenRefused if forged, expired, not valid yet or carrying a restriction we do
    not know."""
    return checked(keys, token, salt).scope_at(now)


def _caveat_time(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise TokenRefused("the API token carries an unreadable time restriction") from None

