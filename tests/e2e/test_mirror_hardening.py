"""Issue 19, items 18 and 23, end to end (sqlite; PostgreSQL with workers; primary and
replica pairs as in test_replication): a project
published upstream after root/pypi fetched its project list is seen at once by the
simple page, ``devpi getjson``, ``devpi list`` and pip through an inheriting index; a
file whose bytes fail the hash upstream's page gave reaches no client whole (a real
socket sees the transfer break before Content-Length is met) and is fetched again."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.test_devpi_client import DevpiCLI
from tests.e2e.test_replication import Pair, pair  # noqa: F401  (on this module's fake)
from tests.e2e.test_uploads import pip
from tests.fakepypi import FakePyPI
from tests.support import Daemon, call, make_wheel, point_pypi_at, serving_fake_pypi

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
# published after the list was fetched
LATER = ["late-page", "late-getjson", "late-list", "late-pip", "late-inherit"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    def dists(d: Path) -> list[Path]:
        big = d / "tampered-1.0.tar.gz"  # several reads upstream, several writes to clients
        big.write_bytes(os.urandom(3 << 20))
        return [make_wheel(d, "early", "1.0"), big]

    with serving_fake_pypi(tmp_path_factory.mktemp("fakepypi"), dists) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def mirror(daemon: Daemon, fake: FakePyPI) -> Daemon:
    """root/pypi pointed at the fake (default expiry); hard/dev inherits from it."""
    point_pypi_at(daemon.url, fake.url, "hard", "hard-pass", "dev")
    return daemon


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=JSON), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def wait_for_the_project_list(mirror: Daemon) -> None:
    """Until root/pypi lists upstream's projects (fetched in the background when asked)."""
    for _ in range(200):
        status, data = get_json(mirror.url + "/root/pypi/+simple/")
        if status == 200 and "early" in {p["name"] for p in data["projects"]}:
            return
        time.sleep(0.05)
    raise AssertionError("root/pypi never listed upstream's projects")


def test_a_project_published_after_the_list_was_fetched_is_seen_at_once(
        mirror: Daemon, fake: FakePyPI, tmp_path: Path) -> None:
    wait_for_the_project_list(mirror)
    for name in LATER:
        fake.add(make_wheel(tmp_path, name, "1.0"))
    wheel = "{}-1.0-py3-none-any.whl".format

    status, data = get_json(mirror.url + "/root/pypi/+simple/late-page/")
    assert status == 200 and [f["filename"] for f in data["files"]] == [wheel("late_page")]

    devpi = DevpiCLI(tmp_path / "client")
    devpi("use", mirror.url + "/root/pypi")
    versions = json.loads(devpi("getjson", "/root/pypi/late-getjson"))["result"]
    assert list(versions) == ["1.0"]
    assert [link["href"].rsplit("/", 1)[-1] for link in versions["1.0"]["+links"]] == [
        wheel("late_getjson")]
    assert wheel("late_list") in devpi("list", "late-list")
    status, version, _ = call(mirror.url + "/root/pypi/late-getjson/1.0")
    assert status == 200 and version["result"]["+links"][0]["href"].endswith(
        "/" + wheel("late_getjson"))
    status, inherited, _ = call(mirror.url + "/hard/dev/late-inherit")  # through the bases
    assert status == 200 and list(inherited["result"]) == ["1.0"]

    out = pip("download", "--no-deps", "--index-url", mirror.url + "/hard/dev/+simple/",
              "--dest", str(tmp_path / "dl"), "late-pip")
    assert (tmp_path / "dl" / wheel("late_pip")).is_file(), out


def raw_get(url: str) -> tuple[int, int | None, bytes]:
    """GET over a plain socket: (status, Content-Length, the body bytes that arrived
    before the server closed or reset the connection)."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    length = headers.get("content-length")
    return status, int(length) if length is not None else None, body


def test_a_file_failing_its_hash_never_reaches_a_client_whole(mirror: Daemon,
                                                              fake: FakePyPI) -> None:
    page = mirror.url + "/root/pypi/+simple/tampered/"
    status, data = get_json(page)
    assert status == 200
    item = data["files"][0]
    url = urllib.parse.urljoin(page, item["url"]).split("#", 1)[0]
    fake.set(corrupt=True)
    try:
        with ThreadPoolExecutor(3) as pool:  # a first download and requests waiting for it
            answers = list(pool.map(raw_get, [url] * 3))
    finally:
        fake.set(corrupt=None)
    for status, length, body in answers:
        assert status in (200, 502), status  # the first download, or one that waited for it
        if status == 200:  # the body began, and the transfer broke before its end
            assert length == item["size"] and 0 < len(body) < length
    assert any(status == 200 for status, _, _ in answers)
    with urllib.request.urlopen(url, timeout=30) as r:  # stored nothing: fetched again, whole
        body = r.read()
    assert hashlib.sha256(body).hexdigest() == item["hashes"]["sha256"]
    path = urllib.parse.urlsplit(fake.url).path
    fetched = [r for r in fake.requests() if r["path"].endswith("/" + item["filename"])
               and not r["path"].startswith(path)]
    assert len(fetched) >= 2
    assert "Traceback" not in mirror.log.read_text()


def test_a_replica_never_takes_a_file_failing_its_hash(pair: Pair,  # noqa: F811
                                                       fake: FakePyPI) -> None:
    """The replica asks the primary, whose first download of the file breaks off: the
    replica's client gets no whole file, and the replica stores nothing."""
    page = pair.replica.url + "/root/pypi/+simple/tampered/"
    status, data = get_json(page)  # refreshed by the primary, then replicated here
    assert status == 200
    item = data["files"][0]
    url = urllib.parse.urljoin(page, item["url"]).split("#", 1)[0]
    fake.set(corrupt=True)
    try:
        status, length, body = raw_get(url)
    finally:
        fake.set(corrupt=None)
    assert status == 502 or (status == 200 and length is not None and len(body) < length)
    with urllib.request.urlopen(url, timeout=30) as r:  # fetched again, whole
        assert hashlib.sha256(r.read()).hexdigest() == item["hashes"]["sha256"]
