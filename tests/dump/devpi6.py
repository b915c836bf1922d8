"""The real devpi-server (6.x, and the 7.0 beta) for compatibility tests: each installed
from PyPI into a virtualenv of its own under ``.cache/`` (kept between runs), started on
a free loopback port, filled with state through plain HTTP requests.

A missing or broken installation fails the tests (never skips them).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# major version -> (virtualenv, requirement, pip's extra arguments)
RELEASES: dict[int, tuple[Path, str, tuple[str, ...]]] = {
    6: (Path(os.environ.get("DEVPI_TWISTED_DEVPI6_VENV", REPO / ".cache" / "devpi-server6")),
        "devpi-server>=6.10,<7", ()),
    7: (Path(os.environ.get("DEVPI_TWISTED_DEVPI7_VENV", REPO / ".cache" / "devpi-server7")),
        "devpi-server>=7.0.0b1,<8", ("--pre",)),
}
VENV, REQUIREMENT, _ = RELEASES[6]
# devpi's key derivation defaults take seconds at every start; these are hidden options.
FAST_ARGON2 = ["--argon2-memory-cost", "8", "--argon2-time-cost", "1", "--argon2-parallelism", "1"]
BOUNDARY = "devpi-twisted-dump-test"


def ensure_installed(major: int = 6) -> Path:
    """The bin directory of a virtualenv holding devpi-server ``major``.x (made on first use)."""
    venv, requirement, pip_args = RELEASES[major]
    bindir = venv / "bin"
    marker = venv / ".installed"
    if marker.exists() and (bindir / "devpi-export").exists():
        return bindir
    if not (bindir / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", *pip_args,
                           requirement], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"cannot install {requirement}:\n{done.stdout}\n{done.stderr}")
    version = subprocess.run([str(bindir / "devpi-server"), "--version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    if not version.startswith(f"{major}."):
        raise AssertionError(f"installed devpi-server {version}, expected {major}.x")
    marker.write_text(version)
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Devpi6:
    """A real devpi-server process (6.x or 7.x, whichever ``bindir`` holds)."""

    def __init__(self, bindir: Path, serverdir: Path) -> None:
        self.bindir = bindir
        self.serverdir = serverdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = serverdir.parent / (serverdir.name + ".devpi6.log")

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.bindir / tool), "--serverdir", str(self.serverdir), *args],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def start(self, *args: str, timeout: float = 60, fast_argon2: bool = True) -> Devpi6:
        """``fast_argon2``: test-cheap key derivation (False: devpi's own default costs)."""
        port = free_port()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bindir / "devpi-server"), "--serverdir", str(self.serverdir),
                 "--host", "127.0.0.1", "--port", str(port),
                 *(FAST_ARGON2 if fast_argon2 else ()), *args],
                stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"devpi-server exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/+api", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"devpi-server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def running(directory: Path, *args: str, major: int = 6) -> Iterator[Devpi6]:
    """A fresh devpi-server ``major``.x (no root/pypi) under ``directory``, started with
    ``args``."""
    server = Devpi6(ensure_installed(major), directory / "state")
    server.run("devpi-init", "--no-root-pypi")
    server.start(*args)
    try:
        yield server
    finally:
        server.stop()


# -- plain HTTP ------------------------------------------------------------------------


def request(url: str, method: str = "GET", body: Any = None, auth: tuple[str, str] | None = None,
            raw: bytes | None = None, ctype: str | None = None,
            accept: str = "application/json") -> tuple[int, bytes, dict[str, str]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Accept": accept})
    if ctype:
        req.add_header("Content-Type", ctype)
    if auth:
        req.add_header("X-Devpi-Auth", base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def call(url: str, method: str = "GET", body: Any = None,
         auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    status, data, _ = request(url, method, body, auth)
    try:
        return status, json.loads(data or b"null")
    except ValueError:
        return status, data.decode(errors="replace")


def login(url: str, user: str, password: str) -> tuple[str, str]:
    status, reply = call(url + "/+login", "POST", {"user": user, "password": password})
    assert status == 200, (status, reply)
    return user, reply["result"]["password"]


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> bytes:
    parts = []
    for name, value in fields:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f'{value}\r\n'.encode())
    for name, filename, data in files:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                     + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def upload(index_url: str, auth: tuple[str, str], path: Path, name: str, version: str,
           action: str = "file_upload", **metadata: str) -> None:
    fields = [(":action", action), ("name", name), ("version", version),
              *metadata.items()]
    status, data, _ = request(index_url + "/", "POST", auth=auth,
                              raw=multipart(fields, [("content", path.name, path.read_bytes())]),
                              ctype=f"multipart/form-data; boundary={BOUNDARY}")
    assert status == 200, (status, data[:500])


def upload_toxresult(file_url: str, auth: tuple[str, str] | None, result: Any) -> None:
    status, data, _ = request(file_url, "POST", body=result, auth=auth)
    assert status == 200, (status, data[:500])
