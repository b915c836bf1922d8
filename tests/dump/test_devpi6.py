"""Compatibility with the real devpi-server 6.x (installed from PyPI into .cache/ by
tests/dump/devpi6.py; a failed installation fails these tests):

(a) a dump made by devpi-export imports into us, on sqlite and on PostgreSQL, with every
    JSON view and file hash equal to what devpi served, and the old passwords log in;
(b) our export, including a user and an upload made on our server (our argon2 hash),
    imports with devpi-import into a fresh devpi-server 6.x that then serves the same
    views and files and accepts the passwords.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dump.devpi6 import Devpi6, call, ensure_installed, login
from tests.dump.devpi6 import request as http_request
from tests.dump.state import PASSWORDS, add_carol, assert_same, build_state, run_cli, views
from tests.support import Daemon


@pytest.fixture(scope="module")
def devpi6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """State built on a real devpi-server 6.x, its views, and its devpi-export dump."""
    bindir = ensure_installed()
    base = tmp_path_factory.mktemp("devpi6")
    server = Devpi6(bindir, base / "devpi6-original")
    server.run("devpi-init")
    server.start()
    try:
        build_state(server.url, base / "work")
        expected = views(server.url)
    finally:
        server.stop()
    server.run("devpi-export", str(base / "dump-from-devpi6"))
    yield {"bindir": bindir, "base": base, "views": expected, "dump": base / "dump-from-devpi6"}


def check_logins(url: str, passwords: dict[str, str]) -> None:
    for user, password in passwords.items():
        login(url, user, password)
        status, _ = call(url + "/+login", "POST", {"user": user, "password": password + "x"})
        assert status == 401


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_devpi6_dump_imports_into_us(devpi6: dict[str, Any], backend: str,
                                       request: pytest.FixtureRequest, tmp_path: Path) -> None:
    storage: list[str] = []
    if backend == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        storage = ["--storage", cluster.storage_option(cluster.create_database())]
    serverdir = tmp_path / "ours"
    done = run_cli("import", "--serverdir", str(serverdir), *storage, str(devpi6["dump"]))
    assert done.returncode == 0, done.stderr
    assert "importing a dump of 6." in done.stderr
    daemon = Daemon(serverdir, *storage).start()
    try:
        assert_same(views(daemon.url), devpi6["views"])
        check_logins(daemon.url, PASSWORDS)
        status, body, _ = http_request(daemon.url + "/alice/dev/hello-world/1.1/+doc/index.html",
                                       accept="text/html")
        assert status == 200 and b"docs of hello-world" in body
    finally:
        daemon.stop()


def test_our_dump_imports_into_devpi6(devpi6: dict[str, Any], tmp_path: Path) -> None:
    serverdir = tmp_path / "ours"
    done = run_cli("import", "--serverdir", str(serverdir), str(devpi6["dump"]))
    assert done.returncode == 0, done.stderr
    daemon = Daemon(serverdir).start()
    try:
        add_carol(daemon.url, tmp_path)
        ours = views(daemon.url)
    finally:
        daemon.stop()
    assert "/carol/dev/carols-pkg/0.1" in ours[0]
    done = run_cli("export", "--serverdir", str(serverdir), str(tmp_path / "dump-from-us"))
    assert done.returncode == 0, done.stderr

    server = Devpi6(devpi6["bindir"], tmp_path / "devpi6-imported")
    server.run("devpi-import", "--no-events", str(tmp_path / "dump-from-us"))
    server.start()
    try:
        assert_same(views(server.url), ours)
        check_logins(server.url, {**PASSWORDS, "carol": "carol pw"})
    finally:
        server.stop()
