"""The mirror's cache policy and downloads against the fake PyPI (tests/fakepypi.py)
answering in this process behind ``treq.testing.StubTreq``, with a real sqlite storage
and a file blob store (their threads on the real reactor); the mirror's clock is a
``task.Clock`` the test moves on (tests/mirror/test_stubbed.py runs on it alone)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.threads import deferToThread
from twisted.web.server import Request
from zope.interface import implementer

from devpi_twisted.mirror.cache import (
    CACHED,
    FRESH,
    MISSING,
    OFFLINE,
    Mirror,
    MirrorFailed,
    NoSuchFile,
    TransferBroken,
)
from devpi_twisted.mirror.upstream import Upstream
from devpi_twisted.model.initial import root_pypi, root_user
from devpi_twisted.storage.executor import ThreadExecutor
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.interface import UNSTORED
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.storage.values import MirrorConfig
from tests.fakepypi import SWITCHES, FakeIndexResource, FakePyPI
from tests.support import make_sdist, make_wheel

NAME = "root/pypi"
URL = "http://127.0.0.1/simple/"  # (any host: StubTreq answers every one)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    work = tmp_path_factory.mktemp("fake")
    upstream = FakePyPI(work / "fake")
    for path in [make_wheel(work, "alpha", "1.0"), make_wheel(work, "alpha", "2.0"),
                 make_sdist(work, "alpha", "2.0"), make_wheel(work, "beta", "1.0")]:
        upstream.add(path)
    upstream.url = URL
    yield upstream


@pytest.fixture(scope="module")
def deps_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    """An upstream whose ``app`` requires ``lib``, ``other-lib`` and, for an extra,
    ``testlib``."""
    work = tmp_path_factory.mktemp("deps")
    upstream = FakePyPI(work / "fake")
    requires = ["lib>=1", "Other_Lib", 'testlib; extra == "test"']
    for path in [make_wheel(work, "app", "1.0", requires=requires), make_wheel(work, "lib", "1.0"),
                 make_wheel(work, "other-lib", "1.0"), make_wheel(work, "testlib", "1.0")]:
        upstream.add(path)
    upstream.url = URL
    yield upstream


@pytest.fixture
def upstream_switches(fake: FakePyPI) -> Iterator[FakePyPI]:
    yield fake
    fake.set(**{name: None for name in SWITCHES})


_PUMPING: list[LoopingCall] = []


@pytest.fixture(autouse=True)
def stop_pumping() -> Iterator[None]:
    """Stop the pumps of the test's worlds after it."""
    yield
    while _PUMPING:
        _PUMPING.pop().stop()


class InProcessPyPI(FakeIndexResource):
    """The fake index answering in this process: its "reset" aborts the in-memory
    connection (there is no socket to reset), and a big body goes in pieces, a few ms
    apart (in-memory connections deliver all that was written at once)."""

    PIECE = 256 << 10

    def _answer(self, request: Request, state: dict[str, Any]) -> None:
        if state.get("reset"):
            self._record(request, None, "reset")
            request.transport.abortConnection()
            return
        reply = self._decide(request, state)
        if reply.action is not None or len(reply.body) <= self.PIECE \
                or request.method != b"GET" or reply.status is None:
            super()._answer(request, state)
            return
        self._record(request, reply.status, None)
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        request.setHeader("Content-Length", str(len(reply.body)))
        gone: list[object] = []
        request.notifyFinish().addErrback(gone.append)  # the client left
        self._pieces(request, reply.body, gone)

    def _pieces(self, request: Request, body: bytes, gone: list[object]) -> None:
        from twisted.internet import reactor

        if gone:
            return
        request.write(body[:self.PIECE])
        if len(body) > self.PIECE:
            reactor.callLater(0.005, self._pieces, request, body[self.PIECE:], gone)
        else:
            request.finish()


class World:
    def __init__(self, tmp_path: Path, fake: FakePyPI, storage: Any = None) -> None:
        """On ``storage`` (an adapter's, empty), else on a new sqlite database."""
        from twisted.internet import reactor

        self.clock = Clock()  # the mirror's: a test moves it on
        self.clock.advance(1000)
        self.storage = storage if storage is not None else SqliteStorage.open(
            tmp_path / "db.sqlite3", ThreadExecutor(reactor, "test-mirror"))
        self.blobs = FileBlobStore(tmp_path / "files", reactor)
        staging = tmp_path / "staging"
        staging.mkdir()
        self.http = StubTreq(InProcessPyPI(fake.root, fake.state_file, fake.log_file, reactor))
        self.pumping = LoopingCall(self.pump)
        self.pumping.start(0.002, now=False)
        _PUMPING.append(self.pumping)
        self.upstream = Upstream(reactor, self.http, timeout=5)
        self.staging = staging
        self.mirror = self.new_mirror()
        # the project list has a test of its own; elsewhere it would race the pages
        self.config = MirrorConfig({**root_pypi(fake.url).config.to_json(), "mirror_no_project_list": True})
        self.fake = fake
        self.seen = len(fake.requests())

    def pump(self) -> None:
        """Carry what was written over the in-memory connections, and run the mirror's
        calls due now (writes after the replies)."""
        self.http.flush()
        self.clock.advance(0)

    def new_mirror(self, **options: Any) -> Mirror:
        """A Mirror on this world's storage, upstream and files (one more after a restart,
        or in another process)."""
        return Mirror(self.storage, self.upstream, self.blobs, self.staging,
                      lambda fn, *a: deferToThread(fn, *a), self.clock, **options)

    async def setup(self) -> World:
        index = root_pypi(self.fake.url)
        await self.storage.bootstrap([root_user("", "not-a-hash", 0.0)], [index])
        return self

    def asked(self, prefix: str = "/") -> list[dict[str, Any]]:
        """Requests the fake answered since this world began (or since the last call)."""
        found = self.fake.requests()[self.seen:]
        return [r for r in found if r["path"].startswith(prefix)]

    def ensure(self, project: str, **config: Any) -> Deferred[str]:
        """The mirror's ensure, once what it stores is stored."""
        return Deferred.fromCoroutine(self._ensure(project, config))

    async def _ensure(self, project: str, config: dict[str, Any]) -> str:
        state = await self.mirror.ensure(NAME, MirrorConfig({**self.config.to_json(), **config}), project)
        await self.mirror.settled()
        return state

    async def links(self, project: str) -> list[dict[str, Any]]:
        record = await self.storage.get_mirror_project("root", "pypi", project)
        return list(record.value["links"])


async def _until(done: Any) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(100):
        if done():
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("not in time")


@pytest.fixture
def world(tmp_path: Path, upstream_switches: FakePyPI) -> Iterator[World]:
    made = World(tmp_path, upstream_switches)
    yield made
    made.storage.close()


@implementer(IConsumer)
class Collect:
    def __init__(self) -> None:
        self.data = b""
        self.headers: dict[str, str] = {}

    def start(self, headers: dict[str, str]) -> Collect:
        self.headers = dict(headers)
        return self

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.data += data


@pytest_twisted.ensureDeferred
async def test_a_new_page_is_served_while_its_write_commits(world: World) -> None:
    await world.setup()
    serial = world.storage.serial
    assert await world.mirror.ensure(NAME, world.config, "alpha") == FRESH
    assert world.storage.serial == serial  # not committed yet ...
    assert await world.storage.get_mirror_project("root", "pypi", "alpha") is None
    unstored = await world.mirror.page(NAME, "alpha")  # ... but served
    assert unstored is not None and unstored.serial == UNSTORED
    link = unstored.value["links"][0]
    assert (await world.mirror.link_for(NAME, "alpha", link["entrypath"]))["url"] == link["url"]
    await world.mirror.settled()
    stored = await world.mirror.page(NAME, "alpha")
    assert stored is not None and stored.serial == serial + 1
    assert stored.value == unstored.value
    assert await world.mirror.ensure(NAME, world.config, "alpha") == CACHED  # young
    assert len(world.asked("/simple/alpha/")) == 1


@pytest_twisted.ensureDeferred
async def test_a_page_write_that_fails_is_asked_again(world: World) -> None:
    """The index went away while its page was being written: nothing is kept."""
    await world.setup()
    index = await world.storage.get_index("root", "pypi")
    deleting = world.storage.delete_index("root", "pypi", index.serial)
    assert await world.mirror.ensure(NAME, world.config, "beta") == FRESH
    await deleting
    await world.mirror.settled()
    assert await world.mirror.page(NAME, "beta") is None
    assert world.mirror.known(NAME, world.config, "beta") is None  # not taken as checked


@pytest_twisted.ensureDeferred
async def test_a_file_asked_before_its_page_was_fetched_here_asks_for_the_page(
        world: World, tmp_path: Path) -> None:
    """As when another worker process is still writing the page the client read."""
    (tmp_path / "other").mkdir()
    other = await World(tmp_path / "other", world.fake).setup()
    try:
        assert await other.ensure("beta") == FRESH
        link = (await other.links("beta"))[0]
    finally:
        other.storage.close()
    await world.setup()
    world.seen = len(world.fake.requests())
    got = Collect()
    with pytest.raises(NoSuchFile):  # without the index's config: no page, no file
        await world.mirror.download(NAME, "beta", "1.0", link["entrypath"], got.start)
    assert world.asked("/simple/beta/") == []
    await world.mirror.download(NAME, "beta", "1.0", link["entrypath"], got.start,
                                config=world.config)
    assert len(world.asked("/simple/beta/")) == 1
    assert hashlib.sha256(got.data).hexdigest() == link["sha256"]


@pytest_twisted.ensureDeferred
async def test_many_concurrent_requests_cause_one_upstream_fetch(world: World) -> None:
    await world.setup()
    serial = world.storage.serial
    results = await gatherResults([world.ensure("alpha") for _ in range(100)])
    assert set(results) == {FRESH}
    assert len(world.asked("/simple/alpha/")) == 1
    assert world.storage.serial == serial + 1  # stored once
    links = await world.links("alpha")
    assert [link["filename"] for link in links] == [
        "alpha-1.0-py3-none-any.whl", "alpha-2.0-py3-none-any.whl", "alpha-2.0.tar.gz"]
    assert all(link["entrypath"].startswith("root/pypi/+f/") for link in links)


@pytest_twisted.ensureDeferred
async def test_young_pages_are_not_asked_again_old_ones_revalidate_with_the_etag(world: World) -> None:
    await world.setup()
    assert await world.ensure("alpha") == FRESH
    serial = world.storage.serial
    world.clock.advance(60)
    assert await world.ensure("alpha") == CACHED
    assert len(world.asked("/simple/alpha/")) == 1
    world.clock.advance(1800)
    assert await world.ensure("alpha") == FRESH
    again = world.asked("/simple/alpha/")[-1]
    assert again["status"] == 304 and again["headers"].get("if-none-match")
    assert world.storage.serial == serial  # nothing changed, nothing written
    assert await world.ensure("alpha", mirror_cache_expiry=0) == FRESH  # 0: ask every time
    assert len(world.asked("/simple/alpha/")) == 3


@pytest_twisted.ensureDeferred
async def test_failing_upstreams_are_retried_then_the_cache_stands_in(world: World) -> None:
    await world.setup()
    assert await world.ensure("alpha") == FRESH
    world.clock.advance(3600)
    world.fake.set(status=503)
    assert await world.ensure("alpha") == CACHED
    assert [r["status"] for r in world.asked("/simple/alpha/")] == [200, 503, 503, 503]
    with pytest.raises(MirrorFailed, match="503"):
        await world.ensure("beta")  # nothing cached
    world.fake.set(status=None, reset=True)
    world.clock.advance(3600)
    assert await world.ensure("alpha") == CACHED
    assert world.mirror.stats["page_errors"] == 3


@pytest_twisted.ensureDeferred
async def test_missing_projects_are_remembered_for_the_expiry(world: World) -> None:
    await world.setup()
    assert await world.ensure("no-such") == MISSING
    assert await world.ensure("no-such") == MISSING
    assert len(world.asked("/simple/no-such/")) == 1
    world.clock.advance(3600)
    assert await world.ensure("no-such") == MISSING
    assert len(world.asked("/simple/no-such/")) == 2


@pytest_twisted.ensureDeferred
async def test_an_upstream_behind_the_stored_serial_is_not_believed(world: World) -> None:
    await world.setup()
    assert await world.ensure("alpha") == FRESH
    world.clock.advance(3600)
    world.fake.set(serial=1)
    assert await world.ensure("alpha") == CACHED
    assert await world.ensure("alpha", mirror_ignore_serial_header=True) == FRESH


@pytest_twisted.ensureDeferred
async def test_offline_mode_never_asks_upstream_and_shows_only_stored_files(world: World) -> None:
    from devpi_twisted.model.simple import SimpleOps

    await world.setup()
    assert await world.ensure("alpha") == FRESH
    first = (await world.links("alpha"))[0]
    await world.mirror.download(NAME, "alpha", "1.0", first["entrypath"], Collect().start)
    world.mirror.offline = True
    world.clock.advance(3600)
    seen = len(world.asked())
    assert await world.ensure("alpha") == OFFLINE
    assert await world.ensure("beta") == MISSING
    with pytest.raises(MirrorFailed, match="offline"):
        await world.mirror.download(NAME, "alpha", "2.0", (await world.links("alpha"))[1]["entrypath"],
                                    Collect().start)

    def refresh(name: str, config: Any, project: str) -> Any:
        return Deferred.fromCoroutine(world.mirror.ensure(name, config, project))

    page, stale = await SimpleOps(world.storage).project_view("root", "pypi", "alpha", refresh)
    assert [link.filename for link in page.links] == [first["filename"]] and stale
    assert page.versions == ("1.0",)
    assert len(world.asked()) == seen


@pytest.mark.parametrize("only", ["json", "html"])
@pytest_twisted.ensureDeferred
async def test_json_only_and_html_only_upstreams_give_the_same_links(world: World, only: str) -> None:
    await world.setup()
    world.fake.set(only=only)
    assert await world.ensure("alpha") == FRESH
    links = await world.links("alpha")
    assert len(links) == 3 and all(len(link["sha256"]) == 64 for link in links)


@pytest_twisted.ensureDeferred
async def test_concurrent_first_downloads_share_one_fetch(world: World) -> None:
    await world.setup()
    await world.ensure("alpha")
    link = (await world.links("alpha"))[0]
    first, second = Collect(), Collect()
    sizes = await gatherResults([
        Deferred.fromCoroutine(world.mirror.download(NAME, "alpha", "1.0", link["entrypath"],
                                                     first.start)),
        Deferred.fromCoroutine(world.mirror.download(NAME, "alpha", "1.0", link["entrypath"],
                                                     second.start))])
    assert sizes[1] == 0 and sizes[0] == len(first.data) > 0  # the second waited for the first
    assert hashlib.sha256(first.data).hexdigest() == link["sha256"]
    assert len(world.asked("/files/")) == 1
    record = await world.storage.get_file(link["entrypath"])
    assert record.entry["hashes"]["sha256"] == link["sha256"]
    assert world.blobs.local_path(link["entrypath"]).read_bytes() == first.data


@pytest.mark.parametrize("switch", [{"truncate": True}, {"wrong_hash": True}])
@pytest_twisted.ensureDeferred
async def test_a_broken_download_is_never_stored(world: World, switch: dict[str, Any]) -> None:
    await world.setup()
    world.fake.set(**switch)
    await world.ensure("beta")
    link = (await world.links("beta"))[0]
    with pytest.raises(TransferBroken):
        await world.mirror.download(NAME, "beta", "1.0", link["entrypath"], Collect().start)
    assert await world.storage.get_file(link["entrypath"]) is None
    assert await world.blobs.exists(link["entrypath"]) is False


@pytest_twisted.ensureDeferred
async def test_upstream_404_for_a_file_is_no_such_file(world: World) -> None:
    await world.setup()
    await world.ensure("beta")
    link = (await world.links("beta"))[0]
    world.fake.set(paths_status={"/files/": 404})
    with pytest.raises(NoSuchFile):
        await world.mirror.download(NAME, "beta", "1.0", link["entrypath"], Collect().start)


@pytest_twisted.ensureDeferred
async def test_core_metadata_is_fetched_on_demand_with_its_hash(world: World) -> None:
    await world.setup()
    world.fake.set(metadata=True)
    await world.ensure("beta")
    link = (await world.links("beta"))[0]
    assert link["core_metadata"] and len(link["core_metadata"]) == 64
    got = Collect()
    await world.mirror.download(NAME, "beta", "1.0", link["entrypath"] + ".metadata", got.start)
    assert got.data.startswith(b"Metadata-Version") and b"Name: beta" in got.data
    assert hashlib.sha256(got.data).hexdigest() == link["core_metadata"]


@pytest_twisted.ensureDeferred
async def test_metadata_is_extracted_from_a_wheel_upstream_gave_without_it(world: World) -> None:
    from devpi_twisted.model.simple import SimpleOps

    await world.setup()
    await world.ensure("beta")
    link = (await world.links("beta"))[0]
    assert link["core_metadata"] is None
    await world.mirror.download(NAME, "beta", "1.0", link["entrypath"], Collect().start)
    record = await world.storage.get_mirror_project("root", "pypi", "beta")
    sha256 = record.value["extracted"][link["filename"]]
    metadata = world.blobs.local_path(link["entrypath"] + ".metadata").read_bytes()
    assert b"Name: beta" in metadata and hashlib.sha256(metadata).hexdigest() == sha256
    assert (await world.storage.get_file(link["entrypath"] + ".metadata")).entry["hashes"] == {
        "sha256": sha256}
    page = await SimpleOps(world.storage).project_page("root", "pypi", "beta")
    assert page.links[0].core_metadata == sha256
    world.clock.advance(3600)  # a refresh keeps what was extracted
    assert await world.ensure("beta", mirror_cache_expiry=0) == FRESH
    record = await world.storage.get_mirror_project("root", "pypi", "beta")
    assert record.value["extracted"] == {link["filename"]: sha256}


@pytest_twisted.ensureDeferred
async def test_the_project_list_is_fetched_in_the_background_and_saved(world: World) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await world.setup()
    config = MirrorConfig({**world.config.to_json(), "mirror_no_project_list": False})
    assert world.mirror.names(NAME, config) is None  # not loaded yet: nobody waits
    for _ in range(100):
        if world.mirror.names(NAME, config) is not None:
            break
        await deferLater(reactor, 0.05, lambda: None)
    names = world.mirror.names(NAME, config)
    assert names == {"alpha": "alpha", "beta": "beta"}
    assert len(world.asked("/simple/")) == 1 and world.asked("/simple/")[0]["path"] == "/simple/"
    assert await world.mirror.ensure(NAME, config, "not-listed") == MISSING
    assert await world.mirror.ensure(NAME, config, "not-listed") == MISSING
    assert len(world.asked("/simple/not-listed/")) == 1  # asked (it may be new), once
    assert await world.mirror.ensure(NAME, config, "alpha") == FRESH
    saved = world.blobs.local_path("root/pypi/+names/projects.json")
    assert saved is not None and b'"alpha"' in saved.read_bytes()  # kept for the next start


@pytest_twisted.ensureDeferred
async def test_a_stored_project_list_is_loaded_at_start_and_only_for_its_upstream(
        world: World) -> None:
    await world.setup()
    stored = (await world.storage.get_index("root", "pypi")).config.to_json()
    config = MirrorConfig({**stored, "mirror_url": stored["mirror_url"].replace("http://", "http://bob:pw@")})
    world.mirror.names(NAME, config)
    saved = world.blobs.local_path("root/pypi/+names/projects.json")
    assert saved is not None
    await _until(saved.exists)
    assert b"bob:pw" not in saved.read_bytes()  # the list names its upstream, no password
    fetched = len(world.asked("/simple/"))

    restarted = world.new_mirror()
    await restarted.warm(NAME, config)
    assert len(world.asked("/simple/")) == fetched  # loaded from the store, nobody asked
    assert restarted.names(NAME, config) == {"alpha": "alpha", "beta": "beta"}  # at once
    await _until(lambda: len(world.asked("/simple/")) == fetched + 1)  # revalidated upstream
    other = MirrorConfig({**config.to_json(), "mirror_url": "http://elsewhere.invalid/simple/"})
    assert await world.new_mirror().lists.load(NAME, other) is None  # another upstream's


@pytest_twisted.ensureDeferred
async def test_credentials_in_the_mirror_url_go_as_basic_auth_and_are_not_stored(
        world: World) -> None:
    import base64

    await world.setup()
    secret_url = world.fake.url.replace("http://", "http://bob:s3cret@")
    assert await world.ensure("beta", mirror_url=secret_url) == FRESH
    expected = "Basic " + base64.b64encode(b"bob:s3cret").decode()
    assert world.asked("/simple/beta/")[0]["headers"]["authorization"] == expected
    links = await world.links("beta")
    assert "s3cret" not in repr(links)
    await world.mirror.download(NAME, "beta", "1.0", links[0]["entrypath"], Collect().start,
                                config=MirrorConfig({**world.config.to_json(), "mirror_url": secret_url}))
    assert world.asked("/files/")[0]["headers"]["authorization"] == expected


@pytest_twisted.ensureDeferred
async def test_a_slow_upstream_is_not_waited_for_and_its_answer_still_stored(
        world: World) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    slow = world.new_mirror(wait=0.3)  # (on the mirror's clock)
    await world.setup()
    world.fake.add(make_wheel(Path(world.staging), "gamma", "1.0"))
    assert await slow.ensure(NAME, world.config, "gamma") == FRESH
    await slow.settled()
    serial = world.storage.serial
    world.fake.add(make_wheel(Path(world.staging), "gamma", "2.0"))
    world.fake.set(latency=1.0)
    world.clock.advance(3600)
    asking = Deferred.fromCoroutine(slow.ensure(NAME, world.config, "gamma"))
    world.clock.advance(0.3)  # upstream answers a second later
    assert await asking == CACHED
    asking = Deferred.fromCoroutine(slow.ensure(NAME, world.config, "beta"))
    world.clock.advance(0.3)
    with pytest.raises(MirrorFailed, match="timeout"):
        await asking  # nothing cached
    for _ in range(60):  # the fetch went on and stored the new page
        if world.storage.serial > serial:
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert "gamma-2.0-py3-none-any.whl" in [link["filename"] for link in await world.links("gamma")]
    # beta's fetch goes on too: let it end here, not in the next test's upstream log
    await _until(lambda: world.asked("/simple/beta/"))
    await slow.settled()


@pytest.mark.parametrize("metadata", [False, True], ids=["extracted", "metadata-file"])
@pytest_twisted.ensureDeferred
async def test_the_pages_a_fetched_release_requires_are_fetched_ahead_of_the_client(
        tmp_path: Path, deps_fake: FakePyPI, metadata: bool) -> None:
    deps_fake.set(metadata=metadata)
    world = await World(tmp_path, deps_fake).setup()
    try:
        assert await world.ensure("app") == FRESH
        link = (await world.links("app"))[0]
        # pip asks for the .metadata file where upstream offers one, else the wheel
        path = link["entrypath"] + (".metadata" if metadata else "")
        await world.mirror.download(NAME, "app", "1.0", path, Collect().start,
                                    config=world.config)
        await _until(lambda: world.mirror.stats["page_fetches"] == 3
                     and not world.mirror.refresher._refreshing)  # both fetched, not just asked
        await world.mirror.settled()
        assert world.mirror.stats["page_prefetches"] == 2
        assert world.asked("/simple/testlib/") == []  # only wanted for an extra
        for project in ("lib", "other-lib"):  # the installer's requests: answered here
            assert await world.ensure(project) == CACHED
            assert len(world.asked(f"/simple/{project}/")) == 1
            assert (await world.links(project))[0]["filename"] == f"{project.replace('-', '_')}-1.0-py3-none-any.whl"
    finally:
        deps_fake.set(metadata=None)
        world.storage.close()


@pytest_twisted.ensureDeferred
async def test_pages_known_or_being_fetched_are_not_prefetched_and_offline_nothing_is(
        world: World) -> None:
    await world.setup()
    assert await world.ensure("alpha") == FRESH
    world.mirror.prefetch(NAME, world.config, ["alpha"])  # young enough: not asked again
    assert world.mirror.stats["page_prefetches"] == 0
    world.mirror.offline = True
    world.mirror.prefetch(NAME, world.config, ["beta"])
    assert world.mirror.stats["page_prefetches"] == 0 and world.asked("/simple/beta/") == []


@pytest_twisted.ensureDeferred
async def test_files_of_a_page_this_process_created_are_known_not_stored(world: World) -> None:
    await world.setup()
    assert not world.mirror.none_stored(NAME, "beta")  # never seen: ask the database
    assert await world.mirror.ensure(NAME, world.config, "beta") == FRESH
    assert world.mirror.none_stored(NAME, "beta")  # new, its write still in flight
    await world.mirror.settled()
    assert world.mirror.none_stored(NAME, "beta")  # stored, no file yet
    link = (await world.links("beta"))[0]
    await world.mirror.download(NAME, "beta", "1.0", link["entrypath"], Collect().start,
                                config=world.config)
    assert not world.mirror.none_stored(NAME, "beta")  # a file of it is stored now
    assert (await world.storage.get_file(link["entrypath"])) is not None
    restarted = world.new_mirror()  # a page stored before this process: not known
    world.clock.advance(10_000)
    assert await restarted.ensure(NAME, world.config, "beta") == FRESH
    assert not restarted.none_stored(NAME, "beta")


@pytest_twisted.ensureDeferred
async def test_a_new_mirror_url_gets_its_own_list_while_the_old_ones_is_coming(
        world: World, upstream_switches: FakePyPI) -> None:
    await world.setup()
    old = MirrorConfig({**world.config.to_json(), "mirror_no_project_list": False})
    new = MirrorConfig({**old.to_json(), "mirror_url": old.mirror_url.replace("127.0.0.1", "localhost")})
    world.fake.set(latency=0.5)

    def lists_asked() -> int:
        return len([r for r in world.asked("/simple/") if r["path"] == "/simple/"])

    assert world.mirror.names(NAME, old) is None  # the old upstream's list: on its way
    world.clock.advance(1)
    assert world.mirror.names(NAME, new) is None  # the new one's: asked for too
    await _until(lambda: lists_asked() == 2)
    await _until(lambda: world.mirror.lists._known(NAME, new) is not None)
    assert {"alpha", "beta"} <= set(world.mirror.names(NAME, new) or ())
    # the old upstream's list, whenever it came, was not taken: the mirror had moved on
    saved = world.blobs.local_path("root/pypi/+names/projects.json")
    assert saved is not None
    await _until(saved.exists)
    assert b"localhost" in saved.read_bytes()
    assert world.mirror.names(NAME, old) is None  # back to the old upstream: fetched anew
    await _until(lambda: world.mirror.lists._known(NAME, old) is not None)
    assert lists_asked() == 3


def test_a_saved_project_list_reads_back_whole_or_not_at_all(tmp_path: Path) -> None:
    import json

    from devpi_twisted.mirror.names import LIST_CHUNK, _List, _read_list, _write_list

    names = {f"p{i}": f"P_{i}" for i in range(2 * LIST_CHUNK + 5)}  # three chunks
    path, sha256 = _write_list(tmp_path, _List(1.0, '"e1"', names, "https://up.example/simple/"))
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256
    assert _read_list(data) == ('"e1"', names, "https://up.example/simple/")
    cut = data[:data.rindex(b"\n", 0, len(data) - 1) + 1]  # the last chunk lost
    with pytest.raises(ValueError):
        _read_list(cut)
    old = json.dumps({"etag": None, "names": names, "url": "https://up.example/simple/"})
    small = json.dumps({"etag": None, "names": {"a": "A"}, "url": "https://up.example/simple/"})
    for before in (old, small):  # one document, as saved before: fetched anew
        with pytest.raises(ValueError):
            _read_list(before.encode())
