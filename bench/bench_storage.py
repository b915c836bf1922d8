"""Index edits and reads per second on sqlite and PostgreSQL, with and without a worker.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_storage.py [--duration 10] [--setups a,b]``.
Set-ups: (a) sqlite, (b) PostgreSQL, (c) PostgreSQL + 1 worker, (d) sqlite + 1 worker,
each on a fresh server directory (and database, on a throwaway cluster from tests/pg.py).
Writes: wrk PATCHes /alice/dev0..dev7, a title unique per request, at 1 and 8
connections for --duration seconds, then lets the writes in flight finish (so that none
is cut off); the server's serial must grow by exactly the 2xx answers. Reads: GET
/alice/dev0 at 10 connections. Server CPU: twistd and its children (the workers); db
CPU: the postmaster and its children. wrk runs on the same 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import bench_api  # noqa: E402
from bench_api import START_TIMEOUT, auth_header, request, stop_server  # noqa: E402

BIN = Path(sys.executable).parent
USER, PASSWORD, INDEXES = "alice", "secret", 8
DRAIN_SECONDS = 5  # after the write window, for the last writes to be answered
SETUPS = {"a": ("sqlite", 0), "b": ("postgres", 0), "c": ("postgres", 1), "d": ("sqlite", 1)}

# One wrk thread; BENCH_AUTH set: writes for BENCH_SECONDS (LuaJIT ffi clock), then delay()
# parks each connection once answered and the thread stops when none is in flight.
WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef("struct bench_ts { long s; long ns; }; int clock_gettime(int, struct bench_ts *);")
local ts = ffi.new("struct bench_ts")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts.s) + tonumber(ts.ns) / 1e9 end
local auth, tag = os.getenv("BENCH_AUTH"), os.getenv("BENCH_TAG")
local stop_at = now() + tonumber(os.getenv("BENCH_SECONDS"))
-- globals, for thread:get in done(); wrk calls request() once more to verify the script
n, answered, in_time, bad = -1, 0, 0, 0
wrk.headers["Accept"] = "application/json"
if auth ~= "" then
  wrk.method = "PATCH"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Devpi-Auth"] = auth
  request = function() n = n + 1
    return wrk.format(nil, "/alice/dev" .. (n % 8), nil, string.format('["title=%s-%d"]', tag, n)) end
  delay = function() return now() < stop_at and 0 or 3600000 end
  response = function(status, headers, body)
    answered = answered + 1
    if status < 200 or status > 299 then bad = bad + 1 end
    if now() < stop_at then in_time = in_time + 1 elseif answered == n then wrk.thread:stop() end
  end
else
  request = function() n = n + 1; return wrk.format() end
end
local threads = {}; setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local t, e = threads[1], summary.errors
  io.write(string.format('BENCH {"requests": %d, "sent": %d, "answered": %d, "in_time": %d, ' ..
    '"bad": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "non2xx": %d}\n',
    summary.requests, t:get("n"), t:get("answered"), t:get("in_time"), t:get("bad"),
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _stat(pid: int) -> list[str]:  # fields[0] is field 3 (state), [1] ppid, [11:15] CPU
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def tree_cpu(pid: int) -> float:
    """utime+stime+cutime+cstime of pid (reaped children) plus its live descendants."""
    try:
        own = sum(int(x) for x in _stat(pid)[11:15]) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0
    return own + sum(tree_cpu(child) for child in children(pid))


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat(int(stat.parent.name))[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass  # gone meanwhile
    return found


def stop_all(proc: subprocess.Popen, serverdir: Path) -> list[str]:
    """SIGTERM to the main process, which stops its workers; kills any that outlive it."""
    workers, left = children(proc.pid), []
    stop_server(proc)
    for pid in workers:
        with contextlib.suppress(OSError):  # the cmdline check guards against a reused pid
            if str(serverdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
                left.append(f"worker {pid} outlived the main process; killed")
    return left


def wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Until the CPU of the server and its workers stays (nearly) still."""
    bench_api.wait_idle(pid, timeout, tree_cpu)


def status(base: str) -> dict:
    return json.loads(request(base, "GET", "/+status", None, {"Accept": "application/json"}))["result"]


def settled_serial(base: str, pid: int) -> tuple[int, int]:
    """(max, min) of a few /+status reads: with a worker, either process answers."""
    wait_idle(pid)
    time.sleep(1.2)  # processes see each other's commits within a poll interval (1 s)
    seen = [status(base)["serial"] for _ in range(12)]
    return max(seen), min(seen)


def start_server(workdir: Path, storage: list[str], workers: int) -> tuple[subprocess.Popen, str]:
    serverdir = workdir / "server"
    subprocess.run([str(BIN / "devpi-twisted"), "init", "--serverdir", str(serverdir),
                    "--no-root-pypi", *storage], check=True, stdout=subprocess.DEVNULL)
    extra = ["--workers", str(workers)] if workers else []
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(serverdir),
             "--host", "127.0.0.1", "--port", "0", *storage, *extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline, base, pids = time.monotonic() + START_TIMEOUT, None, set()
        while time.monotonic() < deadline and proc.poll() is None and len(pids) <= workers:
            try:  # .listening first, then until every process has answered once
                base = base or json.loads((serverdir / ".listening").read_text())[0]
                pids.add(status(base)["process"]["pid"])
                time.sleep(0.05)
            except (OSError, ValueError, IndexError, RuntimeError):
                time.sleep(0.1)  # not there, or not complete yet
        if base and len(pids) > workers:
            return proc, base
        tail = (workdir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"server did not start (exit code {proc.poll()}):\n{tail}")
    except BaseException:
        stop_server(proc)
        raise


def setup_user(base: str) -> str:
    """Creates alice and alice/dev0..dev7; returns the X-Devpi-Auth value."""
    put = {"Content-Type": "application/json", "Accept": "application/json"}
    request(base, "PUT", f"/{USER}", json.dumps({"password": PASSWORD}).encode(), put, 201)
    login = json.dumps({"user": USER, "password": PASSWORD}).encode()
    token = json.loads(request(base, "POST", "/+login", login, put))["result"]["password"]
    auth = auth_header(USER, token)
    for i in range(INDEXES):
        request(base, "PUT", f"/{USER}/dev{i}", b"{}", {**put, "X-Devpi-Auth": auth})
    return auth


def run_wrk(url: str, conns: int, duration: int, lua: Path, auth: str, tag: str) -> dict:
    env = dict(os.environ, BENCH_AUTH=auth, BENCH_TAG=tag, BENCH_SECONDS=str(duration))
    wrk_seconds = duration + (DRAIN_SECONDS if auth else 0)  # wrk sleeps all of it
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{wrk_seconds}s", "--timeout", "30s", "--latency",
           "-s", str(lua), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                         timeout=wrk_seconds + 60).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("BENCH "))[6:])


def measure(name: str, base: str, pid: int, postmaster: int | None, conns: int,
            duration: int, lua: Path, auth: str) -> list[str]:
    """One wrk run (writes if auth, else reads): prints its row; returns problems found."""
    before = settled_serial(base, pid)[0] if auth else 0
    cpu0, db0 = tree_cpu(pid), tree_cpu(postmaster) if postmaster else 0.0
    r = run_wrk(base if auth else f"{base}/{USER}/dev0", conns, duration, lua, auth,
                f"{name[1]}{conns}-{time.time_ns()}")
    wait_idle(pid)
    cpu, db = tree_cpu(pid) - cpu0, tree_cpu(postmaster) - db0 if postmaster else None
    if auth:  # answers within the window / its length; CPU per write (all were answered)
        done, rate, per, non2xx = r["answered"], r["in_time"] / duration, r["sent"], r["bad"]
    else:  # as wrk counts them; CPU per request sent (incl. one in flight per connection)
        done, rate, per = r["requests"], r["requests"] / (r["duration_us"] / 1e6), r["sent"]
        non2xx = r["non2xx"]
    db_col = f"{db * 1e3 / per:>9.3f}" if db is not None else f"{'-':>9}"
    print(f"{name:<22} {'write' if auth else 'read':<5} {conns:>5} {done:>8} {rate:>8.1f} "
          f"{r['p50_us'] / 1e3:>8.2f} {r['p99_us'] / 1e3:>8.2f} {cpu * 1e3 / per:>10.3f} "
          f"{db_col} {non2xx:>6} {r['errors']:>6}", flush=True)
    problems = [f"{name} c={conns}: {non2xx} non-2xx, {r['errors']} errors"] * bool(non2xx or r["errors"])
    if auth:
        after, low = settled_serial(base, pid)
        ok, unanswered = r["answered"] - r["bad"], r["sent"] - r["answered"]
        good = after - before == ok and not r["bad"] and not unanswered
        check = (f"serial {before} -> {after}: +{after - before}; wrk: {ok} 2xx, {r['bad']} "
                 f"other, {unanswered} unanswered")
        print(f"  {check}: {'OK' if good else 'MISMATCH'}"
              + (f"; one process still at {low}" if low != after else ""), flush=True)
        problems += [f"{name} write c={conns}: {check}"] * (not good)
        problems += [f"{name} c={conns}: a process at serial {low} > 1 s later"] * (low != after)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--setups", default="a,b,c,d", help="a,b,c,d (see the docstring)")
    args = parser.parse_args()
    chosen = [s for s in args.setups.split(",") if s]
    if unknown := [s for s in chosen if s not in SETUPS]:
        parser.error(f"unknown set-ups: {unknown}")
    from tests.pg import PgCluster

    workdir = Path(tempfile.mkdtemp(prefix="devpi-bench-storage-"))
    lua = workdir / "bench.lua"
    lua.write_text(WRK_LUA)
    cluster, problems = None, []
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    print(f"load generator: {version.split(' [')[0]} (1 thread, keep-alive) on the same machine")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.duration} s per run")
    head = (f"{'set-up':<22} {'test':<5} {'conns':>5} {'requests':>8} {'req/s':>8} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'srv ms/req':>10} {'db ms/req':>9} {'non2xx':>6} {'errors':>6}")
    print(f"{head}\n{'-' * len(head)}", flush=True)
    try:
        for key in chosen:
            backend, workers = SETUPS[key]
            name = f"({key}) {backend}" + (f" +{workers} worker" if workers else "")
            storage, postmaster = [], None
            if backend == "postgres":
                if cluster is None:
                    cluster = PgCluster()  # stop() removes it even after a failed start
                    cluster.start()
                storage = ["--storage", cluster.storage_option(cluster.create_database())]
                postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
            setdir = workdir / key
            setdir.mkdir()
            proc, base = start_server(setdir, storage, workers)
            try:
                auth = setup_user(base)
                wait_idle(proc.pid)
                for conns, key_ in ((1, auth), (8, auth), (10, "")):
                    problems += measure(name, base, proc.pid, postmaster, conns, args.duration,
                                        lua, key_)
                if len(children(proc.pid)) != workers:  # e.g. a worker died and was restarted
                    problems.append(f"{name}: {len(children(proc.pid))} children, not {workers}")
            finally:
                problems += stop_all(proc, setdir / "server")
            log = (setdir / "server.log").read_text(errors="replace").splitlines()
            bad = [line for line in log if any(w in line for w in ("Traceback", "Unhandled", "rror"))]
            problems += [f"{name} log: {len(bad)} error lines, e.g. {bad[0][:200]!r}"] if bad else []
        print("write req/s: 2xx answers within the window / its length; reads: as wrk counts\n"
              "srv ms/req: CPU of twistd + its children (workers) from the start of a run until\n"
              "  idle again / requests sent; db ms/req: the same for the postmaster + children")
        for problem in problems:
            print("PROBLEM:", problem)
        return 1 if problems else 0
    finally:
        if cluster is not None:
            try:
                cluster.stop()
            except RuntimeError as e:
                print(f"stopping PostgreSQL: {e}")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
