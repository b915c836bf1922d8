"""A private index (``acl_read``) against real daemons and real clients (issue 21, items 1
and 2 with passwords): twine uploads to it; pip installs from it with credentials in
the index URL, in ``.netrc`` and through keyring; uv with ``UV_INDEX_<NAME>_USERNAME``
/``_PASSWORD`` and with credentials in the URL; anonymous installs fail; pip and uv
with an API token instead of the password, refused once it is revoked. On sqlite and
on PostgreSQL with 2 workers (the module-wide ``daemon``), and through a replica."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pymacaroons  # type: ignore[import-untyped]  # untyped library
import pytest

from tests.e2e.test_replication import Pair, converged, fake, pair  # noqa: F401  (fixtures)
from tests.support import Daemon, bin_path, call, login, make_wheel

OWNER, READER, OTHER = "priv-owner", "priv-reader", "priv-other"
PASSWORD = "pw-private"


def _users(url: str) -> tuple[str, str]:
    for user in (OWNER, READER, OTHER):
        assert call(f"{url}/{user}", "PUT", {"password": PASSWORD})[0] == 201
    return login(url, OWNER, PASSWORD)



def _twine(index_url: str, user: str, dists: Path) -> None:
    """twine uploads secretpkg 1.0 to ``index_url`` as ``user`` (password PASSWORD)."""
    done = subprocess.run(
        [bin_path("twine"), "upload", "--disable-progress-bar", "--non-interactive",
         "--repository-url", index_url, "-u", user, "-p", PASSWORD,
         str(make_wheel(dists, "secretpkg", "1.0"))],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TWINE_CERT=""))
    assert done.returncode == 0, done.stdout + done.stderr

@pytest.fixture(scope="module")
def private(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    """priv-owner/secret (acl_read priv-reader) holds secretpkg 1.0, uploaded by twine;
    priv-owner/open inherits from it."""
    auth = _users(daemon.url)
    status, body, _ = call(f"{daemon.url}/{OWNER}/secret", "PUT",
                           {"acl_read": READER, "acl_upload": f"{OWNER},{READER}"}, auth)
    assert status == 200, body
    status, body, _ = call(f"{daemon.url}/{OWNER}/open", "PUT", {"bases": f"{OWNER}/secret"}, auth)
    assert status == 200, body
    _twine(f"{daemon.url}/{OWNER}/secret/", READER, tmp_path_factory.mktemp("private-dists"))
    return daemon


def _with_credentials(url: str, user: str = READER, password: str = PASSWORD) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def _pip(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir",
         "--no-input", *args],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, **(env or {})})
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, output
    return output


def _installed(target: Path) -> str:
    return (target / "secretpkg" / "__init__.py").read_text()


def _raw(url: str, auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    # JSON views answer it with JSON, simple pages with HTML
    request = urllib.request.Request(url, headers={"Accept": "application/json, text/html;q=0.9"})
    if auth:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_pip_with_credentials_in_the_index_url(private: Daemon, tmp_path: Path) -> None:
    index = _with_credentials(f"{private.url}/{OWNER}/secret/+simple/")
    _pip("install", "--index-url", index, "--target", str(tmp_path / "t"), "secretpkg")
    assert _installed(tmp_path / "t") == "VERSION = '1.0'\n"


def test_pip_without_credentials_fails(private: Daemon, tmp_path: Path) -> None:
    for index in (f"{private.url}/{OWNER}/secret/+simple/", f"{private.url}/{OWNER}/open/+simple/"):
        output = _pip("install", "--index-url", index, "--target", str(tmp_path / "t"),
                      "secretpkg", ok=False)
        assert "secretpkg" in output
    assert not (tmp_path / "t" / "secretpkg").exists()
    # a user the index does not list: refused too (403)
    index = _with_credentials(f"{private.url}/{OWNER}/secret/+simple/", OTHER)
    _pip("install", "--index-url", index, "--target", str(tmp_path / "u"), "secretpkg", ok=False)


def test_pip_with_netrc(private: Daemon, tmp_path: Path) -> None:
    host = private.url.split("://", 1)[1].split(":")[0]
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine {host}\nlogin {READER}\npassword {PASSWORD}\n")
    netrc.chmod(0o600)
    _pip("install", "--index-url", f"{private.url}/{OWNER}/secret/+simple/", "--target",
         str(tmp_path / "t"), "secretpkg", env={"NETRC": str(netrc), "HOME": str(tmp_path)})
    assert _installed(tmp_path / "t") == "VERSION = '1.0'\n"


def test_pip_with_keyring(private: Daemon, tmp_path: Path) -> None:
    """keyring (keyrings.alt's plain-text file backend) holds the password; the index URL
    names the user only."""
    env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}
    netloc = private.url.split("://", 1)[1]
    index = f"{private.url}/{OWNER}/secret/+simple/"
    subprocess.run([sys.executable, "-c", "import sys, keyring\n"
                    "for service in sys.argv[1:]:\n"
                    f"    keyring.set_password(service, {READER!r}, {PASSWORD!r})",
                    netloc, index], check=True, timeout=60, env={**os.environ, **env})
    with_user = f"http://{READER}@{netloc}/{OWNER}/secret/+simple/"
    _pip("install", "--keyring-provider", "import", "--index-url", with_user, "--target",
         str(tmp_path / "t"), "secretpkg", env=env)
    assert _installed(tmp_path / "t") == "VERSION = '1.0'\n"


def _uv(*args: str, cwd: Path, env: dict[str, str] | None = None, ok: bool = True) -> str:
    done = subprocess.run(
        [bin_path("uv"), *args], capture_output=True, text=True, timeout=180, cwd=cwd,
        env={**os.environ, "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(cwd / "uv-cache"),
             "UV_PYTHON": sys.executable, "UV_NO_PROGRESS": "1", **(env or {})})
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, output
    return output


def test_uv_with_a_named_index_and_its_credentials(private: Daemon, tmp_path: Path) -> None:
    index = f"{private.url}/{OWNER}/secret/+simple/"
    env = {"UV_INDEX_PRIVATE_USERNAME": READER, "UV_INDEX_PRIVATE_PASSWORD": PASSWORD}
    _uv("pip", "install", "--index", f"private={index}", "--default-index", index,
        "--target", str(tmp_path / "t"), "secretpkg", cwd=tmp_path, env=env)
    assert _installed(tmp_path / "t") == "VERSION = '1.0'\n"
    _uv("pip", "install", "--index-url", _with_credentials(index), "--target",
        str(tmp_path / "u"), "secretpkg", cwd=tmp_path)
    assert _installed(tmp_path / "u") == "VERSION = '1.0'\n"
    _uv("pip", "install", "--index-url", index, "--target", str(tmp_path / "v"), "secretpkg",
        cwd=tmp_path, ok=False)


def test_every_read_route_refuses_anonymous_and_unlisted_callers(private: Daemon) -> None:
    url = private.url
    reader = (READER, PASSWORD)
    status, _, page = _raw(f"{url}/{OWNER}/secret/+simple/secretpkg/", reader)
    assert status == 200, page
    href = page.decode().split('href="', 1)[1].split('"', 1)[0].split("#", 1)[0]
    file_url = urllib.parse.urljoin(f"{url}/{OWNER}/secret/+simple/secretpkg/", href)
    paths = [f"{url}/{OWNER}/secret", f"{url}/{OWNER}/secret/+simple/",
             f"{url}/{OWNER}/secret/+simple/secretpkg/", f"{url}/{OWNER}/secret/secretpkg",
             f"{url}/{OWNER}/secret/secretpkg/1.0", file_url, file_url + ".metadata"]
    for target in paths:
        status, headers, body = _raw(target)
        assert status == 401, (target, status, body[:200])
        assert headers.get("WWW-Authenticate") == 'Basic realm="devpi"', target
        status, _, body = _raw(target, (OTHER, PASSWORD))
        assert status == 403 and b"pkg_read" in body, (target, status, body[:200])
        status, _, body = _raw(target, reader)
        assert status == 200, (target, status, body[:200])
    # through the inheriting index, anonymous callers see nothing of the base
    assert _raw(f"{url}/{OWNER}/open/+simple/secretpkg/")[0] == 404
    assert b"secretpkg" not in _raw(f"{url}/{OWNER}/open/+simple/")[2]
    assert _raw(f"{url}/{OWNER}/open/+simple/secretpkg/", reader)[0] == 200
    # listings and status name no private index
    assert "secret" not in call(f"{url}/{OWNER}")[1]["result"]["indexes"]
    assert f"{OWNER}/secret" not in _raw(f"{url}/+metrics")[2].decode()
    assert "secret" in call(f"{url}/{OWNER}", auth=login(url, READER, PASSWORD))[1]["result"]["indexes"]



# -- API tokens (devpi-tokens) in place of the password -----------------------------------


def _api_token(url: str, body: dict[str, Any]) -> tuple[str, str]:
    """A new token of the reader and its id."""
    status, reply, _ = call(f"{url}/{READER}/+token-create", "POST", body,
                            login(url, READER, PASSWORD))
    assert status == 200, reply
    token = str(reply["result"]["token"])
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix("devpi-"))
    return token, macaroon.identifier.decode("ascii").rsplit("-", 1)[1]


def test_pip_and_uv_with_an_api_token_until_it_is_revoked(private: Daemon, tmp_path: Path) -> None:
    index = f"{private.url}/{OWNER}/secret/+simple/"
    token, token_id = _api_token(private.url, {"indexes": [f"{OWNER}/secret"]})
    quoted = urllib.parse.quote(token, safe="")
    for n, user in enumerate((READER, "__token__")):
        _pip("install", "--index-url", _with_credentials(index, user, quoted), "--target",
             str(tmp_path / f"pip{n}"), "secretpkg")
        assert _installed(tmp_path / f"pip{n}") == "VERSION = '1.0'\n"
    env = {"UV_INDEX_PRIVATE_USERNAME": "__token__", "UV_INDEX_PRIVATE_PASSWORD": token}
    _uv("pip", "install", "--index", f"private={index}", "--default-index", index,
        "--target", str(tmp_path / "uv"), "secretpkg", cwd=tmp_path, env=env)
    assert _installed(tmp_path / "uv") == "VERSION = '1.0'\n"
    # a token of the reader scoped to another index does not read this one
    other, _ = _api_token(private.url, {"indexes": [f"{OWNER}/open"]})
    _pip("install", "--index-url", _with_credentials(index, "__token__",
                                                     urllib.parse.quote(other, safe="")),
         "--target", str(tmp_path / "other"), "secretpkg", ok=False)
    status, reply, _ = call(f"{private.url}/{READER}/+tokens/{token_id}", "DELETE",
                            auth=login(private.url, READER, PASSWORD))
    assert status == 200, reply
    status, _, body = _raw(index, ("__token__", token))
    assert status == 401 and b"revoked" in body, (status, body[:200])
    output = _pip("install", "--index-url", _with_credentials(index, READER, quoted), "--target",
                  str(tmp_path / "revoked"), "secretpkg", ok=False)
    assert "secretpkg" in output and not (tmp_path / "revoked" / "secretpkg").exists()

# -- a replica enforces what it replicates -----------------------------------------------


@pytest.mark.parametrize("pair", ["sqlite"], indirect=True)
def test_a_replica_enforces_acl_read(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    primary, replica = pair.primary.url, pair.replica.url
    auth = _users(primary)
    status, body, _ = call(f"{primary}/{OWNER}/secret", "PUT", {"acl_read": READER}, auth)
    assert status == 200, body
    twine_dir = tmp_path / "dists"
    twine_dir.mkdir()
    _twine(f"{primary}/{OWNER}/secret/", OWNER, twine_dir)
    converged(pair)
    page = f"{replica}/{OWNER}/secret/+simple/secretpkg/"
    status, headers, _ = _raw(page)
    assert status == 401 and headers.get("WWW-Authenticate") == 'Basic realm="devpi"'
    assert _raw(page, (OTHER, PASSWORD))[0] == 403
    status, _, body = _raw(page, (READER, PASSWORD))
    assert status == 200 and b"secretpkg-1.0" in body
    _pip("install", "--index-url", _with_credentials(f"{replica}/{OWNER}/secret/+simple/"),
         "--target", str(tmp_path / "t"), "secretpkg")
    assert _installed(tmp_path / "t") == "VERSION = '1.0'\n"
    _pip("install", "--index-url", f"{replica}/{OWNER}/secret/+simple/", "--target",
         str(tmp_path / "u"), "secretpkg", ok=False)
    # opened on the primary: the replica follows
    assert call(f"{primary}/{OWNER}/secret", "PATCH", ["acl_read+=:ANONYMOUS:"], auth)[0] == 200
    converged(pair)
    assert _raw(page)[0] == 200

