"""Hostile HTTP against the real daemon (sqlite; PostgreSQL with workers): impossible
lengths and chunk sizes answered at once, JSON bodies held to the JSON limit wherever
they arrive, documentation pages streamed (memory stays flat whatever a page inflates
to) and served in a sandbox."""

from __future__ import annotations

import base64
import http.client
import io
import os
import socket
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import Daemon, call, login

MiB = 1024 * 1024
BOMB = 256 * MiB  # what the bomb's index.html inflates to


def doc_zip(pages: dict[str, bytes | int]) -> bytes:
    """A doc zip; an int is the size of a page of spaces (it compresses ~1000:1)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, page in pages.items():
            if isinstance(page, int):
                with archive.open(name, "w", force_zip64=True) as member:
                    block = b" " * MiB
                    for _ in range(page // MiB):
                        member.write(block)
            else:
                archive.writestr(name, page)
    return out.getvalue()


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             .encode() for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload_docs(url: str, auth: tuple[str, str], name: str, version: str, zipped: bytes) -> int:
    body, ctype = multipart({":action": "doc_upload", "name": name, "version": version},
                            f"{name}-{version}.doc.zip", zipped)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.request("POST", parts.path, body, {"Content-Type": ctype, "X-Devpi-Auth": token})
    status = conn.getresponse().status
    conn.close()
    return status


def raw_exchange(url: str, head: bytes, body: bytes = b"", timeout: float = 20) -> bytes:
    """Send ``head`` (and ``body``) on a fresh connection; everything the server sends
    until it closes (a socket timeout fails the test: the server must not hang)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def docs_index(daemon: Daemon) -> tuple[str, tuple[str, str]]:
    """root/docs, volatile, with root's login."""
    root = login(daemon.url, "root", "")
    assert call(daemon.url + "/root/docs", "PUT", {}, root)[0] == 200
    return daemon.url + "/root/docs", root


def _processes(pid: int) -> list[int]:
    """``pid`` and its children (the workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_page_inflating_to_256_mib_is_streamed_in_flat_memory(
        daemon: Daemon, docs_index: tuple[str, tuple[str, str]]) -> None:
    """First in the module: the peak RSS (VmHWM) has not been raised by other tests."""
    url, root = docs_index
    zipped = doc_zip({"index.html": BOMB})
    assert len(zipped) < MiB
    assert upload_docs(url, root, "bomb", "1.0", zipped) == 200
    assert daemon.proc is not None
    before = {pid: _status_kib(pid, "VmRSS") for pid in _processes(daemon.proc.pid)}
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", parts.path + "/bomb/1.0/+doc/index.html")
    response = conn.getresponse()
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == BOMB
    received = 0
    while chunk := response.read(MiB):
        assert chunk.count(b" ") == len(chunk)
        received += len(chunk)
    conn.close()
    assert received == BOMB
    for pid, rss in before.items():  # the page never was in memory whole, in any process
        assert _status_kib(pid, "VmHWM") - rss < 64 * 1024, pid


def test_doc_pages_are_sandboxed_and_plus_doc_is_the_index(
        docs_index: tuple[str, tuple[str, str]]) -> None:
    url, root = docs_index
    pages = {"index.html": b"<h1>home</h1>", "img/logo.svg": b"<svg><script>1</script></svg>",
             "api/index.html": b"<h1>api</h1>"}
    assert upload_docs(url, root, "paged", "2.0", doc_zip(pages)) == 200
    base = url + "/paged/2.0/+doc"
    for path, expected in [("", b"<h1>home</h1>"), ("/", b"<h1>home</h1>"),
                           ("/index.html", b"<h1>home</h1>"), ("/api/", b"<h1>api</h1>"),
                           ("/img/logo.svg", pages["img/logo.svg"])]:
        parts = urlsplit(base + path)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", parts.path, headers={"Accept": "text/html"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, expected), path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"]
        assert policy.startswith("sandbox") and "allow-same-origin" not in policy
        conn.close()
    assert call(base + "/nothing.html")[0] == 404


def test_a_doc_zip_of_too_many_files_is_refused_at_upload(
        docs_index: tuple[str, tuple[str, str]]) -> None:
    """Its directory alone would take ~11 times its size in memory on every page read."""
    url, root = docs_index
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(40_000):
            archive.writestr(f"{i:090d}.html", b"")
    assert upload_docs(url, root, "crowded", "1.0", out.getvalue()) == 400
    assert call(url + "/crowded/1.0/+doc/")[0] == 404


def test_parallel_first_reads_of_docs_all_succeed(
        docs_index: tuple[str, tuple[str, str]]) -> None:
    """On PostgreSQL the doc zip is first copied out to a staging file: requests at
    once each copy to a file of their own (they shared one, and some got a 500)."""
    url, root = docs_index
    pages: dict[str, bytes | int] = {"index.html": 8 * MiB, "noise.bin": os.urandom(16 * MiB)}
    assert upload_docs(url, root, "raced", "1.0", doc_zip(pages)) == 200
    parts = urlsplit(url)

    def read_page() -> tuple[int, int]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.request("GET", parts.path + "/raced/1.0/+doc/index.html")
            response = conn.getresponse()
            return response.status, len(response.read())
        finally:
            conn.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: read_page(), range(6)))
    assert results == [(200, 8 * MiB)] * 6


@pytest.mark.parametrize("length", [str(2 ** 70), "9" * 40, "9" * 5000])
def test_an_impossible_content_length_is_413_at_once(daemon: Daemon, length: str) -> None:
    head = (f"PUT /alice HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    response = raw_exchange(daemon.url, head, b'{"password": "')
    assert status_of(response) == 413, response
    assert b"larger than" in response
    assert call(daemon.url + "/alice")[0] == 404


@pytest.mark.parametrize("length", ["-1", "abc", "0x10", "1 2"])
def test_a_content_length_that_is_no_number_is_400_at_once(daemon: Daemon, length: str) -> None:
    head = (f"POST /+login HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n").encode()
    assert status_of(raw_exchange(daemon.url, head)) == 400


def test_an_upload_declaring_more_than_the_upload_limit_is_413_at_once(
        daemon: Daemon, docs_index: tuple[str, tuple[str, str]]) -> None:
    path = urlsplit(docs_index[0]).path
    head = (f"POST {path}/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b"
            f"\r\nContent-Length: {2 ** 40}\r\n\r\n").encode()
    assert status_of(raw_exchange(daemon.url, head, b"--b\r\n")) == 413


def test_a_huge_chunk_size_is_413_at_once(daemon: Daemon) -> None:
    head = (b"POST /root/pypi/+f/a/b/x-1.0.tar.gz HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    response = raw_exchange(daemon.url, head, b"F" * 40 + b"\r\n{")
    assert status_of(response) == 413, response


def test_a_chunked_json_body_over_the_limit_is_413_before_it_ends(daemon: Daemon) -> None:
    """11 MiB of a toxresult in 1 MiB chunks, never finished: answered anyway."""
    head = (b"POST /root/pypi/+f/a/b/x-1.0.tar.gz HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (MiB, b" " * MiB)
    response = raw_exchange(daemon.url, head, chunk * 11)
    assert status_of(response) == 413, response


def _json_post(url: str, path: str, size: int, ctype: str = "application/json") -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", ctype)
    conn.putheader("Accept", "application/json")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    try:
        conn.send(b'{"x": "' + b"y" * (size - 9) + b'"}')
    except (BrokenPipeError, ConnectionResetError):
        pass
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize("target", ["/root/docs", "/root/docs/", "/root/docs/+f/a/b/x-1.0.zip"])
def test_json_bodies_under_an_index_get_the_json_limit(
        daemon: Daemon, docs_index: tuple[str, tuple[str, str]], target: str) -> None:
    """Push JSON to an index and tox results: 11 MiB is over the 10 MiB JSON limit
    (they got the 1 GiB upload limit, and were read and parsed whole)."""
    assert _json_post(daemon.url, target, 11 * MiB) == 413
    assert _json_post(daemon.url, target, 11 * MiB, "text/plain") == 413


def test_a_tox_result_must_be_a_json_object(daemon: Daemon) -> None:
    status, reply, _ = call(daemon.url + "/root/pypi/+f/a/b/x-1.0.tar.gz", "POST", [1, 2])
    assert status == 400 and "JSON object" in reply["message"]


def test_the_server_still_serves(daemon: Daemon) -> None:
    assert call(daemon.url + "/+api")[0] == 200
    log = daemon.log.read_text()
    assert "Traceback" not in log and "Unhandled" not in log
