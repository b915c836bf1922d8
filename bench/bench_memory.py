"""Where the server's memory goes: what each imported package costs, and the resident size
(VmRSS) and peak (VmHWM) of a mirror server after each step of an install workload.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_memory.py [--projects 60] [--top 25]``.
- imports: ``import devpi_twisted.service`` in a fresh interpreter, the resident size
  each module added itself (its own imports excluded), summed per top-level package;
- steps: nginx serves a static index (bench_mirror.build_upstream); a fresh server
  (sqlite, default options and argon2 costs) mirrors it as root/pypi; after its start
  and a login, a cold ``pip install`` of benchapp (50 distributions), wrk on a warm
  page, the first and then repeated downloads of a 20 MB wheel: RSS and VmHWM of the
  server, and the summed RSS of its children (the password checks' child).
Targets (issue 25): <= 60 MB resident after the install workloads, peak <= 100 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import request, stop_server  # noqa: E402
from bench_index import JSON_ACCEPT, WRK_LUA, run_wrk  # noqa: E402
from bench_mirror import build_upstream, mirror_server, pip_install, start_nginx  # noqa: E402
from bench_storage import wait_idle  # noqa: E402
from tests.support import child_pids  # noqa: E402

# Run in a fresh interpreter: each module's own share of the resident size.
IMPORTS = r"""
import builtins, collections, json, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
original, stack, own = builtins.__import__, [], collections.Counter()
def counting(name, globals=None, locals=None, fromlist=(), level=0):
    full = name
    if level and globals:  # a relative import: counted under its absolute name
        base = (globals.get("__package__") or "").rsplit(".", level - 1)[0]
        full = f"{base}.{name}" if name else base
    return _count(full, lambda: original(name, globals, locals, fromlist, level))
def _count(name, load):
    if name in sys.modules:
        return load()
    before = rss()
    stack.append([name, 0])
    try:
        return load()
    finally:
        me, inner = stack.pop()
        grown = rss() - before
        own[me] += grown - inner
        if stack:
            stack[-1][1] += grown
start = rss()
builtins.__import__ = counting
import devpi_twisted.service
builtins.__import__ = original
packages = collections.Counter()
for name, size in own.items():
    packages[name.split(".")[0]] += size
print(json.dumps({"start": start, "end": rss(), "packages": packages.most_common()}))
"""


def status_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def step(pid: int, label: str) -> None:
    server = status_mb(pid)
    children = sum(status_mb(child).get("VmRSS", 0) for child in child_pids(pid))
    print(f"{label:<28} {server['VmRSS']:>8.0f} {server['VmHWM']:>8.0f} {children:>12.0f}",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, default=60, help="projects upstream (60)")
    parser.add_argument("--top", type=int, default=25, help="packages listed (25)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (3)")
    args = parser.parse_args()
    done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True,
                          check=True, cwd=tempfile.gettempdir())
    imports = json.loads(done.stdout)
    print(f"import devpi_twisted.service: {imports['start'] / 2**20:.1f} -> "
          f"{imports['end'] / 2**20:.1f} MB resident; by package (MB):")
    for name, size in imports["packages"][:args.top]:
        print(f"  {name:<28} {size / 2**20:6.1f}")
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-memory-"))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    build_upstream(work / "nginx" / "www", args.projects, work)
    nginx, upstream = start_nginx(work / "nginx")
    proc = None
    try:
        round_dir = work / "mirror"
        round_dir.mkdir()
        proc, base = mirror_server(round_dir, upstream)  # logs in as root: one check
        print(f"\n{'step':<28} {'RSS MB':>8} {'peak MB':>8} {'children MB':>12}")
        wait_idle(proc.pid)
        step(proc.pid, "started, logged in")
        pip_install(f"{base}/root/pypi/+simple/", work / "target")
        wait_idle(proc.pid)
        step(proc.pid, "cold install (50 dists)")
        run_wrk(f"{base}/root/pypi/+simple/benchlib1/", JSON_ACCEPT, 10, args.duration, lua)
        wait_idle(proc.pid)
        step(proc.pid, "warm pages (wrk)")
        simple = f"{base}/root/pypi/+simple/benchbig/"
        item = json.loads(request(base, "GET", simple[len(base):], None, JSON_ACCEPT))["files"][0]
        url = urllib.parse.urljoin(simple, item["url"])
        request(base, "GET", url[len(base):])
        wait_idle(proc.pid)
        step(proc.pid, "20 MB wheel fetched")
        run_wrk(url, {}, 4, args.duration, lua)
        wait_idle(proc.pid)
        step(proc.pid, "20 MB downloads (wrk)")
        return 0
    finally:
        if proc is not None:
            stop_server(proc)
        stop_server(nginx)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
