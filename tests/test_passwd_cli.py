"""``devpi-twisted passwd`` sets nothing from empty or closed input (issue 19 item 13)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, succeed

from devpi_twisted.cli import PasswdOptions
from devpi_twisted.model.passwords import verify_password
from devpi_twisted.state import open_storage, run_blocking
from tests.support import bin_path, init_serverdir


@pytest.fixture(scope="module")
def serverdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("passwd") / "state"
    init_serverdir(path, "--no-root-pypi", "--root-passwd", "old-pw")
    return path


def _root_hash(serverdir: Path) -> str:
    options = PasswdOptions()
    options.parseOptions(["--serverdir", str(serverdir), "root"])
    storage = open_storage(options.config())
    try:
        record = run_blocking(storage.get_user("root"))
    finally:
        run_blocking(storage.close())
    assert record is not None
    return str(record.pwhash)


def _passwd(serverdir: Path, *extra: str, stdin: str | None = None,
            closed: bool = False) -> subprocess.CompletedProcess[str]:
    args = [bin_path("devpi-twisted"), "passwd", "--serverdir", str(serverdir), *extra, "root"]
    if closed:  # standard input not even open
        return subprocess.run(["sh", "-c", shlex.join(args) + " <&-"], capture_output=True,
                              text=True, timeout=60)
    return subprocess.run(args, input=stdin if stdin is not None else "", capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("stdin", "closed", "message"), [
    ("", False, "no password on standard input"),
    (None, True, "no password on standard input"),
    ("\n", False, "empty password is refused"),
    ("\n\n", False, "empty password is refused"),
    ("one\ntwo\n", False, "differ"),
])
def test_passwd_sets_nothing_from_empty_closed_or_differing_input(
        serverdir: Path, stdin: str | None, closed: bool, message: str) -> None:
    before = _root_hash(serverdir)
    done = _passwd(serverdir, stdin=stdin, closed=closed)
    assert done.returncode == 1, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "nothing changed" in done.stderr
    assert _root_hash(serverdir) == before
    assert verify_password("old-pw", before)


def test_passwd_sets_an_empty_password_only_when_allowed(serverdir: Path) -> None:
    done = _passwd(serverdir, "--allow-empty", stdin="\n\n")
    assert done.returncode == 0, done.stderr
    assert verify_password("", _root_hash(serverdir))
    done = _passwd(serverdir, stdin="old-pw\n")  # one line from a pipe is enough
    assert done.returncode == 0, done.stderr
    assert verify_password("old-pw", _root_hash(serverdir))


def test_run_blocking_returns_the_result_and_raises_the_error_of_its_work() -> None:
    async def twice(value: int) -> int:
        return 2 * await succeed(value)

    async def refused() -> None:
        await succeed(None)
        raise ValueError("refused")

    assert run_blocking(twice(21)) == 42
    with pytest.raises(ValueError, match="refused"):
        run_blocking(refused())


def test_run_blocking_refuses_work_that_would_wait_for_a_reactor() -> None:
    async def waits() -> None:
        await Deferred()

    with pytest.raises(RuntimeError, match="without a reactor"):
        run_blocking(waits())
