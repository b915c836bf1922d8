"""The audit log in memory (issue 21, item 7): each kind of event is recorded with who,
from where, when and what; ``GET /+audit`` filters, pages and refuses; a flood of
failed logins stays bounded; a failure to store an event never fails the request."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import capturedLogs

from devpi_twisted.model.audit import FLOOD_PER_CLIENT, FLOOD_WINDOW, TOKEN_KINDS
from devpi_twisted.storage.fileblobs import FileBlobStore
from tests.web.conftest import Server, make_server, pg_of
from tests.web.test_fuzz import BOUNDARY, SDIST, WHEEL, InlineThreads, _multipart

NOW = 1_700_000_000.0  # the test clock's time (make_server)


@pytest.fixture(params=["sqlite", "postgres"])
def uploads(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server with a blob store, user alice (password "secret") and alice/dev."""
    threads = InlineThreads()
    made = make_server(tmp_path, pg=pg_of(request),
                       blobs=FileBlobStore(tmp_path / "+files", threads, threads))
    assert made.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    assert made.client.request("PUT", "/alice/dev", {}, headers=_auth(made, "alice")).code == 200
    yield made
    made.storage.close()


def _auth(server: Server, user: str, password: str = "secret") -> dict[str, Any]:
    return server.devpi_auth(user, server.login(user, password))


def _root(server: Server) -> dict[str, Any]:
    return _auth(server, "root", "")


def _audit(server: Server, query: str = "", code: int = 200,
           root: dict[str, Any] | None = None) -> Any:
    reply = server.client.get("/+audit" + query, headers=root or _root(server))
    assert reply.code == code, reply.body
    return reply.json


def _events(server: Server, query: str = "", root: dict[str, Any] | None = None
            ) -> list[dict[str, Any]]:
    """Events (oldest first) other than root's own logins to read them."""
    found = _audit(server, query, root=root)["result"]["events"]
    return [e for e in reversed(found) if not (e["kind"] == "login" and e["user"] == "root")]


def _upload(server: Server, filename: str, content: bytes, version: str = "1.0") -> None:
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", version)]
    headers = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"],
               **_auth(server, "alice")}
    body = _multipart(fields, [("content", filename, content)])
    assert server.client.request("POST", "/alice/dev/", raw=body, headers=headers).code == 200


def test_logins_and_failed_logins_are_recorded_with_name_address_and_time(server: Server) -> None:
    assert server.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    server.login("alice", "secret")
    assert server.client.request("POST", "/+login", {"user": "alice", "password": "nope"}).code == 401
    assert server.client.request("POST", "/+login", {"user": "mallory", "password": "x"}).code == 401
    assert server.client.get("/+api", auth=("alice", "wrong")).code == 200  # Basic auth fails too
    events = _events(server, "?kind=login,login_failed")
    assert [(e["kind"], e["user"], e["details"].get("reason")) for e in events] == [
        ("login", "alice", None), ("login_failed", "alice", "wrong password"),
        ("login_failed", "mallory", "unknown user"), ("login_failed", "alice", "wrong password")]
    assert {e["client"] for e in events} == {"127.0.0.1"}
    assert {e["at"] for e in events} == {NOW}
    assert events[0]["time"] == "2023-11-14T22:13:20.000000Z"
    assert events[0]["process"] == "test:1"


def test_a_name_tried_with_control_characters_is_recorded_escaped(server: Server) -> None:
    with capturedLogs() as logged:
        assert server.client.get("/+api", auth=("ev\x00il\nname", "x")).code == 200
    # (no "... failed" error; the audit line itself now carries its text as its format)
    assert not [e for e in logged if "failed" in str(e.get("log_format", "")) and "audit_kind" not in e]
    assert [e["user"] for e in _events(server, "?kind=login_failed")] == ["ev\\x00il\\nname"]


def test_user_changes_are_recorded_without_passwords(server: Server) -> None:
    with capturedLogs() as logged:
        assert server.client.request("PUT", "/alice", {"password": "secret"}).code == 201
        auth = _auth(server, "alice")
        assert server.client.request("PATCH", "/alice", {"email": "a@example.org"}, headers=auth).code == 200
        server.clock.advance(5)  # (the profile's "modified" changes, and is no change of note)
        assert server.client.request("PATCH", "/alice", {"password": "n3wpass!"}, headers=auth).code == 200
        assert server.client.request("DELETE", "/alice", headers=_auth(server, "alice", "n3wpass!")).code == 200
    events = [e for e in _events(server) if e["kind"] != "login"]
    assert [(e["kind"], e["user"], e["details"]) for e in events] == [
        ("user_created", None, {"user": "alice"}),
        ("user_modified", "alice", {"user": "alice", "changed": ["email"], "password": False}),
        ("user_modified", "alice", {"user": "alice", "changed": [], "password": True}),
        ("user_deleted", "alice", {"user": "alice", "indexes": []})]
    audit_lines = [e for e in logged if e.get("audit_kind")]
    assert [e["audit_kind"] for e in audit_lines if e["audit_kind"] != "login"] == [
        "user_created", "user_modified", "user_modified", "user_deleted"]
    for event in logged:
        assert not any(p in json.dumps(event, default=repr) for p in ("secret", "n3wpass!"))


def test_index_changes_call_out_acls_before_and_after(server: Server) -> None:
    root = _root(server)
    assert server.client.request("PUT", "/bob", {"password": "secret"}).code == 201
    assert server.client.request("PUT", "/root/dev", {"acl_upload": ["root", "bob"]}, headers=root).code == 200
    assert server.client.request("PATCH", "/root/dev", ["acl_read=bob", "title=Dev"], headers=root).code == 200
    assert server.client.request("PATCH", "/root/dev", {"acl_toxresult_upload": ["bob"]}, headers=root).code == 200
    assert server.client.request("DELETE", "/root/dev", headers=root).code == 201
    events = [e for e in _events(server, "?index=root/dev")]
    assert [e["kind"] for e in events] == ["index_created", "index_modified", "index_modified",
                                           "index_deleted"]
    assert {(e["user"], e["index"]) for e in events} == {("root", "root/dev")}
    created, read, tox, _ = (e["details"] for e in events)
    assert created["acl"]["acl_upload"] == {"old": None, "new": ["root", "bob"]}
    assert read["changed"] == ["acl_read", "title"]
    assert list(read["acl"]) == ["acl_read"] and read["acl"]["acl_read"]["new"] == ["bob"]
    assert tox["acl"] == {"acl_toxresult_upload": {"old": [":ANONYMOUS:"], "new": ["bob"]}}


def test_uploads_pushes_yanks_and_deletions_are_recorded(uploads: Server) -> None:
    auth = _auth(uploads, "alice")
    _upload(uploads, "pkg-1.0-py3-none-any.whl", WHEEL)
    _upload(uploads, "pkg-1.0.tar.gz", SDIST)
    assert uploads.client.request("PUT", "/alice/prod", {}, headers=auth).code == 200
    push = {"name": "pkg", "version": "1.0", "targetindex": "alice/prod"}
    assert uploads.client.request("PUSH", "/alice/dev", push, headers=auth).code == 200
    path = "/alice/dev/pkg/1.0"
    assert uploads.client.request("PATCH", path, {"yanked": "broken"}, headers=auth).code == 200
    assert uploads.client.request("PATCH", path, {"yanked": False}, headers=auth).code == 200
    links = uploads.client.get(path).json["result"]["+links"]
    wheel = next(l["href"] for l in links if l["href"].endswith(".whl"))
    relpath = wheel.split("/+f/", 1)[1]
    assert uploads.client.request("DELETE", f"/alice/dev/+f/{relpath}", headers=auth).code == 200
    assert uploads.client.request("DELETE", path, headers=auth).code == 200
    assert uploads.client.request("DELETE", "/alice/prod/pkg", headers=auth).code == 200
    events = [e for e in _events(uploads) if e["kind"] not in ("login", "index_created", "user_created")]
    assert [(e["kind"], e["index"]) for e in events] == [
        ("upload", "alice/dev"), ("upload", "alice/dev"), ("push", "alice/dev"),
        ("yank", "alice/dev"), ("unyank", "alice/dev"), ("delete_file", "alice/dev"),
        ("delete_version", "alice/dev"), ("delete_project", "alice/prod")]
    assert {e["user"] for e in events} == {"alice"}
    upload = events[0]["details"]
    assert upload == {"project": "pkg", "version": "1.0", "filename": "pkg-1.0-py3-none-any.whl",
                      "rel": "releasefile", "replaced": False}
    assert events[2]["details"]["target"] == "alice/prod"
    assert len(events[2]["details"]["files"]) == 2
    assert events[3]["details"]["reason"] == "broken"
    assert events[5]["details"]["path"].endswith("/" + relpath)
    assert events[6]["details"] == {"project": "pkg", "version": "1.0", "force": False}


def test_audit_filters_and_pages(server: Server) -> None:
    for n in range(5):
        assert server.client.request("PUT", f"/u{n}", {"password": "secret"}).code == 201
        server.clock.advance(10)
    server.client.request("POST", "/+login", {"user": "u1", "password": "bad"})
    created = _events(server, "?kind=user_created")
    assert [e["details"]["user"] for e in created] == ["u0", "u1", "u2", "u3", "u4"]
    assert [e["details"]["user"] for e in _events(server, f"?kind=user_created&since={NOW + 10}"
                                                  f"&until={NOW + 30}")] == ["u1", "u2"]
    assert [e["kind"] for e in _events(server, "?user=u1")] == ["login_failed"]
    assert _events(server, "?client=10.1.1.1") == []
    assert len(_events(server, "?client=127.0.0.1&kind=user_created")) == 5
    pages, cursor = [], ""
    while True:
        page = _audit(server, f"?kind=user_created&limit=2{cursor}")["result"]
        pages.append([e["details"]["user"] for e in page["events"]])
        if page["next"] is None:
            break
        cursor = f"&cursor={page['next']}"
    assert pages == [["u4", "u3"], ["u2", "u1"], ["u0"]]


@pytest.mark.parametrize("query", [
    "?kind=nope", "?kind=", "?since=yesterday", "?since=-1", "?until=nan", "?since=20&until=10",
    "?limit=0", "?limit=1001", "?limit=x", "?cursor=-3", "?cursor=abc", "?user=a/b",
    "?index=alice", "?index=a/b/c", "?client=999.1.1.1", "?bogus=1", "?user=a&user=b",
    "?since=1e400", "?user=%ff",
])
def test_bad_audit_parameters_are_a_clear_400(server: Server, query: str) -> None:
    reply = server.client.get("/+audit" + query, headers=_root(server))
    assert reply.code == 400, (query, reply.body)
    assert reply.json["message"].startswith("audit: ")


def test_only_root_and_admins_read_the_audit_log(server: Server, tmp_path: Path) -> None:
    reply = server.client.get("/+audit")
    assert reply.code == 401 and (reply.header("WWW-Authenticate") or "").startswith("Basic realm=")
    assert server.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    assert server.client.get("/+audit", headers=_auth(server, "alice")).code == 403
    assert server.client.get("/+audit", auth=("root", "")).code == 200
    (tmp_path / "admins").mkdir()
    admins = make_server(tmp_path / "admins", restrict_modify="root,alice")
    assert admins.client.request("PUT", "/alice", {"password": "secret"},
                                 headers=_root(admins)).code == 201
    assert admins.client.request("PUT", "/bob", {"password": "secret"}, headers=_root(admins)).code == 201
    assert admins.client.get("/+audit", headers=_auth(admins, "alice")).code == 200
    assert admins.client.get("/+audit", headers=_auth(admins, "bob")).code == 403
    admins.storage.close()


def test_a_flood_of_failed_logins_is_coalesced_per_address(server: Server) -> None:
    root = _root(server)  # (the throttle refuses logins from this address during the flood)
    for n in range(50):
        server.client.request("POST", "/+login", {"user": f"guess{n % 7}", "password": "x"})
    assert len(_events(server, "?kind=login_failed", root)) == FLOOD_PER_CLIENT
    server.clock.advance(FLOOD_WINDOW)
    server.audit_log.flush()
    failed = _events(server, "?kind=login_failed", root)
    assert len(failed) == FLOOD_PER_CLIENT + 1
    summary = failed[-1]
    assert (summary["user"], summary["client"]) == (None, "127.0.0.1")
    assert summary["details"]["reason"] == "flood"
    assert summary["details"]["suppressed"] == 50 - FLOOD_PER_CLIENT
    assert len(summary["details"]["names"]) == 5
    server.client.request("POST", "/+login", {"user": "again", "password": "x"})
    assert _events(server, "?kind=login_failed", root)[-1]["user"] == "again"  # a new window


def test_a_failure_to_store_an_event_is_logged_and_the_request_succeeds(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    conn.execute("DROP TABLE audit")
    conn.commit()
    conn.close()
    with capturedLogs() as logged:
        assert server.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    assert server.client.get("/alice").code == 200
    assert any("Storing an audit event (user_created) failed" in str(e.get("log_format", ""))
               .format(**{k: v for k, v in e.items() if isinstance(k, str)}) for e in logged)
    server.storage.close()


def test_tokens_created_used_for_the_first_time_and_revoked_are_recorded(
        server: Server) -> None:
    query = "?kind=" + ",".join(sorted(TOKEN_KINDS))
    assert _audit(server, query)["result"] == {"events": [], "next": None}
    assert server.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    auth = _auth(server, "alice")
    reply = server.client.request("POST", "/alice/+token-create",
                                  {"indexes": ["alice/dev"]}, headers=auth)
    assert reply.code == 200, reply.body
    token = reply.json["result"]["token"]
    token_id = next(iter(server.client.get("/alice/+tokens", headers=auth).json["result"]["tokens"]))
    bearer = {"Authorization": [f"Bearer {token}"]}
    for _ in range(2):  # the first use only
        assert server.client.get("/+api", headers=bearer).json["result"]["authstatus"][0] == "ok"
    assert server.client.request("DELETE", f"/alice/+tokens/{token_id}", headers=auth).code == 200
    events = _events(server, query)
    assert [(e["kind"], e["user"], e["details"]["token"]) for e in events] == [
        ("token_created", "alice", token_id), ("token_used", "alice", token_id),
        ("token_revoked", "alice", token_id)]
    assert "indexes=alice/dev" in events[0]["details"]["restrictions"]
    assert token not in json.dumps(_audit(server))  # the secret itself never


def test_the_service_prunes_old_events_on_the_clock(server: Server) -> None:
    from devpi_twisted.storage.interface import AuditEntry, AuditQuery
    from devpi_twisted.web.auditlog import DAY, PRUNE_SECONDS, AuditLog
    from tests.support import result_of

    def entry(at: float) -> AuditEntry:
        return AuditEntry("upload", "alice", "127.0.0.1", "alice/dev", {}, at)

    result_of(server.storage.append_audit([entry(NOW - 3 * DAY), entry(NOW - DAY / 2)]))
    service = AuditLog(server.storage, server.clock, 1)
    service.startService()  # prunes once the clock runs, then every PRUNE_SECONDS
    assert len(result_of(server.storage.query_audit(AuditQuery()))) == 2
    server.clock.advance(0)
    assert [e.at for e in result_of(server.storage.query_audit(AuditQuery()))] == [NOW - DAY / 2]
    server.clock.advance(DAY)
    server.clock.advance(PRUNE_SECONDS)
    assert result_of(server.storage.query_audit(AuditQuery())) == []
    result_of(service.stopService())


def test_the_server_stores_audit_rows_in_batches(server: Server) -> None:
    """With a batch delay (the server's), rows gather for that long and go in together in
    one transaction; stopping the service stores what is still waiting."""
    from devpi_twisted.model.audit import AuditEvent
    from devpi_twisted.storage.interface import AuditQuery
    from devpi_twisted.web.auditlog import BATCH_SECONDS, AuditLog
    from tests.support import result_of

    appended: list[int] = []
    storage = server.storage
    append = storage.append_audit
    storage.append_audit = lambda entries: (appended.append(len(entries)), append(entries))[1]
    try:
        service = AuditLog(storage, server.clock, 1, prune=False, batch=BATCH_SECONDS)
        for n in range(3):
            service.record(AuditEvent("upload", "alice", "10.0.0.1", "alice/dev", {"n": n}))
        assert appended == [] and result_of(storage.query_audit(AuditQuery())) == []
        server.clock.advance(BATCH_SECONDS)
        assert appended == [3]
        assert [e.details["n"] for e in result_of(storage.query_audit(AuditQuery()))] == [2, 1, 0]
        service.record(AuditEvent("upload", "alice", "10.0.0.1", "alice/dev", {"n": 3}))
        result_of(service.stopService())
        assert appended == [3, 1]
        assert len(result_of(storage.query_audit(AuditQuery()))) == 4
    finally:
        storage.append_audit = append
