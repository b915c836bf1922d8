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
compare in turns with another tree: ``--against /path/to/main/.venv/bin`` starts a second
server from that venv (installed from the other tree) and runs the two in turns, run by
run (alternating which goes first), so both see the same load; it prints the paired
differences too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import stop_server  # noqa: E402
from bench_index import run_uploads, setup, upload_form, wheel_form  # noqa: E402
import bench_storage  # noqa: E402
from bench_storage import start_server, wait_idle  # noqa: E402
from tests.pg import PgCluster  # noqa: E402
from tests.support import make_wheel  # noqa: E402

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


def start(work: Path, storage: list[str], venv_bin: Path | None) -> tuple[Any, str]:
    """A server from this venv, or from ``venv_bin`` (another tree's, for --against)."""
    saved = bench_storage.BIN
    bench_storage.BIN = venv_bin or saved
    try:
        return start_server(work, storage, 0)
    finally:
        bench_storage.BIN = saved


def version_forms(work: Path, name: str, version: str, files: int) -> list[tuple[bytes, str]]:
    """Upload forms of ``files`` wheels of one version (as twine sends a version's files
    one after another): the same wheel under other python tags (py3, py2, py30, ...)."""
    if files == 1:
        return [wheel_form(work, name, version)]
    path = make_wheel(work, name, version)
    data = path.read_bytes()
    path.unlink()
    tags = ["py3", "py2"] + [f"py3{n}" for n in range(files)]
    return [upload_form(name, version, path.name.replace("-py3-", f"-{tag}-"), data)
            for tag in tags[:files]]


def one_run(proc: Any, base: str, work: Path, kind: str, tag: str, auth: dict, args: Any) -> dict:
    bodies = [form for i in range(700 * args.duration // args.files_per_version)
              for form in version_forms(work, f"up-{kind}", f"{tag}.{i}", args.files_per_version)]
    before = threads_cpu(proc.pid)
    r = run_uploads(base, f"/alice/up-{kind}/", bodies, auth[kind], 1, args.duration)
    wait_idle(proc.pid)
    assert not r["errors"] and not r["non2xx"], r["first_bad"]
    after, n = threads_cpu(proc.pid), max(r["started"], 1)
    s = split(proc.pid, before, after, n)
    s.update(rate=r["rate"], p50=r["p50"])
    if args.per_thread:
        parts = sorted(((sum(after[t]) - sum(before.get(t, (0, 0)))) * 1e3 / n, t) for t in after)
        print("  per thread (ms/upload, tid):", ", ".join(
            f"{ms:.2f} {'main' if t == proc.pid else t}" for ms, t in reversed(parts) if ms))
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per run (4)")
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL, not sqlite")
    parser.add_argument("--per-thread", action="store_true", help="each thread's CPU per run too")
    parser.add_argument("--files-per-version", type=int, default=1,
                        help="files uploaded to each version, one after another (1; twine "
                             "sends an sdist and wheels of one version: 2 or more)")
    parser.add_argument("--against", type=Path, metavar="VENV_BIN",
                        help="also a server from this venv's bin directory (another tree, e.g. "
                             "main's), run in turns with this one, run by run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-upload-"))
    cluster, storages = None, [[]] * (2 if args.against else 1)
    if args.postgres:
        cluster = PgCluster()
        cluster.start()
        storages = [["--storage", cluster.storage_option(cluster.create_database())]
                    for _ in storages]
    trees = [("this", None)] + ([("against", args.against)] if args.against else [])
    servers: list[tuple[str, Any, str, dict]] = []
    rows: dict[tuple[str, str], list[dict]] = {}
    try:
        for (name, venv_bin), storage in zip(trees, storages):
            (work / name).mkdir()
            proc, base = start(work / name, storage, venv_bin)
            servers.append((name, proc, base, setup(base, work / name, {})))
            wait_idle(proc.pid)
        print(f"{'round':<6} {'tree':<8} {'auth':<6} {'up/s':>6} {'p50 ms':>7} {'CPU ms':>7} "
              f"{'main u+s':>12} {'others u+s':>12}", flush=True)
        for rnd in range(args.rounds):
            for kind in ("token", "basic"):
                order = servers if rnd % 2 == 0 else servers[::-1]
                for name, proc, base, auth in order:
                    s = one_run(proc, base, work, kind, str(rnd), auth, args)
                    rows.setdefault((name, kind), []).append(s)
                    print(f"{rnd:<6} {name:<8} {kind:<6} {s['rate']:>6.0f} {s['p50']:>7.2f} "
                          f"{s['total']:>7.2f} {s['main_user']:>5.2f}+{s['main_sys']:<5.2f} "
                          f"{s['other_user']:>5.2f}+{s['other_sys']:<5.2f}", flush=True)
    finally:
        for _, proc, _, _ in servers:
            stop_server(proc)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\nmedian (min-max) over rounds; CPU in ms of server CPU per upload")
    for (name, kind), runs in rows.items():
        def fig(key: str, fmt: str = ".2f") -> str:
            vals = [r[key] for r in runs]
            return (f"{statistics.median(vals):{fmt}} ({min(vals):{fmt}}-{max(vals):{fmt}})")
        print(f"{name:<8} {kind:<6} up/s {fig('rate', '.0f')}  CPU {fig('total')}  main "
              f"{fig('main_user')}+{fig('main_sys')}  others {fig('other_user')}+{fig('other_sys')}")
    if args.against:
        for kind in ("token", "basic"):
            diffs = [a["total"] - b["total"] for a, b in zip(rows["this", kind], rows["against", kind])]
            print(f"this - against, {kind}: median {statistics.median(diffs):+.2f} ms/upload "
                  f"(per round: {', '.join(f'{d:+.2f}' for d in diffs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
