"""Operator routes (OpsApp): ``GET /+health`` for load balancers, ``GET /+metrics`` in
the Prometheus text format, and ``GET /+status`` (devpi's, with these series under
``metrics``).

What is counted is this process's (see web/metrics.py): requests by route and
status with latency histograms, upstream fetches, mirror cache hits and misses,
downloads nginx sent (X-Accel-Redirect), files stored and their bytes per index
(a scan of the blob store, at most every five minutes), the serial and the
replication state (a replica's lag behind its primary; a standalone node or a
primary is never behind). Per-index figures and replication errors name only the
indexes the caller may read (pkg_read).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.logger import Logger

from devpi_twisted.model.acl import Identity
from devpi_twisted.model.devpi_api import DEVPI_VERSION, role_name, status_view
from devpi_twisted.model.errors import NotFound
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.replication.feed import ChangelogFeed
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest, MirrorStatus, ReplicaStatus
from devpi_twisted.web.helpers import json_view
from devpi_twisted.web.metrics import RequestMetrics, Series, render as render_metrics
from devpi_twisted.web.site import ServerInfo
from devpi_twisted.web.ui.webapp import WebApp

_log = Logger()
USAGE_SECONDS = 300.0  # /+metrics scans the blob store (on a thread) at most this often
PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
STARTED = time.time()


class OpsApp:
    """Health, metrics and status. Needs the server's operations and info, the blob
    store (its usage and copy counters), who the caller is (what they may read), the mirror's and replica's status if there
    are, a primary's changelog feed, the request counters, and the file counters of
    this process (web/files.py)."""

    def __init__(self, ops: ServerOps, info: ServerInfo, blobs: BlobStore | None,
                 metrics: RequestMetrics, file_stats: Mapping[str, int],
                 identity: Callable[[HttpRequest], Awaitable[Identity]],
                 mirror: MirrorStatus | None = None, feed: ChangelogFeed | None = None,
                 replica: ReplicaStatus | None = None, web: WebApp | None = None,
                 hook_counts: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
                 hook_stats: Callable[[], Mapping[str, int]] = dict) -> None:
        self._ops = ops
        self._hook_counts = hook_counts
        self._hook_stats = hook_stats
        self._web = web
        self._identity = identity
        self._info = info
        self._blobs = blobs
        self._metrics = metrics
        self._file_stats = file_stats
        self._mirror = mirror
        self._feed = feed
        self._replica = replica
        self._usage: tuple[float, dict[str, tuple[int, int]]] | None = None

    async def health(self, request: HttpRequest) -> bytes:
        """200 while the database answers (503 from the error mapping when it does not)."""
        await self._ops.sync()
        return render.result(request, "health", {
            "status": "ok", "serial": self._ops.serial, "role": self._info.role,
            "requests-only": self._info.requests_only})

    async def _readable(self, request: HttpRequest) -> frozenset[str]:
        """The ``user/index`` names the caller may read."""
        users = await self._ops.list_users(await self._identity(request))
        return frozenset(f"{u}/{i}" for u, view in users.items() for i in view["indexes"])

    async def metrics(self, request: HttpRequest) -> bytes:
        await self._ops.sync()
        readable = await self._readable(request)
        usage = {i: v for i, v in (await self._stored_files()).items() if i in readable}
        common = {"process": "worker" if self._info.requests_only else "main",
                  "pid": str(os.getpid())}
        request.setHeader(b"Content-Type", PROMETHEUS_TEXT)
        request.setHeader(b"Cache-Control", b"no-store")
        series = self.metric_series(usage) + await self._hook_series()
        return render_metrics(self._metrics, series, common)

    async def _hook_series(self) -> list[Series]:
        """Webhooks: deliveries in the database by status (pending: the queue), and this
        process's attempts (only the main process of a primary delivers)."""
        counts = dict(await self._hook_counts()) if self._hook_counts is not None else {}
        stats = self._hook_stats()
        return [
            Series("webhook_queue_depth", "gauge", "webhook deliveries waiting to be sent",
                   (({}, counts.get("pending", 0)),)),
            Series("webhook_deliveries", "gauge", "webhook deliveries stored, by status",
                   tuple(({"status": k}, counts.get(k, 0)) for k in ("pending", "delivered", "failed"))),
            Series("webhook_deliveries_total", "counter", "webhook deliveries sent (2xx answer)",
                   (({}, stats.get("delivered", 0)),)),
            Series("webhook_delivery_failures_total", "counter",
                   "webhook delivery attempts that failed (retried later)",
                   (({}, stats.get("attempts_failed", 0)),)),
            Series("webhook_deliveries_given_up_total", "counter",
                   "webhook deliveries marked failed after a day of retries",
                   (({}, stats.get("given_up", 0)),)),
        ]

    async def _stored_files(self) -> dict[str, tuple[int, int]]:
        """index -> (files, bytes) in the blob store, rescanned after USAGE_SECONDS."""
        if self._blobs is None:  # route tests without a blob store
            return {}
        now = time.monotonic()
        if self._usage is not None and now - self._usage[0] < USAGE_SECONDS:
            return self._usage[1]
        totals: dict[str, tuple[int, int]] = {}
        for blob in await self._blobs.usage(""):
            parts = blob.key.split("/", 2)
            index = "/".join(parts[:2]) if len(parts) == 3 else "-"
            count, size = totals.get(index, (0, 0))
            totals[index] = (count + 1, size + blob.size)
        self._usage = (now, totals)
        return totals

    def replication_state(self) -> Mapping[str, Any]:
        """Replication as /+status and /+metrics show it: a replica's lag behind its
        primary (NaN while it has not heard from it), a primary's polling replicas; a
        standalone node is its own source, never behind."""
        serial = self._ops.serial
        feed = self._feed
        polling = len(feed.polling_replicas) if feed is not None and feed.enabled else 0
        replica = self._replica
        if replica is None:
            return {"role": self._info.role, "primary-serial": serial, "lag-serials": 0,
                    "lag-seconds": 0.0, "polling-replicas": polling}
        lag = replica.status()["replication-lag"]
        return {"role": self._info.role, "primary-serial": replica.primary_serial,
                "lag-serials": float("nan") if lag["serials"] is None else lag["serials"],
                "lag-seconds": lag["seconds"], "polling-replicas": 0}

    def metric_series(self, usage: Mapping[str, tuple[int, int]] | None = None) -> list[Series]:
        mirror = self._mirror
        stats: Mapping[str, int] = mirror.stats if mirror is not None else {}
        upstream: Mapping[str, int] = mirror.upstream_stats if mirror is not None else {}
        files = self._file_stats
        replication = self.replication_state()
        series = [
            Series("serial", "gauge", "current serial of the database",
                   (({}, self._ops.serial),)),
            Series("last_commit_timestamp_seconds", "gauge", "time of the last commit seen",
                   (({}, self._ops.last_commit_time or 0),)),
            Series("process_start_time_seconds", "gauge", "start time of this process",
                   (({}, STARTED),)),
            Series("upstream_requests_total", "counter", "requests sent upstream (mirrors)",
                   (({}, upstream.get("requests", 0)),)),
            Series("upstream_errors_total", "counter", "upstream requests that failed",
                   (({}, upstream.get("errors", 0)),)),
            Series("upstream_retries_total", "counter", "upstream requests retried",
                   (({}, upstream.get("retries", 0)),)),
            Series("mirror_page_requests_total", "counter",
                   "mirror project pages asked for: from the cache (hit) or fetched (miss)",
                   (({"result": "hit"}, stats.get("page_hits", 0)),
                    ({"result": "miss"}, stats.get("page_fetches", 0)),
                    ({"result": "error"}, stats.get("page_errors", 0)))),
            Series("mirror_page_prefetches_total", "counter",
                   "mirror project pages brought up to date ahead of the client (the "
                   "requirements of a release it fetched)",
                   (({}, stats.get("page_prefetches", 0)),)),
            Series("mirror_file_requests_total", "counter",
                   "mirror files downloaded: from the store (hit) or fetched upstream (miss)",
                   (({"result": "hit"}, files.get("mirror_file_hits", 0)),
                    ({"result": "miss"}, stats.get("file_fetches", 0)),
                    ({"result": "error"}, stats.get("file_errors", 0)))),
            Series("accel_redirects_total", "counter",
                   "downloads handed to nginx with X-Accel-Redirect",
                   (({}, files.get("accel_redirects", 0)),)),
            Series("policy_hidden_requests_total", "counter",
                   "requests whose answer left something out by the index's policy (a simple "
                   "page without it, a download refused), by rule",
                   (({"rule": "age"}, files.get("policy_held_back", 0)),
                    ({"rule": "constraint"}, files.get("policy_constrained", 0)),
                    ({"rule": "blocked"}, files.get("policy_blocked", 0)))),
            Series("replication_lag_serials", "gauge", "serials this node is behind its primary",
                   (({"role": str(replication["role"])}, replication["lag-serials"]),)),
            Series("replication_lag_seconds", "gauge", "seconds this node is behind its primary",
                   (({"role": str(replication["role"])}, replication["lag-seconds"]),)),
        ]
        copies = self._blobs.copy_stats() if self._blobs is not None else {}
        if copies:  # PostgreSQL: the host's copies of the bodies (+blobcache)
            series.append(Series("blob_copy_downloads_total", "counter",
                                 "downloads sent from this host's copy (hit) or the database (miss)",
                                 (({"result": "hit"}, copies["hits"]),
                                  ({"result": "miss"}, copies["misses"]))))
            series.append(Series("blob_copies_made_total", "counter",
                                 "copies of bodies made from the database, or failed",
                                 (({"result": "ok"}, copies["copies_made"]),
                                  ({"result": "error"}, copies["copy_errors"]))))
            series.append(Series("blob_copies_bytes", "gauge", "bytes of the copies this process knows of",
                                 (({}, copies["bytes"]),)))
        if usage is not None:
            series.append(Series("files_stored", "gauge", "files in the blob store, by index",
                                 tuple(({"index": i}, c) for i, (c, _) in sorted(usage.items()))))
            series.append(Series("files_stored_bytes", "gauge", "bytes in the blob store, by index",
                                 tuple(({"index": i}, b) for i, (_, b) in sorted(usage.items()))))
        return series

    def status_metrics(self, readable: frozenset[str] | None = None) -> list[list[Any]]:
        """The series as devpi's /+status ``metrics``: [name, type, value] (labels in the
        name); per-index ones of the ``readable`` indexes only (None: all)."""
        found = []
        usage = None if self._usage is None else \
            {i: v for i, v in self._usage[1].items() if readable is None or i in readable}
        for s in self.metric_series(usage):
            for labels, value in s.samples:
                suffix = "".join(f"_{v}" for v in labels.values())
                found.append([f"devpi_twisted_{s.name}{suffix}", s.kind, value])
        return found

    async def metrics_page(self, request: HttpRequest) -> bytes:
        """The metrics people look at, as a page (the web interface's)."""
        if self._web is None:
            raise NotFound("no web interface here")
        await self._ops.sync()
        usage = self._usage[1] if self._usage is not None else None
        readable = await self._readable(request)
        shown = None if usage is None else {i: v for i, v in usage.items() if i in readable}
        return await self._web.metrics(request, self.metric_series(shown), self._metrics)

    async def status(self, request: HttpRequest) -> bytes:
        web = self._web if render.browser(request) else None
        if web is None:
            json_view(request)
        await self._ops.sync()
        readable = await self._readable(request)
        info = self._info
        serial = self._ops.serial
        status = {
            "serverdir": info.serverdir, "uuid": info.uuid,
            "versioninfo": {"devpi-twisted": info.version,
                            "devpi-server": DEVPI_VERSION[info.devpi_api]},
            "server-code": "devpi-twisted", "host": info.host, "port": info.port,
            "outside-url": info.outside_url, "serial": serial,
            "last-commit-timestamp": self._ops.last_commit_time,
            "event-serial": serial, "event-serial-timestamp": self._ops.last_commit_time,
            "event-serial-in-sync-at": self._ops.last_commit_time,
            "metrics": self.status_metrics(readable),
            "role": role_name(info.role, info.devpi_api),
            "polling_replicas": {},
            "process": {"pid": os.getpid(), "requests-only": info.requests_only},
            **self._more_status(),
        }
        status = status_view(status, info.devpi_api)
        errors = status.get("replication-errors")
        if isinstance(errors, dict):  # keyed by relpath (user/index/+f/...)
            status["replication-errors"] = {
                k: v for k, v in errors.items() if "/".join(str(k).split("/", 2)[:2]) in readable}
        if web is not None:
            return await web.status(request, {**status, "storage": info.storage})
        return render.result(request, "status", status)

    def _more_status(self) -> dict[str, Any]:
        more: dict[str, Any] = {"replication": dict(self.replication_state()),
                                "replication-errors": {}, "cache": {**self._file_stats}}
        copies = self._blobs.copy_stats() if self._blobs is not None else {}
        if copies:
            more["cache"]["blob_copies"] = copies
        if self._feed is not None and self._feed.enabled:
            more["polling_replicas"] = {u: dict(v)
                                        for u, v in self._feed.polling_replicas.items()}
        if self._replica is not None:
            more.update(self._replica.status())
        if self._mirror is None:
            return more
        more["cache"].update(self._mirror.stats)
        mirror = self._mirror
        return {**more, "mirror": {**mirror.stats, "upstream": dict(mirror.upstream_stats),
                                   "offline": mirror.offline}}
