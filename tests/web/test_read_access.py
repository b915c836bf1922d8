"""Read permission per index (issue 21, item 1), in memory on sqlite and PostgreSQL: every
read route of a private index refuses the anonymous (401 with a Basic challenge), an
authenticated user it does not list (403 naming pkg_read and the index), lets readers,
the owner and root through; an index inheriting from a private base shows nothing of
it to who may not read the base; listings and /+status, /+metrics name no index the
caller cannot read. Groups (from LDAP later) are tested through the domain layer."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from devpi_twisted.model.acl import (
    Identity, Scope, check_read, hidden_stages, may_read, read_refusal, readers_of,
)
from devpi_twisted.model.errors import Forbidden, Unauthenticated
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.storage.fileblobs import FileBlobStore
from tests.support import result_of
from tests.web.conftest import Reply, Server, make_server, pg_of
from tests.web.test_fuzz import SDIST, WHEEL, InlineThreads
from tests.web.ui_site import upload

PIP = {"User-Agent": ["pip/24.0 {}"], "Accept": ["text/html"]}


@attrs.frozen
class Private:
    """alice/private (acl_read bob, :devs) holds pkg 1.0 (sdist, wheel, docs, a tox
    result); alice/public inherits from it and holds pub 1.0."""

    server: Server
    auth: dict[str, dict[str, Any]]  # user -> X-Devpi-Auth headers
    sdist: str  # the files' paths below the server root
    wheel: str
    toxresult: str


def _upload(server: Server, index: str, who: dict[str, Any], name: str, filename: str,
            content: bytes, action: str = "file_upload") -> None:
    upload(server, index, who, name, "1.0", filename, content, action)


def _docs() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("index.html", "<h1>secret docs</h1>")
    return out.getvalue()


@pytest.fixture(params=["sqlite", "postgres"])
def private(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Private]:
    pg = pg_of(request)
    threads = InlineThreads()
    server = make_server(tmp_path, pg=pg, blobs=FileBlobStore(tmp_path / "+files", threads, threads))
    auth = {"root": server.devpi_auth("root", server.login("root", ""))}
    for user in ("alice", "bob", "carol"):
        assert server.client.request("PUT", f"/{user}", {"password": "secret"}).code == 201
        auth[user] = server.devpi_auth(user, server.login(user, "secret"))
    alice = auth["alice"]
    reply = server.client.request("PUT", "/alice/private", {"acl_read": "bob,:devs"},
                                  headers=alice)
    assert reply.code == 200, reply.body
    reply = server.client.request("PUT", "/alice/public", {"bases": "alice/private"},
                                  headers=alice)
    assert reply.code == 200, reply.body
    _upload(server, "alice/private", alice, "pkg", "pkg-1.0.tar.gz", SDIST)
    _upload(server, "alice/private", alice, "pkg", "pkg-1.0-py3-none-any.whl", WHEEL)
    _upload(server, "alice/private", alice, "pkg", "pkg-1.0.doc.zip", _docs(), "doc_upload")
    _upload(server, "alice/public", alice, "pub", "pub-1.0.tar.gz",
            SDIST.replace(b"pkg", b"pub"))
    links = server.client.get("/alice/private/pkg/1.0", headers=alice).json["result"]["+links"]
    paths = {link["href"].rsplit("/", 1)[1]: "/" + link["href"].split("/", 3)[3]
             for link in links}
    reply = server.client.request("POST", paths["pkg-1.0.tar.gz"], {"passed": True},
                                  headers=alice)
    assert reply.code == 200, reply.body
    toxresult = "/" + reply.json["result"].split("/", 3)[3] if "://" in reply.json["result"] \
        else "/" + reply.json["result"].lstrip("/")
    yield Private(server, auth, paths["pkg-1.0.tar.gz"], paths["pkg-1.0-py3-none-any.whl"],
                  toxresult)
    server.storage.close()


def _read_paths(p: Private) -> list[tuple[str, dict[str, Any]]]:
    """Every GET that reads alice/private, with the headers that pick its view."""
    simple_json = {"Accept": ["application/vnd.pypi.simple.v1+json"]}
    return [
        ("/alice/private", {}),
        ("/alice/private?no_projects", {}),
        ("/alice/private", PIP),  # an installer asking for the index URL: the project list
        ("/alice/private/+simple/", {"Accept": ["text/html"]}),
        ("/alice/private/+simple/", simple_json),
        ("/alice/private/+simple/pkg/", {"Accept": ["text/html"]}),
        ("/alice/private/+simple/pkg/", simple_json),
        ("/alice/private/pkg", {}),
        ("/alice/private/pkg?v=2", {}),
        ("/alice/private/pkg", PIP),
        ("/alice/private/pkg/1.0", {}),
        (p.sdist, {"Accept": ["*/*"]}),
        (p.sdist, {}),  # its JSON meta data
        (p.wheel, {"Accept": ["*/*"]}),
        (p.wheel + ".metadata", {"Accept": ["*/*"]}),
        (p.toxresult, {"Accept": ["*/*"]}),
        ("/alice/private/pkg/1.0/+doc/", {"Accept": ["text/html"]}),
        ("/alice/private/pkg/1.0/+doc/index.html", {"Accept": ["text/html"]}),
    ]


def _get(p: Private, path: str, headers: dict[str, Any], who: str | None) -> Reply:
    return p.server.client.get(path, headers={**headers, **(p.auth[who] if who else {})})


def test_anonymous_reads_of_a_private_index_get_401_with_a_basic_challenge(private: Private) -> None:
    for path, headers in _read_paths(private):
        for method in ("GET", "HEAD"):
            reply = private.server.client.request(method, path, headers=headers)
            assert reply.code == 401, (method, path, reply.body)
            assert reply.header("WWW-Authenticate") == 'Basic realm="devpi"', path
            assert b"secret docs" not in reply.body and b"pkg-1.0" not in reply.body


def test_a_user_not_listed_gets_403_naming_the_permission_and_the_index(private: Private) -> None:
    for path, headers in _read_paths(private):
        reply = _get(private, path, headers, "carol")
        assert reply.code == 403, (path, reply.body)
        assert b"pkg_read" in reply.body and b"alice/private" in reply.body, path
        assert reply.header("WWW-Authenticate") is None


@pytest.mark.parametrize("who", ["bob", "alice", "root"])
def test_readers_the_owner_and_root_read_every_route(private: Private, who: str) -> None:
    for path, headers in _read_paths(private):
        reply = _get(private, path, headers, who)
        assert reply.code == 200, (who, path, reply.code, reply.body[:200])
    docs = _get(private, "/alice/private/pkg/1.0/+doc/index.html", {}, who)
    assert b"secret docs" in docs.body
    sdist = _get(private, private.sdist, {"Accept": ["*/*"]}, who)
    assert sdist.body == SDIST and "private" in (sdist.header("Cache-Control") or "")


def test_basic_auth_with_the_password_reads_too(private: Private) -> None:
    """What pip sends: Authorization: Basic user:password."""
    reply = private.server.client.get("/alice/private/+simple/pkg/", auth=("bob", "secret"),
                                      headers={"Accept": ["text/html"]})
    assert reply.code == 200 and b"pkg-1.0.tar.gz" in reply.body


def test_wrong_credentials_get_401_saying_so(private: Private) -> None:
    reply = private.server.client.get("/alice/private/+simple/pkg/", auth=("bob", "wrong"))
    assert reply.code == 401 and reply.header("WWW-Authenticate") == 'Basic realm="devpi"'
    assert "credentials sent are not valid" in reply.json["message"]


def test_nonexistent_indexes_stay_404(private: Private) -> None:
    for path in ("/alice/nothing", "/alice/nothing/+simple/", "/alice/nothing/+simple/pkg/",
                 "/alice/nothing/pkg", "/alice/nothing/+f/a/b/pkg-1.0.tar.gz"):
        assert private.server.client.get(path).code == 404, path


def test_an_inheriting_index_never_shows_its_private_base(private: Private) -> None:
    client, auth = private.server.client, private.auth
    html = {"Accept": ["text/html"]}
    for who in (None, "carol"):
        headers = auth[who] if who else {}
        # the page of a project only the base has: not there at all
        assert client.get("/alice/public/+simple/pkg/", headers={**html, **headers}).code == 404
        assert client.get("/alice/public/pkg", headers=headers).code == 404
        assert client.get("/alice/public/pkg/1.0", headers=headers).code == 404
        listing = client.get("/alice/public/+simple/", headers={**html, **headers})
        assert listing.code == 200 and b"pub" in listing.body and b"pkg" not in listing.body
        config = client.get("/alice/public", headers=headers).json["result"]
        assert config["projects"] == ["pub"]
        assert config["bases"] == [] and "alice/private" not in str(config)
        assert client.get(private.sdist, headers=headers).code in (401, 403)
    # a reader of the base sees it through the inheriting index (a cached page of the
    # anonymous caller does not stand in for theirs, nor theirs for the next anonymous)
    for _ in range(2):
        page = client.get("/alice/public/+simple/pkg/", headers={**html, **auth["bob"]})
        assert page.code == 200 and b"pkg-1.0.tar.gz" in page.body
        assert client.get("/alice/public/+simple/pkg/", headers=html).code == 404
    listing = client.get("/alice/public/+simple/", headers={**html, **auth["bob"]})
    assert b"pkg" in listing.body and b"pub" in listing.body
    assert "1.0" in client.get("/alice/public/pkg", headers=auth["bob"]).json["result"]


def test_a_hidden_private_base_still_keeps_the_mirrors_copy_out(private: Private) -> None:
    """Dependency confusion: PyPI's "pkg" never stands in for the private base's "pkg",
    not even for a caller who may not read that base (they get nothing)."""
    client, alice = private.server.client, private.auth["alice"]
    page = {"links": [{"filename": "pkg-6.6.tar.gz", "entrypath":
                       "root/pypi/+f/abc/def0123456789a/pkg-6.6.tar.gz"}], "serial": 1}
    result_of(private.server.storage.write_mirror_project("root", "pypi", "pkg", page, {}))
    reply = client.request("PATCH", "/alice/public", ["bases=alice/private,root/pypi"],
                           headers=alice)
    assert reply.code == 200, reply.body
    html = {"Accept": ["text/html"]}
    for who in (None, "carol"):
        shown = client.get("/alice/public/+simple/pkg/", headers={**html, **(
            private.auth[who] if who else {})})
        assert shown.code == 404 and b"pkg-6.6" not in shown.body, shown.body
    reader = client.get("/alice/public/+simple/pkg/", headers={**html, **private.auth["bob"]})
    assert b"pkg-1.0.tar.gz" in reader.body and b"pkg-6.6" not in reader.body
    # a project the private base does not have comes from the mirror for everyone
    page = {"links": [{"filename": "other-1.0.tar.gz", "entrypath":
                       "root/pypi/+f/abc/def0123456789a/other-1.0.tar.gz"}], "serial": 1}
    result_of(private.server.storage.write_mirror_project("root", "pypi", "other", page, {}))
    assert b"other-1.0" in client.get("/alice/public/+simple/other/", headers=html).body


def test_a_base_made_private_later_disappears_from_cached_pages(private: Private) -> None:
    client, alice = private.server.client, private.auth["alice"]
    html = {"Accept": ["text/html"]}
    reply = client.request("PATCH", "/alice/private", ["acl_read+=:ANONYMOUS:"], headers=alice)
    assert reply.code == 200, reply.body
    assert client.get("/alice/public/+simple/pkg/", headers=html).code == 200
    reply = client.request("PATCH", "/alice/private", ["acl_read-=:ANONYMOUS:"], headers=alice)
    assert reply.code == 200, reply.body
    assert client.get("/alice/public/+simple/pkg/", headers=html).code == 404
    assert client.get("/alice/private/+simple/pkg/", headers=html).code == 401


def test_listings_name_only_indexes_the_caller_may_read(private: Private) -> None:
    client, auth = private.server.client, private.auth
    for who in (None, "carol"):
        headers = auth[who] if who else {}
        assert "private" not in client.get("/", headers=headers).json["result"]["alice"]["indexes"]
        indexes = client.get("/alice", headers=headers).json["result"]["indexes"]
        assert set(indexes) == {"public"}
    for who in ("bob", "alice", "root"):
        assert "private" in client.get("/alice", headers=auth[who]).json["result"]["indexes"]
        assert "private" in client.get("/", headers=auth[who]).json["result"]["alice"]["indexes"]


def test_status_and_metrics_name_no_private_index(private: Private) -> None:
    client, auth = private.server.client, private.auth
    for who in (None, "carol"):
        headers = auth[who] if who else {}
        metrics = client.get("/+metrics", headers=headers)
        assert metrics.code == 200 and b"alice/public" in metrics.body
        assert b"alice/private" not in metrics.body
        status = client.get("/+status", headers=headers)
        assert status.code == 200 and b"alice/private" not in status.body
    assert b"alice/private" in client.get("/+metrics", headers=auth["bob"]).body
    assert b"alice/private" in client.get("/+status", headers=auth["bob"]).body


def test_push_from_a_private_index_needs_read_permission(private: Private) -> None:
    client, auth = private.server.client, private.auth
    assert client.request("PUT", "/carol/dev", {}, headers=auth["carol"]).code == 200
    body = {"name": "pkg", "version": "1.0", "targetindex": "carol/dev"}
    serial = private.server.storage.serial
    reply = client.request("PUSH", "/alice/private", body, headers=auth["carol"])
    assert reply.code == 403 and "pkg_read" in reply.json["message"], reply.body
    assert private.server.storage.serial == serial
    assert client.get("/carol/dev/pkg", headers=auth["carol"]).code == 404


def test_a_private_mirror_refuses_before_asking_upstream(private: Private) -> None:
    client, root = private.server.client, private.auth["root"]
    assert client.request("PATCH", "/root/pypi", ["acl_read=root"], headers=root).code == 200
    for path in ("/root/pypi", "/root/pypi/+simple/", "/root/pypi/+simple/anything/",
                 "/root/pypi/anything", "/root/pypi/+f/ab/cdef/anything-1.0.tar.gz",
                 "/root/pypi/+e/https_files.example/anything-1.0.tar.gz"):
        reply = client.get(path, headers={"Accept": ["*/*"]})
        assert reply.code == 401, (path, reply.body)
        reply = client.get(path, headers={"Accept": ["*/*"], **private.auth["bob"]})
        assert reply.code == 403, (path, reply.body)
    assert "pypi" not in client.get("/root").json["result"]["indexes"]


# -- groups and tokens: the domain layer (no HTTP path gives groups yet) ---------------


def test_may_read_matches_groups_and_the_special_principals() -> None:
    acl = ("bob", ":devs")
    assert may_read(Identity("dave", frozenset({"devs"})), "alice", "private", acl)
    assert not may_read(Identity("dave", frozenset({"ops"})), "alice", "private", acl)
    assert may_read(Identity("x"), "alice", "private", (":AUTHENTICATED:",))
    assert not may_read(Identity(), "alice", "private", (":AUTHENTICATED:",))
    assert may_read(Identity("alice"), "alice", "private", ())
    assert may_read(Identity("root"), "alice", "private", ())
    scoped = Identity("bob", scope=Scope(indexes=frozenset({"alice/other"})))
    assert not may_read(scoped, "alice", "private", acl)
    assert isinstance(read_refusal(Identity(), "alice", "private", acl), Unauthenticated)
    refusal = read_refusal(Identity("carol"), "alice", "private", acl)
    assert isinstance(refusal, Forbidden) and "pkg_read" in refusal.message
    readers = readers_of((("alice/public", (":ANONYMOUS:",)), ("alice/private", acl)))
    assert hidden_stages(Identity(), readers, False) == ("alice/private",)
    assert hidden_stages(Identity("dave", frozenset({"devs"})), readers, False) == ()
    assert hidden_stages(Identity("alice"), readers, False) == ()  # the owner
    only_public = Identity("bob", scope=Scope(indexes=frozenset({"alice/public"})))
    assert hidden_stages(only_public, readers, False) == ("alice/private",)
    assert hidden_stages(only_public, readers[:1], True) == ()


def test_a_group_member_reads_through_the_domain_layer(private: Private) -> None:
    ops, storage = private.server.ops, private.server.storage
    dave = Identity("dave", frozenset({"devs"}))
    acl = result_of(ops.get_index("alice", "private")).acl_read
    assert acl == ("bob", ":devs")
    check_read(dave, "alice", "private", acl)
    with pytest.raises(Forbidden):
        check_read(Identity("eve", frozenset({"ops"})), "alice", "private", acl)
    assert "alice/private" not in result_of(ops.hidden_indexes(dave))
    assert "alice/private" in result_of(ops.hidden_indexes(Identity("eve")))
    simple = SimpleOps(storage)
    page, _ = result_of(simple.project_view("alice", "public", "pkg", None, dave))
    assert [link.filename for link in page.links] == ["pkg-1.0.tar.gz", "pkg-1.0-py3-none-any.whl"]
    names = result_of(simple.project_names("alice", "public", None, dave))
    assert set(names) == {"pkg", "pub"}
    assert result_of(simple.project_names("alice", "public", None, Identity("eve"))) == ["pub"]
    assert "alice/private" not in str(result_of(ops.list_users(Identity("eve"))))
    assert "private" in result_of(ops.get_user("alice", dave))["indexes"]


def test_basic_header_encoding_is_what_pip_sends(private: Private) -> None:
    token = base64.b64encode(b"bob:secret").decode()
    reply = private.server.client.get("/alice/private/+simple/", headers={
        "Authorization": [f"Basic {token}"], "Accept": ["text/html"]})
    assert reply.code == 200 and b"pkg" in reply.body


def test_a_changed_password_is_refused_at_once(private: Private) -> None:
    """Checked credentials are reused only while nothing was committed since."""
    client, page = private.server.client, "/alice/private/+simple/pkg/"
    for _ in range(2):
        assert client.get(page, auth=("bob", "secret")).code == 200
    reply = client.request("PATCH", "/bob", {"password": "changed"}, headers=private.auth["bob"])
    assert reply.code == 200, reply.body
    assert client.get(page, auth=("bob", "secret")).code == 401
    assert client.get(page, headers=private.auth["bob"]).code == 401  # its login token too
    assert client.get(page, auth=("bob", "changed")).code == 200


def test_an_expired_login_token_is_refused_though_it_was_just_used(private: Private) -> None:
    client, page = private.server.client, "/alice/private/+simple/pkg/"
    assert client.get(page, headers=private.auth["bob"]).code == 200
    private.server.clock.advance(11 * 3600)  # past the 10 hours of a login token
    reply = client.get(page, headers=private.auth["bob"])
    assert reply.code == 401 and "not valid" in reply.json["message"], reply.body


def test_checked_credentials_outlive_uploads_not_a_password_change_or_deletion(
        private: Private, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client uploading one file after another is checked once (uploads change no user,
    password or token), yet a changed password, a deleted user and a revoked login are
    refused on the very next request (issue 25)."""
    server, alice = private.server, private.auth["alice"]
    basic = {"Authorization": [f"Basic {base64.b64encode(b'alice:secret').decode()}"]}
    checks: list[str] = []
    authenticate = server.ops.authenticate

    async def counted(username: str, secret: str, client: str = "") -> Identity:
        checks.append(username)
        return await authenticate(username, secret, client)

    monkeypatch.setattr(server.ops, "authenticate", counted)
    for who in (alice, basic):
        checks.clear()
        for n in range(3):
            upload(server, "alice/private", who, "many", f"{n}.{len(who)}",
                   f"many-{n}.{len(who)}.tar.gz", SDIST.replace(b"pkg", b"many"))
        assert len(checks) <= 1, checks  # at most once for three uploads
    # the password changes (by root): the next upload with the old one is refused
    reply = server.client.request("PATCH", "/alice", {"password": "changed"},
                                  headers=private.auth["root"])
    assert reply.code == 200, reply.body
    for who in (alice, basic):
        body = b"--x\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nsubmit\r\n--x--\r\n"
        reply = server.client.request("POST", "/alice/private/", raw=body, headers={
            "Content-Type": ["multipart/form-data; boundary=x"], **who})
        assert reply.code == 401, (who, reply.code, reply.body)
    # a deleted user: Basic with the (new) password worked a moment ago, then nothing
    bob = {"Authorization": [f"Basic {base64.b64encode(b'bob:secret').decode()}"]}
    page = "/alice/private/+simple/pkg/"
    assert server.client.get(page, headers=bob).code == 200
    assert server.client.request("DELETE", "/bob", headers=private.auth["root"]).code == 200
    assert server.client.get(page, headers=bob).code == 401


def test_a_bad_archive_is_refused_after_the_forms_own_checks(private: Private) -> None:
    """The archive is checked in the thread trip that reads the form, its verdict given
    only where devpi gives it: a broken wheel or doc zip is a 400 naming it, and a form
    that is wrong itself still gets that answer first."""
    server, alice = private.server, private.auth["alice"]

    def post(fields: list[tuple[str, str]], filename: str, content: bytes) -> Reply:
        body = b"".join(f'--x\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                        for k, v in fields)
        body += (f'--x\r\nContent-Disposition: form-data; name="content"; filename="{filename}"'
                 f'\r\n\r\n').encode() + content + b"\r\n--x--\r\n"
        return server.client.request("POST", "/alice/private/", raw=body, headers={
            "Content-Type": ["multipart/form-data; boundary=x"], **alice})

    upload_ = [(":action", "file_upload"), ("name", "bad"), ("version", "1.0")]
    reply = post(upload_, "bad-1.0-py3-none-any.whl", b"no zip")
    assert reply.code == 400 and "is not a wheel" in reply.json["message"], reply.body
    reply = post([*upload_[:2], ("version", "")], "bad-1.0-py3-none-any.whl", b"no zip")
    assert reply.code == 400 and "is not a wheel" not in reply.json["message"], reply.body
    docs = [(":action", "doc_upload"), ("name", "pkg"), ("version", "1.0")]
    reply = post(docs, "pkg-1.0.doc.zip", b"no zip")
    assert reply.code == 400 and "invalid documentation zip" in reply.json["message"], reply.body
    assert server.client.get("/alice/private/bad/1.0", headers=alice).code == 404
