"""The project list (``+simple/``) of an index inheriting a PyPI-sized mirror.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_lists.py [--names 700000] [--duration 5]``.
nginx (1 worker) serves a static PEP 503 project list of ``--names`` names (as PyPI's,
about 12 characters each); a fresh server (sqlite) mirrors it as root/pypi, and
root/dev inherits root/pypi. Once the mirror holds upstream's list, for HTML and PEP
691 JSON and each Accept-Encoding (identity, gzip, br, zstd): the first answer's time
(the rendering), then wrk (2 connections, keep-alive) on /root/dev/+simple/: server CPU
per request (utime+stime of the server until idle / requests; target <= 5 ms), bytes
on the wire per request (target <= 8 MB for a client that takes compression), p50.
A client sending If-None-Match gets 304s (its CPU is shown too). Memory (VmRSS) of the
server before the list arrived, after, and after every case; the peak (VmHWM).
Targets: memory for the list <= 60 MB (RSS at the end less RSS before the list).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import auth_header, request, stop_server  # noqa: E402
from bench_index import WRK_LUA, measure, pin, run_wrk  # noqa: E402
from bench_mirror import resident_mb, start_nginx, status_mb  # noqa: E402
from bench_storage import start_server, wait_idle  # noqa: E402

FORMATS = {"html": "text/html", "json": "application/vnd.pypi.simple.v1+json"}
CODINGS = ["identity", "gzip", "br", "zstd"]


PUT = {"Content-Type": "application/json", "Accept": "application/json"}


def root_auth(base: str) -> dict[str, str]:
    """Headers of a JSON request as root (logged in with the empty password)."""
    token = json.loads(request(base, "POST", "/+login",
                               json.dumps({"user": "root", "password": ""}).encode(), PUT))
    return {**PUT, "X-Devpi-Auth": auth_header("root", token["result"]["password"])}


def build_list(www: Path, names: int) -> None:
    """www/simple/index.html: ``names`` projects, names of 8 to 16 characters."""
    (www / "simple").mkdir(parents=True)
    with open(www / "simple" / "index.html", "w") as out:
        out.write("<!DOCTYPE html><html><body>\n")
        for i in range(names):
            name = f"pkg{i}-{'x' * (i % 8)}"
            out.write(f'<a href="{name}/">{name}</a>\n')
        out.write("</body></html>\n")


def one(base: str, path: str, headers: dict[str, str]) -> tuple[float, int, dict[str, str]]:
    """(seconds, body bytes, headers) of one GET."""
    import http.client
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    started = time.perf_counter()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return time.perf_counter() - started, len(body), {k.lower(): v for k, v in response.getheaders()}


def bench(label: str, pid: int, base: str, auth: dict[str, str], upstream: str, args: argparse.Namespace,
          lua: Path) -> list[str]:
    """Every case against one server (``pid``, at ``base``); returns the problems."""
    config = {"type": "mirror", "mirror_url": f"{upstream}/simple/", "volatile": False}
    request(base, "PUT", "/root/pypi", json.dumps(config).encode(), auth)
    request(base, "PUT", "/root/dev", json.dumps({"bases": ["root/pypi"]}).encode(), auth)
    wait_idle(pid)
    rss_before = resident_mb(pid)
    listed, deadline = 0, time.monotonic() + 900
    while listed < args.names and time.monotonic() < deadline:
        time.sleep(1)  # the upstream list comes in the background (ours)
        page = request(base, "GET", "/root/dev/+simple/", None, {"Accept": "text/html"})
        listed = page.count(b"<a ")
    assert listed >= args.names, f"the mirror lists {listed} of {args.names} names"
    wait_idle(pid)
    print(f"\n{label}: {args.names} names upstream (nginx {upstream}); server memory before the "
          f"list {rss_before:.0f} MB, with it {resident_mb(pid):.0f} MB")
    head = (f"{'case':<16} {'first s':>8} {'req/s':>8} {'p50 ms':>8} {'CPU ms/req':>10} "
            f"{'MB/req':>8} {'304 CPU ms':>10} {'RSS MB':>7}")
    print(f"{head}\n{'-' * len(head)}", flush=True)
    problems = []
    for fmt, accept in FORMATS.items():
        for coding in CODINGS:
            headers = {"Accept": accept, "Accept-Encoding": coding}
            first, size, got = one(base, "/root/dev/+simple/", headers)
            wait_idle(pid)
            r = measure(pid, None, lambda: run_wrk(f"{base}/root/dev/+simple/", headers,
                                                   2, args.duration, lua))
            wire = r["mbs"] / max(r["rate"], 1e-9)
            etag = got.get("etag")
            cpu304 = float("nan")
            if etag:
                n = measure(pid, None, lambda: run_wrk(
                    f"{base}/root/dev/+simple/", {**headers, "If-None-Match": etag}, 2,
                    max(args.duration // 2, 1), lua))
                cpu304 = n["cpu"]
            rss = resident_mb(pid)
            print(f"{fmt + ' ' + coding:<16} {first:>8.2f} {r['rate']:>8.1f} {r['p50']:>8.2f} "
                  f"{r['cpu']:>10.3f} {wire:>8.2f} {cpu304:>10.3f} {rss:>7.0f}", flush=True)
            if r["errors"] or r["non2xx"]:
                problems.append(f"{label} {fmt} {coding}: {r['errors']} errors, {r['non2xx']} non-2xx")
            if r["cpu"] > 5:
                problems.append(f"{label} {fmt} {coding}: {r['cpu']:.2f} ms CPU per request > 5")
            if coding != "identity" and wire > 8:
                problems.append(f"{label} {fmt} {coding}: {wire:.1f} MB per request > 8")
    rss, peak = resident_mb(pid), status_mb(pid, "VmHWM")
    print(f"\n{label}: server memory at the end {rss:.0f} MB (the list's share "
          f"{rss - rss_before:.0f} MB, target <= 60), peak {peak:.0f} MB")
    if rss - rss_before > 60:
        problems.append(f"{label}: memory for the list {rss - rss_before:.0f} MB > 60")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=700_000, help="names upstream (700000)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--devpi6", action="store_true", help=(
        "also devpi-server 6 (tests/dump/devpi6.py; DEVPI_TWISTED_DEVPI6_VENV to share one)"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-lists-"))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    build_list(work / "nginx" / "www", args.names)
    nginx, upstream = start_nginx(work / "nginx")
    proc = None
    problems = []
    try:
        proc, base = start_server(work, [], 0)
        pin(proc.pid, "0")
        problems += bench("devpi-twisted", proc.pid, base, root_auth(base), upstream, args, lua)
        stop_server(proc)
        proc = None
        if args.devpi6:
            from tests.dump.devpi6 import login, running
            with running(work / "devpi6", major=6) as devpi:
                assert devpi.proc is not None
                pin(devpi.proc.pid, "0")
                user, password = login(devpi.url, "root", "")
                auth = {**PUT, "X-Devpi-Auth": auth_header(user, password)}
                problems += bench("devpi-server 6", devpi.proc.pid, devpi.url, auth, upstream,
                                  args, lua)
        for problem in problems:
            print("PROBLEM:", problem)
        return 1 if problems else 0
    finally:
        if proc is not None:
            stop_server(proc)
        stop_server(nginx)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
