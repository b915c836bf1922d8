"""The nginx site of ``devpi-twisted gen-config`` running in a real nginx in front of
the real daemon, on loopback ports: twine uploads and pip installs through it, file
bytes of stored files sent by nginx itself (X-Accel-Redirect: in nginx's access log
with their size, in ours with none), mirror files fetched by the daemon the first
time, absolute URLs naming nginx (also under a path prefix).

Once on sqlite (files under +files: nginx sends them) and once on PostgreSQL (file
bodies in the database: the daemon sends them through the same site).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_uploads import pip, twine
from tests.fakepypi import FakePyPI
from tests.nginx import Nginx, free_port
from tests.support import Daemon, bin_path, call, init_serverdir, login, make_wheel, serving_fake_pypi


class Front:
    """A daemon and the nginx in front of it."""

    def __init__(self, daemon: Daemon, nginx: Nginx, url: str, storage: str) -> None:
        self.daemon = daemon
        self.nginx = nginx
        self.url = url
        self.storage = storage

    def daemon_lines(self) -> list[str]:
        return self.daemon.log.read_text().splitlines()


def gen_config(cwd: Path, *args: str, name: str = "nginx-devpi.conf") -> Path:
    """The site gen-config writes; its caches (pages, /+authcheck decisions) below ``cwd``
    unless ``args`` name a --nginx-cache-dir."""
    cwd.mkdir(parents=True, exist_ok=True)
    if "--nginx-cache-dir" not in args:
        args = (*args, "--nginx-cache-dir", str(cwd / "cache"))
    subprocess.run([bin_path("devpi-twisted"), "gen-config", *args], cwd=cwd, check=True,
                   capture_output=True, text=True)
    return cwd / "gen-config" / name


def daemon_port(daemon: Daemon) -> str:
    return daemon.url.rsplit(":", 1)[1]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    with serving_fake_pypi(tmp_path_factory.mktemp("fakepypi"),
                           lambda d: [make_wheel(d, "ngxmirrored", "1.0")]) as upstream:
        yield upstream


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def front(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          fake: FakePyPI) -> Iterator[Front]:
    work = tmp_path_factory.mktemp("nginx")
    serverdir = work / "state"
    storage: list[str] = []
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        storage = ["--storage", cluster.storage_option(cluster.create_database())]
    init_serverdir(serverdir, *storage)
    daemon = Daemon(serverdir, *storage, "--access-log").start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    site = gen_config(work / "cwd", "--serverdir", str(serverdir), "--port", daemon_port(daemon),
                      "--outside-url", url)
    nginx = Nginx(work / "nginx", site)
    try:
        nginx.start(port)
        root = login(url, "root", "")
        assert call(url + "/root/pypi", "PATCH", [f"mirror_url={fake.url}"], root)[0] == 200
        assert call(url + "/packages", "PUT", {"password": "pkg-pass"})[0] == 201
        auth = login(url, "packages", "pkg-pass")
        assert call(url + "/packages/stable", "PUT", {"bases": "root/pypi"}, auth)[0] == 200
        yield Front(daemon, nginx, url, request.param)
    finally:
        nginx.stop()
        daemon.stop()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def location_of(base: str, path: str) -> tuple[int, str | None]:
    """Status and Location of GET ``path`` (redirects not followed)."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", parts.path + path)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        conn.close()


def nginx_lines(front: Front, path: str) -> list[list[str]]:
    """nginx's access log entries of GET ``path``: [method, uri, status, bytes, ...]."""
    return [line.split() for line in front.nginx.log_lines()
            if [urllib.parse.unquote(u) for u in line.split()[1:2]] == [path]]


def daemon_sizes(front: Front, path: str) -> list[int]:
    """Response body sizes our access log recorded for GET ``path``."""
    pattern = re.compile(r'"GET (\S+) HTTP/1\.[01]" \d+ (\d+) ')
    return [int(m.group(2)) for line in front.daemon_lines()
            if (m := pattern.search(line)) and urllib.parse.unquote(m.group(1)) == path]


def file_path_of(front: Front, index: str, project: str, filename: str,
                 headers: dict[str, str] | None = None) -> str:
    status, body, _ = fetch(f"{front.url}/{index}/+simple/{project}/",
                            {"Accept": "application/vnd.pypi.simple.v1+json", **(headers or {})})
    assert status == 200, body
    for entry in json.loads(body)["files"]:
        if entry["filename"] == filename:
            return str(urllib.parse.urljoin(f"{front.url}/{index}/+simple/{project}/",
                                            entry["url"]).split(front.url, 1)[1].split("#")[0])
    raise AssertionError(f"{filename} not listed")


def test_twine_uploads_and_pip_installs_through_nginx_which_sends_the_file(
        front: Front, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ngx-hello", "1.0")
    twine(front.url + "/packages/stable/", wheel)
    target = tmp_path / "target"
    pip("install", "--index-url", front.url + "/packages/stable/+simple/", "--target",
        str(target), "ngx-hello")
    assert (target / "ngx_hello" / "__init__.py").read_text() == "VERSION = '1.0'\n"
    path = file_path_of(front, "packages/stable", "ngx-hello", wheel.name)
    size = wheel.stat().st_size
    served = nginx_lines(front, path)
    assert served and served[0][2] == "200" and served[0][3] == str(size), served
    assert served[0][4].startswith("upstream=127.0.0.1:"), served  # the daemon was asked
    if front.storage == "sqlite":  # the daemon answered with X-Accel-Redirect, no body
        assert daemon_sizes(front, path) == [0]
    else:  # bodies in PostgreSQL: the daemon sends them through nginx
        assert daemon_sizes(front, path) == [size]


def test_range_requests_are_answered_through_nginx(front: Front, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ngx-range", "1.0")
    twine(front.url + "/packages/stable/", wheel)
    path = file_path_of(front, "packages/stable", "ngx-range", wheel.name)
    status, body, headers = fetch(front.url + path, {"Range": "bytes=10-19"})
    assert status == 206 and body == wheel.read_bytes()[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{wheel.stat().st_size}"


def test_mirror_file_is_fetched_by_the_daemon_first_then_sent_by_nginx(
        front: Front, tmp_path: Path) -> None:
    for n in (1, 2):
        pip("download", "--no-deps", "--index-url", front.url + "/root/pypi/+simple/",
            "--dest", str(tmp_path / f"d{n}"), "ngxmirrored")
    name = "ngxmirrored-1.0-py3-none-any.whl"
    size = (tmp_path / "d1" / name).stat().st_size
    assert (tmp_path / "d2" / name).read_bytes() == (tmp_path / "d1" / name).read_bytes()
    path = file_path_of(front, "root/pypi", "ngxmirrored", name)
    assert [line[3] for line in nginx_lines(front, path)] == [str(size), str(size)]
    expected = [size, 0] if front.storage == "sqlite" else [size, size]
    assert daemon_sizes(front, path) == expected


def test_absolute_urls_name_nginx(front: Front) -> None:
    status, body, _ = call(front.url + "/packages/stable/+api")
    assert status == 200
    assert body["result"]["login"] == front.url + "/+login"
    assert body["result"]["pypisubmit"] == front.url + "/packages/stable/"
    assert body["result"]["simpleindex"] == front.url + "/packages/stable/+simple/"
    assert location_of(front.url, "/packages/stable/+simple/Ngx_Hello/") == (
        302, front.url + "/packages/stable/+simple/ngx-hello/")


def test_health_metrics_and_status_through_nginx(front: Front, tmp_path: Path) -> None:
    status, body, _ = call(front.url + "/+health")
    assert status == 200 and body["result"]["status"] == "ok"
    status, text, headers = fetch(front.url + "/+metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    metrics = text.decode()
    assert re.search(r'devpi_http_requests_total\{[^}]*route="simple_project",method="GET",'
                     r'status="200"\} [1-9]', metrics), metrics
    assert 'devpi_http_request_duration_seconds_bucket{' in metrics
    accel = re.search(r"devpi_accel_redirects_total\{[^}]*\} (\d+)", metrics)
    assert accel is not None
    assert (int(accel.group(1)) > 0) == (front.storage == "sqlite")
    assert re.search(r'devpi_files_stored\{[^}]*index="packages/stable"\} [1-9]', metrics)
    status, body, _ = call(front.url + "/+status")
    assert status == 200
    result = body["result"]
    assert result["replication"]["lag-serials"] == 0
    assert any(m[0] == "devpi_twisted_serial" for m in result["metrics"])
    assert "mirror_file_hits" in result["cache"]


def test_path_prefix_mount_through_nginx(front: Front, tmp_path: Path) -> None:
    port = free_port()
    outside = f"http://127.0.0.1:{port}/devpi"
    site = gen_config(tmp_path / "cwd", "--serverdir", str(front.daemon.serverdir), "--port",
                      daemon_port(front.daemon), "--outside-url", outside)
    nginx = Nginx(tmp_path / "nginx", site).start(port)
    try:
        status, body, _ = call(outside + "/packages/stable/+api")
        assert status == 200, body
        assert body["result"]["login"] == outside + "/+login"
        assert body["result"]["simpleindex"] == outside + "/packages/stable/+simple/"
        wheel = make_wheel(tmp_path, "ngx-prefixed", "1.0")
        twine(outside + "/packages/stable/", wheel)
        target = tmp_path / "target"
        pip("install", "--index-url", outside + "/packages/stable/+simple/", "--target",
            str(target), "ngx-prefixed")
        assert (target / "ngx_prefixed" / "__init__.py").exists()
        assert location_of(outside, "/packages/stable/+simple/Ngx_Prefixed/") == (
            302, outside + "/packages/stable/+simple/ngx-prefixed/")
        assert location_of(f"http://127.0.0.1:{port}", "/devpi") == (301, outside + "/")
        fetched = [line.split() for line in map(urllib.parse.unquote, nginx.log_lines())
                   if "/+f/" in line and ".whl " in line]
        assert fetched and fetched[0][1].startswith("/devpi/packages/stable/+f/")
        assert fetched[0][3] == str(wheel.stat().st_size)
        assert fetch(f"http://127.0.0.1:{port}/+devpi-files-{daemon_port(front.daemon)}/")[0] == 404
    finally:
        nginx.stop()


def test_web_pages_under_a_path_prefix_through_nginx(front: Front, tmp_path: Path) -> None:
    """A browser follows the web interface's links through nginx under /devpi: every
    link names the prefix and answers there, the stylesheet too."""
    port = free_port()
    outside = f"http://127.0.0.1:{port}/devpi"
    site = gen_config(tmp_path / "cwd", "--serverdir", str(front.daemon.serverdir), "--port",
                      daemon_port(front.daemon), "--outside-url", outside)
    nginx = Nginx(tmp_path / "nginx", site).start(port)
    browser = {"Accept": "text/html,*/*;q=0.8", "User-Agent": "Mozilla/5.0"}
    try:
        twine(outside + "/packages/stable/", make_wheel(tmp_path, "ngx-web", "1.0"))
        seen, todo = set(), [outside + "/"]
        while todo and len(seen) < 12:
            url = todo.pop(0)
            if url in seen or any(p in url for p in ("+f/", "+login", "+simple")):
                continue
            seen.add(url)
            status, body, headers = fetch(url, browser)
            assert status == 200, (url, body[:300])
            if not headers["Content-Type"].startswith("text/html"):
                continue
            links = re.findall(r'(?:href|src|action)="([^"#?]*)', body.decode())
            assert all(link.startswith(outside + "/") for link in links), (url, links)
            todo += [link for link in links if "/packages/" in link or "style.css" in link]
        assert outside + "/packages/stable/ngx-web/1.0" in seen
        assert outside + "/+static/style.css" in seen
    finally:
        nginx.stop()


def test_internal_file_location_is_not_reachable_from_outside(front: Front) -> None:
    port = daemon_port(front.daemon)
    status, _, _ = fetch(f"{front.url}/+devpi-files-{port}/packages/stable/")
    assert status == 404


def caching_nginx(front: Front, tmp_path: Path) -> tuple[Nginx, str]:
    """A second nginx in front of the daemon, running the caching site; its URL."""
    port = free_port()
    outside = f"http://127.0.0.1:{port}"
    site = gen_config(tmp_path / "cwd", "--serverdir", str(front.daemon.serverdir), "--port",
                      daemon_port(front.daemon), "--outside-url", outside, "--nginx-cache-dir",
                      str(tmp_path / "cache"), name="nginx-devpi-caching.conf")
    return Nginx(tmp_path / "nginx", site).start(port), outside


def test_caching_site_keeps_pages_and_revalidates_them_by_serial(front: Front,
                                                                  tmp_path: Path) -> None:
    nginx, outside = caching_nginx(front, tmp_path)
    page = outside + "/packages/stable/+simple/ngx-cached/"
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}

    def versions() -> tuple[list[str], str]:
        status, body, headers = fetch(page, accept)
        assert status == 200, body
        return json.loads(body)["versions"], headers.get("X-Cached", "")

    try:
        twine(outside + "/packages/stable/", make_wheel(tmp_path, "ngx-cached", "1.0"))
        assert versions() == (["1.0"], "MISS")
        assert versions() == (["1.0"], "HIT")
        twine(outside + "/packages/stable/", make_wheel(tmp_path, "ngx-cached", "2.0"))
        time.sleep(2.1)  # its second in nginx is over (whole seconds): asked again, with its ETag
        assert versions() == (["1.0", "2.0"], "EXPIRED")  # new serial: a new page
        time.sleep(2.1)
        assert versions() == (["1.0", "2.0"], "REVALIDATED")  # same serial: the daemon said 304
        statuses = [line.split('"')[2].split()[0] for line in front.daemon_lines()
                    if '"GET /packages/stable/+simple/ngx-cached/ HTTP/1.1"' in line]
        assert statuses == ["200", "200", "304"]
    finally:
        nginx.stop()


def test_daemon_answers_the_accel_header_with_an_empty_keepalive_redirect(
        front: Front, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ngx-accel", "1.0")
    twine(front.url + "/packages/stable/", wheel)
    path = file_path_of(front, "packages/stable", "ngx-accel", wheel.name)
    parts = urllib.parse.urlsplit(front.daemon.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path, headers={"X-Devpi-Accel-Location": "/+internal/"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200
    if front.storage == "sqlite":  # nginx is to send the file: no body, said with a length
        assert response.getheader("X-Accel-Redirect") == "/+internal" + path
        assert response.getheader("Content-Length") == "0" and body == b""
        assert response.getheader("Transfer-Encoding") is None  # nginx would drop the connection
    else:  # the body lives in PostgreSQL: the daemon sends it
        assert response.getheader("X-Accel-Redirect") is None
        assert body == wheel.read_bytes()


def test_docs_through_nginx_are_sandboxed_and_streamed(front: Front) -> None:
    """nginx serves no docs itself: the daemon's nosniff and sandbox headers pass it."""
    from tests.e2e.test_hostile_http import MiB, doc_zip, upload_docs

    auth = login(front.url, "packages", "pkg-pass")
    page = b"<h1>front</h1><script>1</script>"
    zipped = doc_zip({"index.html": page, "big.html": 8 * MiB})
    assert upload_docs(front.url + "/packages/stable", auth, "ngxdocs", "1.0", zipped) == 200
    for path, size in [("+doc/", len(page)), ("+doc/big.html", 8 * MiB)]:
        status, body, headers = fetch(f"{front.url}/packages/stable/ngxdocs/1.0/{path}")
        assert (status, len(body)) == (200, size), path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"] == "sandbox allow-scripts"


# -- issue 21 item 3: what nginx sends itself asks /+authcheck first ----------------------


def basic(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def private(front: Front) -> str:
    """packages/private, readable by its owner and ngxalice (not ngxbob)."""
    for name in ("ngxalice", "ngxbob"):
        assert call(front.url + f"/{name}", "PUT", {"password": f"{name}-pw"})[0] == 201
    auth = login(front.url, "packages", "pkg-pass")
    status, body, _ = call(front.url + "/packages/private", "PUT", {"acl_read": "ngxalice"}, auth)
    assert status == 200, body
    return "packages/private"


def test_private_files_are_sent_by_nginx_only_to_readers(front: Front, private: str,
                                                          tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ngx-secret", "1.0")
    twine(f"{front.url}/{private}/", wheel)
    path = file_path_of(front, private, "ngx-secret", wheel.name, basic("packages", "pkg-pass"))
    # on sqlite nginx sends the file only after /+authcheck said yes; on PostgreSQL the
    # daemon sends the bytes itself and its own read check decides: the same answers
    status, _, headers = fetch(front.url + path)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    assert fetch(front.url + path, basic("ngxbob", "ngxbob-pw"))[0] == 403
    assert fetch(front.url + path, basic("ngxalice", "wrong"))[0] == 401
    status, body, _ = fetch(front.url + path, basic("ngxalice", "ngxalice-pw"))
    assert status == 200 and body == wheel.read_bytes()
    served = [line for line in nginx_lines(front, path) if line[2] == "200"]
    assert served and served[0][3] == str(wheel.stat().st_size), served
    if front.storage == "sqlite":  # the daemon answered X-Accel-Redirect: nginx sent it
        assert daemon_sizes(front, path)[-1] == 0
    public = make_wheel(tmp_path, "ngx-open", "1.0")
    twine(front.url + "/packages/stable/", public)
    status, body, _ = fetch(front.url + file_path_of(front, "packages/stable", "ngx-open",
                                                     public.name))
    assert status == 200 and body == public.read_bytes()  # public files: anyone, as before


def test_cached_pages_of_a_private_index_are_not_served_to_anonymous_clients(
        front: Front, private: str, tmp_path: Path) -> None:
    nginx, outside = caching_nginx(front, tmp_path)
    auth = login(front.url, "packages", "pkg-pass")
    assert call(front.url + "/packages/closing", "PUT", {}, auth)[0] == 200
    page = outside + "/packages/closing/+simple/ngx-closing/"
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    try:
        twine(outside + "/packages/closing/", make_wheel(tmp_path, "ngx-closing", "1.0"))
        assert [fetch(page, accept)[2].get("X-Cached") for _ in range(2)] == ["MISS", "HIT"]
        status, body, _ = call(front.url + "/packages/closing", "PATCH",
                               ["acl_read=ngxalice"], auth)
        assert status == 200, body
        # a Cookie not ours: the same page in nginx's cache, a new /+authcheck decision
        status, body, headers = fetch(page, {**accept, "Cookie": "probe=1"})
        assert status == 401 and b"ngx_closing" not in body, body
        assert headers["WWW-Authenticate"] == 'Basic realm="devpi"'
        status, _, headers = fetch(page, {**accept, "Cookie": "probe=1",
                                          **basic("ngxbob", "ngxbob-pw")})
        assert status == 403
        status, body, headers = fetch(page, {**accept, **basic("ngxalice", "ngxalice-pw")})
        assert status == 200 and json.loads(body)["versions"] == ["1.0"]
        assert headers["X-Cached"] == "BYPASS"  # readers' pages never enter the cache
    finally:
        nginx.stop()


def test_a_blocked_mirror_file_is_not_sent_by_nginx_nor_kept_in_its_page_cache(
        front: Front, tmp_path: Path) -> None:
    """The daemon refuses before any X-Accel-Redirect; a cached page revalidates by an
    ETag the block changed (issue 23)."""
    nginx, outside = caching_nginx(front, tmp_path)
    name = "ngxmirrored-1.0-py3-none-any.whl"
    page = outside + "/packages/stable/+simple/ngxmirrored/"
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    root = login(front.url, "root", "")
    try:
        pip("download", "--no-deps", "--index-url", outside + "/packages/stable/+simple/",
            "--dest", str(tmp_path / "d"), "ngxmirrored")  # stored: nginx would send it
        path = file_path_of(front, "root/pypi", "ngxmirrored", name)
        status, body, _ = fetch(page, accept)
        assert status == 200 and json.loads(body)["files"], body
        code, reply, _ = call(front.url + "/root/pypi/+block", "POST",
                              {"project": "ngxmirrored", "filename": name, "reason": "bad"}, root)
        assert code == 200, reply
        for base in (front.url, outside):
            status, body, _ = fetch(base + path)
            assert status == 403 and b"bad" in body, body
        time.sleep(2.1)  # the page's second in nginx's cache is over: revalidated
        status, body, _ = fetch(page, accept)
        assert status == 200 and json.loads(body)["files"] == []
        pip("download", "--no-deps", "--index-url", outside + "/packages/stable/+simple/",
            "--dest", str(tmp_path / "e"), "ngxmirrored", ok=False)
        code, reply, _ = call(front.url + "/root/pypi/+unblock", "POST",
                              {"project": "ngxmirrored", "filename": name}, root)
        assert code == 200, reply
        assert fetch(outside + path)[0] == 200
    finally:
        nginx.stop()
