"""Identities, principals and permission rules (spec/model.md section 5)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

ANONYMOUS = ":ANONYMOUS:"
AUTHENTICATED = ":AUTHENTICATED:"
ROOT = "root"


@attrs.frozen
class Identity:
    """Who makes a request; ``username`` None is anonymous."""

    username: str | None = None
    groups: frozenset[str] = frozenset()

    @property
    def authenticated(self) -> bool:
        return self.username is not None

    def principals(self) -> frozenset[str]:
        found = {ANONYMOUS}
        if self.username is not None:
            found |= {AUTHENTICATED, self.username}
            found |= {":" + g for g in self.groups}
        return frozenset(found)


ANONYMOUS_IDENTITY = Identity()


def normalize_principal(value: str) -> str:
    """Upper-case the two special principals, keep users and :groups as given."""
    value = value.strip()
    if value.upper() in (ANONYMOUS, AUTHENTICATED):
        return value.upper()
    return value


def parse_principals(values: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_principal(v) for v in values if v.strip())


def matches(identity: Identity, acl: Iterable[str]) -> bool:
    return not identity.principals().isdisjoint(normalize_principal(a) for a in acl)


@attrs.frozen
class Policy:
    """Who may manage users and indexes: root and owners, or ``--restrict-modify``."""

    restrict_modify: frozenset[str] | None = None

    def _managers(self, identity: Identity) -> bool:
        assert self.restrict_modify is not None
        return matches(identity, self.restrict_modify)

    def may_create_user(self, identity: Identity) -> bool:
        if self.restrict_modify is None:
            return True
        return self._managers(identity)

    def may_modify_user(self, identity: Identity, user: str, password_only: bool) -> bool:
        if self.restrict_modify is None:
            return identity.username in (ROOT, user)
        if password_only and identity.username == user:
            return True
        return self._managers(identity)

    def may_delete_user(self, identity: Identity, user: str) -> bool:
        if user == ROOT:
            return False
        if self.restrict_modify is None:
            return identity.username in (ROOT, user)
        return self._managers(identity) and identity.username != user

    def may_manage_index(self, identity: Identity, owner: str) -> bool:
        """index_create, index_modify and index_delete."""
        if self.restrict_modify is None:
            return identity.username in (ROOT, owner)
        return self._managers(identity)
