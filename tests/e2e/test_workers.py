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

from tests.support import Daemon, call, child_pids, init_serverdir, login


def _new_state(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    """An initialised server directory on sqlite or on a new PostgreSQL database."""
    serverdir = tmp_path / "state"
    storage: list[str] = []
    if kind == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        storage = ["--storage", cluster.storage_option(cluster.create_database())]
    init_serverdir(serverdir, *storage)
    return serverdir, storage


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
        workers = _workers(daemon.proc.pid)
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
        assert len(_workers(daemon.proc.pid)) == 2, "the killed worker was not replaced"
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


def _workers(pid: int) -> list[int]:
    """The worker processes of the main process ``pid`` (not its password-check child)."""
    return [child for child in child_pids(pid)
            if b"devpi_twisted.childcalls" not in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_worker_gets_the_options_of_the_config_file(tmp_path: Path) -> None:
    """Options from the -c file (and flags that once stayed behind) reach a real worker:
    its command line and environment parse into the main process's Config."""
    from devpi_twisted.options import OPTIONS
    from devpi_twisted.service import Options

    serverdir = tmp_path / "state"
    init_serverdir(serverdir)
    file = tmp_path / "devpi.yml"
    file.write_text("devpi-server:\n  no-mirror-prefetch: true\n  blob-cache-size: 1000\n"
                    "  mirror-cache-expiry: 60\n  offline-mode: true\n"
                    "  restrict-modify: [root]\n  max-json-body-size: 50000\n")
    daemon = Daemon(serverdir, "-c", str(file), "--workers", "1").start()
    try:
        deadline = time.monotonic() + 30
        while not (workers := _workers(daemon.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers, "no worker process found"
        argv = Path(f"/proc/{workers[0]}/cmdline").read_bytes().decode().split("\0")[:-1]
        environ = dict(line.split("=", 1) for line in
                       Path(f"/proc/{workers[0]}/environ").read_bytes().decode().split("\0")
                       if "=" in line)
        assert call(daemon.url + "/+api")[0] == 200
    finally:
        daemon.stop()

    def config_of(args: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
        options = Options()
        options.environ = env
        options.parseOptions(args)
        return options.config()

    main = config_of(daemon.command()[daemon.command().index("devpi") + 1:], dict(os.environ))
    child = config_of(argv[argv.index("devpi") + 1:], environ)
    assert not main.mirror_prefetch and main.blob_cache_size == 1000 and main.offline_mode
    for option in OPTIONS:
        if option.to_workers and option.field and option.name != "secretfile":
            assert getattr(child, option.field) == getattr(main, option.field), option.name
    assert child.secretfile == serverdir / ".secret" and child.requests_only
