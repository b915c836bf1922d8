"""Our replica following a real devpi-server primary (6.20 and the 7.0 beta) through
devpi's replication protocol, then promoted, then used with the real pip, twine and
devpi-client; and what an untranslatable serial does (issue 24 item 1, "Bad input").

One devpi-server per major version for the module: the tests of a version run in order
on it (the bad-input test adds a user our rules refuse, after the main scenario)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dump import devpi6
from tests.dump.state import assert_same, build_state, run_twistd, views
from tests.replication.devpi_primary import (
    PASSWORD, ROOT_PASSWORD, add_docs_and_toxresult, caught_up, devpi_primary, fill, links_of,
    serial_of, start_replica, stopped, upload_release, version_view,
)
from tests.pg import PgCluster
from tests.support import Daemon, bin_path, make_wheel

PROJECT = "hello-follow"


@pytest.fixture(scope="module", params=[6, 7], ids=["devpi6-sqlite", "devpi7-postgres"])
def primary(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The primary; the replica of the main scenario keeps its state in sqlite (devpi 6)
    or PostgreSQL (devpi 7), so each adapter follows one of them."""
    base = tmp_path_factory.mktemp(f"devpi{request.param}")
    storage: tuple[str, ...] = ()
    if request.param == 7:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        storage = ("--storage", cluster.storage_option(cluster.create_database()))
    # devpi 6 also gets the dump tests' state (root/pypi, a mirror, ACLs, bases, ...)
    init = ("--root-passwd", ROOT_PASSWORD) if request.param == 6 else ()  # (with root/pypi)
    with devpi_primary(base / "primary", request.param, *init) as server:
        if request.param == 6:
            build_state(server.url, base / "state", ROOT_PASSWORD)
        yield {"server": server, "base": base, "major": request.param, "storage": storage}


def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, PIP_CONFIG_FILE=os.devnull, **(env or {})))
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, f"{' '.join(args)}:\n{output}"
    return output


def promote(serverdir: Path, *args: str, ok: bool = True) -> str:
    return run(bin_path("devpi-twisted"), "promote", "--serverdir", str(serverdir), *args, ok=ok)


def body_of(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_follow_then_promote_then_clients_see_everything(primary: dict[str, Any]) -> None:
    server, base = primary["server"], primary["base"]
    work = base / "work"
    work.mkdir()
    # before the follow: releases, docs, a tox result, and a version uploaded then deleted
    dana = fill(server.url, work, PROJECT, ["0.8", "0.9", "1.0"])
    status, reply = devpi6.call(server.url + f"/dana/dev/{PROJECT}/0.8", "DELETE", auth=dana)
    assert status == 200, reply
    serverdir = base / "replica"
    storage = primary["storage"]
    replica = start_replica(serverdir, server, storage=storage)
    try:
        caught_up(replica, server.url)
        # during the follow: a new release (sent to the replica, which relays it to devpi)
        # with docs and a tox result, another deletion
        via_replica = devpi6.login(replica.url, "dana", PASSWORD)
        upload_release(replica.url + "/dana/dev", via_replica, work, PROJECT, "2.0")
        add_docs_and_toxresult(server.url, dana, work, PROJECT, "2.0")
        status, reply = devpi6.call(server.url + f"/dana/dev/{PROJECT}/0.9", "DELETE", auth=dana)
        assert status == 200, reply
        drop_a_user_with_an_index(server.url, work)
        status_view = caught_up(replica, server.url)
        assert status_view["serial"] == serial_of(server.url)
        assert devpi6.call(replica.url + "/zed")[0] == 404
        assert status_view["replica-primary-kind"].startswith(f"devpi-server {primary['major']}.")
        expected = version_view(server.url, PROJECT)
        assert set(expected) == {"1.0", "2.0"}
        assert version_view(replica.url, PROJECT) == expected
        if primary["major"] == 6:  # every view, key for key, and every file's hash
            assert_same(views(replica.url), views(server.url))
        # every file body is here, with devpi's bytes
        for link in links_of(replica.url, PROJECT):
            status_code, body = body_of(link["href"])
            assert status_code == 200, link
            assert link["hash_spec"] == "sha256=" + hashlib.sha256(body).hexdigest()
        # the replica serves reads, and refuses to be promoted while it runs
        assert "is running" in promote(serverdir, *storage, ok=False)
    finally:
        replica.stop()
    role = "primary" if primary["major"] == 7 else "standalone"  # (each way once)
    out = promote(serverdir, *storage, "--role", role)
    assert f"is now a {role}" in out
    ours = Daemon(serverdir, "--secretfile", str(server.serverdir.parent / "secret"),
                  "--role", role, *storage).start()
    try:
        assert json.loads((serverdir / ".nodeinfo").read_text())["role"] == role
        # a primary serves its changelog (to replicas only), a standalone server none
        _, answer, _ = devpi6.request(ours.url + "/+changelog/0")
        assert (b"Replication protocol disabled" in answer) == (role == "standalone")
        check_clients(ours, expected, work)
    finally:
        ours.stop()


def drop_a_user_with_an_index(url: str, work: Path) -> None:
    """A user with an index holding a release, then the index deleted, then the user."""
    root = devpi6.login(url, "root", ROOT_PASSWORD)
    assert devpi6.call(url + "/zed", "PUT", {"password": "zed-pw"}, auth=root)[0] == 201
    zed = devpi6.login(url, "zed", "zed-pw")
    assert devpi6.call(url + "/zed/tmp", "PUT", {"bases": []}, auth=zed)[0] == 200
    upload_release(url + "/zed/tmp", zed, work, "zed-pkg", "1.0")
    assert devpi6.call(url + "/zed/tmp", "DELETE", auth=zed)[0] in (200, 201)
    assert devpi6.call(url + "/zed", "DELETE", auth=root)[0] == 200


def check_clients(ours: Daemon, expected: dict[str, Any], work: Path) -> None:
    """The promoted node: devpi-client logs in with the password devpi hashed, lists what
    the primary had; pip installs it; twine uploads a new version."""
    client = {"DEVPI_CLIENTDIR": str(work / "client"), "HOME": str(work)}
    devpi = bin_path("devpi")
    run(devpi, "use", ours.url + "/dana/dev", env=client)
    assert "logged in 'dana'" in run(devpi, "login", "dana", "--password", PASSWORD, env=client)
    listed = run(devpi, "list", PROJECT, env=client)
    assert f"{PROJECT.replace('-', '_')}-2.0-py3-none-any.whl" in listed
    assert "0.9" not in listed and "0.8" not in listed
    assert version_view(ours.url, PROJECT) == expected
    status, docs = body_of(ours.url + f"/dana/dev/{PROJECT}/2.0/+doc/index.html")
    assert status == 200 and b"docs of" in docs
    status, found = devpi6.call(ours.url + "/+search?query=docs")  # (text stored by promote)
    assert status == 200, found
    assert any(hit["kind"] == "doc" and hit["project"] == PROJECT for hit in found["result"]["hits"])
    target = work / "site"
    run(sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir", "install",
        "--index-url", ours.url + "/dana/dev/+simple/", "--target", str(target), PROJECT)
    assert (target / "hello_follow" / "__init__.py").read_text() == "VERSION = '2.0'\n"
    wheel = make_wheel(work, PROJECT, "3.0")
    run(bin_path("twine"), "upload", "--disable-progress-bar", "--non-interactive",
        "--repository-url", ours.url + "/dana/dev/", "-u", "dana", "-p", PASSWORD, str(wheel),
        env={"TWINE_CERT": ""})
    assert "3.0" in version_view(ours.url, PROJECT)
    status, reply = devpi6.call(ours.url + "/+login", "POST",
                                {"user": "root", "password": ROOT_PASSWORD})
    assert status == 200, reply


def test_an_untranslatable_serial_stops_the_follow_until_skipped(primary: dict[str, Any]) -> None:
    server, base = primary["server"], primary["base"]
    root = devpi6.login(server.url, "root", ROOT_PASSWORD)
    # devpi lets a zero-width space into a user name; we refuse such names
    status, reply = devpi6.call(server.url + "/eve%E2%80%8B", "PUT", {"password": "x"}, auth=root)
    assert status == 201, reply
    bad = serial_of(server.url)
    status, reply = devpi6.call(server.url + "/carol", "PUT", {"password": "carol-pw"}, auth=root)
    assert status == 201, reply
    serverdir = base / "replica-bad"
    replica = start_replica(serverdir, server)
    try:
        found = stopped(replica)
        reason = found["replication-stopped"]
        assert f"devpi serial {bad}, key " in reason and "eve" in reason, reason
        assert f"--skip-serial {bad}" in reason
        assert found["serial"] == bad - 1  # everything before it applied, nothing of it
        status, _ = devpi6.call(replica.url + "/dana")
        assert status == 200
    finally:
        replica.stop()
    replica = start_replica(serverdir, server)  # started again: stops at the same serial
    try:
        assert stopped(replica)["serial"] == bad - 1
    finally:
        replica.stop()
    replica = start_replica(serverdir, server, "--skip-serial", str(bad))
    try:
        caught_up(replica, server.url)
        status, _ = devpi6.call(replica.url + "/carol")
        assert status == 200
        assert "Skipping devpi serial" in replica.log.read_text()
    finally:
        replica.stop()
    # a replica's state started without --role is checked as a replica
    done = run_twistd("--serverdir", str(serverdir), "--workers", "2")
    assert done.returncode != 0 and "--workers is not available on a replica" in done.stderr + done.stdout
    # promoted by the test above
    assert "not a replica" in promote(base / "replica", *primary["storage"], ok=False)
    # a file whose body never came: promote refuses unless told to go on without it
    body = next(p for p in (serverdir / "+files").rglob("*.whl"))
    body.unlink()
    out = promote(serverdir, ok=False)
    assert "1 files have no body here yet" in out and body.name in out
    assert "is now a standalone" in promote(serverdir, "--allow-missing-files")
