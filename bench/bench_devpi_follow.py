"""Moving from devpi-server (issue 24, "Judged by"): a real devpi-server primary holding
1,000 releases and 2,000 files, followed by a fresh devpi-twisted replica; how long the
replica takes to catch up (metadata, then every file body), the replica's CPU for it,
and how long ``devpi-twisted promote`` takes.

Run by hand, never in CI, from the repository root with the python of the venv
devpi-twisted is installed in:
``VENV/bin/python bench/bench_devpi_follow.py [--major 6|7] [--projects 100]
[--versions 10]``. devpi-server comes from tests/dump/devpi6.py (share an installed
one with ``DEVPI_TWISTED_DEVPI6_VENV`` / ``DEVPI_TWISTED_DEVPI7_VENV``). Each release
is a wheel and an sdist; the primary is filled over HTTP with four uploads at a time
(that part is not measured).

Figures of 2026-12-07 (2 cores shared with four other helpers' work, sqlite, 100
projects x 10 versions x (wheel + sdist) = 2,000 files, 2,002 serials). devpi 6: three
runs (the first two under heavier load, before devpi's own answer time was measured);
devpi 7: two runs:

| | devpi-server 6.20.3 | devpi-server 7.0.0b4 |
| --- | --- | --- |
| replica at the primary's serial (daemon start included) | 26.1 / 23.3 / 16.6 s | 53.3 / 57.6 s |
| every file body fetched and verified | 28.6 / 25.3 / 16.7 s | 78.5 / 83.8 s |
| replica CPU (utime+stime) for the catch-up | 9.1 / 10.2 / 8.7 s | 11.6 / 12.1 s |
| promote (the command, wall clock) | 2.02 / 1.99 / 0.60 s | 1.09 / 0.75 s |
| devpi's own first answer to /+changelog/0- | - / - / 0.9 s (5.1 MB) | - / 19.1 s (2.2 MB) |

Much of the wall time is devpi's: devpi 7 takes 19 s to put together its first answer
(and serves files slowly); on our side each serial is one local transaction.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
from tests.dump import devpi6  # noqa: E402
from tests.replication.devpi_primary import (  # noqa: E402
    ROOT_PASSWORD, caught_up, devpi_primary, replica_status, serial_of, start_replica,
)
from tests.support import FAST_ARGON2, bin_path, make_sdist, make_wheel  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def changelog_seconds(primary: devpi6.Devpi6, major: int) -> tuple[float, int]:
    """How long devpi takes to answer ``/+changelog/0-`` as our replica asks for it (with
    a replica token of the shared secret): seconds, and bytes of the answer."""
    import urllib.request
    import uuid

    from devpi_twisted.model.tokens import TokenSigner, derive_keys
    from devpi_twisted.replication.devpi_follow import DEVPI6_TYPE, DEVPI7_TYPE

    cost = dict(zip(FAST_ARGON2[::2], map(int, FAST_ARGON2[1::2])))
    keys = derive_keys((primary.serverdir.parent / "secret").read_bytes(),
                       cost["--argon2-time-cost"], cost["--argon2-memory-cost"],
                       cost["--argon2-parallelism"])
    me = uuid.uuid4().hex
    request = urllib.request.Request(primary.url + "/+changelog/0-", headers={
        "X-Devpi-Replica-Uuid": me, "X-Devpi-Expected-Primary-Id": "",
        "Authorization": f"Bearer {TokenSigner(keys.replica, time.time).make(me)}",
        "Accept": DEVPI7_TYPE if major >= 7 else DEVPI6_TYPE})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as response:
        size = len(response.read())
    return time.monotonic() - started, size


def fill(url: str, work: Path, projects: int, versions: int) -> int:
    root = devpi6.login(url, "root", ROOT_PASSWORD)
    status, reply = devpi6.call(url + "/bench", "PUT", {"password": "bench-pw"}, auth=root)
    assert status == 201, reply
    auth = devpi6.login(url, "bench", "bench-pw")
    status, reply = devpi6.call(url + "/bench/dev", "PUT", {"bases": []}, auth=auth)
    assert status == 200, reply
    jobs = []
    for p in range(projects):
        name = f"bench-pkg{p:04d}"
        for v in range(versions):
            version = f"1.{v}"
            folder = work / name
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((make_wheel(folder, name, version), name, version))
            jobs.append((make_sdist(folder, name, version), name, version))

    def one(job: tuple[Path, str, str]) -> None:
        devpi6.upload(url + "/bench/dev", auth, job[0], job[1], job[2])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, jobs))
    return len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--major", type=int, default=6, choices=(6, 7))
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-devpi-follow-") as tmp:
        base = Path(tmp)
        with devpi_primary(base / "primary", args.major) as primary:
            started = time.monotonic()
            files = fill(primary.url, base / "work", args.projects, args.versions)
            serial = serial_of(primary.url)
            print(f"devpi-server {args.major}.x primary: {args.projects * args.versions} releases, "
                  f"{files} files, serial {serial} (filled in {time.monotonic() - started:.1f}s)")
            answer, size = changelog_seconds(primary, args.major)
            started = time.monotonic()
            replica = start_replica(base / "replica", primary)
            try:
                assert replica.proc is not None
                while replica_status(replica)["serial"] < serial:
                    time.sleep(0.05)
                metadata = time.monotonic() - started
                status = caught_up(replica, primary.url, timeout=900)
                everything = time.monotonic() - started
                cpu = cpu_seconds(replica.proc.pid)
            finally:
                replica.stop()
        assert status["replica-files-fetched"] >= files, status
        started = time.monotonic()
        done = subprocess.run([bin_path("devpi-twisted"), "promote", "--serverdir",
                               str(base / "replica")], capture_output=True, text=True)
        promote = time.monotonic() - started
        assert done.returncode == 0, done.stderr
    print()
    print("| what | seconds |")
    print("| --- | --- |")
    print(f"| catch-up: replica at the primary's serial (start included) | {metadata:.1f} |")
    print(f"| catch-up: every file body fetched and verified | {everything:.1f} |")
    print(f"| replica CPU (utime+stime) for the catch-up | {cpu:.1f} |")
    print(f"| promote (the command, wall clock) | {promote:.2f} |")
    print(f"| devpi's first answer to /+changelog/0- alone ({size} bytes) | {answer:.1f} |")
    print(f"\n{files / everything:.0f} files/s, {serial / metadata:.0f} serials/s; "
          f"promote said: {done.stdout.strip()}")


if __name__ == "__main__":
    main()
