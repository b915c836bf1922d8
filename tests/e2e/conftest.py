"""End-to-end fixtures: real daemons on free loopback ports, real clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Daemon, init_serverdir


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One initialised daemon per test module (root has the empty password)."""
    serverdir = tmp_path_factory.mktemp("server") / "state"
    init_serverdir(serverdir)
    running = Daemon(serverdir).start()
    yield running
    running.stop()


@pytest.fixture
def fresh_serverdir(tmp_path: Path) -> Path:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    return serverdir
