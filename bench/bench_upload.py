"""Server CPU per upload, one client uploading one file after another over one
keep-alive connection, split by the server's threads.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_upload.py [--rounds 5] [--duration 4]
[--postgres]``. One fresh server (sqlite, or PostgreSQL on a throwaway cluster from
tests/pg.py); per round, a token run then a Basic-auth run into indexes of their own
(bench_index.py's forms and client). For each run: uploads/s, p50 latency, server CPU
per upload (utime+stime of twistd from the run's start until idle), of which the main
(reactor) thread and the others (thread pools: form, files, database), user and system
time. Medians and spread over the rounds are printed at the end, as the figure to
compare in turns with another tree (run this file with that tree's venv python).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import stop_server  # noqa: E402
from bench_index import run_uploads, setup, wheel_form  # noqa: E402
from bench_storage import start_server, wait_idle  # noqa: E402
from tests.pg import PgCluster  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def threads_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """tid -> (user, system) seconds of every thread of ``pid``."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(tid)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return found


def split(pid: int, before: dict, after: dict, n: int) -> dict[str, float]:
    """ms per upload: main thread user/system, other threads user/system."""
    out = {"main_user": 0.0, "main_sys": 0.0, "other_user": 0.0, "other_sys": 0.0}
    for tid, (user, system) in after.items():
        u0, s0 = before.get(tid, (0.0, 0.0))
        part = "main" if tid == pid else "other"
        out[f"{part}_user"] += (user - u0) * 1e3 / n
        out[f"{part}_sys"] += (system - s0) * 1e3 / n
    out["total"] = sum(out.values())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per run (4)")
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL, not sqlite")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-upload-"))
    cap = 700 * args.duration  # bodies per run: more than one connection sends
    cluster, storage = None, []
    if args.postgres:
        cluster = PgCluster()
        cluster.start()
        storage = ["--storage", cluster.storage_option(cluster.create_database())]
    proc, base = start_server(work, storage, 0)
    rows: dict[str, list[dict]] = {"token": [], "basic": []}
    try:
        auth = setup(base, work, {})
        wait_idle(proc.pid)
        print(f"{'round':<6} {'auth':<6} {'up/s':>6} {'p50 ms':>7} {'CPU ms':>7} "
              f"{'main u+s':>12} {'others u+s':>12}", flush=True)
        for rnd in range(args.rounds):
            for kind in rows:
                bodies = [wheel_form(work, f"up-{kind}", f"{rnd}.{i}") for i in range(cap)]
                before = threads_cpu(proc.pid)
                r = run_uploads(base, f"/alice/up-{kind}/", bodies, auth[kind], 1, args.duration)
                wait_idle(proc.pid)
                assert not r["errors"] and not r["non2xx"], r["first_bad"]
                s = split(proc.pid, before, threads_cpu(proc.pid), max(r["started"], 1))
                s.update(rate=r["rate"], p50=r["p50"])
                rows[kind].append(s)
                print(f"{rnd:<6} {kind:<6} {r['rate']:>6.0f} {r['p50']:>7.2f} {s['total']:>7.2f} "
                      f"{s['main_user']:>5.2f}+{s['main_sys']:<5.2f} "
                      f"{s['other_user']:>5.2f}+{s['other_sys']:<5.2f}", flush=True)
    finally:
        stop_server(proc)
        if cluster is not None:
            cluster.stop()
    print("\nmedian (min-max) over rounds; CPU in ms of server CPU per upload")
    for kind, runs in rows.items():
        def fig(key: str, fmt: str = ".2f") -> str:
            vals = [r[key] for r in runs]
            return (f"{statistics.median(vals):{fmt}} ({min(vals):{fmt}}-{max(vals):{fmt}})")
        print(f"{kind:<6} up/s {fig('rate', '.0f')}  CPU {fig('total')}  main "
              f"{fig('main_user')}+{fig('main_sys')}  others {fig('other_user')}+{fig('other_sys')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
