"""The seed workflow with the real devpi command (devpi-client 7.x) against the real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import Daemon, bin_path


class DevpiCLI:
    def __init__(self, clientdir: Path) -> None:
        self.env = dict(os.environ, DEVPI_CLIENTDIR=str(clientdir), PIP_CONFIG_FILE=os.devnull,
                        HOME=str(clientdir))

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None) -> str:
        done = subprocess.run([bin_path("devpi"), *args], env=self.env, capture_output=True,
                              text=True, input=stdin, timeout=60)
        output = done.stdout + done.stderr
        if ok:
            assert done.returncode == 0, f"devpi {' '.join(args)} failed:\n{output}"
        else:
            assert done.returncode != 0, f"devpi {' '.join(args)} should have failed:\n{output}"
        return output


@pytest.fixture
def devpi(tmp_path: Path) -> DevpiCLI:
    return DevpiCLI(tmp_path / "client")


def _get(daemon: Daemon, path: str) -> Any:
    request = urllib.request.Request(daemon.url + path, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_seed_workflow_with_devpi_client(daemon: Daemon, devpi: DevpiCLI) -> None:
    out = devpi("use", daemon.url)
    assert "using server: " + daemon.url in out
    assert "logged in 'root'" in devpi("login", "root", "--password", "")
    assert "user created: packages" in devpi("user", "-c", "packages", "email=ops@example.com",
                                             "password=first-password")
    assert devpi("user", "-l").split() == ["packages", "root"]
    assert "logged in 'packages'" in devpi("login", "packages", "--password", "first-password")

    out = devpi("index", "-c", "packages/stable", "bases=root/pypi", "volatile=False")
    assert "bases=root/pypi" in out and "volatile=False" in out
    devpi("index", "-c", "packages/staging", "bases=packages/stable", "volatile=True")
    devpi("index", "-c", "packages/develop", "bases=packages/stable")
    listed = devpi("index", "-l").split()
    assert listed == ["packages/develop", "packages/stable", "packages/staging"]

    assert "volatile=False" in devpi("index", "packages/staging", "volatile=False")
    assert _get(daemon, "/packages/staging")["result"]["volatile"] is False
    # devpi 7's spelling of mirror_whitelist=*, as a devpi 7 user would type it
    out = devpi("index", "packages/staging", "project_inheritance_rules=allow all")
    assert "mirror_whitelist=*" in out
    out = devpi("index", "packages/staging", "project_inheritance_rules=allow everything", ok=False)
    assert "Unknown value ['allow everything'] for project_inheritance_rules" in out
    devpi("index", "packages/staging", "project_inheritance_rules=block type:remote if local_exists")
    assert _get(daemon, "/packages/staging")["result"]["mirror_whitelist"] == []

    stable = json.loads(devpi("getjson", "/packages/stable"))
    assert stable["type"] == "indexconfig"
    assert stable["result"]["bases"] == ["root/pypi"]
    assert stable["result"]["acl_upload"] == ["packages"]

    assert "user modified: packages" in devpi("user", "-m", "packages", "email=new@example.com")
    assert _get(daemon, "/packages")["result"]["email"] == "new@example.com"

    devpi("passwd", stdin="second-password\nsecond-password\n")
    devpi("login", "packages", "--password", "first-password", ok=False)
    devpi("login", "packages", "--password", "second-password")

    out = devpi("index", "--delete", "-y", "packages/staging", ok=False)
    assert "403" in out and "non-volatile, cannot delete" in out
    assert "index deleted" in devpi("index", "--delete", "-y", "packages/develop")
    out = devpi("user", "--delete", "-y", "packages", ok=False)
    assert "has non-volatile index" in out
    devpi("index", "packages/stable", "volatile=True")
    devpi("index", "packages/staging", "volatile=True")
    devpi("user", "--delete", "-y", "packages")
    assert "packages" not in _get(daemon, "/")["result"]

    assert "login information deleted" in devpi("logoff")
    assert "not logged in" in devpi("use")


def test_devpi_use_lists_indexes_with_bases(daemon: Daemon, devpi: DevpiCLI) -> None:
    devpi("use", daemon.url)
    devpi("login", "root", "--password", "")
    devpi("index", "-c", "root/listed", "bases=root/pypi")
    out = devpi("use", "-l")
    assert "root/pypi" in out
    assert "root/listed" in out and "bases=root/pypi" in out


def test_devpi_client_shows_server_error_messages(daemon: Daemon, devpi: DevpiCLI) -> None:
    devpi("use", daemon.url)
    devpi("login", "root", "--password", "")
    out = devpi("index", "-c", "root/broken", "bases=nobody/nothing", ok=False)
    assert "base index 'nobody/nothing' does not exist" in out
    out = devpi("login", "root", "--password", "wrong", ok=False)
    assert "could not be authenticated" in out
