"""The PyPI mirror against a static upstream served by nginx (which is also the reference).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_mirror.py [--duration 10] [--projects 300]``.
Builds a static PEP 503 index of ``--projects`` projects (one small wheel each) plus a
20 MB wheel; ``benchapp`` depends on 49 of them, so installing it takes 50 distributions.
nginx (1 worker, sendfile) serves the copy; a fresh server (sqlite, default options: so
the pages of benchapp's requirements are prefetched once its wheel is fetched) mirrors it
as root/pypi. Measured:
- cold install: ``pip install --no-cache-dir --target`` of benchapp straight from nginx,
  then at once through the empty mirror (a fresh serverdir each round), ``--rounds``
  times: the median of the rounds' mirror/direct ratios (target <= 1.15; the ratio of
  the summed times is printed too) and the server's CPU for the install (<= 0.6 s). A
  small shared VM's speed drifts by up to a third between runs and a round now and
  then takes half as long again: pairing each mirror install with the direct one just
  before it cancels the drift, the median the odd slow round of either kind;
- warm pages: wrk on /root/pypi/+simple/<project>/ (JSON as pip asks, 10 connections):
  server CPU per page (<= 0.3 ms), p99;
- warm 20 MB downloads: wrk, 4 connections, ours (stored by then) vs nginx, ``--rounds``
  alternating (>= 0.9). With 2+ CPUs the servers run on CPU 0 and the clients on CPU 1;
- resident memory (VmRSS) of the last mirror server after all of it (<= 100 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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
    CLIENT_CPU, JSON_ACCEPT, NGINX_CONF, SERVER_CPU, WRK_LUA, combine, measure, pin,
    row, run_wrk,
)
from bench_storage import start_server, tree_cpu, wait_idle  # noqa: E402
from tests.pg import free_port  # noqa: E402
from tests.support import make_wheel  # noqa: E402

DEPENDENCIES = 49


def build_upstream(www: Path, projects: int, work: Path) -> None:
    """www/simple/<name>/index.html and www/files/<wheel> for every project."""
    files = www / "files"
    files.mkdir(parents=True)
    names = [f"benchlib{i}" for i in range(projects)]
    wheels = [make_wheel(work, name, "1.0") for name in names]
    wheels.append(make_wheel(work, "benchapp", "1.0", requires=names[:DEPENDENCIES]))
    big = make_wheel(work, "benchbig", "1.0")
    import zipfile
    with zipfile.ZipFile(big, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("benchbig/data.bin", os.urandom(20 << 20))
    wheels.append(big)
    index = ["<!DOCTYPE html><html><body>"]
    for wheel in wheels:
        name = wheel.name.split("-", 1)[0]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        shutil.move(wheel, files / wheel.name)
        page = www / "simple" / name
        page.mkdir(parents=True)
        (page / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}#sha256={digest}">'
            f"{wheel.name}</a></body></html>")
        index.append(f'<a href="{name}/">{name}</a>')
    (www / "simple" / "index.html").write_text("".join(index) + "</body></html>")


def start_nginx(d: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (d / "tmp").mkdir(exist_ok=True)
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port))
    proc = subprocess.Popen([*SERVER_CPU, shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(d),
                             "-c", str(d / "nginx.conf"), "-e", str(d / "nginx-error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            request(base, "GET", "/simple/")
            return proc, base
        except (OSError, RuntimeError):
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError("nginx did not start")


def pip_install(index: str, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*CLIENT_CPU, sys.executable, "-m", "pip", "--disable-pip-version-check",
                    "--no-cache-dir", "install", "--quiet", "--target", str(target),
                    "--index-url", index, "benchapp"], check=True,
                   env=dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS=""))
    return time.perf_counter() - started


def mirror_server(work: Path, upstream: str) -> tuple[subprocess.Popen, str]:
    proc, base = start_server(work, [], 0)
    put = {"Content-Type": "application/json", "Accept": "application/json"}
    token = json.loads(request(base, "POST", "/+login",
                               json.dumps({"user": "root", "password": ""}).encode(), put))
    from bench_api import auth_header
    auth = {"X-Devpi-Auth": auth_header("root", token["result"]["password"])}
    config = {"type": "mirror", "mirror_url": f"{upstream}/simple/", "volatile": False}
    request(base, "PUT", "/root/pypi", json.dumps(config).encode(), {**put, **auth})
    pin(proc.pid, "0")
    return proc, base


def resident_mb(pid: int) -> float:
    """VmRSS of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--projects", type=int, default=300, help="projects upstream (300)")
    parser.add_argument("--rounds", type=int, default=9, help=(
        "cold installs of each kind and 20 MB runs of each server, alternating (9): one "
        "round's time varies by up to +-10%% on a small VM"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-mirror-"))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    nginx_dir = work / "nginx"
    build_upstream(nginx_dir / "www", args.projects, work)
    nginx, upstream = start_nginx(nginx_dir)
    problems: list[str] = []
    procs: list[subprocess.Popen] = []
    try:
        print(f"upstream: nginx at {upstream}, {args.projects + 2} projects")
        head = (f"{'case':<26} {'conns':>5} {'req/s':>8} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'CPU ms/req':>10} {'db ms/req':>9} {'errors':>6}  {'target':<16} {'figure':<10}")
        print(f"{head}\n{'-' * (len(head) + 4)}", flush=True)
        direct, through, cpu = [], [], []
        rounds = args.rounds
        for i in range(rounds):
            direct.append(pip_install(f"{upstream}/simple/", work / f"direct{i}"))
            round_dir = work / f"mirror{i}"
            round_dir.mkdir()
            proc, base = mirror_server(round_dir, upstream)
            procs.append(proc)
            wait_idle(proc.pid)
            before = tree_cpu(proc.pid)
            through.append(pip_install(f"{base}/root/pypi/+simple/", work / f"through{i}"))
            wait_idle(proc.pid)
            cpu.append(tree_cpu(proc.pid) - before)
            if i < rounds - 1:
                stop_server(proc)
        ratio = statistics.median(t / d for t, d in zip(through, direct))
        print(f"{'cold install, direct':<26} {'':>5} {'':>8} {'':>8} "
              f"{statistics.median(direct) * 1e3:>8.0f} ms  (rounds {', '.join(f'{t:.2f}' for t in direct)} s)")
        print(f"{'cold install, mirror':<26} {'':>5} {'':>8} {'':>8} "
              f"{statistics.median(through) * 1e3:>8.0f} ms  (rounds {', '.join(f'{t:.2f}' for t in through)} s)")
        verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
        print(f"{'  mirror/direct time, median of rounds':<84}{'<= 1.15':<17}{ratio:<11.2f}"
              f"{verdict(ratio <= 1.15)}")
        print(f"{'  (of the summed times':<84}{'':<17}{sum(through) / sum(direct):.2f})")
        worst = max(cpu)
        print(f"{'  server CPU per install':<84}{'<= 0.6 s':<17}{worst:<11.2f}{verdict(worst <= 0.6)}")
        problems += ["cold install ratio"] * (ratio > 1.15) + ["install CPU"] * (worst > 0.6)
        proc, base = procs[-1], json.loads(
            (work / f"mirror{rounds - 1}" / "server" / ".listening").read_text())[0]
        page = f"{base}/root/pypi/+simple/benchlib1/"
        r = measure(proc.pid, None, lambda: run_wrk(page, JSON_ACCEPT, 10, args.duration, lua))
        row("warm mirror page JSON", 10, r, "CPU <= 0.3 ms", f"{r['cpu']:.3f} ms", r["cpu"] <= 0.3)
        problems += ["warm page CPU"] * (r["cpu"] > 0.3)
        gz = measure(proc.pid, None, lambda: run_wrk(page, {**JSON_ACCEPT, "Accept-Encoding": "gzip"},
                                                     10, args.duration, lua))
        row("  the same, gzip", 10, gz, "CPU <= 0.15 ms", f"{gz['cpu']:.3f} ms", gz["cpu"] <= 0.15)
        simple = f"{base}/root/pypi/+simple/benchbig/"
        item = json.loads(request(base, "GET", simple[len(base):], None, JSON_ACCEPT))["files"][0]
        url = urllib.parse.urljoin(simple, item["url"])
        request(base, "GET", url[len(base):])  # the first download stores it
        theirs_url = f"{upstream}/files/{item['filename']}"
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(measure(proc.pid, None, lambda: run_wrk(url, {}, 4, args.duration, lua)))
            theirs.append(measure(nginx.pid, None, lambda: run_wrk(theirs_url, {}, 4, args.duration,
                                                                    lua)))
        ours_c, theirs_c = combine(ours), combine(theirs)
        row("warm 20 MB ours", 4, ours_c, "", "", None)
        row("warm 20 MB nginx", 4, theirs_c, "", "", None)
        ratio = ours_c["mbs"] / max(theirs_c["mbs"], 1e-9)
        row("  ours/nginx 20 MB", "", None, ">= 0.9", f"{ratio:.2f}", ratio >= 0.9)
        problems += ["20 MB download ratio"] * (ratio < 0.9)
        rss = resident_mb(proc.pid)
        row("  server resident memory", "", None, "<= 100 MB", f"{rss:.0f} MB", rss <= 100)
        problems += ["resident memory"] * (rss > 100)
        peak = next(int(line.split()[1]) / 1024 for line in
                    Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))
        row("  server peak memory", "", None, "<= 100 MB", f"{peak:.0f} MB", peak <= 100)
        for name, res in (("page", r), ("ours", ours_c), ("nginx", theirs_c)):
            if res["errors"] or res["non2xx"]:
                problems.append(f"{name}: {res['errors']} errors, {res['non2xx']} non-2xx")
        print("\nCPU ms/req: server utime+stime from a run's start until idle / requests started")
        for problem in problems:
            print("PROBLEM:", problem)
        return 1 if problems else 0
    finally:
        for proc in procs:
            stop_server(proc)
        stop_server(nginx)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
