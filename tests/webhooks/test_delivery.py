"""The delivery service in memory (treq's StubTreq in front of a receiver resource, a
task.Clock, sqlite with the inline executor): signed requests, strict order per hook,
back-off on failures, a day of retries then failed, bounded concurrency, and a stalled
receiver holding up only its own hook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from devpi_twisted.model import hooks
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.hooktypes import DELIVERED, FAILED, PENDING, HookEvent
from devpi_twisted.storage.interface import IndexRecord, UserRecord
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.webhooks.delivery import HookDelivery
from tests.support import result_of

SECRET = "receiver-secret"


class Receiver(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, Any]]] = []  # (path, body) answered 2xx
        self.codes: dict[str, list[int]] = {}  # path -> answers to give first
        self.held: list[Any] = []
        self.hold = False

    def render_POST(self, request: Any) -> Any:
        body = request.content.read()
        stamp = request.getHeader(b"x-devpi-timestamp").decode()
        signature = request.getHeader(b"x-devpi-signature").decode()
        assert hooks.verify(SECRET, stamp, body, signature)
        path = request.path.decode()
        if self.hold and path == "/slow":
            self.held.append(request)
            return NOT_DONE_YET
        queue = self.codes.get(path, [])
        code = queue.pop(0) if queue else 204
        request.setResponseCode(code)
        if code < 300:
            self.seen.append((path, json.loads(body)))
        return b""


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    clock = Clock()
    clock.advance(1_700_000_000)
    storage = SqliteStorage.open(tmp_path / "db.sqlite3", InlineExecutor(), clock=clock.seconds)
    result_of(storage.bootstrap([UserRecord("alice", {}, None, 0)],
                                [IndexRecord("alice", "dev", {"type": "stage", "bases": []}, 0)]))
    receiver = Receiver()
    http = StubTreq(receiver)
    service = HookDelivery(storage, http, clock, lambda: storage.serial,  # type: ignore[arg-type]
                           jitter=lambda: 0.0, concurrency=2)
    yield storage, clock, receiver, http, service
    storage.close()


def _events(storage: Any, *versions: str) -> None:
    for version in versions:
        result_of(storage.write_release("alice", "dev", "pkg", version, {"name": "pkg"}, {}, -1,
                                        None, [HookEvent("upload", "alice/dev", "alice", "pkg",
                                                         version)]))


def _run(clock: Clock, http: StubTreq, seconds: float, step: float = 0.1) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        http.flush()


def _hook(storage: Any, path: str) -> int:
    return int(result_of(storage.create_hook("alice/dev", f"http://receiver{path}", SECRET,
                                             ["upload"], "alice")).id)


def test_every_event_is_sent_signed_and_in_order(setup: Any) -> None:
    storage, clock, receiver, http, service = setup
    _hook(storage, "/a")
    service.startService()
    _events(storage, "1.0", "1.1", "1.2")
    _run(clock, http, 1)
    assert [b["version"] for _, b in receiver.seen] == ["1.0", "1.1", "1.2"]
    assert service.stats.delivered == 3
    result_of(service.stopService())


def test_a_failing_receiver_is_retried_with_back_off_and_keeps_the_order(setup: Any) -> None:
    storage, clock, receiver, http, service = setup
    hook = _hook(storage, "/a")
    receiver.codes["/a"] = [500, 503, 500]
    service.startService()
    _events(storage, "1.0", "1.1")
    _run(clock, http, 0.5)
    assert receiver.seen == []  # 1st try failed: 1.1 waits behind 1.0
    [first, second] = sorted(result_of(storage.list_deliveries(hook, 10)), key=lambda d: d.id)
    assert (first.status, first.tries, first.last_error) == (PENDING, 1, "HTTP 500")
    assert second.tries == 0
    _run(clock, http, 1.0)  # retry after 1 s (2 s times 0.5): fails again
    assert result_of(storage.list_deliveries(hook, 10))[-1].tries == 2
    _run(clock, http, 10.0)  # then after 2 s, 4 s (rounds at least every second)
    assert [b["version"] for _, b in receiver.seen] == ["1.0", "1.1"]
    assert service.stats.attempts_failed == 3
    assert {d.status for d in result_of(storage.list_deliveries(hook, 10))} == {DELIVERED}
    result_of(service.stopService())


def test_after_a_day_a_delivery_is_marked_failed_and_the_next_goes(setup: Any) -> None:
    storage, clock, receiver, http, service = setup
    hook = _hook(storage, "/a")
    receiver.codes["/a"] = [500] * 1000
    service.startService()
    _events(storage, "1.0", "1.1")
    _run(clock, http, 0.5)
    for _ in range(110):  # one try per step of 15 minutes: past a day
        _run(clock, http, hooks.MAX_DELAY / 2 + 1, step=hooks.MAX_DELAY / 2 + 1)
    deliveries = sorted(result_of(storage.list_deliveries(hook, 10)), key=lambda d: d.id)
    assert deliveries[0].status == FAILED and service.stats.given_up >= 1
    receiver.codes["/a"] = []
    _run(clock, http, hooks.MAX_DELAY, step=1.0)
    assert [b["version"] for _, b in receiver.seen] == ["1.1"]
    result_of(service.stopService())


def test_a_stalled_receiver_holds_up_only_its_own_hook(setup: Any) -> None:
    storage, clock, receiver, http, service = setup
    _hook(storage, "/slow")
    _hook(storage, "/a")
    receiver.hold = True
    service.startService()
    _events(storage, "1.0", "1.1")
    _run(clock, http, 1)
    assert [(p, b["version"]) for p, b in receiver.seen] == [("/a", "1.0"), ("/a", "1.1")]
    assert len(receiver.held) == 1  # one at a time per hook
    _run(clock, http, 15)  # the attempt times out (10 s): retried later, still in order
    assert service.stats.attempts_failed >= 1
    receiver.hold = False
    _run(clock, http, 30)
    slow = [b["version"] for p, b in receiver.seen if p == "/slow"]
    assert slow[:2] == ["1.0", "1.1"] or sorted(set(slow)) == ["1.0", "1.1"]
    result_of(service.stopService())


def test_a_password_in_a_hook_url_never_shows_in_an_error() -> None:
    from devpi_twisted.webhooks.delivery import _without_password

    url = "https://ci:s3cret-pw@hooks.example/notify"
    text = f"ConnectError: could not reach {url}"
    assert "s3cret-pw" not in _without_password(text, url)
    assert _without_password("HTTP 500", "https://hooks.example/") == "HTTP 500"
