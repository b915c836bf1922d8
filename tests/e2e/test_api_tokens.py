"""Scoped API tokens against the real daemon (issue 21 item 4): devpi-client 7 with the
devpi-tokens plugin (token-create, token-list, token-inspect, token-derive, token-login,
token-delete), twine uploading with a token as password of the user and of
``__token__``, and a revocation refusing the token at once on every worker (PostgreSQL
with two workers: the time from the DELETE to the first refusal is printed)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pymacaroons
import pytest

from tests.e2e.test_devpi_client import DevpiCLI
from tests.support import Daemon, bin_path, call, login, make_wheel


@pytest.fixture(scope="module")
def owner(daemon: Daemon) -> Daemon:
    """``tokuser`` with the index ``tokuser/dev``."""
    assert call(daemon.url + "/tokuser", "PUT", {"password": "tok-pass"})[0] == 201
    auth = login(daemon.url, "tokuser", "tok-pass")
    assert call(daemon.url + "/tokuser/dev", "PUT", {}, auth)[0] == 200
    return daemon


def _token(url: str, body: dict[str, object] | None = None) -> str:
    status, reply, _ = call(url + "/tokuser/+token-create", "POST", body or {},
                            login(url, "tokuser", "tok-pass"))
    assert status == 200, reply
    return str(reply["result"]["token"])


def _id_of(token: str) -> str:
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix("devpi-"))
    return str(macaroon.identifier.decode("ascii").rsplit("-", 1)[1])


def _bearer(url: str, token: str) -> int:
    """Status of an authenticated read with the token (/+api answers 401 when refused)."""
    return call(url + "/+api", headers={"Authorization": f"Bearer {token}"})[0]


def twine(url: str, user: str, password: str, *files: Path) -> tuple[bool, str]:
    done = subprocess.run(
        [bin_path("twine"), "upload", "--disable-progress-bar", "--non-interactive",
         "--repository-url", url, "-u", user, "-p", password, *map(str, files)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TWINE_CERT=""))
    return done.returncode == 0, " ".join((done.stdout + done.stderr).split())


def test_devpi_tokens_commands(owner: Daemon, tmp_path: Path) -> None:
    devpi = DevpiCLI(tmp_path / "client")
    devpi("use", owner.url + "/tokuser/dev")
    devpi("login", "tokuser", "--password", "tok-pass")
    out = devpi("token-create", "-i", "tokuser/dev", "-a", "upload,pkg_read")
    token = out.strip().splitlines()[-1]
    assert token.startswith("devpi-")
    inspected = " ".join(devpi("token-inspect", "--token", token).split())
    assert "user : tokuser" in inspected and "restriction: allowed=pkg_read,upload" in inspected
    assert "restriction: indexes=tokuser/dev" in inspected and "restriction: expires=" in inspected
    token_id = _id_of(token)
    assert f"id : {token_id}" in inspected
    listed = devpi("token-list")
    assert token_id in listed and "allowed=pkg_read,upload" in listed

    derived = devpi("token-derive", "--token", token, "-p", "hello-tok").strip().splitlines()[-1]
    assert "restriction: projects=hello-tok" in devpi("token-inspect", "--token", derived)
    # token-login: devpi-client then sends the token as the password of its user
    out = devpi("token-login", "--token", derived)
    assert "logged in 'tokuser'" in out
    # with a token, user changes and new tokens are refused
    assert "403" in devpi("token-create", ok=False)
    devpi("user", "-m", "tokuser", "email=x@example.com", ok=False)
    devpi("index", "-c", "tokuser/other", ok=False)

    devpi("login", "tokuser", "--password", "tok-pass")
    assert f"token {token_id} deleted" in devpi("token-delete", token_id)
    assert token_id not in devpi("token-list")
    devpi("token-login", "--token", derived, ok=False)
    devpi("token-delete", token_id, ok=False)  # 404 now


def test_twine_uploads_with_a_token(owner: Daemon, tmp_path: Path) -> None:
    url = owner.url + "/tokuser/dev/"
    token = _token(owner.url, {"projects": ["hello-tok"], "allowed": ["upload"]})
    ok, out = twine(url, "tokuser", token, make_wheel(tmp_path, "hello-tok", "1.0"))
    assert ok, out
    ok, out = twine(url, "__token__", token, make_wheel(tmp_path, "hello-tok", "2.0"))
    assert ok, out
    ok, out = twine(url, "__token__", token, make_wheel(tmp_path, "other-tok", "1.0"))
    assert not ok and "403" in out and "project other-tok" in out
    ok, out = twine(url, "someone", token, make_wheel(tmp_path, "hello-tok", "3.0"))
    assert not ok and "403" in out
    status, reply, _ = call(owner.url + "/tokuser/dev/hello-tok")
    assert status == 200 and sorted(reply["result"]) == ["1.0", "2.0"]
    assert token not in owner.log.read_text()


def test_refusals_say_why(owner: Daemon) -> None:
    token = _token(owner.url, {"expires": int(time.time()) + 3600})
    assert _bearer(owner.url, token) == 200
    bad = base64.b64encode(f"tokuser:{token[:-10]}".encode()).decode()
    request = urllib.request.Request(owner.url + "/+api", headers={"X-Devpi-Auth": bad,
                                                                  "Accept": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert "malformed" in json.loads(refused.value.read())["message"]


def test_revocation_refuses_at_once_on_every_worker(owner: Daemon) -> None:
    """Every request after the DELETE answered is refused, whichever process takes it
    (the PostgreSQL daemon runs two workers beside the main process)."""
    token = _token(owner.url)
    assert all(_bearer(owner.url, token) == 200 for _ in range(20))
    token_id = _id_of(token)
    auth = login(owner.url, "tokuser", "tok-pass")
    status, listed, _ = call(owner.url + "/tokuser/+tokens", "GET", None, auth)
    assert status == 200 and listed["result"]["tokens"][token_id]["first_used"] is not None
    started = time.monotonic()
    assert call(f"{owner.url}/tokuser/+tokens/{token_id}", "DELETE", None, auth)[0] == 200
    first = _bearer(owner.url, token)
    refused_after = time.monotonic() - started
    after = [_bearer(owner.url, token) for _ in range(40)]
    processes = "3 processes" if "--workers" in owner.args else "1 process"
    print(f"\nrevocation to first refusal ({processes}): {refused_after * 1000:.1f} ms "
          f"(DELETE included); the 40 requests after: {sorted(set(after))}")
    assert first == 401 and set(after) == {401}


def test_scope_on_deletions_and_push(owner: Daemon, tmp_path: Path) -> None:
    url = owner.url
    ok, out = twine(url + "/tokuser/dev/", "tokuser", "tok-pass",
                    make_wheel(tmp_path, "scoped-tok", "1.0"), make_wheel(tmp_path, "scoped-tok", "2.0"))
    assert ok, out
    password = login(url, "tokuser", "tok-pass")
    if call(url + "/tokuser/prod", "GET")[0] == 404:
        assert call(url + "/tokuser/prod", "PUT", {}, password)[0] == 200

    upload_only = ("tokuser", _token(url, {"allowed": ["upload"]}))
    status, reply, _ = call(url + "/tokuser/dev/scoped-tok/1.0", "DELETE", None, upload_only)
    assert status == 403 and "del_verdata" in reply["message"], reply
    other_project = ("tokuser", _token(url, {"allowed": ["del_verdata"], "projects": ["x"]}))
    status, reply, _ = call(url + "/tokuser/dev/scoped-tok/1.0", "DELETE", None, other_project)
    assert status == 403 and "project scoped-tok" in reply["message"], reply
    deleter = ("tokuser", _token(url, {"allowed": ["del_verdata"], "projects": ["scoped-tok"]}))
    assert call(url + "/tokuser/dev/scoped-tok/1.0", "DELETE", None, deleter)[0] == 200

    versions = call(url + "/tokuser/dev/scoped-tok")[1]["result"]
    (href,) = [link["href"] for link in versions["2.0"]["+links"] if link["rel"] == "releasefile"]
    report = {"host": "ci", "platform": "linux", "testenvs": {}}
    status, reply, _ = call(href, "POST", report, upload_only)
    assert status == 403 and "toxresult_upload" in reply["message"], reply
    toxer = ("tokuser", _token(url, {"allowed": ["toxresult_upload"]}))
    assert call(href, "POST", report, toxer)[0] == 200

    push = {"name": "scoped-tok", "version": "2.0", "targetindex": "tokuser/prod"}
    dev_only = ("tokuser", _token(url, {"indexes": ["tokuser/dev"]}))
    status, reply, _ = call(url + "/tokuser/dev", "PUSH", push, dev_only)
    assert status == 403 and "upload on tokuser/prod" in reply["message"], reply
    both = ("tokuser", _token(url, {"indexes": ["tokuser/dev", "tokuser/prod"]}))
    status, reply, _ = call(url + "/tokuser/dev", "PUSH", push, both)
    assert status == 200, reply
    status, reply, _ = call(url + "/tokuser/dev/scoped-tok", "DELETE", None, dev_only)
    assert status == 200, reply
