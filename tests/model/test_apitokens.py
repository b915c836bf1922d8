"""API tokens in devpi-tokens' format (model/apitokens.py): restrictions asked for,
parsing, and each way verification refuses a token."""

from __future__ import annotations

import base64

import pymacaroons
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devpi_twisted.model import apitokens as api
from devpi_twisted.model.acl import DEL_PROJECT, PKG_READ, UPLOAD, USER_MODIFY, Scope
from devpi_twisted.model.errors import Forbidden, InvalidInput

NOW = 1_700_000_000
KEYS = api.TokenKeys(b"k" * 16)


def _token(*caveats: str, user: str = "alice", token_id: str = "abcdefgh", salt: str = "s") -> str:
    return api.mint(KEYS, user, token_id, salt, caveats)


def _verify(token: str, salt: str = "s", now: float = NOW, keys: api.TokenKeys = KEYS) -> Scope:
    presented = api.parse(token)
    assert presented is not None
    return api.verify(keys, presented, salt, now)


def _derive(token: str, *caveats: str) -> str:
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix(api.PREFIX))
    for caveat in caveats:
        macaroon.add_first_party_caveat(caveat)
    return str(macaroon.serialize())


def test_ids_and_salts_are_random_in_devpi_tokens_alphabet() -> None:
    ids = {api.new_token_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 8 and set(i) <= set(api.ALPHABET) for i in ids)
    assert api.new_salt() != api.new_salt()


def test_restrictions_are_sorted_caveats_with_a_default_expiry() -> None:
    assert api.restrictions(None, NOW, False) == [f"expires={NOW + api.ONE_YEAR}"]
    assert api.restrictions({"projects": ["b", "a"], "allowed": ["upload"], "not_before": NOW,
                             "expires": NOW + 5, "indexes": ["x/y"]}, NOW, False) == [
        "allowed=upload", f"expires={NOW + 5}", "indexes=x/y", f"not_before={NOW}",
        "projects=a,b"]


@pytest.mark.parametrize("body, error", [
    ({"expires": "never"}, Forbidden),
    ({"expires": NOW + api.ONE_YEAR + 1}, Forbidden),
    ({"expires": NOW}, InvalidInput),
    ({"expires": "soon"}, InvalidInput),
    ({"expires": True}, InvalidInput),
    ({"not_before": [1]}, InvalidInput),
    ({"projects": "a"}, InvalidInput),
    ({"projects": [""]}, InvalidInput),
    ({"projects": ["a,b"]}, InvalidInput),
    ({"projects": [1]}, InvalidInput),
    ({"allowed": ["root_everything"]}, InvalidInput),
    ({"indexes": ["x"] * 1000}, InvalidInput),
    ({"other": 1}, InvalidInput),
    ([], InvalidInput),
])
def test_bad_restrictions_are_refused(body: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        api.restrictions(body, NOW, False)


def test_admins_may_extend_expiry() -> None:
    assert api.restrictions({"expires": "never"}, NOW, True) == ["expires=never"]
    assert api.restrictions({"expires": NOW + 2 * api.ONE_YEAR}, NOW, True) == [
        f"expires={NOW + 2 * api.ONE_YEAR}"]


def test_a_fresh_token_verifies_to_its_scope() -> None:
    token = _token(f"expires={NOW + 10}", "indexes=alice/dev", "projects=My_Pkg",
                   "allowed=upload,pkg_read,user_modify")
    assert token.startswith("devpi-")
    presented = api.parse(token)
    assert presented is not None and (presented.user, presented.token_id) == ("alice", "abcdefgh")
    scope = _verify(token)
    assert scope == Scope(frozenset({"alice/dev"}), frozenset({"my-pkg"}),
                          frozenset({UPLOAD, PKG_READ}))
    assert scope.permits(UPLOAD, "alice/dev", "my-pkg")
    assert not scope.permits(USER_MODIFY) and not scope.permits(DEL_PROJECT, "alice/dev")


def test_user_names_with_dashes_split_at_the_last() -> None:
    presented = api.parse(_token(user="my-team-bot"))
    assert presented is not None and presented.user == "my-team-bot"


def test_derived_caveats_narrow_and_all_must_hold() -> None:
    token = _token("indexes=alice/dev,alice/prod", "allowed=upload,del_project")
    derived = _derive(token, "indexes=alice/prod", "allowed=upload", "projects=a")
    scope = _verify(derived)
    assert scope.indexes == {"alice/prod"} and scope.allowed == {UPLOAD}
    assert scope.projects == {"a"}
    assert _verify(_derive(token, "indexes=bob/x")).indexes == frozenset()
    with pytest.raises(api.TokenRefused, match="expired"):
        _verify(_derive(_token("expires=never"), f"expires={NOW}"))


def test_not_a_token_is_none() -> None:
    for value in ("secret", "", "x" * 100, "AgEC", "\u00e9\u00e9\u00e9"):
        assert api.parse(value) is None


@pytest.mark.parametrize("value", [
    "devpi-", "devpi-AAAA", "devpi-" + "A" * 100, "devpi-\u00e9",
    "devpi-" + "A" * (api.MAX_TOKEN_CHARS + 1),
])
def test_prefixed_garbage_is_malformed(value: str) -> None:
    with pytest.raises(api.TokenRefused, match="malformed"):
        api.parse(value)


def test_truncated_tokens_are_malformed() -> None:
    token = _token(f"expires={NOW + 10}")
    for cut in (10, 30, len(token) // 2, len(token) - 3):
        with pytest.raises(api.TokenRefused):
            presented = api.parse(token[:cut])
            assert presented is not None
            api.verify(KEYS, presented, "s", NOW)


@pytest.mark.parametrize("salt, keys", [("other", KEYS), ("s", api.TokenKeys(b"o" * 16))])
def test_another_key_does_not_verify(salt: str, keys: api.TokenKeys) -> None:
    with pytest.raises(api.TokenRefused, match="signature does not verify"):
        _verify(_token(), salt=salt, keys=keys)


def test_an_altered_identifier_or_dropped_caveat_does_not_verify() -> None:
    macaroon = pymacaroons.Macaroon.deserialize(_token("allowed=upload")[6:])
    macaroon.caveats.pop()
    with pytest.raises(api.TokenRefused, match="signature"):
        _verify(macaroon.serialize())
    macaroon = pymacaroons.Macaroon.deserialize(_token()[6:])
    macaroon.identifier = "alice-bbbbbbbb"
    with pytest.raises(api.TokenRefused, match="signature"):
        _verify(macaroon.serialize())


def test_time_limits() -> None:
    token = _token(f"not_before={NOW}", f"expires={NOW + 10}")
    with pytest.raises(api.TokenRefused, match="not valid before"):
        _verify(token, now=NOW - 1)
    assert _verify(token, now=NOW) == Scope()
    with pytest.raises(api.TokenRefused, match="expired at"):
        _verify(token, now=NOW + 10)
    with pytest.raises(api.TokenRefused, match="unreadable time"):
        _verify(_derive(token, "expires=tomorrow"))


def test_unknown_and_third_party_caveats_are_refused() -> None:
    with pytest.raises(api.TokenRefused, match="unknown restriction 'colour'"):
        _verify(_derive(_token(), "colour=blue"))
    with pytest.raises(api.TokenRefused, match="unknown restriction"):
        _verify(_derive(_token(), "no equals sign"))
    macaroon = pymacaroons.Macaroon.deserialize(_token()[6:])
    macaroon.add_third_party_caveat("https://elsewhere", "key", "id")
    with pytest.raises(api.TokenRefused, match="third-party"):
        _verify(macaroon.serialize())


def test_signing_keys_depend_on_user_id_salt_and_server_key() -> None:
    key = KEYS.key("alice", "abcdefgh", "s")
    assert key != KEYS.key("alice", "abcdefgh", "t")
    assert key != KEYS.key("alicf", "abcdefgh", "s")
    assert key != api.TokenKeys(b"o" * 16).key("alice", "abcdefgh", "s")


@given(st.text(max_size=300) | st.binary(max_size=300).map(
    lambda b: api.PREFIX + base64.urlsafe_b64encode(b"\x02" + b).decode()))
def test_parse_never_fails_otherwise(value: str) -> None:
    """Whatever a client sends: None, a Presented, or TokenRefused; verifying what
    parses either refuses or gives a scope."""
    try:
        presented = api.parse(value)
        if presented is not None:
            api.verify(KEYS, presented, "s", NOW)
    except api.TokenRefused:
        pass


def test_no_changed_character_verifies() -> None:
    token = _token(f"expires={NOW + 10}", "allowed=upload")
    body = token[len(api.PREFIX):]

    def raw(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    for position in range(len(body)):
        for char in "AZaz09-_":
            changed = body[:position] + char + body[position + 1:]
            if changed == body or raw(changed) == raw(body):
                continue  # the spare bits of the last character
            with pytest.raises(api.TokenRefused):
                presented = api.parse(api.PREFIX + changed)
                assert presented is not None
                api.verify(KEYS, presented, "s", NOW)
