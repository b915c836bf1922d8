"""Issue 19 items 18 and 23, by hand (never in CI): what looking up names the project
list lacks, and holding back a first download's last bytes until its hash is checked,
cost. Run with the python of the venv devpi-twisted is installed in:
``VENV/bin/python bench/bench_mirror_hardening.py [--size-mb 50] [--clients 100]``.

A fake PyPI (tests/fakepypi.py, its own process) serves one wheel and ``--files``
sdists of ``--size-mb``; a fresh daemon (sqlite) mirrors it as root/pypi. Printed:
- a name the list lacks: the first request (one upstream round trip), the next ones
  (upstream's "no" believed for a minute), and ``--clients`` concurrent requests for one
  more such name: their wall time and how many requests upstream got (one);
- a project published after the list was fetched: the first page request;
- cold first downloads of the big files (streamed, the last piece held back until the
  hash is checked) and warm ones (from the store): medians in MB/s;
- a first download whose bytes fail the hash: how many bytes the client got of how many.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]
from tests.fakepypi import FakePyPI  # noqa: E402
from tests.support import Daemon, call, init_serverdir, login, make_wheel  # noqa: E402

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=JSON), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def timed(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    status, _ = get(url)
    return (time.perf_counter() - start) * 1000, status


def raw_length(url: str) -> tuple[int, int]:
    """(bytes received, Content-Length) of a GET over a plain socket."""
    parts = urllib.parse.urlsplit(url)
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Connection: close\r\n\r\n".encode())
        try:
            while chunk := sock.recv(1 << 16):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    length = [line for line in head.decode().split("\r\n") if line.lower().startswith(
        "content-length:")]
    return len(body), int(length[0].split(":")[1]) if length else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=50, help="the big file (50)")
    parser.add_argument("--clients", type=int, default=100, help="concurrent lookups (100)")
    parser.add_argument("--files", type=int, default=5, help="big files, each downloaded "
                        "cold then warm: the medians are printed (5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fake = FakePyPI(work / "fake")
        fake.add(make_wheel(work, "early", "1.0"))
        for version in range(args.files):
            big = work / f"bigfile-{version}.0.tar.gz"
            big.write_bytes(os.urandom(args.size_mb << 20))
            fake.add(big)
        fake.start()
        serverdir = work / "server"
        init_serverdir(serverdir)
        daemon = Daemon(serverdir).start()
        try:
            root = login(daemon.url, "root", "")
            call(daemon.url + "/root/pypi", "PATCH", [f"mirror_url={fake.url}"], root)
            simple = daemon.url + "/root/pypi/+simple/"
            while b'"early"' not in get(simple)[1]:
                time.sleep(0.05)
            rows = []
            first = timed(simple + "absent1/")
            again = [timed(simple + "absent1/")[0] for _ in range(200)]
            rows.append(("missing name: first request (ms)", f"{first[0]:.1f} ({first[1]})"))
            rows.append(("missing name: next 200, median (ms)", f"{statistics.median(again):.2f}"))
            seen = len(fake.requests())
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                statuses = list(pool.map(lambda _: get(simple + "absent2/")[0],
                                         range(args.clients)))
            wall = (time.perf_counter() - start) * 1000
            asked = [r for r in fake.requests()[seen:] if r["path"] == "/simple/absent2/"]
            rows.append((f"{args.clients} concurrent, one missing name: wall (ms)",
                         f"{wall:.0f}, statuses {sorted(set(statuses))}, upstream asked "
                         f"{len(asked)}x"))
            fake.add(make_wheel(work, "latecomer", "1.0"))
            late = timed(simple + "latecomer/")
            rows.append(("published after the list: first page (ms)",
                         f"{late[0]:.1f} ({late[1]})"))
            files = json.loads(get(simple + "bigfile/")[1])["files"]
            urls = [urllib.parse.urljoin(simple + "bigfile/", f["url"]).split("#")[0]
                    for f in files]
            fake.set(corrupt=True)
            got, length = raw_length(urls[0])
            fake.set(corrupt=None)
            rows.append(("wrong bytes: client received / Content-Length", f"{got} / {length}"))
            speeds: dict[str, list[float]] = {"cold": [], "warm": []}
            for url in urls:
                for label in ("cold", "warm"):
                    start = time.perf_counter()
                    status, body = get(url)
                    assert status == 200, status
                    speeds[label].append(len(body) / (time.perf_counter() - start) / (1 << 20))
            for label, values in speeds.items():
                rows.append((f"{label} download of {args.size_mb} MB, median (MB/s)",
                             f"{statistics.median(values):.0f} of {len(values)}"))
        finally:
            daemon.stop()
            fake.stop()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
