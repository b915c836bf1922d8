"""PostgreSQL end to end: start-up errors, several processes on one database,
a database restart while serving, and a long concurrent run with a worker killed."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import ROLE, ROLE_PASSWORD, PgCluster, free_port
from tests.support import FAST_ARGON2, Daemon, bin_path, call, init_serverdir, login


@pytest.fixture
def pg_serverdir(tmp_path: Path, pg_cluster: PgCluster) -> tuple[Path, list[str]]:
    serverdir = tmp_path / "state"
    storage = ["--storage", pg_cluster.storage_option(pg_cluster.create_database())]
    init_serverdir(serverdir, *storage)
    return serverdir, storage


def _start_error(serverdir: Path, storage: str) -> str:
    done = subprocess.run(
        [bin_path("twistd"), "-n", "--pidfile=", "devpi", *FAST_ARGON2, "--serverdir", str(serverdir),
         "--port", "0", "--storage", storage], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_postgres_start_up_errors_are_one_line(pg_cluster: PgCluster,
                                              pg_serverdir: tuple[Path, list[str]]) -> None:
    serverdir, _ = pg_serverdir
    tcp = f"pg8000:host=127.0.0.1,port={pg_cluster.port},user={ROLE},database=postgres"
    assert "password authentication failed" in _start_error(serverdir, tcp + ",password=wrong")
    assert "Connection refused" in _start_error(
        serverdir, f"pg8000:host=127.0.0.1,port={free_port()},user={ROLE},password=x")
    assert "ssl_ca_certs file /nonexistent/ca.pem does not exist" in _start_error(
        serverdir, tcp + f",password={ROLE_PASSWORD},ssl_ca_certs=/nonexistent/ca.pem")
    assert "server does not support SSL" in _start_error(
        serverdir, tcp + f",password={ROLE_PASSWORD},ssl_check_hostname=false")
    foreign = pg_cluster.create_database()
    pg_cluster.psql(foreign, "CREATE TABLE invoices (id integer)")
    assert "holds tables that are not devpi-twisted's (invoices)" in _start_error(
        serverdir, "pg8000:" + ",".join(f"{k}={v}" for k, v in pg_cluster.settings(foreign).items()))


def test_password_login_over_tcp_works(pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = pg_cluster.create_database()
    storage = (f"postgresql:host=127.0.0.1,port={pg_cluster.port},user={ROLE},"
               f"password={ROLE_PASSWORD},database={database}")
    init_serverdir(tmp_path / "state", "--storage", storage)
    daemon = Daemon(tmp_path / "state", "--storage", storage).start()
    try:
        login(daemon.url, "root", "")
    finally:
        daemon.stop()


@pytest.fixture
def main_and_worker(pg_serverdir: tuple[Path, list[str]]) -> Iterator[tuple[Daemon, Daemon]]:
    """The main process and a --requests-only worker on a port of its own (as behind nginx)."""
    serverdir, storage = pg_serverdir
    main = Daemon(serverdir, *storage).start()
    worker = Daemon(serverdir, *storage, "--requests-only")
    worker.log = serverdir.parent / "worker.log"
    try:
        worker.start()
        yield main, worker
    finally:
        worker.stop()
        main.stop()


def test_a_change_through_one_process_is_seen_by_the_other_on_its_next_request(
        main_and_worker: tuple[Daemon, Daemon]) -> None:
    main, worker = main_and_worker
    assert call(main.url + "/+status")[1]["result"]["process"]["pid"] != \
        call(worker.url + "/+status")[1]["result"]["process"]["pid"]
    root = login(main.url, "root", "")
    assert call(main.url + "/root/dev", "PUT", {}, root)[0] == 200
    for n in range(40):
        writer, reader = (main, worker) if n % 2 else (worker, main)
        status, reply, headers = call(writer.url + "/root/dev", "PATCH", [f"title=t{n}"], root)
        assert status == 200, reply
        seen = call(reader.url + "/root/dev")
        assert seen[1]["result"]["title"] == f"t{n}"
        assert int(seen[2]["X-Devpi-Serial"]) >= int(headers["X-Devpi-Serial"])
    assert call(worker.url + f"/u{n}", "PUT", {"password": "x"})[0] == 201
    assert call(main.url + f"/u{n}")[0] == 200


def test_workers_share_one_port(pg_serverdir: tuple[Path, list[str]]) -> None:
    serverdir, storage = pg_serverdir
    daemon = Daemon(serverdir, *storage, "--workers", "2").start()
    try:
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 3 and time.monotonic() < deadline:
            pids.add(call(daemon.url + "/+status")[1]["result"]["process"]["pid"])
        assert len(pids) == 3, pids
    finally:
        daemon.stop()
    time.sleep(0.5)
    assert not [pid for pid in pids if _alive(pid)], "workers outlived the main process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_database_restart_while_serving(pg_cluster: PgCluster,
                                        pg_serverdir: tuple[Path, list[str]]) -> None:
    serverdir, storage = pg_serverdir
    daemon = Daemon(serverdir, *storage).start()
    try:
        root = login(daemon.url, "root", "")
        assert call(daemon.url + "/root/kept", "PUT", {}, root)[0] == 200
        pg_cluster.halt()
        try:
            status, reply, headers = call(daemon.url + "/root/lost", "PUT", {}, root)
            assert status == 503, reply
            assert "database is unavailable" in reply["message"]
            assert headers["Retry-After"] == "5"
            assert call(daemon.url + "/root/kept?no_projects=")[0] == 200  # configs: from memory
        finally:
            pg_cluster.resume()
        deadline = time.monotonic() + 20
        while call(daemon.url + "/root/after", "PUT", {}, root)[0] != 200:
            assert time.monotonic() < deadline, "the daemon did not reconnect"
            time.sleep(0.2)
        names = call(daemon.url + "/root")[1]["result"]["indexes"]
        assert sorted(names) == ["after", "kept", "pypi"]
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log.read_text()
