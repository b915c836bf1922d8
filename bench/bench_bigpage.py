"""The simple page of a project with 5,000 files, warm (issue 25 item 4).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_bigpage.py [--files 5000] [--duration 5]``.
A fresh server (sqlite) gets ``--files`` wheels of one project uploaded to root/big
(one version each, over one keep-alive connection), then wrk (1 thread, 4 connections)
loads /root/big/+simple/bigproj/ as pip asks for it (JSON) and as a browser (HTML),
each without and with compression (gzip): server CPU per page (target <= 2 ms), bytes
per page, p50. ``--rounds`` runs of each, the figures of each shown.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import request, stop_server  # noqa: E402
from bench_index import WRK_LUA, measure, pin, run_wrk, upload_form  # noqa: E402
from bench_lists import root_auth  # noqa: E402
from bench_storage import start_server, wait_idle  # noqa: E402
from tests.support import make_wheel  # noqa: E402

ACCEPT = {"json": {"User-Agent": "pip/24.0", "Accept": "application/vnd.pypi.simple.v1+json"},
          "html": {"Accept": "text/html"}}


def upload_all(base: str, auth: str, files: int, work: Path) -> float:
    """Uploads ``files`` wheels of bigproj to root/big; returns the seconds it took."""
    wheel = make_wheel(work, "bigproj", "1.0")
    data = wheel.read_bytes()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    started = time.perf_counter()
    for i in range(files):
        version = f"1.{i}"
        body, ctype = upload_form("bigproj", version, f"bigproj-{version}-py3-none-any.whl", data)
        conn.request("POST", "/root/big/", body=body, headers={"Content-Type": ctype,
                                                              "X-Devpi-Auth": auth})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"upload {i}: HTTP {response.status}")
    conn.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000, help="files of the project (5000)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per case (3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-bigpage-"))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    proc = None
    problems = []
    try:
        proc, base = start_server(work, [], 0)
        pin(proc.pid, "0")
        auth = root_auth(base)
        request(base, "PUT", "/root/big", b"{}", auth)
        seconds = upload_all(base, auth["X-Devpi-Auth"], args.files, work)
        print(f"{args.files} files uploaded in {seconds:.1f} s")
        page = f"{base}/root/big/+simple/bigproj/"
        head = f"{'case':<14} {'CPU ms/page (rounds)':<26} {'KB/page':>8} {'p50 ms':>8} {'req/s':>8}"
        print(f"{head}\n{'-' * len(head)}", flush=True)
        for fmt, accept in ACCEPT.items():
            for coding in ("identity", "gzip"):
                headers = {**accept, "Accept-Encoding": coding}
                files = request(base, "GET", page[len(base):], None, headers)
                wait_idle(proc.pid)
                runs = [measure(proc.pid, None, lambda: run_wrk(page, headers, 4, args.duration, lua))
                        for _ in range(args.rounds)]
                cpu = [r["cpu"] for r in runs]
                last = runs[-1]
                kb = last["mbs"] * 1e3 / max(last["rate"], 1e-9)
                print(f"{fmt + ' ' + coding:<14} {' '.join(f'{c:.3f}' for c in cpu):<26} {kb:>8.0f} "
                      f"{last['p50']:>8.2f} {last['rate']:>8.1f}", flush=True)
                if min(cpu) > 2:
                    problems.append(f"{fmt} {coding}: {min(cpu):.2f} ms CPU per page > 2")
                if any(r["errors"] or r["non2xx"] for r in runs) or not files:
                    problems.append(f"{fmt} {coding}: errors")
        print("\nCPU ms/page: server utime+stime from a run's start until idle / requests started")
        for problem in problems:
            print("PROBLEM:", problem)
        return 1 if problems else 0
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
