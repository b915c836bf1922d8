"""/+health, /+metrics (Prometheus text), /+status's metrics and replication state,
and the access log events, through the real Site in memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.logger import capturedLogs

from devpi_twisted.logfmt import event_as_json
from devpi_twisted.web.metrics import RequestMetrics, Series, render, route_of
from tests.web.conftest import Server, make_server


def test_health_answers_ok_with_the_serial(server: Server) -> None:
    reply = server.client.get("/+health")
    assert reply.code == 200
    assert reply.json["result"] == {"status": "ok", "serial": server.storage.serial,
                                    "role": "standalone", "requests-only": False}


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_requests_by_route_and_status(server: Server) -> None:
    for _ in range(3):
        assert server.client.get("/+api").code == 200
    assert server.client.get("/nobody/nothing/+simple/pkg/").code == 404
    reply = server.client.get("/+metrics")
    assert reply.code == 200
    assert reply.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.body.decode()
    assert metric(text, "devpi_http_requests_total", route="api", method="GET", status="200") == 3
    assert metric(text, "devpi_http_requests_total", route="simple_project", status="404") == 1
    assert metric(text, "devpi_http_request_duration_seconds_count", route="api") == 3
    assert metric(text, "devpi_http_request_duration_seconds_bucket", route="api", le="+Inf") == 3
    assert metric(text, "devpi_serial") == server.storage.serial
    assert metric(text, "devpi_replication_lag_serials", role="standalone") == 0
    assert metric(text, "devpi_mirror_file_requests_total", result="hit") == 0
    assert 'process="main"' in text and "# TYPE devpi_http_requests_total counter" in text


def test_status_shows_metrics_cache_and_replication(server: Server) -> None:
    result = server.client.get("/+status").json["result"]
    names = {m[0]: m for m in result["metrics"]}
    assert names["devpi_twisted_serial"] == ["devpi_twisted_serial", "gauge", server.storage.serial]
    assert result["replication"]["lag-serials"] == 0
    assert result["replication"]["primary-serial"] == server.storage.serial
    assert result["cache"]["mirror_file_hits"] == 0 and result["replication-errors"] == {}


def test_route_labels_are_bounded() -> None:
    cases = {"/": "root", "/+api": "api", "/+whatever": "other", "/alice": "user",
             "/alice/dev": "index", "/alice/dev/+simple/": "simple_list",
             "/alice/dev/+simple/pkg/": "simple_project", "/alice/dev/+f/a/b/p.whl": "file",
             "/alice/dev/+e/x/p.whl": "file", "/alice/dev/pkg/1.0": "project",
             "/alice/dev/+api": "api", "/alice/dev/+xyz": "other"}
    for path, label in cases.items():
        assert route_of(path.encode().split(b"/")[1:], b"GET") == label, path
    assert route_of([b"alice", b"dev"], b"POST") == "upload"


def test_histogram_buckets_are_cumulative() -> None:
    metrics = RequestMetrics()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 50.0):
        metrics.observe("file", "GET", 200, seconds)
    text = render(metrics, [Series("x", "gauge", "a gauge", (({"a": 'q"uote'}, 1.5),))],
                  {"pid": "1"}).decode()
    buckets = [float(v) for v in re.findall(r'_bucket\{[^}]*\} (\S+)', text)]
    assert buckets == sorted(buckets) and buckets[0] == 1 and buckets[-1] == 5
    assert metric(text, "devpi_http_request_duration_seconds_bucket", le="0.005") == 3
    assert 'devpi_x{pid="1",a="q\\"uote"} 1.5' in text


def test_access_log_events_carry_the_request_fields_and_no_credentials(tmp_path: Path) -> None:
    server = make_server(tmp_path, access_log=True)
    try:
        secret = server.login("root", "")
        with capturedLogs() as events:
            server.client.get("/+api", headers={**server.devpi_auth("root", secret),
                                                "User-Agent": ["pip/24.0"]})
        (event,) = [e for e in events if e.get("access")]
        assert event["method"] == "GET" and event["uri"] == "/+api" and event["status"] == 200
        assert event["user"] == "root" and event["agent"] == "pip/24.0"
        assert secret not in json.dumps({k: str(v) for k, v in event.items()})
        line = json.loads(event_as_json(event))
        assert line["status"] == 200 and line["level"] == "info"
        assert '"GET /+api HTTP/1.1" 200' in line["message"] and "pip/24.0" in line["message"]
    finally:
        server.storage.close()
