"""User records: create, modify, password-only detection, public view.

spec/model.md section 2, spec/api.md section 4.
"""

from __future__ import annotations

from typing import Any

import pytest

from devpi_twisted.model.errors import Forbidden, InvalidInput
from devpi_twisted.model.passwords import legacy_hash
from devpi_twisted.model.users import (
    is_password_only,
    modify_user,
    new_user,
    public_view,
    timestamp,
)

NOW = 1714557600.0  # 2024-05-01T10:00:00Z
NOW_TEXT = "2024-05-01T10:00:00Z"
LATER = NOW + 86400 + 3600 + 61.75  # 2024-05-02T11:01:01Z
LATER_TEXT = "2024-05-02T11:01:01Z"

# argon2id, cheaper than our parameters (m=65536,t=3,p=4), so a root may set it.
CHEAP_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
PROFILE = {"email": "alice@example.com", "title": "CTO", "description": "d",
           "custom_data": {"any": "json"}, "created": NOW_TEXT}


def _rejects(message: str, fn: Any, *args: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        fn(*args)
    assert info.value.message == message


# -- timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize(("now", "text"), [(0, "1970-01-01T00:00:00Z"), (NOW, NOW_TEXT),
                                           (NOW + 0.999, NOW_TEXT), (LATER, LATER_TEXT)])
def test_timestamp_is_utc_seconds_with_z(now: float, text: str) -> None:
    assert timestamp(now) == text


# -- new_user ------------------------------------------------------------------------


def test_new_user_with_only_a_password_has_just_created() -> None:
    change = new_user({"password": "secret"}, NOW)
    assert change.profile == {"created": NOW_TEXT}
    assert change.password == "secret"
    assert change.pwhash is None
    assert change.sets_password


def test_new_user_accepts_empty_password() -> None:
    change = new_user({"password": ""}, NOW)
    assert change.password == ""
    assert change.sets_password


def test_new_user_stores_profile_keys() -> None:
    body = {"password": "x", "email": "a@b.c", "title": "T", "description": "D",
            "custom_data": {"any": ["json", 1]}}
    assert new_user(body, NOW).profile == {"email": "a@b.c", "title": "T", "description": "D",
                                          "custom_data": {"any": ["json", 1]}, "created": NOW_TEXT}


def test_new_user_keeps_string_custom_data_a_string() -> None:
    assert new_user({"password": "x", "custom_data": "42"}, NOW).profile["custom_data"] == "42"


def test_new_user_does_not_store_empty_or_false_values() -> None:
    body = {"password": "x", "email": "", "title": None, "description": "", "custom_data": {}}
    assert new_user(body, NOW).profile == {"created": NOW_TEXT}


def test_new_user_tolerates_but_does_not_store_server_managed_keys() -> None:
    body = {"password": "x", "username": "mallory", "indexes": {"dev": {}},
            "created": "2000-01-01T00:00:00Z", "modified": "2000-01-01T00:00:00Z"}
    assert new_user(body, NOW).profile == {"created": NOW_TEXT}


def test_new_user_never_puts_password_material_in_profile() -> None:
    profile = new_user({"password": "x", "pwhash": CHEAP_HASH}, NOW, may_set_hash=True).profile
    assert "password" not in profile
    assert "pwhash" not in profile


def test_new_user_rejects_unknown_key() -> None:
    _rejects("Unknown keys in user config: foo", new_user, {"password": "x", "foo": 1}, NOW)


def test_new_user_lists_unknown_keys_sorted() -> None:
    _rejects("Unknown keys in user config: bar, foo", new_user,
             {"password": "x", "foo": 1, "bar": 2}, NOW)


def test_new_user_without_password_is_rejected() -> None:
    _rejects("password needs to be set", new_user, {"email": "a@b.c"}, NOW)


def test_new_user_with_empty_pwhash_and_no_password_is_rejected() -> None:
    _rejects("password needs to be set", new_user, {"pwhash": ""}, NOW)


def test_new_user_accepts_ready_pwhash_instead_of_password() -> None:
    change = new_user({"pwhash": CHEAP_HASH}, NOW, may_set_hash=True)
    assert change.pwhash == CHEAP_HASH
    assert change.password is None
    assert change.sets_password


def test_new_user_carries_both_password_and_pwhash_when_both_given() -> None:
    change = new_user({"password": "x", "pwhash": CHEAP_HASH}, NOW, may_set_hash=True)
    assert (change.password, change.pwhash) == ("x", CHEAP_HASH)


# -- ready hashes: only root, only at costs we would pay ----------------------------------


@pytest.mark.parametrize("body", [{"pwhash": CHEAP_HASH}, {"password": "x", "pwhash": CHEAP_HASH}])
def test_only_root_may_create_a_user_with_a_ready_pwhash(body: dict[str, str]) -> None:
    with pytest.raises(Forbidden):
        new_user(body, NOW)


def test_only_root_may_set_a_ready_pwhash() -> None:
    with pytest.raises(Forbidden):
        modify_user(PROFILE, {"pwhash": CHEAP_HASH}, LATER)


@pytest.mark.parametrize("pwhash", [
    "$argon2id$v=19$m=65536,t=300,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=1048576,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=65536,t=3,p=64$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$" + "A" * 2000,
    "$argon2id$v=19$m=65536,t=3,p=4,data=eHh4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "$2b$12$abcdefghijklmnopqrstuu5Xq6Vn7NYpKy0tZ2j8uG4l1b5XH1e6u",
    "plain text",
])
@pytest.mark.parametrize("make", [lambda body: new_user(body, NOW, may_set_hash=True),
                                  lambda body: modify_user(PROFILE, body, LATER, may_set_hash=True)])
def test_pwhash_outside_our_parameters_is_refused_even_from_root(pwhash: str, make: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        make({"pwhash": pwhash})
    assert "pwhash" in info.value.message


def test_root_may_set_our_own_parameters() -> None:
    ours = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$" + "a" * 43
    assert modify_user(PROFILE, {"pwhash": ours}, LATER, may_set_hash=True).pwhash == ours


def test_root_may_set_devpis_legacy_salted_sha256_as_dumps_carry_it() -> None:
    body = {"pwhash": "ab" * 32, "pwsalt": "salty"}
    assert new_user(body, NOW, may_set_hash=True).pwhash == legacy_hash("salty", "ab" * 32)
    assert modify_user(PROFILE, body, LATER, may_set_hash=True).pwhash == legacy_hash("salty", "ab" * 32)


def test_a_bare_hex_digest_without_its_salt_is_refused() -> None:
    with pytest.raises(InvalidInput):
        new_user({"pwhash": "ab" * 32}, NOW, may_set_hash=True)


@pytest.mark.parametrize("key", ["email", "title", "description", "password"])
def test_new_user_rejects_non_string_text_fields(key: str) -> None:
    body = {"password": "x", key: 5}
    _rejects(f"'{key}' must be a string", new_user, body, NOW)


@pytest.mark.parametrize("body", [["password=x"], "x", None, 5])
def test_new_user_rejects_body_that_is_not_an_object(body: Any) -> None:
    _rejects("Bad request: expected a JSON object", new_user, body, NOW)


# -- modify_user ---------------------------------------------------------------------


def test_modify_user_replaces_given_keys_and_keeps_others() -> None:
    change = modify_user(PROFILE, {"title": "CEO"}, LATER)
    assert change.profile == {**PROFILE, "title": "CEO", "modified": LATER_TEXT}
    assert not change.sets_password


def test_modify_user_removes_keys_set_to_empty_values() -> None:
    change = modify_user(PROFILE, {"email": "", "title": None, "custom_data": {}}, LATER)
    assert change.profile == {"description": "d", "created": NOW_TEXT, "modified": LATER_TEXT}


def test_modify_user_empty_password_sets_an_empty_password() -> None:
    change = modify_user(PROFILE, {"password": ""}, LATER)
    assert change.password == ""
    assert change.sets_password
    assert change.profile == {**PROFILE, "modified": LATER_TEXT}


def test_modify_user_silently_ignores_keys_it_does_not_manage() -> None:
    body = {"username": "mallory", "indexes": {"x": {}}, "created": "2000-01-01T00:00:00Z",
            "modified": "2000-01-01T00:00:00Z", "foo": "bar"}
    change = modify_user(PROFILE, body, LATER)
    assert change.profile == PROFILE
    assert not change.sets_password


def test_modify_user_with_echoed_profile_changes_nothing() -> None:
    # devpi-client sends the whole GET result back.
    body = {"username": "alice", **PROFILE, "modified": "2024-05-01T11:00:00Z", "indexes": {}}
    assert modify_user({**PROFILE, "modified": "2024-05-01T11:00:00Z"}, body, LATER).profile == {
        **PROFILE, "modified": "2024-05-01T11:00:00Z"}


def test_modify_user_echoed_profile_with_new_email_updates_modified_only_there() -> None:
    body = {"username": "alice", **PROFILE, "email": "new@example.com", "indexes": {}}
    assert modify_user(PROFILE, body, LATER).profile == {
        **PROFILE, "email": "new@example.com", "modified": LATER_TEXT}


def test_modify_user_password_change_updates_modified() -> None:
    change = modify_user(PROFILE, {"password": "new"}, LATER)
    assert change.password == "new"
    assert change.profile["modified"] == LATER_TEXT


def test_modify_user_pwhash_is_carried_as_given() -> None:
    change = modify_user(PROFILE, {"pwhash": CHEAP_HASH}, LATER, may_set_hash=True)
    assert change.pwhash == CHEAP_HASH
    assert change.sets_password


def test_modify_user_empty_pwhash_is_no_password_change() -> None:
    change = modify_user(PROFILE, {"pwhash": ""}, LATER)
    assert not change.sets_password
    assert change.profile == PROFILE


def test_modify_user_gives_old_user_without_created_the_epoch() -> None:
    change = modify_user({"email": "a@b.c"}, {"title": "T"}, LATER)
    assert change.profile == {"email": "a@b.c", "title": "T",
                              "created": "1970-01-01T00:00:00Z", "modified": LATER_TEXT}


def test_modify_user_without_change_does_not_add_created_or_modified() -> None:
    assert modify_user({"email": "a@b.c"}, {"email": "a@b.c"}, LATER).profile == {"email": "a@b.c"}


@pytest.mark.parametrize("key", ["email", "title", "description", "password", "pwhash"])
def test_modify_user_rejects_non_string_text_fields(key: str) -> None:
    _rejects(f"'{key}' must be a string", modify_user, PROFILE, {key: ["x"]}, LATER)


def test_modify_user_rejects_body_that_is_not_an_object() -> None:
    _rejects("Bad request: expected a JSON object", modify_user, PROFILE, ["title=x"], LATER)


def test_modify_user_does_not_mutate_current_profile() -> None:
    current = dict(PROFILE)
    modify_user(current, {"title": "", "email": "x@y.z", "password": "p"}, LATER)
    assert current == PROFILE


# -- is_password_only ----------------------------------------------------------------


def test_is_password_only_for_bare_password() -> None:
    assert is_password_only(PROFILE, {"password": "new"})


def test_is_password_only_for_empty_password() -> None:
    assert is_password_only(PROFILE, {"password": ""})


def test_is_password_only_when_devpi_client_echoes_unchanged_profile() -> None:
    body = {"username": "alice", **PROFILE, "modified": "x", "indexes": {}, "password": "new"}
    assert is_password_only(PROFILE, body)


def test_is_password_only_treats_empty_and_missing_values_alike() -> None:
    assert is_password_only({"created": NOW_TEXT}, {"password": "new", "email": "", "title": None})


@pytest.mark.parametrize("body", [
    {"password": "new", "email": "other@example.com"},
    {"password": "new", "title": ""},
    {"password": "new", "custom_data": {"any": "other"}},
    {"password": "new", "pwhash": CHEAP_HASH},
    {"pwhash": CHEAP_HASH},
    {"email": "other@example.com"},
    {},
    ["password=new"],
    None,
])
def test_is_password_only_is_false_when_anything_else_changes_or_no_password(body: Any) -> None:
    assert not is_password_only(PROFILE, body)


# -- public_view ---------------------------------------------------------------------


def test_public_view_has_username_profile_and_indexes() -> None:
    indexes = {"dev": {"type": "stage"}}
    assert public_view("alice", PROFILE, indexes) == {"username": "alice", **PROFILE,
                                                      "indexes": {"dev": {"type": "stage"}}}


def test_public_view_of_new_user_has_empty_indexes_and_no_password_material() -> None:
    change = new_user({"password": "secret", "pwhash": CHEAP_HASH, "email": "a@b.c"}, NOW,
                      may_set_hash=True)
    view = public_view("alice", change.profile, {})
    assert view == {"username": "alice", "email": "a@b.c", "created": NOW_TEXT, "indexes": {}}


def test_public_view_copies_the_indexes_mapping() -> None:
    indexes: dict[str, Any] = {}
    view = public_view("alice", {}, indexes)
    view["indexes"]["x"] = {}
    assert indexes == {}
