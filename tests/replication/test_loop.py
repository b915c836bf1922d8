"""The feed and the replica loop in memory: a primary's real Site and app over sqlite,
a replica's storage, treq's in-memory agent between them, time only on a Clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from treq.client import HTTPClient
from treq.testing import _SynchronousProducer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from devpi_twisted.model.acl import Policy
from devpi_twisted.model.initial import root_pypi
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.replication import protocol
from devpi_twisted.replication.client import PrimaryClient
from devpi_twisted.replication.feed import ChangelogFeed, FeedRefused, parse_start
from devpi_twisted.replication.replica import Replica, build_replica
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import Change, Record, UserRecord
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.web.compose import build_site
from devpi_twisted.web.site import DevpiSite, ServerInfo
from tests.support import result_of
from tests.web.conftest import SiteAgent, cached_hash

PRIMARY_UUID = "a" * 32
REPLICA_UUID = "b" * 32
REPLICA_KEY = b"r" * 16


@attrs.define
class Setup:
    clock: Clock
    primary: Any
    feed: ChangelogFeed
    replica_storage: Any
    replica: Replica
    client: PrimaryClient
    http: Any


def offload(fn: Any, *args: Any) -> Any:
    return succeed(fn(*args))


def make_primary(tmp_path: Path, clock: Clock, enabled: bool = True,
                 uuid: str = PRIMARY_UUID) -> tuple[Any, ChangelogFeed, DevpiSite]:
    storage = SqliteStorage.open(tmp_path / "primary.sqlite3", InlineExecutor())
    root = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, cached_hash(""), 0)
    result_of(storage.bootstrap([root], [root_pypi()]))
    ops = ServerOps(storage, Policy(None), TokenSigner(b"k" * 16, clock.seconds), offload, clock.seconds)
    info = ServerInfo(uuid=uuid, serverdir=str(tmp_path), role="primary")
    feed = ChangelogFeed(storage, uuid, TokenSigner(REPLICA_KEY, clock.seconds), clock,
                         enabled)
    site = build_site(ops, info, ReleaseOps(storage, None, clock.seconds), SimpleOps(storage),
                      None, offload, tmp_path, serial=lambda: storage.serial, feed=feed)
    return storage, feed, site


class SwitchableHttp:
    """The in-memory client, or refused connections while ``down``."""

    def __init__(self, site: DevpiSite) -> None:
        self._agent = SiteAgent(site)
        self._http = HTTPClient(self._agent, data_to_body_producer=_SynchronousProducer)
        self.down = False
        self.requests = 0

    def flush(self) -> None:
        """Deliver answers of handlers that finished after waiting (a long poll)."""
        self._agent.flush()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        if self.down:
            from twisted.internet.defer import fail

            return fail(ConnectionRefusedError("primary down"))
        # Cancelling ends the request at once, as aborting a real connection does (the
        # in-memory agent would otherwise leave the cancelled request waiting).
        outer: Deferred[Any] = Deferred()
        inner = self._http.request(*args, **kwargs)
        inner.addBoth(lambda result: None if outer.called else outer.callback(result))
        return outer


def stop(replica: Replica, http: SwitchableHttp) -> None:
    result_of(replica.stopService())


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    clock = Clock()
    clock.advance(1_700_000_000)
    primary, feed, site = make_primary(tmp_path, clock)
    http = SwitchableHttp(site)
    client = PrimaryClient(http, clock, "http://primary", REPLICA_UUID,
                           TokenSigner(REPLICA_KEY, clock.seconds))
    storage = SqliteStorage.open(tmp_path / "replica.sqlite3", InlineExecutor())
    learned: list[str] = []
    replica = build_replica(storage, None, client, clock, tmp_path, offload,  # type: ignore[arg-type]
                            learned.append, jitter=lambda: 0)
    return Setup(clock, primary, feed, storage, replica, client, http)


def test_the_replica_imports_every_serial_then_follows_new_commits(setup: Setup) -> None:
    setup.replica.startService()
    assert setup.replica_storage.serial == 0 == setup.primary.serial
    assert setup.client.primary_uuid == PRIMARY_UUID
    # the next poll waits on the primary; a commit there answers it at once
    result_of(setup.primary.create_user("alice", {}, None))
    setup.http.flush()
    assert setup.replica_storage.serial == 1
    assert result_of(setup.replica_storage.changes_since(-1)) == result_of(
        setup.primary.changes_since(-1))
    assert setup.feed.polling_replicas[REPLICA_UUID]["serial"] == 1
    assert setup.feed.polling_replicas[REPLICA_UUID]["in-request"] is True
    status = setup.replica.status()
    assert status["replication-lag"] == {"serials": 0, "seconds": 0.0}
    assert status["primary-serial"] == 1
    stop(setup.replica, setup.http)


def test_a_poll_without_news_ends_with_202_and_polls_again(setup: Setup) -> None:
    setup.replica.startService()
    before = setup.http.requests
    setup.clock.advance(protocol.LONG_POLL)
    setup.http.flush()
    assert setup.http.requests == before + 1  # 202 after 30 s, then at once again
    result_of(setup.primary.create_user("bob", {}, None))
    setup.http.flush()
    assert setup.replica_storage.serial == 1
    stop(setup.replica, setup.http)


def test_the_replica_reconnects_with_back_off_while_the_primary_is_down(setup: Setup) -> None:
    setup.http.down = True
    with capturedLogs() as events:
        setup.replica.startService()
        first = setup.http.requests
        delays = []
        for _ in range(8):
            calls = sorted(c.getTime() for c in setup.clock.getDelayedCalls())
            delays.append(round(calls[0] - setup.clock.seconds(), 3))
            setup.clock.advance(calls[0] - setup.clock.seconds())
        assert setup.http.requests == first + 8
    assert delays == [0.5, 0.75, 1.125, 1.688, 2.531, 3.797, 5.0, 5.0]  # growing, capped
    assert any("failed, retrying" in str(e.get("log_format")) for e in events)
    assert setup.replica_storage.serial == -1
    setup.http.down = False
    result_of(setup.primary.create_user("carol", {}, None))
    setup.clock.advance(5)
    setup.http.flush()
    assert setup.replica_storage.serial == 1  # caught up once it answered again
    stop(setup.replica, setup.http)


def test_a_restarted_replica_resumes_from_its_own_serial(setup: Setup, tmp_path: Path) -> None:
    setup.replica.startService()
    stop(setup.replica, setup.http)
    result_of(setup.primary.create_user("dave", {}, None))
    result_of(setup.primary.create_user("erin", {}, None))
    assert setup.replica_storage.serial == 0
    again = SqliteStorage.open(tmp_path / "replica.sqlite3", InlineExecutor())
    replica = build_replica(again, None, setup.client, setup.clock, tmp_path, offload,  # type: ignore[arg-type]
                            lambda uuid: None)
    replica.startService()
    assert again.serial == 2
    assert setup.feed.polling_replicas[REPLICA_UUID]["serial"] == 2
    stop(replica, setup.http)


# -- the feed's rules -------------------------------------------------------------------------


def headers(token: str | None, uuid: str = REPLICA_UUID, expected: str | None = "") -> dict[str, str]:
    found = {protocol.REPLICA_UUID.lower(): uuid}
    if token is not None:
        found["authorization"] = f"Bearer {token}"
    if expected is not None:
        found[protocol.EXPECTED_PRIMARY.lower()] = expected
    return found


def test_feed_authorization_rules(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(1_700_000_000)
    _, feed, _ = make_primary(tmp_path, clock)
    good = TokenSigner(REPLICA_KEY, clock.seconds).make(REPLICA_UUID)
    assert feed.authorize(headers(good)) == REPLICA_UUID
    assert feed.authorize(headers(good, expected=PRIMARY_UUID)) == REPLICA_UUID
    cases = [
        (headers(None), 403, "authorization"),
        (headers("garbage"), 403, "Authorization malformed."),
        (headers(TokenSigner(b"x" * 16, clock.seconds).make(REPLICA_UUID)), 403, "malformed"),
        (headers(good, uuid="c" * 32), 403, "Wrong authorization value."),
        (headers(good, expected=None), 400, "missing"),
        (headers(good, expected="d" * 32), 400, f"expected {'d' * 32} as primary_uuid"),
    ]
    for given, status, message in cases:
        with pytest.raises(FeedRefused) as e:
            feed.authorize(given)
        assert e.value.status == status and message in e.value.message
    clock.advance(38)
    with pytest.raises(FeedRefused, match="Authorization expired."):
        feed.authorize(headers(good))
    feed.enabled = False
    with pytest.raises(FeedRefused, match="Replication protocol disabled"):
        feed.authorize(headers(TokenSigner(REPLICA_KEY, clock.seconds).make(REPLICA_UUID)))


def test_feed_poll_answers_404_beyond_the_next_serial_and_single_entries(tmp_path: Path) -> None:
    clock = Clock()
    storage, feed, _ = make_primary(tmp_path, clock)
    beyond = result_of(feed.poll(REPLICA_UUID, 5, True, False, {}, "127.0.0.1"))
    assert (beyond.status, beyond.serial) == (404, 0)
    one = result_of(feed.poll(REPLICA_UUID, 0, False, False, {}, "127.0.0.1"))
    assert one.status == 200 and [c.serial for c in one.changes] == [0]
    waiting = Deferred.fromCoroutine(feed.poll(REPLICA_UUID, 1, True, True, {}, "127.0.0.1"))
    clock.advance(protocol.INITIAL_POLL)  # the replica's first poll waits 1 s only
    assert result_of(waiting).status == 202


def test_parse_start_and_decoding_refuse_malformed_input() -> None:
    assert parse_start("12-") == (12, True) and parse_start("3") == (3, False)
    for bad in ("x", "-1", "1-2", ""):
        with pytest.raises(FeedRefused):
            parse_start(bad)
    changes = [Change(s, 1.0, (Record("user", f"u{s}", None),)) for s in (4, 5)]
    body = protocol.encode_changes(changes)
    assert protocol.decode_changes(body, 4) == changes
    with pytest.raises(protocol.MalformedChanges):
        protocol.decode_changes(body, 3)  # a gap
    with pytest.raises(protocol.MalformedChanges):
        protocol.decode_changes(b'{"serial": 4}\n', 4)
    with pytest.raises(protocol.MalformedChanges):
        protocol.decode_changes(b"[1]\n", 4)


@pytest.mark.parametrize("checks_expected", [True, False])
def test_the_replica_stops_when_another_primary_answers(setup: Setup, tmp_path: Path,
                                                        checks_expected: bool) -> None:
    """Another primary at the URL: it refuses the poll (400, it is not the one expected)
    or, if it did not check, answers with its own uuid; either way the replica stops."""
    setup.replica.startService()
    assert setup.client.primary_uuid == PRIMARY_UUID
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    storage, feed, site = make_primary(other_dir, setup.clock, uuid="c" * 32)
    if not checks_expected:
        feed._uuid = PRIMARY_UUID
    other = SwitchableHttp(site)
    setup.client._http = other  # the primary URL now leads to another server
    with capturedLogs() as events:
        setup.clock.advance(protocol.LONG_POLL)  # the old one's poll ends (202) ...
        setup.http.flush()
        result_of(storage.create_user("mallory", {}, None))  # ... the other one answers
        other.flush()
    assert setup.replica.stopped_reason is not None and "c" * 32 in setup.replica.stopped_reason
    assert setup.replica.status()["replication-stopped"] == setup.replica.stopped_reason
    assert any(e.get("log_level").name == "error" for e in events)
    assert setup.replica_storage.serial == 0  # nothing of the other history imported
    stop(setup.replica, setup.http)


def test_a_refused_poll_shows_in_the_status_until_a_poll_succeeds(setup: Setup) -> None:
    """A replica whose key the primary does not accept says so in /+status (403, with
    what to check), not only in its log; the next good poll clears it."""
    setup.client.use_signer(TokenSigner(b"w" * 16, setup.clock.seconds))
    with capturedLogs():
        setup.replica.startService()
    error = setup.replica.status()["replication-last-error"]
    assert error is not None and "403" in error and "--secretfile" in error
    assert setup.replica_storage.serial == -1
    setup.client.use_signer(TokenSigner(REPLICA_KEY, setup.clock.seconds))
    setup.clock.advance(60)  # the back-off ends; the next poll is accepted
    setup.http.flush()
    assert setup.replica.status()["replication-last-error"] is None
    assert setup.replica_storage.serial == 0
    stop(setup.replica, setup.http)
