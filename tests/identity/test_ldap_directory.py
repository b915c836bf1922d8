"""LdapDirectory against a real slapd (tests/ldap.py): user_template and user_search,
group_search, refusals, ldaps:// and StartTLS with a CA file, a directory that is down
or does not answer (Unavailable, never a refusal)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from devpi_twisted.identity.ldap import LdapDirectory, escape_dn_value
from devpi_twisted.identity.ldapconfig import LdapSettings, parse_settings
from devpi_twisted.model.errors import Unavailable
from tests.ldap import ADMIN_DN, ADMIN_PASSWORD, GROUPS_BASE, PEOPLE, SUFFIX, Slapd

GROUP_SEARCH = {"base": GROUPS_BASE, "filter": "(&(objectClass=groupOfNames)(member={userdn}))",
                "attribute_name": "cn"}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd")).start()
    yield server
    server.stop()


def directory(raw: dict[str, Any]) -> LdapDirectory:
    from twisted.internet import reactor

    settings: LdapSettings = parse_settings(raw)
    return LdapDirectory(settings, reactor)  # type: ignore[arg-type]


def template(slapd: Slapd, **more: Any) -> dict[str, Any]:
    return {"url": slapd.url, "user_template": f"uid={{username}},{PEOPLE}", **more}


@pytest_twisted.ensureDeferred
async def test_user_template_binds_and_group_search_tells_the_groups(slapd: Slapd) -> None:
    ldap = directory(template(slapd, group_search=GROUP_SEARCH))
    assert await ldap.check("alice", "alice-pw") == {"devs", "ops"}
    assert await ldap.check("bob", "bob-pw") == {"devs"}
    assert await ldap.check("carol", "carol-pw") == frozenset()


@pytest_twisted.ensureDeferred
async def test_wrong_password_unknown_user_and_empty_password_are_refused(slapd: Slapd) -> None:
    ldap = directory(template(slapd, group_search=GROUP_SEARCH))
    assert await ldap.check("alice", "wrong") is None
    assert await ldap.check("nobody", "alice-pw") is None
    assert await ldap.check("alice", "") is None  # would be an anonymous bind
    assert await ldap.check("alice,ou=people", "alice-pw") is None  # escaped into the DN


@pytest_twisted.ensureDeferred
async def test_user_search_anonymous_and_bound_with_a_search_user(slapd: Slapd) -> None:
    search = {"base": SUFFIX, "filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
              "scope": "whole-subtree", "attribute_name": "dn"}
    ldap = directory({"url": slapd.url, "user_search": search})
    assert await ldap.check("bob", "bob-pw") == frozenset()
    assert await ldap.check("bob", "alice-pw") is None
    assert await ldap.check("*", "bob-pw") is None  # escaped: no wildcard
    bound = {**search, "scope": "single-level", "base": PEOPLE, "userdn": ADMIN_DN,
             "password": ADMIN_PASSWORD}
    groups = {**GROUP_SEARCH, "filter": "(member=uid={username}," + PEOPLE + ")",
              "userdn": ADMIN_DN, "password": ADMIN_PASSWORD}
    ldap = directory({"url": slapd.url, "user_search": bound, "group_search": groups})
    assert await ldap.check("alice", "alice-pw") == {"devs", "ops"}


@pytest_twisted.ensureDeferred
async def test_a_search_on_a_base_object_finds_only_that_entry(slapd: Slapd) -> None:
    search = {"base": f"uid=carol,{PEOPLE}", "filter": "(uid={username})",
              "scope": "base-object", "attribute_name": "distinguishedName"}
    ldap = directory({"url": slapd.url, "user_search": search})
    assert await ldap.check("carol", "carol-pw") == frozenset()
    assert await ldap.check("alice", "alice-pw") is None


@pytest_twisted.ensureDeferred
async def test_ldaps_and_starttls_with_the_ca_file(slapd: Slapd) -> None:
    tls = {"ca_certs_file": str(slapd.ca_file)}
    ldaps = directory(template(slapd, url=slapd.ldaps_url, tls=tls, group_search=GROUP_SEARCH))
    assert await ldaps.check("bob", "bob-pw") == {"devs"}
    starttls = directory(template(slapd, tls=tls, start_tls=True, group_search=GROUP_SEARCH))
    assert await starttls.check("bob", "bob-pw") == {"devs"}
    assert await starttls.check("bob", "wrong") is None


@pytest_twisted.ensureDeferred
async def test_a_certificate_of_another_ca_makes_the_directory_unavailable(
        slapd: Slapd, tmp_path: Any) -> None:
    other = Slapd(tmp_path / "other")
    other._configure()  # only for its CA
    ldap = directory(template(slapd, url=slapd.ldaps_url, tls={"ca_certs_file": str(other.ca_file)}))
    with pytest.raises(Unavailable, match="cannot be reached"):
        await ldap.check("bob", "bob-pw")


@pytest_twisted.ensureDeferred
async def test_a_directory_that_is_down_is_unavailable_not_a_refusal(slapd: Slapd) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    ldap = directory(template(slapd, url=f"ldap://127.0.0.1:{port}"))
    with pytest.raises(Unavailable, match="cannot be reached"):
        await ldap.check("alice", "alice-pw")


@pytest_twisted.ensureDeferred
async def test_a_server_pool_uses_the_next_server_when_one_is_down(slapd: Slapd) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = [{"url": f"ldap://127.0.0.1:{port}"}, {"url": slapd.url}]
    ldap = directory({"server_pool": pool, "user_template": f"uid={{username}},{PEOPLE}"})
    assert await ldap.check("alice", "alice-pw") == frozenset()


@pytest_twisted.ensureDeferred
async def test_a_directory_that_never_answers_times_out_as_unavailable(slapd: Slapd) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        ldap = directory(template(slapd, url=url, timeout=0.5))
        with pytest.raises(Unavailable, match="did not answer within 0.5 seconds"):
            await ldap.check("alice", "alice-pw")


def test_dn_values_are_escaped() -> None:
    assert escape_dn_value("a,b+c") == r"a\,b\+c"
    assert escape_dn_value(" #x ") == r"\ #x\ "
    assert escape_dn_value('q"<>;=\\') == r'q\"\<\>\;\=\\'


@pytest_twisted.ensureDeferred
async def test_a_user_search_finding_more_than_one_entry_finds_nobody(slapd: Slapd) -> None:
    search = {"base": PEOPLE, "filter": "(|(uid={username})(uid=bob))", "attribute_name": "dn"}
    ldap = directory({"url": slapd.url, "user_search": search})
    assert await ldap.check("alice", "alice-pw") is None
    assert await ldap.check("bob", "bob-pw") == frozenset()
