"""The daemon's logs: ``twistd --logger devpi_twisted.logfmt.json_lines`` writes one
JSON object per line, access log events (``--access-log``) included."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import Daemon, bin_path, call, init_serverdir


class JsonDaemon(Daemon):
    def command(self) -> list[str]:
        plain = super().command()
        assert plain[:3] == [bin_path("twistd"), "-n", "--pidfile="]
        return [*plain[:3], "--logger", "devpi_twisted.logfmt.json_lines", *plain[3:]]


def test_json_lines_log_with_access_events(tmp_path: Path) -> None:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir, "--no-root-pypi")
    daemon = JsonDaemon(serverdir, "--access-log").start()
    try:
        assert call(daemon.url + "/+api")[0] == 200
        assert call(daemon.url + "/no/such/+simple/x/")[0] == 404
    finally:
        daemon.stop()
    lines = [json.loads(line) for line in daemon.log.read_text().splitlines()]
    assert all({"time", "level", "namespace", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line.get("access")]
    assert [(a["method"], a["uri"], a["status"]) for a in access] == [
        ("GET", "/+api", 200), ("GET", "/no/such/+simple/x/", 404)]
    assert access[0]["client"] == "127.0.0.1" and access[0]["size"] > 0
