"""Referrals against two real slapds: the first holds a referral entry
(``ou=partners``) pointing at the second, which holds that subtree. A user search
there follows the reference once (``referrals: true``, devpi-ldap's default) and the
user binds where it was found; ``referrals: false`` ignores it; a referred server that
is down is skipped, not an outage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from devpi_twisted.identity.ldap import LdapDirectory
from devpi_twisted.identity.ldapconfig import parse_settings
from tests.ldap import SUFFIX, Slapd, people_ldif

PARTNERS = f"ou=partners,{SUFFIX}"


def _partners_ldif() -> str:
    return (f"dn: {PARTNERS}\nobjectClass: organizationalUnit\nou: partners\n\n"
            f"dn: uid=erin,{PARTNERS}\nobjectClass: inetOrgPerson\nuid: erin\ncn: erin\n"
            "sn: erin\nuserPassword: erin-pw\n\n"
            f"dn: cn=partner-devs,{PARTNERS}\nobjectClass: groupOfNames\ncn: partner-devs\n"
            f"member: uid=erin,{PARTNERS}\n")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Slapd, Slapd]]:
    partners = Slapd(tmp_path_factory.mktemp("partners"), PARTNERS, _partners_ldif())
    referral = (f"dn: {PARTNERS}\nobjectClass: referral\nobjectClass: extensibleObject\n"
                f"ou: partners\nref: {partners.url}/{PARTNERS}\n")
    main = Slapd(tmp_path_factory.mktemp("main"), ldif=people_ldif() + "\n" + referral)
    main.start()
    partners.start()
    yield main, partners
    main.stop()
    partners.stop()


def directory(main: Slapd, referrals: bool) -> LdapDirectory:
    from twisted.internet import reactor

    settings = parse_settings({
        "url": main.url, "referrals": referrals,
        "user_search": {"base": SUFFIX, "filter": "(uid={username})", "attribute_name": "dn"},
        "group_search": {"base": PARTNERS, "filter": "(member={userdn})", "attribute_name": "cn"}})
    return LdapDirectory(settings, reactor)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_a_user_behind_a_referral_is_found_and_binds_there(pair: Any) -> None:
    main, _ = pair
    ldap = directory(main, referrals=True)
    assert await ldap.check("erin", "erin-pw") == {"partner-devs"}
    assert await ldap.check("erin", "wrong") is None
    assert await ldap.check("bob", "bob-pw") == frozenset()  # on the first; no partner groups


@pytest_twisted.ensureDeferred
async def test_referrals_false_does_not_follow(pair: Any) -> None:
    main, _ = pair
    ldap = directory(main, referrals=False)
    assert await ldap.check("erin", "erin-pw") is None
    assert await ldap.check("bob", "bob-pw") == frozenset()


@pytest_twisted.ensureDeferred
async def test_a_referred_server_that_is_down_is_skipped(pair: Any) -> None:
    main, partners = pair
    partners.stop()
    try:
        ldap = directory(main, referrals=True)
        assert await ldap.check("bob", "bob-pw") == frozenset()
        assert await ldap.check("erin", "erin-pw") is None
    finally:
        partners.start()
