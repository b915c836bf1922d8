"""The storage contract for release data and file records, on every adapter."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from devpi_twisted.storage.interface import (
    AuditEntry, AuditQuery, RecordMissing, ReleaseWrite, StaleRecord, StorageUnavailable,
)
from tests.storage.conftest import SqliteAdapter
from tests.storage.test_contract import _bootstrapped, _raises

WHEEL = "alice/dev/+f/22d/a8a99162b93fa/pkg-1.0-py3-none-any.whl"
SDIST = "alice/dev/+f/ff7/0335d468e7eb6/pkg-1.0.tar.gz"


def _entry(project: str = "pkg", version: str = "1.0") -> dict[str, Any]:
    return {"hash_spec": "sha256=22da", "hashes": {"sha256": "22da"}, "project": project,
            "version": version, "last_modified": "Fri, 01 Nov 2024 10:00:00 GMT"}


def _data(*paths: str) -> dict[str, Any]:
    return {"name": "Pkg", "version": "1.0",
            "+elinks": [{"rel": "releasefile", "entrypath": p} for p in paths]}


async def _with_index(storage: Any) -> Any:
    await _bootstrapped(storage)
    await storage.create_user("alice", {}, None)
    await storage.create_index("alice", "dev", {"type": "stage", "volatile": True})
    return storage


@pytest_twisted.ensureDeferred
async def test_release_with_files_is_one_serial(storage: Any) -> None:
    await _with_index(storage)
    serial = await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL, SDIST),
                                         {WHEEL: _entry(), SDIST: _entry()}, -1)
    assert serial == storage.serial == 3
    versions = await storage.get_versions("alice", "dev", "pkg")
    assert [(v.version, v.data.to_json(), v.serial) for v in versions] == [("1.0", _data(WHEEL, SDIST), 3)]
    record = await storage.get_file(WHEEL)
    assert (record.project, record.entry, record.deleted) == ("pkg", _entry(), False)
    assert await storage.get_file("alice/dev/+f/000/0000000000000/none.whl") is None
    assert await storage.list_projects("alice", "dev") == ["pkg"]
    assert await storage.list_projects("root", "pypi") == []


@pytest_twisted.ensureDeferred
async def test_release_write_checks_what_the_caller_read(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    await _raises(StaleRecord, storage.write_release("alice", "dev", "pkg", "1.0", _data(), {}, -1))
    await _raises(RecordMissing, storage.write_release("alice", "nope", "pkg", "1.0", _data(), {}, -1))
    serial = storage.serial
    read = (await storage.get_versions("alice", "dev", "pkg"))[0]
    assert await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL, SDIST),
                                       {SDIST: _entry()}, read.serial) == serial + 1
    assert storage.serial == serial + 1


@pytest_twisted.ensureDeferred
async def test_update_release_decides_on_the_version_as_stored(storage: Any) -> None:
    """update_release reads the version in its own transaction and writes what ``decide``
    makes of it, audit rows included; what ``decide`` raises comes back, nothing written."""
    await _with_index(storage)
    seen: list[Any] = []

    def decide(current: Any) -> ReleaseWrite:
        seen.append(None if current is None else (current.data.to_json(), current.serial))
        paths = [link["entrypath"] for link in (current.data.to_json()["+elinks"] if current else [])]
        new = SDIST if paths else WHEEL
        row = AuditEntry("upload", "alice", "127.0.0.1", "alice/dev", {"path": new}, 1.0, "t:1")
        return ReleaseWrite(_data(*paths, new), {new: _entry()}, (), (row,))

    first = await storage.update_release("alice", "dev", "pkg", "1.0", decide)
    second = await storage.update_release("alice", "dev", "pkg", "1.0", decide)
    assert seen == [None, (_data(WHEEL), first)] and second == first + 1 == storage.serial
    version = (await storage.get_versions("alice", "dev", "pkg"))[0]
    assert version.data.to_json() == _data(WHEEL, SDIST)
    assert not (await storage.get_file(SDIST)).deleted
    rows = await storage.query_audit(AuditQuery(kinds=frozenset({"upload"})))
    assert [row.details["path"] for row in rows] == [SDIST, WHEEL]

    def refuse(current: Any) -> ReleaseWrite:
        raise KeyError("refused")

    await _raises(KeyError, storage.update_release("alice", "dev", "pkg", "1.0", refuse))
    await _raises(RecordMissing, storage.update_release("alice", "nope", "pkg", "1.0", decide))
    assert storage.serial == second
    assert (await storage.changes_since(second - 1))[-1].serial == second
    assert len(await storage.query_audit(AuditQuery())) == 2


@pytest_twisted.ensureDeferred
async def test_update_release_runs_before_commit_only_where_writes_may_block(storage: Any) -> None:
    """sqlite runs ``before_commit`` on its writer's thread once the write is decided and
    the work it hands back (fsyncs) before the COMMIT; what either raises comes back and
    nothing is written (a refusal by ``decide`` comes first: then neither runs).
    PostgreSQL, whose writes run on the reactor, refuses one (ValueError, nothing written)."""
    await _with_index(storage)
    serial = storage.serial
    calls: list[Any] = []

    def decide(current: Any) -> ReleaseWrite:
        calls.append("decide")
        if current is not None:
            raise KeyError("refused")
        return ReleaseWrite(_data(WHEEL), {WHEEL: _entry()})

    def durable() -> None:
        calls.append("durable")

    def placed() -> Any:
        calls.append(threading.current_thread() is threading.main_thread())
        return durable

    def not_placed() -> Any:
        raise OSError("no space left")

    def not_durable() -> Any:
        def fsync() -> None:
            raise OSError("I/O error")
        return fsync

    assert storage.blocking_writes == (storage.dialect == "sqlite")
    if not storage.blocking_writes:
        await _raises(ValueError, storage.update_release("alice", "dev", "pkg", "1.0", decide,
                                                         before_commit=placed))
        assert calls == [] and storage.serial == serial
        return
    await _raises(OSError, storage.update_release("alice", "dev", "pkg", "1.0", decide,
                                                  before_commit=not_placed))
    await _raises(StorageUnavailable, storage.update_release("alice", "dev", "pkg", "1.0", decide,
                                                             before_commit=not_durable))
    assert calls == ["decide", "decide"] and storage.serial == serial
    assert await storage.get_file(WHEEL) is None
    calls.clear()
    assert await storage.update_release("alice", "dev", "pkg", "1.0", decide,
                                        before_commit=placed) == serial + 1
    assert calls == ["decide", False, "durable"]  # (not on the reactor's thread)
    calls.clear()
    await _raises(KeyError, storage.update_release("alice", "dev", "pkg", "1.0", decide,
                                                   before_commit=placed))
    assert calls == ["decide"] and storage.serial == serial + 1


@pytest_twisted.ensureDeferred
async def test_writes_committed_together_make_their_files_durable_before_the_commit(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """sqlite (the one storage with ``before_commit``): uploads queued behind a commit go
    in one transaction; each puts its bodies in place after its own plan, and all their
    fsyncs run after the last plan, before the COMMIT; one refused among them stores
    nothing and fails alone."""
    adapter = SqliteAdapter(request, tmp_path)
    storage = await _with_index(adapter.open())
    calls: list[str] = []

    def writing(version: str) -> Any:
        def decide(current: Any) -> ReleaseWrite:
            calls.append(f"decide {version}")
            if version == "2.0":
                raise KeyError("refused")
            return ReleaseWrite(_data(), {})

        def placed() -> Any:
            calls.append(f"placed {version}")
            return lambda: calls.append(f"durable {version}")
        return storage.update_release("alice", "dev", "pkg", version, decide, before_commit=placed)

    blocker = storage.write_release("alice", "dev", "other", "1.0", _data(), {}, -1)
    queued = [writing(v) for v in ("1.0", "2.0", "3.0")]
    await blocker
    await queued[0]
    await _raises(KeyError, queued[1])
    await queued[2]
    adapter.close_all()
    assert calls == ["decide 1.0", "placed 1.0", "decide 2.0", "decide 3.0", "placed 3.0",
                     "durable 1.0", "durable 3.0"]


@pytest_twisted.ensureDeferred
async def test_deleting_a_version_marks_its_files_deleted(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    read = (await storage.get_versions("alice", "dev", "pkg"))[0]
    await storage.write_release("alice", "dev", "pkg", "1.0", None, {WHEEL: {}}, read.serial)
    assert await storage.get_versions("alice", "dev", "pkg") == []
    assert (await storage.get_file(WHEEL)).deleted
    assert await storage.list_projects("alice", "dev") == []


@pytest_twisted.ensureDeferred
async def test_delete_project_removes_versions_and_marks_files(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    await storage.write_release("alice", "dev", "pkg", "2.0", _data(SDIST), {SDIST: _entry()}, -1)
    await _raises(StaleRecord, storage.delete_project("alice", "dev", "pkg", {"1.0": 3}))
    expect = {v.version: v.serial for v in await storage.get_versions("alice", "dev", "pkg")}
    await storage.delete_project("alice", "dev", "pkg", expect)
    assert await storage.get_versions("alice", "dev", "pkg") == []
    assert (await storage.get_file(WHEEL)).deleted and (await storage.get_file(SDIST)).deleted


@pytest_twisted.ensureDeferred
async def test_deleting_an_index_or_user_takes_its_releases(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    index = await storage.get_index("alice", "dev")
    await storage.delete_index("alice", "dev", index.serial)
    assert await storage.get_versions("alice", "dev", "pkg") == []
    assert (await storage.get_file(WHEEL)).deleted
    await storage.create_index("alice", "dev", {"type": "stage"})
    assert await storage.list_projects("alice", "dev") == []
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(SDIST), {SDIST: _entry()}, -1)
    user = await storage.get_user("alice")
    indexes = {i.index: i.serial for i in await storage.list_indexes("alice")}
    await storage.delete_user("alice", user.serial, indexes)
    assert (await storage.get_file(SDIST)).deleted
    assert await storage.get_versions("alice", "dev", "pkg") == []


@pytest_twisted.ensureDeferred
async def test_page_caches_learn_which_project_changed(storage: Any) -> None:
    await _with_index(storage)
    before = storage.serial
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    assert storage.changed_since("pkg", before)
    assert not storage.changed_since("other", before)
    after = storage.serial
    assert not storage.changed_since("pkg", after)
    await storage.update_index("alice", "dev", {"type": "stage", "title": "t"},
                               (await storage.get_index("alice", "dev")).serial)
    assert storage.changed_since("other", after)  # bases may have changed: every page


@pytest_twisted.ensureDeferred
async def test_project_lists_learn_which_index_changed(storage: Any) -> None:
    await _with_index(storage)
    await storage.create_index("alice", "other", {"type": "stage"})
    before = storage.listing_serial(["alice/dev"])
    assert before == storage.serial  # (the last config change)
    await storage.write_release("alice", "other", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    assert storage.listing_serial(["alice/dev"]) == before  # not one of its stages
    assert storage.listing_serial(["alice/dev", "alice/other"]) == storage.serial > before
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(SDIST), {SDIST: _entry()}, -1)
    assert storage.listing_serial(["alice/dev"]) == storage.serial
    changed = storage.serial
    await storage.update_index("alice", "other", {"type": "stage", "title": "t"},
                               (await storage.get_index("alice", "other")).serial)
    assert storage.listing_serial([]) == storage.serial > changed  # any config: every list


@pytest_twisted.ensureDeferred
async def test_releases_survive_a_restart(adapter: Any) -> None:
    first = await _with_index(adapter.open())
    await first.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    await first.close()
    second = adapter.open()
    assert [v.data.to_json() for v in await second.get_versions("alice", "dev", "pkg")] == [_data(WHEEL)]
    assert (await second.get_file(WHEEL)).entry == _entry()


@pytest_twisted.ensureDeferred
async def test_one_version_can_be_read_alone(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    await storage.write_release("alice", "dev", "pkg", "2.0", _data(SDIST), {SDIST: _entry()}, -1)
    record = await storage.get_version("alice", "dev", "pkg", "2.0")
    assert (record.version, record.data.to_json(), record.serial) == ("2.0", _data(SDIST), 4)
    assert await storage.get_version("alice", "dev", "pkg", "3.0") is None


@pytest_twisted.ensureDeferred
async def test_write_releases_stores_many_versions_in_one_serial(storage: Any) -> None:
    from devpi_twisted.storage.interface import RecordExists

    await _with_index(storage)
    other = "alice/dev/+f/333/3333333333333/pkg-2.0.tar.gz"
    serial = await storage.write_releases("alice", "dev", [
        ("pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}),
        ("pkg", "2.0", _data(other), {other: _entry(version="2.0")}),
        ("other", "0.1", {"name": "other", "version": "0.1"}, {})])
    assert serial == storage.serial == 3
    assert sorted(v.version for v in await storage.get_versions("alice", "dev", "pkg")) == ["1.0", "2.0"]
    assert (await storage.get_file(other)).entry == _entry(version="2.0")
    assert await storage.list_projects("alice", "dev") == ["other", "pkg"]
    assert [r.key for r in (await storage.changes_since(2))[0].records] == [
        "alice/dev/pkg/1.0", WHEEL, "alice/dev/pkg/2.0", other, "alice/dev/other/0.1"]
    await _raises(RecordExists, storage.write_releases(
        "alice", "dev", [("pkg", "3.0", {}, {}), ("pkg", "1.0", {}, {})]))
    await _raises(RecordMissing, storage.write_releases("alice", "nope", [("pkg", "3.0", {}, {})]))
    assert storage.serial == 3  # refused writes leave no serial behind
    assert await storage.get_version("alice", "dev", "pkg", "3.0") is None  # all or nothing


@pytest_twisted.ensureDeferred
async def test_a_version_written_lately_is_read_from_memory_and_a_stale_one_refused(adapter: Any) -> None:
    """The second file of a version (twine's sdist after the wheel) reads the version its
    first upload wrote from the state cache; when another process changed it meanwhile,
    the write refuses the stale serial and the next read finds the current version."""
    first = await _with_index(adapter.open())
    serial = await first.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL), {WHEEL: _entry()}, -1)
    assert first._cache.cached_version("alice", "dev", "pkg", "1.0")[0]  # no trip to the database
    assert (await first.get_version("alice", "dev", "pkg", "1.0")).serial == serial
    other = adapter.open()  # another process
    read = await other.get_version("alice", "dev", "pkg", "1.0")
    changed = await other.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL, SDIST),
                                        {SDIST: _entry()}, read.serial)
    seen = await first.get_version("alice", "dev", "pkg", "1.0")
    if seen.serial != changed:  # not heard of yet: refused, and caught up
        await _raises(StaleRecord, first.write_release("alice", "dev", "pkg", "1.0", _data(WHEEL),
                                                       {}, seen.serial))
    current = await first.get_version("alice", "dev", "pkg", "1.0")
    assert current.serial == changed and len(current.data.links) == 2
