"""Uploads with the real twine, installs with the real pip, against the real daemon
(on sqlite and on PostgreSQL with workers, through the module-wide ``daemon``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import Daemon, bin_path, call, login, make_sdist, make_wheel


@pytest.fixture(scope="module")
def stages(daemon: Daemon) -> Daemon:
    """packages/stable (non-volatile) and packages/develop (volatile, bases stable)."""
    assert call(daemon.url + "/packages", "PUT", {"password": "pkg-pass"})[0] == 201
    auth = login(daemon.url, "packages", "pkg-pass")
    assert call(daemon.url + "/packages/stable", "PUT", {"volatile": "False"}, auth)[0] == 200
    assert call(daemon.url + "/packages/develop", "PUT", {"bases": "packages/stable"}, auth)[0] == 200
    return daemon


def twine(url: str, *files: Path, ok: bool = True) -> str:
    done = subprocess.run(
        [bin_path("twine"), "upload", "--disable-progress-bar", "--non-interactive",
         "--repository-url", url, "-u", "packages", "-p", "pkg-pass", *map(str, files)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TWINE_CERT=""))
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, output
    return output


def pip(*args: str, ok: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir", *args],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, output
    return output


def test_twine_upload_then_pip_installs_from_an_inheriting_index(stages: Daemon, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "hello-devpi", "1.0")
    sdist = make_sdist(tmp_path, "hello-devpi", "1.0")
    twine(stages.url + "/packages/stable/", wheel, sdist)
    target = tmp_path / "site"
    pip("install", "--index-url", stages.url + "/packages/develop/+simple/", "--target", str(target),
        "hello-devpi")
    assert (target / "hello_devpi" / "__init__.py").read_text() == "VERSION = '1.0'\n"


def test_newer_version_in_develop_wins_there_only(stages: Daemon, tmp_path: Path) -> None:
    twine(stages.url + "/packages/develop/", make_wheel(tmp_path, "hello-devpi", "2.0"))
    develop, stable = tmp_path / "develop", tmp_path / "stable"
    pip("install", "--index-url", stages.url + "/packages/develop/+simple/", "--target", str(develop),
        "hello-devpi")
    pip("install", "--index-url", stages.url + "/packages/stable/+simple/", "--target", str(stable),
        "hello-devpi")
    assert "2.0" in (develop / "hello_devpi" / "__init__.py").read_text()
    assert "1.0" in (stable / "hello_devpi" / "__init__.py").read_text()


def test_non_volatile_index_keeps_the_first_file(stages: Daemon, tmp_path: Path) -> None:
    first = make_wheel(tmp_path, "keeper", "1.0")
    twine(stages.url + "/packages/stable/", first)
    twine(stages.url + "/packages/stable/", first)  # identical again: 200
    other = tmp_path / "other"
    other.mkdir()
    changed = make_wheel(other, "keeper", "1.0", requires=["six"])
    output = twine(stages.url + "/packages/stable/", changed, ok=False)
    assert "409" in output and "already exists in non-volatile index" in output
    with urllib.request.urlopen(stages.url + "/packages/stable/+simple/keeper/") as response:
        page = response.read().decode()
    assert page.count("keeper-1.0-py3-none-any.whl</a>") == 1
    assert _sha256(first) in page


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_anonymous_upload_gets_a_basic_challenge(stages: Daemon, tmp_path: Path) -> None:
    request = urllib.request.Request(stages.url + "/packages/stable/", data=b"x", method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=b"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request)
    assert e.value.code == 401
    assert e.value.headers["WWW-Authenticate"] == 'Basic realm="pypi"'


def test_files_answer_ranges_and_conditional_requests(stages: Daemon, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "ranged", "1.0")
    twine(stages.url + "/packages/stable/", wheel)
    request = urllib.request.Request(stages.url + "/packages/stable/+simple/ranged/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request) as response:
        page = json.loads(response.read())
    assert page["meta"]["api-version"] == "1.1"
    assert page["versions"] == ["1.0"]
    (info,) = page["files"]
    assert info["size"] == wheel.stat().st_size and info["upload-time"].endswith("Z")
    url = urllib.parse.urljoin(stages.url + "/packages/stable/+simple/ranged/", info["url"])
    assert url.startswith(stages.url + "/packages/stable/+f/")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as r:
        assert r.status == 206
        assert r.read() == wheel.read_bytes()[10:20]
        etag = r.headers["ETag"]
    request = urllib.request.Request(url.replace("+f", "%2Bf"), headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request)
    assert e.value.code == 304


def test_devpi_client_upload_list_and_remove(stages: Daemon, tmp_path: Path) -> None:
    from tests.e2e.test_devpi_client import DevpiCLI

    devpi = DevpiCLI(tmp_path / "client")
    devpi("use", stages.url + "/packages/develop")
    devpi("login", "packages", "--password", "pkg-pass")
    dist = tmp_path / "dist"
    dist.mkdir()
    make_wheel(dist, "Listed_Pkg", "0.1")
    make_sdist(dist, "Listed_Pkg", "0.1")
    out = devpi("upload", "--from-dir", str(dist))
    assert "listed_pkg-0.1-py3-none-any.whl" in out
    assert "listed-pkg" in devpi("list").split()
    listing = devpi("list", "listed-pkg")
    assert "packages/develop/+f/" in listing and "listed_pkg-0.1.tar.gz" in listing
    versions = json.loads(devpi("getjson", "/packages/develop/listed-pkg"))["result"]
    links = versions["0.1"]["+links"]
    assert sorted(link["href"].rsplit("/", 1)[1] for link in links) == [
        "listed_pkg-0.1-py3-none-any.whl", "listed_pkg-0.1.tar.gz"]
    assert links[0]["log"][0]["what"] == "upload" and links[0]["log"][0]["who"] == "packages"
    devpi("remove", "-y", "listed-pkg==0.1")
    assert "listed-pkg" not in devpi("list").split()
    gone = call(links[0]["href"])
    assert gone[0] == 410


def test_deleting_from_a_non_volatile_index_needs_force(stages: Daemon, tmp_path: Path) -> None:
    auth = login(stages.url, "packages", "pkg-pass")
    twine(stages.url + "/packages/stable/", make_wheel(tmp_path, "forced", "1.0"))
    status, reply, _ = call(stages.url + "/packages/stable/forced/1.0", "DELETE", auth=auth)
    assert (status, reply["message"]) == (403, "cannot delete version on non-volatile index")
    assert call(stages.url + "/packages/stable/forced/1.0?force", "DELETE", auth=auth)[0] == 200
    assert call(stages.url + "/packages/stable/forced")[0] == 404


def test_core_metadata_is_extracted_advertised_and_served(stages: Daemon, tmp_path: Path) -> None:
    import hashlib

    wheel = make_wheel(tmp_path, "meta-pkg", "1.0", requires=["six>=1"], requires_python=">=3.8")
    twine(stages.url + "/packages/develop/", wheel)
    request = urllib.request.Request(stages.url + "/packages/develop/+simple/meta-pkg/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request) as response:
        (info,) = json.loads(response.read())["files"]
    url = urllib.parse.urljoin(stages.url + "/packages/develop/+simple/meta-pkg/", info["url"])
    with urllib.request.urlopen(url + ".metadata") as response:
        metadata = response.read()
    assert b"Requires-Dist: six>=1" in metadata and b"Requires-Python: >=3.8" in metadata
    assert info["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    with urllib.request.urlopen(stages.url + "/packages/develop/+simple/meta-pkg/") as response:
        assert f'data-core-metadata="sha256={info["core-metadata"]["sha256"]}"' in response.read().decode()
    # pip resolves from the metadata file and still installs the wheel
    pip("download", "--no-deps", "--index-url", stages.url + "/packages/develop/+simple/",
        "-d", str(tmp_path / "dl"), "meta-pkg")
    assert (tmp_path / "dl" / wheel.name).read_bytes() == wheel.read_bytes()


def test_docs_and_tox_results_round_trip(stages: Daemon, tmp_path: Path) -> None:
    import zipfile

    from tests.e2e.test_devpi_client import DevpiCLI

    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = make_wheel(dist, "documented", "0.3")
    with zipfile.ZipFile(dist / "documented-0.3.doc.zip", "w") as docs:
        docs.writestr("index.html", "<h1>documented</h1>")
    devpi = DevpiCLI(tmp_path / "client")
    devpi("use", stages.url + "/packages/develop")
    devpi("login", "packages", "--password", "pkg-pass")
    devpi("upload", "--from-dir", str(dist))
    versions = json.loads(devpi("getjson", "/packages/develop/documented"))["result"]
    rels = {link["rel"]: link["href"] for link in versions["0.3"]["+links"]}
    assert set(rels) == {"releasefile", "doczip"}
    with urllib.request.urlopen(rels["doczip"]) as response:
        assert zipfile.ZipFile(__import__("io").BytesIO(response.read())).read("index.html") == \
            b"<h1>documented</h1>"
    with urllib.request.urlopen(stages.url + "/packages/develop/documented/0.3/+doc/index.html") as page:
        assert page.read() == b"<h1>documented</h1>"
        assert page.headers["Content-Type"].startswith("text/html")
    assert call(stages.url + "/packages/develop/documented/0.3/+doc/missing.html")[0] == 404
    report = {"host": "ci", "platform": "linux", "testenvs": {"py311": {
        "python": {"version": "3.11.7"}, "test": [{"command": "pytest", "retcode": 0, "output": ""}],
        "setup": []}}}
    status, reply, _ = call(rels["releasefile"], "POST", report)
    assert status == 200 and reply["type"] == "toxresultpath"
    assert reply["result"].startswith("packages/develop/+f/") and "#sha256=" in reply["result"]
    listing = devpi("list", "--toxresults", "documented")
    assert "py311" in listing and wheel.name in listing
    assert call(rels["releasefile"] + "x", "POST", report)[0] == 404
    assert call(rels["releasefile"], "POST", raw=b"{nope")[0] == 400


TOX_INI = b"""[tox]
envlist = py
[testenv]
skip_install = true
commands = python -c "print('tested by tox')"
"""


def test_devpi_test_runs_tox_and_attaches_its_result(stages: Daemon, tmp_path: Path) -> None:
    from tests.e2e.test_devpi_client import DevpiCLI

    dist = tmp_path / "dist"
    dist.mkdir()
    sdist = make_sdist(dist, "toxed", "1.0", extra={"tox.ini": TOX_INI})
    devpi = DevpiCLI(tmp_path / "client")
    devpi.env["PATH"] = f"{Path(bin_path('tox')).parent}:{devpi.env.get('PATH', '')}"
    devpi("use", stages.url + "/packages/develop")
    devpi("login", "packages", "--password", "pkg-pass")
    devpi("upload", "--from-dir", str(dist))
    out = devpi("test", "toxed")
    assert "tested by tox" in out
    versions = json.loads(devpi("getjson", "/packages/develop/toxed"))["result"]
    links = versions["1.0"]["+links"]
    (release,) = [link for link in links if link["rel"] == "releasefile"]
    assert release["href"].endswith("/" + sdist.name)
    (result,) = [link for link in links if link["rel"] == "toxresult"]
    assert result["for_href"] == release["href"]
    with urllib.request.urlopen(result["href"]) as response:
        report = json.loads(response.read())
    assert "py" in report["testenvs"]
    listing = devpi("list", "--toxresults", "toxed")
    assert sdist.name in listing and "tests passed" in listing


def uv(*args: str, cwd: Path, ok: bool = True) -> str:
    env = dict(os.environ, UV_NO_CONFIG="1", UV_CACHE_DIR=str(cwd / "uv-cache"), UV_PYTHON=sys.executable,
               UV_NO_PROGRESS="1")
    done = subprocess.run([bin_path("uv"), *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env)
    output = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, output
    return output


def test_uv_installs_and_exclude_newer_uses_upload_times(stages: Daemon, tmp_path: Path) -> None:
    import time

    twine(stages.url + "/packages/develop/", make_wheel(tmp_path, "timed", "1.0"))
    time.sleep(1.5)
    between = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1.5)
    later = tmp_path / "later"
    later.mkdir()
    twine(stages.url + "/packages/develop/", make_wheel(later, "timed", "2.0"))
    index = stages.url + "/packages/develop/+simple/"
    newest, older = tmp_path / "newest", tmp_path / "older"
    uv("pip", "install", "--index-url", index, "--target", str(newest), "timed", cwd=tmp_path)
    uv("pip", "install", "--index-url", index, "--target", str(older), "--exclude-newer", between,
       "timed", cwd=tmp_path)
    assert "2.0" in (newest / "timed" / "__init__.py").read_text()
    assert "1.0" in (older / "timed" / "__init__.py").read_text()


def test_devpi_push_copies_a_release_between_indexes(stages: Daemon, tmp_path: Path) -> None:
    from tests.e2e.test_devpi_client import DevpiCLI

    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = make_wheel(dist, "pushed", "1.0")
    devpi = DevpiCLI(tmp_path / "client")
    devpi("use", stages.url + "/packages/develop")
    devpi("login", "packages", "--password", "pkg-pass")
    devpi("upload", "--from-dir", str(dist))
    out = devpi("push", "pushed==1.0", "packages/stable")
    assert "store_releasefile" in out and "packages/stable" in out
    versions = json.loads(devpi("getjson", "/packages/stable/pushed"))["result"]
    (link,) = versions["1.0"]["+links"]
    assert link["href"].startswith(stages.url + "/packages/stable/+f/")
    assert [e["what"] for e in link["log"]] == ["upload", "push"]
    with urllib.request.urlopen(link["href"]) as response:
        assert response.read() == wheel.read_bytes()
    out = devpi("push", "pushed==9.9", "packages/stable", ok=False)
    assert "there are no files for pushed 9.9" in out


def test_yanked_versions_are_marked_and_skipped_by_pip(stages: Daemon, tmp_path: Path) -> None:
    auth = login(stages.url, "packages", "pkg-pass")
    twine(stages.url + "/packages/stable/", make_wheel(tmp_path, "yankee", "1.0"))
    newer = tmp_path / "newer"
    newer.mkdir()
    twine(stages.url + "/packages/stable/", make_wheel(newer, "yankee", "2.0"))
    status, reply, _ = call(stages.url + "/packages/stable/yankee/2.0", "PATCH",
                            {"yanked": "broken build"}, auth)
    assert status == 200, reply
    assert call(stages.url + "/packages/stable/yankee/2.0", "PATCH", {"yanked": "x"})[0] == 403
    request = urllib.request.Request(stages.url + "/packages/stable/+simple/yankee/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request) as response:
        files = {f["filename"]: f for f in json.loads(response.read())["files"]}
    assert files["yankee-2.0-py3-none-any.whl"]["yanked"] == "broken build"
    assert "yanked" not in files["yankee-1.0-py3-none-any.whl"]
    target = tmp_path / "site"
    pip("install", "--index-url", stages.url + "/packages/stable/+simple/", "--target", str(target),
        "yankee")
    assert "1.0" in (target / "yankee" / "__init__.py").read_text()
    assert call(stages.url + "/packages/stable/yankee/2.0", "PATCH", {"yanked": False}, auth)[0] == 200
    with urllib.request.urlopen(request) as response:
        assert all("yanked" not in f for f in json.loads(response.read())["files"])


def test_devpi_push_to_an_external_index_server(stages: Daemon, tmp_path: Path) -> None:
    from tests.e2e.test_devpi_client import DevpiCLI
    from tests.support import init_serverdir

    init_serverdir(tmp_path / "external", "--no-root-pypi")
    external = Daemon(tmp_path / "external").start()
    try:
        assert call(external.url + "/ext", "PUT", {"password": "ext-pass"})[0] == 201
        ext_auth = login(external.url, "ext", "ext-pass")
        assert call(external.url + "/ext/prod", "PUT", {}, ext_auth)[0] == 200
        dist = tmp_path / "dist"
        dist.mkdir()
        wheel = make_wheel(dist, "travels", "1.0")
        devpi = DevpiCLI(tmp_path / "client")
        (tmp_path / "client").mkdir(exist_ok=True)
        (tmp_path / "client" / ".pypirc").write_text(
            f"[distutils]\nindex-servers = ext\n\n[ext]\nrepository = {external.url}/ext/prod/\n"
            "username = ext\npassword = ext-pass\n")
        devpi("use", stages.url + "/packages/develop")
        devpi("login", "packages", "--password", "pkg-pass")
        devpi("upload", "--from-dir", str(dist))
        out = devpi("push", "travels==1.0", "pypi:ext")
        assert "upload" in out, out
        with urllib.request.urlopen(external.url + "/ext/prod/+simple/travels/") as response:
            assert wheel.name in response.read().decode()
        (tmp_path / "client" / ".pypirc").write_text(
            f"[distutils]\nindex-servers = ext\n\n[ext]\nrepository = {external.url}/ext/prod/\n"
            "username = ext\npassword = wrong\n")
        out = devpi("push", "travels==1.0", "pypi:ext", ok=False)
        assert "401" in out or "403" in out, out
    finally:
        external.stop()


def test_clients_hanging_up_mid_download_are_handled_quietly(stages: Daemon, tmp_path: Path) -> None:
    import http.client
    import zipfile

    big = make_wheel(tmp_path, "bulky", "1.0")
    with zipfile.ZipFile(big, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("bulky/data.bin", os.urandom(12 * 1024 * 1024))
    twine(stages.url + "/packages/stable/", big)
    request = urllib.request.Request(stages.url + "/packages/stable/+simple/bulky/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request) as response:
        (info,) = json.loads(response.read())["files"]
    url = urllib.parse.urlsplit(urllib.parse.urljoin(request.full_url, info["url"]))
    for _ in range(5):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", url.path)
        response = conn.getresponse()
        assert response.status == 200
        response.read(256 * 1024)
        conn.sock.close()
        conn.close()
    with urllib.request.urlopen(urllib.parse.urlunsplit(url)) as response:
        assert response.read() == big.read_bytes()
    # One keep-alive connection: whole file, a range deep inside it, then a page.
    data = big.read_bytes()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for headers, status, expected in [({}, 200, data),
                                      ({"Range": "bytes=5000000-9000000"}, 206, data[5000000:9000001]),
                                      ({}, 200, data)]:
        conn.request("GET", url.path, headers=headers)
        response = conn.getresponse()
        assert (response.status, response.read() == expected) == (status, True)
    conn.request("GET", "/packages/stable/+simple/bulky/")
    response = conn.getresponse()
    assert response.status == 200 and b"bulky-1.0" in response.read()
    conn.close()
    log = stages.log.read_text()
    assert "Unhandled" not in log and "Traceback" not in log, log[-3000:]
    copies = stages.serverdir / "+blobcache"
    with urllib.request.urlopen(urllib.request.Request(
            stages.url + "/+status", headers={"Accept": "application/json"})) as response:
        counted = json.loads(response.read())["result"]["cache"].get("blob_copies")
    with urllib.request.urlopen(stages.url + "/+metrics") as response:
        metrics = response.read().decode()
    if "--storage" in stages.args:  # PostgreSQL: the body is copied out to be sent by sendfile
        sha256 = info["hashes"]["sha256"]
        assert (copies / sha256[:2] / sha256[2:]).read_bytes() == data
        assert set(counted) == {"hits", "misses", "copies_made", "copy_errors", "bytes"}
        assert re.search(r'devpi_blob_copy_downloads_total\{[^}]*result="hit"', metrics)
        assert "devpi_blob_copies_bytes{" in metrics
    else:
        assert not copies.exists() and counted is None and "blob_cop" not in metrics


def test_racing_uploads_of_one_file_name_store_one_body(stages: Daemon, tmp_path: Path) -> None:
    """Twelve uploads of one file name at once into a non-volatile index, half with one
    body and half with another: one body wins (its uploads are 200s, the same file again
    included), every upload of the other body is a 409, and only the winner's body is
    stored: a refused upload stores nothing (on sqlite it is refused before its body is
    moved in, so there is nothing to remove and no removal to race with)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.test_bad_uploads import BOUNDARY, multipart, upload_fields

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    wheels = [make_wheel(first, "racer", "1.0"), make_wheel(second, "racer", "1.0", requires=["six"])]
    assert wheels[0].name == wheels[1].name and _sha256(wheels[0]) != _sha256(wheels[1])
    bodies = [multipart(upload_fields("racer"), [("content", w.name, w.read_bytes())]) for w in wheels]
    auth = login(stages.url, "packages", "pkg-pass")

    def upload(n: int) -> tuple[int, int]:
        status, _, _ = call(stages.url + "/packages/stable/", "POST", raw=bodies[n % 2], auth=auth,
                            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        return n % 2, status

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(upload, range(12)))
    winners = {n for n, status in outcomes if status == 200}
    assert len(winners) == 1, outcomes
    winner = winners.pop()
    assert sorted(status for n, status in outcomes if n != winner) == [409] * 6, outcomes
    _, reply, _ = call(stages.url + "/packages/stable/racer/1.0")
    links = [link for link in reply["result"]["+links"] if link["rel"] == "releasefile"]
    assert [link["hash_spec"] for link in links] == [f"sha256={_sha256(wheels[winner])}"]
    stored = list((stages.serverdir / "+files").rglob(wheels[0].name))
    if "--storage" not in stages.args:  # (PostgreSQL keeps bodies in the database)
        assert [_sha256(path) for path in stored] == [_sha256(wheels[winner])], stored
    with urllib.request.urlopen(links[0]["href"]) as response:
        assert response.read() == wheels[winner].read_bytes()
