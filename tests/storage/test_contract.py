"""The storage contract: every adapter passes these, on the real reactor."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults

from devpi_twisted.storage.cache import StateCache
from devpi_twisted.storage.interface import (
    INDEX, USER, IndexRecord, RecordExists, RecordMissing, StaleRecord, UserRecord,
)

ROOT = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, "$argon2id$fake", 0)
PYPI = IndexRecord("root", "pypi", {"type": "mirror", "volatile": False}, 0)


async def _bootstrapped(storage: Any) -> Any:
    await storage.bootstrap([ROOT], [PYPI])
    return storage


async def _raises(exc: type[BaseException], d: Any) -> BaseException:
    try:
        await d
    except exc as e:
        return e
    raise AssertionError(f"{exc.__name__} not raised")


@pytest_twisted.ensureDeferred
async def test_empty_storage_has_serial_minus_one(storage: Any) -> None:
    assert storage.serial == -1
    assert storage.last_commit_time is None
    assert await storage.list_users() == []
    assert await storage.changes_since(-1) == []


@pytest_twisted.ensureDeferred
async def test_bootstrap_is_serial_zero_and_only_once(storage: Any) -> None:
    assert await storage.bootstrap([ROOT], [PYPI]) == 0
    assert storage.serial == 0
    root = await storage.get_user("root")
    assert root.pwhash == "$argon2id$fake" and root.profile["created"] == "2024-01-01T00:00:00Z"
    assert (await storage.get_index("root", "pypi")).config == PYPI.config
    await _raises(RecordExists, storage.bootstrap([ROOT], []))
    assert storage.serial == 0


@pytest_twisted.ensureDeferred
async def test_each_write_takes_the_next_serial(storage: Any) -> None:
    await _bootstrapped(storage)
    assert await storage.create_user("alice", {"email": "a@x"}, "h1") == 1
    assert await storage.create_index("alice", "dev", {"type": "stage"}) == 2
    user = await storage.get_user("alice")
    assert await storage.update_user("alice", {"email": "b@x"}, "h2", user.serial) == 3
    index = await storage.get_index("alice", "dev")
    assert await storage.update_index("alice", "dev", {"type": "stage", "title": "t"}, index.serial) == 4
    assert storage.serial == 4
    assert storage.last_commit_time is not None
    changes = await storage.changes_since(-1)
    assert [c.serial for c in changes] == [0, 1, 2, 3, 4]


@pytest_twisted.ensureDeferred
async def test_refused_writes_take_no_serial(storage: Any) -> None:
    await _bootstrapped(storage)
    await _raises(RecordExists, storage.create_user("root", {}, None))
    await _raises(RecordMissing, storage.create_index("nobody", "dev", {"type": "stage"}))
    await _raises(RecordExists, storage.create_index("root", "pypi", {"type": "stage"}))
    await _raises(RecordMissing, storage.update_user("nobody", {}, None, 0))
    await _raises(StaleRecord, storage.update_user("root", {}, None, 99))
    await _raises(StaleRecord, storage.update_index("root", "pypi", {}, 99))
    await _raises(RecordMissing, storage.delete_index("root", "nope", 0))
    assert storage.serial == 0
    assert [c.serial for c in await storage.changes_since(-1)] == [0]
    assert (await storage.get_user("root")).profile == ROOT.profile


@pytest_twisted.ensureDeferred
async def test_changelog_records_new_values_and_deletions(storage: Any) -> None:
    await _bootstrapped(storage)
    await storage.create_user("alice", {"email": "a@x"}, "h1")
    await storage.create_index("alice", "dev", {"type": "stage"})
    user = await storage.get_user("alice")
    indexes = {i.index: i.serial for i in await storage.list_indexes("alice")}
    await storage.delete_user("alice", user.serial, indexes)
    changes = await storage.changes_since(0)
    assert [(r.type, r.key, r.value) for r in changes[0].records] == [
        (USER, "alice", {"profile": {"email": "a@x"}, "pwhash": "h1"})]
    assert [(r.type, r.key, r.value) for r in changes[1].records] == [
        (INDEX, "alice/dev", {"type": "stage"})]
    assert [(r.type, r.key, r.value) for r in changes[2].records] == [
        (INDEX, "alice/dev", None), (USER, "alice", None)]
    assert await storage.get_user("alice") is None
    assert await storage.list_indexes("alice") == []


@pytest_twisted.ensureDeferred
async def test_replaying_the_changelog_rebuilds_the_state(storage: Any) -> None:
    await _bootstrapped(storage)
    for name in ("alice", "bob", "carol"):
        await storage.create_user(name, {"title": name}, None)
        await storage.create_index(name, "dev", {"type": "stage", "owner": name})
    bob = await storage.get_user("bob")
    await storage.delete_user("bob", bob.serial, {"dev": (await storage.get_index("bob", "dev")).serial})
    carol = await storage.get_index("carol", "dev")
    await storage.update_index("carol", "dev", {"type": "stage", "volatile": False}, carol.serial)
    replayed = StateCache()
    replayed.apply(await storage.changes_since(-1))
    assert replayed.serial == storage.serial
    assert sorted(replayed.users.values(), key=lambda u: u.name) == await storage.list_users()
    assert replayed.indexes_of(None) == await storage.list_indexes()


@pytest_twisted.ensureDeferred
async def test_changes_since_honours_limit_and_start(storage: Any) -> None:
    await _bootstrapped(storage)
    for n in range(5):
        await storage.create_user(f"u{n}", {}, None)
    page = await storage.changes_since(1, limit=2)
    assert [c.serial for c in page] == [2, 3]
    assert await storage.changes_since(storage.serial) == []


@pytest_twisted.ensureDeferred
async def test_update_with_a_stale_serial_is_refused(storage: Any) -> None:
    await _bootstrapped(storage)
    await storage.create_user("alice", {"email": "a@x"}, "h")
    read = await storage.get_user("alice")
    await storage.update_user("alice", {"email": "first@x"}, "h", read.serial)
    await _raises(StaleRecord, storage.update_user("alice", {"email": "second@x"}, "h", read.serial))
    assert (await storage.get_user("alice")).profile == {"email": "first@x"}


@pytest_twisted.ensureDeferred
async def test_delete_user_refuses_when_its_indexes_changed(storage: Any) -> None:
    await _bootstrapped(storage)
    await storage.create_user("alice", {}, None)
    user = await storage.get_user("alice")
    await storage.create_index("alice", "late", {"type": "stage"})
    await _raises(StaleRecord, storage.delete_user("alice", user.serial, {}))
    assert await storage.get_index("alice", "late") is not None


@pytest_twisted.ensureDeferred
async def test_concurrent_index_creations_for_one_user_all_persist(storage: Any) -> None:
    """devpi-postgresql loses 29 of 30 here; we keep every acknowledged one."""
    await _bootstrapped(storage)
    await storage.create_user("alice", {}, None)
    serials = await gatherResults([
        storage.create_index("alice", f"ix{n}", {"type": "stage"}) for n in range(30)])
    assert sorted(serials) == list(range(2, 32))
    assert len(await storage.list_indexes("alice")) == 30


@pytest_twisted.ensureDeferred
async def test_concurrent_updates_of_one_record_let_exactly_one_win(storage: Any) -> None:
    await _bootstrapped(storage)
    await storage.create_user("alice", {}, None)
    read = await storage.get_user("alice")
    results = await DeferredList([
        storage.update_user("alice", {"title": str(n)}, None, read.serial) for n in range(10)],
        consumeErrors=True)
    won = [ok for ok, _ in results if ok]
    assert len(won) == 1
    assert all(f.check(StaleRecord) for ok, f in results if not ok)


@pytest_twisted.ensureDeferred
async def test_state_survives_a_restart(adapter: Any) -> None:
    first = adapter.open()
    await _bootstrapped(first)
    await first.create_user("alice", {"email": "a@x"}, "h")
    await first.create_index("alice", "dev", {"type": "stage", "bases": ["root/pypi"]})
    before_users, before_indexes = await first.list_users(), await first.list_indexes()
    await first.close()
    second = adapter.open()
    assert second.serial == 2
    assert await second.list_users() == before_users
    assert await second.list_indexes() == before_indexes
    assert await second.create_user("bob", {}, None) == 3


@pytest_twisted.ensureDeferred
async def test_commits_of_another_process_become_visible(adapter: Any) -> None:
    server = adapter.open()
    await _bootstrapped(server)
    tool = adapter.open()  # e.g. devpi-twisted passwd, run beside the server
    root = await tool.get_user("root")
    await tool.update_user("root", root.profile, "$argon2id$new", root.serial)
    await server.poll()
    assert (await server.get_user("root")).pwhash == "$argon2id$new"
    assert server.serial == 1
    # and a write of the server after that builds on it instead of failing
    fresh = await server.get_user("root")
    assert await server.update_user("root", {"title": "x"}, fresh.pwhash, fresh.serial) == 2
