"""Simple pages, file downloads (against nginx) and uploads of a private index.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_index.py [--duration 10] [--postgres] [--devpi6]``
(--devpi6: the same cases, but the big index, against devpi-server 6 on its own storage).
On a fresh server (sqlite; with --postgres also on a throwaway PostgreSQL cluster from
tests/pg.py): alice/top inherits alice/base3 -> base2 -> base1, with 20 small wheels of
proj0..proj4 spread over the four. wrk (1 thread) loads /alice/top/+simple/proj0/ (JSON
and HTML, as pip asks, 10 connections) and downloads a 1 MB and a 20 MB file from
alice/base1 (4 connections), the same files also from nginx (1 worker, sendfile) on
127.0.0.1, in 3 alternating rounds each. With 2+ CPUs both servers are pinned to CPU 0
and wrk to CPU 1 (taskset); the upload client is not pinned. ``--only simple download upload`` picks cases. Uploads: one Python thread (--upload-conns N: N), each one keep-alive connection, one upload after another as twine sends them, POST pre-built upload forms,
a new version each of one project per index (so later uploads find more versions), to fresh
indexes, with X-Devpi-Auth (token) or Basic auth (password, as twine sends it); then
with the token into alice/up-large after ``--large`` (100,000) projects were written to it
straight through storage while the server runs: its p50 latency against the empty
index's (target: within 1.2x).
Server CPU: utime+stime of twistd (nginx: master + worker) from a run's start until idle.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from base64 import b64encode
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import auth_header, request, stop_server  # noqa: E402
from bench_storage import start_server, tree_cpu, wait_idle  # noqa: E402
from devpi_twisted.storage.board import SerialBoard  # noqa: E402
from devpi_twisted.storage.executor import InlineExecutor  # noqa: E402
from devpi_twisted.storage.postgres import BlockingPostgresStorage  # noqa: E402
from devpi_twisted.storage.sqlite import SqliteStorage  # noqa: E402
from tests.pg import PgCluster, free_port  # noqa: E402
from tests.support import make_wheel, result_of  # noqa: E402

USER, PASSWORD = "alice", "secret"
CHAIN = [("base1", []), ("base2", ["alice/base1"]), ("base3", ["alice/base2"]),
         ("top", ["alice/base3"])]
PROJECTS, BIG = 5, {"1 MB": ("big1", 1 << 20), "20 MB": ("big20", 20 << 20)}
ROUNDS = 3  # download runs of each server, alternating
CASES = ["simple", "download", "upload"]
# With 2+ CPUs, servers (ours, nginx, not PostgreSQL) run on CPU 0 and wrk on CPU 1, so
# neither shares a core with the client by the scheduler's chance.
PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
SERVER_CPU, CLIENT_CPU = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if PIN else ([], [])
UPLOAD_CAP = {"token": 1000, "basic": 1000, "large": 1000}  # bodies built per second of --duration
FILL_BATCH = 2000  # versions per transaction filling the big index
JSON_ACCEPT = {"User-Agent": "pip/24.0", "Accept": "application/vnd.pypi.simple.v1+json"}
HTML_ACCEPT = {"User-Agent": "pip/24.0", "Accept": "text/html"}

WRK_LUA = r"""
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local k, v = string.match(line, "^([^:]+): (.*)$")
  wrk.headers[k] = v
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %.0f, "bytes": %.0f, "duration_us": %.0f, ' ..
    '"p50_us": %.0f, "p99_us": %.0f, "errors": %.0f, "non2xx": %.0f}\n', summary.requests,
    summary.bytes, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
NGINX_CONF = """daemon off; worker_processes 1; user root; pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type application/octet-stream; client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}
"""


def upload_form(name: str, version: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data upload form (as twine sends it): (body, content type)."""
    boundary = "----devpi-bench-" + os.urandom(12).hex()
    fields = {":action": "file_upload", "name": name, "version": version, "protocol_version": "1"}
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wheel_form(tmp: Path, name: str, version: str) -> tuple[bytes, str]:
    path = make_wheel(tmp, name, version)
    data = path.read_bytes()
    path.unlink()
    return upload_form(name, version, path.name, data)


def big_wheel(name: str, size: int) -> bytes:
    """A valid wheel of about ``size`` bytes: random, stored (uncompressed) data in the package."""
    with tempfile.TemporaryDirectory() as tmp:
        path = make_wheel(Path(tmp), name, "1.0")
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as wheel:
            wheel.writestr(f"{name}/data.bin", os.urandom(size))
        return path.read_bytes()


def setup(base: str, tmp: Path, big: dict[str, bytes]) -> dict[str, str]:
    """alice, the index chain, the wheels and big files, upload indexes; returns auth headers."""
    put = {"Content-Type": "application/json", "Accept": "application/json"}
    request(base, "PUT", f"/{USER}", json.dumps({"password": PASSWORD}).encode(), put, 201)
    login = json.dumps({"user": USER, "password": PASSWORD}).encode()
    token = json.loads(request(base, "POST", "/+login", login, put))["result"]["password"]
    auth = {"token": {"X-Devpi-Auth": auth_header(USER, token)},
            "basic": {"Authorization": "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}
    for index, bases in [*CHAIN, ("up-token", []), ("up-basic", []), ("up-large", [])]:
        request(base, "PUT", f"/{USER}/{index}", json.dumps({"bases": bases}).encode(),
                {**put, **auth["token"]})
    uploads = [(f"/{USER}/{index}/", wheel_form(tmp, f"proj{p}", f"1.{i}"))
               for i, (index, _) in enumerate(CHAIN) for p in range(PROJECTS)]
    uploads += [(f"/{USER}/base1/", upload_form(name, "1.0", f"{name}-1.0-py3-none-any.whl", data))
                for name, data in big.items()]
    for path, (body, ctype) in uploads:
        request(base, "POST", path, body, {**auth["token"], "Content-Type": ctype})
    return auth


def fill_large(open_storage, count: int) -> float:
    """``count`` projects (one version each, no files) into alice/up-large, straight
    through storage while the server runs (it catches up through the serial board or
    PostgreSQL's notifications); returns the seconds it took."""
    began, storage = time.monotonic(), open_storage()
    try:
        for start in range(0, count, FILL_BATCH):
            items = [(f"filler{i}", "1.0", {"name": f"filler{i}", "version": "1.0"}, {})
                     for i in range(start, min(count, start + FILL_BATCH))]
            result_of(storage.write_releases(USER, "up-large", items))
    finally:
        result_of(storage.close())
    return time.monotonic() - began


def run_wrk(url: str, headers: dict[str, str], conns: int, duration: int, lua: Path) -> dict:
    env = dict(os.environ, BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in headers.items()))
    cmd = [*CLIENT_CPU, "/usr/bin/wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "30s",
           "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                         timeout=duration + 60).stdout
    r = json.loads(next(line for line in out.splitlines() if line.startswith("BENCH "))[6:])
    seconds = r["duration_us"] / 1e6
    return {"started": r["requests"] + conns, "rate": r["requests"] / seconds,
            "mbs": r["bytes"] / seconds / 1e6, "p50": r["p50_us"] / 1e3, "p99": r["p99_us"] / 1e3,
            "errors": r["errors"], "non2xx": r["non2xx"]}


def run_uploads(base: str, path: str, bodies: list[tuple[bytes, str]], headers: dict[str, str],
                conns: int, duration: int) -> dict:
    """Threads with keep-alive connections POST the bodies, each once, until the deadline."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    feed, lock, latencies, failed, non2xx = iter(bodies), threading.Lock(), [], [], []
    deadline = time.monotonic() + duration

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while time.monotonic() < deadline:
            with lock:
                body, ctype = next(feed, (None, None))
            if body is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, {**headers, "Content-Type": ctype})
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                failed.append(f"{type(e).__name__}: {e}")
                conn.close()
                continue
            latencies.append(time.perf_counter() - t0)
            if response.status != 200:
                non2xx.append(f"HTTP {response.status}: {data[:200]!r}")
        conn.close()

    start, threads = time.monotonic(), [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, lat, n = time.monotonic() - start, sorted(latencies) or [0.0], len(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3  # noqa: E731
    return {"started": n, "rate": (n - len(non2xx)) / elapsed, "mbs": None, "p50": pct(0.5),
            "p99": pct(0.99), "errors": len(failed), "non2xx": len(non2xx),
            "exhausted": n + len(failed) >= len(bodies), "first_bad": (failed + non2xx)[:1]}


def measure(pid: int, db: int | None, fn) -> dict:
    cpu0, db0 = tree_cpu(pid), tree_cpu(db) if db else 0.0
    r = fn()
    wait_idle(pid)
    r["cpu"] = (tree_cpu(pid) - cpu0) * 1e3 / max(r["started"], 1)
    r["db"] = (tree_cpu(db) - db0) * 1e3 / max(r["started"], 1) if db else None
    return r


def pin(pid: int, cpus: str) -> None:
    """Run ``pid`` (all its threads, and those it starts later) on ``cpus``."""
    if PIN:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True,
                       stdout=subprocess.DEVNULL)


def combine(runs: list[dict]) -> dict:
    """Rounds of one case as one: rates and MB/s of the whole, the worst p99, the mean
    CPU per request; ``rounds`` keeps each round's MB/s."""
    n = len(runs)
    out = {"started": sum(r["started"] for r in runs), "rate": sum(r["rate"] for r in runs) / n,
           "mbs": sum(r["mbs"] for r in runs) / n, "p50": sorted(r["p50"] for r in runs)[n // 2],
           "p99": max(r["p99"] for r in runs), "errors": sum(r["errors"] for r in runs),
           "non2xx": sum(r["non2xx"] for r in runs), "rounds": [r["mbs"] for r in runs]}
    out["cpu"] = sum(r["cpu"] * r["started"] for r in runs) / max(out["started"], 1)
    out["db"] = None if runs[0]["db"] is None else sum(r["db"] for r in runs) / n
    return out


def row(name: str, conns, r: dict | None, target: str, figure: str, met: bool | None) -> None:
    if r is None:
        cells = " " * 69
    else:
        mbs = f"{r['mbs']:>8.1f}" if r["mbs"] is not None else f"{'-':>8}"
        dbc = f"{r['db']:>9.3f}" if r["db"] is not None else f"{'-':>9}"
        cells = (f"{conns:>5} {r['rate']:>8.1f} {mbs} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                 f"{r['cpu']:>10.3f} {dbc} {r['errors'] + r['non2xx']:>6}")
    verdict = "" if met is None else ("ok" if met else "MISSED")
    print(f"{name:<22} {cells}  {target:<16} {figure:<10} {verdict}", flush=True)


def start_devpi6(setdir: Path) -> tuple[subprocess.Popen, str]:
    """A fresh devpi-server 6 (its default key costs, as users run it) logging to
    ``setdir``/server.log."""
    from tests.dump.devpi6 import Devpi6, ensure_installed
    server = Devpi6(ensure_installed(6), setdir / "server")
    server.log = setdir / "server.log"
    server.run("devpi-init", "--no-root-pypi")
    server.start(timeout=120, fast_argon2=False)
    assert server.proc is not None
    return server.proc, server.url


def bench_backend(label: str, storage: list[str], db: int | None, args, work: Path, lua: Path,
                  big: dict[str, bytes], nginx: tuple[subprocess.Popen, str],
                  bodies: dict[str, list], open_storage, start=None) -> list[str]:
    """The cases against one server; ``start(setdir)`` starts another kind than ours
    (``open_storage`` None: no big index filled straight through storage)."""
    problems, setdir = [], work / label
    setdir.mkdir()
    proc, base = start(setdir) if start else start_server(setdir, storage, 0)
    judged = start is None  # issue 25's targets are judged for ours only
    try:
        auth = setup(base, work, big)
        page = f"{base}/{USER}/top/+simple/proj0/"
        files = json.loads(request(base, "GET", page[len(base):], None, JSON_ACCEPT))["files"]
        assert len(files) == len(CHAIN), f"{page}: {len(files)} files, not {len(CHAIN)}"
        wait_idle(proc.pid)
        print(f"\n== {label}: {base}, server pid {proc.pid}, {args.duration} s per run")
        head = (f"{'case':<22} {'conns':>5} {'req/s':>8} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'CPU ms/req':>10} {'db ms/req':>9} {'errors':>6}  {'target':<16} {'figure':<10}")
        print(f"{head}\n{'-' * (len(head) + 4)}", flush=True)
        results = {}
        pin(proc.pid, "0")  # as nginx
        for name, headers in (("simple JSON top", JSON_ACCEPT), ("simple HTML top", HTML_ACCEPT)
                              )[:2 * ("simple" in args.only)]:
            r = measure(proc.pid, db, lambda: run_wrk(page, headers, 10, args.duration, lua))
            row(name, 10, r, "CPU <= 0.3 ms" * judged, f"{r['cpu']:.3f} ms", r["cpu"] <= 0.3 if judged else None)
            results[name] = r
        nginx_proc, nginx_base = nginx
        for size, (name, _) in list(BIG.items())[:2 * ("download" in args.only)]:
            simple = f"{base}/{USER}/base1/+simple/{name}/"
            item = json.loads(request(base, "GET", simple[len(base):], None, JSON_ACCEPT))["files"][0]
            url = urllib.parse.urljoin(simple, item["url"])
            assert len(request(base, "GET", url[len(base):])) == len(big[name]), url
            nginx_url = f"{nginx_base}/{name}-1.0-py3-none-any.whl"
            ours, theirs = [], []
            for _ in range(ROUNDS):  # alternating, so drift in the machine hits both alike
                ours.append(measure(proc.pid, db, lambda: run_wrk(url, {}, 4, args.duration, lua)))
                theirs.append(measure(nginx_proc.pid, None, lambda: run_wrk(
                    nginx_url, {}, 4, args.duration, lua)))
            ours, theirs = combine(ours), combine(theirs)
            row(f"download {size} ours", 4, ours, "", "", None)
            row(f"download {size} nginx", 4, theirs, "", "", None)
            ratio, want = ours["mbs"] / max(theirs["mbs"], 1e-9), 0.9 if size == "20 MB" else 0.6
            row(f"  ours/nginx {size}", "", None, f">= {want}" * judged, f"{ratio:.2f}",
                ratio >= want if judged else None)
            print(f"  (rounds: {', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(ours['rounds'], theirs['rounds']))} MB/s)")
            results[f"download {size}"], results[f"nginx {size}"] = ours, theirs
        conns = args.upload_conns
        for kind, want in (("token", 500), ("basic", 300))[:2 * ("upload" in args.only)]:
            r = measure(proc.pid, db, lambda: run_uploads(
                base, f"/{USER}/up-{kind}/", bodies[kind], auth[kind], conns, args.duration))
            row(f"upload {kind}", conns, r, f">= {want}/s" * judged, f"{r['rate']:.0f}/s",
                r["rate"] >= want if judged else None)
            problems += [f"{label} upload {kind}: all {len(bodies[kind])} bodies sent"] * r["exhausted"]
            problems += [f"{label} upload {kind}, e.g.: {bad}" for bad in r["first_bad"]]
            results[f"upload {kind}"] = r
        if "upload" in args.only and args.large and open_storage is not None:
            took = fill_large(lambda: open_storage(setdir / "server"), args.large)
            listed = json.loads(request(base, "GET", f"/{USER}/up-large", None, {
                "Accept": "application/json", **auth["token"]}))["result"]["projects"]
            assert len(listed) == args.large, f"{len(listed)} projects listed, not {args.large}"
            wait_idle(proc.pid)
            print(f"  ({args.large} projects written to {USER}/up-large in {took:.1f} s)", flush=True)
            r = measure(proc.pid, db, lambda: run_uploads(
                base, f"/{USER}/up-large/", bodies["large"], auth["token"], conns, args.duration))
            empty = results["upload token"]
            ratio = r["p50"] / max(empty["p50"], 1e-9)
            row(f"upload {args.large // 1000}k projects", conns, r, "p50 <= 1.2x empty",
                f"{ratio:.2f}x", ratio <= 1.2)
            print(f"  (CPU {r['cpu'] / max(empty['cpu'], 1e-9):.2f}x the empty index's)")
            results["upload large"] = r
        problems += [f"{label} {name}: {r['errors']} errors, {r['non2xx']} non-2xx"
                     for name, r in results.items() if r["errors"] or r["non2xx"]]
    finally:
        stop_server(proc)
    log = (setdir / "server.log").read_text(errors="replace").splitlines()
    bad = [line for line in log if any(w in line for w in ("Traceback", "Unhandled", "critical"))]
    kinds = sorted({line.strip()[:160] for line in log if re.match(r"\s+(Failure: )?[\w.]+: ", line)})
    problems += [f"{label} log: {len(bad)} tracebacks/unhandled errors: {kinds}"] * bool(bad)
    return problems


def start_nginx(work: Path, big: dict[str, bytes]) -> tuple[subprocess.Popen, str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RuntimeError("nginx is missing: apt-get install nginx-light (or nginx)")
    d, port = work / "nginx", free_port()
    for sub in ("www", "tmp"):
        (d / sub).mkdir(parents=True)
    for name, data in big.items():
        (d / "www" / f"{name}-1.0-py3-none-any.whl").write_bytes(data)
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port))
    proc = subprocess.Popen([*SERVER_CPU, nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-e",
                             str(d / "nginx-error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):  # bounded: 10 s
        try:
            request(base, "GET", f"/{next(iter(big))}-1.0-py3-none-any.whl")
            return proc, base
        except (OSError, RuntimeError):
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"nginx did not start: {(d / 'nginx-error.log').read_text(errors='replace')}")


def begin(prefix: str) -> tuple[Path, Path]:
    """A run's work directory and wrk script in it; prints the commit and the machine."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    commit = subprocess.run(["git", "-C", str(HERE.parent), "log", "-1", "--format=%h %s"],
                            capture_output=True, text=True).stdout.strip()
    print(f"commit {commit[:70] or '?'}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return work, lua


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--only", nargs="+", choices=CASES, default=CASES, help="cases to run")
    parser.add_argument("--large", type=int, default=100_000,
                        help="projects of the big index uploads are timed into too (0: none)")
    parser.add_argument("--devpi6", action="store_true", help=(
        "also devpi-server 6 on its own storage (tests/dump/devpi6.py; "
        "DEVPI_TWISTED_DEVPI6_VENV to share an installed one)"))
    parser.add_argument("--upload-conns", type=int, default=1,
                        help="upload clients, each one connection, one upload after another (1)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-index-"))
    lua, t0 = work / "bench.lua", time.monotonic()
    lua.write_text(WRK_LUA)
    big = {name: big_wheel(name, size) for name, size in BIG.values()}
    bodies = {kind: [wheel_form(work, f"up-{kind}", f"1.0.{i}")
                     for i in range(cap * args.duration * ("upload" in args.only))]
              for kind, cap in UPLOAD_CAP.items()}
    version = subprocess.run(["/usr/bin/wrk", "-v"], capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "-C", str(HERE.parent), "log", "-1", "--format=%h %s"],
                            capture_output=True, text=True).stdout.strip()
    print(f"commit {commit or '?'}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs "
          f"(load {os.getloadavg()[0]:.1f}); "
          f"{version.split(' [')[0]} (1 thread) on the same machine; "
          f"{sum(map(len, bodies.values()))} upload bodies built in {time.monotonic() - t0:.1f} s")
    nginx, cluster, problems = None, None, []
    try:
        nginx = start_nginx(work, big)
        problems += bench_backend(
            "sqlite", [], None, args, work, lua, big, nginx, bodies,
            lambda d: SqliteStorage.open(d / "db.sqlite3", InlineExecutor(),
                                         board=SerialBoard(d / ".serial")))
        if args.devpi6:
            problems += bench_backend("devpi-server 6", [], None, args, work, lua, big, nginx,
                                      bodies, None, start_devpi6)
        if args.postgres:
            cluster = PgCluster()  # stop() removes it even after a failed start
            cluster.start()
            database = cluster.create_database()
            storage = ["--storage", cluster.storage_option(database)]
            postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
            problems += bench_backend("postgres", storage, postmaster, args, work, lua, big,
                                      nginx, bodies,
                                      lambda d: BlockingPostgresStorage(cluster.settings(database)))
        print("\nreq/s, MB/s, p50/p99: wrk (uploads: 2xx per second of the run, Python client)\n"
              "CPU ms/req: twistd (nginx: master + worker) utime+stime from the start of a run\n"
              "  until idle / requests started; db ms/req: the postmaster and its children")
        for problem in problems:
            print("PROBLEM:", problem)
        return 1 if problems else 0
    finally:
        if nginx is not None:
            stop_server(nginx[0])
        if cluster is not None:
            try:
                cluster.stop()
            except RuntimeError as e:
                print(f"stopping PostgreSQL: {e}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
