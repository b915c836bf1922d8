"""The web interface from the installed package (templates, stylesheet and
readme-renderer come with it), through a real daemon: a browser's pages, their
policy, a Markdown description rendered, and what clients get beside them."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from tests.support import Daemon, call, login
from tests.web.test_fuzz import BOUNDARY, _multipart, _sdist

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "User-Agent": "Mozilla/5.0"}


def _page(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or BROWSER)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_pages_of_the_installed_package(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    try:
        url = daemon.url
        assert call(url + "/alice", "PUT", {"password": "pw"})[0] == 201
        auth = login(url, "alice", "pw")
        assert call(url + "/alice/dev", "PUT", {"title": "Dev"}, auth)[0] == 200
        body = _multipart([(":action", "file_upload"), ("name", "pkg"), ("version", "1.0"),
                           ("description", "# Title\n\nSome *Markdown*."),
                           ("description_content_type", "text/markdown")],
                          [("content", "pkg-1.0.tar.gz", _sdist("pkg", "1.0"))])
        status, reply, _ = call(url + "/alice/dev/", "POST", raw=body, auth=auth, headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        assert status == 200, reply
        for path, marker in (("/", 'id="indexes"'), ("/alice/dev", 'id="projects"'),
                             ("/alice/dev/pkg", 'id="versions"'),
                             ("/alice/dev/pkg/1.0", "<em>Markdown</em>"),
                             ("/+status", "<h1>Status</h1>"), ("/+web/metrics", 'id="metrics"'),
                             ("/+login", 'name="password"')):
            status, headers, html = _page(url + path)
            assert status == 200 and marker in html, (path, status, html[:300])
            assert headers["Content-Security-Policy"].startswith("default-src 'none'"), path
            assert headers["X-Content-Type-Options"] == "nosniff"
        status, headers, css = _page(url + "/+static/style.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css") and "main" in css
        # beside them, clients get what they got before
        assert call(url + "/alice/dev")[1]["type"] == "indexconfig"
        status, _, simple = _page(url + "/alice/dev/pkg", {"User-Agent": "pip/24.0",
                                                          "Accept": "text/html"})
        assert status == 200 and "pkg-1.0.tar.gz" in simple and "<nav" not in simple
    finally:
        daemon.stop()
