"""Push with the real devpi-client against the real daemon (sqlite; PostgreSQL with
workers), and the history pushed files carry, side by side with devpi-server 6.20."""

from __future__ import annotations

import urllib.request
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.dump import devpi6 as plain
from tests.dump.devpi6 import running
from tests.e2e.test_devpi_client import DevpiCLI
from tests.support import Daemon, call, init_serverdir, login, make_wheel


@pytest.fixture(scope="module")
def devpi6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running(tmp_path_factory.mktemp("devpi6")) as server:
        yield server.url


def _doc_zip(path: Path, text: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.html", f"<p>{text}</p>")
    return path


def _histories(url: str, user: str, files: Mapping[str, Path]) -> dict[str, Any]:
    """Upload over files in the volatile ``user/a`` and ``user/b``, push a's release over
    b's twice, then onto itself; the logs of every link of both versions, without their
    times (and checks that the files are intact)."""
    assert plain.call(url + f"/{user}", "PUT", {"password": "pw"})[0] == 201
    auth = plain.login(url, user, "pw")
    for index in ("a", "b"):
        assert plain.call(url + f"/{user}/{index}", "PUT", {"volatile": True}, auth)[0] == 200

    def upload(index: str, which: str) -> None:
        action = "doc_upload" if which.startswith("doc") else "file_upload"
        plain.upload(f"{url}/{user}/{index}", auth, files[which], "hist", "1.0", action=action)

    def push(target: str = "b") -> None:
        status, reply = plain.call(url + f"/{user}/a", "PUSH",
                                   {"name": "hist", "version": "1.0", "targetindex": f"{user}/{target}"},
                                   auth)
        assert status == 200, reply

    upload("a", "wheel1")
    upload("a", "wheel2")  # an overwrite in a
    upload("a", "doc1")
    upload("a", "doc2")
    upload("b", "wheel1")
    upload("b", "doc1")
    push()  # over b's own uploads
    upload("a", "wheel1")  # a second overwrite in a
    push()  # over the pushed files
    push("a")  # onto itself
    logs = {}
    for index in ("a", "b"):
        status, reply = plain.call(url + f"/{user}/{index}/hist/1.0")
        assert status == 200, reply
        logs[index] = {link["rel"]: [{k: v for k, v in entry.items() if k != "when"}
                                     for entry in link["log"]]
                       for link in reply["result"]["+links"]}
        for link in reply["result"]["+links"]:
            with urllib.request.urlopen(link["href"]) as response:
                expected = files["wheel1" if link["rel"] == "releasefile" else "doc2"]
                assert response.read() == expected.read_bytes(), link["href"]
    return logs


def test_pushing_over_a_volatile_release_keeps_history_as_devpi(
        devpi6: str, daemon: Daemon, tmp_path: Path) -> None:
    work = tmp_path / "files"
    work.mkdir()
    first, second = work / "1", work / "2"
    first.mkdir()
    second.mkdir()
    user = "h" + uuid.uuid4().hex[:8]  # one name on both servers (devpi6 lives for the module)
    made = {"wheel1": make_wheel(first, "hist", "1.0"),
            "wheel2": make_wheel(second, "hist", "1.0", requires=["six"]),
            "doc1": _doc_zip(work / "doc1.zip", "first"), "doc2": _doc_zip(work / "doc2.zip", "second")}
    theirs = _histories(devpi6, user, made)
    ours = _histories(daemon.url, user, made)
    assert ours == theirs
    # what devpi records, spelled out: the target's overwrite count goes on, then the
    # pushed file's upload (its source's overwrites left out), then the push
    assert ours["b"]["releasefile"] == [
        {"what": "overwrite", "who": None, "count": 2},
        {"what": "upload", "who": user, "dst": f"{user}/a"},
        {"what": "push", "who": user, "src": f"{user}/a", "dst": f"{user}/b"}]
    assert ours["a"]["releasefile"] == [
        {"what": "overwrite", "who": None, "count": 3},
        {"what": "upload", "who": user, "dst": f"{user}/a"},
        {"what": "push", "who": user, "src": f"{user}/a", "dst": f"{user}/a"}]


# -- devpi-client's push options and version listing ---------------------------------------


@pytest.fixture(scope="module")
def pusher(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> tuple[Daemon, DevpiCLI]:
    """``pusher/dev`` holding pushy 1.0 (a wheel and docs), uploaded with devpi-client;
    ``pusher/rel``, ``pusher/docs`` and ``ext/prod`` (the 'external' index) empty."""
    home = tmp_path_factory.mktemp("pusher")
    dist = home / "dist"
    dist.mkdir()
    make_wheel(dist, "pushy", "1.0")
    _doc_zip(dist / "pushy-1.0.doc.zip", "pushy docs")
    devpi = DevpiCLI(home / "client")
    devpi("use", daemon.url)
    devpi("login", "root", "--password", "")
    devpi("user", "-c", "pusher", "password=push-pass")
    devpi("user", "-c", "ext", "password=ext-pass")
    devpi("login", "ext", "--password", "ext-pass")
    devpi("index", "-c", "ext/prod")
    devpi("login", "pusher", "--password", "push-pass")
    for index in ("dev", "rel", "docs"):
        devpi("index", "-c", f"pusher/{index}")
    devpi("use", "pusher/dev")
    devpi("upload", "--from-dir", str(dist))
    (home / "client" / ".pypirc").write_text(
        f"[distutils]\nindex-servers = ext\n\n[ext]\nrepository = {daemon.url}/ext/prod/\n"
        "username = ext\npassword = ext-pass\n")
    return daemon, devpi


def _rels(daemon: Daemon, index: str) -> list[str]:
    status, reply, _ = call(f"{daemon.url}/{index}/pushy/1.0")
    assert status == 200, reply
    return sorted(link["rel"] for link in reply["result"]["+links"])


def test_devpi_push_no_docs(pusher: tuple[Daemon, DevpiCLI]) -> None:
    daemon, devpi = pusher
    out = devpi("push", "--no-docs", "pushy==1.0", "pusher/rel")
    assert "store_releasefile" in out and "store_doczip" not in out
    assert _rels(daemon, "pusher/rel") == ["releasefile"]


def test_devpi_push_only_docs(pusher: tuple[Daemon, DevpiCLI]) -> None:
    daemon, devpi = pusher
    out = devpi("push", "--only-docs", "pushy==1.0", "pusher/docs")
    assert "store_doczip" in out and "store_releasefile" not in out
    assert _rels(daemon, "pusher/docs") == ["doczip"]


def test_devpi_push_register_project_to_an_external_index(pusher: tuple[Daemon, DevpiCLI]) -> None:
    daemon, devpi = pusher
    out = devpi("push", "--register-project", "--no-docs", "pushy==1.0", "pypi:ext")
    lines = [line.split() for line in out.splitlines()]
    assert ["200", "register", "pushy", "1.0"] in lines, out
    assert any(line[:2] == ["200", "upload"] for line in lines), out
    assert _rels(daemon, "ext/prod") == ["releasefile"]
    with urllib.request.urlopen(daemon.url + "/ext/prod/+simple/pushy/") as response:
        assert "pushy-1.0-py3-none-any.whl" in response.read().decode()


def test_devpi_version_lists_the_devpi_server_api_version(pusher: tuple[Daemon, DevpiCLI]) -> None:
    daemon, devpi = pusher
    out = devpi("--version")
    assert f"current devpi server: {daemon.url}" in out
    listed = dict(line.split() for line in out.split("current devpi server:")[1].splitlines()[1:]
                  if line.startswith("    "))
    assert set(listed) == {"devpi-server", "devpi-twisted"}, out
    assert listed["devpi-server"].startswith("6.20."), out


def test_external_push_is_refused_in_offline_mode(tmp_path: Path) -> None:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    offline = Daemon(serverdir, "--offline-mode").start()
    try:
        assert call(offline.url + "/alice", "PUT", {"password": "pw"})[0] == 201
        auth = login(offline.url, "alice", "pw")
        assert call(offline.url + "/alice/dev", "PUT", {}, auth)[0] == 200
        body = {"name": "pkg", "version": "1.0", "posturl": offline.url + "/alice/dev/",
                "username": "alice", "password": "pw"}
        status, reply, _ = call(offline.url + "/alice/dev", "PUSH", body, auth)
        assert status == 403, reply
        assert "--offline-mode" in reply["message"]
        assert call(offline.url + "/alice/dev", "PUSH", body)[0] == 401  # still no anonymous push
    finally:
        offline.stop()
    assert "Traceback" not in offline.log.read_text()
