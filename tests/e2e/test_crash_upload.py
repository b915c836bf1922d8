"""A crash in the middle of a big upload leaves nothing behind, and the upload can be redone."""

from __future__ import annotations

import base64
import http.client
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support import Daemon, call, init_serverdir, login

BOUNDARY = "crash-test-boundary"
SIZE = 200 * 1024 * 1024


def _head(name: str, filename: str) -> bytes:
    fields = [(":action", "file_upload"), ("name", name), ("version", "1.0"), ("protocol_version", "1")]
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


def test_kill_9_during_a_200_mb_upload(tmp_path: Path) -> None:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    daemon = Daemon(serverdir).start()
    assert call(daemon.url + "/alice", "PUT", {"password": "pw"})[0] == 201
    assert call(daemon.url + "/alice/dev", "PUT", {}, login(daemon.url, "alice", "pw"))[0] == 200
    auth = base64.b64encode(b"alice:pw").decode()
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
