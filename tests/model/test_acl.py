"""Identities, principals and the permission table (spec/model.md section 5)."""

from __future__ import annotations

import pytest

from devpi_twisted.model import acl
from devpi_twisted.model.acl import (
    ANONYMOUS,
    ANONYMOUS_IDENTITY,
    AUTHENTICATED,
    Identity,
    Policy,
    matches,
    normalize_principal,
    parse_principals,
)

ANON = ANONYMOUS_IDENTITY
ROOT = Identity("root")
ALICE = Identity("alice")
BOB = Identity("bob")
ADMIN = Identity("admin")
OPS_MEMBER = Identity("carol", frozenset({"ops"}))

DEFAULT = Policy()
RESTRICTED = Policy(restrict_modify=parse_principals("admin,:ops".split(",")))


# -- identities and principals -------------------------------------------------------


def test_anonymous_identity_has_only_the_anonymous_principal() -> None:
    assert not ANON.authenticated
    assert ANON.principals() == {":ANONYMOUS:"}


def test_anonymous_identity_ignores_groups() -> None:
    assert Identity(None, frozenset({"ops"})).principals() == {ANONYMOUS}


def test_user_identity_has_anonymous_authenticated_name_and_groups() -> None:
    assert OPS_MEMBER.authenticated
    assert OPS_MEMBER.principals() == {":ANONYMOUS:", ":AUTHENTICATED:", "carol", ":ops"}


@pytest.mark.parametrize(("value", "expected"), [
    (":anonymous:", ":ANONYMOUS:"), (":Anonymous:", ":ANONYMOUS:"),
    (":authenticated:", ":AUTHENTICATED:"), (" :AUTHENTICATED: ", ":AUTHENTICATED:"),
    ("Alice", "Alice"), (":Devs", ":Devs"), (" bob ", "bob"),
])
def test_normalize_principal_upper_cases_only_the_special_principals(value: str, expected: str) -> None:
    assert normalize_principal(value) == expected


def test_parse_principals_drops_empty_entries() -> None:
    assert parse_principals(["admin", "", " ", ":authenticated:"]) == {"admin", AUTHENTICATED}


@pytest.mark.parametrize(("identity", "acl", "expected"), [
    (ANON, [":anonymous:"], True),
    (ANON, [":AUTHENTICATED:"], False),
    (ALICE, [":authenticated:"], True),
    (ALICE, ["alice"], True),
    (ALICE, ["Alice"], False),
    (ALICE, ["bob"], False),
    (ALICE, [], False),
    (OPS_MEMBER, [":ops"], True),
    (OPS_MEMBER, ["ops"], False),
    (ALICE, [":ops"], False),
])
def test_matches_checks_identity_principals_against_acl(identity: Identity, acl: list[str], expected: bool) -> None:
    assert matches(identity, acl) is expected


# -- default policy ------------------------------------------------------------------


@pytest.mark.parametrize("identity", [ANON, ALICE, ROOT])
def test_default_policy_lets_everyone_create_users_even_anonymous(identity: Identity) -> None:
    assert DEFAULT.may_create_user(identity)


@pytest.mark.parametrize("password_only", [False, True])
@pytest.mark.parametrize(("identity", "expected"), [(ROOT, True), (ALICE, True), (BOB, False), (ANON, False)])
def test_default_policy_lets_root_and_the_user_modify_the_user(
        identity: Identity, expected: bool, password_only: bool) -> None:
    assert DEFAULT.may_modify_user(identity, "alice", password_only) is expected


@pytest.mark.parametrize(("identity", "expected"), [(ROOT, True), (ALICE, True), (BOB, False), (ANON, False)])
def test_default_policy_lets_root_and_the_user_delete_the_user(identity: Identity, expected: bool) -> None:
    assert DEFAULT.may_delete_user(identity, "alice") is expected


@pytest.mark.parametrize("policy", [DEFAULT, RESTRICTED, Policy(parse_principals([":ANONYMOUS:"]))])
@pytest.mark.parametrize("identity", [ROOT, ADMIN, ANON])
def test_nobody_may_delete_root(policy: Policy, identity: Identity) -> None:
    assert not policy.may_delete_user(identity, "root")


@pytest.mark.parametrize(("identity", "expected"), [(ROOT, True), (ALICE, True), (BOB, False), (ANON, False)])
def test_default_policy_lets_root_and_owner_manage_indexes(identity: Identity, expected: bool) -> None:
    assert DEFAULT.may_manage_index(identity, "alice") is expected


# -- --restrict-modify ---------------------------------------------------------------


@pytest.mark.parametrize(("identity", "expected"), [
    (ADMIN, True), (OPS_MEMBER, True), (ROOT, False), (ALICE, False), (ANON, False)])
def test_restricted_policy_lets_only_spec_principals_create_users(identity: Identity, expected: bool) -> None:
    assert RESTRICTED.may_create_user(identity) is expected


@pytest.mark.parametrize(("identity", "expected"), [
    (ADMIN, True), (OPS_MEMBER, True), (ROOT, False), (ALICE, False), (BOB, False)])
def test_restricted_policy_lets_only_spec_principals_modify_user_profile(
        identity: Identity, expected: bool) -> None:
    assert RESTRICTED.may_modify_user(identity, "alice", password_only=False) is expected


@pytest.mark.parametrize(("identity", "expected"), [
    (ADMIN, True), (OPS_MEMBER, True), (ALICE, True), (ROOT, False), (BOB, False), (ANON, False)])
def test_restricted_policy_lets_the_user_change_only_its_own_password(
        identity: Identity, expected: bool) -> None:
    assert RESTRICTED.may_modify_user(identity, "alice", password_only=True) is expected


@pytest.mark.parametrize(("identity", "user", "expected"), [
    (ADMIN, "alice", True), (OPS_MEMBER, "alice", True),
    (ADMIN, "admin", False), (OPS_MEMBER, "carol", False),
    (ALICE, "alice", False), (ROOT, "alice", False), (ANON, "alice", False)])
def test_restricted_policy_lets_spec_principals_delete_users_except_themselves(
        identity: Identity, user: str, expected: bool) -> None:
    assert RESTRICTED.may_delete_user(identity, user) is expected


@pytest.mark.parametrize(("identity", "expected"), [
    (ADMIN, True), (OPS_MEMBER, True), (ALICE, False), (ROOT, False), (ANON, False)])
def test_restricted_policy_lets_only_spec_principals_manage_indexes(identity: Identity, expected: bool) -> None:
    assert RESTRICTED.may_manage_index(identity, "alice") is expected


def test_restrict_modify_to_authenticated_admits_any_user_but_not_anonymous() -> None:
    policy = Policy(parse_principals([":authenticated:"]))
    assert policy.may_create_user(BOB)
    assert policy.may_manage_index(BOB, "alice")
    assert not policy.may_create_user(ANON)


def test_restrict_modify_to_anonymous_admits_everybody() -> None:
    policy = Policy(parse_principals([":anonymous:"]))
    assert policy.may_create_user(ANON)
    assert policy.may_manage_index(ANON, "alice")


def test_a_scope_narrows_by_permission_index_and_project() -> None:
    scope = acl.Scope(indexes=frozenset({"alice/dev"}), projects=frozenset({"pkg"}),
                      allowed=frozenset({acl.PKG_READ, acl.UPLOAD}))
    assert scope.permits(acl.PKG_READ, "alice/dev", "pkg")
    assert scope.permits(acl.UPLOAD, "alice/dev")
    assert not scope.permits(acl.PKG_READ, "alice/prod", "pkg")
    assert not scope.permits(acl.PKG_READ, "alice/dev", "other")
    assert not scope.permits(acl.DEL_PROJECT, "alice/dev", "pkg")


def test_a_token_never_manages_users_even_unrestricted() -> None:
    scope = acl.Scope()
    assert scope.permits(acl.INDEX_MODIFY, "alice/dev")
    assert not any(scope.permits(p) for p in acl.USER_PERMISSIONS)
    assert not acl.Scope(allowed=acl.PERMISSIONS).permits(acl.USER_MODIFY)


def test_readers_are_root_the_owner_and_the_acl_within_a_token_scope() -> None:
    private = (":devs", "bob")
    alice, bob = acl.Identity("alice"), acl.Identity("bob")
    carol, dev = acl.Identity("carol"), acl.Identity("dan", frozenset({"devs"}))
    assert acl.may_read(alice, "alice", "dev", private)
    assert acl.may_read(acl.Identity("root"), "alice", "dev", private)
    assert acl.may_read(bob, "alice", "dev", private)
    assert acl.may_read(dev, "alice", "dev", private)
    assert not acl.may_read(carol, "alice", "dev", private)
    assert not acl.may_read(acl.ANONYMOUS_IDENTITY, "alice", "dev", private)
    assert acl.may_read(acl.ANONYMOUS_IDENTITY, "alice", "dev", (acl.ANONYMOUS,))
    assert acl.may_read(carol, "alice", "dev", (":authenticated:",))
    elsewhere = acl.Identity("bob", scope=acl.Scope(indexes=frozenset({"alice/prod"})))
    assert not acl.may_read(elsewhere, "alice", "dev", private)
    assert acl.may_read(elsewhere, "alice", "prod", private)
    uploads_only = acl.Identity("bob", scope=acl.Scope(allowed=frozenset({acl.UPLOAD})))
    assert not acl.may_read(uploads_only, "alice", "dev", (acl.ANONYMOUS,))
