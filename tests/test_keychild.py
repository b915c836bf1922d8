"""Keys derived in a child process (keychild.py): the same keys as in-process, the
secret never on the child's command line or in its environment, failures as one line,
and a server at the default argon2 costs whose peak memory never held argon2's 64 MiB."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted import keychild
from devpi_twisted.keychild import KeyDerivationError, derive_in_child
from devpi_twisted.model.tokens import AUTH_SALT, REPLICA_SALT, derive_keys
from tests.support import Daemon, init_serverdir

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


def test_a_server_at_default_costs_never_holds_argon2s_memory(tmp_path: Path) -> None:
    """Default costs: 64 MiB per key. Derived in the server, its peak (VmHWM) would stay
    that much above what it holds after start."""
    serverdir = tmp_path / "server"
    init_serverdir(serverdir, "--no-root-pypi")
    daemon = Daemon(serverdir, fast_argon2=False).start()
    try:
        assert daemon.proc is not None
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines())
        peak, resident = (int(status[field].split()[0]) for field in ("VmHWM", "VmRSS"))
        assert peak - resident < 32 * 1024, (peak, resident)
    finally:
        daemon.stop()
