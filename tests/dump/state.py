"""One server state built through the HTTP API both devpi-server 6 and we speak, and
the views compared after a round trip (every JSON view, every file's hash)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from tests.dump.devpi6 import call, login, request, upload, upload_toxresult
from tests.support import Daemon, bin_path, make_sdist, make_wheel

PASSWORDS = {"alice": "alice-secret", "bob": "bob's pw", "root": "root-pw"}


def doc_zip(directory: Path, name: str) -> Path:
    path = directory / f"{name}-docs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.html", f"<html><body>docs of {name}</body></html>")
        archive.writestr("sub/page.html", "<p>page</p>")
    return path


# the same settings in each devpi-server major version's spelling (7 refuses 6's)
# (7 sets per-project rules with a request of its own: not here)
DEV_WHITELIST: dict[int, dict[str, Any]] = {6: {"mirror_whitelist": ["six"]}, 7: {}}
ALLOW_ALL: dict[int, dict[str, Any]] = {
    6: {"mirror_whitelist": ["*"]}, 7: {"project_inheritance_rules": ["allow all"]}}
PROD_TRUST: dict[int, dict[str, Any]] = {
    6: {"mirror_whitelist_inheritance": "union"},
    7: {"trust_inheritance_rules_from": "type:not remote"}}
OTHER_MIRROR: dict[int, dict[str, Any]] = {
    6: {"type": "mirror", "mirror_url": "http://127.0.0.1:9/simple/", "mirror_cache_expiry": 600},
    7: {"type": "remote", "remote_url": "http://127.0.0.1:9/simple/", "remote_refresh_delay": 600}}


def build_state(url: str, workdir: Path, root_password: str = "", major: int = 6) -> None:
    """Users, indexes with bases and ACLs, wheels, sdists, docs and tox results (index
    settings spelt as devpi-server ``major`` wants them)."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = login(url, "root", root_password)
    if root_password != PASSWORDS["root"]:
        status, reply = call(url + "/root", "PATCH", {"password": PASSWORDS["root"]}, auth=root)
        assert status == 200, reply
        root = login(url, "root", PASSWORDS["root"])
    for user, email in (("alice", "alice@example.com"), ("bob", "")):
        body = {"password": PASSWORDS[user], "title": f"{user} T"}
        if email:
            body["email"] = email
        status, reply = call(url + f"/{user}", "PUT", body, auth=root)
        assert status == 201, reply
    alice = login(url, "alice", PASSWORDS["alice"])
    bob = login(url, "bob", PASSWORDS["bob"])
    for name, body, auth in (
            ("alice/dev", {"bases": ["root/pypi"], "acl_upload": ["alice", "bob"],
                           "volatile": True, **DEV_WHITELIST[major]}, alice),
            ("alice/prod", {"bases": ["alice/dev"], "volatile": False,
                            "acl_toxresult_upload": ["alice"], "title": "Production",
                            **PROD_TRUST[major]}, alice),
            ("bob/empty", {"bases": [], **ALLOW_ALL[major]}, bob),
            ("root/other", OTHER_MIRROR[major], root)):
        status, reply = call(url + "/" + name, "PUT", body, auth=auth)
        assert status == 200, reply
    for index, auth, project, versions in (
            ("alice/dev", alice, "hello-world", ["1.0", "1.1"]),
            ("alice/dev", bob, "Other.Pkg", ["2.0rc1"]),
            ("alice/prod", alice, "hello-world", ["1.1"])):
        for version in versions:
            wheel = make_wheel(workdir, project, version, requires=["six"],
                               requires_python=">=3.8")
            upload(url + "/" + index, auth, wheel, project, version, summary=f"{project} summary",
                   requires_python=">=3.8")
            sdist = make_sdist(workdir, project, version)
            upload(url + "/" + index, auth, sdist, project, version)
    upload(url + "/alice/dev", alice, doc_zip(workdir, "hello-world"), "hello-world", "1.1",
           action="doc_upload")
    status, links = call(url + "/alice/dev/hello-world/1.1", auth=alice)
    assert status == 200, links
    wheel_link = next(l for l in links["result"]["+links"] if l["href"].endswith(".whl"))
    upload_toxresult(wheel_link["href"], alice, {"testenvs": {"py311": {"test": [{"retcode": 0}]}},
                                                 "host": "h", "platform": "linux"})
    upload_toxresult(wheel_link["href"], None, {"testenvs": {"py312": {}}, "host": "h2"})


def add_carol(url: str, workdir: Path) -> None:
    """On our server after an import: a user (our argon2 hash), an index and an upload of
    our own, for the export that follows."""
    root = login(url, "root", PASSWORDS["root"])
    status, reply = call(url + "/carol", "PUT", {"password": "carol pw", "email": "c@x.y"}, auth=root)
    assert status == 201, reply
    carol = login(url, "carol", "carol pw")
    status, reply = call(url + "/carol/dev", "PUT", {"bases": ["alice/prod"]}, auth=carol)
    assert status == 200, reply
    upload(url + "/carol/dev", carol, make_wheel(workdir, "carols-pkg", "0.1"), "carols-pkg", "0.1")


def _strip(value: Any, base: str) -> Any:
    """A view with the server's base URL cut from every string (so two servers compare)."""
    if isinstance(value, dict):
        return {k: _strip(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v, base) for v in value]
    if isinstance(value, str):
        return value.replace(base, "URL")
    return value


def views(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Every JSON view of users, indexes, projects and versions (without the mirrors'
    upstream-dependent pages), and the sha256 of every file the versions link."""
    found: dict[str, Any] = {}
    hashes: dict[str, str] = {}
    status, users = call(url + "/")
    assert status == 200, users
    found["/"] = users["result"]
    for user, record in sorted(users["result"].items()):
        status, reply = call(url + f"/{user}")
        found[f"/{user}"] = reply["result"]
        for index, config in sorted(record.get("indexes", {}).items()):
            name = f"{user}/{index}"
            if config.get("type") in ("mirror", "remote"):
                continue  # its view lists upstream's projects; its config is in the user's view
            status, reply = call(url + f"/{name}")
            assert status == 200, reply
            found[f"/{name}"] = reply["result"]
            for project in sorted(reply["result"]["projects"]):
                status, reply = call(url + f"/{name}/{project}")
                assert status == 200, reply
                found[f"/{name}/{project}"] = reply["result"]
                for version in sorted(reply["result"]):
                    status, vreply = call(url + f"/{name}/{project}/{version}")
                    found[f"/{name}/{project}/{version}"] = vreply["result"]
                    for link in vreply["result"].get("+links", []):
                        status, body, _ = request(link["href"], accept="*/*")
                        assert status == 200, (link["href"], status)
                        relative = link["href"].replace(url, "")
                        hashes[relative] = hashlib.sha256(body).hexdigest()
    return _strip(found, url), hashes


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``devpi-twisted ARGS`` (not checked: tests look at the status and the output)."""
    return subprocess.run([bin_path("devpi-twisted"), *args], capture_output=True, text=True,
                          timeout=600)


def run_twistd(*args: str) -> subprocess.CompletedProcess[str]:
    """``twistd -n devpi ARGS``: the server's spelling of export and import."""
    return subprocess.run([bin_path("twistd"), "-n", "--pidfile=", "devpi", *args],
                          capture_output=True, text=True, timeout=600)


def served_views(serverdir: Path, *args: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Start our daemon on ``serverdir``, read every view, stop it."""
    daemon = Daemon(serverdir, *args).start()
    try:
        return views(daemon.url)
    finally:
        daemon.stop()


def assert_same(found: tuple[dict[str, Any], dict[str, str]],
                expected: tuple[dict[str, Any], dict[str, str]]) -> None:
    views_found, hashes_found = found
    views_expected, hashes_expected = expected
    assert sorted(views_found) == sorted(views_expected)
    for key in sorted(views_expected):
        assert dump_json(views_found[key]) == dump_json(views_expected[key]), key
    assert hashes_found == hashes_expected
    assert len(hashes_found) >= 11
