"""The cost of read permission: a warm simple page of a private index against the same
page of an equal public index (issue 21: server CPU per request, target under 10 % more).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in:
``VENV/bin/python bench/bench_private.py [--duration 5] [--rounds 3] [--postgres]``.
On a fresh server: alice/pubtop inherits alice/pubbase, alice/privtop inherits
alice/privbase (both private: ``acl_read=bob``), each with the same 8 wheels of proj0
over the two. wrk (1 thread, 10 connections, pinned apart from the server as in
bench_index.py) loads ``/alice/*top/+simple/proj0/`` as pip asks (JSON), as bob: with
his password (Basic, what pip sends from a URL, .netrc or keyring) and with a login
token (X-Devpi-Auth); the public page also anonymously. Cases alternate, ``--rounds``
times, so drift of the machine hits all alike. Server CPU: utime+stime of twistd
from a run's start until idle, per request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from base64 import b64encode
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import auth_header, request, stop_server  # noqa: E402
from bench_index import JSON_ACCEPT, begin, combine, measure, pin, run_wrk, wheel_form  # noqa: E402
from bench_storage import start_server, wait_idle  # noqa: E402
from tests.pg import PgCluster  # noqa: E402

OWNER, READER, PASSWORD = "alice", "bob", "secret"
PUT = {"Content-Type": "application/json", "Accept": "application/json"}


def _login(base: str, user: str) -> str:
    body = json.dumps({"user": user, "password": PASSWORD}).encode()
    return json.loads(request(base, "POST", "/+login", body, PUT))["result"]["password"]


def setup(base: str, tmp: Path) -> dict[str, dict[str, str]]:
    """Users, the two chains and their wheels; returns the credentials' headers."""
    for user in (OWNER, READER):
        request(base, "PUT", f"/{user}", json.dumps({"password": PASSWORD}).encode(), PUT, 201)
    owner = {"X-Devpi-Auth": auth_header(OWNER, _login(base, OWNER))}
    for kind, acl in (("pub", ":ANONYMOUS:"), ("priv", READER)):
        for index, bases in ((f"{kind}base", []), (f"{kind}top", [f"{OWNER}/{kind}base"])):
            config = {"bases": bases, "acl_read": acl}
            request(base, "PUT", f"/{OWNER}/{index}", json.dumps(config).encode(), {**PUT, **owner})
            for i in range(4):
                body, ctype = wheel_form(tmp, "proj0", f"{index.endswith('top') + 1}.{i}")
                request(base, "POST", f"/{OWNER}/{index}/", body, {**owner, "Content-Type": ctype})
    token = _login(base, READER)
    return {"anonymous": {},
            "basic": {"Authorization": "Basic " + b64encode(f"{READER}:{PASSWORD}".encode()).decode()},
            "token": {"X-Devpi-Auth": auth_header(READER, token)}}


def bench(label: str, storage: list[str], db: int | None, args: argparse.Namespace,
          work: Path, lua: Path) -> dict[str, dict]:
    setdir = work / label
    setdir.mkdir()
    proc, base = start_server(setdir, storage, 0)
    try:
        auth = setup(base, setdir)
        cases = [(f"{kind} {who}", f"{base}/{OWNER}/{kind}top/+simple/proj0/", auth[who])
                 for kind in ("pub", "priv") for who in ("basic", "token")]
        cases.insert(0, ("pub anonymous", f"{base}/{OWNER}/pubtop/+simple/proj0/", {}))
        for name, url, headers in cases:  # warm, and check what each case is served
            page = json.loads(request(base, "GET", url[len(base):], None, {**JSON_ACCEPT, **headers}))
            assert len(page["files"]) == 8, (name, page)
        request(base, "GET", f"/{OWNER}/privtop/+simple/proj0/", None, JSON_ACCEPT, 401)
        wait_idle(proc.pid)
        pin(proc.pid, "0")
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in cases}
        for _ in range(args.rounds):
            for name, url, headers in cases:
                runs[name].append(measure(proc.pid, db, lambda: run_wrk(
                    url, {**JSON_ACCEPT, **headers}, 10, args.duration, lua)))
        results = {name: combine(r) for name, r in runs.items()}
    finally:
        stop_server(proc)
    print(f"\n== {label}: {args.rounds} rounds of {args.duration} s per case, 10 connections")
    print(f"{'case':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'errors':>6}")
    for name, r in results.items():
        print(f"{name:<16} {r['rate']:>8.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['cpu']:>10.4f} "
              f"{r['errors'] + r['non2xx']:>6}")
    for who in ("basic", "token"):
        pub, priv = results[f"pub {who}"]["cpu"], results[f"priv {who}"]["cpu"]
        more = (priv / pub - 1) * 100
        print(f"private/public ({who}): {priv:.4f} / {pub:.4f} ms = {more:+.1f} % "
              f"(target < +10 %: {'ok' if more < 10 else 'MISSED'})")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    work, lua = begin("devpi-bench-private-")
    t0 = time.monotonic()
    bench("sqlite", [], None, args, work, lua)
    if args.postgres:
        cluster = PgCluster()
        try:
            cluster.start()
            storage = ["--storage", cluster.storage_option(cluster.create_database())]
            postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
            bench("postgres", storage, postmaster, args, work, lua)
        finally:
            cluster.stop()
    print(f"\n({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
