"""The audit log's rules: what is recorded (event kinds and their details), the
``Auditor`` the domain hands events to, how a flood of failed logins is bounded, and
who may read the log with which filters (``AuditOps``).

The domain records where it decides: after a write succeeds, one call
``auditor.record(AuditEvent(...))`` (``by`` builds one from an Identity, which carries
the client address the web layer found). The Auditor of the server (web/auditlog.py)
stamps the time, writes a log line and appends the row through storage; a failure to
store is logged and never fails the request. A write that can carry its own audit row
(an upload: ``Storage.write_release``'s ``audit``) asks ``auditor.entry(event)`` for
the row before the write and calls ``auditor.written(event)`` (the log line) after it:
the row is then exactly as durable as the upload. Audit rows are not index state (no
serial, no changelog): a replica records what its own domain layer decides.

API tokens (model/token_ops.py) record TOKEN_CREATED, TOKEN_USED
(first use of a token), TOKEN_REVOKED; details: ``token`` (its id, never the secret),
``user`` (whose), restrictions.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

import attrs

from devpi_twisted.model.acl import ROOT, Identity, Policy, Scope, matches
from devpi_twisted.model.errors import Forbidden, InvalidInput, Unauthenticated
from devpi_twisted.model.names import MAX_NAME
from devpi_twisted.storage.interface import AuditEntry, AuditQuery, Storage

T = TypeVar("T")

LOGIN = "login"  # a login token issued (POST /+login)
LOGIN_FAILED = "login_failed"  # actor: the name tried; details: reason
USER_CREATED, USER_MODIFIED, USER_DELETED = "user_created", "user_modified", "user_deleted"
INDEX_CREATED, INDEX_MODIFIED, INDEX_DELETED = "index_created", "index_modified", "index_deleted"
UPLOAD = "upload"  # a release file, doc zip or tox result (details: rel)
PUSH = "push"  # to another index here (details: target) or server (details: posturl)
DELETE_FILE, DELETE_VERSION, DELETE_PROJECT = "delete_file", "delete_version", "delete_project"
YANK, UNYANK = "yank", "unyank"
TOKEN_CREATED, TOKEN_USED, TOKEN_REVOKED = "token_created", "token_used", "token_revoked"
TOKEN_KINDS = frozenset({TOKEN_CREATED, TOKEN_USED, TOKEN_REVOKED})
KINDS = frozenset({
    LOGIN, LOGIN_FAILED, USER_CREATED, USER_MODIFIED, USER_DELETED, INDEX_CREATED,
    INDEX_MODIFIED, INDEX_DELETED, UPLOAD, PUSH, DELETE_FILE, DELETE_VERSION, DELETE_PROJECT,
    YANK, UNYANK}) | TOKEN_KINDS
ACL_KEYS = ("acl_upload", "acl_toxresult_upload", "acl_read")

# failed logins: per window, at most PER_CLIENT rows per address and TOTAL in all; the
# rest summed up per address (at most MAX_CLIENTS addresses, beyond: client "*")
FLOOD_WINDOW, FLOOD_PER_CLIENT, FLOOD_TOTAL, FLOOD_MAX_CLIENTS = 60.0, 10, 300, 1000
WRONG, UNKNOWN, THROTTLED = "wrong password", "unknown user", "throttled"  # LOGIN_FAILED reasons
FLOOD_NAMES = 5  # names tried, listed in a summary
EVERY_CLIENT = "*"

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
PARAMETERS = frozenset({"kind", "user", "index", "client", "since", "until", "limit", "cursor"})


@attrs.frozen
class AuditEvent:
    """What happened (``kind``, ``details``: plain JSON values, never a secret), by whom
    (``actor``; None: anonymous; for LOGIN_FAILED the name tried), from where
    (``client``), on which index (``user/index``)."""

    kind: str
    actor: str | None
    client: str
    index: str | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)


class HasJson(Protocol):
    """A stored value with a JSON form (an index's IndexConfig)."""

    def to_json(self) -> dict[str, Any]: ...


class Auditor(Protocol):
    """Records events; never raises (a failure to store is the Auditor's to log)."""

    def record(self, event: AuditEvent) -> None: ...

    def entry(self, event: AuditEvent) -> AuditEntry | None:
        """The row of ``event`` for a write to store in its own transaction (None: this
        Auditor stores none); the write calls ``written`` once it succeeded."""

    def written(self, event: AuditEvent) -> None:
        """``event``'s row went in with its write: what ``record`` does besides storing."""


class NoAudit:
    """Records nothing (tools and tests that do not audit)."""

    def record(self, event: AuditEvent) -> None:
        pass

    def entry(self, event: AuditEvent) -> AuditEntry | None:
        return None

    def written(self, event: AuditEvent) -> None:
        pass


NO_AUDIT = NoAudit()


def by(identity: Identity, kind: str, index: str | None = None, **details: Any) -> AuditEvent:
    """An event done by ``identity`` (its user name and client address)."""
    return AuditEvent(kind, identity.username, identity.client, index, details)


def release(identity: Identity, kind: str, index: str, project: str, version: str | None = None,
            **details: Any) -> AuditEvent:
    """An event on a project (and version) of an index: upload, push, deletion, yank."""
    return by(identity, kind, index, project=project, **({} if version is None else
                                                          {"version": version}), **details)


def yank(identity: Identity, index: str, project: str, version: str, filename: str | None,
         yanked: bool | str) -> AuditEvent:
    """A version's files (or one, ``filename``) yanked (``yanked``: True or a reason) or
    unyanked (False)."""
    kind = UNYANK if yanked is False else YANK
    return release(identity, kind, index, project, version, filename=filename,
                   reason=yanked if isinstance(yanked, str) else None)


def done(auditor: Auditor, event: AuditEvent, result: T) -> T:
    """Record ``event`` (of a write that succeeded), return the write's ``result``."""
    auditor.record(event)
    return result


def index_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Details of an index change: the keys changed, and each ACL changed, before/after."""
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    acl = {k: {"old": old.get(k), "new": new.get(k)} for k in ACL_KEYS if k in changed}
    return {"changed": changed, "acl": acl}


def login_failed(name: str, client: str, reason: str) -> AuditEvent:
    """A failed login: ``name`` the name tried (cut to what a name can be; control
    characters and NUL, which PostgreSQL cannot store, escaped as ``\\xNN``)."""
    shown = name[:MAX_NAME]
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return AuditEvent(LOGIN_FAILED, shown, client, None, {"reason": reason})


def user_modified(identity: Identity, user: str, old: Mapping[str, Any], new: Mapping[str, Any],
                  password: bool) -> AuditEvent:
    """A user's profile keys changed, and whether the password was set (never its value)."""
    keys = (set(old) | set(new)) - {"modified"}  # (the time of the change itself)
    changed = sorted(k for k in keys if old.get(k) != new.get(k))
    return by(identity, USER_MODIFIED, user=user, changed=changed, password=password)


def created_index(identity: Identity, index: str, config: Mapping[str, Any]) -> AuditEvent:
    """An index created: its type and ACLs (as changes from nothing)."""
    return by(identity, INDEX_CREATED, index, **index_changes({}, config))


def modified_index(identity: Identity, index: str, old: HasJson, new: Mapping[str, Any],
                   **details: Any) -> AuditEvent:
    """An index modified: the keys changed, each ACL changed before/after."""
    return by(identity, INDEX_MODIFIED, index, **index_changes(old.to_json(), new), **details)


def without_userinfo(url: str) -> str:
    """A URL as recorded: any ``user:password@`` dropped."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}" if sep else url


class FailureGate:
    """Bounds the rows failed logins make (a flood must not grow the table without
    bound): in each window, an address's first FLOOD_PER_CLIENT failures (FLOOD_TOTAL
    of all addresses) are recorded each; the rest are counted and, when the window
    ends, recorded as one LOGIN_FAILED per address with ``suppressed`` (how many) and
    ``names`` (some of the names tried). At most FLOOD_MAX_CLIENTS addresses are
    counted apart; beyond them, one summary for client ``*``. Pure: ``now`` is passed in."""

    def __init__(self) -> None:
        self._start = -math.inf
        self._admitted: dict[str, int] = {}
        self._total = 0
        self._suppressed: dict[str, tuple[int, frozenset[str]]] = {}

    def admit(self, client: str, name: str | None, now: float) -> tuple[bool, list[AuditEvent]]:
        """Whether this failure gets a row of its own, and summaries of a window past."""
        summaries = self.due(now)
        count = self._admitted.get(client, 0)
        if count < FLOOD_PER_CLIENT and self._total < FLOOD_TOTAL:
            self._admitted[client] = count + 1
            self._total += 1
            return True, summaries
        key = client if client in self._suppressed or \
            len(self._suppressed) < FLOOD_MAX_CLIENTS else EVERY_CLIENT
        seen, names = self._suppressed.get(key, (0, frozenset()))
        if name is not None and len(names) < FLOOD_NAMES:
            names |= {name}
        self._suppressed[key] = (seen + 1, names)
        return False, summaries

    def due(self, now: float) -> list[AuditEvent]:
        """The summaries of the window, once it has ended (then a new one starts)."""
        if now < self._start + FLOOD_WINDOW:
            return []
        start, suppressed = self._start, self._suppressed
        self._start, self._admitted, self._total, self._suppressed = now, {}, 0, {}
        return [AuditEvent(LOGIN_FAILED, None, client, None, {
            "reason": "flood", "suppressed": seen, "names": sorted(names),
            "since": start}) for client, (seen, names) in sorted(suppressed.items())]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at, "time": _iso(entry.at), "kind": entry.kind,
            "user": entry.actor, "client": entry.client, "index": entry.index,
            "details": dict(entry.details), "process": entry.process}


def _once(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(f"audit: give '{key}' at most once")
    return values[0]


def _seconds(key: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"audit: '{key}' must be seconds since the epoch, not {text[:40]!r}")
    return value


def _whole(key: str, text: str | None, low: int, high: int) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise InvalidInput(f"audit: '{key}' must be a whole number from {low} to {high}")
    return int(text)


def _name(key: str, text: str | None, parts: int) -> str | None:
    if text is None:
        return None
    pieces = text.split("/")
    if len(pieces) != parts or not all(pieces) or any(len(p.encode()) > MAX_NAME for p in pieces) \
            or not text.isprintable():
        shape = "a user name" if parts == 1 else "user/index"
        raise InvalidInput(f"audit: '{key}' must be {shape}")
    return text


def _client(text: str | None) -> str | None:
    if text is None or text in ("unix", EVERY_CLIENT):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidInput("audit: 'client' must be an IP address, 'unix' or '*'") from None


def parse_query(params: Mapping[str, Sequence[str]]) -> AuditQuery:
    """The filters of ``GET /+audit``'s query string (values as parse_qs gives them);
    InvalidInput naming the parameter at fault."""
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise InvalidInput(f"audit: unknown parameter(s) {', '.join(unknown)[:200]}; "
                           f"known: {', '.join(sorted(PARAMETERS))}")
    kinds = None
    if "kind" in params:
        kinds = frozenset(k.strip() for v in params["kind"] for k in v.split(",") if k.strip())
        if not kinds or not kinds <= KINDS:
            raise InvalidInput(f"audit: 'kind' must name kinds of {', '.join(sorted(KINDS))}")
    since = _seconds("since", _once(params, "since"))
    until = _seconds("until", _once(params, "until"))
    if since is not None and until is not None and since > until:
        raise InvalidInput("audit: 'since' is after 'until'")
    limit = _whole("limit", _once(params, "limit"), 1, MAX_LIMIT) or DEFAULT_LIMIT
    return AuditQuery(
        kinds=kinds, actor=_name("user", _once(params, "user"), 1),
        index=_name("index", _once(params, "index"), 2), client=_client(_once(params, "client")),
        since=since, until=until, before_id=_whole("cursor", _once(params, "cursor"), 1, 2**63 - 1),
        limit=limit)


class AuditOps:
    """Reading the audit log: root, and with ``--restrict-modify`` its admins; an API
    token only if its scope restricts nothing."""

    def __init__(self, storage: Storage, policy: Policy) -> None:
        self._storage = storage
        self._policy = policy

    def may_read(self, identity: Identity) -> bool:
        if identity.scope is not None and identity.scope != Scope():
            return False
        admins = self._policy.restrict_modify
        return identity.username == ROOT or (admins is not None and matches(identity, admins))

    async def query(self, identity: Identity, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """``{"events": [...], "next": cursor or None}``, newest first; raises
        Unauthenticated (anonymous), Forbidden, InvalidInput."""
        if not identity.authenticated:
            raise Unauthenticated("log in as root to read the audit log", challenge=True)
        if not self.may_read(identity):
            raise Forbidden("no permission to read the audit log (root only)")
        query = parse_query(params)
        found = await self._storage.query_audit(attrs.evolve(query, limit=query.limit + 1))
        page = found[:query.limit]
        more = len(found) > query.limit
        return {"events": [entry_view(e) for e in page],
                "next": str(page[-1].id) if more and page else None}
