"""Server memory while documentation pages that inflate enormously are read.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_doc_bomb.py [--inflate-mib 512]
[--parallel 3] [--storage OPTION]``. It starts a throw-away server on 127.0.0.1,
uploads a doc zip of about half a MiB whose index.html inflates to ``--inflate-mib``
MiB, GETs the page ``--parallel`` times at once (reading and dropping the bytes) and
prints the server's RSS (VmRSS from /proc/PID/status, sampled every 10 ms, and VmHWM)
before, at the peak and after. Requests go to 127.0.0.1 only, each with a timeout.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

BIN = Path(sys.executable).parent
MiB = 1024 * 1024
START_TIMEOUT = 120.0
FAST_ARGON2 = ["--argon2-memory-cost", "64", "--argon2-time-cost", "1",
               "--argon2-parallelism", "1"]


def bomb(inflate_mib: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("index.html", "w", force_zip64=True) as member:
            block = b" " * MiB
            for _ in range(inflate_mib):
                member.write(block)
    return out.getvalue()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_server(workdir: Path, storage: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    serverdir = workdir / "server"
    subprocess.run([str(BIN / "devpi-twisted"), "init", "--serverdir", str(serverdir),
                    "--no-root-pypi", *storage], check=True, stdout=subprocess.DEVNULL)
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(serverdir),
             "--host", "127.0.0.1", "--port", "0", *FAST_ARGON2, *storage],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return proc, json.loads((serverdir / ".listening").read_text())[0]
        except (OSError, ValueError, IndexError):
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError((workdir / "server.log").read_text(errors="replace")[-2000:])


def request(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def upload(url: str, zipped: bytes) -> None:
    status, body = request(url, "POST", "/+login", json.dumps({"user": "root", "password": ""})
                           .encode(), {"Content-Type": "application/json"})
    assert status == 200, body
    token = json.loads(body)["result"]["password"]
    auth = {"X-Devpi-Auth": base64.b64encode(f"root:{token}".encode()).decode(),
            "Content-Type": "application/json"}
    assert request(url, "PUT", "/root/docs", b"{}", auth)[0] == 200
    boundary = uuid.uuid4().hex
    fields = {":action": "doc_upload", "name": "bomb", "version": "1.0"}
    form = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    .encode() for k, v in fields.items())
    form += (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
             f'filename="bomb-1.0.doc.zip"\r\n\r\n').encode() + zipped + \
        f"\r\n--{boundary}--\r\n".encode()
    auth["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    status, body = request(url, "POST", "/root/docs/", form, auth)
    assert status == 200, (status, body)


def fetch_page(url: str, results: list[tuple[int, int, float]]) -> None:
    parts = urlsplit(url)
    started = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    received, status = 0, -1
    try:
        conn.request("GET", "/root/docs/bomb/1.0/+doc/index.html")
        response = conn.getresponse()
        status = response.status
        while chunk := response.read(MiB):
            received += len(chunk)
    except OSError:
        pass
    finally:
        conn.close()
    results.append((status, received, time.monotonic() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inflate-mib", type=int, default=512)
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--storage", default="", help="a --storage option (default sqlite)")
    args = parser.parse_args()
    zipped = bomb(args.inflate_mib)
    workdir = Path(tempfile.mkdtemp(prefix="bench-doc-bomb-"))
    proc, url = start_server(workdir, ["--storage", args.storage] if args.storage else [])
    try:
        upload(url, zipped)
        time.sleep(1)
        before = status_kib(proc.pid, "VmRSS")
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], status_kib(proc.pid, "VmRSS"))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        results: list[tuple[int, int, float]] = []
        clients = [threading.Thread(target=fetch_page, args=(url, results))
                   for _ in range(args.parallel)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        time.sleep(1)
        done.set()
        sampler.join()
        after = status_kib(proc.pid, "VmRSS")
        hwm = status_kib(proc.pid, "VmHWM")
        print(f"doc zip {len(zipped) / 1024:.0f} KiB, index.html {args.inflate_mib} MiB, "
              f"{args.parallel} parallel GETs, storage {args.storage.split(':')[0] or 'sqlite'}")
        for status, received, seconds in results:
            print(f"  GET: status {status}, {received / MiB:.0f} MiB in {seconds:.1f} s")
        print(f"server RSS MiB: before {before / 1024:.0f}, peak {peak[0] / 1024:.0f} "
              f"(VmHWM {hwm / 1024:.0f}), after {after / 1024:.0f}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
