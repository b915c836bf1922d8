"""Operator mistakes end ``devpi-twisted`` and ``twistd devpi`` with one line naming
the option, never a traceback or the whole help (issue 19, item 14).

The tests run as root, for whom no permission bit refuses anything: an impossible
server directory is one below a regular file or in /proc, which refuse root too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import bin_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(bin_path("twistd"), "-n", "--pidfile=", "devpi", *args, cwd=cwd)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    return output


def impossible_serverdirs(tmp_path: Path) -> list[Path]:
    regular = tmp_path / "a-file"
    regular.write_text("not a directory\n")
    return [Path("/proc/devpi-twisted-test"), regular / "state", regular]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["proc", "below-a-file", "a-file"])
def test_init_with_an_impossible_serverdir_is_one_line(tmp_path: Path, which: int) -> None:
    serverdir = impossible_serverdirs(tmp_path)[which]
    line = one_line(run(bin_path("devpi-twisted"), "init", "--serverdir", str(serverdir),
                        cwd=tmp_path))
    assert line.startswith(f"devpi-twisted: --serverdir {serverdir}"), line


@pytest.mark.parametrize("which", [0, 1, 2], ids=["proc", "below-a-file", "a-file"])
def test_twistd_init_with_an_impossible_serverdir_is_one_line(tmp_path: Path, which: int) -> None:
    serverdir = impossible_serverdirs(tmp_path)[which]
    line = one_line(twistd("--init", "--serverdir", str(serverdir), cwd=tmp_path))
    assert line.startswith(f"devpi-twisted: --serverdir {serverdir}"), line
    line = one_line(twistd("--serverdir", str(serverdir), cwd=tmp_path))  # without --init
    assert "--serverdir" in line and str(serverdir) in line, line


def test_mistyped_twistd_option_names_it_without_the_whole_help(tmp_path: Path) -> None:
    line = one_line(twistd("--prot", "3141", cwd=tmp_path))
    assert "--prot" in line and "did you mean --port?" in line, line
    assert "twistd devpi --help" in line, line
    line = one_line(twistd("--port", cwd=tmp_path))
    assert "--port requires argument" in line and "twistd devpi --help" in line, line


def test_mistyped_command_option_points_at_the_command_help(tmp_path: Path) -> None:
    line = one_line(run(bin_path("devpi-twisted"), "init", "--serverdri", str(tmp_path / "s"),
                        cwd=tmp_path))
    assert "--serverdri" in line and "did you mean --serverdir?" in line, line
    assert "devpi-twisted init --help" in line, line
    assert not (tmp_path / "s").exists()


def test_impossible_unix_socket_and_logger_config_are_one_line(tmp_path: Path) -> None:
    serverdir = tmp_path / "state"
    run(bin_path("devpi-twisted"), "init", "--serverdir", str(serverdir), "--no-root-pypi",
        cwd=tmp_path)
    line = one_line(twistd("--serverdir", str(serverdir), "--logger-cfg", "/proc/no-such-file",
                           cwd=tmp_path))
    assert line.startswith("devpi-twisted: --logger-cfg: cannot read /proc/no-such-file"), line
    # the listening sockets are made after logging started: one error event, no traceback
    done = twistd("--serverdir", str(serverdir), "--host", "127.0.0.1", "--port", "0",
                  "--unix-socket", "/proc/no-such-dir/devpi.sock", cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    assert "devpi-twisted: cannot start serving: /proc/no-such-dir/devpi.sock" in output, output


def test_init_refuses_a_root_hash_dearer_than_ours_in_one_line(tmp_path: Path) -> None:
    """Every login as root would pay the hash's cost (issue 19, item 1)."""
    dear = "$argon2id$v=19$m=1048576,t=300,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
    serverdir = tmp_path / "state"
    line = one_line(run(bin_path("devpi-twisted"), "init", "--serverdir", str(serverdir),
                        "--root-passwd-hash", dear, cwd=tmp_path))
    assert "--root-passwd-hash" in line and "m=1048576,t=300,p=4" in line, line
    assert not serverdir.exists()  # nothing half made
