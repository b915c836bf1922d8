"""A throwaway PostgreSQL cluster for the test run: initdb + pg_ctl in a temp dir.

Run as the ``postgres`` user when the tests run as root (initdb refuses root).
It listens on a Unix socket in its own directory (trust) and on 127.0.0.1 on a
free port (password auth), fsync off. Missing binaries fail the run: the tests
never skip PostgreSQL.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

ROLE, ROLE_PASSWORD = "devpi", "devpi-test-password"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                       "scripts/run-tests installs them (apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.base = Path(tempfile.mkdtemp(prefix="devpi-twisted-pg-"))
        self.datadir = self.base / "data"
        self.sockdir = self.base / "sock"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count()
        self.user = "postgres" if self._as_postgres else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> PgCluster:
        self.sockdir.mkdir()
        if self._as_postgres:
            postgres = pwd.getpwnam("postgres")
            for path in (self.base, self.sockdir):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
        self._run("initdb", "-D", str(self.datadir), "-U", self.user, "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
        self._start_server()
        self.psql("template1", f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}' CREATEDB")
        return self

    def _start_server(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.sockdir} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "-l",
                  str(self.base / "postgres.log"), "-o", options, "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server hard (connections break), wait, start it again."""
        import time

        self.halt()
        time.sleep(down_seconds)
        self._start_server()

    def halt(self) -> None:
        """Stop the server hard; ``resume`` starts it again."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        self._start_server()

    def psql(self, database: str, sql: str) -> str:
        done = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.sockdir), "-p", str(self.port), "-U", self.user,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr}")
        return done.stdout

    def create_database(self) -> str:
        name = f"devpi_test_{os.getpid()}_{next(self._names)}"
        self.psql("template1", f"CREATE DATABASE {name} OWNER {ROLE}")
        return name

    def settings(self, database: str) -> dict[str, str]:
        """``--storage`` settings for ``database`` over the Unix socket."""
        return {"unix_sock": f"{self.sockdir}/.s.PGSQL.{self.port}", "database": database,
                "user": self.user}

    def storage_option(self, database: str) -> str:
        return "pg8000:" + ",".join(f"{k}={v}" for k, v in self.settings(database).items())
