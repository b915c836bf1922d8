"""Replication's storage side: a primary's changelog imported into another database,
serial for serial, on every adapter (both as primary and as replica)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import TimeoutError as DeferredTimeout

from devpi_twisted.storage.interface import IndexRecord, StaleRecord, UserRecord

ROOT = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, "$argon2id$fake", 0)
PYPI = IndexRecord("root", "pypi", {"type": "mirror", "volatile": False}, 0)
FILE_ENTRY = {"hashes": {"sha256": "ab" * 32}, "size": 3, "last_modified": "x"}


async def _history(primary: Any) -> None:
    await primary.bootstrap([ROOT], [PYPI])
    await primary.create_user("alice", {"email": "a@example.org"}, "$argon2id$hash")
    await primary.create_index("alice", "dev", {"type": "stage", "bases": []})
    await primary.write_release("alice", "dev", "pkg", "1.0", {"name": "pkg", "version": "1.0"},
                                {"alice/dev/+f/abc/pkg-1.0.tar.gz": {**FILE_ENTRY, "project": "pkg"}}, -1)
    await primary.write_mirror_project("root", "pypi", "six", {"links": [], "etag": "e"}, {})


@pytest_twisted.ensureDeferred
async def test_imported_changes_rebuild_the_same_state_under_the_same_serials(adapter: Any) -> None:
    primary = adapter.open()
    await _history(primary)
    changes = await primary.changes_since(-1)
    assert [c.serial for c in changes] == [0, 1, 2, 3, 4]
    # the replica: a second, empty database of the same kind
    target = adapter.open_other()
    for change in changes:
        assert await target.import_change(change) is True
    assert target.serial == primary.serial == 4
    assert await target.changes_since(-1) == changes
    assert [u.name for u in await target.list_users()] == ["alice", "root"]
    assert (await target.get_index("alice", "dev")).config.to_json() == {"type": "stage", "bases": []}
    record = await target.get_file("alice/dev/+f/abc/pkg-1.0.tar.gz")
    assert record.entry["hashes"] == FILE_ENTRY["hashes"]
    assert (await target.get_mirror_project("root", "pypi", "six")).value["etag"] == "e"
    assert [v.version for v in await target.get_versions("alice", "dev", "pkg")] == ["1.0"]


@pytest_twisted.ensureDeferred
async def test_import_skips_a_serial_held_and_refuses_a_gap(adapter: Any) -> None:
    primary = adapter.open()
    await _history(primary)
    changes = await primary.changes_since(-1)
    target = adapter.open_other()
    await target.import_change(changes[0])
    assert await target.import_change(changes[0]) is False  # applied twice: nothing happens
    with pytest.raises(StaleRecord):
        await target.import_change(changes[2])
    assert target.serial == 0
    assert await target.changes_since(-1) == changes[:1]
    for change in changes[1:]:
        await target.import_change(change)
    # the imported state survives a reopen (a replica's restart resumes from its serial)
    assert adapter.reopen_other().serial == 4


@pytest_twisted.ensureDeferred
async def test_a_batch_is_applied_in_one_transaction_whole_or_not_at_all(adapter: Any) -> None:
    primary = adapter.open()
    await _history(primary)
    changes = await primary.changes_since(-1)
    target = adapter.open_other()
    assert await target.import_changes(changes[:2]) == 2
    # held entries are skipped, the rest applied; a gap anywhere writes nothing of the batch
    with pytest.raises(StaleRecord):
        await target.import_changes([changes[1], changes[2], changes[4]])
    assert target.serial == 1 and await target.changes_since(-1) == changes[:2]
    assert adapter.reopen_other().serial == 1
    target = adapter.open_other()
    assert await target.import_changes(changes) == 3
    assert target.serial == 4 and await target.changes_since(-1) == changes
    assert await target.import_changes(changes) == 0
    assert [u.name for u in await target.list_users()] == ["alice", "root"]


@pytest_twisted.ensureDeferred
async def test_wait_for_fires_when_the_serial_is_seen(adapter: Any) -> None:
    storage = adapter.open()
    await storage.bootstrap([ROOT], [PYPI])
    assert (await storage.wait_for(0)) is None
    waiting = storage.wait_for(1)
    cancelled = storage.wait_for(2)
    cancelled.addTimeout(0.01, reactor)
    with pytest.raises(DeferredTimeout):
        await cancelled
    assert not waiting.called
    await storage.create_user("bob", {}, None)
    assert waiting.called


@pytest_twisted.ensureDeferred
async def test_live_files_lists_files_not_deleted(adapter: Any) -> None:
    storage = adapter.open()
    await _history(storage)
    await storage.write_release("alice", "dev", "pkg", "2.0", {"name": "pkg", "version": "2.0"},
                                {"alice/dev/+f/def/pkg-2.0.tar.gz": {**FILE_ENTRY, "project": "pkg"},
                                 "alice/dev/+f/abc/pkg-1.0.tar.gz": {}}, -1)
    assert [f.relpath for f in await storage.live_files()] == ["alice/dev/+f/def/pkg-2.0.tar.gz"]
