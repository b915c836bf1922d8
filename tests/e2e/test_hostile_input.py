"""Issue 19 items 6, 7 and 9 against the real daemon (sqlite; PostgreSQL with workers):
hostile requests get a 4xx, the log gets no traceback, secrets stay masked."""

from __future__ import annotations

import json
import socket

from tests.support import Daemon, call, login

SECRET = "s3cretXYZ"


def _raw(daemon: Daemon, request: bytes) -> bytes:
    """The status line the daemon answers ``request`` with."""
    host, port = daemon.url.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_hostile_requests_get_a_4xx_and_log_no_traceback(daemon: Daemon) -> None:
    before = daemon.log.read_text()
    root = login(daemon.url, "root", "")
    for url in ("http://h.example:abc/simple/", f"http://bob:{SECRET}@h.example:99999/simple/"):
        status, reply, _ = call(daemon.url + "/root/bad", "PUT", {"type": "mirror", "mirror_url": url},
                                auth=root)
        assert status == 400 and SECRET not in json.dumps(reply)
    deep = b"[" * 1000 + b"]" * 1000
    for method, path, body in (("PUT", "/hostile", deep), ("POST", "/+login", deep),
                               ("PUT", "/hostile", b'{"password": "\\ud800"}'),
                               ("PUT", "/hostile", json.dumps({"password": "x" * 5000}).encode()),
                               ("PUT", "/%2E%2E", b'{"password": "x"}'),
                               ("PUT", "/" + "n" * 10_000, b'{"password": "x"}'),
                               ("PUT", "/a%E2%80%8Bb", b'{"password": "x"}')):
        assert call(daemon.url + path, method, raw=body)[0] == 400, path
    for request in (b"GET /%ff%fe/ HTTP/1.0\r\n\r\n", b"GET /root/%ff/+simple/x/ HTTP/1.0\r\n\r\n",
                    b"GET /root/pypi/+f/a/%ff.whl HTTP/1.0\r\n\r\n", b"GET /a%00b HTTP/1.0\r\n\r\n",
                    b"GET /root/pypi?%C3%B8 HTTP/1.0\r\n\r\n", b"GET /root/pypi?v=%ff HTTP/1.0\r\n\r\n"):
        assert _raw(daemon, request).split(b" ")[1] in (b"200", b"400"), request
    for path in ("/", "/root", "/root/pypi"):
        assert call(daemon.url + path)[0] == 200
    assert "Traceback" not in daemon.log.read_text()[len(before):]


def test_mirror_credentials_are_masked_everywhere_shown(daemon: Daemon) -> None:
    root = login(daemon.url, "root", "")
    url = f"https://bob:{SECRET}@127.0.0.1:9/simple/?token={SECRET}"
    status, reply, _ = call(daemon.url + "/root/private", "PUT", {"type": "mirror", "mirror_url": url},
                            auth=root)
    assert status == 200 and SECRET not in json.dumps(reply)
    for path in ("/", "/root", "/root/private", "/+status", "/root/private/+simple/pkg/"):
        status, shown, _ = call(daemon.url + path)
        assert status < 600 and SECRET not in json.dumps(shown), path
    assert call(daemon.url + "/root/private", "DELETE", auth=root)[0] == 201
    assert SECRET not in daemon.log.read_text()
