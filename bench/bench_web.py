"""Server CPU per warm request of the web pages (issue 22), and of the JSON and
simple-page paths beside them (they must not get slower).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_web.py [--duration 5] [--rounds 2]
[--baseline SRC]``. It starts a throw-away server on 127.0.0.1 with alice/dev holding
1,000 projects and ``pkg`` 1.0 (a Markdown description, metadata, two files, a tox
result), loads each page with ``wrk`` (1 connection: CPU per request, not
throughput) and prints req/s, latency and the server's CPU per request (utime+stime
of its process tree from /proc). Targets (issue 22): version page <= 2 ms, index page
with 1,000 projects <= 5 ms. ``--baseline SRC``: the JSON and simple cases also on a
second server run from another source tree (e.g. ``git archive main | tar -x -C SRC``),
the two measured in turn, case by case, so both see the same load on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_api import auth_header, request, stop_server  # noqa: E402
from bench_index import begin, combine, measure, pin, run_wrk, upload_form  # noqa: E402
from bench_storage import start_server, wait_idle  # noqa: E402
from tests.web.test_fuzz import _sdist  # noqa: E402

USER, PASSWORD, PROJECTS = "alice", "secret", 1000
PUT = {"Content-Type": "application/json", "Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}
JSON = {"Accept": "application/json"}
PIP_JSON = {"User-Agent": "pip/24.0", "Accept": "application/vnd.pypi.simple.v1+json"}
PIP_HTML = {"User-Agent": "pip/24.0", "Accept": "text/html"}
DESCRIPTION = "# pkg\n\nSome *Markdown* with `code`, a [link](https://example.org) and\n\n" + \
    "\n".join(f"- item {i} with **bold** text" for i in range(60))
TOX = json.dumps({"host": "ci", "platform": "linux", "testenvs": {
    env: {"test": [{"command": ["pytest"], "retcode": 0, "output": "passed\n" * 50}]}
    for env in ("py311", "py312", "py313")}}).encode()

WEB_CASES = [  # (name, path, headers, target ms or None)
    ("html version page", "/alice/dev/pkg/1.0", BROWSER, 2.0),
    ("html index 1000 proj", "/alice/dev", BROWSER, 5.0),
    ("html project page", "/alice/dev/pkg", BROWSER, None),
    ("html root", "/", BROWSER, None),
]
API_CASES = [
    ("json version", "/alice/dev/pkg/1.0", JSON, None),
    ("json index", "/alice/dev?no_projects", JSON, None),
    ("json project", "/alice/dev/pkg", JSON, None),
    ("simple json (pip)", "/alice/dev/+simple/pkg/", PIP_JSON, None),
    ("simple html (pip)", "/alice/dev/+simple/pkg/", PIP_HTML, None),
    ("index url (pip)", "/alice/dev/pkg", PIP_HTML, None),
]


def setup(base: str) -> None:
    request(base, "PUT", f"/{USER}", json.dumps({"password": PASSWORD}).encode(), PUT, 201)
    login = json.dumps({"user": USER, "password": PASSWORD}).encode()
    token = json.loads(request(base, "POST", "/+login", login, PUT))["result"]["password"]
    auth = {"X-Devpi-Auth": auth_header(USER, token)}
    request(base, "PUT", f"/{USER}/dev", b"{}", {**PUT, **auth})
    for n in range(PROJECTS):
        name = f"proj{n:04d}"
        body, ctype = upload_form(name, "1.0", f"{name}-1.0.tar.gz", _sdist(name, "1.0"))
        request(base, "POST", f"/{USER}/dev/", body, {**auth, "Content-Type": ctype})
    for version in ("1.0", "0.9"):
        body, ctype = upload_form("pkg", version, f"pkg-{version}.tar.gz", _sdist("pkg", version))
        body = _with_metadata(body, ctype)
        request(base, "POST", f"/{USER}/dev/", body, {**auth, "Content-Type": ctype})
    links = json.loads(request(base, "GET", "/alice/dev/pkg/1.0", None, JSON))["result"]["+links"]
    target = "/" + links[0]["href"].split("/", 3)[3]
    request(base, "POST", target, TOX, {**auth, "Content-Type": "application/json"})


def _with_metadata(body: bytes, ctype: str) -> bytes:
    """The upload form with a description and metadata fields added in front."""
    boundary = ctype.split("boundary=", 1)[1]
    fields = [("description", DESCRIPTION), ("description_content_type", "text/markdown"),
              ("summary", "A package"), ("requires_python", ">=3.9"),
              ("requires_dist", "attrs>=23"), ("license", "MIT"), ("author", "Alice"),
              ("classifiers", "Programming Language :: Python :: 3")]
    parts = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                     .encode() for k, v in fields)
    return parts + body


def serve(label: str, cases: list, env: dict[str, str] | None, work: Path,
          ) -> tuple[subprocess.Popen, str]:
    """A server of this tree (``env`` None) or of the baseline's, set up and warm."""
    setdir = work / label
    setdir.mkdir()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc, base = start_server(setdir, [], 0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    t0 = time.monotonic()
    setup(base)
    print(f"[{label}] set up in {time.monotonic() - t0:.0f} s", flush=True)
    for name, path, headers, _ in cases:  # warm, and check each is served
        request(base, "GET", path, None, headers)
    pages = request(base, "GET", "/", None, BROWSER, 200 if env is None else 404)
    print(f"[{label}] / for a browser: {pages[:50]!r}", flush=True)
    wait_idle(proc.pid)
    pin(proc.pid, "0")
    return proc, base


def report(label: str, cases: list, results: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"\n== {label}: {args.rounds} rounds of {args.duration} s per case, 1 connection")
    print(f"{'case':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} "
          f"{'errors':>6}  target")
    for name, _, _, target in cases:
        r = results[name]
        verdict = "" if target is None else (
            f"<= {target} ms: {'ok' if r['cpu'] <= target else 'MISSED'}")
        print(f"{name:<22} {r['rate']:>8.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['cpu']:>10.3f} "
              f"{r['errors'] + r['non2xx']:>6}  {verdict}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    parser.add_argument("--baseline", type=Path, help="source tree to compare JSON/simple with")
    args = parser.parse_args()
    work, lua = begin("devpi-bench-web-")
    t0 = time.monotonic()
    servers = {"this tree": (WEB_CASES + API_CASES, None)}
    if args.baseline is not None:
        servers["baseline"] = (API_CASES, {"PYTHONPATH": str(args.baseline.resolve())})
    running: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for label, (cases, env) in servers.items():
            running[label] = serve(label, cases, env, work)
        runs = {label: {name: [] for name, *_ in cases} for label, (cases, _) in servers.items()}
        for _ in range(args.rounds):  # the servers in turn, case by case: the same load
            for name, path, headers, _ in WEB_CASES + API_CASES:
                for label, (proc, base) in running.items():
                    if name in runs[label]:
                        runs[label][name].append(measure(proc.pid, None, lambda: run_wrk(
                            base + path, headers, 1, args.duration, lua)))
    finally:
        for proc, _ in running.values():
            stop_server(proc)
    results = {label: {name: combine(r) for name, r in found.items()}
               for label, found in runs.items()}
    for label, (cases, _) in servers.items():
        report(label, cases, results[label], args)
    if args.baseline is not None:
        print("\n== JSON and simple pages: this tree vs baseline (CPU ms/req, measured in turns)")
        for name, *_ in API_CASES:
            a, b = results["this tree"][name]["cpu"], results["baseline"][name]["cpu"]
            print(f"{name:<22} {a:>8.3f} {b:>8.3f}  {(a / b - 1) * 100:+6.1f} %")
    print(f"\n({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
