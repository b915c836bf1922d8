"""The mirror on the production code path, with upstream PyPI a twisted.web resource
behind ``treq.testing.StubTreq`` and time a ``twisted.internet.task.Clock``: a real
sqlite storage (inline executor), a file blob store and staging files written inline.
Nothing here waits on the real reactor or the wall clock."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from devpi_twisted.mirror.cache import (
    CACHED,
    FRESH,
    MISSING,
    MISSING_FOR,
    OFFLINE,
    Mirror,
    MirrorFailed,
    TransferBroken,
)
from devpi_twisted.mirror.upstream import BACKOFF, Upstream, UpstreamError
from devpi_twisted.model.initial import root_pypi, root_user
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.storage.values import MirrorConfig
from tests.mirror.test_cache import Collect
from tests.support import make_wheel

NAME = "root/pypi"
UPSTREAM = "http://pypi.example/simple/"
JSON = "application/vnd.pypi.simple.v1+json"


class FakePyPI(Resource):
    """Upstream's project list, simple pages (PEP 691 JSON, ETag, X-PyPI-Last-Serial) and
    files."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, dict[str, bytes]] = {}  # project -> filename -> body
        self.asked: list[str] = []
        self.status: int | None = None  # answer every request with this
        self.corrupt = False  # file bodies with a byte changed
        self.hold = False  # answer nothing until released
        self.held: list[Request] = []

    def add(self, project: str, filename: str, body: bytes) -> None:
        self.files.setdefault(project, {})[filename] = body

    def render_GET(self, request: Request) -> bytes | int:
        path = request.path.decode()
        self.asked.append(path)
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        return self.answer(request)

    def release(self) -> None:
        held, self.held, self.hold = self.held, [], False
        for request in held:
            request.write(self.answer(request))
            request.finish()

    def answer(self, request: Request) -> bytes:
        path = request.path.decode()
        if self.status is not None:
            request.setResponseCode(self.status)
            return b"failing"
        parts = path.strip("/").split("/")
        if parts[0] == "files":
            for files in self.files.values():
                if parts[-1] in files:
                    body = files[parts[-1]]
                    return body[:-1] + b"?" if self.corrupt else body
        elif parts == ["simple"]:
            request.setHeader("Content-Type", JSON)
            return json.dumps({"meta": {"api-version": "1.0"}, "projects": [
                {"name": name} for name in sorted(self.files)]}).encode()
        elif parts[0] == "simple" and len(parts) == 2 and parts[1] in self.files:
            page = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1], "files": [
                {"filename": name, "url": f"http://pypi.example/files/{name}",
                 "hashes": {"sha256": hashlib.sha256(body).hexdigest()}, "size": len(body)}
                for name, body in sorted(self.files[parts[1]].items())]}).encode()
            etag = '"%s"' % hashlib.sha256(page).hexdigest()[:16]
            request.setHeader("ETag", etag)
            request.setHeader("X-PyPI-Last-Serial", "7")
            if request.getHeader("If-None-Match") == etag:
                request.setResponseCode(304)
                return b""
            request.setHeader("Content-Type", JSON)
            return page
        request.setResponseCode(404)
        return b"not found"


def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    try:
        return succeed(fn(*args, **kwargs))
    except Exception:
        return fail()


class _InlinePool:
    """A thread pool (for the blob store) that runs each call at once."""

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None],
                                 fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            result = fn(*args, **kwargs)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)


class _FromThreads:
    def callFromThread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        fn(*args, **kwargs)


class World:
    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.clock = Clock()
        self.fake = FakePyPI()
        self.http = StubTreq(self.fake)
        self.jitter = [0.0]
        self.upstream = Upstream(self.clock, self.http, timeout=5,
                                 random=lambda: self.jitter[0])
        self.storage = SqliteStorage.open(tmp_path / "db.sqlite3", InlineExecutor())
        self.blobs = FileBlobStore(tmp_path / "files", _FromThreads(), _InlinePool())
        self.staging = tmp_path / "staging"
        self.staging.mkdir()
        self.mirror = Mirror(self.storage, self.upstream, self.blobs, self.staging, _inline,
                             self.clock, **options)
        self.config = MirrorConfig({**root_pypi(UPSTREAM).config.to_json(),
                                    "mirror_no_project_list": True, "mirror_url": UPSTREAM})
        self.run(self.storage.bootstrap([root_user("", "not-a-hash", 0.0)],
                                        [root_pypi(UPSTREAM)]))

    def pump(self) -> None:
        """Deliver what upstream sent, and run what is due now (after-reply work)."""
        for _ in range(5):
            self.http.flush()
            self.clock.advance(0)

    def run(self, work: Any) -> Any:
        """The result of ``work`` (a Deferred or coroutine), once due now."""
        d = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)
        self.pump()
        results: list[Any] = []
        d.addBoth(results.append)
        assert results, "still waiting"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def ensure(self, project: str) -> Deferred[str]:
        return Deferred.fromCoroutine(self.mirror.ensure(NAME, self.config, project))

    def asked(self, prefix: str) -> int:
        return sum(path.startswith(prefix) for path in self.fake.asked)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    made.fake.add("alpha", "alpha-1.0.tar.gz", b"alpha release " * 100)
    yield made
    made.storage.close()


def test_pages_are_fresh_then_cached_then_revalidated_with_the_etag(world: World) -> None:
    assert world.run(world.ensure("alpha")) == FRESH
    record = world.run(world.storage.get_mirror_project("root", "pypi", "alpha"))
    assert [link["filename"] for link in record.value["links"]] == ["alpha-1.0.tar.gz"]
    serial = world.storage.serial
    world.clock.advance(60)
    assert world.run(world.ensure("alpha")) == CACHED
    assert world.asked("/simple/alpha/") == 1
    world.clock.advance(1800)
    assert world.run(world.ensure("alpha")) == FRESH  # a 304: nothing written
    assert world.asked("/simple/alpha/") == 2 and world.storage.serial == serial
    assert world.mirror.stats["page_hits"] == 1 and world.mirror.stats["page_fetches"] == 2


def test_concurrent_requests_share_one_upstream_request(world: World) -> None:
    world.fake.hold = True
    waiting = [world.ensure("alpha") for _ in range(10)]
    world.pump()
    world.fake.release()
    assert world.run(Deferred.fromCoroutine(_all(waiting))) == [FRESH] * 10
    assert world.asked("/simple/alpha/") == 1


async def _all(waiting: list[Deferred[str]]) -> list[str]:
    return [await d for d in waiting]


def test_no_such_project_is_believed_for_missing_for(world: World) -> None:
    assert world.run(world.ensure("nope")) == MISSING
    world.clock.advance(MISSING_FOR - 1)
    assert world.run(world.ensure("nope")) == MISSING
    assert world.asked("/simple/nope/") == 1
    world.clock.advance(2)
    assert world.run(world.ensure("nope")) == MISSING
    assert world.asked("/simple/nope/") == 2


def test_failures_are_retried_after_a_jittered_back_off_on_the_clock(world: World) -> None:
    assert world.run(world.ensure("alpha")) == FRESH
    world.clock.advance(3600)
    world.fake.status = 503
    world.jitter[0] = 0.0  # the first retry after BACKOFF * 0.5, the second BACKOFF
    refreshing = world.ensure("alpha")
    world.pump()
    assert world.asked("/simple/alpha/") == 2
    world.clock.advance(BACKOFF * 0.5 - 0.01)
    world.pump()
    assert world.asked("/simple/alpha/") == 2  # not yet
    world.clock.advance(0.01)
    world.pump()
    assert world.asked("/simple/alpha/") == 3
    world.clock.advance(BACKOFF)
    assert world.run(refreshing) == CACHED  # upstream failing: the cache stands in
    assert world.asked("/simple/alpha/") == 4
    assert world.upstream.stats["retries"] == 2 and world.mirror.stats["page_errors"] == 1
    with pytest.raises(MirrorFailed):
        world.run(_after_backoff(world, world.ensure("beta")))  # nothing cached


def _after_backoff(world: World, work: Deferred[str]) -> Deferred[str]:
    world.pump()
    world.clock.advance(BACKOFF * 0.5)
    world.pump()
    world.clock.advance(BACKOFF)
    return work


def test_a_slow_upstream_is_waited_for_on_the_clock_and_its_page_stored_later(
        tmp_path: Path) -> None:
    world = World(tmp_path, wait=2.0)
    world.fake.add("gamma", "gamma-1.0.tar.gz", b"gamma")
    world.fake.hold = True
    asking = world.ensure("gamma")
    world.pump()
    world.clock.advance(1.9)
    world.pump()
    assert not asking.called
    world.clock.advance(0.1)
    with pytest.raises(MirrorFailed, match="timeout after 2s"):
        world.run(asking)
    world.fake.release()  # the fetch went on: its page is stored
    world.pump()
    world.run(world.mirror.settled())
    assert world.run(world.storage.get_mirror_project("root", "pypi", "gamma")) is not None
    assert world.run(world.ensure("gamma")) == CACHED
    world.storage.close()


def test_upstream_timeouts_run_on_the_given_clock(world: World) -> None:
    world.fake.hold = True
    d = world.upstream.get_page(UPSTREAM + "alpha/")
    world.pump()
    world.clock.advance(4.9)
    world.pump()
    assert world.asked("/simple/alpha/") == 1 and world.upstream.stats["errors"] == 0
    world.clock.advance(0.1)  # the first try times out after 5 s (treq, on our clock)
    world.pump()
    assert world.upstream.stats["errors"] == 1
    for _ in range(2):  # two retries, each after its back-off, each timing out
        world.clock.advance(BACKOFF * 2)
        world.pump()
        world.clock.advance(5)
        world.pump()
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(UpstreamError)
    assert world.asked("/simple/alpha/") == 3 and world.upstream.stats["errors"] == 3


def test_a_first_download_is_streamed_checked_and_stored(world: World) -> None:
    world.run(world.ensure("alpha"))
    record = world.run(world.storage.get_mirror_project("root", "pypi", "alpha"))
    link = record.value["links"][0]
    got = Collect()
    checked: list[bool] = []
    size = world.run(world.mirror.download(NAME, "alpha", "1.0", link["entrypath"],
                                           got.start, lambda: checked.append(True)))
    body = world.fake.files["alpha"]["alpha-1.0.tar.gz"]
    assert size == len(body) and got.data == body and checked == [True]
    assert got.headers["Content-Length"] == str(len(body))
    stored = world.run(world.storage.get_file(link["entrypath"]))
    assert stored is not None and stored.entry["hashes"]["sha256"] == link["sha256"]
    assert world.run(world.blobs.exists(link["entrypath"])) is True
    assert list(world.staging.iterdir()) == []


def test_a_wrong_body_is_held_back_and_nothing_stored(world: World) -> None:
    world.run(world.ensure("alpha"))
    record = world.run(world.storage.get_mirror_project("root", "pypi", "alpha"))
    link = record.value["links"][0]
    world.fake.corrupt = True
    got = Collect()
    checked: list[bool] = []
    with pytest.raises(TransferBroken):
        world.run(world.mirror.download(NAME, "alpha", "1.0", link["entrypath"], got.start,
                                        lambda: checked.append(True)))
    assert len(got.data) < link["size"] and checked == []  # the last piece held back
    assert world.run(world.storage.get_file(link["entrypath"])) is None
    assert world.run(world.blobs.exists(link["entrypath"])) is False
    assert list(world.staging.iterdir()) == []


def test_a_wheel_gets_its_core_metadata_and_its_requirements_prefetched(
        world: World, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "app", "1.0", requires=["lib>=1", 'test; extra == "t"'])
    world.fake.add("app", wheel.name, wheel.read_bytes())
    world.fake.add("lib", "lib-1.0.tar.gz", b"lib")
    world.run(world.ensure("app"))
    record = world.run(world.storage.get_mirror_project("root", "pypi", "app"))
    link = record.value["links"][0]
    world.run(world.mirror.download(NAME, "app", "1.0", link["entrypath"], Collect().start,
                                    config=world.config))
    world.run(world.mirror.settled())
    assert world.asked("/simple/lib/") == 1 and world.asked("/simple/test/") == 0
    assert world.mirror.stats["page_prefetches"] == 1
    record = world.run(world.storage.get_mirror_project("root", "pypi", "app"))
    assert list(record.value["extracted"]) == [wheel.name]
    assert world.run(world.blobs.exists(link["entrypath"] + ".metadata")) is True


def test_offline_mode_answers_from_the_cache_and_never_asks(world: World) -> None:
    assert world.run(world.ensure("alpha")) == FRESH
    world.mirror.offline = True
    world.clock.advance(3600)
    assert world.run(world.ensure("alpha")) == OFFLINE
    assert world.run(world.ensure("beta")) == MISSING
    assert world.mirror.known(NAME, world.config, "alpha") is None
    assert world.asked("/") == 1


def test_a_replica_refreshes_through_its_primary(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    async def via(name: str, project: str) -> str:
        asked.append((name, project))
        return MISSING if project == "nope" else FRESH

    world = World(tmp_path, via=via)
    assert world.run(world.ensure("alpha")) == FRESH
    assert world.run(world.ensure("alpha")) == CACHED
    assert world.run(world.ensure("nope")) == MISSING
    assert asked == [(NAME, "alpha"), (NAME, "nope")] and world.fake.asked == []
    world.mirror.prefetch(NAME, world.config, ["beta"])  # the primary prefetches, not we
    assert world.mirror.stats["page_prefetches"] == 0
    world.storage.close()


def test_an_upstream_behind_the_stored_serial_is_not_believed(world: World) -> None:
    assert world.run(world.ensure("alpha")) == FRESH
    record = world.run(world.storage.get_mirror_project("root", "pypi", "alpha"))
    world.run(world.storage.write_mirror_project(
        "root", "pypi", "alpha", {**record.value, "serial": 8, "etag": None}, {}))
    world.clock.advance(3600)
    assert world.run(world.ensure("alpha")) == CACHED  # upstream says 7
    world.config = MirrorConfig({**world.config.to_json(), "mirror_ignore_serial_header": True})
    world.clock.advance(3600)
    assert world.run(world.ensure("alpha")) == FRESH


def test_the_project_list_is_fetched_in_the_background_when_expired(world: World) -> None:
    world.fake.files["beta"] = {}
    config = MirrorConfig({**world.config.to_json(), "mirror_no_project_list": False})
    assert world.mirror.names(NAME, config) is None  # none yet: fetched meanwhile
    world.pump()
    assert world.mirror.names(NAME, config) == {"alpha": "alpha", "beta": "beta"}
    assert world.asked("/simple/") == 1
    world.clock.advance(1799)
    world.mirror.names(NAME, config)
    world.pump()
    assert world.asked("/simple/") == 1
    world.clock.advance(1)
    world.mirror.names(NAME, config)
    world.pump()
    assert world.asked("/simple/") == 2
