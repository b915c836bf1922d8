"""argon2 outside the server process: keys derived in a child process (keychild.py:
the same keys as in-process, the secret never on the child's command line or in its
environment, failures as one line), password checks in the HashingPool's children
(childcalls.py), and
a server at the default argon2 costs whose peak memory never held argon2's 64 MiB, at
start nor at a login."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from devpi_twisted import keychild
from devpi_twisted.childcalls import Child, ChildFailed
from devpi_twisted.model.passwords import verify_password
from devpi_twisted.keychild import KeyDerivationError, derive_in_child
from devpi_twisted.model.tokens import AUTH_SALT, REPLICA_SALT, derive_keys
from devpi_twisted.web.hashing import HashingPool
from tests.support import Daemon, child_pids, init_serverdir

TINY = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}
SECRET = b"server \x00\xff secret"


def test_the_child_derives_the_keys_derive_keys_does() -> None:
    auth, replica = derive_in_child(SECRET, [AUTH_SALT, REPLICA_SALT], **TINY)
    keys = derive_keys(SECRET, **TINY)
    assert (auth, replica) == (keys.auth, keys.replica)
    assert derive_in_child(SECRET, [REPLICA_SALT], **TINY) == [keys.replica]


def test_the_secret_goes_over_stdin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []
    run = subprocess.run

    def spy(args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        return run(args, **kwargs)

    monkeypatch.setattr(keychild.subprocess, "run", spy)
    derive_in_child(SECRET, [AUTH_SALT], **TINY)
    (args, kwargs), = seen
    assert SECRET.hex() not in " ".join(args)
    assert "env" not in kwargs  # the child inherits the environment as it is
    assert SECRET.hex().encode() in kwargs["input"]


def test_a_failing_child_is_one_line_naming_the_cause() -> None:
    with pytest.raises(KeyDerivationError) as raised:  # argon2 refuses m < 8 * p
        derive_in_child(SECRET, [AUTH_SALT], time_cost=1, memory_cost=8, parallelism=4)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("deriving keys from the secret failed: ")
    assert "memory" in str(raised.value).lower()


def test_a_child_past_its_time_is_an_error() -> None:
    with pytest.raises(KeyDerivationError, match="timed out"):
        derive_in_child(SECRET, [AUTH_SALT], time_cost=1000, memory_cost=65536, parallelism=1,
                        timeout=0.5)


@pytest_twisted.ensureDeferred
async def test_the_pool_runs_each_call_in_a_child_process() -> None:
    pool = HashingPool(reactor, threads=1, queue=1)
    pool.startService()
    try:
        child = await pool(os.getpid)
        assert child != os.getpid()
        assert await pool(os.getpid) == child  # the child is kept for the next check
        assert await pool(sum, [1, 2]) == 3 and pool.pending == 0
    finally:
        pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_killed_child_fails_its_check_and_the_next_gets_a_new_one() -> None:
    pool = HashingPool(reactor, threads=1, queue=1)
    pool.startService()
    try:
        child = await pool(os.getpid)
        with pytest.raises(Exception):
            await pool(os.kill, child, 9)
        assert await pool(os.getpid) not in (child, os.getpid())
    finally:
        pool.stopService()


@pytest_twisted.ensureDeferred
async def test_idle_children_end_and_the_next_check_starts_one() -> None:
    pool = HashingPool(reactor, threads=1, queue=1, clock=reactor, idle=0.2)
    pool.startService()
    try:
        child = await pool(os.getpid)
        await deferLater(reactor, 0.1)
        assert await pool(os.getpid) == child  # a check within idle seconds keeps it
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            await deferLater(reactor, 0.1)
        assert not Path(f"/proc/{child}").exists()
        assert await pool(os.getpid) not in (child, os.getpid())
    finally:
        pool.stopService()


def test_a_child_answers_errors_as_text_and_goes_on() -> None:
    child = Child()
    try:
        with pytest.raises(ChildFailed, match="ValueError"):
            child.call(int, "not a number")
        with pytest.raises(ChildFailed, match="TypeError"):
            child.call(os.getcwdb)  # bytes: not a JSON value
        pid = child.pid
        assert child.call(verify_password, "pw", None) is False
        assert child.call(os.getpid) == pid != os.getpid()
    finally:
        child.close()
    assert child.pid is None


def _memory_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a process, in KiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmHWM"].split()[0]), int(status["VmRSS"].split()[0])


def test_a_server_at_default_costs_never_holds_argon2s_memory(tmp_path: Path) -> None:
    """Default costs: 64 MiB per key and per password check. Run in the server, its peak
    (VmHWM) would stay that much above what it holds after start, and after a login."""
    serverdir = tmp_path / "server"
    init_serverdir(serverdir, "--no-root-pypi")
    daemon = Daemon(serverdir, fast_argon2=False).start()
    try:
        assert daemon.proc is not None
        peak, resident = _memory_kib(daemon.proc.pid)
        assert peak - resident < 32 * 1024, (peak, resident)
        login = urllib.request.Request(
            daemon.url + "/+login", json.dumps({"user": "root", "password": ""}).encode(),
            {"Content-Type": "application/json", "Accept": "application/json"})
        with urllib.request.urlopen(login, timeout=60) as reply:  # root's argon2 hash, checked
            assert json.load(reply)["result"]["password"]
        peak, resident = _memory_kib(daemon.proc.pid)
        assert peak - resident < 32 * 1024, (peak, resident)
        children = child_pids(daemon.proc.pid)
        assert children  # the check's child, and multiprocessing's resource tracker
        daemon.kill9()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.1)
        assert not [c for c in children if Path(f"/proc/{c}").exists()], "children outlived -9"
    finally:
        daemon.stop()

