"""A real devpi-server (6.20 or 7.0 beta) as the primary our replica follows: started
with a shared secret file, filled through its HTTP API; and our replica of it, waited on
until it has caught up (serial and file queue)."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.dump import devpi6
from tests.dump.state import doc_zip
from tests.support import FAST_ARGON2, Daemon, init_serverdir, make_sdist, make_wheel

PASSWORD = "dana-pw"
ROOT_PASSWORD = "root-pw"


@contextmanager
def devpi_primary(directory: Path, major: int, *init: str) -> Iterator[devpi6.Devpi6]:
    """devpi-server ``major``.x as a primary with ``directory/secret``; ``init``: more
    devpi-init options (without them: no root/pypi)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    secret = directory / "secret"
    secret.write_text(base64.b64encode(os.urandom(32)).decode())
    secret.chmod(0o600)
    server = devpi6.Devpi6(devpi6.ensure_installed(major), directory / "state")
    server.run("devpi-init", *(init or ("--no-root-pypi",)), "--root-passwd", ROOT_PASSWORD)
    # the replica derives its key from the secret with the same (test-cheap) costs
    server.start("--secretfile", str(secret), "--role", "primary", "--offline-mode",
                 *FAST_ARGON2)
    try:
        yield server
    finally:
        server.stop()


def serial_of(url: str) -> int:
    _, _, headers = devpi6.request(url + "/+api")
    return int(headers["X-Devpi-Serial"])


def start_replica(serverdir: Path, primary: devpi6.Devpi6, *args: str,
                  storage: tuple[str, ...] = ()) -> Daemon:
    """Our replica of ``primary`` (made on first use); ``storage``: ``--storage SPEC``."""
    if not serverdir.exists():
        init_serverdir(serverdir, "--role", "replica", "--primary-url", primary.url, *storage)
    secret = primary.serverdir.parent / "secret"
    # as the issue has it: no --role or --primary-url, the state says it follows
    return Daemon(serverdir, "--secretfile", str(secret), *storage, *args).start()


def replica_status(replica: Daemon) -> dict[str, Any]:
    _, body, _ = devpi6.request(replica.url + "/+status")
    return dict(json.loads(body)["result"])


def caught_up(replica: Daemon, primary_url: str, timeout: float = 60) -> dict[str, Any]:
    """Waits until the replica holds the primary's serial and every file body."""
    want = serial_of(primary_url)
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = replica_status(replica)
        if status.get("replication-stopped"):
            raise AssertionError(status["replication-stopped"])
        if status["serial"] >= want and status["replica-file-queue"] == 0:
            return status
        time.sleep(0.1)
    raise AssertionError(f"not caught up with serial {want}: {status}")


def stopped(replica: Daemon, timeout: float = 30) -> dict[str, Any]:
    """Waits until the replica's follow stopped; its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = replica_status(replica)
        if status.get("replication-stopped"):
            return status
        time.sleep(0.1)
    raise AssertionError("the follow did not stop")


def upload_release(url: str, auth: tuple[str, str], work: Path, name: str, version: str) -> None:
    """A wheel and an sdist of ``name`` ``version`` into the index at ``url``."""
    for dist in (make_wheel(work, name, version), make_sdist(work, name, version)):
        devpi6.upload(url, auth, dist, name, version)


def fill(url: str, work: Path, project: str, versions: list[str]) -> tuple[str, str]:
    """dana with dana/dev; releases, docs and a tox result of ``project``. Returns
    dana's login."""
    root = devpi6.login(url, "root", ROOT_PASSWORD)
    status, reply = devpi6.call(url + "/dana", "PUT", {"password": PASSWORD,
                                                         "email": "dana@example.com"}, auth=root)
    assert status == 201, reply
    dana = devpi6.login(url, "dana", PASSWORD)
    status, reply = devpi6.call(url + "/dana/dev", "PUT", {"bases": [], "volatile": True,
                                                            "title": "Dev"}, auth=dana)
    assert status == 200, reply
    for version in versions:
        upload_release(url + "/dana/dev", dana, work, project, version)
    add_docs_and_toxresult(url, dana, work, project, versions[-1])
    return dana


def add_docs_and_toxresult(url: str, dana: tuple[str, str], work: Path, project: str,
                           version: str) -> None:
    devpi6.upload(url + "/dana/dev", dana, doc_zip(work, project), project, version,
                  action="doc_upload")
    status, links = devpi6.call(url + f"/dana/dev/{project}/{version}", auth=dana)
    assert status == 200, links
    wheel = next(link for link in links["result"]["+links"] if link["href"].endswith(".whl"))
    devpi6.upload_toxresult(wheel["href"], dana, {"testenvs": {"py311": {}}, "host": "h"})


def version_view(url: str, project: str) -> dict[str, Any]:
    """``/dana/dev/PROJECT``: each version's summary and its files (rel, path; the path
    holds the start of the sha256, devpi 7 shows no hash)."""
    status, reply = devpi6.call(url + f"/dana/dev/{project}")
    assert status == 200, reply
    view = {}
    for version, data in reply["result"].items():
        links = sorted((link["rel"], urllib.parse.urlsplit(link["href"]).path)
                       for link in data.get("+links", []))
        view[version] = {"summary": data.get("summary"), "links": links}
    return view


def links_of(url: str, project: str) -> list[dict[str, Any]]:
    """Every file link of ``project`` in ``url``/dana/dev."""
    status, reply = devpi6.call(url + f"/dana/dev/{project}")
    assert status == 200, reply
    return [link for data in reply["result"].values() for link in data.get("+links", [])]
