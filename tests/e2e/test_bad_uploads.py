"""A few hundred malformed uploads: each answered 4xx, nothing stored, the server keeps serving."""

from __future__ import annotations

import base64
import http.client
import itertools
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support import Daemon, call, init_serverdir, login

BOUNDARY = "----devpi-twisted-test"


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]],
              boundary: str = BOUNDARY) -> bytes:
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                     + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def upload_fields(name: str = "good-pkg", version: str = "1.0", action: str = "file_upload"
                  ) -> list[tuple[str, str]]:
    return [(":action", action), ("name", name), ("version", version), ("protocol_version", "1")]


def cases() -> Iterator[tuple[str, bytes, str]]:
    """(description, body, content type)."""
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    wheel = b"PK\x05\x06" + b"\x00" * 18
    traversal = ["../../x-1.0.whl", "..\\x-1.0.whl", "/etc/good_pkg-1.0.tar.gz", "a/good_pkg-1.0.tar.gz",
                 "good_pkg-1.0.tar.gz\x00.whl", ".good_pkg-1.0.tar.gz", "..", "good_pkg-1.0/../x.whl"]
    for filename in traversal:
        yield f"path {filename!r}", multipart(upload_fields(), [("content", filename, wheel)]), ctype
    wrong = ["good_pkg-2.0-py3-none-any.whl", "other_pkg-1.0-py3-none-any.whl", "good_pkg-1.0.tar.xz",
             "good_pkg-1.0.tar", "good_pkg-1.0.txt", "good_pkg.whl", "good_pkg-1.0"]
    for filename in wrong:
        yield f"filename {filename!r}", multipart(upload_fields(), [("content", filename, wheel)]), ctype
    versions = ["", "1.0<script>", "1.0%00", '1"0', "1.0#frag", "x" * 5000, "1.0>"]
    names = ["", "-bad", "bad-", "b@d", "b%d", "<pkg>", "p" * 300 + "!"]
    for version in versions:
        yield (f"version {version[:20]!r}",
               multipart(upload_fields(version=version), [("content", f"good_pkg-{version}.tar.gz", wheel)]),
               ctype)
    for name in names:
        yield (f"name {name[:20]!r}",
               multipart(upload_fields(name=name), [("content", f"{name}-1.0.tar.gz", wheel)]), ctype)
    yield "no action", multipart(upload_fields()[1:], [("content", "good_pkg-1.0.tar.gz", wheel)]), ctype
    yield "bad action", multipart(upload_fields(action="remove_all"), []), ctype
    yield "no content", multipart(upload_fields(), []), ctype
    yield "two contents", multipart(upload_fields(), [("content", "good_pkg-1.0.tar.gz", wheel)] * 2), ctype
    yield "empty body", b"", ctype
    yield "text body", b"just some text", "text/plain"
    yield "json body", b'{"name": "x"}', "application/json"
    yield "no boundary", multipart(upload_fields(), []), "multipart/form-data"
    yield "wrong boundary", multipart(upload_fields(), [], boundary="other"), ctype
    full = multipart(upload_fields(), [("content", "good_pkg-1.0.tar.gz", wheel)])
    for cut in range(10, len(full) - 5, max(len(full) // 110, 1)):
        yield f"truncated at {cut}", full[:cut], ctype
    yield "part without headers", b"--" + BOUNDARY.encode() + b"\r\n\r\nvalue\r\n" + full, ctype
    headers = ['Content-Disposition: form-data; name=":action"\r\nContent-Disposition: x',
               "Content-Disposition: form-data", 'Content-Disposition: form-data; name="x' + "y" * 9000 + '"']
    for header in headers:
        body = f"--{BOUNDARY}\r\n{header}\r\n\r\nvalue\r\n--{BOUNDARY}--\r\n".encode()
        yield f"header {header[:30]!r}", body, ctype


ALL_CASES = list(cases())


@pytest.fixture(scope="module")
def upload_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    serverdir = tmp_path_factory.mktemp("bad") / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    daemon = Daemon(serverdir).start()
    try:
        assert call(daemon.url + "/alice", "PUT", {"password": "pw"})[0] == 201
        token = login(daemon.url, "alice", "pw")
        assert call(daemon.url + "/alice/dev", "PUT", {}, token)[0] == 200
        yield daemon, base64.b64encode(b"alice:pw").decode()
    finally:
        daemon.stop()


def test_there_are_a_few_hundred_cases() -> None:
    assert len(ALL_CASES) * 2 >= 300  # each case is sent with and without credentials


@pytest.mark.parametrize("authenticated", [True, False])
def test_malformed_uploads_are_refused_and_store_nothing(
        upload_target: tuple[Daemon, str], authenticated: bool) -> None:
    daemon, basic = upload_target
    address = urlsplit(daemon.url)
    serial = call(daemon.url + "/+status")[1]["result"]["serial"]
    for (description, body, ctype), path in zip(ALL_CASES, itertools.cycle(["/alice/dev/", "/alice/dev"])):
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        headers = {"Content-Type": ctype}
        if authenticated:
            headers["Authorization"] = f"Basic {basic}"
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        # without credentials an upload form is refused before it is read
        expected = (401,) if not authenticated and ctype.startswith("multipart") else range(400, 500)
        assert response.status in expected, (description, response.status, response.reason)
        if authenticated:
            assert response.reason and "\n" not in response.reason, description
    assert call(daemon.url + "/+status")[1]["result"]["serial"] == serial
    assert call(daemon.url + "/alice/dev")[1]["result"]["projects"] == []
    staging = daemon.serverdir / ".uploads"
    assert not list(staging.iterdir()), "spooled upload files were left behind"
    files = daemon.serverdir / "+files"
    assert not [p for p in files.rglob("*") if p.is_file()], "a file body was stored"
    assert "Traceback" not in daemon.log.read_text()
