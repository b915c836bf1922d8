"""Issue 19, items 18 and 23, against a fake PyPI (its own process) with real treq, on
both storage adapters: a project published upstream after the mirror fetched its project
list is found at once (its lookups shared, a "no" believed for a minute at most); a file
whose bytes fail the hash upstream's page gave never reaches a consumer whole, is not
stored, and is fetched again next time."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from devpi_twisted.mirror.cache import (
    FRESH, MISSING, MISSING_FOR, MirrorFailed, TransferBroken, expected_hashes,
)
from devpi_twisted.mirror.receive import Check
from devpi_twisted.storage.values import MirrorConfig
from tests.fakepypi import SWITCHES, FakePyPI
from tests.mirror.test_cache import NAME, URL, Collect, World, stop_pumping  # noqa: F401
from tests.storage.conftest import adapter  # noqa: F401  (the fixture: sqlite, postgres)
from tests.support import make_wheel


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    work = tmp_path_factory.mktemp("fake")
    upstream = FakePyPI(work / "fake")
    upstream.add(make_wheel(work, "listed", "1.0"))
    big = work / "bulky-1.0.tar.gz"  # arrives in several reads
    big.write_bytes(os.urandom(2 << 20))
    upstream.add(big)
    upstream.url = URL
    yield upstream


@pytest.fixture
def world(tmp_path: Path, fake: FakePyPI, adapter: Any) -> Iterator[World]:  # noqa: F811
    made = World(tmp_path, fake, adapter.open())
    yield made
    fake.set(**{name: None for name in SWITCHES})


_names = [0]


def new_name(world: World) -> str:
    """A name no test used before (the fake is shared by the tests of this module)."""
    _names[0] += 1
    return f"newcomer{_names[0]}-{world.storage.__class__.__name__.lower()}"


def publish(world: World, tmp_path: Path, name: str | None = None) -> str:
    """Publish project ``name`` (a new one by default) upstream."""
    name = name or new_name(world)
    world.fake.add(make_wheel(tmp_path, name, "1.0"))
    return name


async def listed_config(world: World, **config: Any) -> MirrorConfig:
    """The mirror's config with the project list on, once the list has been fetched."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    listed = MirrorConfig({**world.config.to_json(), "mirror_no_project_list": False, **config})
    for _ in range(200):
        if world.mirror.names(NAME, listed) is not None:
            return listed
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("no project list")


@pytest.mark.parametrize("expiry", [0, 1800])
@pytest_twisted.ensureDeferred
async def test_a_project_published_after_the_list_was_fetched_is_found_at_once(
        world: World, tmp_path: Path, expiry: int) -> None:
    await world.setup()
    config = await listed_config(world, mirror_cache_expiry=expiry)
    name = publish(world, tmp_path)
    assert name not in (world.mirror.names(NAME, config) or {})
    assert await world.mirror.ensure(NAME, config, name) == FRESH
    await world.mirror.settled()
    assert [link["filename"] for link in await world.links(name)] == [
        f"{name.replace('-', '_')}-1.0-py3-none-any.whl"]
    assert name in (world.mirror.names(NAME, config) or {})  # +simple/ lists it too


@pytest_twisted.ensureDeferred
async def test_lookups_of_a_name_upstream_lacks_are_shared_and_believed_a_minute(
        world: World, tmp_path: Path) -> None:
    await world.setup()
    config = await listed_config(world)  # expiry 1800 s
    name = new_name(world)
    answers = await gatherResults([Deferred.fromCoroutine(
        world.mirror.ensure(NAME, config, name)) for _ in range(5)])
    assert answers == [MISSING] * 5
    assert len(world.asked(f"/simple/{name}/")) == 1  # one upstream request for all five
    assert await world.mirror.ensure(NAME, config, name) == MISSING
    assert len(world.asked(f"/simple/{name}/")) == 1  # the "no" is believed ...
    publish(world, tmp_path, name)
    world.clock.advance(MISSING_FOR - 1)
    assert await world.mirror.ensure(NAME, config, name) == MISSING
    world.clock.advance(1)  # ... for a minute, not for the expiry
    assert await world.mirror.ensure(NAME, config, name) == FRESH
    assert len(world.asked(f"/simple/{name}/")) == 2


@pytest_twisted.ensureDeferred
async def test_with_expiry_zero_every_lookup_asks_upstream(world: World) -> None:
    await world.setup()
    config = await listed_config(world, mirror_cache_expiry=0)
    name = new_name(world)
    for _ in range(3):
        assert await world.mirror.ensure(NAME, config, name) == MISSING
    assert len(world.asked(f"/simple/{name}/")) == 3


async def _first_link(world: World, project: str = "listed") -> dict[str, Any]:
    await world.ensure(project)
    return (await world.links(project))[0]


@pytest.mark.parametrize("project", ["listed", "bulky"])
@pytest_twisted.ensureDeferred
async def test_a_body_failing_its_hash_never_reaches_the_consumer_whole(
        world: World, project: str) -> None:
    await world.setup()
    link = await _first_link(world, project)
    world.fake.set(corrupt=True)
    got, checked = Collect(), []
    with pytest.raises(TransferBroken):
        await world.mirror.download(NAME, project, "1.0", link["entrypath"], got.start,
                                    lambda: checked.append(True))
    assert int(got.headers["Content-Length"]) == link["size"]
    assert len(got.data) < link["size"] and checked == []  # the last bytes held back
    if project == "bulky":
        assert got.data  # the body was on its way meanwhile
    assert await world.storage.get_file(link["entrypath"]) is None
    assert await world.blobs.exists(link["entrypath"]) is False
    world.fake.set(corrupt=None)  # the next request fetches again, and gets it right
    again = Collect()
    assert await world.mirror.download(NAME, project, "1.0", link["entrypath"],
                                       again.start) == link["size"]
    assert hashlib.sha256(again.data).hexdigest() == link["sha256"]
    assert len(world.asked("/files/")) == 2


@pytest_twisted.ensureDeferred
async def test_requests_waiting_for_a_broken_first_download_fail_without_bytes(
        world: World) -> None:
    await world.setup()
    link = await _first_link(world)
    world.fake.set(corrupt=True)
    first, second = Collect(), Collect()
    results = await gatherResults([Deferred.fromCoroutine(_outcome(world.mirror.download(
        NAME, "listed", "1.0", link["entrypath"], got.start))) for got in (first, second)])
    assert results == [TransferBroken, MirrorFailed]
    assert len(first.data) < link["size"] and second.data == b""
    assert len(world.asked("/files/")) == 1


async def _outcome(work: Any) -> Any:
    try:
        return await work
    except Exception as e:
        return type(e)


def test_every_hash_the_page_gave_is_checked() -> None:
    body = b"release file"
    md5 = hashlib.md5(body).hexdigest()
    link = {"sha256": None, "hash_spec": f"md5={md5}"}
    assert expected_hashes(link) == {"md5": md5}
    for data, length, passed in [(body, None, True), (body, len(body), True),
                                 (body, len(body) + 1, False), (b"other file!!", None, False)]:
        check = Check(length, expected_hashes(link))
        check.update(data)  # (the sha256 and size are the spool's)
        assert check.passed(len(data), hashlib.sha256(data).hexdigest()) is passed


@pytest_twisted.ensureDeferred
async def test_when_upstream_fails_the_lists_no_stands_for_a_name_it_lacks(
        world: World) -> None:
    await world.setup()
    config = await listed_config(world)
    name = new_name(world)
    world.fake.set(paths_status={"/simple/": 503})
    assert await world.mirror.ensure(NAME, config, name) == MISSING  # not a 502
    with pytest.raises(MirrorFailed):  # listed, nothing cached: upstream's failure shows
        await world.mirror.ensure(NAME, config, "listed")


@pytest_twisted.ensureDeferred
async def test_mirror_versions_are_synthesised_from_its_links(world: World) -> None:
    from devpi_twisted.model.simple import SimpleOps

    await world.setup()
    world.fake.set(yank={"bulky-1.0.tar.gz": "broken"}, requires_python={"bulky": ">=3.9"})
    simple = SimpleOps(world.storage, world.mirror.page)

    def refresh(mirror: str, config: Any, project: str) -> Any:
        return Deferred.fromCoroutine(world.mirror.ensure(mirror, config, project))

    found = await simple.mirror_versions("root", "pypi", "Bulky", refresh)
    await world.mirror.settled()
    link = (await world.links("bulky"))[0]
    assert found == [{"1.0": {
        "name": "bulky", "version": "1.0", "requires_python": ">=3.9", "yanked": "broken",
        "+elinks": [{"rel": "releasefile", "entrypath": link["entrypath"],
                     "hash_spec": f"sha256={link['sha256']}",
                     "hashes": {"sha256": link["sha256"]}}]}}]
    assert await simple.mirror_versions("root", "pypi", new_name(world), refresh) == []
