"""Throughput, latency and server CPU per request of a few devpi-twisted API calls.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_api.py [--duration 10] [--concurrency 1,10]``.
It starts a throw-away server on 127.0.0.1 and loads each case with ``wrk`` (else a
Python client). Server CPU is utime+stime of the twistd process from /proc/<pid>/stat.
The server caches successful password checks, so repeated logins as alice are "login
cached"; "login argon2" logs in as a fresh user (from a pool created with a
precomputed hash) on every request, so each one pays the argon2 verification.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
USER, PASSWORD, INDEX = "alice", "secret", "dev"
POOL_RATE = 20  # login argon2: users per second of a run (~7/s is the ceiling on 2 cores)
START_TIMEOUT = 180.0  # deriving keys from the secret (argon2, 512 MiB) takes a while

# Method/body/headers come from the environment; with BENCH_POOL each request
# logs in as the next pool user. done() prints one JSON line for the script.
WRK_LUA = r"""
wrk.method = os.getenv("BENCH_METHOD")
local body = os.getenv("BENCH_BODY")
if body ~= "" then wrk.body = body end
for line in string.gmatch(os.getenv("BENCH_HEADERS"), "[^\n]+") do
  local k, v = string.match(line, "^([^:]+): (.*)$")
  wrk.headers[k] = v
end
local pool, first, count = os.getenv("BENCH_POOL"), tonumber(os.getenv("BENCH_FIRST")),
                           tonumber(os.getenv("BENCH_COUNT"))
local n = 0
if pool ~= "" then
  request = function()
    local user = pool .. (first + n % count)
    n = n + 1
    return wrk.format(nil, nil, nil, string.format(os.getenv("BENCH_POOL_BODY"), user))
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, ' ..
    '"p99_us": %d, "errors": %d, "non2xx": %d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout,
    e.status))
end
"""


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def wait_idle(pid: int, timeout: float = 60.0, cpu: Callable[[int], float] = cpu_seconds) -> None:
    """Until the server's CPU (``cpu(pid)``) stays (nearly) still: it finishes the
    requests and writes left in flight."""
    deadline, last = time.monotonic() + timeout, cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = cpu(pid)
        if now - last <= 0.01:
            return
        last = now


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, expect: int = 200) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != expect:
        raise RuntimeError(f"{method} {path}: HTTP {response.status}, not {expect}: {data[:300]!r}")
    return data


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    serverdir = workdir / "server"
    subprocess.run([str(BIN / "devpi-twisted"), "init", "--serverdir", str(serverdir),
                    "--no-root-pypi"], check=True, stdout=subprocess.DEVNULL)
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(serverdir),
             "--host", "127.0.0.1", "--port", "0"], stdout=log, stderr=subprocess.STDOUT,
            cwd=workdir)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                return proc, json.loads((serverdir / ".listening").read_text())[0]
            except (OSError, ValueError, IndexError):
                time.sleep(0.1)  # not there, or not complete yet
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


def auth_header(user: str, token: str) -> str:
    return base64.b64encode(f"{user}:{token}".encode()).decode()


def setup(base: str, pool_size: int) -> str:
    """Creates alice, alice/dev and the login pool users; returns alice's login token."""
    from devpi_twisted.model.passwords import hash_password  # the server's own parameters

    put = {"Content-Type": "application/json"}
    request(base, "PUT", f"/{USER}", json.dumps({"password": PASSWORD}).encode(), put, 201)
    login = json.dumps({"user": USER, "password": PASSWORD}).encode()
    token = json.loads(request(base, "POST", "/+login", login))["result"]["password"]
    auth = {**put, "X-Devpi-Auth": auth_header(USER, token)}
    request(base, "PUT", f"/{USER}/{INDEX}", b"{}", auth)
    pwhash = json.dumps({"pwhash": hash_password(PASSWORD)}).encode()
    for i in range(pool_size):
        request(base, "PUT", f"/pool{i}", pwhash, put, 201)
    return token


def run_wrk(base: str, case: dict, conns: int, duration: int, lua: Path, pool: range) -> dict:
    env = dict(os.environ, BENCH_METHOD=case["method"], BENCH_BODY=case["body"].decode(),
               BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in case["headers"].items()),
               BENCH_POOL="pool" if case.get("pool") else "", BENCH_FIRST=str(pool.start),
               BENCH_COUNT=str(len(pool)), BENCH_POOL_BODY=case.get("pool", ""))
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "30s", "--latency",
           "-s", str(lua), base + case["path"]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                         timeout=duration + 60).stdout
    r = json.loads(next(l for l in out.splitlines() if l.startswith("BENCH "))[6:])
    # At the end every connection has a request in flight, which the server still serves.
    return {"requests": r["requests"], "started": r["requests"] + conns,
            "seconds": r["duration_us"] / 1e6, "p50": r["p50_us"] / 1e3,
            "p99": r["p99_us"] / 1e3, "errors": r["errors"] + r["non2xx"]}


def run_python(base: str, case: dict, conns: int, duration: int, pool: range) -> dict:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []  # list.append is thread-safe
    errors: list[int] = []
    counter, deadline = itertools.count(), time.monotonic() + duration

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for _ in range(1_000_000):  # bounded by count as well as by time
            if time.monotonic() >= deadline:
                break
            body = case["body"]
            if case.get("pool"):
                body = (case["pool"] % f"pool{pool[next(counter) % len(pool)]}").encode()
            t0 = time.perf_counter()
            try:
                conn.request(case["method"], case["path"], body=body or None,
                             headers=case["headers"])
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors.append(1)
                conn.close()
                continue
            latencies.append(time.perf_counter() - t0)
            if not 200 <= response.status < 400:
                errors.append(1)
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, lat = time.monotonic() - start, sorted(latencies) or [0.0]
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3  # noqa: E731
    return {"requests": len(latencies), "started": len(latencies), "seconds": elapsed,
            "p50": pct(0.5), "p99": pct(0.99), "errors": len(errors)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--concurrency", default="1,10", help="connections, comma-separated")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    wrk = None if args.python_client else shutil.which("wrk")
    slice_size = POOL_RATE * args.duration + max(levels)

    workdir = Path(tempfile.mkdtemp(prefix="devpi-bench-"))
    proc = None
    try:
        proc, base = start_server(workdir)
        token = setup(base, slice_size * len(levels))
        accept = {"Accept": "application/json"}
        post = {**accept, "Content-Type": "application/json"}
        login = json.dumps({"user": USER, "password": PASSWORD})
        cases = [
            {"name": f"GET /{USER}/{INDEX}", "method": "GET", "path": f"/{USER}/{INDEX}",
             "body": b"", "headers": accept},
            {"name": "login cached", "method": "POST", "path": "/+login",
             "body": login.encode(), "headers": post},
            {"name": "login argon2", "method": "POST", "path": "/+login",
             "body": login.encode(), "headers": post,
             "pool": '{"user": "%s", "password": "' + PASSWORD + '"}'},
            {"name": "GET /+api (token)", "method": "GET", "path": "/+api", "body": b"",
             "headers": {**accept, "X-Devpi-Auth": auth_header(USER, token)}},
        ]
        # The token must authenticate, or /+api would measure the anonymous path.
        api = json.loads(request(base, "GET", "/+api", None, cases[3]["headers"]))
        assert api["result"]["authstatus"][0] == "ok", api["result"]["authstatus"]

        if wrk:
            lua = workdir / "bench.lua"
            lua.write_text(WRK_LUA)
            version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
            generator = f"{version.split(' [')[0]} (1 thread, keep-alive)"
        else:
            generator = "Python http.client in threads (keep-alive); it competes for the CPU"
        print(f"load generator: {generator}")
        print(f"server: twistd pid {proc.pid}, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, {args.duration} s per run, {base}")
        head = (f"{'case':<18} {'conns':>5} {'requests':>8} {'req/s':>8} {'p50 ms':>8} "
                f"{'p99 ms':>8} {'CPU ms/req':>10} {'srv CPU%':>8} {'errors':>6}")
        print(f"{head}\n{'-' * len(head)}")
        wait_idle(proc.pid)
        for case in cases:
            for i, conns in enumerate(levels):
                pool = range(i * slice_size, (i + 1) * slice_size)  # fresh users per run
                cpu0 = cpu_seconds(proc.pid)
                if wrk:
                    r = run_wrk(base, case, conns, args.duration, lua, pool)
                else:
                    r = run_python(base, case, conns, args.duration, pool)
                cpu_run = cpu_seconds(proc.pid) - cpu0
                wait_idle(proc.pid)
                cpu, n = cpu_seconds(proc.pid) - cpu0, r["requests"]
                print(f"{case['name']:<18} {conns:>5} {n:>8} {n / r['seconds']:>8.1f} "
                      f"{r['p50']:>8.2f} {r['p99']:>8.2f} {cpu * 1e3 / r['started']:>10.3f} "
                      f"{100 * cpu_run / r['seconds']:>8.0f} {r['errors']:>6}", flush=True)
                if case.get("pool") and r["started"] > len(pool):
                    print(f"  WARNING: {r['started']} logins > {len(pool)} pool users: "
                          "some hit the cache")
        print("CPU ms/req: server utime+stime (all threads) from the start of a run until it is\n"
              "  idle again / requests started (completed + one in flight per wrk connection)\n"
              "srv CPU%: server CPU during the run / its wall time (100% = one core)")
        return 0
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
