"""The storage contract suite runs once per adapter; each adapter knows how to open
a fresh database, reopen it (a restart), and open a second handle on it (another process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted.storage.executor import ThreadExecutor
from devpi_twisted.storage.postgres import PostgresStorage
from devpi_twisted.storage.sqlite import SqliteStorage
from tests.pg import PgCluster


class SqliteAdapter:
    name = "sqlite"

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.path = tmp_path / "db.sqlite3"
        self.other_path = tmp_path / "other.sqlite3"
        self.opened: list[Any] = []

    def open(self) -> SqliteStorage:
        from twisted.internet import reactor

        storage = SqliteStorage.open(self.path, ThreadExecutor(reactor, "test-sqlite"),
                                     reader=ThreadExecutor(reactor, "test-sqlite-read"))
        self.opened.append(storage)
        return storage

    def open_other(self) -> SqliteStorage:
        """A second, separate database (a replica's)."""
        from twisted.internet import reactor

        storage = SqliteStorage.open(self.other_path, ThreadExecutor(reactor, "test-sqlite-2"),
                                     reader=ThreadExecutor(reactor, "test-sqlite-2-read"))
        self.opened.append(storage)
        return storage

    def reopen_other(self) -> SqliteStorage:
        return self.open_other()

    def close_all(self) -> None:
        for storage in self.opened:
            storage.close()


class PostgresAdapter(SqliteAdapter):
    name = "postgres"

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        super().__init__(request, tmp_path)
        self.cluster: PgCluster = request.getfixturevalue("pg_cluster")
        self.database = self.cluster.create_database()
        self.other_database: str | None = None

    def open(self) -> PostgresStorage:  # type: ignore[override]
        from twisted.internet import reactor

        storage = PostgresStorage.open(self.cluster.settings(self.database), reactor)
        self.opened.append(storage)
        return storage

    def open_other(self) -> PostgresStorage:  # type: ignore[override]
        from twisted.internet import reactor

        if self.other_database is None:
            self.other_database = self.cluster.create_database()
        storage = PostgresStorage.open(self.cluster.settings(self.other_database), reactor)
        self.opened.append(storage)
        return storage

    def reopen_other(self) -> PostgresStorage:  # type: ignore[override]
        return self.open_other()


ADAPTERS = {"sqlite": SqliteAdapter, "postgres": PostgresAdapter}


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made = ADAPTERS[request.param](request, tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def storage(adapter: Any) -> Any:
    return adapter.open()
