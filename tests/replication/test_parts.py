"""The replica's parts one by one, against a primary stand-in (a small twisted.web
resource) through treq's StubTreq, with real sqlite storage and a real file blob store,
time only on a Clock: the file queue and its retries, on-demand fetches, the write
relay, mirror pages through the primary, the follower's uuid checks and the status."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import attrs
import pytest
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from devpi_twisted.model.devpi_api import API_6, API_7, status_view
from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.replication import protocol
from devpi_twisted.replication.client import PrimaryClient, PrimaryUnreachable
from devpi_twisted.replication.fetch import FileFetcher, FileFetchFailed, FileGone
from devpi_twisted.replication.files import FILE_BACKOFF, FileReplicator
from devpi_twisted.replication.follower import POLL_BACKOFF, ChangelogFollower
from devpi_twisted.replication.relay import WriteRelay
from devpi_twisted.replication.status import ReplicaStatus
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import Change, IndexRecord, UserRecord
from devpi_twisted.storage.sqlite import SqliteStorage
from tests.support import failure_of, result_of
from tests.web.test_fuzz import InlineThreads

PRIMARY_UUID = "a" * 32
REPLICA_UUID = "b" * 32
ROOT = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, "$argon2id$fake", 0)
PYPI = IndexRecord("root", "pypi", {"type": "mirror", "volatile": False}, 0)
WHEEL = "alice/dev/+f/abc/pkg-1.0-py3-none-any.whl"
SDIST = "alice/dev/+f/def/pkg-1.0.tar.gz"
BODIES = {WHEEL: b"wheel bytes", SDIST: b"sdist bytes, a few more"}


class PrimaryStandIn(Resource):
    """What a primary answers a replica: file bodies (or a status code instead), writes
    (answered with ``write_code`` and ``serial``), simple pages, changelog polls (with
    ``uuids`` as its uuid headers); every request noted."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.files = {"/" + relpath: body for relpath, body in BODIES.items()}
        self.codes: dict[str, int] = {}
        self.requests: list[Request] = []
        self.bodies: list[bytes] = []
        self.serial: int | None = 3
        self.write_code = 201
        self.uuids = {protocol.PRIMARY_UUID: PRIMARY_UUID}
        self.changelog: list[Change] = []
        self.held: list[Request] = []  # polls waiting for news

    def render(self, request: Request) -> bytes | int:
        self.requests.append(request)
        self._headers(request)
        path = unquote(request.path.decode())
        if path in self.codes:
            request.setResponseCode(self.codes[path])
            return b"not now"
        if request.method != b"GET":
            self.bodies.append(request.content.read())
            request.setResponseCode(self.write_code)
            request.setHeader("Location", "http://primary/alice/dev")
            request.setHeader("Connection", "close")
            return b'{"result": "done"}'
        if path.startswith("/+changelog/"):
            start = int(path.split("/")[2].rstrip("-"))
            news = [change for change in self.changelog if change.serial >= start]
            if news:
                return protocol.encode_changes(news)
            self.held.append(request)
            return NOT_DONE_YET
        if "/+simple/" in path:
            return b"{}"
        if path in self.files:
            return self.files[path]
        request.setResponseCode(404)
        return b"no such file"

    def _headers(self, request: Request) -> None:
        for name, value in self.uuids.items():
            request.setHeader(name, value)
        if self.serial is not None:
            request.setHeader(protocol.SERIAL, str(self.serial))

    def answer_polls(self) -> None:
        """The held polls end without news (202), as after the long poll's time."""
        held, self.held = self.held, []
        for request in held:
            self._headers(request)
            request.setResponseCode(202)
            request.finish()

    def paths(self) -> list[str]:
        return [unquote(r.path.decode()) for r in self.requests]


class Http:
    """StubTreq whose cancelled requests end at once, as aborting a real connection
    does (the in-memory agent leaves a cancelled request waiting)."""

    def __init__(self, resource: Resource) -> None:
        self._stub = StubTreq(resource)
        self.flush = self._stub.flush

    def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        outer: Deferred[Any] = Deferred()
        self._stub.request(*args, **kwargs).addBoth(
            lambda result: None if outer.called else outer.callback(result))
        return outer


def offload(fn: Any, *args: Any) -> Deferred[Any]:
    return maybeDeferred(fn, *args)


def entry(relpath: str, body: bytes | None = None) -> dict[str, Any]:
    body = BODIES[relpath] if body is None else body
    return {"hashes": {"sha256": hashlib.sha256(body).hexdigest()}, "size": len(body),
            "project": "pkg"}


@attrs.define
class Parts:
    clock: Clock
    primary: PrimaryStandIn
    http: Http
    source: SqliteStorage  # the primary's database, whose changes the replica imports
    storage: SqliteStorage
    blobs: FileBlobStore
    client: PrimaryClient
    fetcher: FileFetcher
    staging: Path
    learned: list[str]

    def files(self, skip: tuple[str, ...] = ()) -> FileReplicator:
        return FileReplicator(self.clock, self.storage, self.blobs, self.fetcher, 2,
                              backoffPolicy(*FILE_BACKOFF, jitter=lambda: 0), skip)

    def follower(self, files: FileReplicator) -> ChangelogFollower:
        return ChangelogFollower(self.clock, self.storage, self.client, self.learned.append,
                                 files.imported, backoffPolicy(*POLL_BACKOFF, jitter=lambda: 0))

    def imported(self) -> list[Change]:
        """The source's changes not yet here, imported (as the follower does)."""
        changes = result_of(self.source.changes_since(self.storage.serial))
        for change in changes:
            result_of(self.storage.import_change(change))
        return changes

    def stop(self, follower: ChangelogFollower) -> None:
        result_of(follower.stop())

    def has(self, relpath: str) -> bool:
        return bool(result_of(self.blobs.exists(relpath)))

    def retries(self) -> list[float]:
        return [call.getTime() - self.clock.seconds() for call in self.clock.getDelayedCalls()
                if call.func.__name__ == "_again"]


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    clock = Clock()
    clock.advance(1_700_000_000)
    primary = PrimaryStandIn()
    http = Http(primary)
    client = PrimaryClient(http, clock, "http://primary", REPLICA_UUID,
                           TokenSigner(b"r" * 16, clock.seconds), primary_uuid=PRIMARY_UUID)
    source = SqliteStorage.open(tmp_path / "primary.sqlite3", InlineExecutor())
    result_of(source.bootstrap([ROOT], [PYPI]))
    result_of(source.create_user("alice", {}, None))
    result_of(source.create_index("alice", "dev", {"type": "stage", "bases": []}))
    storage = SqliteStorage.open(tmp_path / "replica.sqlite3", InlineExecutor())
    threads = InlineThreads()
    blobs = FileBlobStore(tmp_path / "+files", threads, threads)
    staging = tmp_path / "staging"
    staging.mkdir()
    fetcher = FileFetcher(storage, blobs, client, staging, offload, 5.0)
    return Parts(clock, primary, http, source, storage, blobs, client, fetcher, staging, [])


def release(parts: Parts, files: dict[str, dict[str, Any]], expect: int = -1) -> None:
    result_of(parts.source.write_release("alice", "dev", "pkg", "1.0",
                                         {"name": "pkg", "version": "1.0"}, files, expect))


def test_imported_files_are_fetched_hash_checked_and_counted(parts: Parts) -> None:
    files = parts.files()
    files.start()
    release(parts, {WHEEL: entry(WHEEL), SDIST: entry(SDIST)})
    for change in parts.imported():
        files.imported(change)
    assert parts.has(WHEEL) and parts.has(SDIST)
    assert result_of(parts.blobs.size(SDIST)) == len(BODIES[SDIST])
    assert files.file_queue == 0 and files.errors == {}
    assert parts.fetcher.files_fetched == 2
    headers = parts.primary.requests[-1].requestHeaders
    assert headers.getRawHeaders(protocol.FILE_REPLICATION) == ["YES"]
    assert headers.getRawHeaders(protocol.REPLICA_UUID) == [REPLICA_UUID]
    assert not list(parts.staging.iterdir())  # no staging file left behind
    assert result_of(files.stop()[0]) is None


def test_a_failed_fetch_is_retried_with_growing_back_off_until_it_succeeds(parts: Parts) -> None:
    files = parts.files()
    files.start()
    parts.primary.codes["/" + WHEEL] = 503
    release(parts, {WHEEL: entry(WHEEL)})
    with capturedLogs() as events:
        for change in parts.imported():
            files.imported(change)
        assert parts.retries() == [2.0]
        assert "503 from the primary" in files.errors[WHEEL]
        assert files.file_queue == 1  # waiting for its retry
        parts.clock.advance(2.0)
        assert parts.retries() == [3.0]  # 2 s x 1.5
    assert sum("again in" in e["log_format"] for e in events) == 2
    assert not parts.has(WHEEL)
    del parts.primary.codes["/" + WHEEL]
    parts.clock.advance(3.0)
    assert parts.has(WHEEL)
    assert files.errors == {} and files.file_queue == 0 and parts.retries() == []


def test_a_body_with_the_wrong_hash_is_not_stored_and_is_tried_again(parts: Parts) -> None:
    files = parts.files()
    files.start()
    release(parts, {WHEEL: entry(WHEEL, b"what the record says")})
    for change in parts.imported():
        files.imported(change)
    assert not parts.has(WHEEL)
    assert "sha256" in files.errors[WHEEL] and parts.retries() == [2.0]
    assert parts.fetcher.files_fetched == 0
    assert not list(parts.staging.iterdir())  # the wrong body is not kept either


def test_a_file_the_primary_no_longer_has_is_not_retried(parts: Parts) -> None:
    files = parts.files()
    files.start()
    parts.primary.codes["/" + WHEEL] = 410
    release(parts, {WHEEL: entry(WHEEL)})
    for change in parts.imported():
        files.imported(change)
    assert "410 from the primary" in files.errors[WHEEL]
    assert parts.retries() == [] and files.file_queue == 0


def test_stopping_cancels_the_retries_and_empties_the_queue(parts: Parts) -> None:
    files = parts.files()
    files.start()
    parts.primary.codes["/" + WHEEL] = 500
    release(parts, {WHEEL: entry(WHEEL)})
    for change in parts.imported():
        files.imported(change)
    assert parts.retries() == [2.0]
    for pending in files.stop():
        result_of(pending)
    assert parts.clock.getDelayedCalls() == [] and files.file_queue == 0


@pytest.mark.parametrize("skip", [("alice/dev",), ("stage",), ("all",)])
def test_skipped_indexes_are_fetched_only_on_demand(parts: Parts, skip: tuple[str, ...]) -> None:
    files = parts.files(skip)
    files.start()
    release(parts, {WHEEL: entry(WHEEL)})
    for change in parts.imported():
        files.imported(change)
    assert not parts.has(WHEEL) and parts.primary.paths() == []
    assert files.file_queue == 0
    assert result_of(parts.fetcher.fetch_now(WHEEL)) is True  # a client asked for it
    assert parts.has(WHEEL) and parts.fetcher.files_fetched == 1
    assert result_of(parts.fetcher.fetch_now("alice/dev/+f/000/absent-1.0.zip")) is False


def test_a_deleted_file_loses_its_body(parts: Parts) -> None:
    files = parts.files()
    files.start()
    release(parts, {WHEEL: entry(WHEEL)})
    for change in parts.imported():
        files.imported(change)
    assert parts.has(WHEEL)
    serial = result_of(parts.source.get_version("alice", "dev", "pkg", "1.0")).serial
    release(parts, {WHEEL: {}}, serial)
    for change in parts.imported():
        files.imported(change)
    assert not parts.has(WHEEL)


def test_after_a_restart_the_files_without_bodies_are_queued_again(parts: Parts) -> None:
    release(parts, {WHEEL: entry(WHEEL), SDIST: entry(SDIST)})
    parts.imported()  # records came, the replica stopped before their bodies did
    files = parts.files()
    assert files.init_queue_finished_at is None
    files.start()
    assert parts.has(WHEEL) and parts.has(SDIST)
    assert files.init_queue_finished_at == parts.clock.seconds() == files.files_in_sync_at


def test_on_demand_download_of_a_mirror_file_and_its_failures(parts: Parts) -> None:
    path, size, sha256 = result_of(parts.fetcher.download(SDIST))
    assert path.read_bytes() == BODIES[SDIST] and size == len(BODIES[SDIST])
    assert sha256 == hashlib.sha256(BODIES[SDIST]).hexdigest()
    path.unlink()
    parts.primary.codes["/" + SDIST] = 404
    assert isinstance(failure_of(parts.fetcher.download(SDIST)), FileGone)
    parts.primary.codes["/" + SDIST] = 502
    assert type(failure_of(parts.fetcher.download(SDIST))) is FileFetchFailed


def test_a_relayed_write_is_answered_once_its_serial_is_here(parts: Parts) -> None:
    relay = WriteRelay(parts.clock, parts.storage, parts.client, 5.0)
    parts.imported()  # serial 2 here
    parts.primary.serial = 3
    headers = {"Connection": ["keep-alive"], "X-Custom": ["yes"], "Authorization": ["Basic x"]}
    answer = Deferred.fromCoroutine(relay.relay("DELETE", "/alice/dev/pkg/1.0", headers, None, 5.0))
    sent = parts.primary.requests[-1]
    assert sent.method == b"DELETE" and sent.uri == b"/alice/dev/pkg/1.0"
    assert sent.requestHeaders.getRawHeaders("X-Custom") == ["yes"]
    assert sent.requestHeaders.getRawHeaders("Authorization") == ["Basic x"]
    assert sent.requestHeaders.getRawHeaders("Connection") != ["keep-alive"]
    assert not answer.called  # serial 3 is not here yet
    release(parts, {})
    parts.imported()
    code, phrase, passed, body = result_of(answer)
    assert (code, phrase, body) == (201, b"Created", b'{"result": "done"}')
    names = {name.lower() for name, _ in passed}
    assert ("Location", "http://primary/alice/dev") in passed
    assert not names & {"x-devpi-serial", "x-devpi-primary-uuid", "connection", "content-length"}


def test_a_relayed_upload_too_big_for_memory_reaches_the_primary(parts: Parts) -> None:
    """twisted.web keeps a body of 100,000 bytes or more in a temporary file, which treq
    cannot send by itself: the client streams it from the file on its own clock."""
    agent = RequestTraversalAgent(parts.primary)
    client = PrimaryClient(HTTPClient(agent), parts.clock, "http://primary", REPLICA_UUID,
                           TokenSigner(b"r" * 16, parts.clock.seconds), primary_uuid=PRIMARY_UUID)
    relay = WriteRelay(parts.clock, parts.storage, client, 5.0)
    parts.primary.serial = None
    upload = tempfile.TemporaryFile()
    upload.write(b"x" * 250_000)
    upload.seek(0)
    answer = Deferred.fromCoroutine(relay.relay("POST", "/alice/dev/", {}, upload, 5.0))
    for _ in range(20):  # the body goes out in turns of the cooperator, on the clock
        parts.clock.advance(0)
        agent.flush()
    assert result_of(answer)[0] == 201
    assert parts.primary.bodies == [b"x" * 250_000]


def test_a_relayed_write_whose_serial_does_not_come_is_answered_after_the_timeout(
        parts: Parts) -> None:
    relay = WriteRelay(parts.clock, parts.storage, parts.client, 5.0)
    parts.primary.serial = 10
    with capturedLogs() as events:
        answer = Deferred.fromCoroutine(relay.relay("POST", "/alice/dev", {}, None, 2.0))
        parts.clock.advance(1.9)
        assert not answer.called
        parts.clock.advance(0.1)
        assert result_of(answer)[0] == 201
    assert any("before it arrived here" in e["log_format"] for e in events)
    parts.primary.write_code = 403  # a refused write does not wait
    assert result_of(relay.relay("POST", "/alice/dev", {}, None, 2.0))[0] == 403


def test_mirror_pages_are_refreshed_through_the_primary(parts: Parts) -> None:
    relay = WriteRelay(parts.clock, parts.storage, parts.client, 5.0)
    parts.imported()
    parts.primary.serial = 2
    assert result_of(relay.mirror_page("root/pypi", "six")) == "fresh"
    assert parts.primary.paths()[-1] == "/root/pypi/+simple/six/"
    parts.primary.codes["/root/pypi/+simple/gone/"] = 404
    assert result_of(relay.mirror_page("root/pypi", "gone")) == "missing"
    parts.primary.serial = None
    assert isinstance(failure_of(relay.mirror_page("root/pypi", "six")), PrimaryUnreachable)
    parts.primary.serial = 9  # never arrives here: gives up after the timeout
    waiting = Deferred.fromCoroutine(relay.mirror_page("root/pypi", "six"))
    parts.clock.advance(5.0)
    assert "not replicated within 5s" in str(failure_of(waiting))


@pytest.mark.parametrize("uuids", [
    {},  # no uuid named
    {protocol.PRIMARY_UUID: PRIMARY_UUID, protocol.MASTER_UUID: "c" * 32},  # two
])
def test_a_poll_answer_without_one_clear_uuid_is_not_imported(parts: Parts,
                                                              uuids: dict[str, str]) -> None:
    parts.primary.uuids = uuids
    parts.primary.changelog = result_of(parts.source.changes_since(-1))
    follower = parts.follower(parts.files())
    with capturedLogs() as events:
        follower.start()
    assert parts.storage.serial == -1
    assert any(e["log_level"].name == "error" for e in events)
    delays = [c.getTime() - parts.clock.seconds() for c in parts.clock.getDelayedCalls()]
    assert 0.5 in delays  # the next poll after the back-off
    assert follower.stopped_reason is None
    parts.stop(follower)


def test_the_status_view_combines_the_parts(parts: Parts) -> None:
    parts.client.primary_uuid = ""
    files = parts.files()
    follower = parts.follower(files)
    status = ReplicaStatus(parts.clock, parts.storage, parts.client, follower, files,
                           parts.fetcher)
    release(parts, {WHEEL: entry(WHEEL)})
    parts.primary.changelog = result_of(parts.source.changes_since(-1))
    parts.primary.serial = 3
    files.start()
    follower.start()  # imports serials 0-3 and the wheel's body, then waits for news
    assert parts.storage.serial == 3 and parts.primary.held
    assert parts.learned == [PRIMARY_UUID] == [parts.client.primary_uuid]
    now = parts.clock.seconds()
    found = status_view({**status.status(), "role": "REPLICA"}, API_6)
    assert found["primary-serial"] == found["master-serial"] == 3
    assert found["primary-uuid"] == found["master-uuid"] == PRIMARY_UUID
    assert not any(k.startswith("master-") for k in status_view(found, API_7))
    assert found["primary-contacted-at"] == found["update-from-primary-at"] == now
    assert found["replication-lag"] == {"serials": 0, "seconds": 0.0}
    assert found["replica-files-fetched"] == 1 and found["replica-file-queue"] == 0
    assert found["replica-in-sync-at"] == now == found["replica-started-at"]
    assert found["replication-errors"] == {} and found["replication-stopped"] is None
    parts.clock.advance(7)
    parts.primary.serial = 5  # the primary moved on; its serials are not here yet
    parts.primary.answer_polls()
    parts.http.flush()
    found = status.status()
    assert found["primary-serial"] == 5 and found["primary-serial-timestamp"] == now + 7
    assert found["replication-lag"] == {"serials": 2, "seconds": 7.0}
    for pending in files.stop():
        result_of(pending)
    parts.stop(follower)
