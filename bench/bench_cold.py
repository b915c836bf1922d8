"""Cold installs through the mirror only, this tree against another in turns.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_cold.py [--rounds 7] [--against VENV_BIN]
[--serverdir-in DIR] [--access-log]``. The upstream is bench_mirror's (nginx serving a
static index; ``benchapp`` needs 58 distributions). Each round, for each tree in turn
(the order alternating between rounds): ``pip install`` straight from nginx, then at
once through a fresh mirror server of that tree; the round's ratio is mirror/direct.
Printed per tree: the ratios (sorted: the spread) and their median, the server's CPU
(utime+stime) per cold install; with ``--against``, the paired differences. With
``--access-log`` the servers log each request, and the time from request to response
is summed per kind (simple pages, first file downloads) from the last round's log.
``--serverdir-in`` puts the servers' directories elsewhere (e.g. /dev/shm: no disk);
``--wrap eatmydata`` starts the servers under that command (every fsync skipped): with
the disk, the three show how much of the time goes to the server's writes.
``--syscalls``: after the rounds, two more installs per tree with the server under
``strace -c``: its file-system calls (fsyncs, links, renames...) while pip runs (what
competes with pip's own writes), and until the server is idle again (work deferred
past the install included), as counts.
Much shorter than bench_mirror (no wrk runs), for comparing changes to the cold path.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import bench_storage  # noqa: E402
from bench_api import stop_server  # noqa: E402
from bench_mirror import build_upstream, mirror_server, pip_install, start_nginx  # noqa: E402
from bench_storage import tree_cpu, wait_idle  # noqa: E402

# after an install: work a tree defers for a few seconds (branch i25-cold's sweep of the
# cached files) is part of the install's CPU
SWEEP_WAIT = 6.0
# the request line and the seconds at the end of an access-log line (web/site.py)
_ACCESS = re.compile(r'"(?:GET|HEAD) (\S+) HTTP/[\d.]+" (\d+) .* (\d+\.\d+)$')


def start(work: Path, upstream: str, venv_bin: Path | None, access_log: bool,
          wrap: list[str] | None = None):
    """A mirror server of this venv, or of ``venv_bin``, with --access-log if asked,
    under the ``wrap`` command if given."""
    saved_bin, saved_popen = bench_storage.BIN, bench_storage.subprocess.Popen

    def popen(command, *args, **kwargs):
        if "twistd" in str(command[0]):
            command = [*(wrap or []), *command, *(["--access-log"] if access_log else [])]
        return saved_popen(command, *args, **kwargs)

    bench_storage.BIN = venv_bin or saved_bin
    bench_storage.subprocess.Popen = popen
    try:
        return mirror_server(work, upstream)
    finally:
        bench_storage.BIN, bench_storage.subprocess.Popen = saved_bin, saved_popen


def request_times(log: Path) -> dict[str, list[float]]:
    """Seconds per request of the install, by kind, from a server's access log."""
    kinds: dict[str, list[float]] = {"page": [], "file": []}
    for line in log.read_text(errors="replace").splitlines():
        match = _ACCESS.search(line)
        if match is None:
            continue
        path, seconds = match.group(1), float(match.group(3))
        if "/+simple/" in path:
            kinds["page"].append(seconds)
        elif "/%2Bf/" in path or "/+f/" in path:
            kinds["file"].append(seconds)
    return kinds


SYSCALLS = ("fsync,fdatasync,openat,linkat,link,rename,renameat,renameat2,mkdir,mkdirat,"
            "unlink,unlinkat,pwrite64")


def syscall_counts(work: Path, label: str, upstream: str, venv_bin: Path | None,
                   serverdir_in: Path | None, until_idle: bool) -> dict[str, int]:
    """A cold install with the server under strace, until pip ends (or until the
    server is idle again): calls per name (see SYSCALLS)."""
    where = Path(tempfile.mkdtemp(prefix="cold-", dir=serverdir_in or work))
    proc, base = start(where, upstream, venv_bin, False)
    out = work / f"{label}-strace.txt"
    try:
        wait_idle(proc.pid)
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-e",
                                   f"trace={SYSCALLS}", "-p", str(proc.pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        pip_install(f"{base}/root/pypi/+simple/", work / f"strace-{label}-{until_idle}")
        if until_idle:
            wait_idle(proc.pid)
            time.sleep(SWEEP_WAIT)
            wait_idle(proc.pid)
        tracer.send_signal(2)
        tracer.wait(30)
    finally:
        stop_server(proc)
    counts = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1].isidentifier() and fields[3].isdigit():
            counts[fields[-1]] = int(fields[3])
    return counts


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds (7)")
    parser.add_argument("--projects", type=int, default=300, help="projects upstream (300)")
    parser.add_argument("--against", type=Path, metavar="VENV_BIN",
                        help="also another tree's venv bin directory, in turns")
    parser.add_argument("--serverdir-in", type=Path, metavar="DIR",
                        help="make the servers' directories under DIR (default: the work dir)")
    parser.add_argument("--wrap", metavar="COMMAND",
                        help="start the servers under COMMAND (e.g. eatmydata)")
    parser.add_argument("--syscalls", action="store_true",
                        help="one more install per tree under strace -c: file-system calls")
    parser.add_argument("--access-log", action="store_true",
                        help="per-request times of the last round, from the access log")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devpi-bench-cold-"))
    build_upstream(work / "nginx" / "www", args.projects, work)
    nginx, upstream = start_nginx(work / "nginx")
    trees = [("this", None)] + ([("against", args.against)] if args.against else [])
    rows: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in trees}
    logs: dict[str, Path] = {}
    try:
        print(f"cold install of benchapp (58 distributions), {args.rounds} rounds; "
              f"load {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
        for n in range(args.rounds):
            for label, venv_bin in trees if n % 2 == 0 else trees[::-1]:
                direct = pip_install(f"{upstream}/simple/", work / f"direct-{label}-{n}")
                where = Path(tempfile.mkdtemp(prefix="cold-", dir=args.serverdir_in or work))
                proc, base = start(where, upstream, venv_bin, args.access_log,
                                   args.wrap.split() if args.wrap else None)
                try:
                    wait_idle(proc.pid)
                    before = tree_cpu(proc.pid)
                    through = pip_install(f"{base}/root/pypi/+simple/",
                                          work / f"through-{label}-{n}")
                    time.sleep(SWEEP_WAIT)
                    wait_idle(proc.pid)
                    cpu = tree_cpu(proc.pid) - before
                finally:
                    stop_server(proc)
                rows[label].append((through / direct, cpu))
                print(f"round {n} {label:8} direct {direct:.2f} s, mirror {through:.2f} s, "
                      f"ratio {through / direct:.3f}, server CPU {cpu:.3f} s", flush=True)
                if n == args.rounds - 1:
                    logs[label] = work / f"{label}-server.log"
                    shutil.copy(where / "server.log", logs[label])
                if args.serverdir_in:
                    shutil.rmtree(where, ignore_errors=True)
        print()
        for label, _ in trees:
            ratios = sorted(r for r, _ in rows[label])
            cpus = sorted(c for _, c in rows[label])
            print(f"{label:8} ratio median {statistics.median(ratios):.3f} "
                  f"(rounds {' '.join(f'{r:.2f}' for r in ratios)}); server CPU per install "
                  f"median {statistics.median(cpus):.3f} s ({cpus[0]:.3f}-{cpus[-1]:.3f})")
        if args.against:
            diffs = [a[0] - b[0] for a, b in zip(rows["this"], rows["against"])]
            print(f"this - against, ratio: median {statistics.median(diffs):+.3f} "
                  f"(pairs {' '.join(f'{d:+.2f}' for d in sorted(diffs))})")
        if args.access_log:
            for label, log in logs.items():
                for kind, times in request_times(log).items():
                    if times:
                        print(f"{label:8} {kind}s: {len(times)}, p50 {quantile(times, .5) * 1e3:.2f} "
                              f"ms, p90 {quantile(times, .9) * 1e3:.2f} ms, sum "
                              f"{sum(times) * 1e3:.0f} ms")
        if args.syscalls:
            for until_idle in (False, True):
                for label, venv_bin in trees:
                    counts = syscall_counts(work, label, upstream, venv_bin, args.serverdir_in,
                                            until_idle)
                    print(f"{label:8} syscalls {'until idle' if until_idle else 'while pip runs'}: "
                          + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())))
        return 0
    finally:
        stop_server(nginx)
        time.sleep(0.1)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
