"""What only the sqlite adapter does: its file, its migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from devpi_twisted.storage import migrations
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import StorageError
from devpi_twisted.storage.sqlite import SqliteStorage


def test_new_database_records_its_schema_version_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqliteStorage.open(path, InlineExecutor()).close()
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(migrations.latest("sqlite"),)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    assert path.stat().st_mode & 0o077 == 0


def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    for _ in range(3):
        SqliteStorage.open(path, InlineExecutor()).close()
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    conn.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqliteStorage.open(path, InlineExecutor()).close()
    conn = sqlite3.connect(str(path))
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer than this devpi-twisted knows"):
        SqliteStorage.open(path, InlineExecutor())


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [v for v, _ in migrations.scripts("sqlite")]
    assert versions == list(range(1, len(versions) + 1))
