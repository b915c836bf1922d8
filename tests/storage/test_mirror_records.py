"""The storage contract for mirror pages (cached upstream links) and their files."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from devpi_twisted.storage.interface import RecordMissing
from tests.storage.test_contract import _bootstrapped, _raises

PAGE = {"links": [{"filename": "pkg-1.0.tar.gz", "url": "https://up/pkg-1.0.tar.gz"}],
        "etag": '"abc"', "serial": 7}
FILE = "root/pypi/+f/22d/a8a99162b93fa/pkg-1.0.tar.gz"


async def _with_mirror(storage: Any) -> Any:
    return await _bootstrapped(storage)  # root and root/pypi


@pytest_twisted.ensureDeferred
async def test_a_page_is_stored_replaced_and_dropped(storage: Any) -> None:
    await _with_mirror(storage)
    assert await storage.get_mirror_project("root", "pypi", "pkg") is None
    serial = await storage.write_mirror_project("root", "pypi", "pkg", PAGE, {})
    record = await storage.get_mirror_project("root", "pypi", "pkg")
    assert (record.value, record.serial) == (PAGE, serial)
    assert await storage.list_mirror_projects("root", "pypi") == ["pkg"]
    assert storage.changed_since("pkg", serial - 1) and not storage.changed_since("pkg", serial)
    assert storage.listing_serial(["root/pypi"]) == serial  # a project list from stored pages
    newer = {**PAGE, "serial": 8}
    await storage.write_mirror_project("root", "pypi", "pkg", newer, {})
    assert (await storage.get_mirror_project("root", "pypi", "pkg")).value == newer
    await storage.write_mirror_project("root", "pypi", "pkg", None, {})
    assert await storage.get_mirror_project("root", "pypi", "pkg") is None
    assert await storage.list_mirror_projects("root", "pypi") == []
    await _raises(RecordMissing, storage.write_mirror_project("root", "nope", "pkg", PAGE, {}))


@pytest_twisted.ensureDeferred
async def test_downloaded_files_are_recorded_without_touching_the_page(storage: Any) -> None:
    await _with_mirror(storage)
    await storage.write_mirror_project("root", "pypi", "pkg", PAGE, {})
    entry = {"hashes": {"sha256": "22da"}, "url": "https://up/pkg-1.0.tar.gz", "version": "1.0"}
    serial = await storage.write_mirror_files("root", "pypi", "pkg", {FILE: entry})
    record = await storage.get_file(FILE)
    assert (record.project, record.entry, record.serial) == ("pkg", entry, serial)
    assert (await storage.get_mirror_project("root", "pypi", "pkg")).value == PAGE
    changes = await storage.changes_since(serial - 1)
    assert [(r.type, r.key) for r in changes[0].records] == [("file", FILE)]


@pytest_twisted.ensureDeferred
async def test_deleting_a_mirror_index_drops_its_pages_and_files(storage: Any) -> None:
    await _with_mirror(storage)
    await storage.write_mirror_project("root", "pypi", "pkg", PAGE, {FILE: {"version": "1.0"}})
    index = await storage.get_index("root", "pypi")
    await storage.delete_index("root", "pypi", index.serial)
    assert (await storage.get_file(FILE)).deleted
    await storage.create_index("root", "pypi", index.config.to_json())
    assert await storage.get_mirror_project("root", "pypi", "pkg") is None


@pytest_twisted.ensureDeferred
async def test_pages_survive_a_restart(adapter: Any) -> None:
    storage = await _with_mirror(adapter.open())
    await storage.write_mirror_project("root", "pypi", "pkg", PAGE, {})
    await storage.close()
    again = adapter.open()
    await again.catch_up()
    assert (await again.get_mirror_project("root", "pypi", "pkg")).value == PAGE


@pytest_twisted.ensureDeferred
async def test_known_pages_and_absences_are_answered_from_memory_until_they_change(
        adapter: Any) -> None:
    server = adapter.open()
    await _with_mirror(server)
    other = adapter.open()  # another worker process
    assert await server.get_mirror_project("root", "pypi", "pkg") is None

    def no_queries(plan: Any) -> Any:
        raise AssertionError("read from the database")

    real_query, server._query = server._query, no_queries
    assert await server.get_mirror_project("root", "pypi", "pkg") is None  # remembered
    server._query = real_query
    serial = await other.write_mirror_project("root", "pypi", "pkg", PAGE,
                                              {FILE: {"version": "1.0"}})
    await server.poll()  # the other process's commit arrives
    server._query = no_queries
    record = await server.get_mirror_project("root", "pypi", "pkg")  # remembered as written
    assert (record.value, record.serial) == (PAGE, serial)
    assert (await server.get_file(FILE)).entry == {"version": "1.0"}
    server._query = real_query
    await other.write_mirror_project("root", "pypi", "pkg", None, {})
    await server.poll()
    assert await server.get_mirror_project("root", "pypi", "pkg") is None


@pytest_twisted.ensureDeferred
async def test_a_page_never_stored_is_not_looked_for_in_the_database(adapter: Any) -> None:
    storage = await _with_mirror(adapter.open())
    await storage.write_mirror_project("root", "pypi", "pkg", PAGE, {})
    await storage.close()
    again = adapter.open()  # a restart: which pages are stored is known from the start
    asked: list[Any] = []
    real_query = again._query

    def counted(plan: Any) -> Any:
        asked.append(plan)
        return real_query(plan)

    again._query = counted
    assert await again.get_mirror_project("root", "pypi", "other") is None
    assert asked == []
    assert (await again.get_mirror_project("root", "pypi", "pkg")).value == PAGE
    assert len(asked) == 1
