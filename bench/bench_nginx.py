"""20 MB downloads through the nginx site of ``devpi-twisted gen-config`` (the daemon
checks the file and answers X-Accel-Redirect, nginx sends the bytes) against the
same nginx serving the same file straight from ``<serverdir>/+files``.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_nginx.py [--duration 10] [--conns 4]``.
One nginx (1 worker, sendfile, the generated site plus a plain static server on a
second port), one daemon on sqlite; wrk with keep-alive connections, 8 runs of
each alternating; the figure is the median of the runs' ratios (the machine may be
shared). With 2+ CPUs nginx and the daemon run on CPU 0, wrk on CPU 1.
Target: MB/s through the generated site >= 0.95 x MB/s of nginx alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import request, stop_server  # noqa: E402
from bench_index import (  # noqa: E402
    JSON_ACCEPT, SERVER_CPU, WRK_LUA, combine, measure, pin, row, run_wrk, upload_form,
)
from bench_storage import BIN, start_server, wait_idle  # noqa: E402
from tests.nginx import Nginx, free_port  # noqa: E402

SIZE = 20 << 20
TARGET = 0.95


def setup(base: str) -> str:
    """alice/dev with one 20 MB wheel; returns the file's URL path."""
    put = {"Content-Type": "application/json", "Accept": "application/json"}
    request(base, "PUT", "/alice", json.dumps({"password": "secret"}).encode(), put, 201)
    login = json.dumps({"user": "alice", "password": "secret"}).encode()
    token = json.loads(request(base, "POST", "/+login", login, put))["result"]["password"]
    from bench_api import auth_header
    auth = {"X-Devpi-Auth": auth_header("alice", token)}
    request(base, "PUT", "/alice/dev", b"{}", {**put, **auth})
    body, ctype = upload_form("benchbig", "1.0", "benchbig-1.0-py3-none-any.whl", os.urandom(SIZE))
    request(base, "POST", "/alice/dev/", body, {**auth, "Content-Type": ctype})
    page = "/alice/dev/+simple/benchbig/"
    item = json.loads(request(base, "GET", page, None, JSON_ACCEPT))["files"][0]
    return urllib.parse.urljoin(page, item["url"]).split("#")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--rounds", type=int, default=8, help="runs of each, alternating (8)")
    parser.add_argument("--conns", type=int, default=4, help="wrk connections (4)")
    parser.add_argument("--no-pin", action="store_true",
                        help="leave the processes to the scheduler (no taskset)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    proc, base = start_server(work, [], 0)
    nginx_proc = None
    try:
        path = setup(base)
        serverdir = work / "server"
        port, direct_port = free_port(), free_port()
        subprocess.run([str(BIN / "devpi-twisted"), "gen-config", "--serverdir", str(serverdir),
                        "--port", base.rsplit(":", 1)[1], "--outside-url",
                        f"http://127.0.0.1:{port}"], cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
        sites = work / "sites.conf"
        sites.write_text(f"include {work / 'gen-config' / 'nginx-devpi.conf'};\n"
                         f"server {{ listen 127.0.0.1:{direct_port}; keepalive_requests 1000000;\n"
                         f"  location / {{ root {serverdir / '+files'}; }} }}\n")
        nginx = Nginx(work / "nginx", sites)
        checked = nginx.check()
        assert checked.returncode == 0, checked.stderr
        server_cpu = [] if args.no_pin else SERVER_CPU
        nginx_proc = subprocess.Popen([*server_cpu, *nginx._command()], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT)
        through, direct = f"http://127.0.0.1:{port}{path}", f"http://127.0.0.1:{direct_port}{path}"
        front, plain = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{direct_port}"
        for _ in range(100):  # bounded: 10 s
            try:
                request(front, "GET", "/+api")
                break
            except (OSError, RuntimeError):
                time.sleep(0.1)
        for server in (front, plain):
            assert len(request(server, "GET", path)) == SIZE, server
        if not args.no_pin:
            pin(proc.pid, "0")
        wait_idle(proc.pid)
        print(f"== 20 MB downloads, {args.conns} connections, {args.duration} s per run, "
              f"{args.rounds} rounds each; daemon pid {proc.pid}, nginx pid {nginx_proc.pid}")
        head = (f"{'case':<22} {'conns':>5} {'req/s':>8} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'CPU ms/req':>10} {'db ms/req':>9} {'errors':>6}  {'target':<16} {'figure':<10}")
        print(f"{head}\n{'-' * (len(head) + 4)}", flush=True)
        ours, theirs = [], []
        for _ in range(args.rounds):  # alternating, so drift in the machine hits both alike
            ours.append(measure(proc.pid, None, lambda: run_wrk(through, {}, args.conns,
                                                                args.duration, lua)))
            theirs.append(measure(nginx_proc.pid, None, lambda: run_wrk(direct, {}, args.conns,
                                                                        args.duration, lua)))
        ours_all, theirs_all = combine(ours), combine(theirs)
        row("gen-config site", args.conns, ours_all, "", "", None)
        row("nginx alone", args.conns, theirs_all, "", "", None)
        # the median of each round's ratio: a burst of other load on the machine during
        # one run moves one pair, not the figure
        ratios = sorted(a["mbs"] / max(b["mbs"], 1e-9) for a, b in zip(ours, theirs))
        ratio = statistics.median(ratios)
        total = ours_all["mbs"] / max(theirs_all["mbs"], 1e-9)
        row("  site/nginx (median)", "", None, f">= {TARGET}", f"{ratio:.3f}", ratio >= TARGET)
        print(f"  (ratio of the mean MB/s: {total:.3f}; per round: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
        pairs = zip(ours_all["rounds"], theirs_all["rounds"])
        rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in pairs)
        print(f"  (rounds: {rounds} MB/s; CPU of the daemon per download: {ours_all['cpu']:.3f} ms)")
        errors = ours_all["errors"] + ours_all["non2xx"] + theirs_all["errors"] + theirs_all["non2xx"]
        return 0 if ratio >= TARGET and not errors else 1
    finally:
        if nginx_proc is not None:
            stop_server(nginx_proc)
        stop_server(proc)


if __name__ == "__main__":
    raise SystemExit(main())
