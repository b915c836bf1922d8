"""End-to-end fixtures: real daemons on free loopback ports, real clients.

The module-wide ``daemon`` runs once on sqlite (one process) and once on
PostgreSQL with two worker processes beside the main one, sharing its port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Daemon, init_serverdir


def start_daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 *options: str) -> Daemon:
    """An initialised daemon on the storage ``request.param`` names (sqlite, or postgres
    with two workers), started with ``options``; root has the empty password."""
    serverdir = tmp_path_factory.mktemp("server") / "state"
    storage: list[str] = []
    workers: list[str] = []
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        storage = ["--storage", cluster.storage_option(cluster.create_database())]
        workers = ["--workers", "2"]
    init_serverdir(serverdir, *storage)
    return Daemon(serverdir, *storage, *workers, *options).start()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One initialised daemon per test module and storage (root has the empty password)."""
    running = start_daemon(request, tmp_path_factory)
    yield running
    running.stop()


@pytest.fixture
def fresh_serverdir(tmp_path: Path) -> Path:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    return serverdir
