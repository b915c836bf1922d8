"""Replication end to end: a primary and a replica, two real daemons (sqlite -> sqlite,
PostgreSQL -> sqlite and sqlite -> PostgreSQL), a fake PyPI behind the primary's root/pypi.

Users, indexes and uploads made through either side arrive on the replica under the
same serials, with byte-identical files and the same JSON views; pip installs from
the replica while the primary (and PyPI) are down; a primary killed with SIGKILL in
the middle of an upload burst is followed again after its restart, nothing missing
and nothing applied twice; the changelog is refused to anyone without the secret.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import brotli
import pytest
import zstandard

from devpi_twisted.model.tokens import TokenSigner, derive_keys
from tests.e2e.test_uploads import pip
from tests.fakepypi import FakePyPI
from tests.pg import free_port
from tests.support import Daemon, call, init_serverdir, login, make_wheel, serving_fake_pypi

PASSWORD = "alice-pass"


@attrs.define
class Pair:
    primary: Daemon
    replica: Daemon
    secret: Path
    primary_url: str
    work: Path
    storage: list[str]
    replica_pg: dict[str, str] | None = None  # a PostgreSQL replica's settings
    auth: tuple[str, str] | None = None

    def replica_blob(self, relpath: str) -> bytes | None:
        """A file body as the replica stores it (None if it has none): under +files on
        sqlite, in the database on PostgreSQL."""
        if self.replica_pg is None:
            path = self.replica.serverdir / "+files" / relpath
            return path.read_bytes() if path.exists() else None
        with _pg(self.replica_pg) as db, db.cursor() as cursor:
            cursor.execute("SELECT data FROM blob_chunks WHERE key = %s ORDER BY seq", (relpath,))
            chunks = [bytes(row[0]) for row in cursor.fetchall()]
            cursor.execute("SELECT 1 FROM blobs WHERE key = %s", (relpath,))
            return b"".join(chunks) if cursor.fetchone() else None

    def replica_changelog(self) -> list[tuple[int, float, str]]:
        if self.replica_pg is None:
            with sqlite3.connect(f"file:{self.replica.serverdir / 'db.sqlite3'}?mode=ro",
                                 uri=True) as db:
                return db.execute("SELECT serial, at, records FROM changelog ORDER BY serial").fetchall()
        with _pg(self.replica_pg) as db, db.cursor() as cursor:
            cursor.execute("SELECT serial, at, records FROM changelog ORDER BY serial")
            return [(int(s), float(a), r) for s, a, r in cursor.fetchall()]


def _pg(settings: dict[str, str]) -> Any:
    import psycopg2

    from devpi_twisted.storage.postgres import connect_kwargs

    return psycopg2.connect(**connect_kwargs(settings))


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    def dists(d: Path) -> list[Path]:
        return [make_wheel(d, "mirapp", "1.0", requires=["mirlib>=1.0"]),
                make_wheel(d, "mirlib", "1.0"), make_wheel(d, "mirlib", "2.0")]

    with serving_fake_pypi(tmp_path_factory.mktemp("fakepypi"), dists) as upstream:
        yield upstream


def write_secret(path: Path, data: bytes) -> Path:
    path.write_bytes(base64.b64encode(data))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres", "sqlite-to-postgres-replica"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         fake: FakePyPI) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp(f"repl-{request.param}")
    work.chmod(0o700)
    secret = write_secret(work / "secret", os.urandom(32))
    storage: list[str] = []
    replica_storage: list[str] = []
    replica_pg = None
    if request.param != "sqlite":
        cluster = request.getfixturevalue("pg_cluster")
        database = cluster.create_database()
        if request.param == "postgres":
            storage = ["--storage", cluster.storage_option(database)]
        else:
            replica_storage = ["--storage", cluster.storage_option(database)]
            replica_pg = cluster.settings(database)
    port = free_port()
    primary_url = f"http://127.0.0.1:{port}"
    init_serverdir(work / "primary", *storage)
    init_serverdir(work / "replica", *replica_storage, "--role", "replica", "--primary-url",
                   primary_url)
    primary = Daemon(work / "primary", *storage, "--role", "primary", "--secretfile", str(secret),
                     "--port", str(port)).start()
    replica = Daemon(work / "replica", *replica_storage, "--role", "replica", "--primary-url",
                     primary_url, "--secretfile", str(secret)).start()
    made = Pair(primary, replica, secret, primary_url, work, storage, replica_pg)
    root = login(primary.url, "root", "")
    assert call(primary.url + "/root/pypi", "PATCH", [f"mirror_url={fake.url}"], root)[0] == 200
    yield made
    replica.stop()
    primary.stop()
    for daemon in (primary, replica):
        log = daemon.log.read_text()
        assert "Unhandled" not in log and "Traceback" not in log, log[-3000:]


def status(url: str) -> dict[str, Any]:
    code, body, _ = call(url + "/+status")
    assert code == 200, body
    return body["result"]  # type: ignore[no-any-return]


def converged(pair: Pair, timeout: float = 90) -> int:
    """Wait until the replica holds the primary's serial and every file body."""
    deadline = time.monotonic() + timeout
    while True:
        serial = status(pair.primary.url)["serial"]
        seen = status(pair.replica.url)
        if seen["serial"] == serial and seen["replica-file-queue"] == 0:
            return int(serial)
        assert time.monotonic() < deadline, (serial, seen)
        time.sleep(0.1)


def upload(url: str, auth: tuple[str, str], path: Path, timeout: float = 30) -> int:
    """The upload form as twine posts it; returns the HTTP status."""
    boundary = "devpi-twisted-boundary"
    name, version = path.name.split("-")[:2]
    fields = {":action": "file_upload", "name": name, "version": version,
              "protocol_version": "1", "filetype": "bdist_wheel", "pyversion": "py3"}
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(
        url, data=b"".join(parts), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Devpi-Auth": token})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def replica_token(secret: Path, uuid: str) -> str:
    keys = derive_keys(secret.read_bytes(), 1, 64, 1)  # tests' FAST_ARGON2
    return TokenSigner(keys.replica, time.time).make(uuid)


def feed(url: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()  # type: ignore[no-any-return]


def json_view(url: str) -> Any:
    code, body, _ = call(url)
    assert code == 200, (url, body)
    return body


def without_base(value: Any, base: str) -> Any:
    return json.loads(json.dumps(value).replace(base, "BASE"))


# -- the feed is for replicas holding the secret only ---------------------------------------


def test_changelog_is_refused_without_the_shared_secret(pair: Pair, tmp_path: Path) -> None:
    url = pair.primary.url
    code, body = feed(url, "/+changelog/0-", {})
    assert code == 403 and b"serial" not in body.lower()
    wrong = write_secret(tmp_path / "wrong", os.urandom(32))
    uuid = "f" * 32
    headers = {"X-Devpi-Replica-Uuid": uuid, "X-Devpi-Expected-Primary-Id": ""}
    code, body = feed(url, "/+changelog/0", {**headers, "Authorization": "Bearer " + replica_token(
        wrong, uuid)})
    assert code == 403 and b"malformed" in body
    code, body = feed(url, "/+changelog/0", {**headers, "Authorization": "Bearer " + replica_token(
        pair.secret, "0" * 32)})  # a token of another replica
    assert code == 403
    code, body = feed(url, "/+changelog/0", {**headers, "Authorization": "Bearer " + replica_token(
        pair.secret, uuid)})
    assert code == 200 and json.loads(body)["serial"] == 0
    # a replica does not serve the feed at all
    assert feed(pair.replica.url, "/+changelog/0", {**headers, "Authorization": "Bearer "
                + replica_token(pair.secret, uuid)})[0] == 403


def test_a_replica_with_a_wrong_secret_gets_nothing(pair: Pair, tmp_path: Path) -> None:
    serverdir = tmp_path / "intruder"
    init_serverdir(serverdir, "--role", "replica", "--primary-url", pair.primary_url)
    wrong = write_secret(tmp_path / "wrong", os.urandom(32))
    intruder = Daemon(serverdir, "--role", "replica", "--primary-url", pair.primary_url,
                      "--secretfile", str(wrong)).start()
    try:
        deadline = time.monotonic() + 10
        while "403" not in intruder.log.read_text():
            assert time.monotonic() < deadline, intruder.log.read_text()
            time.sleep(0.1)
        seen = status(intruder.url)
        assert seen["serial"] == -1 and seen["primary-serial"] is None
        assert call(intruder.url + "/root")[0] == 404
    finally:
        intruder.stop()


# -- convergence ----------------------------------------------------------------------------


def test_uploads_through_primary_and_replica_converge(pair: Pair, tmp_path: Path) -> None:
    primary, replica = pair.primary, pair.replica
    # a user and an index made through the replica: relayed, answered once replicated
    code, _, headers = call(replica.url + "/alice", "PUT", {"password": PASSWORD, "email": "a@x.org"})
    assert code == 201 and headers["X-Devpi-Proxy"] == "replica"
    code, _, headers = call(replica.url + "/alice")
    assert code == 200  # readable here at once
    assert headers["X-Devpi-Primary-Uuid"] == status(primary.url)["uuid"] != headers["X-Devpi-Uuid"]
    pair.auth = auth = login(replica.url, "alice", PASSWORD)
    config = {"bases": ["root/pypi"], "volatile": False}
    code, _, _ = call(primary.url + "/alice/dev", "PUT", config, auth)
    assert code == 200
    wheels = [make_wheel(tmp_path, "conv", f"1.{n}") for n in range(60)]
    for wheel in wheels[:50]:
        assert upload(primary.url + "/alice/dev/", auth, wheel) == 200
    for wheel in wheels[50:]:
        assert upload(replica.url + "/alice/dev/", auth, wheel) == 200
    # an upload relayed through the replica is readable there when the answer comes
    assert call(replica.url + "/alice/dev/conv/1.59")[0] == 200
    serial = converged(pair)
    assert status(replica.url)["serial"] == serial
    for path in ["/", "/alice", "/alice/dev", "/alice/dev/conv", "/alice/dev/conv/1.7"]:
        assert without_base(json_view(replica.url + path), replica.url) == \
            without_base(json_view(primary.url + path), primary.url), path
    versions = json_view(primary.url + "/alice/dev/conv")["result"]
    links = [link for data in versions.values() for link in data["+links"]]
    assert len([link for link in links if link["rel"] == "releasefile"]) == 60
    for link in links:
        relpath = link["href"][len(primary.url) + 1:]
        stored = pair.replica_blob(relpath)  # replicated, not fetched on demand
        assert stored is not None and stored == get_bytes(link["href"]), relpath
        assert hashlib.sha256(stored).hexdigest() == link["hashes"]["sha256"]
    seen = status(replica.url)
    assert seen["role"] == "REPLICA" and seen["primary-serial"] == serial
    assert seen["replication-lag"] == {"serials": 0, "seconds": 0.0}
    assert seen["replication-errors"] == {} and seen["primary-contacted-at"] is not None
    assert seen["replica-in-sync-at"] is not None and seen["primary-uuid"] == status(primary.url)["uuid"]
    polling = status(primary.url)["polling_replicas"]
    assert status(replica.url)["uuid"] in polling
    # a deletion sent to the replica: relayed, and the replica drops the body too
    gone = [link for link in json_view(primary.url + "/alice/dev/conv/1.1")["result"]["+links"]]
    code, body, _ = call(replica.url + "/alice/dev/conv/1.1?force", "DELETE", auth=auth)
    assert code == 200, body
    converged(pair)
    for link in gone:
        relpath = link["href"][len(primary.url) + 1:]
        assert pair.replica_blob(relpath) is None
        for base in (primary.url, replica.url):
            with pytest.raises(urllib.error.HTTPError) as e:
                get_bytes(f"{base}/{relpath}")
            assert e.value.code in (404, 410)


def test_files_not_replicated_yet_are_fetched_from_the_primary_on_demand(pair: Pair,
                                                                         tmp_path: Path) -> None:
    """A replica fetching no file eagerly: downloads still work, through the primary
    (for a mirror's file nobody downloaded yet, the primary gets it from PyPI)."""
    serverdir = tmp_path / "lazy"
    init_serverdir(serverdir, "--role", "replica", "--primary-url", pair.primary_url)
    lazy = Daemon(serverdir, "--role", "replica", "--primary-url", pair.primary_url,
                  "--secretfile", str(pair.secret), "--file-replication-skip-indexes", "all").start()
    try:
        serial = status(pair.primary.url)["serial"]
        deadline = time.monotonic() + 60
        while status(lazy.url)["serial"] < serial:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        link = json_view(lazy.url + "/alice/dev/conv/1.7")["result"]["+links"][0]
        relpath = link["href"][len(lazy.url) + 1:]
        assert not (serverdir / "+files" / relpath).exists()
        body = get_bytes(link["href"])
        assert hashlib.sha256(body).hexdigest() == link["hashes"]["sha256"]
        assert (serverdir / "+files" / relpath).read_bytes() == body  # kept for the next one
        # a mirror page asked of the replica is refreshed by the primary, then served here
        request = urllib.request.Request(lazy.url + "/root/pypi/+simple/mirlib/",
                                         headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            files = json.loads(response.read())["files"]
        wheel = next(f for f in files if f["filename"] == "mirlib-1.0-py3-none-any.whl")
        url = urllib.parse.urljoin(lazy.url + "/root/pypi/+simple/mirlib/", wheel["url"])
        body = get_bytes(url.split("#")[0])
        assert hashlib.sha256(body).hexdigest() == wheel["hashes"]["sha256"]
        assert status(lazy.url)["replication-errors"] == {}
    finally:
        lazy.stop()
    log = lazy.log.read_text()
    assert "Unhandled" not in log and "Traceback" not in log, log[-3000:]


def test_pip_installs_from_the_replica_with_primary_and_pypi_down(pair: Pair, fake: FakePyPI,
                                                                   tmp_path: Path) -> None:
    primary, replica = pair.primary, pair.replica
    # the primary fetches a dependency tree from PyPI; its cache replicates too
    pip("install", "--index-url", primary.url + "/alice/dev/+simple/", "--target",
        str(tmp_path / "via-primary"), "mirapp", "conv==1.3")
    converged(pair)
    request = urllib.request.Request(replica.url + "/root/pypi/+simple/mirlib/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # the replica's copy
        assert json.loads(response.read())["versions"] == ["1.0", "2.0"]
    primary.stop()
    fake.set(reset=True)  # PyPI unreachable
    try:
        target = tmp_path / "via-replica"
        out = pip("install", "--index-url", replica.url + "/alice/dev/+simple/", "--target",
                  str(target), "mirapp", "conv==1.59")
        assert "mirlib-2.0" in out
        assert (target / "conv" / "__init__.py").read_text() == "VERSION = '1.59'\n"
        # a write needs the primary: it fails clearly, nothing changes here
        assert upload(replica.url + "/alice/dev/", pair.auth or ("", ""),
                      make_wheel(tmp_path, "conv", "9.0")) == 502
    finally:
        fake.set(reset=None)
        primary.start()
    converged(pair)


def test_primary_killed_during_an_upload_burst_is_followed_after_restart(pair: Pair,
                                                                          tmp_path: Path) -> None:
    primary = pair.primary
    auth = pair.auth or login(primary.url, "alice", PASSWORD)
    wheels = [make_wheel(tmp_path, "burst", f"2.{n}") for n in range(40)]
    answered: list[int] = []

    def burst() -> None:
        for wheel in wheels:
            try:
                answered.append(upload(primary.url + "/alice/dev/", auth, wheel, timeout=10))
            except OSError:
                answered.append(-1)

    uploader = threading.Thread(target=burst)
    uploader.start()
    while len(answered) < 15:
        time.sleep(0.01)
    primary.kill9()
    uploader.join(60)
    assert -1 in answered  # the burst did hit the dead primary
    primary.start()
    for wheel in wheels[-3:]:  # a few more after the restart (again, if lost)
        assert upload(primary.url + "/alice/dev/", auth, wheel) in (200, 409)
    serial = converged(pair)
    # the replica's changelog is the primary's, serial for serial: none missing, none twice
    assert_same_changelog(pair, serial)
    # and every file the primary holds is here, byte for byte
    versions = json_view(primary.url + "/alice/dev/burst")["result"]
    acknowledged = {f"2.{n}" for n, code in enumerate(answered) if code == 200}
    assert len(acknowledged) >= 15 and acknowledged <= set(versions)  # nothing acknowledged lost
    for data in versions.values():
        for link in data["+links"]:
            stored = pair.replica_blob(link["href"][len(primary.url) + 1:])
            assert stored is not None
            assert hashlib.sha256(stored).hexdigest() == link["hashes"]["sha256"]


def assert_same_changelog(pair: Pair, serial: int) -> None:
    """The replica's changelog is the primary's up to ``serial``: none missing, none twice."""
    uuid = status(pair.replica.url)["uuid"]
    token = {"X-Devpi-Replica-Uuid": uuid, "X-Devpi-Expected-Primary-Id": ""}
    primary_log = []
    start = 0
    while start <= serial:
        token["Authorization"] = "Bearer " + replica_token(pair.secret, uuid)
        code, body = feed(pair.primary.url, f"/+changelog/{start}-", token)
        assert code == 200
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        primary_log += lines
        start = lines[-1]["serial"] + 1
    rows = pair.replica_changelog()
    assert [r[0] for r in rows] == list(range(serial + 1))
    assert [{"serial": s, "at": at, "records": json.loads(recs)} for s, at, recs in rows] == primary_log


def _send(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def test_a_browser_session_works_through_the_replica(pair: Pair) -> None:
    """The form login and a cookie write are relayed to the primary, which checks the
    Origin against the replica's URL (the relay says it in X-Outside-Url)."""
    replica = pair.replica
    assert call(replica.url + "/sess", "PUT", {"password": "sess-pw"})[0] == 201
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": replica.url}
    login_reply = _send(replica.url, "POST", "/+login",
                        b"username=sess&password=sess-pw&next=/sess/", form)
    assert login_reply.status == 303
    assert login_reply.getheader("Location") == replica.url + "/sess/"
    cookies = [value.split(";", 1)[0] for name, value in login_reply.getheaders()
               if name.lower() == "set-cookie"]
    assert [c.split("=", 1)[0] for c in cookies] == ["devpi_session", "devpi_csrf"]
    browser = {"Cookie": "; ".join(cookies), "Origin": replica.url,
               "Content-Type": "application/json"}
    refused = _send(replica.url, "PUT", "/sess/web", b"{}", browser)
    assert refused.status == 403
    token = cookies[1].split("=", 1)[1]
    made = _send(replica.url, "PUT", "/sess/web", b"{}", {**browser, "X-CSRF-Token": token})
    assert made.status == 200
    assert call(replica.url + "/sess/web")[0] == 200


def test_a_block_reaches_the_replica_through_the_changelog(pair: Pair, tmp_path: Path) -> None:
    """Issue 23: a version blocked on the primary's mirror disappears from the replica's
    pages of an inheriting index, its download there is refused, and unblocking restores."""
    primary, replica = pair.primary, pair.replica
    root = login(primary.url, "root", "")
    assert call(primary.url + "/root/polview", "PUT", {"bases": "root/pypi"}, root)[0] == 200
    pip("download", "--no-deps", "--index-url", primary.url + "/root/polview/+simple/",
        "--dest", str(tmp_path / "d"), "mirlib==2.0")  # the primary has the file
    simple = primary.url + "/root/pypi/+simple/mirlib/"
    with urllib.request.urlopen(urllib.request.Request(simple, headers={
            "Accept": "application/vnd.pypi.simple.v1+json"}), timeout=30) as response:
        blocked = urllib.parse.urlsplit(urllib.parse.urljoin(simple, next(
            f["url"] for f in json.loads(response.read())["files"]
            if f["filename"].startswith("mirlib-2.0-")))).path
    code, reply, _ = call(primary.url + "/root/pypi/+block", "POST",
                          {"project": "mirlib", "version": "2.0", "reason": "recalled"}, root)
    assert code == 200, reply
    try:
        converged(pair)
        simple = replica.url + "/root/polview/+simple/mirlib/"
        with urllib.request.urlopen(urllib.request.Request(simple, headers={
                "Accept": "application/vnd.pypi.simple.v1+json"}), timeout=30) as response:
            assert json.loads(response.read())["versions"] == ["1.0"]
        assert json_view(replica.url + "/root/pypi/+blocks")["result"][0]["reason"] == "recalled"
        out = pip("install", "--index-url", simple.rsplit("mirlib/", 1)[0], "--target",
                  str(tmp_path / "t"), "mirlib")
        assert "mirlib-1.0" in out
        try:
            urllib.request.urlopen(replica.url + blocked, timeout=30)
            raise AssertionError("the blocked file was served")
        except urllib.error.HTTPError as e:
            assert e.code == 403 and b"recalled" in e.read()
        code, why, _ = call(replica.url + "/root/polview/mirlib?policy")
        assert code == 200 and why["result"][0]["rules"][0]["detail"].startswith(
            "blocked by root on ")
    finally:
        code, reply, _ = call(primary.url + "/root/pypi/+unblock", "POST",
                              {"project": "mirlib", "version": "2.0"}, root)
        assert code == 200, reply
    converged(pair)
    with urllib.request.urlopen(urllib.request.Request(
            replica.url + "/root/polview/+simple/mirlib/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"}), timeout=30) as response:
        assert json.loads(response.read())["versions"] == ["1.0", "2.0"]


def _list(url: str, accept: str, coding: str | None = None,
          etag: str | None = None) -> tuple[int, bytes, Any]:
    """A project list as sent: (status, body as sent, headers)."""
    headers = {"Accept": accept, "Accept-Encoding": coding or "identity"}
    if etag:
        headers["If-None-Match"] = etag
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


_DECODE = {"gzip": gzip.decompress, "br": brotli.decompress,
           "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)}
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def _lists_agree(pair: Pair, path: str, wanted: set[str]) -> dict[str, str]:
    """The project list at ``path`` on both nodes, in both formats and every coding: the
    same names (``wanted`` among them), each coding the identity body, each ETag a 304;
    returns the ETags by node, format and coding."""
    etags = {}
    for node in (pair.primary.url, pair.replica.url):
        deadline = time.monotonic() + 30  # the mirror's upstream list arrives in the background
        while True:
            code, body, headers = _list(node + path, _SIMPLE_JSON)
            names = {p["name"] for p in json.loads(body)["projects"]}
            if wanted <= names or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 200 and wanted <= names, (node, names)
        for accept in (_SIMPLE_JSON, "text/html"):
            code, identity, headers = _list(node + path, accept)
            assert code == 200 and headers["Content-Encoding"] is None
            assert headers["Vary"] == "Accept, Accept-Encoding"
            assert int(headers["Content-Length"]) == len(identity)
            etags[f"{node} {accept} identity"] = headers["ETag"]
            for coding, decode in _DECODE.items():
                code, sent, headers = _list(node + path, accept, f"{coding}, identity;q=0.5")
                assert code == 200 and headers["Content-Encoding"] == coding
                assert decode(sent) == identity, (node, accept, coding)
                etags[f"{node} {accept} {coding}"] = etag = headers["ETag"]
                assert _list(node + path, accept, coding, etag)[0] == 304
    for node in (pair.primary.url, pair.replica.url):  # one per format and coding
        mine = [etag for key, etag in etags.items() if key.startswith(node + " ")]
        assert len(set(mine)) == len(mine) == 8
    return etags


def test_project_lists_precompressed_with_etags_renewed_by_uploads_and_upstream(
        pair: Pair, fake: FakePyPI, tmp_path: Path) -> None:
    """+simple/ of an index inheriting a mirror: each coding decompresses to the identity
    body, ETag/304, and a new state after an upload and after upstream's list changed,
    on the primary and the replica."""
    primary = pair.primary
    root = login(primary.url, "root", "")
    mirror = {"type": "mirror", "mirror_url": fake.url, "mirror_cache_expiry": 1}
    assert call(primary.url + "/root/listmirror", "PUT", mirror, root)[0] == 200
    assert call(primary.url + "/root/lists", "PUT", {"bases": ["root/listmirror"]}, root)[0] == 200
    assert upload(primary.url + "/root/lists/", root, make_wheel(tmp_path, "listed", "1.0")) == 200
    converged(pair)
    before = _lists_agree(pair, "/root/lists/+simple/", {"listed", "mirapp", "mirlib"})
    assert upload(primary.url + "/root/lists/", root, make_wheel(tmp_path, "listed2", "1.0")) == 200
    converged(pair)
    after = _lists_agree(pair, "/root/lists/+simple/", {"listed", "listed2", "mirapp"})
    assert not set(before.values()) & set(after.values())
    assert after == _lists_agree(pair, "/root/lists/+simple/", set())  # kept, not renewed
    added = f"upnew{time.time_ns() % 10**9}"  # the fake PyPI serves every pair of the module
    fake.add(make_wheel(tmp_path, added, "1.0"))
    time.sleep(1.1)  # the mirror's list has expired: asked for again in the background
    renewed = _lists_agree(pair, "/root/lists/+simple/", {"listed", "listed2", added})
    assert not set(after.values()) & set(renewed.values())


def test_a_big_mirror_page_goes_out_of_a_file_in_each_coding(pair: Pair, fake: FakePyPI,
                                                              tmp_path: Path) -> None:
    """A page past 256 KB (1,000 files) is sent from a spool file (sendfile) in each coding."""
    if not any(r["path"] == "/simple/bigmirrored/" for r in fake.requests()[-5000:]):
        wheel = make_wheel(tmp_path, "bigmirrored", "1.0")
        for n in range(1000):  # the same bytes under 1,000 names (the fake takes any)
            fake.add(wheel.rename(wheel.with_name(f"bigmirrored-1.{n}-py3-none-any.whl")))
            wheel = wheel.with_name(f"bigmirrored-1.{n}-py3-none-any.whl")
    for node in (pair.primary.url, pair.replica.url):
        url = node + "/root/pypi/+simple/bigmirrored/"
        for accept in (_SIMPLE_JSON, "text/html"):
            code, identity, headers = _list(url, accept)
            assert code == 200 and headers["Content-Encoding"] is None
            assert len(identity) > (256 << 10 if accept == _SIMPLE_JSON else 0)  # (HTML: 210 KB)
            assert identity.count(b"bigmirrored-1.") >= 1000
            for coding, decode in _DECODE.items():
                code, sent, headers = _list(url, accept, coding)
                assert code == 200 and headers["Content-Encoding"] == coding
                assert decode(sent) == identity, (node, accept, coding)
