"""Webhooks on every adapter: hooks, and outbox rows written in the transaction of the
change that causes them (a refused change leaves none; a replica importing the change
writes none); per hook the oldest pending delivery is the only one due."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted

from devpi_twisted.storage.hooktypes import DELIVERED, FAILED, PENDING, Attempt, HookEvent
from devpi_twisted.storage.interface import RecordMissing, StaleRecord
from tests.storage.test_contract import _bootstrapped, _raises

DATA = {"name": "pkg", "version": "1.0"}


def upload(index: str = "alice/dev", version: str = "1.0") -> HookEvent:
    return HookEvent("upload", index, "alice", "pkg", version, f"pkg-{version}.tar.gz")


async def _setup(storage: Any) -> Any:
    await _bootstrapped(storage)
    await storage.create_user("alice", {}, "h")
    await storage.create_index("alice", "dev", {"type": "stage", "bases": []})
    await storage.create_index("alice", "other", {"type": "stage", "bases": []})
    return storage


@pytest_twisted.ensureDeferred
async def test_hooks_are_created_listed_and_deleted(storage: Any) -> None:
    await _setup(storage)
    serial = storage.serial
    hook = await storage.create_hook("alice/dev", "http://h/x", "s3cret-value", ["upload", "yank"],
                                     "alice")
    server = await storage.create_hook("", "https://h/all", "other-secret", ["index"], "root")
    assert storage.serial == serial  # not index state: no serial
    assert hook.events == ("upload", "yank") and hook.scope == "alice/dev"
    assert [h.id for h in await storage.list_hooks("alice/dev")] == [hook.id]
    assert [h.id for h in await storage.list_hooks(None)] == [hook.id, server.id]
    assert (await storage.get_hook(server.id)).url == "https://h/all"
    assert await storage.delete_hook(hook.id) is True
    assert await storage.delete_hook(hook.id) is False
    assert await storage.get_hook(hook.id) is None


@pytest_twisted.ensureDeferred
async def test_events_go_to_subscribed_hooks_in_the_same_transaction(storage: Any) -> None:
    await _setup(storage)
    dev = await storage.create_hook("alice/dev", "http://h/dev", "secret-dev", ["upload"], "alice")
    other = await storage.create_hook("alice/other", "http://h/o", "secret-o", ["upload"], "alice")
    yanks = await storage.create_hook("alice/dev", "http://h/y", "secret-y", ["yank"], "alice")
    server = await storage.create_hook("", "http://h/s", "secret-s", ["upload", "index"], "root")
    serial = await storage.write_release("alice", "dev", "pkg", "1.0", DATA, {}, -1, None,
                                         [upload()])
    assert [d.serial for d in await storage.list_deliveries(dev.id, 10)] == [serial]
    assert await storage.list_deliveries(other.id, 10) == []
    assert await storage.list_deliveries(yanks.id, 10) == []
    [delivery] = await storage.list_deliveries(server.id, 10)
    body = json.loads(delivery.payload)
    assert body == {"event": "upload", "index": "alice/dev", "project": "pkg", "version": "1.0",
                    "filename": "pkg-1.0.tar.gz", "actor": "alice", "serial": serial,
                    "time": delivery.created}
    assert (delivery.status, delivery.tries, delivery.event) == (PENDING, 0, "upload")
    assert await storage.delivery_counts() == {PENDING: 2}


@pytest_twisted.ensureDeferred
async def test_a_refused_change_leaves_no_outbox_row(storage: Any) -> None:
    await _setup(storage)
    hook = await storage.create_hook("alice/dev", "http://h/dev", "secret-dev", ["upload", "index"],
                                     "alice")
    await _raises(StaleRecord, storage.write_release("alice", "dev", "pkg", "1.0", DATA, {}, 7,
                                                     None, [upload()]))
    await _raises(RecordMissing, storage.update_index(
        "alice", "gone", {"type": "stage"}, 1, [HookEvent("index", "alice/dev", "alice")]))
    await _raises(StaleRecord, storage.delete_project(
        "alice", "dev", "pkg", {"1.0": 3}, [HookEvent("delete", "alice/dev", "alice", "pkg")]))
    assert await storage.list_deliveries(hook.id, 10) == []
    assert await storage.delivery_counts() == {}


@pytest_twisted.ensureDeferred
async def test_only_the_oldest_pending_delivery_of_a_hook_is_due(storage: Any) -> None:
    await _setup(storage)
    a = await storage.create_hook("alice/dev", "http://h/a", "secret-a", ["upload"], "alice")
    b = await storage.create_hook("alice/dev", "http://h/b", "secret-b", ["upload"], "alice")
    for n in range(3):
        await storage.write_release("alice", "dev", "pkg", f"1.{n}", DATA, {}, -1, None,
                                    [upload(version=f"1.{n}")])
    due = await storage.due_deliveries(1e12, [], 10)
    assert [(d.hook, json.loads(d.payload)["version"]) for d in due] == [(a.id, "1.0"), (b.id, "1.0")]
    assert [d.hook for d in await storage.due_deliveries(1e12, [a.id], 10)] == [b.id]
    first = due[0]
    # a failed attempt keeps the hook's later events waiting until it is through
    await storage.record_attempt(Attempt(first.id, PENDING, 1, 5e11, 1.0, "HTTP 500"))
    assert [d.hook for d in await storage.due_deliveries(1e11, [], 10)] == [b.id]
    again = [d for d in await storage.due_deliveries(1e12, [], 10) if d.hook == a.id]
    assert [(d.id, d.tries, d.last_error) for d in again] == [(first.id, 1, "HTTP 500")]
    await storage.record_attempt(Attempt(first.id, DELIVERED, 2, 0.0, 2.0, None))
    nxt = [d for d in await storage.due_deliveries(1e12, [], 10) if d.hook == a.id]
    assert json.loads(nxt[0].payload)["version"] == "1.1"
    await storage.record_attempt(Attempt(nxt[0].id, FAILED, 9, 0.0, 3.0, "refused"))
    nxt = [d for d in await storage.due_deliveries(1e12, [], 10) if d.hook == a.id]
    assert json.loads(nxt[0].payload)["version"] == "1.2"
    # a replay queues the failed one again, ahead of the later ones
    assert await storage.replay_delivery(a.id, first.id) is True
    assert await storage.replay_delivery(b.id, first.id) is False
    nxt = [d for d in await storage.due_deliveries(1e12, [], 10) if d.hook == a.id]
    assert (nxt[0].id, nxt[0].tries) == (first.id, 0)
    assert await storage.delivery_counts() == {PENDING: 5, FAILED: 1}
    await storage.prune_deliveries(3.5)  # done before then: forgotten; pending ones stay
    assert await storage.delivery_counts() == {PENDING: 5}


@pytest_twisted.ensureDeferred
async def test_a_replica_importing_a_change_writes_no_outbox_row(adapter: Any) -> None:
    primary = adapter.open()
    await _setup(primary)
    await primary.create_hook("alice/dev", "http://h/a", "secret-a", ["upload"], "alice")
    replica = adapter.open_other()
    await replica.create_hook("alice/dev", "http://h/a", "secret-a", ["upload"], "alice")
    await primary.write_release("alice", "dev", "pkg", "1.0", DATA, {}, -1, None, [upload()])
    for change in await primary.changes_since(-1):
        await replica.import_change(change)
    assert replica.serial == primary.serial
    assert await primary.delivery_counts() == {PENDING: 1}
    assert await replica.delivery_counts() == {}


@pytest_twisted.ensureDeferred
async def test_the_hooks_of_a_deleted_index_go_with_it(storage: Any) -> None:
    await _setup(storage)
    await storage.update_index("alice", "dev", {"type": "stage", "bases": [], "volatile": True},
                               (await storage.get_index("alice", "dev")).serial)
    dev = await storage.create_hook("alice/dev", "http://h/dev", "secret-dev", ["index"], "alice")
    kept = await storage.create_hook("alice/other", "http://h/o", "secret-o", ["upload"], "alice")
    server = await storage.create_hook("", "http://h/s", "secret-s", ["index"], "root")
    await storage.write_release("alice", "dev", "pkg", "1.0", DATA, {}, -1, None, [
        HookEvent("index", "alice/dev", "alice")])
    await storage.delete_index("alice", "dev", (await storage.get_index("alice", "dev")).serial,
                               [HookEvent("index", "alice/dev", "alice", details={"action": "deleted"})])
    assert await storage.get_hook(dev.id) is None
    assert await storage.get_hook(kept.id) is not None
    bodies = [json.loads(d.payload) for d in await storage.list_deliveries(server.id, 10)]
    assert [b.get("action") for b in bodies] == ["deleted", None]
    assert await storage.delivery_counts() == {PENDING: 2}
