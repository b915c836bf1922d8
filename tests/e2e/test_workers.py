"""Several processes on one database: a main process with --workers, on sqlite and
on PostgreSQL, under concurrent writes, with a worker killed midway."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.support import Daemon, call, init_serverdir, login


def _new_state(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    """An initialised server directory on sqlite or on a new PostgreSQL database."""
    serverdir = tmp_path / "state"
    storage: list[str] = []
    if kind == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        storage = ["--storage", cluster.storage_option(cluster.create_database())]
    init_serverdir(serverdir, *storage)
    return serverdir, storage


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize(("kind", "seconds"), [("sqlite", 10), ("postgres", 30)])
def test_eight_clients_through_workers_lose_nothing(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str, seconds: int) -> None:
    """8 clients edit users and indexes through a main process and 2 workers; one worker
    is killed with SIGKILL midway. Every acknowledged change is there afterwards."""
    serverdir, storage = _new_state(request, tmp_path, kind)
    daemon = Daemon(serverdir, *storage, "--workers", "2").start()
    try:
        root = login(daemon.url, "root", "")
        for n in range(8):
            assert call(daemon.url + f"/c{n}", "PUT", {"password": "pw"})[0] == 201
        acked: dict[int, dict[str, int]] = {n: {} for n in range(8)}
        errors: list[str] = []
        stop = threading.Event()

        def client(n: int) -> None:
            count = 0
            while not stop.is_set():
                count += 1
                try:
                    if count % 3 == 0:
                        status, _, _ = call(daemon.url + f"/c{n}", "PATCH", {"title": str(count)}, root)
                        key = "title"
                    else:
                        status, _, _ = call(daemon.url + f"/c{n}/ix{count}", "PUT", {}, root)
                        key = f"ix{count}"
                except OSError:
                    continue  # a killed worker drops its connections; that write was not acknowledged
                if status in (200, 201):
                    acked[n][key] = count
                elif status != 503:
                    errors.append(f"client {n}: {status}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(seconds / 3)
        workers = _children(daemon.proc.pid)
        assert workers, "no worker processes found"
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(seconds * 2 / 3)
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors[:5]
        assert sum(len(a) for a in acked.values()) > 10 * seconds
        for n, done in acked.items():
            user = call(daemon.url + f"/c{n}")[1]["result"]
            for key, count in done.items():
                if key == "title":
                    assert int(user["title"]) >= count
                else:
                    assert key in user["indexes"], (n, key)
        if kind == "postgres":
            cluster = request.getfixturevalue("pg_cluster")
            database = storage[1].split("database=")[1].split(",")[0]
            serials = [int(s) for s in cluster.psql(
                database, "SELECT serial FROM changelog ORDER BY serial").split()]
        else:
            conn = sqlite3.connect(str(serverdir / "db.sqlite3"))
            serials = [r[0] for r in conn.execute("SELECT serial FROM changelog ORDER BY serial")]
            conn.close()
        assert serials == list(range(len(serials)))
        assert call(daemon.url + "/+status")[1]["result"]["serial"] == serials[-1]
        assert len(_children(daemon.proc.pid)) == 2, "the killed worker was not replaced"
    finally:
        daemon.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_thirty_concurrent_index_creations_for_one_user_all_stay(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """devpi-server with devpi-postgresql answers all 30 with 200 and keeps one."""
    serverdir, storage = _new_state(request, tmp_path, kind)
    daemon = Daemon(serverdir, *storage, "--workers", "1").start()
    try:
        root = login(daemon.url, "root", "")
        results: list[int] = []

        def create(n: int) -> None:
            results.append(call(daemon.url + f"/root/ix{n}", "PUT", {}, root)[0])

        threads = [threading.Thread(target=create, args=(n,)) for n in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [200] * 30
        indexes = call(daemon.url + "/root")[1]["result"]["indexes"]
        assert sorted(i for i in indexes if i.startswith("ix")) == sorted(f"ix{n}" for n in range(30))
    finally:
        daemon.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_clients_hanging_up_mid_write_leave_no_errors(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """A write whose client is gone completes or fails as one transaction, quietly."""
    import socket
    from urllib.parse import urlsplit

    serverdir, storage = _new_state(request, tmp_path, kind)
    daemon = Daemon(serverdir, *storage).start()
    try:
        root = login(daemon.url, "root", "")
        import base64

        auth = base64.b64encode(f"{root[0]}:{root[1]}".encode()).decode()
        address = urlsplit(daemon.url)
        for n in range(60):
            body = b"{}"
            with socket.create_connection((address.hostname, address.port)) as s:
                s.sendall(f"PUT /root/gone{n} HTTP/1.1\r\nHost: x\r\nX-Devpi-Auth: {auth}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(1)
        status = call(daemon.url + "/+status")[1]["result"]
        indexes = call(daemon.url + "/root")[1]["result"]["indexes"]
        made = [i for i in indexes if i.startswith("gone")]
        assert status["serial"] == len(made)  # serial 0 is init: one serial per index made
        assert call(daemon.url + "/root/after", "PUT", {}, root)[0] == 200
    finally:
        daemon.stop()
    log = daemon.log.read_text()
    assert "Unhandled" not in log and "Traceback" not in log, log[-3000:]
