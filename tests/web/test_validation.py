"""Hostile input gets a 4xx with a message, never a 500, a traceback or a partial write
(issue 19 items 6, 7 and 9), on sqlite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogLevel, capturedLogs

from devpi_twisted.storage.fileblobs import FileBlobStore
from tests.support import result_of
from tests.web.conftest import Reply, Server, make_server, pg_of
from tests.web.test_fuzz import BOUNDARY, SDIST, WHEEL, InlineThreads, _multipart

SECRET = "s3cretXYZ"


@pytest.fixture(params=["sqlite", "postgres"])
def uploads(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server with a blob store, user alice (password "secret") and her index alice/dev."""
    pg = pg_of(request)
    threads = InlineThreads()
    made = make_server(tmp_path, pg=pg, blobs=FileBlobStore(tmp_path / "+files", threads, threads))
    assert made.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    assert made.client.request("PUT", "/alice/dev", {}, headers=_alice(made)).code == 200
    yield made
    made.storage.close()


def _alice(server: Server) -> dict[str, Any]:
    return server.devpi_auth("alice", server.login("alice", "secret"))


def _root(server: Server) -> dict[str, Any]:
    return server.devpi_auth("root", server.login("root", ""))


def _refused(server: Server, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, Any] | None = None, code: int | None = 400) -> Reply:
    """The request answered ``code`` (None: any 4xx) with a message, no failure logged,
    nothing written."""
    serial = server.storage.serial
    with capturedLogs() as events:
        reply = server.client.request(method, path, body, raw=raw, headers=headers)
    assert reply.code == code if code else 400 <= reply.code < 500, (path, reply.code, reply.body[:300])
    assert reply.json["message"]
    assert server.storage.serial == serial
    assert not [e for e in events if e.get("log_failure") or e.get("isError")
                or e.get("log_level") in (LogLevel.error, LogLevel.critical)]
    return reply


# -- item 6: mirror URLs ----------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://host:abc/simple/", "http://bob:pw@host:abc/simple/", "https://host:99999/simple/",
    "https://host:0/", "http://[::1/simple/", "http:///simple/", "https://bob:pw@/simple/",
    "https://ex ample.org/simple/", "https://example.org/sim\nple/", "https://example.org/\x00/",
    "https://exa\u200bmple.org/", "https://a..b/simple/", "https://999.1.1.1/", "ftp://host/",
])
def test_a_bad_mirror_url_is_refused_and_nothing_is_stored(server: Server, url: str) -> None:
    reply = _refused(server, "PUT", "/root/m1", {"type": "mirror", "mirror_url": url},
                     headers=_root(server))
    assert "'mirror_url' option must be a URL" in reply.json["message"]
    assert "pw" not in reply.json["message"]
    assert server.client.get("/root/m1").code == 404
    for path in ("/", "/root"):
        assert server.client.get(path).code == 200


def test_a_patch_to_a_bad_mirror_url_is_refused(server: Server) -> None:
    root = _root(server)
    _refused(server, "PATCH", "/root/pypi", ["mirror_url=http://host:abc/"], headers=root)
    _refused(server, "PATCH", "/root/pypi", {"mirror_url": "https://u:p@h:65536/"}, headers=root)
    assert server.client.get("/root/pypi").json["result"]["mirror_url"] == "https://pypi.org/simple/"


@pytest.mark.parametrize("url", [
    f"http://bob:{SECRET}@host:abc/simple/?token={SECRET}", f"http://bob:{SECRET}@[::1/simple/",
    f"https://{SECRET}@host/simple/", f"https://bob:{SECRET}@/simple/", "not a url at all",
])
def test_a_stored_bad_mirror_url_still_renders_masked(server: Server, url: str) -> None:
    # stored before validation existed (or imported): every read path must still answer
    result_of(server.storage.create_index("root", "old", {"type": "mirror", "volatile": True,
                                                          "mirror_url": url}))
    for path in ("/", "/root", "/root/old", "/root/old?no_projects", "/+status"):
        reply = server.client.get(path)
        assert reply.code == 200, (path, reply.body[:300])
        assert SECRET not in reply.body.decode(), path
    assert server.client.get("/root/old/+api").code == 200
    reply = server.client.request("DELETE", "/root/old", headers=_root(server))
    assert reply.code == 201


# -- item 7: no input gets a 500 -------------------------------------------------------

DEEP_ARRAY = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/alice2"), ("PATCH", "/root"), ("POST", "/+login"), ("PUT", "/root/new"),
    ("PATCH", "/root/pypi"),
])
@pytest.mark.parametrize("raw", [
    DEEP_ARRAY, b'{"password": "x", "custom_data": ' + b"[" * 200 + b"]" * 200 + b"}",
    b"[" * 100_000, b'{"password": "\\ud800"}', b'{"title": "\\udc80"}', b'{"n": 1e999}',
    b'{"n": NaN}', b'{"n": -Infinity}', b"1" * 5000,
], ids=["deep-1000", "deep-200", "open-100000", "surrogate-password", "surrogate-title",
        "1e999", "NaN", "Infinity", "huge-int"])
def test_hostile_json_is_a_400(server: Server, method: str, path: str, raw: bytes) -> None:
    _refused(server, method, path, raw=raw, headers=_root(server))


@pytest.mark.parametrize("body", [
    {"password": "x" * 4097}, {"password": "é" * 2049}, {"password": None}, {"password": 1},
    {"password": ["x"]}, {"pwhash": None},
])
def test_bad_passwords_are_refused_at_create(server: Server, body: dict[str, Any]) -> None:
    _refused(server, "PUT", "/carol", body)
    assert server.client.get("/carol").code == 404


def test_a_password_of_4096_bytes_is_fine(server: Server) -> None:
    assert server.client.request("PUT", "/carol", {"password": "x" * 4096}).code == 201
    assert server.login("carol", "x" * 4096)


def test_bad_passwords_are_refused_at_modify_and_login(server: Server) -> None:
    root = _root(server)
    _refused(server, "PATCH", "/root", {"password": "x" * 5000}, headers=root)
    _refused(server, "PATCH", "/root", raw=b'{"password": "a\\udc80"}', headers=root)
    _refused(server, "POST", "/+login", raw=b'{"user": "root", "password": "\\ud800"}')
    _refused(server, "POST", "/+login", {"user": "root", "password": "x" * 5000}, code=401)
    _refused(server, "POST", "/+login", {"user": "root", "password": None})
    assert server.login("root", "")


BAD_NAMES = [".", "..", "a" * 129, "b" * 10_000, "é" * 65, "a\u200bb", "\u200b", "a\u200db", "\ufeffa",
             "a\u202eb", "a\x7fb", "a\x85b", "a\u00a0b", "a\u2028b", "a:b", "a b", "a\tb"]


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]) + f"-{len(n)}")
def test_bad_user_names_are_refused(server: Server, name: str) -> None:
    _refused(server, "PUT", "/" + _quoted(name), {"password": "x"})
    assert server.storage.serial == 0


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]) + f"-{len(n)}")
def test_bad_index_names_are_refused(server: Server, name: str) -> None:
    _refused(server, "PUT", "/root/" + _quoted(name), {}, headers=_root(server))
    assert server.storage.serial == 0


def test_users_differing_in_case_are_different_users(server: Server) -> None:
    assert server.client.request("PUT", "/alice", {"password": "a"}).code == 201
    assert server.client.request("PUT", "/Alice", {"password": "b"}).code == 201
    assert server.client.request("PUT", "/" + _quoted("e\u0301"), {"password": "c"}).code == 201
    assert server.client.request("PUT", "/" + _quoted("\u00e9"), {"password": "d"}).code == 201
    assert {"alice", "Alice", "e\u0301", "\u00e9"} <= set(server.client.get("/").json["result"])


@pytest.mark.parametrize("path", ["/%ff%fe/", "/%ff", "/root/%c3%28", "/root/pypi/+simple/%ff/",
                                  "/root/pypi/+f/%ff/x.whl", "/%ED%A0%80"])
def test_an_undecodable_path_is_a_400_without_a_traceback(server: Server, path: str) -> None:
    for method in ("GET", "PUT", "POST", "DELETE"):
        _refused(server, method, path)


@pytest.mark.parametrize("path", ["/a%00b", "/root/a%00", "/root/pypi/+simple/a%00b/",
                                  "/root/pypi/a%00b/1.0", "/root/pypi/+f/a/b%00.whl"])
def test_a_path_with_nul_is_a_400(server: Server, path: str) -> None:
    for method in ("GET", "PUT", "PATCH", "POST", "DELETE"):
        _refused(server, method, path, {})


def _upload(server: Server, fields: list[tuple[str, str]], filename: str, content: bytes,
            code: int = 400) -> Reply:
    files = [("content", filename, content)]
    headers = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"], **_alice(server)}
    return _refused(server, "POST", "/alice/dev/", raw=_multipart(fields, files), headers=headers,
                    code=code)


@pytest.mark.parametrize("version", ["1.0\r\n", "1.0\nX-Injected: 1", "1.0\x00", "\r", "1.0\u200b",
                                     "1" * 201])
@pytest.mark.parametrize("action", ["file_upload", "submit"])
def test_versions_with_control_characters_are_refused(uploads: Server, version: str, action: str) -> None:
    fields = [(":action", action), ("name", "pkg"), ("version", version)]
    _upload(uploads, fields, f"pkg-{version}.tar.gz", SDIST)
    assert uploads.client.get("/alice/dev/pkg").code == 404


def test_a_wheel_that_is_not_a_zip_is_refused(uploads: Server) -> None:
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
    reply = _upload(uploads, fields, "pkg-1.0-py3-none-any.whl", b"this is no zip")
    assert "not a zip" in reply.json["message"]
    assert uploads.client.get("/alice/dev/pkg").code == 404


@pytest.mark.parametrize("filename", ["pkg-1.0.whl", "pkg-1.0-py3-any.whl", "pkg-1.0-x-py3-none-any.whl",
                                      "pkg-1.0_local-py3-none-any.whl", "pkg-1.0--none-any.whl"])
def test_a_wheel_with_an_invalid_name_is_refused(uploads: Server, filename: str) -> None:
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
    reply = _upload(uploads, fields, filename, WHEEL)
    assert "is not a valid wheel filename" in reply.json["message"]


def test_a_valid_wheel_and_sdist_are_still_accepted(uploads: Server) -> None:
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
    headers = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"], **_alice(uploads)}
    for filename, content in (("pkg-1.0-py3-none-any.whl", WHEEL), ("pkg-1.0.tar.gz", SDIST)):
        body = _multipart(fields, [("content", filename, content)])
        assert uploads.client.request("POST", "/alice/dev/", raw=body, headers=headers).code == 200
    assert len(uploads.client.get("/alice/dev/pkg/1.0").json["result"]["+links"]) == 2


def test_a_conflicting_upload_stores_nothing(uploads: Server, tmp_path: Path) -> None:
    """Into a non-volatile index, another sdist of a stored name is a 409 that writes
    nothing, not even its body (sqlite: refused before the body is moved in; PostgreSQL:
    before it is stored); the same file again is a 200 that keeps the stored one."""
    auth = _alice(uploads)
    assert uploads.client.request("PUT", "/alice/prod", {"volatile": False}, headers=auth).code == 200
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
    headers = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"], **auth}

    def post(content: bytes) -> int:
        body = _multipart(fields, [("content", "pkg-1.0.tar.gz", content)])
        return uploads.client.request("POST", "/alice/prod/", raw=body, headers=headers).code

    def bodies() -> list[Path]:
        return sorted(p.relative_to(tmp_path) for p in (tmp_path / "+files").rglob("*") if p.is_file())

    assert post(SDIST) == 200
    stored, serial = bodies(), uploads.storage.serial
    assert post(SDIST + b"\0") == 409
    assert post(SDIST) == 200
    assert uploads.storage.serial == serial and bodies() == stored



def test_an_undecodable_host_is_a_400_without_a_traceback(server: Server) -> None:
    _refused(server, "GET", "/root", headers={"Host": [b"\xff\xfe"]})


@pytest.mark.parametrize("body", [
    {"user": "a\x00b", "password": "x"}, {"user": "root", "password": "a\x00b"},
    {"user": "\ud800", "password": "x"},
])
def test_a_login_with_nul_or_surrogates_is_refused(server: Server, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    reply = server.client.request("POST", "/+login", raw=raw)
    assert reply.code in (400, 401), reply.body


@pytest.mark.parametrize("credentials", [b"a\x00b:x", b"root:\x00", b"\xff\xfe:x", b"\x00:\x00"])
def test_basic_credentials_with_nul_or_bad_bytes_are_anonymous(server: Server, credentials: bytes) -> None:
    value = base64.b64encode(credentials)
    for headers in ({"Authorization": [b"Basic " + value]}, {"X-Devpi-Auth": [value]}):
        reply = server.client.get("/+api", headers=headers)
        assert reply.code == 200 and reply.json["result"]["authstatus"][0] == "noauth"
        assert server.client.request("PUT", "/x1", {"password": "p"}, headers=headers).code in (201, 409)


@pytest.mark.parametrize("body", [
    {"name": "pkg", "version": "1.0", "targetindex": "a\x00b/dev"},
    {"name": "pkg", "version": "1.0", "targetindex": "alice/d\x00ev"},
    {"name": "pkg", "version": "1.0\x00", "targetindex": "alice/dev"},
    {"name": "p\x00kg", "version": "1.0", "targetindex": "alice/dev"},
    {"name": "pkg", "version": "1.0", "targetindex": "\u200b/dev"},
])
def test_a_push_naming_what_cannot_exist_is_refused(uploads: Server, body: dict[str, Any]) -> None:
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")]
    headers = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"], **_alice(uploads)}
    raw = _multipart(fields, [("content", "pkg-1.0.tar.gz", SDIST)])
    assert uploads.client.request("POST", "/alice/dev/", raw=raw, headers=headers).code == 200
    _refused(uploads, "POST", "/alice/dev/", raw=json.dumps(body).encode(),
             headers={"Content-Type": ["application/json"], **_alice(uploads)}, code=None)


@pytest.mark.parametrize("body", [{"yanked": True, "filename": "a\x00b"}, {"yanked": "\x00"}])
def test_a_yank_naming_what_cannot_exist_is_refused(uploads: Server, body: dict[str, Any]) -> None:
    _refused(uploads, "PATCH", "/alice/dev/pkg/1.0", raw=json.dumps(body).encode(),
             headers=_alice(uploads), code=None)


@pytest.mark.parametrize("query", ["%C3%B8x", "v=%ff", "no_projects=%ff", "%ff%fe=1&no_projects", "%00"])
def test_a_query_with_non_ascii_or_undecodable_escapes_is_no_500(server: Server, query: str) -> None:
    # found by tests/web/test_fuzz.py: the flag parser failed on them
    for path in ("/root/pypi", "/root/pypi/", "/root/pypi/pkg", "/root", "/+api"):
        with capturedLogs() as events:
            reply = server.client.get(f"{path}?{query}")
        assert reply.code < 500, (path, reply.body[:200])
        assert not [e for e in events if e.get("log_failure") or e.get("isError")]
    assert "projects" not in server.client.get("/root/pypi?%ff%fe=1&no_projects").json["result"]


@pytest.mark.parametrize("name", ["..", "a\u200bb", "c" * 300])
def test_names_stored_before_todays_rules_can_still_be_read_and_deleted(server: Server, name: str) -> None:
    result_of(server.storage.create_user(name, {"created": "2024-01-01T00:00:00Z"}, None))
    result_of(server.storage.create_index("root", name, {"type": "stage", "volatile": True, "bases": []}))
    root = _root(server)
    for path in ("/", "/" + _quoted(name), "/root/" + _quoted(name)):
        assert server.client.get(path).code == 200, path
    assert server.client.request("DELETE", "/root/" + _quoted(name), headers=root).code == 201
    assert server.client.request("DELETE", "/" + _quoted(name), headers=root).code == 200
