"""Upload and login latency while 30 clients send wrong Basic passwords (issue 19 item 4).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in:
``VENV/bin/python bench/bench_login_flood.py [--flooders 30] [--seconds 20]``. To measure
other code (say main's), put its tree first: ``PYTHONPATH=/path/to/tree VENV/bin/python ...``
(the server is started with the same environment).

It starts a throw-away server on 127.0.0.1 (sqlite, one process), creates ``alice``
with an index and a pool of users for fresh logins, then runs two phases of the same
length: quiet, then flooded. Throughout each phase:

- one client uploads one small wheel after another to alice/dev with Basic
  ``alice:secret`` (as twine does), from 127.0.0.1; its first upload happens before
  the flood starts;
- one client logs in (``POST /+login``, right password) as the next pool user every
  half second, so each login pays a real argon2 check, from ``--login-source``;
- in the flooded phase only, ``--flooders`` clients send ``GET /alice/dev/+api`` with
  Basic ``alice:wrongN`` as fast as answers come, from ``--flood-source``, ignoring
  any ``Retry-After``.

Every request goes to 127.0.0.1 and the numbers of requests are bounded (per phase
time and ``--max-flood-requests``). Prints one table: latency percentiles, answer
statuses and the server's CPU seconds per phase.
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import cpu_seconds, start_server, stop_server  # noqa: E402
from bench_index import upload_form  # noqa: E402
from tests.support import make_wheel  # noqa: E402

USER, PASSWORD, INDEX = "alice", "secret", "dev"
LOGIN_EVERY = 0.5


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Conn:
    """One keep-alive connection to the server from a chosen local address."""

    def __init__(self, base: str, source: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self._args = (host, int(port))
        self._source = source
        self._conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """(status, body, seconds); status 0 for a broken connection."""
        start = time.monotonic()
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self._args, timeout=120,
                                                        source_address=(self._source, 0))
            self._conn.request(method, path, body=body, headers=headers or {})
            response = self._conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, data, time.monotonic() - start
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, b"", time.monotonic() - start

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def setup(base: str, pool: int) -> None:
    conn = Conn(base, "127.0.0.1")
    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    status, data, _ = conn.call("PUT", f"/{USER}", json.dumps({"password": PASSWORD}).encode(),
                                json_headers)
    assert status == 201, data
    auth = {**json_headers, "Authorization": basic(USER, PASSWORD)}
    status, data, _ = conn.call("PUT", f"/{USER}/{INDEX}", b'{"volatile": true}', auth)
    assert status == 200, data
    for n in range(pool):
        status, data, _ = conn.call("PUT", f"/login{n}", json.dumps({"password": f"pw{n}"}).encode(),
                                    json_headers)
        assert status == 201, data
    conn.close()


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.uploads: list[float] = []
        self.upload_status: collections.Counter[int] = collections.Counter()
        self.logins: list[float] = []
        self.login_status: collections.Counter[int] = collections.Counter()
        self.flood_status: collections.Counter[int] = collections.Counter()
        self.cpu = 0.0
        self.seconds = 0.0


def run_phase(args: argparse.Namespace, base: str, pid: int, phase: Phase, flooded: bool,
              versions: Iterator[str], logins: Iterator[int], wheels: Path) -> None:
    stop = threading.Event()
    flood_left = [args.max_flood_requests]
    lock = threading.Lock()

    def uploader() -> None:
        conn = Conn(base, "127.0.0.1")
        while not stop.is_set():
            version = next(versions)
            path = make_wheel(wheels, "floodpkg", version)
            body, ctype = upload_form("floodpkg", version, path.name, path.read_bytes())
            path.unlink()
            status, _, seconds = conn.call("POST", f"/{USER}/{INDEX}/", body, {
                "Content-Type": ctype, "Authorization": basic(USER, PASSWORD)})
            phase.uploads.append(seconds)
            phase.upload_status[status] += 1
        conn.close()

    def login_prober() -> None:
        conn = Conn(base, args.login_source)
        while not stop.wait(LOGIN_EVERY):
            n = next(logins)
            status, _, seconds = conn.call(
                "POST", "/+login", json.dumps({"user": f"login{n}", "password": f"pw{n}"}).encode(),
                {"Content-Type": "application/json", "Accept": "application/json"})
            phase.logins.append(seconds)
            phase.login_status[status] += 1
        conn.close()

    def flooder(k: int) -> None:
        conn = Conn(base, args.flood_source)
        n = 0
        while not stop.is_set():
            with lock:
                if flood_left[0] <= 0:
                    break
                flood_left[0] -= 1
            status, _, _ = conn.call("GET", f"/{USER}/{INDEX}/+api", headers={
                "Accept": "application/json", "Authorization": basic(USER, f"wrong{k}-{n}")})
            phase.flood_status[status] += 1
            n += 1
        conn.close()

    threads = [threading.Thread(target=uploader), threading.Thread(target=login_prober)]
    if flooded:
        threads += [threading.Thread(target=flooder, args=(k,)) for k in range(args.flooders)]
    cpu, start = cpu_seconds(pid), time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=300)
    phase.seconds = time.monotonic() - start
    phase.cpu = cpu_seconds(pid) - cpu


def report(phases: list[Phase]) -> None:
    def ms(values: list[float], p: float) -> str:
        return f"{percentile(values, p) * 1000:.0f}"

    def counts(counter: collections.Counter[int]) -> str:
        return " ".join(f"{status or 'broken'}:{n}" for status, n in sorted(counter.items()))

    print(f"{'phase':8} {'uploads':>7} {'up p50 ms':>9} {'up p99 ms':>9} {'up max ms':>9} "
          f"{'logins':>6} {'login p50':>9} {'login p99':>9} {'server cpu s':>12}")
    for phase in phases:
        print(f"{phase.name:8} {len(phase.uploads):7d} {ms(phase.uploads, 50):>9} "
              f"{ms(phase.uploads, 99):>9} {ms(phase.uploads, 100):>9} {len(phase.logins):6d} "
              f"{ms(phase.logins, 50):>9} {ms(phase.logins, 99):>9} {phase.cpu:12.1f}")
    for phase in phases:
        print(f"{phase.name}: {phase.seconds:.1f}s; upload statuses {counts(phase.upload_status)}; "
              f"login statuses {counts(phase.login_status)}; flood statuses "
              f"{counts(phase.flood_status) or '-'} "
              f"({sum(phase.flood_status.values()) / phase.seconds:.0f}/s)")
        if phase.uploads:
            print(f"  upload mean {statistics.mean(phase.uploads) * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flooders", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--flood-source", default="127.0.0.1",
                        help="local address the flood comes from (any of 127/8)")
    parser.add_argument("--login-source", default="127.0.0.2",
                        help="local address the fresh logins come from")
    parser.add_argument("--max-flood-requests", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    proc, base = start_server(workdir)
    try:
        pool = int(2 * args.seconds / LOGIN_EVERY) + 10
        setup(base, pool)
        versions = (f"1.0.{n}" for n in range(10**6))
        logins = iter(range(pool))
        wheels = workdir / "wheels"
        wheels.mkdir()
        code = os.environ.get("PYTHONPATH") or "the installed package"
        print(f"server {base} pid {proc.pid} (code: {code}); {args.flooders} flooders from "
              f"{args.flood_source}, logins from {args.login_source}, {args.seconds:.0f}s per phase")
        phases = [Phase("quiet"), Phase("flooded")]
        run_phase(args, base, proc.pid, phases[0], False, versions, logins, wheels)
        run_phase(args, base, proc.pid, phases[1], True, versions, logins, wheels)
        report(phases)
    finally:
        stop_server(proc)
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
