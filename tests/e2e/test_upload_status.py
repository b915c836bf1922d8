"""Status lines of refused uploads, side by side with the real devpi-server 6.20.

twine and devpi-client print the reason phrase of a refused upload, so ours must be
devpi's: its own text where devpi puts one there ("409 F already exists in
non-volatile index"), the plain phrase where devpi has none ("401 Unauthorized").
Our explanation stays in the JSON body. Every case below is sent to a running
devpi-server 6.x (tests/dump/devpi6.py) and to our daemon (sqlite; PostgreSQL with
workers), both set up alike, and the status lines must be equal.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import subprocess
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.dump.devpi6 import running
from tests.support import Daemon, bin_path, call, init_serverdir, login

LIMIT = 200_000  # --max-request-body-size of both servers
BOUNDARY = "upload-status-boundary"
WHEEL = "pkg-1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def devpi6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running(tmp_path_factory.mktemp("devpi6"), "--max-request-body-size", str(LIMIT)) as server:
        _prepare(server.url)
        yield server.url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def ours(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serverdir = tmp_path_factory.mktemp("server") / "state"
    storage: list[str] = []
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        storage = ["--storage", cluster.storage_option(cluster.create_database()), "--workers", "2"]
    init_serverdir(serverdir, "--no-root-pypi", *storage[:2])
    running = Daemon(serverdir, "--max-request-body-size", str(LIMIT), *storage).start()
    try:
        _prepare(running.url)
        yield running.url
    finally:
        running.stop()


def _wheel(name: str, version: str, extra: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n{extra}")
        info = f"{name}-{version}.dist-info"
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return buf.getvalue()


def _form(fields: list[tuple[str, str]], files: list[tuple[str, bytes]] | None = None) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields]
    parts += [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; filename="{name}"'
              f'\r\nContent-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n"
              for name, data in files or []]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _post(url: str, path: str, body: bytes, auth: tuple[str, str] | None,
          ctype: str = f"multipart/form-data; boundary={BOUNDARY}",
          headers: dict[str, str] | None = None) -> tuple[int, str, bytes, str]:
    """(status, reason phrase, body, content type) of one POST."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    sent = {"Content-Type": ctype, "Accept": "application/json", **(headers or {})}
    if auth is not None:
        sent["X-Devpi-Auth"] = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("POST", path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.reason, response.read(), response.getheader(
            "Content-Type", "")
    finally:
        conn.close()


def _prepare(url: str) -> None:
    """alice (owning the non-volatile alice/stable with pkg 1.0 and its docs, and the mirror
    alice/mir) and bob, who may upload nowhere."""
    for user in ("alice", "bob"):
        assert call(url + f"/{user}", "PUT", {"password": f"{user}-pass"})[0] == 201
    alice = login(url, "alice", "alice-pass")
    assert call(url + "/alice/stable", "PUT", {"volatile": False}, alice)[0] == 200
    assert call(url + "/alice/mir", "PUT", {"type": "mirror",
                                            "mirror_url": "http://127.0.0.1:9/simple/"}, alice)[0] == 200
    good = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
    assert _post(url, "/alice/stable/", _form(good, [(WHEEL, _wheel("pkg", "1.0"))]), alice)[0] == 200
    doc = io.BytesIO()
    with zipfile.ZipFile(doc, "w") as archive:
        archive.writestr("index.html", "<p>docs</p>")
    docs = _form([(":action", "doc_upload"), ("name", "pkg"), ("version", "1.0")],
                 [("pkg.zip", doc.getvalue())])
    assert _post(url, "/alice/stable/", docs, alice)[0] == 200


GOOD = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
WRONG_BASIC = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()}
# name: (path, body, who: alice / bob / None / a bad token, content type, extra headers)
CASES: dict[str, tuple[str, bytes, str | None, str | None, dict[str, str]]] = {
    "identical re-upload": ("/alice/stable/", _form(GOOD, [(WHEEL, _wheel("pkg", "1.0"))]),
                            "alice", None, {}),
    "non-volatile conflict": ("/alice/stable/", _form(GOOD, [(WHEEL, _wheel("pkg", "1.0", "x=2"))]),
                              "alice", None, {}),
    "not logged in": ("/alice/stable/", _form(GOOD, [(WHEEL, b"x")]), None, None, {}),
    "wrong basic password": ("/alice/stable/", _form(GOOD, [(WHEEL, b"x")]), None, None,
                             WRONG_BASIC),
    "forged token": ("/alice/stable/", _form(GOOD, [(WHEEL, b"x")]), "forged", None, {}),
    "urlencoded, not logged in": ("/alice/stable/", b":action=submit&name=zz&version=1.0", None,
                                  "application/x-www-form-urlencoded", {}),
    "forbidden": ("/alice/stable/", _form(GOOD, [(WHEEL, b"x")]), "bob", None, {}),
    "mirror index": ("/alice/mir/", _form(GOOD, [(WHEEL, b"x")]), "alice", None, {}),
    "no such index": ("/alice/nope/", _form(GOOD, [(WHEEL, b"x")]), "alice", None, {}),
    "no such user": ("/nobody/nope/", _form(GOOD, [(WHEEL, b"x")]), "alice", None, {}),
    "no :action": ("/alice/stable/", _form(GOOD[1:], [(WHEEL, b"x")]), "alice", None, {}),
    "empty :action": ("/alice/stable/", _form([(":action", ""), ("name", "pkg")]), "alice", None, {}),
    "urlencoded without :action": ("/alice/stable/", b"name=zz&version=1.0", "alice",
                                   "application/x-www-form-urlencoded", {}),
    "unknown :action": ("/alice/stable/", _form([(":action", "frob"), *GOOD[1:]]), "alice", None, {}),
    "no content": ("/alice/stable/", _form(GOOD), "alice", None, {}),
    "version not in filename": ("/alice/stable/", _form(
        [(":action", "file_upload"), ("name", "pkg"), ("version", "2.0")], [(WHEEL, b"x")]),
        "alice", None, {}),
    "bad archive name": ("/alice/stable/", _form(GOOD, [("pkg-1.0.tar.xz", b"x")]), "alice", None, {}),
    "file of another project": ("/alice/stable/", _form(
        [(":action", "file_upload"), ("name", "other"), ("version", "1.0")], [(WHEEL, b"x")]),
        "alice", None, {}),
    "submit without name": ("/alice/stable/", _form([(":action", "submit"), ("version", "1.0")]),
                            "alice", None, {}),
    "docs without version for a project without releases": ("/alice/stable/", _form(
        [(":action", "doc_upload"), ("name", "fresh")], [("fresh.zip", b"not a zip at all")]),
        "alice", None, {}),
    "other doc zip to non-volatile": ("/alice/stable/", _form(
        [(":action", "doc_upload"), ("name", "pkg"), ("version", "1.0")],
        [("pkg.zip", _wheel("pkg", "1.0"))]), "alice", None, {}),
    "broken multipart": ("/alice/stable/", b"garbage", "alice", "multipart/form-data; boundary=zzz",
                         {}),
    "not a form, not JSON": ("/alice/stable/", b"garbage", None, "text/plain", {}),
    "too large": ("/alice/stable/", _form(GOOD, [(WHEEL, b"x" * (LIMIT + 1))]), "alice", None, {}),
}


def _auth(url: str, who: str | None) -> tuple[str, str] | None:
    if who in ("alice", "bob"):
        return login(url, who, f"{who}-pass")
    return None if who is None else ("alice", "not-a-token")


@pytest.mark.parametrize("case", list(CASES))
def test_refused_upload_has_devpi_status_line(devpi6: str, ours: str, case: str) -> None:
    path, body, who, ctype, headers = CASES[case]
    kwargs = {"ctype": ctype} if ctype else {}
    lines = []
    for url in (devpi6, ours):
        status, reason, reply, reply_type = _post(url, path, body, _auth(url, who), headers=headers,
                                                  **kwargs)
        lines.append(f"{status} {reason}")
    devpi_line, our_line = lines
    assert our_line == devpi_line, (devpi_line, our_line)
    if status >= 400:  # our own explanation is in the body
        assert reply_type.startswith("application/json")
        assert json.loads(reply)["message"]


def _devpi_client(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = dict(os.environ, DEVPI_CLIENTDIR=str(home / "client"), HOME=str(home),
               PIP_CONFIG_FILE=os.devnull)

    def devpi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([bin_path("devpi"), *args], env=env, capture_output=True, text=True,
                              timeout=120)
    return devpi


def test_devpi_upload_after_logoff_prints_unauthorized(ours: str, tmp_path: Path) -> None:
    """devpi-client prints ``401 FAIL file_upload of F to URL`` and then the reason phrase."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "late-1.0-py3-none-any.whl").write_bytes(_wheel("late", "1.0"))
    devpi = _devpi_client(tmp_path)
    assert devpi("use", ours + "/alice/stable").returncode == 0
    assert devpi("login", "alice", "--password", "alice-pass").returncode == 0
    assert devpi("logoff").returncode == 0
    done = devpi("upload", "--from-dir", str(dist))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    lines = [line.strip() for line in output.splitlines()]
    fail = next(i for i, line in enumerate(lines) if "FAIL file_upload" in line)
    assert lines[fail].startswith("401 FAIL file_upload of late-1.0-py3-none-any.whl"), output
    assert lines[fail + 1] == "Unauthorized", output


def test_devpi_upload_of_versionless_docs_for_a_project_without_releases(
        ours: str, tmp_path: Path) -> None:
    """devpi's answer comes before anything looks into the archive (a broken one here)."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "unreleased.doc.zip").write_bytes(b"no zip inside")
    devpi = _devpi_client(tmp_path)
    assert devpi("use", ours + "/alice/stable").returncode == 0
    assert devpi("login", "alice", "--password", "alice-pass").returncode == 0
    done = devpi("upload", "--only-docs", "--from-dir", str(dist))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "400 FAIL doc_upload of unreleased.doc.zip" in output, output
    assert "doczip has no version and 'unreleased' has no releases to derive one from" in output
