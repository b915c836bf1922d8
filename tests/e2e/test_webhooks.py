"""Signed webhooks end to end (issue 23 item 5): a real daemon (sqlite; PostgreSQL with
two request workers, where the uploads land on workers and the main process delivers)
and a real receiver that checks every signature. The receiver sees every event in
order; then it stalls mid-delivery, the daemon is killed with ``kill -9`` and started
again, the receiver fails a few requests, and still every event arrives, in order
(duplicates allowed, losses not)."""

from __future__ import annotations

import base64
import http.client
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.hookreceiver import Receiver
from tests.support import Daemon, call, init_serverdir, login

SECRET = "e2e-webhook-secret"
BOUNDARY = "hook-test-boundary"


def upload(url: str, auth: str, name: str, version: str) -> int:
    """A release file uploaded with the legacy form (its content need not be an archive)."""
    fields = [(":action", "file_upload"), ("name", name), ("version", version),
              ("protocol_version", "1")]
    body = b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    .encode() for k, v in fields)
    body += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
             f'filename="{name}-{version}.tar.gz"\r\n\r\n').encode()
    body += f"content of {name} {version}".encode() + f"\r\n--{BOUNDARY}--\r\n".encode()
    address = urlsplit(url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    conn.request("POST", "/alice/dev/", body, {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Authorization": f"Basic {auth}"})
    status = conn.getresponse().status
    conn.close()
    return status


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def first_seen(serials: list[int]) -> list[int]:
    """The serials in the order they were first accepted."""
    seen: list[int] = []
    for s in serials:
        if s not in seen:
            seen.append(s)
    return seen


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_every_event_arrives_in_order_across_kill_9(storage: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    serverdir = tmp_path / "state"
    options: list[str] = []
    if storage == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        options = ["--storage", cluster.storage_option(cluster.create_database())]
    init_serverdir(serverdir, "--no-root-pypi", *options)
    workers = ["--workers", "2"] if storage == "postgres" else []
    daemon = Daemon(serverdir, *options, *workers).start()
    with Receiver(SECRET) as receiver:
        try:
            assert call(daemon.url + "/alice", "PUT", {"password": "pw"})[0] == 201
            alice = login(daemon.url, "alice", "pw")
            assert call(daemon.url + "/alice/dev", "PUT", {}, alice)[0] == 200
            status, reply, _ = call(daemon.url + "/alice/dev/+hooks", "POST", {
                "url": receiver.url, "secret": SECRET,
                "events": ["upload", "yank", "unyank", "delete", "index"]}, alice)
            assert status == 201, reply
            hook = reply["result"]["id"]
            auth = base64.b64encode(b"alice:pw").decode()
            expected: list[tuple[str, str]] = []
            for n in range(5):
                assert upload(daemon.url, auth, "pkg", f"1.{n}") == 200
                expected.append(("upload", f"1.{n}"))
            assert call(daemon.url + "/alice/dev/pkg/1.0", "PATCH", {"yanked": True}, alice)[0] == 200
            expected.append(("yank", "1.0"))
            assert call(daemon.url + "/alice/dev/pkg/1.0", "PATCH", {"yanked": False}, alice)[0] == 200
            expected.append(("unyank", "1.0"))
            assert call(daemon.url + "/alice/dev/pkg/1.1", "DELETE", None, alice)[0] == 200
            expected.append(("delete", "1.1"))
            wait_for(lambda: len(receiver.accepted) >= len(expected), 30, "the first events")
            got = [(b["event"], b["version"]) for b in receiver.accepted]
            assert got == expected
            assert all(b["_event_header"] == b["event"] and b["index"] == "alice/dev"
                       and b["actor"] == "alice" for b in receiver.accepted)
            assert receiver.serials() == sorted(receiver.serials())
            assert receiver.bad_signatures == 0

            # the receiver stalls; more changes are made; the daemon dies mid-delivery
            receiver.mode = "stall"
            before = receiver.requests
            for n in range(5, 12):
                assert upload(daemon.url, auth, "pkg", f"1.{n}") == 200
                expected.append(("upload", f"1.{n}"))
            assert call(daemon.url + "/alice/dev", "PATCH", {"volatile": False}, alice)[0] == 200
            expected.append(("index", None))  # type: ignore[arg-type]
            wait_for(lambda: receiver.requests > before, 30, "a delivery in flight")
            daemon.kill9()
            receiver.mode = "ok"
            receiver.release.set()  # (the stalled request's connection is gone anyway)
            receiver.mode = "fail"
            daemon.start()
            wait_for(lambda: receiver.requests >= before + 3, 60, "retries after the restart")
            receiver.mode = "ok"
            wait_for(lambda: len(first_seen(receiver.serials())) >= len(expected), 120,
                     "every event after the restart")
            events = {}
            for body in receiver.accepted:
                events.setdefault(int(body["serial"]), (body["event"], body["version"]))
            order = first_seen(receiver.serials())
            assert order == sorted(order), "events arrived out of order"
            assert [events[s] for s in order] == expected
            assert receiver.bad_signatures == 0
            status, reply, _ = call(f"{daemon.url}/alice/dev/+hooks/{hook}/deliveries?limit=100",
                                    "GET", None, alice)
            assert status == 200
            assert {d["status"] for d in reply["result"]} == {"delivered"}
            assert max(d["tries"] for d in reply["result"]) >= 2
            with urllib.request.urlopen(daemon.url + "/+metrics", timeout=30) as response:
                metrics = response.read().decode()
            assert 'devpi_webhook_queue_depth{process=' in metrics  # (main or a worker answers)
            assert "devpi_webhook_delivery_failures_total" in metrics
        finally:
            daemon.stop()
