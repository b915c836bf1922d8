"""A fresh replica far behind its primary applies the changelog in batched transactions
(replication/apply.py): killed with SIGKILL in the middle of its catch-up it is left
at the last serial of a committed batch, its changelog without a gap; started again it
resumes from there and ends with the primary's changelog serial for serial. Real
daemons: a sqlite primary, a sqlite and a PostgreSQL replica.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.test_replication import Pair, assert_same_changelog, status, write_secret
from tests.pg import free_port
from tests.support import Daemon, call, init_serverdir, login

SERIALS = 1500  # about 1.5 s of catch-up for the replica: room to kill it inside


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path, str]]:
    """A primary holding SERIALS changes (users' profiles edited again and again)."""
    work = tmp_path_factory.mktemp("batches")
    work.chmod(0o700)
    secret = write_secret(work / "secret", os.urandom(32))
    port = free_port()
    init_serverdir(work / "primary")
    daemon = Daemon(work / "primary", "--role", "primary", "--secretfile", str(secret),
                    "--port", str(port)).start()
    try:
        root = login(daemon.url, "root", "")

        def edits(user: str) -> set[int]:  # one writer per user: no lost compare-and-swap
            assert call(daemon.url + f"/{user}", "PUT", {"password": "pw"}, root)[0] == 201
            auth = login(daemon.url, user, "pw")
            return {call(daemon.url + f"/{user}", "PATCH", {"title": f"title {n}"}, auth)[0]
                    for n in range(SERIALS // 4)}

        with ThreadPoolExecutor(4) as pool:
            assert set().union(*pool.map(edits, ["alice", "bob", "carol", "dave"])) == {200}
        yield daemon, secret, f"http://127.0.0.1:{port}"
    finally:
        daemon.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_replica_killed_during_its_batched_catch_up_resumes_without_a_gap(
        primary: tuple[Daemon, Path, str], backend: str, request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    daemon, secret, primary_url = primary
    target = status(daemon.url)["serial"]
    assert target >= SERIALS
    storage: list[str] = []
    replica_pg = None
    if backend == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        database = cluster.create_database()
        storage = ["--storage", cluster.storage_option(database)]
        replica_pg = cluster.settings(database)
    init_serverdir(tmp_path / "replica", *storage, "--role", "replica", "--primary-url", primary_url)
    replica = Daemon(tmp_path / "replica", *storage, "--role", "replica", "--primary-url",
                     primary_url, "--secretfile", str(secret)).start()
    pair = Pair(daemon, replica, secret, primary_url, tmp_path, [], replica_pg)
    try:
        deadline = time.monotonic() + 60
        while not 0 <= status(replica.url)["serial"] < target:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        replica.kill9()
        rows = pair.replica_changelog()
        reached = len(rows) - 1
        assert [r[0] for r in rows] == list(range(reached + 1))  # a committed prefix, no gap
        assert reached < target, "the kill came after the catch-up: nothing was tested"
        replica.start()
        deadline = time.monotonic() + 60
        while status(replica.url)["serial"] < target:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_same_changelog(pair, target)
        assert call(replica.url + "/alice")[1]["result"]["title"] == \
            call(daemon.url + "/alice")[1]["result"]["title"]
    finally:
        replica.stop()
    log = replica.log.read_text()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]
