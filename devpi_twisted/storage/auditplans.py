"""Plans of the audit table: append, query (filters, newest first, paged by id) and
prune (by age and count). Written once for both databases, run by the one driver
(driver.py) like plans.py's; they take no serial and write no changelog entry, since
audit rows are not index state (interface.AuditEntry).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from devpi_twisted.storage.interface import AuditEntry, AuditQuery, Change
from devpi_twisted.storage.plans import Plan, dumps, one, rows, run

INSERT_AUDIT = ("INSERT INTO audit (at, kind, actor, client, idx, process, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
SELECT_AUDIT = "SELECT id, at, kind, actor, client, idx, process, details FROM audit"
COUNT_AUDIT = "SELECT COUNT(*) FROM audit"
DELETE_OLD = "DELETE FROM audit WHERE at < ?"
# every row up to the newest one beyond the ``keep`` newest (none if there are fewer)
DELETE_BEYOND = ("DELETE FROM audit WHERE id <= "
                 "(SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)")


def append(entries: Sequence[AuditEntry]) -> Plan[None]:
    for e in entries:
        yield run(INSERT_AUDIT, e.at, e.kind, e.actor, e.client, e.index, e.process,
                  dumps(dict(e.details)))


def with_audit(make: Callable[..., Plan[Change]],
               entries: Sequence[AuditEntry]) -> Callable[..., Plan[Change]]:
    """The write plan ``make`` followed, in its transaction, by the audit rows of what it
    does (an upload's: as durable as the upload; a refused write leaves none)."""
    rows = list(entries)

    def plan(*args: Any) -> Plan[Change]:
        change = yield from make(*args)
        yield from append(rows)
        return change
    return plan


# Plans whose commit need not wait for the disk (an audit row is a record of what was
# done, not the state itself): sqlite commits them without fsync (the next full commit's
# fsync of the write-ahead log covers them; a killed process loses nothing), PostgreSQL
# with synchronous_commit off. One upload one fsync, not two.
LAZY = frozenset({append})


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    """The WHERE clause of ``query`` (fixed fragments; only the values are parameters)."""
    terms: list[str] = []
    params: list[Any] = []
    if query.kinds is not None:
        kinds = sorted(query.kinds)
        terms.append("kind IN (" + ", ".join("?" * len(kinds)) + ")" if kinds else "1 = 0")
        params += kinds
    for column, value in (("actor", query.actor), ("idx", query.index), ("client", query.client)):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        terms.append("at >= ?")
        params.append(query.since)
    if query.until is not None:
        terms.append("at < ?")
        params.append(query.until)
    if query.before_id is not None:
        terms.append("id < ?")
        params.append(query.before_id)
    return (" WHERE " + " AND ".join(terms)) if terms else "", params


def query(q: AuditQuery) -> Plan[list[AuditEntry]]:
    where, params = _where(q)
    found = yield rows(f"{SELECT_AUDIT}{where} ORDER BY id DESC LIMIT ?", *params, q.limit)
    return [AuditEntry(kind=k, actor=a, client=c, index=i, details=json.loads(d), at=float(at),
                       process=p, id=int(n))
            for n, at, k, a, c, i, p, d in found]


def prune(before: float, keep: int) -> Plan[int]:
    count = int((yield one(COUNT_AUDIT))[0])
    yield run(DELETE_OLD, before)
    yield run(DELETE_BEYOND, max(keep, 0))
    return count - int((yield one(COUNT_AUDIT))[0])
