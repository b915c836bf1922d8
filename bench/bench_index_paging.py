"""``GET /USER/INDEX`` of an index with 100,000 projects: a page (``limit``/``offset``),
a search (``q``) and the whole list, in server CPU per request.

Run by hand, never in CI: ``VENV/bin/python bench/bench_index_paging.py [--projects
100000] [--requests 300] [--venv VENV ...]``, where each VENV has devpi-twisted installed
(default: the running interpreter's); several venvs (e.g. main's first, then this tree's)
are measured in turns, ``--rounds`` times each. The index is loaded once per venv by
``devpi-twisted import`` of a synthetic devpi 6 dump (one version, no file, per project).
One client, one keep-alive connection, requests one after another; server CPU is
utime+stime of twistd over the requests of a case divided by their number. A server that
does not know ``limit`` answers the whole list: its "page" figure is that of the list.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import cpu_seconds, stop_server, wait_idle  # noqa: E402

USER, INDEX = "alice", "dev"


def write_dump(directory: Path, projects: int) -> None:
    names = {f"proj-{n:06d}": {"1.0": {"name": f"proj-{n:06d}", "version": "1.0"}}
             for n in range(projects)}
    data = {
        "dumpversion": "2", "devpi_server": "6.20.3", "pythonversion": [3, 11, 7, "final", 0],
        "users": {USER: {"username": USER, "created": "2026-11-25T10:00:00Z"},
                  "root": {"username": "root", "created": "2026-11-25T10:00:00Z"}},
        "indexes": {f"{USER}/{INDEX}": {
            "indexconfig": {"type": "stage", "bases": [], "volatile": True,
                            "acl_upload": [USER]},
            "projects": names, "files": []}},
    }
    directory.mkdir(parents=True)
    (directory / "dataindex.json").write_text(json.dumps(data))


def start(bindir: Path, workdir: Path, dump: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    serverdir = workdir / "server"
    began = time.monotonic()
    subprocess.run([str(bindir / "devpi-twisted"), "import", "--serverdir", str(serverdir),
                    "--no-root-pypi", str(dump)], check=True, stdout=subprocess.DEVNULL)
    imported = time.monotonic() - began
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(bindir / "twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(serverdir),
             "--host", "127.0.0.1", "--port", "0"], stdout=log, stderr=subprocess.STDOUT,
            cwd=workdir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return proc, json.loads((serverdir / ".listening").read_text())[0], imported
        except (OSError, ValueError, IndexError):
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError((workdir / "server.log").read_text()[-2000:])


def measure(base: str, pid: int, paths: list[str]) -> tuple[float, int]:
    """(server CPU ms per request, bytes of the last answer) over ``paths``."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Accept": "application/json"}
    conn.request("GET", paths[0], headers=headers)  # warm: the list is read once
    conn.getresponse().read()
    wait_idle(pid)
    before = cpu_seconds(pid)
    size = 0
    for path in paths:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:200])
        size = len(body)
    wait_idle(pid)
    conn.close()
    return (cpu_seconds(pid) - before) * 1000 / len(paths), size


def cases(projects: int, count: int) -> dict[str, list[str]]:
    rng = random.Random(7)
    index = f"/{USER}/{INDEX}"
    return {
        "page of 50 (limit/offset)": [f"{index}?limit=50&offset={rng.randrange(projects)}"
                                      for _ in range(count)],
        "search q, page of 50": [f"{index}?q=proj-0{rng.randrange(10)}{rng.randrange(10)}"
                                 f"&limit=50" for _ in range(count)],
        "whole list": [index] * max(10, count // 10),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--venv", action="append", type=Path, default=[])
    args = parser.parse_args()
    venvs = args.venv or [Path(sys.executable).parent.parent]
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "dump"
        write_dump(dump, args.projects)
        servers = []
        for n, venv in enumerate(venvs):
            workdir = Path(tmp) / f"run{n}"
            workdir.mkdir()
            proc, base, imported = start(venv / "bin", workdir, dump)
            print(f"{venv}: imported {args.projects} projects in {imported:.1f} s", flush=True)
            servers.append((str(venv), proc, base))
        try:
            for _ in range(args.rounds):
                for venv, proc, base in servers:  # in turns: the machine's load is shared
                    for case, paths in cases(args.projects, args.requests).items():
                        ms, size = measure(base, proc.pid, paths)
                        results.setdefault((venv, case), []).append(ms)
                        print(f"  {venv} {case}: {ms:.2f} ms ({size} bytes)", flush=True)
        finally:
            for _, proc, _ in servers:
                stop_server(proc)
    print(f"\nserver CPU per request, {args.projects} projects, median of {args.rounds} rounds"
          " (min-max)")
    print(f"{'venv':40} {'case':28} {'ms':>8} {'spread':>16}")
    for (venv, case), values in results.items():
        print(f"{venv[-40:]:40} {case:28} {statistics.median(values):8.2f} "
              f"{min(values):7.2f}-{max(values):<7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
