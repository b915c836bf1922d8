"""Identities, principals and permission rules (spec/model.md section 5, spec/access.md).

Every decision of who may do what is made here, on plain values: an ``Identity`` (who,
their groups, and the ``Scope`` an API token narrows them to), an index's owner and
configuration, the action (devpi's permission names). Every read path asks
``may_read``; every write path its own ``may_*`` (Policy and the release rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from devpi_twisted.model.errors import DomainError, Forbidden, Unauthenticated

ANONYMOUS = ":ANONYMOUS:"
AUTHENTICATED = ":AUTHENTICATED:"
ROOT = "root"

# devpi-server's permission names, as devpi-tokens' ``allowed`` restriction names them
PKG_READ = "pkg_read"
UPLOAD = "upload"
TOXRESULT_UPLOAD = "toxresult_upload"
DEL_ENTRY = "del_entry"
DEL_PROJECT = "del_project"
DEL_VERDATA = "del_verdata"
INDEX_CREATE = "index_create"
INDEX_DELETE = "index_delete"
INDEX_MODIFY = "index_modify"
USER_CREATE = "user_create"
USER_DELETE = "user_delete"
USER_MODIFY = "user_modify"
PERMISSIONS = frozenset({PKG_READ, UPLOAD, TOXRESULT_UPLOAD, DEL_ENTRY, DEL_PROJECT,
                         DEL_VERDATA, INDEX_CREATE, INDEX_DELETE, INDEX_MODIFY,
                         USER_CREATE, USER_DELETE, USER_MODIFY})
USER_PERMISSIONS = frozenset({USER_CREATE, USER_DELETE, USER_MODIFY})


@attrs.frozen
class Scope:
    """What an API token narrows its user's rights to. ``None`` in a field: not
    narrowed there. ``indexes`` are ``user/index`` names, ``projects`` normalised
    project names, ``allowed`` permission names. A token never carries ``user_*``
    permissions, whatever it names (devpi-tokens: tokens cannot manage users)."""

    indexes: frozenset[str] | None = None
    projects: frozenset[str] | None = None
    allowed: frozenset[str] | None = None

    def permits(self, permission: str, index: str | None = None,
                project: str | None = None) -> bool:
        """Whether the scope lets ``permission`` through on ``index`` (``user/index``)
        and ``project`` (normalised); None for either: the action names none."""
        if permission in USER_PERMISSIONS:
            return False
        if self.allowed is not None and permission not in self.allowed:
            return False
        if index is not None and self.indexes is not None and index not in self.indexes:
            return False
        if project is not None and self.projects is not None and project not in self.projects:
            return False
        return True


@attrs.frozen
class Identity:
    """Who makes a request; ``username`` None is anonymous. ``scope``: the restrictions
    of the API token the request came with (None: the user's full rights).
    ``replica``: a replica of this primary (it proved it holds the shared secret) asks,
    for itself: it may read every index (to replicate files and mirror pages), and is
    anonymous to every other permission."""

    username: str | None = None
    groups: frozenset[str] = frozenset()
    scope: Scope | None = None
    client: str = attrs.field(default="", eq=False)  # the address it came from (audit)
    replica: bool = False

    @property
    def authenticated(self) -> bool:
        return self.username is not None

    def principals(self) -> frozenset[str]:
        found = {ANONYMOUS}
        if self.username is not None:
            found |= {AUTHENTICATED, self.username}
            found |= {":" + g for g in self.groups}
        return frozenset(found)

    def scoped(self, permission: str, index: str | None = None,
               project: str | None = None) -> bool:
        """Whether this identity's token (if any) lets ``permission`` through."""
        return self.scope is None or self.scope.permits(permission, index, project)


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


def may_read(identity: Identity, owner: str, index: str, acl_read: Iterable[str],
             project: str | None = None) -> bool:
    """``pkg_read`` on the index ``owner/index``: root, the owner and the principals of
    its ``acl_read`` may read it, within the scope of their token; so may a replica."""
    if identity.replica:
        return True
    if not identity.scoped(PKG_READ, f"{owner}/{index}", project):
        return False
    return identity.username in (ROOT, owner) or matches(identity, acl_read)


# The refusal rule of every read path (README "Private indexes"): no credentials ->
# 401 with a Basic challenge (installers only send credentials after one); credentials
# that do not grant pkg_read -> 403 naming it and the index. Nonexistent: 404 (the caller).
READ_REALM = "devpi"


def read_refusal(identity: Identity, owner: str, index: str, acl_read: Iterable[str],
                 project: str | None = None) -> DomainError | None:
    """None if ``identity`` may read ``owner/index`` (``may_read``), else the error to
    raise: Unauthenticated (with a challenge) for an anonymous caller, Forbidden else."""
    if may_read(identity, owner, index, acl_read, project):
        return None
    name = f"{owner}/{index}"
    if not identity.authenticated:
        return Unauthenticated(f"authentication required: reading {name} needs pkg_read",
                               challenge=True, realm=READ_REALM)
    return Forbidden(f"user '{identity.username}' has no pkg_read permission on {name}")


def check_read(identity: Identity, owner: str, index: str, acl_read: Iterable[str],
               project: str | None = None) -> None:
    """Raise ``read_refusal``'s error, if any."""
    refused = read_refusal(identity, owner, index, acl_read, project)
    if refused is not None:
        raise refused


def public(acl_read: Iterable[str]) -> bool:
    """Whether anyone may read an index with this ``acl_read`` (tokens aside)."""
    return any(normalize_principal(a) == ANONYMOUS for a in acl_read)


def shown_config(config: Mapping[str, Any], hidden: frozenset[str]) -> dict[str, Any]:
    """An index config (JSON) as shown to a caller: the ``hidden`` indexes (those it
    may not read) not named among its bases."""
    shown = dict(config)
    if hidden and isinstance(shown.get("bases"), (list, tuple)):
        shown["bases"] = [b for b in shown["bases"] if b not in hidden]
    return shown


def listed_projects(identity: Identity, names: Iterable[str]) -> list[str]:
    """Project names as listed to ``identity``: a token restricted to some projects
    lists only those (it could read no other)."""
    allowed = identity.scope.projects if identity.scope is not None else None
    return [n for n in names if allowed is None or n in allowed]


# (user/index, its owner, its acl_read normalised) along a resolution order
Readers = tuple[tuple[str, str, frozenset[str]], ...]


def readers_of(stages: Iterable[tuple[str, Iterable[str]]]) -> Readers:
    """``Readers`` of (user/index, acl_read) pairs."""
    return tuple((stage, stage.split("/", 1)[0], parse_principals(acl)) for stage, acl in stages)


def hidden_stages(identity: Identity, readers: Readers, all_public: bool) -> tuple[str, ...]:
    """The stages of a resolution order (``readers``) ``identity`` may not read
    (``may_read`` of each, computed once per principal set), in order; ``all_public``:
    every one of them is public (then only a token can hide)."""
    if (all_public and identity.scope is None) or identity.replica:
        return ()
    principals = identity.principals()
    hidden = []
    for stage, owner, acl_read in readers:
        if not identity.scoped(PKG_READ, stage) or not (
                identity.username in (ROOT, owner) or not principals.isdisjoint(acl_read)):
            hidden.append(stage)
    return tuple(hidden)


def readable_order(identity: Identity | None, order: Sequence[str],
                   acl_of: Callable[[str], Iterable[str]]) -> list[str]:
    """``order`` (a resolution order, the requested index first) without the stages
    ``identity`` may not read; refuses (read_refusal) when the first is one of them.
    ``identity`` None: an internal caller, who sees everything."""
    if identity is None or not order:
        return list(order)
    first_owner, first_index = order[0].split("/", 1)
    check_read(identity, first_owner, first_index, acl_of(order[0]))
    found = [order[0]]
    for stage in order[1:]:
        owner, index = stage.split("/", 1)
        if may_read(identity, owner, index, acl_of(stage)):
            found.append(stage)
    return found


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
