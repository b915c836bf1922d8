"""Replication figures: how long a fresh replica takes to catch up with a primary holding
N uploads, and how far it lags while uploads go on at a steady rate.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable), from the repository root:
``VENV/bin/python bench/bench_replica.py [--uploads 1000] [--rate 5] [--duration 30]
[--primary-storage postgresql:...] [--replica-storage postgres] [--no-lag]``.
It starts a throw-away primary and replica (sqlite unless ``--primary-storage`` /
``--replica-storage``; ``postgres`` alone: a database on a throwaway cluster of
tests/pg.py) on 127.0.0.1, both with cheap key derivation. Catch-up is measured
twice: until the replica's serial equals the primary's (metadata) and until every
file body is there too (its file queue empty); the apply rate (serials/s) counts
from the moment the replica serves (its start-up left out) to the primary's serial. Lag: each upload's serial (X-Devpi-Serial of its answer)
against the moment the replica's /+status first shows it (polled every 10 ms), and the
moment the file's body is in the replica's +files.

Figures of 2026-11-25 (2 shared cores, load average ~4.3 from other work, sqlite ->
sqlite, 1000 uploads = 1002 serials and 2000 file bodies, wheel + extracted metadata):
fresh replica at the primary's serial after 11.5 s (daemon start included), all file
bodies after 17.5 s; at 5 uploads/s for 30 s the replica showed each upload's serial
p50 18 ms / p99 44 ms / max 48 ms after the primary answered it, and had its body
p50 32 ms / p99 72 ms / max 76 ms after.

Figures of 2026-12-07 (same machine, load average 4-6; ``--uploads 3000 --no-lag``,
3,003 serials; apply rate after the replica served), before (main at 86c1ee5, one
transaction per serial) and after (batches of 250, file fetches held while more than
a batch behind): sqlite replica 163 -> 1,969 serials/s (serial reached 18.9 s -> 2.1 s,
all 6,000 bodies 20.7 s -> 14.7 s); PostgreSQL replica 99 -> 308 serials/s (30.8 s ->
10.4 s; 635 serials/s with ``--file-replication-skip-indexes all``).

Figures of 2026-12-07 evening (load average 3.2-5.9; ``--uploads 3000 --no-lag
--replica-storage postgres``, three runs each in turns), main at a2d9e4c -> statements
without rows held back and sent with the next statement or the COMMIT (pgpool.Pipeline)
and the serial counter taken once per batch: 323 / 318 / 305 -> 1,861 / 1,275 / 1,404
serials/s; replica CPU 1.81 / 1.95 / 2.01 -> 0.32 / 0.37 / 0.36 ms per serial, PostgreSQL
0.80 / 0.79 / 0.78 -> 0.17 / 0.18 / 0.21 ms; all 6,000 bodies after 26.5 / 24.8 / 23.6 ->
15.5 / 17.1 / 17.9 s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from bench_index import upload_form  # noqa: E402
from bench_storage import tree_cpu  # noqa: E402
from tests.pg import free_port  # noqa: E402
from tests.support import Daemon, call, init_serverdir, login, make_wheel  # noqa: E402


def upload(url: str, auth: tuple[str, str], path: Path) -> tuple[int, int]:
    """(status, X-Devpi-Serial) of a twine-like upload form."""
    name, version = path.name.split("-")[:2]
    body, ctype = upload_form(name, version, path.name, path.read_bytes())
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": ctype, "X-Devpi-Auth": token})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, int(response.headers["X-Devpi-Serial"])


def status(url: str) -> dict[str, Any]:
    return call(url + "/+status")[1]["result"]  # type: ignore[no-any-return]


def relpath(path: Path) -> str:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"bench/dev/+f/{sha[:3]}/{sha[3:16]}/{path.name}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def postmaster(cluster: Any) -> int | None:
    """The pid of a throwaway cluster's server (its backends are its children)."""
    if cluster is None:
        return None
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="uploads per second while lagging")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--primary-storage", default=None)
    parser.add_argument("--replica-storage", default=None)
    parser.add_argument("--no-lag", action="store_true", help="catch-up figures only")
    parser.add_argument("--replica-arg", action="append", default=[],
                        help="an extra argument for the replica's daemon (repeat the option)")
    parser.add_argument("--py-spy", metavar="FILE", default=None,
                        help="record the replica's catch-up with py-spy (collapsed stacks to FILE)")
    args = parser.parse_args()
    cluster = None
    for attr in ("primary_storage", "replica_storage"):
        if getattr(args, attr) == "postgres":
            if cluster is None:
                from tests.pg import PgCluster

                cluster = PgCluster().start()
            setattr(args, attr, cluster.storage_option(cluster.create_database()))

    work = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    os.chmod(work, 0o700)
    secret = work / "secret"
    secret.write_bytes(base64.b64encode(os.urandom(32)))
    secret.chmod(0o600)
    storage = ["--storage", args.primary_storage] if args.primary_storage else []
    port = free_port()
    primary_url = f"http://127.0.0.1:{port}"
    init_serverdir(work / "primary", *storage)
    primary = Daemon(work / "primary", *storage, "--role", "primary", "--secretfile", str(secret),
                     "--port", str(port)).start()
    replica: Daemon | None = None
    try:
        assert call(primary.url + "/bench", "PUT", {"password": "bench"})[0] == 201
        auth = login(primary.url, "bench", "bench")
        assert call(primary.url + "/bench/dev", "PUT", {"bases": []}, auth)[0] == 200
        dists = work / "dists"
        dists.mkdir()
        wheels = [make_wheel(dists, f"pkg{n % 50}", f"1.{n}") for n in range(args.uploads)]
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda w: upload(primary.url + "/bench/dev/", auth, w), wheels))
        assert all(code == 200 for code, _ in results)
        upload_seconds = time.monotonic() - started
        target = status(primary.url)["serial"]
        print(f"primary: {args.uploads} uploads in {upload_seconds:.1f}s "
              f"({args.uploads / upload_seconds:.0f}/s), serial {target}")

        replica_storage = ["--storage", args.replica_storage] if args.replica_storage else []
        init_serverdir(work / "replica", *replica_storage, "--role", "replica", "--primary-url",
                       primary_url)
        started = time.monotonic()
        replica = Daemon(work / "replica", *replica_storage, "--role", "replica", "--primary-url",
                         primary_url, "--secretfile", str(secret), *args.replica_arg).start()
        serving = time.monotonic() - started
        assert replica.proc is not None
        db_pid = postmaster(cluster)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                    "--threads", "-r", "200", "-o", args.py_spy, "-p", str(replica.proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, db0 = tree_cpu(replica.proc.pid), tree_cpu(db_pid) if db_pid else 0.0
        serving_serial = status(replica.url)["serial"]
        metadata_at = None
        while True:
            seen = status(replica.url)
            now = time.monotonic() - started
            if metadata_at is None and seen["serial"] == target:
                metadata_at = now
                cpu = tree_cpu(replica.proc.pid) - cpu0
                db = tree_cpu(db_pid) - db0 if db_pid else None
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait()
            if metadata_at is not None and seen["replica-file-queue"] == 0:
                files_at = now
                break
            time.sleep(0.02)
        fetched = seen["replica-files-fetched"]
        print(f"fresh replica (incl. daemon start): serial {target} reached in {metadata_at:.2f}s, "
              f"all {fetched} file bodies in {files_at:.2f}s")
        applied = target - serving_serial
        print(f"apply rate: {applied} serials in {metadata_at - serving:.2f}s after the replica "
              f"served ({applied / max(metadata_at - serving, 1e-6):.0f} serials/s; "
              f"{serving_serial + 1} applied during start-up)")
        print(f"CPU while applying: replica {cpu * 1e3 / max(applied, 1):.3f} ms/serial"
              + (f", PostgreSQL {db * 1e3 / max(applied, 1):.3f} ms/serial" if db is not None else ""),
              flush=True)
        if args.no_lag:
            return

        # lag while uploads go on at a steady rate
        answered: dict[int, float] = {}
        files: dict[Path, float] = {}
        seen_at: dict[int, float] = {}
        body_at: dict[Path, float] = {}
        done = threading.Event()

        def uploader() -> None:
            count = int(args.rate * args.duration)
            for n in range(count):
                due = start + n / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                wheel = make_wheel(dists, "steady", f"2.{n}")
                code, serial = upload(primary.url + "/bench/dev/", auth, wheel)
                assert code == 200
                now = time.monotonic()
                answered[serial] = now
                files[work / "replica" / "+files" / relpath(wheel)] = now
            done.set()

        def watcher() -> None:
            while not done.is_set() or len(seen_at) < len(answered) or len(body_at) < len(files):
                serial = status(replica.url)["serial"]  # type: ignore[union-attr]
                now = time.monotonic()
                for s in list(answered):
                    if s <= serial and s not in seen_at:
                        seen_at[s] = now
                for path in list(files):
                    if path not in body_at and path.exists():
                        body_at[path] = now
                time.sleep(0.01)

        start = time.monotonic()
        threads = [threading.Thread(target=uploader), threading.Thread(target=watcher)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lags = [max(0.0, seen_at[s] - answered[s]) * 1000 for s in answered]
        file_lags = [max(0.0, body_at[p] - files[p]) * 1000 for p in files]
        print(f"lag at {args.rate:g} uploads/s for {args.duration:g}s ({len(lags)} uploads): "
              f"serial p50 {statistics.median(lags):.0f} ms, p99 {percentile(lags, 0.99):.0f} ms, "
              f"max {max(lags):.0f} ms; file body p50 {statistics.median(file_lags):.0f} ms, "
              f"p99 {percentile(file_lags, 0.99):.0f} ms, max {max(file_lags):.0f} ms")
        final = status(replica.url)
        print("replica status:", json.dumps({k: final[k] for k in (
            "replication-lag", "replication-errors", "replica-files-fetched")}))
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()
        if cluster is not None:
            cluster.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
