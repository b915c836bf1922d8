"""Warm simple pages with and without a supply-chain policy (issue 23).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_policy.py [--duration 5] [--rounds 5]``.
A fake PyPI (tests/fakepypi.py) serves ``benchlib`` with ``--versions`` versions (one
wheel each; the newest fifth uploaded an hour ago, the others a month ago); a fresh
server (sqlite) mirrors it as root/pypi, and two indexes inherit root/pypi:
root/plain (no policy) and root/policy (``min_release_age=7d`` and constraints
``benchlib<{versions - 2}``, ``*``). Measured with wrk (JSON as pip asks, 10
connections), alternating the two for ``--rounds`` rounds: the server's CPU per warm
page of each, and the ratio policy/plain (target < 1.10).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import auth_header, request, stop_server  # noqa: E402
from bench_index import JSON_ACCEPT, WRK_LUA, combine, measure, pin, row, run_wrk  # noqa: E402
from bench_storage import start_server  # noqa: E402
from tests.fakepypi import FakePyPI  # noqa: E402
from tests.support import make_wheel  # noqa: E402

DAY = 86400


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each index (5)")
    parser.add_argument("--versions", type=int, default=50, help="versions upstream (50)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-policy-"))
    lua = work / "bench.lua"
    lua.write_text(WRK_LUA)
    dists = work / "dists"
    dists.mkdir()
    now = time.time()
    with FakePyPI(work / "fake") as fake:
        for i in range(args.versions):
            young = i >= args.versions * 4 // 5
            fake.add(make_wheel(dists, "benchlib", f"1.{i}"),
                     uploaded=now - 3600 if young else now - 30 * DAY)
        fake.start()
        proc, base = start_server(work, [], 0)
        try:
            put = {"Content-Type": "application/json", "Accept": "application/json"}
            token = json.loads(request(base, "POST", "/+login",
                                       json.dumps({"user": "root", "password": ""}).encode(), put))
            auth = {**put, "X-Devpi-Auth": auth_header("root", token["result"]["password"])}
            request(base, "PUT", "/root/pypi", json.dumps(
                {"type": "mirror", "mirror_url": fake.url, "mirror_cache_expiry": 3600}).encode(),
                auth)
            request(base, "PUT", "/root/plain", json.dumps({"bases": "root/pypi"}).encode(), auth)
            request(base, "PUT", "/root/policy", json.dumps({
                "bases": "root/pypi", "min_release_age": "7d",
                "constraints": [f"benchlib<1.{args.versions - 2}", "*"]}).encode(), auth)
            pin(proc.pid, "0")
            pages = {name: f"/root/{name}/+simple/benchlib/" for name in ("plain", "policy")}
            for name, path in pages.items():
                body = json.loads(request(base, "GET", path, None, JSON_ACCEPT))
                print(f"{name}: {len(body['files'])} files served of {args.versions}")
            runs: dict[str, list[dict]] = {name: [] for name in pages}
            for _ in range(args.rounds):
                for name, path in pages.items():
                    runs[name].append(measure(proc.pid, None, lambda: run_wrk(
                        base + path, JSON_ACCEPT, 10, args.duration, lua)))
            head = (f"{'case':<22} {'conns':>5} {'req/s':>8} {'MB/s':>8} {'p50 ms':>8} "
                    f"{'p99 ms':>8} {'CPU ms/req':>10} {'db ms/req':>9} {'errors':>6}")
            print(f"{head}\n{'-' * len(head)}")
            results = {name: combine(r) for name, r in runs.items()}
            for name, r in results.items():
                row(f"warm page {name}", 10, r, "", "", None)
            ratio = results["policy"]["cpu"] / results["plain"]["cpu"]
            print(f"server CPU per warm page, policy/plain: {ratio:.3f} (target < 1.10): "
                  f"{'ok' if ratio < 1.10 else 'MISSED'}")
            return 0 if ratio < 1.10 else 1
        finally:
            stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
