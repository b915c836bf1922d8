"""The storage contract suite runs once per adapter; each adapter knows how to open
a fresh database, reopen it (a restart), and open a second handle on it (another process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devpi_twisted.storage.executor import ThreadExecutor
from devpi_twisted.storage.sqlite import SqliteStorage


class SqliteAdapter:
    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "db.sqlite3"
        self.opened: list[SqliteStorage] = []

    def open(self) -> SqliteStorage:
        from twisted.internet import reactor

        storage = SqliteStorage.open(self.path, ThreadExecutor(reactor, "test-sqlite"))
        self.opened.append(storage)
        return storage

    def close_all(self) -> None:
        for storage in self.opened:
            try:
                storage.close()
            except Exception:  # already closed by the test
                pass


ADAPTERS = {"sqlite": SqliteAdapter}


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteAdapter]:
    made = ADAPTERS[request.param](tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def storage(adapter: SqliteAdapter) -> SqliteStorage:
    return adapter.open()
