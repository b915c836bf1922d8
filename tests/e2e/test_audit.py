"""The audit log of a real daemon (issue 21, item 7): on sqlite, and on PostgreSQL with
two workers, where one query shows the events every process recorded; a replica
records its own events, the writes it relays are the primary's."""

from __future__ import annotations

import base64
import os
import threading
import time
import urllib.parse
from pathlib import Path

from tests.pg import free_port
from tests.support import Daemon, call, init_serverdir, login

PASSWORD = "Audit-Pa55word"


def _audit(daemon: Daemon, root: tuple[str, str], **query: str) -> list[dict]:
    status, body, _ = call(daemon.url + "/+audit?" + urllib.parse.urlencode(query), auth=root)
    assert status == 200, body
    assert body["type"] == "audit"
    return list(body["result"]["events"])


def _settled(daemon: Daemon, root: tuple[str, str], count: int, **query: str) -> list[dict]:
    """The events of ``query`` once there are ``count`` of them: rows are written in the
    background, a moment after the request was answered."""
    deadline = time.monotonic() + 30
    while True:
        events = _audit(daemon, root, **query)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_events_of_every_process_are_recorded_logged_and_queryable(daemon: Daemon) -> None:
    root = login(daemon.url, "root", "")
    assert call(daemon.url + "/+audit")[0] == 401
    assert call(daemon.url + "/+audit?limit=5000", auth=root)[0] == 400

    def create(n: int) -> None:
        assert call(f"{daemon.url}/aud{n}", "PUT", {"password": PASSWORD})[0] == 201

    created = 0
    processes: set[str] = set()
    # the processes take connections as they come: create users (concurrently) until
    # the events name more than one process, or enough were made on one process
    while created < 120 and (len(processes) < 2 or created < 8):
        threads = [threading.Thread(target=create, args=(created + i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        created += 8
        processes = {e["process"] for e in _audit(daemon, root, kind="user_created", limit="1000")}
    if "--workers" in daemon.args:
        assert len(processes) >= 2, processes
    events = _settled(daemon, root, created, kind="user_created", limit="1000")
    assert sorted(e["details"]["user"] for e in events) == sorted(f"aud{n}" for n in range(created))
    assert {e["client"] for e in events} == {"127.0.0.1"}

    alice = login(daemon.url, "aud0", PASSWORD)
    assert call(daemon.url + "/+login", "POST", {"user": "aud1", "password": "wrong"})[0] == 401
    assert call(daemon.url + "/aud0/dev", "PUT", {"acl_upload": ["aud0", "aud1"]}, alice)[0] == 200
    assert call(daemon.url + "/aud0/dev", "PATCH", ["acl_upload-=aud1"], alice)[0] == 200
    failed = _settled(daemon, root, 1, kind="login_failed", user="aud1")
    assert [e["details"]["reason"] for e in failed] == ["wrong password"]
    changes = _settled(daemon, root, 2, index="aud0/dev")
    assert [e["kind"] for e in changes] == ["index_modified", "index_created"]
    assert changes[0]["details"]["acl"] == {
        "acl_upload": {"old": ["aud0", "aud1"], "new": ["aud0"]}}
    assert changes[0]["user"] == "aud0"

    log = daemon.log.read_text()
    assert "audit: index_modified by aud0 from 127.0.0.1 on aud0/dev" in log
    assert "audit: login_failed by aud1 from 127.0.0.1" in log
    assert PASSWORD not in log and "wrong" not in log.replace("wrong password", "")


def test_a_replica_records_its_own_events_and_the_primary_the_relayed_writes(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(base64.b64encode(os.urandom(32)))
    secret.chmod(0o600)
    port = free_port()
    primary_url = f"http://127.0.0.1:{port}"
    init_serverdir(tmp_path / "primary")
    init_serverdir(tmp_path / "replica", "--role", "replica", "--primary-url", primary_url)
    primary = Daemon(tmp_path / "primary", "--role", "primary", "--secretfile", str(secret),
                     "--port", str(port)).start()
    replica = Daemon(tmp_path / "replica", "--role", "replica", "--primary-url", primary_url,
                     "--secretfile", str(secret)).start()
    try:
        root = login(primary.url, "root", "")
        assert call(replica.url + "/viarep", "PUT", {"password": PASSWORD})[0] == 201  # relayed
        deadline = time.monotonic() + 60
        while call(replica.url + "/viarep")[0] != 200:
            assert time.monotonic() < deadline, "the replica did not receive the user"
            time.sleep(0.1)
        assert call(replica.url + "/+api", auth=("viarep", "not-it"))[0] == 200  # decided here
        on_primary = _settled(primary, root, 1, kind="user_created,login_failed")
        on_replica = _settled(replica, root, 1, kind="user_created,login_failed")
        assert [(e["kind"], e["details"].get("user")) for e in on_primary] == [
            ("user_created", "viarep")]
        assert [(e["kind"], e["user"]) for e in on_replica] == [("login_failed", "viarep")]
    finally:
        replica.stop()
        primary.stop()
