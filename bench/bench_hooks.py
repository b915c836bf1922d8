"""Upload latency with webhooks: one client uploading sequentially to a throw-away
sqlite server with no hooks, then with hooks (every event) to a dead receiver
(connection refused) and to a stalled one (accepts, never answers), (issue 23).

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in:
``VENV/bin/python bench/bench_hooks.py [--uploads 200] [--hooks 5]``. Prints one line
per case: median, p95 and mean latency of an upload in ms, and the queue depth the
server reports in /+metrics afterwards.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
BOUNDARY = "bench-hooks"


def _call(url: str, method: str, body: object, auth: tuple[str, str] | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Accept": "application/json"})
    if auth:
        request.add_header("X-Devpi-Auth", base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _upload(conn: http.client.HTTPConnection, auth: str, version: str) -> float:
    fields = [(":action", "file_upload"), ("name", "pkg"), ("version", version),
              ("protocol_version", "1")]
    body = b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    .encode() for k, v in fields)
    body += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
             f'filename="pkg-{version}.tar.gz"\r\n\r\n').encode() + b"x" * 4096
    body += f"\r\n--{BOUNDARY}--\r\n".encode()
    started = time.perf_counter()
    conn.request("POST", "/alice/dev/", body, {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Authorization": f"Basic {auth}"})
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
    return time.perf_counter() - started


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"


def _stalled_url() -> tuple[str, socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1000)
    kept: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                kept.append(s.accept()[0])  # never answered
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{s.getsockname()[1]}/hook", s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--hooks", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    serverdir = work / "state"
    subprocess.run([str(BIN / "devpi-twisted"), "init", "--serverdir", str(serverdir),
                    "--no-root-pypi"], check=True, capture_output=True)
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen([str(BIN / "twistd"), "-n", "--pidfile=", "devpi", "--serverdir",
                             str(serverdir), "--host", "127.0.0.1", "--port", "0"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=str(work))
    try:
        listening = serverdir / ".listening"
        deadline = time.monotonic() + 120
        while not listening.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.1)
        url = json.loads(listening.read_text())[0]
        _call(url + "/alice", "PUT", {"password": "pw"})
        token = _call(url + "/+login", "POST", {"user": "alice", "password": "pw"})
        auth = ("alice", token["result"]["password"])
        _call(url + "/alice/dev", "PUT", {}, auth)
        basic = base64.b64encode(b"alice:pw").decode()
        host, port = url.split("//")[1].split(":")
        stalled, keep = _stalled_url()
        cases = [("no hooks", None), ("dead receiver", _dead_url()), ("stalled receiver", stalled)]
        version = 0
        print(f"{args.uploads} sequential uploads per case, {args.hooks} hooks per receiver")
        for name, hook_url in cases:
            if hook_url is not None:
                for _ in range(args.hooks):
                    _call(url + "/alice/dev/+hooks", "POST", {
                        "url": hook_url, "secret": "bench-secret",
                        "events": ["upload", "index"]}, auth)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            for _ in range(10):  # warm up
                version += 1
                _upload(conn, basic, f"0.{version}")
            times = []
            for _ in range(args.uploads):
                version += 1
                times.append(_upload(conn, basic, f"1.{version}") * 1000)
            conn.close()
            with urllib.request.urlopen(url + "/+metrics", timeout=30) as response:
                depth = [line for line in response.read().decode().splitlines()
                         if line.startswith("devpi_webhook_queue_depth")]
            times.sort()
            print(f"{name:18} median {statistics.median(times):6.2f} ms  "
                  f"p95 {times[int(len(times) * 0.95)]:6.2f} ms  "
                  f"mean {statistics.mean(times):6.2f} ms  "
                  f"queue {depth[0].rsplit(' ', 1)[1] if depth else '?'}")
            if hook_url is not None:
                for hook in _call(url + "/alice/dev/+hooks", "GET", None, auth)["result"]:
                    request = urllib.request.Request(f"{url}/alice/dev/+hooks/{hook['id']}",
                                                     method="DELETE")
                    request.add_header("X-Devpi-Auth",
                                       base64.b64encode(":".join(auth).encode()).decode())
                    urllib.request.urlopen(request, timeout=30).read()
        keep.close()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


if __name__ == "__main__":
    main()
