"""API token records on every adapter: creation and revocation are changes (a serial,
a changelog entry, seen by other processes and by replicas), uses are not."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from devpi_twisted.storage.interface import TOKEN, RecordExists, RecordMissing
from tests.storage.test_contract import _bootstrapped, _raises

VALUE = {"salt": "salt-1", "created": 1000.0, "restrictions": ["expires=never"]}


async def _with_alice(storage: Any) -> Any:
    await _bootstrapped(storage)
    await storage.create_user("alice", {}, "h")
    return storage


@pytest_twisted.ensureDeferred
async def test_create_get_list_revoke(storage: Any) -> None:
    await _with_alice(storage)
    serial = await storage.create_token("alice", "abcdefgh", VALUE)
    assert serial == storage.serial == 2
    record = await storage.get_token("alice", "abcdefgh")
    assert (record.salt, record.created, record.restrictions, record.revoked) == (
        "salt-1", 1000.0, ("expires=never",), None)
    await _raises(RecordExists, storage.create_token("alice", "abcdefgh", VALUE))
    await _raises(RecordMissing, storage.create_token("nobody", "abcdefgh", VALUE))
    listed = await storage.list_tokens("alice")
    assert [t.token_id for t in listed] == ["abcdefgh"] and listed[0].first_used is None
    assert await storage.delete_token("alice", "abcdefgh") == 3
    assert (await storage.get_token("alice", "abcdefgh")).revoked is not None
    assert await storage.list_tokens("alice") == []
    await _raises(RecordMissing, storage.delete_token("alice", "abcdefgh"))
    await _raises(RecordMissing, storage.delete_token("alice", "zzzzzzzz"))
    assert storage.serial == 3
    changes = await storage.changes_since(1)
    assert [(r.type, r.key) for c in changes for r in c.records] == [
        (TOKEN, "alice/abcdefgh"), (TOKEN, "alice/abcdefgh")]
    assert "revoked" in changes[1].records[0].value


@pytest_twisted.ensureDeferred
async def test_uses_are_recorded_without_a_serial(storage: Any) -> None:
    await _with_alice(storage)
    await storage.create_token("alice", "abcdefgh", VALUE)
    serial = storage.serial
    assert await storage.record_token_use("alice", "abcdefgh", 5000.0) is True
    assert await storage.record_token_use("alice", "abcdefgh", 5060.0) is False
    assert await storage.record_token_use("alice", "zzzzzzzz", 5060.0) is False
    (listed,) = await storage.list_tokens("alice")
    assert (listed.first_used, listed.last_used) == (5000.0, 5060.0)
    assert storage.serial == serial


@pytest_twisted.ensureDeferred
async def test_deleting_a_user_deletes_its_tokens(storage: Any) -> None:
    await _with_alice(storage)
    await storage.create_token("alice", "abcdefgh", VALUE)
    alice = await storage.get_user("alice")
    await storage.delete_user("alice", alice.serial, {})
    assert await storage.get_token("alice", "abcdefgh") is None
    await storage.create_user("alice", {}, "h")
    assert await storage.list_tokens("alice") == []


@pytest_twisted.ensureDeferred
async def test_tokens_survive_a_restart_and_reach_other_processes(adapter: Any) -> None:
    first = await _with_alice(adapter.open())
    await first.create_token("alice", "abcdefgh", VALUE)
    other = adapter.open()
    assert (await other.get_token("alice", "abcdefgh")).salt == "salt-1"
    await first.delete_token("alice", "abcdefgh")
    await other.poll()
    assert (await other.get_token("alice", "abcdefgh")).revoked is not None
    await first.close()
    again = adapter.open()
    assert (await again.get_token("alice", "abcdefgh")).revoked is not None


@pytest_twisted.ensureDeferred
async def test_a_replica_imports_creation_and_revocation(adapter: Any) -> None:
    primary = await _with_alice(adapter.open())
    await primary.create_token("alice", "abcdefgh", VALUE)
    await primary.delete_token("alice", "abcdefgh")
    replica = adapter.open_other()
    for change in await primary.changes_since(-1):
        assert await replica.import_change(change)
        if change.serial == 2:
            assert (await replica.get_token("alice", "abcdefgh")).revoked is None
    assert (await replica.get_token("alice", "abcdefgh")).revoked is not None
    assert await replica.list_tokens("alice") == []
