"""User records: accepted keys, create and modify rules (spec/model.md section 2, api.md 4)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from devpi_twisted.model.errors import Forbidden, InvalidInput
from devpi_twisted.model.names import is_unicode
from devpi_twisted.model.passwords import hash_refusal, legacy_hash

PROFILE_KEYS = ("email", "title", "description", "custom_data")
CREATE_KEYS = frozenset({"password", "pwhash", "pwsalt", *PROFILE_KEYS})
TOLERATED_KEYS = frozenset({"username", "indexes", "created", "modified"})
OLD_CREATED = "1970-01-01T00:00:00Z"
MAX_PASSWORD = 4096  # bytes of UTF-8; passlib refuses longer secrets


def timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


@attrs.frozen
class UserChange:
    """What a create or modify asks for: a new profile and, if given, a password."""

    profile: dict[str, Any]
    password: str | None = None
    pwhash: str | None = None

    @property
    def sets_password(self) -> bool:
        return self.password is not None or self.pwhash is not None


def _require_mapping(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput("Bad request: expected a JSON object")
    return body


def _check_text(key: str, value: Any) -> None:
    if key in ("email", "title", "description", "password", "pwhash", "pwsalt") \
            and not isinstance(value, str):
        raise InvalidInput(f"'{key}' must be a string")
    if key == "password":
        check_password(value)


def check_password(password: str) -> str:
    """``password`` if it can be hashed: valid Unicode (no lone surrogates) of at most
    MAX_PASSWORD bytes in UTF-8; InvalidInput otherwise."""
    if not is_unicode(password):
        raise InvalidInput("the password is not valid Unicode (a lone surrogate)")
    if len(password.encode("utf-8")) > MAX_PASSWORD:
        raise InvalidInput(f"the password is longer than {MAX_PASSWORD} bytes")
    return password


def _ready_hash(body: Mapping[str, Any], may_set_hash: bool) -> str | None:
    """The ``pwhash`` a body sets (with a ``pwsalt``: devpi's legacy salted sha256, as
    dumps carry it), None if it sets none; raises Forbidden unless ``may_set_hash`` (only
    root may, as the hash's cost is what every later login pays) and InvalidInput for a
    hash outside our parameters."""
    pwhash, pwsalt = body.get("pwhash") or None, body.get("pwsalt") or None
    if pwhash is None:
        return None
    _check_text("pwhash", pwhash)
    if not may_set_hash:
        raise Forbidden("only root may set a pwhash; send a password instead")
    if pwsalt is not None:
        _check_text("pwsalt", pwsalt)
        pwhash = legacy_hash(pwsalt, pwhash)
    refusal = hash_refusal(pwhash)
    if refusal is not None:
        raise InvalidInput(refusal)
    return str(pwhash)


def new_user(body: Any, now: float, may_set_hash: bool = False) -> UserChange:
    """The profile of a user created by ``PUT /{user}``; ``may_set_hash``: the
    caller may give a ready ``pwhash`` (root)."""
    body = _require_mapping(body)
    unknown = sorted(set(body) - CREATE_KEYS - TOLERATED_KEYS)
    if unknown:
        raise InvalidInput("Unknown keys in user config: " + ", ".join(unknown))
    if body.get("password") is None and not body.get("pwhash"):
        raise InvalidInput("password needs to be set")
    for key, value in body.items():
        if key in CREATE_KEYS and value is not None:
            _check_text(key, value)
    profile = {k: body[k] for k in PROFILE_KEYS if body.get(k)}
    profile["created"] = timestamp(now)
    return UserChange(profile=profile, password=body.get("password"),
                      pwhash=_ready_hash(body, may_set_hash))


def modify_user(current: Mapping[str, Any], body: Any, now: float,
                may_set_hash: bool = False) -> UserChange:
    """The profile after ``PATCH /{user}``; keys it does not manage are ignored."""
    body = _require_mapping(body)
    profile = dict(current)
    for key in PROFILE_KEYS:
        if key not in body:
            continue
        value = body[key]
        if value is not None:
            _check_text(key, value)
        if value:
            profile[key] = value
        else:
            profile.pop(key, None)
    password = body.get("password")
    if password is not None:
        _check_text("password", password)
    pwhash = _ready_hash(body, may_set_hash)
    change = UserChange(profile=profile, password=password, pwhash=pwhash)
    if profile != dict(current) or change.sets_password:
        profile.setdefault("created", OLD_CREATED)
        profile["modified"] = timestamp(now)
    return change


def is_password_only(current: Mapping[str, Any], body: Any) -> bool:
    """True if the PATCH changes nothing but the password.

    devpi-client's ``passwd`` sends the whole profile back with the new password,
    so keys equal to their stored values do not count as changes.
    """
    if not isinstance(body, Mapping) or "password" not in body:
        return False
    for key in PROFILE_KEYS:
        if key in body and (body[key] or None) != (current.get(key) or None):
            return False
    return "pwhash" not in body and "pwsalt" not in body


def public_view(name: str, profile: Mapping[str, Any], indexes: Mapping[str, Any]) -> dict[str, Any]:
    """The user config object the API returns (never password material)."""
    view: dict[str, Any] = {"username": name}
    view.update(profile)
    view["indexes"] = dict(indexes)
    return view
