"""User records: accepted keys, create and modify rules (spec/model.md section 2, api.md 4)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import is_unicode

PROFILE_KEYS = ("email", "title", "description", "custom_data")
CREATE_KEYS = frozenset({"password", "pwhash", *PROFILE_KEYS})
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
    if key in ("email", "title", "description", "password", "pwhash") and not isinstance(value, str):
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


def new_user(body: Any, now: float) -> UserChange:
    """The profile of a user created by ``PUT /{user}``."""
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
    return UserChange(profile=profile, password=body.get("password"), pwhash=body.get("pwhash") or None)


def modify_user(current: Mapping[str, Any], body: Any, now: float) -> UserChange:
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
    pwhash = body.get("pwhash") or None
    for key, value in (("password", password), ("pwhash", pwhash)):
        if value is not None:
            _check_text(key, value)
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
    return "pwhash" not in body


def public_view(name: str, profile: Mapping[str, Any], indexes: Mapping[str, Any]) -> dict[str, Any]:
    """The user config object the API returns (never password material)."""
    view = {"username": name}
    view.update(profile)
    view["indexes"] = dict(indexes)
    return view
