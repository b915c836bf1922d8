"""Helpers shared by the test suites."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from tests.fakepypi import FakePyPI

# Cheap key derivation for daemons started by tests (devpi's defaults take seconds).
FAST_ARGON2 = ["--argon2-memory-cost", "64", "--argon2-time-cost", "1", "--argon2-parallelism", "1"]


def result_of(d: Deferred[Any] | Coroutine[Any, Any, Any]) -> Any:
    """The result of an already fired Deferred (or coroutine); fails the test if it is waiting."""
    if not isinstance(d, Deferred):
        d = Deferred.fromCoroutine(d)
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def failure_of(d: Deferred[Any] | Coroutine[Any, Any, Any]) -> BaseException:
    """The exception of an already failed Deferred (or coroutine)."""
    try:
        value = result_of(d)
    except BaseException as e:  # noqa: BLE001 - the point is to catch anything
        return e
    raise AssertionError(f"expected a failure, got {value!r}")


def bin_path(name: str) -> str:
    """A console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class Daemon:
    """A real ``twistd -n devpi`` process on a free loopback port."""

    def __init__(self, serverdir: Path, *args: str, env: dict[str, str] | None = None,
                 fast_argon2: bool = True) -> None:
        """``fast_argon2``: derive keys at test-cheap costs (False: no --argon2-* option)."""
        self.serverdir = serverdir
        self.args = list(args)
        self.env = env
        self.fast_argon2 = fast_argon2
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = serverdir.parent / (serverdir.name + ".log")

    def command(self) -> list[str]:
        return [bin_path("twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(self.serverdir),
                "--host", "127.0.0.1", "--port", "0", *(FAST_ARGON2 if self.fast_argon2 else ()),
                *self.args]

    def start(self, timeout: float = 30) -> Daemon:
        main = "--requests-only" not in self.args
        listening = self.serverdir / ".listening"
        if main and listening.exists():
            listening.unlink()
        env = dict(os.environ, **(self.env or {}))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(self.serverdir.parent))
        if not main:  # a --requests-only process reports where it listens in a file of its own
            listening = self.serverdir / f".listening-{self.proc.pid}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if listening.exists():
                self.url = json.loads(listening.read_text())[0]
                return self
            time.sleep(0.05)
        raise AssertionError(f"daemon did not start:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


def bare_venv(work: Path) -> tuple[Path, Path]:
    """A new virtualenv ``work/venv`` without pip, and its site-packages directory."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return venv, Path(purelib)


def point_pypi_at(url: str, upstream: str, user: str, password: str, index: str) -> None:
    """The server at ``url``: root/pypi mirrors ``upstream``; a new ``user`` has ``index``
    inheriting root/pypi."""
    root = login(url, "root", "")
    status, body, _ = call(url + "/root/pypi", "PATCH", [f"mirror_url={upstream}"], root)
    assert status == 200, body
    assert call(f"{url}/{user}", "PUT", {"password": password})[0] == 201
    auth = login(url, user, password)
    assert call(f"{url}/{user}/{index}", "PUT", {"bases": "root/pypi"}, auth)[0] == 200


def init_serverdir(serverdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_path("devpi-twisted"), "init", "--serverdir", str(serverdir), *args],
                          capture_output=True, text=True, check=True)


def call(url: str, method: str = "GET", body: Any = None, auth: tuple[str, str] | None = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         ) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Accept": "application/json", **(headers or {})})
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("X-Devpi-Auth", token)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def login(url: str, user: str, password: str) -> tuple[str, str]:
    status, reply, _ = call(url + "/+login", "POST", {"user": user, "password": password})
    assert status == 200, reply
    return user, reply["result"]["password"]


def make_wheel(directory: Path, name: str, version: str, requires: list[str] | None = None,
               requires_python: str | None = None) -> Path:
    """A small, valid, pure-Python wheel (importable module ``name`` with ``VERSION``)."""
    import hashlib
    import zipfile

    module = name.replace("-", "_").lower()
    dist_info = f"{module}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                f"Summary: test package {name}"]
    metadata += [f"Requires-Dist: {r}" for r in requires or []]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": "\n".join(metadata) + "\n\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: devpi-twisted-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    target = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return target


def make_sdist(directory: Path, name: str, version: str,
               extra: dict[str, bytes] | None = None) -> Path:
    """A small sdist with PKG-INFO (not meant to be built), plus ``extra`` files by path."""
    import io
    import tarfile

    module = name.replace("-", "_").lower()
    base = f"{module}-{version}"
    target = directory / f"{base}.tar.gz"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\n".encode()
    members = {"PKG-INFO": pkg_info, f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
               **(extra or {})}
    with tarfile.open(target, "w:gz") as archive:
        for name_in_archive, data in members.items():
            info = tarfile.TarInfo(f"{base}/{name_in_archive}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return target


@contextmanager
def serving_fake_pypi(work: Path, make_dists: Callable[[Path], Iterable[Path]]) -> Iterator[FakePyPI]:
    """A started fake PyPI (tests/fakepypi.py) under ``work``, serving the files
    ``make_dists`` builds into the directory it is given; stopped on the way out."""
    from tests.fakepypi import FakePyPI

    dists = work / "dists"
    dists.mkdir()
    with FakePyPI(work / "fake") as upstream:
        for path in make_dists(dists):
            upstream.add(path)
        upstream.start()
        yield upstream
