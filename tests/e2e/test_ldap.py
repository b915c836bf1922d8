"""LDAP users and groups against a real daemon and a real slapd (tests/ldap.py), on
sqlite and on PostgreSQL with two workers (they get --ldap-config too): login with the
directory password, groups in upload ACLs through twine's Basic auth, groups in
acl_read (Basic auth and pip, login token, session cookie, listing, +authcheck), local users
first, root always local, a directory that is down (503 for LDAP logins only), and a
bad configuration file stopping the start."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start_daemon
from tests.ldap import GROUPS_BASE, SUFFIX, Slapd
from tests.e2e.test_devpi_client import DevpiCLI
from tests.e2e.test_replication import _send
from tests.support import Daemon, bin_path, call, login, make_wheel


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd")).start()
    yield server
    server.stop()


def ldap_config(path: Path, slapd: Slapd) -> Path:
    path.write_text(f"""\
devpi-ldap:
  url: {slapd.url}
  timeout: 5
  user_search:
    base: {SUFFIX}
    filter: (&(objectClass=inetOrgPerson)(uid={{username}}))
    scope: whole-subtree
    attribute_name: dn
  group_search:
    base: {GROUPS_BASE}
    filter: (&(objectClass=groupOfNames)(member={{userdn}}))
    attribute_name: cn
""")
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           slapd: Slapd) -> Iterator[Daemon]:
    config = ldap_config(tmp_path_factory.mktemp("ldapcfg") / "ldap.yaml", slapd)
    running = start_daemon(request, tmp_path_factory, "--ldap-config", str(config))
    assert call(running.url + "/team", "PUT", {"password": "team-pw"})[0] == 201
    auth = login(running.url, "team", "team-pw")
    assert call(running.url + "/team/dev", "PUT", {"acl_upload": [":devs"]}, auth)[0] == 200
    assert call(running.url + "/localdup", "PUT", {"password": "local-pw"})[0] == 201
    yield running
    running.stop()


def request(url: str, method: str = "GET", body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def authstatus(daemon: Daemon, user: str, secret: str) -> list[Any]:
    auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
    status, reply = request(daemon.url + "/+api", headers={"X-Devpi-Auth": auth})
    assert status == 200, reply
    return list(reply["result"]["authstatus"])


def twine(url: str, user: str, password: str, wheel: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("twine"), "upload", "--disable-progress-bar", "--non-interactive",
         "--repository-url", url, "-u", user, "-p", password, str(wheel)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TWINE_CERT=""))


def test_an_ldap_user_logs_in_with_the_directory_password_and_has_its_groups(
        daemon: Daemon) -> None:
    user, token = login(daemon.url, "alice", "alice-pw")
    for _ in range(4):  # every worker accepts the token
        assert authstatus(daemon, user, token) == ["ok", "alice", ["devs", "ops"]]
    assert authstatus(daemon, "bob", "bob-pw") == ["ok", "bob", ["devs"]]  # the password itself
    status, reply = request(daemon.url + "/+login", "POST", {"user": "alice", "password": "no"})
    assert status == 401 and "could not be authenticated" in reply["message"]
    assert authstatus(daemon, "alice", "no") == ["noauth", "", []]
    assert authstatus(daemon, "bob", token) == ["noauth", "", []]  # alice's token, not bob's


def test_group_in_acl_upload_lets_ldap_members_upload_with_twine(
        daemon: Daemon, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ldap-pkg", "1.0")
    done = twine(daemon.url + "/team/dev/", "bob", "bob-pw", wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    status, reply, _ = call(daemon.url + "/team/dev/ldap-pkg")
    assert status == 200 and "1.0" in reply["result"]
    refused = twine(daemon.url + "/team/dev/", "carol", "carol-pw",
                    make_wheel(tmp_path, "ldap-pkg", "2.0"))
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr


def test_a_local_user_wins_over_the_directory_and_root_is_always_local(daemon: Daemon) -> None:
    assert login(daemon.url, "localdup", "local-pw")[0] == "localdup"
    status, _ = request(daemon.url + "/+login", "POST",
                        {"user": "localdup", "password": "ldap-dup-pw"})
    assert status == 401
    status, _ = request(daemon.url + "/+login", "POST", {"user": "root", "password": "ldap-root-pw"})
    assert status == 401
    # slapd matches these as alice / root; none becomes a second user of the same person
    for user, password in ((" alice", "alice-pw"), ("alice ", "alice-pw"),
                           ("ROOT", "ldap-root-pw")):
        body = {"user": user, "password": password}
        assert request(daemon.url + "/+login", "POST", body)[0] == 401
        assert authstatus(daemon, user, password) == ["noauth", "", []]
    assert login(daemon.url, "root", "")[0] == "root"


def test_a_directory_that_is_down_refuses_ldap_logins_with_503_only(
        daemon: Daemon, slapd: Slapd) -> None:
    _, alice = login(daemon.url, "alice", "alice-pw")
    slapd.stop()
    try:
        status, reply = request(daemon.url + "/+login", "POST",
                                {"user": "carol", "password": "carol-pw"})
        assert status == 503 and "LDAP directory cannot be reached" in reply["message"]
        status, reply = request(daemon.url + "/+api", headers={
            "X-Devpi-Auth": base64.b64encode(b"dave:dave-pw").decode()})
        assert status == 503 and "LDAP directory cannot be reached" in reply["message"]
        assert login(daemon.url, "team", "team-pw")[0] == "team"  # local users are unaffected
        assert authstatus(daemon, "team", "team-pw")[:2] == ["ok", "team"]
        assert authstatus(daemon, "alice", alice) == ["ok", "alice", ["devs", "ops"]]  # tokens too
    finally:
        slapd.start()
    assert login(daemon.url, "carol", "carol-pw")[0] == "carol"


@pytest.mark.parametrize("content, message", [
    ("devpi-ldap:\n  url: http://x\n  user_template: uid={username}\n",
     "is not an ldap:// or ldaps:// URL"),
    ("devpi-ldap:\n  url: ldap://x\n", "give either 'user_template' or 'user_search'"),
    ("other: 1\n", "top-level 'devpi-ldap' key"),
])
def test_a_bad_ldap_config_stops_the_start_with_one_line(
        fresh_serverdir: Path, tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "ldap.yaml"
    config.write_text(content)
    daemon = Daemon(fresh_serverdir, "--ldap-config", str(config))
    done = subprocess.run(daemon.command(), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"devpi-twisted: --ldap-config {config}: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_devpi_client_logs_an_ldap_user_in_and_uploads_as_a_group_member(
        daemon: Daemon, tmp_path: Path) -> None:
    devpi = DevpiCLI(tmp_path / "client")
    devpi("use", daemon.url + "/team/dev")
    out = devpi("login", "alice", "--password", "alice-pw")
    assert "logged in 'alice'" in out
    dist = tmp_path / "dist"
    dist.mkdir()
    make_wheel(dist, "ldap-cli-pkg", "1.0")
    devpi("upload", "--from-dir", str(dist))
    status, reply, _ = call(daemon.url + "/team/dev/ldap-cli-pkg")
    assert status == 200 and "1.0" in reply["result"]
    assert "Unauthorized" in devpi("login", "alice", "--password", "wrong", ok=False)


def test_no_password_reaches_the_log(daemon: Daemon) -> None:
    request(daemon.url + "/+login", "POST", {"user": "dave", "password": "wrong-dave-pw"})
    log = daemon.log.read_text(errors="replace")
    assert "LDAP directory cannot be used" in log  # the outage was logged (without secrets)
    for secret in ("alice-pw", "bob-pw", "carol-pw", "dave-pw", "wrong-dave-pw", "team-pw"):
        assert secret not in log


# -- LDAP groups in acl_read ---------------------------------------------------------


def _basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Accept": "text/html", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _form_login(daemon: Daemon, user: str, password: str) -> dict[str, str]:
    """A browser's form login: the Cookie header carrying its session."""
    form = f"username={user}&password={password}&next=/".encode()
    reply = _send(daemon.url, "POST", "/+login", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Origin": daemon.url})
    assert reply.status == 303, reply.status
    cookies = [value.split(";", 1)[0] for name, value in reply.getheaders()
               if name.lower() == "set-cookie"]
    assert [c.split("=", 1)[0] for c in cookies] == ["devpi_session", "devpi_csrf"]
    return {"Cookie": "; ".join(cookies)}


@pytest.fixture(scope="module")
def devs_only(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """team/devsonly (acl_read :devs, made by the local user team) holds ldap-read-pkg 1.0;
    returns its simple page of that project."""
    auth = login(daemon.url, "team", "team-pw")
    status, reply, _ = call(daemon.url + "/team/devsonly", "PUT", {"acl_read": [":devs"]}, auth)
    assert status == 200, reply
    wheel = make_wheel(tmp_path_factory.mktemp("ldap-read"), "ldap-read-pkg", "1.0")
    done = twine(daemon.url + "/team/devsonly/", "team", "team-pw", wheel)
    assert done.returncode == 0, done.stdout + done.stderr
    return daemon.url + "/team/devsonly/+simple/ldap-read-pkg/"


def _file_url(simple: str, headers: dict[str, str]) -> str:
    status, _, page = _get(simple, headers)
    assert status == 200 and b"ldap_read_pkg-1.0-py3-none-any.whl" in page, (status, page)
    href = page.decode().split('href="', 1)[1].split('"', 1)[0].split("#", 1)[0]
    return urllib.parse.urljoin(simple, href)


def test_an_ldap_group_in_acl_read_lets_members_read_and_refuses_the_others(
        daemon: Daemon, devs_only: str, tmp_path: Path) -> None:
    file_url = _file_url(devs_only, _basic("bob", "bob-pw"))
    status, _, body = _get(file_url, _basic("bob", "bob-pw"))
    assert status == 200 and body[:2] == b"PK"
    for url in (devs_only, file_url):
        status, headers, _ = _get(url)
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="devpi"'
        status, _, body = _get(url, _basic("carol", "carol-pw"))  # in the directory, not in devs
        assert status == 403 and b"pkg_read" in body.lower(), body
    index = devs_only.rsplit("/", 2)[0].replace("://", "://bob:bob-pw@", 1) + "/"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir",
         "--no-input", "install", "--index-url", index, "--target", str(tmp_path / "t"),
         "ldap-read-pkg"], capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL, env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "t" / "ldap_read_pkg" / "__init__.py").exists()


def test_an_ldap_users_login_token_and_session_cookie_carry_its_groups_to_acl_read(
        daemon: Daemon, devs_only: str) -> None:
    for user in ("alice", "carol"):
        _, token = login(daemon.url, user, f"{user}-pw")
        by_token = {"X-Devpi-Auth": base64.b64encode(f"{user}:{token}".encode()).decode()}
        by_cookie = _form_login(daemon, user, f"{user}-pw")
        for headers in (by_token, by_cookie):
            member = user == "alice"
            if member:
                file_url = _file_url(devs_only, headers)
                status, _, body = _get(file_url, headers)
                assert status == 200 and body[:2] == b"PK"
            else:
                status, _, body = _get(devs_only, headers)
                assert status == 403, (status, body)
            status, _, body = _get(daemon.url + "/team", {**headers, "Accept": "application/json"})
            assert status == 200  # GET /USER lists the index to its readers only
            assert ("devsonly" in json.loads(body)["result"]["indexes"]) == member
            status, _, _ = _get(daemon.url + "/+authcheck",  # nginx asks the same question
                                {**headers, "X-Original-Uri": "/" + devs_only.split("/", 3)[3]})
            assert status == (200 if member else 403)
