"""Login and replica tokens, key derivation (spec/model.md section 4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import itsdangerous
import pytest
from argon2 import PasswordHasher, Type
from hypothesis import given
from hypothesis import strategies as st

from devpi_twisted.model.tokens import (
    LOGIN_TOKEN_MAX_AGE,
    REPLICA_TOKEN_MAX_AGE,
    NotAToken,
    TokenExpired,
    TokenSigner,
    derive_keys,
)

KEY = b"0123456789abcdef"
OTHER_KEY = b"fedcba9876543210"
T0 = 1714557600.0
TINY = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}
LOGIN = ["alice", ["devs"], True]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- make / check --------------------------------------------------------------------


@pytest.mark.parametrize("payload", [LOGIN, ["a.b", [], False], "3f2a9c1e-replica-uuid", {"a": [1, None]}, 0, "ümlaut"])
def test_token_round_trips_json_payload(payload: Any) -> None:
    signer = TokenSigner(KEY, Clock(T0))
    assert signer.check(signer.make(payload), LOGIN_TOKEN_MAX_AGE) == payload


def test_token_has_devpi_format_payload_timestamp_and_hmac_sha1_signature() -> None:
    token = TokenSigner(KEY, Clock(T0)).make(LOGIN)
    payload, stamp, signature = token.split(".")
    assert payload == '["alice", ["devs"], true]'
    assert _unb64(stamp) == int(T0).to_bytes(4, "big")
    assert "=" not in stamp + signature
    key = hashlib.sha1(b"itsdangerous" + b"signer" + KEY).digest()
    expected = hmac.new(key, f"{payload}.{stamp}".encode(), hashlib.sha1).digest()
    assert signature == _b64(expected)


def test_token_timestamp_has_no_leading_zero_bytes() -> None:
    token = TokenSigner(KEY, Clock(300.0)).make(LOGIN)
    assert _unb64(token.split(".")[1]) == b"\x01\x2c"


def test_token_is_ascii_single_line_with_url_safe_timestamp_and_signature() -> None:
    token = TokenSigner(KEY, Clock(T0)).make(["b\u00f6b", [], False])
    assert token.isascii()
    assert re.fullmatch(r"[^\n]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


def test_token_is_accepted_by_itsdangerous_timed_serializer_like_devpi() -> None:
    token = TokenSigner(KEY, Clock(time.time())).make(LOGIN)
    assert itsdangerous.TimedSerializer(KEY).loads(token, max_age=LOGIN_TOKEN_MAX_AGE) == LOGIN


def test_token_from_itsdangerous_timed_serializer_is_accepted() -> None:
    token = itsdangerous.TimedSerializer(KEY).dumps(LOGIN)
    assert TokenSigner(KEY, Clock(time.time())).check(token, LOGIN_TOKEN_MAX_AGE) == LOGIN


def test_login_token_is_valid_up_to_its_max_age() -> None:
    clock = Clock(T0)
    signer = TokenSigner(KEY, clock)
    token = signer.make(LOGIN)
    clock.now = T0 + LOGIN_TOKEN_MAX_AGE
    assert signer.check(token, LOGIN_TOKEN_MAX_AGE) == LOGIN


def test_login_token_expires_after_its_max_age() -> None:
    clock = Clock(T0)
    signer = TokenSigner(KEY, clock)
    token = signer.make(LOGIN)
    clock.now = T0 + LOGIN_TOKEN_MAX_AGE + 1
    with pytest.raises(TokenExpired):
        signer.check(token, LOGIN_TOKEN_MAX_AGE)


def test_login_max_age_is_ten_hours_and_replica_max_age_is_37_6_seconds() -> None:
    assert (LOGIN_TOKEN_MAX_AGE, REPLICA_TOKEN_MAX_AGE) == (36000, 37.6)


@pytest.mark.parametrize(("elapsed", "valid"), [(0, True), (37, True), (37.99, True), (38, False), (60, False)])
def test_replica_token_expires_after_fractional_max_age(elapsed: float, valid: bool) -> None:
    clock = Clock(T0)
    signer = TokenSigner(KEY, clock)
    token = signer.make("uuid")
    clock.now = T0 + elapsed
    if valid:
        assert signer.check(token, REPLICA_TOKEN_MAX_AGE) == "uuid"
    else:
        with pytest.raises(TokenExpired):
            signer.check(token, REPLICA_TOKEN_MAX_AGE)


def test_token_time_is_whole_seconds_of_the_injected_clock() -> None:
    clock = Clock(T0 + 0.9)
    signer = TokenSigner(KEY, clock)
    token = signer.make("x")
    assert _unb64(token.split(".")[1]) == int(T0).to_bytes(4, "big")
    clock.now = T0 + 38.0
    with pytest.raises(TokenExpired):
        signer.check(token, REPLICA_TOKEN_MAX_AGE)


def test_token_from_the_future_is_not_accepted() -> None:
    token = TokenSigner(KEY, Clock(T0 + 3600)).make(LOGIN)
    with pytest.raises((TokenExpired, NotAToken)):
        TokenSigner(KEY, Clock(T0)).check(token, LOGIN_TOKEN_MAX_AGE)


def test_token_signed_with_other_key_is_not_a_token() -> None:
    token = TokenSigner(OTHER_KEY, Clock(T0)).make(LOGIN)
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(T0)).check(token, LOGIN_TOKEN_MAX_AGE)


def test_expired_token_with_bad_signature_is_not_a_token() -> None:
    token = TokenSigner(OTHER_KEY, Clock(T0)).make(LOGIN)
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(T0 + 10 * LOGIN_TOKEN_MAX_AGE)).check(token, LOGIN_TOKEN_MAX_AGE)


def test_token_with_forged_payload_is_not_a_token() -> None:
    payload, stamp, signature = TokenSigner(KEY, Clock(T0)).make(LOGIN).split(".")
    forged = payload.replace("alice", "root")
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(T0)).check(f"{forged}.{stamp}.{signature}", LOGIN_TOKEN_MAX_AGE)


def test_token_with_forged_timestamp_is_not_a_token() -> None:
    token = TokenSigner(KEY, Clock(T0)).make(LOGIN)
    later = TokenSigner(KEY, Clock(T0 + 1000)).make(LOGIN)
    payload, _, signature = token.split(".")
    stamp = later.split(".")[1]
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(T0 + 1000)).check(f"{payload}.{stamp}.{signature}", LOGIN_TOKEN_MAX_AGE)


def test_signed_value_that_is_not_json_is_not_a_token() -> None:
    # Same construction as the spec describes, over a payload that is not JSON.
    raw = itsdangerous.TimestampSigner(KEY, salt=b"itsdangerous", key_derivation="django-concat",
                                       digest_method=hashlib.sha1).sign("not json").decode()
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(time.time())).check(raw, LOGIN_TOKEN_MAX_AGE)


@pytest.mark.parametrize("garbage", [
    "", ".", "..", "abc", "a.b", "a.b.c", "alice", "secret-password",
    "[\"alice\"].AAAA.AAAA", "\u00e4.\u00f6.\u00fc", "\ud800.x.y", "a\nb.c.d",
])
def test_garbage_is_not_a_token(garbage: str) -> None:
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(T0)).check(garbage, LOGIN_TOKEN_MAX_AGE)


@given(st.text())
def test_arbitrary_text_is_not_a_token(text: str) -> None:
    with pytest.raises(NotAToken):
        TokenSigner(KEY, Clock(T0)).check(text, LOGIN_TOKEN_MAX_AGE)


def test_make_uses_default_json_separators() -> None:
    payload = {"k": [1, 2]}
    token = TokenSigner(KEY, Clock(T0)).make(payload)
    assert token.rsplit(".", 2)[0] == json.dumps(payload) == '{"k": [1, 2]}'


# -- derive_keys ---------------------------------------------------------------------


def test_derived_keys_are_16_bytes_and_distinct() -> None:
    keys = derive_keys(b"server secret", **TINY)
    assert len(keys.auth) == len(keys.replica) == 16
    assert keys.auth != keys.replica


def test_derive_keys_is_deterministic_per_secret() -> None:
    assert derive_keys(b"server secret", **TINY) == derive_keys(b"server secret", **TINY)
    assert derive_keys(b"server secret", **TINY).auth != derive_keys(b"other secret", **TINY).auth


def test_derive_keys_depends_on_argon2_parameters() -> None:
    assert derive_keys(b"s", **TINY).auth != derive_keys(b"s", time_cost=2, memory_cost=64, parallelism=1).auth


@pytest.mark.parametrize(("field", "salt"), [("auth", b"devpi-server-auth"), ("replica", b"devpi-server-replica")])
def test_derived_key_is_raw_argon2id_v19_with_devpi_salt(field: str, salt: bytes) -> None:
    secret = b"server secret"
    phc = PasswordHasher(hash_len=16, type=Type.ID, **TINY).hash(secret, salt=salt)
    assert phc.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert getattr(derive_keys(secret, **TINY), field) == _unb64(phc.rsplit("$", 1)[1].replace("+", "-").replace("/", "_"))


def test_token_made_with_replica_key_is_not_a_login_token() -> None:
    keys = derive_keys(b"server secret", **TINY)
    token = TokenSigner(keys.replica, Clock(T0)).make(LOGIN)
    with pytest.raises(NotAToken):
        TokenSigner(keys.auth, Clock(T0)).check(token, LOGIN_TOKEN_MAX_AGE)


def test_a_token_checked_before_still_expires_and_gives_fresh_payloads() -> None:
    clock = Clock(T0)
    signer = TokenSigner(KEY, clock)
    token = signer.make(LOGIN)
    first = signer.check(token, LOGIN_TOKEN_MAX_AGE)
    first[1].append("intruders")  # a caller changing its copy changes no later answer
    clock.now = T0 + LOGIN_TOKEN_MAX_AGE
    assert signer.check(token, LOGIN_TOKEN_MAX_AGE) == LOGIN
    clock.now = T0 + LOGIN_TOKEN_MAX_AGE + 1
    with pytest.raises(TokenExpired):
        signer.check(token, LOGIN_TOKEN_MAX_AGE)
    with pytest.raises(NotAToken):
        signer.check(token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:],
                     LOGIN_TOKEN_MAX_AGE)


def test_remembered_tokens_are_bounded() -> None:
    signer = TokenSigner(KEY, Clock(T0))
    tokens = [signer.make(["u", [], True, i]) for i in range(TokenSigner.CHECKED_MAX + 10)]
    for token in tokens:
        signer.check(token, LOGIN_TOKEN_MAX_AGE)
    assert len(signer._checked) == TokenSigner.CHECKED_MAX
    assert signer.check(tokens[0], LOGIN_TOKEN_MAX_AGE) == ["u", [], True, 0]
