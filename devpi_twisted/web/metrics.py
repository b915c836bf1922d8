"""Request counters and latency histograms of this process, and the Prometheus text
format (version 0.0.4) of them and of the gauges other parts report.

``RequestMetrics.observe`` runs once per finished request (DevpiSite.log), on the
simple-page and download hot paths too, so it is a bisect and three dict updates
(the route label was found with the request's route, DevpiSite.getResourceFor).
Counters live in this process: with ``--workers`` every process counts
what it answered, and a scrape of the shared port reads the one that answers it; the
``process`` label (``main`` or ``worker``) and ``pid`` say which.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

import attrs

from devpi_twisted.web.routes import MATCHER

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

def route_of(segments: Sequence[bytes], method: bytes) -> str:
    """A bounded label for a request path (segments after the mount point): the name of
    its route in web/routes.py, ``other`` if none takes it."""
    found = MATCHER.match_segments(method, segments)
    return found.route.name if found is not None else "other"


class Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = Histogram()
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.total += seconds
        histogram.count += 1


@attrs.frozen
class Series:
    """One metric: name (without the ``devpi_`` prefix), type, help, samples."""

    name: str
    kind: str  # counter or gauge
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    quoted = (f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + ",".join(quoted) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(metrics: RequestMetrics, series: Iterable[Series],
           common: Mapping[str, str]) -> bytes:
    """The Prometheus text exposition of the request metrics and ``series``; ``common``
    labels (process, pid) go on every sample."""
    lines = ["# HELP devpi_http_requests_total HTTP requests answered, by route and status",
             "# TYPE devpi_http_requests_total counter"]
    for (route, method, status), count in sorted(metrics.requests.items()):
        counted = {**common, "route": route, "method": method, "status": str(status)}
        lines.append(f"devpi_http_requests_total{_labels(counted)} {count}")
    lines += ["# HELP devpi_http_request_duration_seconds time from request to response end",
              "# TYPE devpi_http_request_duration_seconds histogram"]
    for route, histogram in sorted(metrics.latency.items()):
        running = 0
        for bound, count in zip((*BUCKETS, float("inf")), histogram.counts):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            bucket = _labels({**common, "route": route, "le": le})
            lines.append(f"devpi_http_request_duration_seconds_bucket{bucket} {running}")
        of_route = _labels({**common, "route": route})
        lines.append(f"devpi_http_request_duration_seconds_sum{of_route} {histogram.total!r}")
        lines.append(f"devpi_http_request_duration_seconds_count{of_route} {histogram.count}")
    for s in series:
        name = f"devpi_{s.name}"
        lines += [f"# HELP {name} {s.help}", f"# TYPE {name} {s.kind}"]
        for sample, value in s.samples:
            lines.append(f"{name}{_labels({**common, **sample})} {_number(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8")
