"""README.rst's "Using it" runs as written, top to bottom, with the real devpi-client,
twine, pip and uv against the real daemon (issue 19, item 17).

The commands are taken from the section's literal blocks; the test changes only the
server URL (the daemon's free port for ``http://localhost:3141``) and ``SECRET`` (the
password the reader chooses). They run in one bash script, stopping at the first
failure, in a project directory whose ``dist/`` holds ``mypackage`` 1.0 (what
``python -m build`` would have written), with a virtualenv of their own as the
reader's environment: it shares the test environment's packages, so ``pip install
devpi-client twine`` finds them installed, and ``mypackage`` is installed into it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import start_daemon
from tests.support import Daemon, bare_venv, call, make_sdist, make_wheel

TOP = Path(__file__).resolve().parent.parent.parent
README = TOP / "README.rst"
README_URL = "http://localhost:3141"
PASSWORD = "readme-Secret-7"


def section(text: str, title: str) -> str:
    """The body of the top-level section ``title`` (underlined with ``=``)."""
    match = re.search(rf"^{re.escape(title)}\n=+\n(.*?)(?=^[^\n]+\n=+\n|\Z)", text, re.M | re.S)
    assert match, f"README.rst has no section {title!r}"
    return match.group(1)


def literal_blocks(text: str) -> list[list[str]]:
    """The lines of each literal block (a paragraph ending in ``::``, a blank line, then
    indented lines), dedented; backslash continuations joined."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:(?:[ \t]+\S.*)?\n)+)", text):
        lines = [line.strip() for line in match.group(1).splitlines() if line.strip()]
        joined: list[str] = []
        for line in lines:
            if joined and joined[-1].endswith("\\"):
                joined[-1] = joined[-1][:-1].rstrip() + " " + line
            else:
                joined.append(line)
        blocks.append(joined)
    return blocks


def readme_commands() -> list[str]:
    return [line for block in literal_blocks(section(README.read_text(), "Using it"))
            for line in block]


def test_the_using_it_sequence_is_what_this_test_expects() -> None:
    """The parts of the sequence the checks below rely on (the rest may change freely)."""
    commands = readme_commands()
    assert commands[0] == "pip install devpi-client twine"
    assert f"devpi use {README_URL}" in commands
    uploads = [i for i, c in enumerate(commands) if c.startswith(("devpi upload", "twine upload"))]
    push = commands.index("devpi push mypackage==1.0 packages/stable")
    assert uploads and max(uploads) < push
    assert any(c.startswith("pip install") and "/packages/stable/+simple/ mypackage" in c
               for c in commands[push:])
    assert any(c.startswith("uv pip install") for c in commands[push:])
    assert any(c.startswith("python -m venv try && try/bin/pip install") for c in commands[:push])
    assert commands[-1].startswith("curl -X PATCH") and commands[-1].endswith("/mypackage/1.0")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def offline_daemon(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """As the e2e ``daemon``, but never asking the real PyPI (``stable`` inherits
    ``root/pypi`` in the README)."""
    running = start_daemon(request, tmp_path_factory, "--offline-mode")
    yield running
    running.stop()


def reader_venv(work: Path) -> Path:
    """A virtualenv standing for the reader's environment: it sees this environment's
    packages (by a .pth file), installs into its own, and runs pip as ``pip``."""
    venv, purelib = bare_venv(work)
    python = venv / "bin" / "python"
    (purelib / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = venv / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{python}" -m pip "$@"\n')
    pip.chmod(0o755)
    return venv


def test_using_it_runs_as_written(offline_daemon: Daemon, tmp_path: Path) -> None:
    project = tmp_path / "mypackage"
    dist = project / "dist"
    dist.mkdir(parents=True)
    make_wheel(dist, "mypackage", "1.0")
    make_sdist(dist, "mypackage", "1.0")
    venv = reader_venv(tmp_path)
    script = "\n".join(readme_commands()).replace(README_URL, offline_daemon.url)
    script = script.replace("SECRET", PASSWORD)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PIP_", "UV_", "TWINE_", "DEVPI_", "VIRTUAL_ENV"))}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), str(Path(sys.executable).parent),
                              os.environ.get("PATH", "")]),
        VIRTUAL_ENV=str(venv), HOME=str(tmp_path / "home"),
        DEVPI_CLIENTDIR=str(tmp_path / "client"), PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_NO_PROGRESS="1")
    done = subprocess.run(["bash", "-euxo", "pipefail", "-c", script], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    def installed_from(python: Path) -> Path:
        where = subprocess.run([str(python), "-c", "import mypackage; print(mypackage.__file__)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path)
        return Path(where.stdout.strip())

    assert installed_from(project / "try" / "bin" / "python").is_relative_to(project / "try")
    assert installed_from(venv / "bin" / "python").is_relative_to(venv)
    status, stable, _ = call(offline_daemon.url + "/packages/stable/mypackage")
    assert status == 200, stable
    links = stable["result"]["1.0"]["+links"]
    assert sorted(link["href"].rsplit("/", 1)[1] for link in links) == [
        "mypackage-1.0-py3-none-any.whl", "mypackage-1.0.tar.gz"]
    assert all(link["href"].startswith(offline_daemon.url + "/packages/stable/+f/")
               for link in links)
    assert all(link["log"][-1]["what"] == "push" for link in links)
    # the yank example at the end of the section
    request = urllib.request.Request(offline_daemon.url + "/packages/stable/+simple/mypackage/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        files = json.loads(response.read())["files"]
    assert [f.get("yanked") for f in files] == ["broken build"] * 2, done.stdout[-2000:]
