"""The audit table on both adapters: append, filtered and paged queries, pruning; audit
rows take no serial and are not in the changelog."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest_twisted

from devpi_twisted.storage.interface import AuditEntry, AuditQuery, RecordMissing, StaleRecord, UserRecord
from tests.storage.test_contract import _raises
from tests.storage.test_releases import WHEEL, _data, _with_index
from tests.storage.test_releases import _entry as _file

ROOT = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, "$argon2id$fake", 0)


def _entry(n: int, kind: str = "upload", actor: str | None = "alice", client: str = "10.0.0.1",
           index: str | None = "alice/dev") -> AuditEntry:
    return AuditEntry(kind=kind, actor=actor, client=client, index=index,
                      details={"n": n, "acl": {"old": [], "new": ["bob"]}}, at=1000.0 + n,
                      process="host:1")


@pytest_twisted.ensureDeferred
async def test_audit_rows_take_no_serial_and_no_changelog_entry(storage: Any) -> None:
    await storage.bootstrap([ROOT], [])
    await storage.append_audit([_entry(1), _entry(2)])
    assert storage.serial == 0
    assert [c.serial for c in await storage.changes_since(-1)] == [0]
    found = await storage.query_audit(AuditQuery())
    assert [e.details["n"] for e in found] == [2, 1]  # newest first
    assert found[0].details == {"n": 2, "acl": {"old": [], "new": ["bob"]}}
    assert found[0].id > found[1].id > 0
    assert (found[0].kind, found[0].actor, found[0].client, found[0].index, found[0].at,
            found[0].process) == ("upload", "alice", "10.0.0.1", "alice/dev", 1002.0, "host:1")


@pytest_twisted.ensureDeferred
async def test_audit_query_filters_combine(storage: Any) -> None:
    await storage.append_audit([
        _entry(1, kind="login"), _entry(2, actor=None, kind="login_failed", index=None),
        _entry(3, actor="bob", client="10.0.0.2"), _entry(4, index="bob/prod"),
        _entry(5, kind="yank"),
    ])

    async def ns(**kw: Any) -> list[int]:
        return [e.details["n"] for e in await storage.query_audit(AuditQuery(**kw))]

    assert await ns(kinds=frozenset({"login", "login_failed"})) == [2, 1]
    assert await ns(kinds=frozenset()) == []
    assert await ns(actor="bob") == [3]
    assert await ns(index="bob/prod") == [4]
    assert await ns(client="10.0.0.2") == [3]
    assert await ns(since=1002.0, until=1004.0) == [3, 2]
    assert await ns(actor="alice", kinds=frozenset({"upload"})) == [4]
    assert await ns(limit=2) == [5, 4]


@pytest_twisted.ensureDeferred
async def test_audit_query_pages_by_id(storage: Any) -> None:
    await storage.append_audit([_entry(n) for n in range(7)])
    seen: list[int] = []
    before = None
    while True:
        page = await storage.query_audit(AuditQuery(before_id=before, limit=3))
        seen += [e.details["n"] for e in page]
        if len(page) < 3:
            break
        before = page[-1].id
    assert seen == [6, 5, 4, 3, 2, 1, 0]


@pytest_twisted.ensureDeferred
async def test_audit_prune_by_age_and_count(storage: Any) -> None:
    await storage.append_audit([_entry(n) for n in range(10)])
    assert await storage.prune_audit(1003.0, 100) == 3  # at 1000, 1001, 1002
    assert await storage.prune_audit(0.0, 4) == 3  # the 4 newest stay
    assert [e.details["n"] for e in await storage.query_audit(AuditQuery())] == [9, 8, 7, 6]
    assert await storage.prune_audit(0.0, 4) == 0
    assert await storage.prune_audit(0.0, 0) == 4
    assert await storage.query_audit(AuditQuery()) == []


@pytest_twisted.ensureDeferred
async def test_audit_rows_of_another_process_are_seen(adapter: Any) -> None:
    """Two handles on one database (two processes): one query shows both's rows."""
    first, second = adapter.open(), adapter.open()
    await first.append_audit([_entry(1)])
    await second.append_audit([_entry(2)])
    assert [e.details["n"] for e in await first.query_audit(AuditQuery())] == [2, 1]


@pytest_twisted.ensureDeferred
async def test_audit_rows_commit_without_their_own_fsync(storage: Any) -> None:
    """An audit row is no state: sqlite commits a batch of audit rows alone with
    synchronous NORMAL (the next full commit's fsync of the log covers it), everything
    else with FULL; PostgreSQL (synchronous_commit off for them) stores them all the same."""
    await storage.bootstrap([ROOT], [])
    said: list[str] = []
    conn = getattr(storage, "_conn", None)
    if isinstance(conn, sqlite3.Connection):
        conn.set_trace_callback(said.append)
    await storage.append_audit([_entry(1)])
    await storage.create_user("alice", {"created": "x"}, "$argon2id$fake")
    await storage.append_audit([_entry(2)])
    assert [e.details["n"] for e in await storage.query_audit(AuditQuery())] == [2, 1]
    if isinstance(conn, sqlite3.Connection):
        syncs = [s for s in said if "synchronous" in s or s.startswith(("BEGIN", "COMMIT"))]
        assert syncs == ["PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE", "COMMIT",
                         "PRAGMA synchronous = FULL", "BEGIN IMMEDIATE", "COMMIT",
                         "PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE", "COMMIT",
                         "PRAGMA synchronous = FULL"], syncs
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest_twisted.ensureDeferred
async def test_a_release_write_stores_its_audit_rows_in_its_own_transaction(storage: Any) -> None:
    """An upload's audit row goes in with the upload (as durable as it); a refused write
    (a stale version, a missing index) leaves no row."""
    await _with_index(storage)
    serial = await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL),
                                         {WHEEL: _file()}, -1, None, (), [_entry(1)])
    assert [e.details["n"] for e in await storage.query_audit(AuditQuery())] == [1]
    assert storage.serial == serial
    await _raises(StaleRecord, storage.write_release("alice", "dev", "pkg", "1.0", _data(), {}, -1,
                                                     None, (), [_entry(2)]))
    await _raises(RecordMissing, storage.write_release("alice", "nope", "pkg", "1.0", _data(), {},
                                                       -1, None, (), [_entry(3)]))
    assert [e.details["n"] for e in await storage.query_audit(AuditQuery())] == [1]
