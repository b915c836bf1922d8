"""A crash in the middle of a big upload leaves nothing behind, and the upload can be redone;
uploads acknowledged one after another just before a kill -9 are all there after it."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tests.support import Daemon, call, init_serverdir, login, make_wheel

BOUNDARY = "crash-test-boundary"
SIZE = 200 * 1024 * 1024


def _head(name: str, filename: str, version: str = "1.0") -> bytes:
    fields = [(":action", "file_upload"), ("name", name), ("version", version), ("protocol_version", "1")]
    parts = b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                     for k, v in fields)
    return parts + (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
                    f'filename="{filename}"\r\n\r\n').encode()


def _send(url: str, auth: str, total_body: int, head: bytes, sent: list[int], limit: int | None) -> int:
    address = urlsplit(url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    conn.putrequest("POST", "/alice/dev/")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Authorization", f"Basic {auth}")
    conn.putheader("Content-Length", str(len(head) + total_body + len(tail)))
    conn.endheaders()
    conn.send(head)
    chunk = os.urandom(1024 * 1024)
    for _ in range(total_body // len(chunk)):
        if limit is not None and sent[0] >= limit:
            time.sleep(0.05)
            continue
        conn.send(chunk)
        sent[0] += len(chunk)
    conn.send(tail)
    status = conn.getresponse().status
    conn.close()
    return status


def _daemon(tmp_path: Path) -> tuple[Path, Daemon, str]:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    daemon = Daemon(serverdir).start()
    assert call(daemon.url + "/alice", "PUT", {"password": "pw"})[0] == 201
    assert call(daemon.url + "/alice/dev", "PUT", {}, login(daemon.url, "alice", "pw"))[0] == 200
    return serverdir, daemon, base64.b64encode(b"alice:pw").decode()


def test_kill_9_during_a_200_mb_upload(tmp_path: Path) -> None:
    serverdir, daemon, auth = _daemon(tmp_path)
    head = _head("big", "big-1.0.tar.gz")  # random bytes: no wheel (a .whl must be a zip)
    sent = [0]
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            _send(daemon.url, auth, SIZE, head, sent, limit=SIZE // 2)
        except (OSError, http.client.HTTPException) as e:
            errors.append(e)

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 60
    while sent[0] < SIZE // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent[0] >= SIZE // 2
    daemon.kill9()
    thread.join(60)
    assert errors, "the upload should have failed with the server gone"
    daemon.start()
    try:
        assert call(daemon.url + "/alice/dev")[1]["result"]["projects"] == []
        assert not [p for p in (serverdir / "+files").rglob("*") if p.is_file()]
        assert not list((serverdir / ".uploads").iterdir())
        status = _send(daemon.url, auth, 8 * 1024 * 1024, head, [0], limit=None)
        assert status == 200
        assert call(daemon.url + "/alice/dev")[1]["result"]["projects"] == ["big"]
    finally:
        daemon.stop()


def test_uploads_acknowledged_before_a_kill_9_are_all_there(tmp_path: Path) -> None:
    """Wheels uploaded one after another over one connection (as twine sends them), the
    server killed the moment the last is acknowledged: every one is listed after the
    restart, its body and its core metadata (PEP 658) served with the hashes its page
    names, and its audit row (stored in the upload's own transaction)."""
    serverdir, daemon, auth = _daemon(tmp_path)
    address = urlsplit(daemon.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    sent = {}
    try:
        for n in range(30):
            wheel = make_wheel(tmp_path, "fast", f"1.{n}")
            data = wheel.read_bytes()
            body = _head("fast", wheel.name, f"1.{n}") + data + f"\r\n--{BOUNDARY}--\r\n".encode()
            conn.request("POST", "/alice/dev/", body, {
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Authorization": f"Basic {auth}"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.reason
            sent[wheel.name] = hashlib.sha256(data).hexdigest()
        daemon.kill9()
    finally:
        conn.close()
    daemon.start()
    try:
        status, page, _ = call(daemon.url + "/alice/dev/+simple/fast/", headers={
            "Accept": "application/vnd.pypi.simple.v1+json"})
        assert status == 200
        files = {f["filename"]: f for f in page["files"]}
        assert {name: f["hashes"]["sha256"] for name, f in files.items()} == sent
        for name in list(sent)[-3:]:  # the last ones, acknowledged just before the kill
            url = urljoin(daemon.url + "/alice/dev/+simple/fast/", files[name]["url"])
            with urllib.request.urlopen(url) as got:
                assert hashlib.sha256(got.read()).hexdigest() == sent[name]
            with urllib.request.urlopen(url.split("#")[0] + ".metadata") as got:
                metadata = got.read()
            assert hashlib.sha256(metadata).hexdigest() == files[name]["core-metadata"]["sha256"]
            assert b"Name: fast" in metadata
        status, body, _ = call(daemon.url + "/+audit?kind=upload&index=alice/dev",
                               auth=login(daemon.url, "root", ""))
        assert status == 200, body
        assert sorted(e["details"]["filename"] for e in body["result"]["events"]) == sorted(sent)
    finally:
        daemon.stop()
