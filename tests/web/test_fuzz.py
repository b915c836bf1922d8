"""Generated hostile requests against the JSON API and the upload form (issue 19 item 8).

Every request must be answered below 500, log no failure (no traceback), and a
refused one (4xx) must leave the serial where it was: nothing half written.
The in-memory server of conftest.py, with a file blob store, on sqlite and on
PostgreSQL; each run sends at least REQUESTS requests.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from devpi_twisted.storage.fileblobs import FileBlobStore
from tests.web.conftest import Server, make_server, pg_of

EXAMPLES = 800
PER_EXAMPLE = (3, 4)  # requests in one example: at least 2,400 a run
REQUESTS = 2000
BOUNDARY = "fuzz-boundary-7d3a"
MAX_PATH = 15_000


class InlineThreads:
    """A reactor and thread pool for FileBlobStore that run the work at once, in the
    caller's thread: the in-memory server answers before the client call returns."""

    def callInThreadWithCallback(self, on_result: Any, fn: Any, *args: Any, **kw: Any) -> None:
        try:
            result = fn(*args, **kw)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)

    def callFromThread(self, fn: Any, *args: Any, **kw: Any) -> None:
        fn(*args, **kw)


@attrs.define
class Fuzzed:
    server: Server
    root: dict[str, Any]
    alice: dict[str, Any]
    relpath: str
    problems: list[str]
    sent: int = 0


def _multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> bytes:
    parts = []
    for name, value in fields:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     .encode("utf-8", "surrogatepass") + value.encode("utf-8", "surrogatepass")
                     + b"\r\n")
    for name, filename, data in files:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode("utf-8", "surrogatepass") + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _sdist(name: str, version: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        data = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


WHEEL = _zip({"pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n\n"})
SDIST = _sdist("pkg", "1.0")


@provider(ILogObserver)
class _NoFailures:
    """Collects log events that carry a traceback or an error level."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        level = event.get("log_level")
        if failure is not None or event.get("isError") or level in (LogLevel.error, LogLevel.critical):
            detail = failure.getTraceback() if failure is not None else formatEvent(event)
            self.problems.append(f"{event.get('log_format')!r}: {detail}")


@pytest.fixture(params=["sqlite", "postgres"])
def fuzzed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fuzzed]:
    pg = pg_of(request)
    threads = InlineThreads()
    blobs = FileBlobStore(tmp_path / "+files", threads, threads).unsynced()
    server = make_server(tmp_path, pg=pg, blobs=blobs)
    client = server.client
    root = server.devpi_auth("root", server.login("root", ""))
    for user in ("alice", "fuzz"):
        assert client.request("PUT", f"/{user}", {"password": "secret"}).code == 201
    alice = server.devpi_auth("alice", server.login("alice", "secret"))
    assert client.request("PUT", "/alice/dev", {}, headers=alice).code == 200
    assert client.request("PUT", "/fuzz/dev", {}, headers=root).code == 200
    reply = client.request("POST", "/alice/dev/", raw=_multipart(
        [(":action", "file_upload"), ("name", "pkg"), ("version", "1.0")],
        [("content", "pkg-1.0.tar.gz", SDIST)]),
        headers={"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"], **alice})
    assert reply.code == 200, reply
    links = client.get("/alice/dev/pkg/1.0").json["result"]["+links"]
    relpath = links[0]["href"].split("/alice/dev/+f/", 1)[1]
    problems: list[str] = []
    observer = _NoFailures(problems)
    globalLogPublisher.addObserver(observer)
    try:
        yield Fuzzed(server, root, alice, relpath, problems)
    finally:
        globalLogPublisher.removeObserver(observer)
        server.storage.close()


# -- what is sent ------------------------------------------------------------------------

HOSTILE_TEXT = [
    "", ".", "..", "...", "+api", "a" * 300, "b" * 10_000, "x" * 5000, "\x00", "a\x00b", "1.0\r\n",
    "1.0\nX-Injected: 1", "\r\n", "\u200b", "a\u200bb", "\ufeff", "\u202e", "\x7f", "\x85",
    "\ud800", "a\udc80", "é", "e\u0301", "ß", "😀", "ALICE", "root", "alice", "/", "../..",
    "%00", "%2e%2e", "a/b", "a b", "null", "true", "1e400", "-1", "http://", "http://h:abc/",
    "https://u:p@h/simple/?token=t", "http://[::1/", "ftp://x/", "javascript:alert(1)",
]
_chars = st.characters(exclude_categories=())  # lone surrogates and controls included
texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(_chars, max_size=20))
leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                   st.floats(allow_nan=False), texts)
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=12)

USER_KEYS = ["password", "pwhash", "email", "title", "description", "custom_data", "username",
             "indexes", "created", "modified"]
INDEX_KEYS = ["type", "volatile", "bases", "acl_upload", "acl_toxresult_upload",
              "mirror_whitelist", "mirror_whitelist_inheritance", "mirror_url",
              "mirror_cache_expiry", "mirror_web_url_fmt", "mirror_no_project_list",
              "mirror_use_external_urls", "mirror_ignore_serial_header", "title", "description",
              "custom_data", "project_inheritance_rules", "trust_inheritance_rules_from", "projects"]
INDEX_VALUES = ["stage", "mirror", "local", "remote", "http://h:abc/simple/", "https://pypi.org/simple/",
                "http://u:p@h:99999/", "alice/dev", "root/pypi", "fuzz/dev", "fuzz/other", "*",
                "allow all", "union", "true", "no"]
DEEP = [b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'{"password": "x", "custom_data": ' + b"[" * 990 + b"]" * 990 + b"}",
        b"[" * 100_000, b"\xff\xfe", b"", b"{", b'"\\ud800"', b"1e999999", b"NaN"]

names = st.one_of(st.sampled_from(["alice", "fuzz", "root", "nobody", "dev", "other"]), texts)
new_names = st.one_of(st.sampled_from(["u1", "u2", "Ü", "a.b@c", "u1" * 64]), texts)


def _segment(name: str) -> str:
    return quote(name.encode("utf-8", "surrogatepass"), safe="") or "x"


def _keyed(keys: list[str], extra: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), texts), extra, max_size=5)


json_bodies = st.one_of(values, st.sampled_from(DEEP))
user_bodies = st.one_of(
    st.fixed_dictionaries({"password": st.one_of(st.sampled_from(["pw", "", None]), texts)},
                          optional={k: values for k in USER_KEYS if k != "password"}),
    _keyed(USER_KEYS, values), json_bodies)
index_values = st.one_of(st.sampled_from(INDEX_VALUES), st.booleans(), st.integers(-5, 10**6),
                         st.lists(st.sampled_from(INDEX_VALUES) | texts, max_size=3), values)
GOOD_INDEX_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["stage", "mirror"]), "volatile": st.booleans(),
    "bases": st.lists(st.sampled_from(["fuzz/dev", "root/pypi", "fuzz/new", "alice/dev"]), max_size=2),
    "acl_upload": st.lists(st.sampled_from([":ANONYMOUS:", "fuzz", "root", ":AUTHENTICATED:"]), max_size=2),
    "mirror_url": st.sampled_from(["https://pypi.org/simple/", "http://h:abc/simple/",
                                   "https://u:p@h.example/simple/?token=t", "http://[::1]:8/"]),
    "mirror_cache_expiry": st.integers(0, 10**6), "mirror_whitelist": st.lists(texts, max_size=2),
}
index_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={k: GOOD_INDEX_VALUES.get(k, index_values) for k in INDEX_KEYS}),
    st.fixed_dictionaries({}, optional={k: index_values for k in INDEX_KEYS}),
    _keyed(INDEX_KEYS, index_values),
    st.lists(st.builds(lambda k, op, v: f"{k}{op}{v}", st.sampled_from(INDEX_KEYS) | texts,
                       st.sampled_from(["=", "+=", "-="]), st.sampled_from(INDEX_VALUES) | texts),
             max_size=4),
    json_bodies)


@attrs.frozen
class Call:
    method: str
    path: str
    body: Any = None  # JSON value, or bytes sent as they are
    who: str = "root"  # root, alice or anonymous
    content_type: str | None = None

    def __repr__(self) -> str:
        body = repr(self.body)
        body = body if len(body) < 300 else f"{body[:200]}...({len(body)} chars)...{body[-60:]}"
        return f"Call({self.method} {self.path[:300]!r} as {self.who}, {body}, {self.content_type})"


def _call(method: str, path: str, body: Any, who: str, content_type: str | None = None) -> Call:
    return Call(method, path, body, who, content_type)


WHO = st.sampled_from(["root", "root", "anon", "garbage"])
GARBAGE_AUTH = [b"Basic !!!", b"Basic //46/w==", b"Basic bm9jb2xvbg==", b"Bearer x", b"Basic",
                b"Basic " + b"QQ==" * 1000, b"Basic cm9vdDo=" + b"\xff"]


def _user_calls() -> st.SearchStrategy[Call]:
    # The fixture's users (root, alice, fuzz) are only read or created again: a new
    # password or a deleted user would leave later examples testing nothing but 401s.
    return st.one_of(
        st.builds(_call, st.sampled_from(["PUT", "GET"]), names.map(lambda n: "/" + _segment(n)),
                  user_bodies, WHO),
        st.builds(_call, st.sampled_from(["PUT", "PATCH", "DELETE", "GET"]),
                  new_names.map(lambda n: "/" + _segment(n)), user_bodies, WHO),
        st.builds(_call, st.just("POST"), st.just("/+login"),
                  st.one_of(_keyed(["user", "password"], values), json_bodies), st.just("anon")),
    )


def _index_calls() -> st.SearchStrategy[Call]:
    users = st.sampled_from(["fuzz"] * 6 + ["root", "nobody"]) | names
    indexes = st.sampled_from(["dev", "new", "m1", "other"]) | texts
    return st.builds(
        _call, st.sampled_from(["PUT", "PUT", "PATCH", "PATCH", "DELETE", "GET"]),
        st.builds(lambda u, i: f"/{_segment(u)}/{_segment(i)}", users, indexes), index_bodies, WHO)


def _files() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(field, filename, content) of a file part: mostly coherent, often broken."""
    extensions = st.sampled_from([".tar.gz", "-py3-none-any.whl", ".zip", ".whl", ".doc.zip",
                                  "-x-y.whl", ".tgz", ".egg", "-1-py3-none-any.whl", ""])
    coherent = st.builds(lambda name, version, ext: f"{name}-{version}{ext}",
                         st.sampled_from(["pkg", "Pkg", "other"]),
                         st.sampled_from(["1.0", "2.0", "3.0a1"]) | texts, extensions)
    odd = st.sampled_from(["pkg.whl", "-.whl", "pkg-1.0-1-2-3-4-5.whl", "pkg-\r\n-py3-none-any.whl",
                           "../pkg-1.0.tar.gz", "pkg-1.0.tar.gz\x00.whl"]) | texts
    content = st.sampled_from([WHEEL, SDIST, b"", b"not a zip", b"PK\x03\x04junk"]) | st.binary(max_size=64)
    return st.tuples(st.sampled_from(["content"] * 6 + ["other"]), coherent | odd, content)


def _release_calls(relpath: str) -> st.SearchStrategy[Call]:
    extra = st.lists(st.tuples(st.sampled_from(["sha256_digest", "summary", "metadata_version",
                                                "home_page", "description", "name"]) | texts,
                               st.sampled_from(["x", "1.0\r\n", "1.0\x00", "\n"]) | texts),
                     max_size=3)
    form = st.builds(lambda action, name, version, more: [(":action", action), ("name", name),
                                                          ("version", version)] + more,
                     st.sampled_from(["file_upload"] * 4 + ["doc_upload", "submit"]) | texts,
                     st.sampled_from(["pkg", "Pkg"]) | texts,
                     st.sampled_from(["1.0", "2.0", "3.0a1", "1.0\r\n", "1.0\x00", "1.0\n2"]) | texts,
                     extra)
    upload = st.builds(
        lambda fields, files: Call("POST", "/alice/dev/", _multipart(fields, files), "alice",
                                   f"multipart/form-data; boundary={BOUNDARY}"),
        form, st.lists(_files(), min_size=0, max_size=2))
    # A well-formed upload of a new version, but for one field
    good = st.builds(
        lambda version, ext, content, action, summary: Call(
            "POST", "/alice/dev/", _multipart(
                [(":action", action), ("name", "pkg"), ("version", version), ("summary", summary)],
                [("content", f"pkg-{version}{ext}", content)]),
            "alice", f"multipart/form-data; boundary={BOUNDARY}"),
        st.sampled_from(["2.0", "3.0a1", "4.0.post1", "5!1.0", "1.0+local"]) | texts,
        st.sampled_from([".tar.gz", "-py3-none-any.whl", ".zip", ".whl", ".doc.zip", "-1-py3-none-any.whl"]),
        st.sampled_from([WHEEL, SDIST, b"not a zip", b""]),
        st.sampled_from(["file_upload", "file_upload", "doc_upload", "submit"]),
        st.sampled_from(["a summary"]) | texts)
    raw_form = st.builds(lambda body, ctype: Call("POST", "/alice/dev/", body, "alice", ctype),
                         st.binary(max_size=200), st.sampled_from([
                             f"multipart/form-data; boundary={BOUNDARY}", "multipart/form-data",
                             "application/x-www-form-urlencoded", "multipart/form-data; boundary=",
                             "multipart/form-data; boundary=" + "b" * 5000, "multipart/mixed; boundary=x",
                             "application/json", "text/plain; charset=utf-8", "multipart/form-data; boundary=\"\""]))
    yank = st.builds(
        lambda project, version, body: Call("PATCH", f"/alice/dev/{_segment(project)}/{_segment(version)}",
                                            body, "alice"),
        st.sampled_from(["pkg"]) | texts, st.sampled_from(["1.0", "2.0"]) | texts,
        st.one_of(st.fixed_dictionaries({"yanked": values}, optional={"filename": values}),
                  _keyed(["yanked", "filename"], values), json_bodies))
    toxresult = st.builds(
        lambda path, body, who: Call("POST", f"/alice/dev/+f/{path}", body, who),
        st.sampled_from([relpath] * 3 + [relpath + "x", "../x"]) | texts.map(_segment),
        json_bodies, st.sampled_from(["alice", "anon"]))
    project = st.builds(
        lambda method, project, body: Call(method, f"/alice/dev/{_segment(project)}", body, "alice"),
        st.sampled_from(["PATCH", "GET"]), st.sampled_from(["pkg"]) | texts, index_bodies)
    version = st.builds(
        lambda method, version: Call(method, f"/alice/dev/pkg/{_segment(version)}", None, "alice"),
        st.sampled_from(["GET", "DELETE"]), st.sampled_from(["2.0", "3.0a1"]) | texts)
    push_values = st.one_of(st.sampled_from(["pkg", "1.0", "2.0", "alice/dev", "fuzz/dev", "root/pypi",
                                             "alice/other", "a\x00b/dev", "1.0\x00", True]), values)
    push = st.builds(
        lambda body, method: Call(method, "/alice/dev/", body, "alice", "application/json"),
        st.one_of(st.fixed_dictionaries({"name": push_values, "version": push_values,
                                         "targetindex": push_values},
                                        optional={k: values for k in ("no_docs", "only_docs", "x")}),
                  _keyed(["name", "version", "targetindex", "no_docs", "only_docs"], push_values),
                  json_bodies),
        st.sampled_from(["POST", "PUSH"]))
    query = st.builds(
        lambda path, q: Call("GET", f"{path}?{q}", None, "alice"),
        st.sampled_from(["/alice/dev", "/alice/dev/pkg", "/alice/dev/pkg/1.0", "/alice/dev/+simple/",
                         "/alice/dev/+simple/pkg/", "/", "/alice", "/+api", "/+status"]),
        st.sampled_from(["no_projects", "v=2", "v=%ff", "ignore_bases", "%00=%00", "a=" + "b" * 5000])
        | texts.map(_segment))
    templates = ["/alice/dev/+f/{}", "/alice/dev/+f/{}/{}", "/alice/dev/+e/{}", "/alice/dev/+simple/{}/",
                 "/alice/dev/+simple/{}", "/alice/dev/pkg/{}/+doc/{}", "/alice/dev/{}/{}/{}",
                 "/alice/dev/+simple/{}/refresh", "/root/pypi/+simple/{}/", "/{}/{}/+api", "/+changelog/{}"]
    anywhere = st.builds(
        lambda method, template, parts: Call(method, template.format(*parts), None, "alice"),
        st.sampled_from(["GET", "HEAD", "DELETE", "POST", "PATCH", "PUT"]), st.sampled_from(templates),
        st.lists(st.sampled_from(["pkg", "1.0", "index.html", "x.whl"]) | texts.map(_segment),
                 min_size=3, max_size=3))
    return st.one_of(good, good, upload, raw_form, yank, toxresult, project, version, push, query,
                     anywhere)


def _calls(relpath: str) -> st.SearchStrategy[list[Call]]:
    one = st.one_of(_user_calls(), _index_calls(), _release_calls(relpath))
    return st.lists(one, min_size=PER_EXAMPLE[0], max_size=PER_EXAMPLE[1])


def _send(fuzzed: Fuzzed, call: Call) -> None:
    server = fuzzed.server
    headers: dict[str, Any] = {}
    if call.who == "root":
        headers.update(fuzzed.root)
    elif call.who == "alice":
        headers.update(fuzzed.alice)
    elif call.who == "garbage":  # broken credentials of every kind: anonymous, never a 500
        value = GARBAGE_AUTH[len(call.path) % len(GARBAGE_AUTH)]
        headers.update({"Authorization": [value], "X-Devpi-Auth": [value[6:] or b"x"]})
    if call.content_type is not None:
        headers["Content-Type"] = [call.content_type]
    if isinstance(call.body, bytes):
        raw = call.body
    else:
        raw = json.dumps(call.body).encode() if call.body is not None or call.method != "GET" else None
    before = server.storage.serial
    # Twisted closes the connection, unanswered, on a request line over 16 KiB
    path = call.path[:MAX_PATH]
    reply = server.client.request(call.method, path, raw=raw, headers=headers)
    fuzzed.sent += 1
    assert reply.code < 500, (call, reply.code, reply.body[:500])
    assert not fuzzed.problems, (call, fuzzed.problems)
    if 400 <= reply.code < 500:
        assert server.storage.serial == before, (call, reply.code, reply.body[:300])


def test_no_generated_request_gets_a_5xx_a_traceback_or_a_partial_write(fuzzed: Fuzzed) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_calls(fuzzed.relpath))
    def run(calls: list[Call]) -> None:
        fuzzed.problems.clear()  # a failed example's events are not the next one's
        for call in calls:
            _send(fuzzed, call)

    run()
    assert fuzzed.sent >= REQUESTS
