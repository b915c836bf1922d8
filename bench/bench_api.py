"""Throughput, latency and server CPU per request of a few devpi-twisted API calls.

Run by hand (never in CI) with the interpreter of the venv devpi-twisted is
installed in (non-editable, so the twistd plugin is in site-packages)::

    VENV/bin/python bench/bench_api.py [--duration 10] [--concurrency 1,10]

It starts a throw-away server on 127.0.0.1, creates alice and alice/dev, then
loads each case with ``wrk`` (one thread, keep-alive connections) or, without
wrk, with a Python client in threads. Server CPU is utime+stime of the twistd
process (all its threads) from /proc/<pid>/stat, before and after each run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
USER, PASSWORD, INDEX = "alice", "secret", "dev"
START_TIMEOUT = 180.0  # key derivation (argon2, 512 MiB) at start-up takes a while

# wrk script: method/body/headers come from the environment; done() prints one JSON line.
WRK_LUA = r"""
wrk.method = os.getenv("BENCH_METHOD")
local body = os.getenv("BENCH_BODY")
if body ~= "" then wrk.body = body end
for line in string.gmatch(os.getenv("BENCH_HEADERS"), "[^\n]+") do
  local k, v = string.match(line, "^([^:]+): (.*)$")
  wrk.headers[k] = v
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"errors": %d, "non2xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime (14), stime (15)


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    serverdir = workdir / "server"
    subprocess.run([str(BIN / "devpi-twisted"), "init", "--serverdir", str(serverdir),
                    "--no-root-pypi"], check=True, stdout=subprocess.DEVNULL)
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(serverdir),
         "--host", "127.0.0.1", "--port", "0"],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    log.close()
    listening = serverdir / ".listening"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if listening.exists():
                try:
                    return proc, json.loads(listening.read_text())[0]
                except (ValueError, IndexError):
                    pass  # written but not complete yet
            time.sleep(0.1)
        tail = (workdir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"server did not start (exit code {proc.poll()}):\n{tail}")
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def auth_header(token: str) -> str:
    return base64.b64encode(f"{USER}:{token}".encode()).decode()


def setup(base: str) -> str:
    """Creates alice and alice/dev; returns alice's login token."""
    status, _ = request(base, "PUT", f"/{USER}", json.dumps({"password": PASSWORD}).encode(),
                        {"Content-Type": "application/json"})
    assert status == 201, f"PUT /{USER}: {status}"
    status, body = request(base, "POST", "/+login",
                           json.dumps({"user": USER, "password": PASSWORD}).encode())
    assert status == 200, f"POST /+login: {status}"
    token = json.loads(body)["result"]["password"]
    status, body = request(base, "PUT", f"/{USER}/{INDEX}", b"{}",
                           {"Content-Type": "application/json",
                            "X-Devpi-Auth": auth_header(token)})
    assert status == 200, f"PUT /{USER}/{INDEX}: {status} {body[:200]!r}"
    return token


def run_wrk(base: str, case: dict, connections: int, duration: int, lua: Path) -> dict:
    env = dict(os.environ, BENCH_METHOD=case["method"], BENCH_BODY=case["body"].decode(),
               BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in case["headers"].items()))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "30s",
           "--latency", "-s", str(lua), base + case["path"]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                         timeout=duration + 60).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    r = json.loads(line[6:])
    return {"requests": r["requests"], "seconds": r["duration_us"] / 1e6,
            "p50": r["p50_us"] / 1e3, "p99": r["p99_us"] / 1e3,
            "errors": r["errors"], "non2xx": r["non2xx"]}


def run_python(base: str, case: dict, connections: int, duration: float,
               max_requests: int = 1_000_000) -> dict:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    counts = {"errors": 0, "non2xx": 0}
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + duration

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        errors = non2xx = 0
        while time.monotonic() < deadline and len(mine) < max_requests // connections:
            t0 = time.perf_counter()
            try:
                conn.request(case["method"], case["path"], body=case["body"] or None,
                             headers=case["headers"])
                response = conn.getresponse()
                response.read()
                non2xx += not 200 <= response.status < 400
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)
            counts["errors"] += errors
            counts["non2xx"] += non2xx

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0.0

    return {"requests": len(latencies), "seconds": elapsed, "p50": pct(0.50), "p99": pct(0.99),
            **counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--concurrency", default="1,10",
                        help="comma-separated numbers of connections (1,10)")
    parser.add_argument("--python-client", action="store_true",
                        help="use the Python client even if wrk is installed")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    wrk = None if args.python_client else shutil.which("wrk")

    workdir = Path(tempfile.mkdtemp(prefix="devpi-bench-"))
    proc = None
    try:
        proc, base = start_server(workdir)
        token = setup(base)
        json_hdr = {"Accept": "application/json"}
        cases = [
            {"name": f"GET /{USER}/{INDEX}", "method": "GET", "path": f"/{USER}/{INDEX}",
             "body": b"", "headers": json_hdr},
            {"name": "POST /+login", "method": "POST", "path": "/+login",
             "body": json.dumps({"user": USER, "password": PASSWORD}).encode(),
             "headers": {**json_hdr, "Content-Type": "application/json"}},
            {"name": "GET /+api (token)", "method": "GET", "path": "/+api", "body": b"",
             "headers": {**json_hdr, "X-Devpi-Auth": auth_header(token)}},
        ]
        # Each case must succeed once before it is measured (and /+api must see alice).
        for case in cases:
            status, body = request(base, case["method"], case["path"], case["body"] or None,
                                   case["headers"])
            assert status == 200, f"{case['name']}: {status} {body[:200]!r}"
        authstatus = json.loads(request(base, "GET", "/+api", None, cases[2]["headers"])[1])
        assert authstatus["result"]["authstatus"][0] == "ok", authstatus

        if wrk:
            lua = workdir / "bench.lua"
            lua.write_text(WRK_LUA)
            version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
            generator = f"wrk ({version.split()[1] if version else '?'}, 1 thread, keep-alive)"
        else:
            generator = "Python http.client (threads, keep-alive) -- it competes for the CPU"
        print(f"load generator: {generator}")
        print(f"server: twistd pid {proc.pid}, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, {args.duration:g} s per run, server {base}")
        header = (f"{'case':<20} {'conns':>5} {'requests':>9} {'req/s':>9} {'p50 ms':>9} "
                  f"{'p99 ms':>9} {'CPU ms/req':>10} {'srv CPU%':>8} {'errors':>6}")
        print(header)
        print("-" * len(header))
        for case in cases:
            for connections in levels:
                cpu0 = cpu_seconds(proc.pid)
                if wrk:
                    r = run_wrk(base, case, connections, args.duration, lua)
                else:
                    r = run_python(base, case, connections, args.duration)
                cpu = cpu_seconds(proc.pid) - cpu0
                n = r["requests"]
                print(f"{case['name']:<20} {connections:>5} {n:>9} {n / r['seconds']:>9.1f} "
                      f"{r['p50']:>9.2f} {r['p99']:>9.2f} "
                      f"{(cpu * 1e3 / n if n else float('nan')):>10.3f} "
                      f"{100 * cpu / r['seconds']:>8.0f} {r['errors'] + r['non2xx']:>6}",
                      flush=True)
        print("CPU ms/req = server utime+stime (all threads) / requests; "
              "srv CPU% = that CPU / wall time (100% = one core)")
        return 0
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
