"""The fake upstream PyPI itself, over real HTTP (urllib) against its own process."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakepypi import JSON_TYPE, FakePyPI, negotiate, split_filename
from tests.support import make_sdist, make_wheel

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PIP_ACCEPT = (f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01")


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET",
          timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body); HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}, body
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def page_json(fake: FakePyPI, project: str = "hello-world") -> dict:
    status, headers, body = fetch(fake.url + project + "/", {"Accept": PIP_ACCEPT})
    assert (status, headers["content-type"]) == (200, JSON_TYPE)
    return json.loads(body)


def origin(fake: FakePyPI) -> str:
    return fake.url.removesuffix("/simple/")


@pytest.fixture
def dists(tmp_path: Path) -> dict[str, Path]:
    directory = tmp_path / "dists"
    directory.mkdir()
    return {"wheel": make_wheel(directory, "Hello-World", "1.0"),
            "sdist": make_sdist(directory, "hello-world", "1.1")}


@pytest.fixture
def pypi(tmp_path: Path, dists: dict[str, Path]) -> Iterator[FakePyPI]:
    with FakePyPI(tmp_path / "pypi") as fake:
        for path in dists.values():
            fake.add(path)
        fake.start()
        yield fake


def test_filenames_give_normalised_project_and_version() -> None:
    assert split_filename("Hello_World-1.0-py3-none-any.whl") == ("hello-world", "1.0")
    assert split_filename("zope.interface-6.0.tar.gz") == ("zope-interface", "6.0")
    assert split_filename("my-pkg-2.0rc1.tar.gz") == ("my-pkg", "2.0rc1")
    with pytest.raises(ValueError):
        split_filename("notes.txt")


def test_accept_header_chooses_json_only_when_preferred() -> None:
    assert negotiate(PIP_ACCEPT, None) == ("json", JSON_TYPE)
    assert negotiate(None, None)[0] == "html"
    assert negotiate("*/*", None)[0] == "html"
    assert negotiate(f"text/html, {JSON_TYPE};q=0.5", None)[0] == "html"
    assert negotiate("application/vnd.pypi.simple.v1+html", None) == (
        "html", "application/vnd.pypi.simple.v1+html")
    assert negotiate("text/html", "json")[0] == "json"


def test_project_list_in_html_and_json(pypi: FakePyPI) -> None:
    status, headers, body = fetch(pypi.url)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert '<a href="/simple/hello-world/">hello-world</a>' in body.decode()
    status, headers, body = fetch(pypi.url, {"Accept": PIP_ACCEPT})
    assert headers["content-type"] == JSON_TYPE
    listing = json.loads(body)
    assert listing["meta"]["api-version"] == "1.1"
    assert listing["projects"] == [{"name": "hello-world"}]


def test_project_page_json_has_pep691_and_pep700_fields(
        pypi: FakePyPI, dists: dict[str, Path]) -> None:
    page = page_json(pypi)
    assert page["meta"]["api-version"] == "1.1" and page["name"] == "hello-world"
    assert page["versions"] == ["1.0", "1.1"]
    files = {f["filename"]: f for f in page["files"]}
    assert set(files) == {dists["wheel"].name, dists["sdist"].name}
    wheel = files[dists["wheel"].name]
    data = dists["wheel"].read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    assert wheel["url"] == f"/files/{sha256[:2]}/{dists['wheel'].name}"
    assert wheel["hashes"] == {"sha256": sha256} and wheel["size"] == len(data)
    assert wheel["requires-python"] is None and wheel["yanked"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", wheel["upload-time"])
    assert "core-metadata" not in wheel  # the metadata switch is off


def test_project_page_html_has_hash_fragments(pypi: FakePyPI, dists: dict[str, Path]) -> None:
    status, headers, body = fetch(pypi.url + "hello-world/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    sha256 = hashlib.sha256(dists["sdist"].read_bytes()).hexdigest()
    href = f"/files/{sha256[:2]}/{dists['sdist'].name}#sha256={sha256}"
    assert f'<a href="{href}">{dists["sdist"].name}</a>' in body.decode()


def test_unknown_project_is_404_and_other_spellings_redirect(pypi: FakePyPI) -> None:
    assert fetch(pypi.url + "nothing-here/")[0] == 404
    status, _, body = fetch(pypi.url + "Hello_World/", {"Accept": PIP_ACCEPT})
    assert status == 200 and json.loads(body)["name"] == "hello-world"
    assert [r["path"] for r in pypi.requests()][-2:] == ["/simple/Hello_World/",
                                                         "/simple/hello-world/"]


def test_if_none_match_gets_304_until_the_page_changes(
        pypi: FakePyPI, tmp_path: Path) -> None:
    _, headers, _ = fetch(pypi.url + "hello-world/", {"Accept": PIP_ACCEPT})
    etag = headers["etag"]
    status, again, body = fetch(pypi.url + "hello-world/",
                                {"Accept": PIP_ACCEPT, "If-None-Match": etag})
    assert (status, body, again["etag"]) == (304, b"", etag)
    assert again["x-pypi-last-serial"] == "2"
    _, html_headers, _ = fetch(pypi.url + "hello-world/", {"If-None-Match": etag})
    assert html_headers["etag"] != etag  # the ETag depends on the format
    pypi.add(make_wheel(tmp_path / "dists", "Hello-World", "2.0"))
    status, changed, _ = fetch(pypi.url + "hello-world/",
                               {"Accept": PIP_ACCEPT, "If-None-Match": etag})
    assert status == 200 and changed["etag"] != etag


def test_serial_grows_with_every_add_and_can_be_overridden(
        pypi: FakePyPI, tmp_path: Path) -> None:
    assert fetch(pypi.url)[1]["x-pypi-last-serial"] == "2"
    pypi.add(make_sdist(tmp_path / "dists", "other", "0.1"))
    assert fetch(pypi.url)[1]["x-pypi-last-serial"] == "3"
    assert fetch(pypi.url + "other/")[1]["x-pypi-last-serial"] == "3"
    pypi.set(serial=1)
    assert fetch(pypi.url + "other/")[1]["x-pypi-last-serial"] == "1"
    assert page_json(pypi, "other")["meta"]["_last-serial"] == 1


def test_file_bytes_match_the_advertised_sha256(pypi: FakePyPI, dists: dict[str, Path]) -> None:
    for item in page_json(pypi)["files"]:
        status, headers, body = fetch(origin(pypi) + item["url"])
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == item["hashes"]["sha256"]
        assert headers["content-type"] == "application/octet-stream"
        assert int(headers["content-length"]) == len(body) == item["size"]
        assert headers["last-modified"].endswith(" GMT")
    url = origin(pypi) + page_json(pypi)["files"][0]["url"]
    status, headers, body = fetch(url, method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) == dists["wheel"].stat().st_size


def test_status_switch_fails_every_request(pypi: FakePyPI) -> None:
    item = page_json(pypi)["files"][0]
    pypi.set(status=503, retry_after=7)
    status, headers, _ = fetch(pypi.url)
    assert (status, headers["retry-after"]) == (503, "7")
    assert fetch(origin(pypi) + item["url"], method="HEAD")[0] == 503
    pypi.set(status=None)
    assert fetch(pypi.url)[0] == 200


def test_paths_status_fails_only_matching_routes(pypi: FakePyPI) -> None:
    pypi.set(paths_status={"/files/": 500})
    item = page_json(pypi)["files"][0]
    assert fetch(origin(pypi) + item["url"])[0] == 500
    assert pypi.requests()[-1]["status"] == 500


def test_latency_delays_without_blocking_other_requests(pypi: FakePyPI) -> None:
    pypi.set(latency=0.4)
    statuses: list[int] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: statuses.append(fetch(pypi.url)[0]))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert statuses == [200, 200]
    assert 0.4 <= elapsed < 0.75


def test_client_giving_up_during_latency_is_logged(pypi: FakePyPI) -> None:
    pypi.set(latency=2)
    with pytest.raises(OSError):
        fetch(pypi.url, timeout=0.2)
    deadline = time.monotonic() + 5
    while not pypi.requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pypi.requests()[-1]["aborted"] == "client-gone"


def test_truncate_sends_half_the_body_then_closes(pypi: FakePyPI, dists: dict[str, Path]) -> None:
    item = page_json(pypi)["files"][0]
    pypi.set(truncate=True)
    request = urllib.request.Request(origin(pypi) + item["url"])
    with OPENER.open(request, timeout=5) as response:
        assert int(response.headers["Content-Length"]) == item["size"]
        with pytest.raises(http.client.IncompleteRead) as error:
            response.read()
    assert len(error.value.partial) == item["size"] // 2
    assert pypi.requests()[-1]["aborted"] == "truncate"


def test_reset_closes_the_connection_without_an_answer(pypi: FakePyPI) -> None:
    pypi.set(reset=True)
    with pytest.raises(OSError) as error:
        fetch(pypi.url)
    assert not isinstance(error.value, urllib.error.HTTPError)
    assert pypi.requests()[-1]["status"] is None


def test_wrong_hash_advertises_a_hash_the_file_does_not_have(pypi: FakePyPI) -> None:
    pypi.set(wrong_hash=True)
    item = page_json(pypi)["files"][0]
    body = fetch(origin(pypi) + item["url"])[2]
    assert hashlib.sha256(body).hexdigest() != item["hashes"]["sha256"]
    _, _, html = fetch(pypi.url + "hello-world/")
    assert f"#sha256={item['hashes']['sha256']}" in html.decode()


def test_corrupt_serves_other_bytes_of_the_same_length(pypi: FakePyPI) -> None:
    pypi.set(corrupt=True)
    item = page_json(pypi)["files"][0]
    body = fetch(origin(pypi) + item["url"])[2]
    assert len(body) == item["size"] and hashlib.sha256(body).hexdigest() != item["hashes"]["sha256"]


def test_only_serves_one_format_whatever_accept_says(pypi: FakePyPI) -> None:
    pypi.set(only="json")
    assert fetch(pypi.url, {"Accept": "text/html"})[1]["content-type"] == JSON_TYPE
    pypi.set(only="html")
    assert fetch(pypi.url, {"Accept": PIP_ACCEPT})[1]["content-type"] != JSON_TYPE


def test_yank_and_requires_python_show_in_both_formats(
        pypi: FakePyPI, dists: dict[str, Path]) -> None:
    wheel, sdist = dists["wheel"].name, dists["sdist"].name
    pypi.set(yank={wheel: "broken <build>", sdist: True}, requires_python={"Hello_World": ">=3.8"})
    files = {f["filename"]: f for f in page_json(pypi)["files"]}
    assert (files[wheel]["yanked"], files[sdist]["yanked"]) == ("broken <build>", True)
    assert files[wheel]["requires-python"] == ">=3.8"
    html = fetch(pypi.url + "hello-world/")[2].decode()
    assert 'data-yanked="broken &lt;build&gt;"' in html and 'data-yanked=""' in html
    assert html.count('data-requires-python="&gt;=3.8"') == 2


def test_metadata_switch_serves_core_metadata_of_wheels(
        pypi: FakePyPI, dists: dict[str, Path]) -> None:
    wheel_url = origin(pypi) + page_json(pypi)["files"][0]["url"]
    assert fetch(wheel_url + ".metadata")[0] == 404
    pypi.set(metadata=True)
    files = {f["filename"]: f for f in page_json(pypi)["files"]}
    assert "core-metadata" not in files[dists["sdist"].name]
    status, _, metadata = fetch(wheel_url + ".metadata")
    assert status == 200 and b"Name: Hello-World" in metadata
    wanted = {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert files[dists["wheel"].name]["core-metadata"] == wanted
    assert f'data-core-metadata="sha256={wanted["sha256"]}"' in fetch(
        pypi.url + "hello-world/")[2].decode()


def test_requests_log_keeps_headers_of_interest(pypi: FakePyPI) -> None:
    fetch(pypi.url, {"Accept": PIP_ACCEPT, "If-None-Match": '"x"', "User-Agent": "devpi/1",
                     "Authorization": "Basic dTpw"})
    entry = pypi.requests()[-1]
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/simple/", 200)
    assert entry["headers"] == {"accept": PIP_ACCEPT, "if-none-match": '"x"',
                                "user-agent": "devpi/1", "authorization": "Basic dTpw"}


def test_kill_makes_connections_fail_and_restart_keeps_the_url(pypi: FakePyPI) -> None:
    url = pypi.url
    pypi.kill()
    with pytest.raises(urllib.error.URLError):
        fetch(url, timeout=2)
    pypi.start()
    assert pypi.url == url
    assert fetch(url)[0] == 200


def test_start_reports_the_server_output_when_it_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fake = FakePyPI(tmp_path / "pypi", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="Couldn't listen"):
            fake.start()


def test_unknown_switch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="lantency"):
        FakePyPI(tmp_path / "pypi").set(lantency=1)
