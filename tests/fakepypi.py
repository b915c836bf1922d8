"""A fake upstream PyPI for the mirror's tests, running in its own process.

Server (twisted.web on 127.0.0.1), started by :class:`FakePyPI` or by hand::

    python tests/fakepypi.py --port 0 --root DIR --state FILE [--log FILE] [--port-file FILE]
    python -m tests.fakepypi ...                        # the same, from the project root

It serves ``/simple/`` (project list), ``/simple/<project>/`` (PEP 503 HTML or PEP 691
JSON with the PEP 700 fields, by ``Accept``) and ``/files/<sha256[:2]>/<filename>``
(plus ``<filename>.metadata`` for wheels, PEP 658, when the ``metadata`` switch is on),
for GET and HEAD. Every page carries ``ETag`` and ``X-PyPI-Last-Serial``.

The server only reads: ``DIR/index.json`` (the published files, written by
:meth:`FakePyPI.add`) and the state file (the switches, written by :meth:`FakePyPI.set`)
are re-read on every request, so both may change while it runs. Each answered request
is appended to the JSON-lines log before its response is sent.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
API_VERSION = "1.1"
INDEX = "index.json"
PING = "/-/ping"  # answered before any switch applies and never logged: start() polls it
LOGGED_HEADERS = ("accept", "if-none-match", "authorization", "user-agent")

# Every switch is off while absent from the state file (or set to None).
SWITCHES = frozenset({
    "latency",          # float: seconds to wait before answering anything
    "status",           # int: answer every request with this status
    "paths_status",     # {path prefix: status}: fail only matching paths (longest prefix wins)
    "retry_after",      # int: Retry-After header sent with the two switches above
    "reset",            # bool: abort the connection without answering
    "truncate",         # bool: send half of a file body, then close (full Content-Length)
    "wrong_hash",       # bool: pages advertise a wrong sha256 for every file
    "corrupt",          # bool: file bodies have their last byte changed (same length)
    "only",             # "json" | "html": serve that format whatever Accept says
    "no_etag",          # bool: no ETag, If-None-Match ignored
    "serial",           # int: X-PyPI-Last-Serial (and the serial in pages) for every reply
    "yank",             # {filename: reason or true}
    "requires_python",  # {project: specifier} for every file of the project
    "metadata",         # bool: advertise and serve <file>.metadata (wheels only)
})


# --- shared by both processes -----------------------------------------------------------

def split_filename(filename: str) -> tuple[str, str]:
    """(normalised project name, version) of a wheel or sdist filename; ValueError otherwise."""
    if filename.endswith(".whl"):
        parts = filename[:-len(".whl")].split("-")
        if len(parts) < 5:
            raise ValueError(f"not a wheel filename: {filename}")
        return canonicalize_name(parts[0]), parts[1]
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            name, dash, version = filename[:-len(suffix)].rpartition("-")
            if dash and name and version:
                return canonicalize_name(name), version
    raise ValueError(f"not a wheel or sdist filename: {filename}")


def read_json(path: Path, default: Any) -> Any:
    """The JSON in ``path``, or ``default`` when the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` atomically: a reader sees the old or the new content, never half."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(temp, path)


def file_url(entry: dict[str, Any]) -> str:
    """The absolute-path URL of a published file."""
    return f"/files/{entry['sha256'][:2]}/{urllib.parse.quote(entry['filename'])}"


# --- rendering (pure) ---------------------------------------------------------------------

def negotiate(accept: str | None, only: str | None) -> tuple[str, str]:
    """("json" | "html", Content-Type) for an Accept header; HTML unless JSON is preferred."""
    if only == "json":
        return "json", JSON_TYPE
    if only == "html":
        return "html", HTML_TYPE if accept and "vnd.pypi.simple" in accept else "text/html"
    ranges: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media:
            ranges[media.lower()] = quality

    def quality_of(media: str) -> float:
        family = media.split("/")[0] + "/*"
        for candidate in (media, family, "*/*"):
            if candidate in ranges:
                return ranges[candidate]
        return 0.0

    json_q = max(quality_of(JSON_TYPE), quality_of("application/vnd.pypi.simple.latest+json"))
    pypi_html_q = max(quality_of(HTML_TYPE), quality_of("application/vnd.pypi.simple.latest+html"))
    text_html_q = quality_of("text/html")
    if json_q > 0 and json_q > max(pypi_html_q, text_html_q):
        return "json", JSON_TYPE
    if pypi_html_q > 0 and pypi_html_q >= text_html_q:
        return "html", HTML_TYPE
    return "html", "text/html; charset=utf-8"


def render_list(names: list[str], serial: int, fmt: str) -> bytes:
    """The /simple/ page."""
    if fmt == "json":
        return json.dumps({"meta": {"api-version": API_VERSION, "_last-serial": serial},
                           "projects": [{"name": name} for name in names]}).encode()
    links = "".join(f'    <a href="/simple/{html.escape(n)}/">{html.escape(n)}</a>\n'
                    for n in names)
    return (f'<!DOCTYPE html>\n<html>\n  <head>\n'
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
            f'    <title>Simple index</title>\n  </head>\n  <body>\n{links}  </body>\n</html>\n'
            f'<!--SERIAL {serial}-->\n').encode()


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def render_project(name: str, files: list[dict[str, Any]], serial: int, fmt: str) -> bytes:
    """A project page; ``files`` hold what is advertised (url, sha256, yanked, ...)."""
    if fmt == "json":
        items = []
        for f in files:
            item = {"filename": f["filename"], "url": f["url"], "hashes": {"sha256": f["sha256"]},
                    "requires-python": f["requires_python"], "yanked": f["yanked"],
                    "size": f["size"], "upload-time": f["upload_time"]}
            if f["metadata_sha256"]:
                item["core-metadata"] = {"sha256": f["metadata_sha256"]}
                item["dist-info-metadata"] = {"sha256": f["metadata_sha256"]}
            items.append(item)
        versions = sorted({f["version"] for f in files}, key=_version_key)
        return json.dumps({"meta": {"api-version": API_VERSION, "_last-serial": serial},
                           "name": name, "files": items, "versions": versions}).encode()
    links = []
    for f in files:
        attributes = [f'href="{html.escape(f["url"] + "#sha256=" + f["sha256"])}"']
        if f["requires_python"]:
            attributes.append(f'data-requires-python="{html.escape(f["requires_python"])}"')
        if f["yanked"] is not False:
            reason = f["yanked"] if isinstance(f["yanked"], str) else ""
            attributes.append(f'data-yanked="{html.escape(reason)}"')
        if f["metadata_sha256"]:
            attributes.append(f'data-core-metadata="sha256={f["metadata_sha256"]}"')
            attributes.append(f'data-dist-info-metadata="sha256={f["metadata_sha256"]}"')
        links.append(f'    <a {" ".join(attributes)}>{html.escape(f["filename"])}</a><br />\n')
    title = f"Links for {html.escape(name)}"
    return (f'<!DOCTYPE html>\n<html>\n  <head>\n'
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
            f'    <title>{title}</title>\n  </head>\n  <body>\n    <h1>{title}</h1>\n'
            f'{"".join(links)}  </body>\n</html>\n<!--SERIAL {serial}-->\n').encode()


def etag_of(body: bytes, fmt: str) -> str:
    return '"' + hashlib.sha256(fmt.encode() + b"\0" + body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag in [tag.removeprefix("W/") for tag in tags]


# --- the server ---------------------------------------------------------------------------

@attrs.frozen
class Reply:
    """What to do with one request: answer (status, headers, body), or abort."""

    status: int | None
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    action: str | None = None  # "reset" | "truncate"


class FakeIndexResource(Resource):
    """The whole fake index: one leaf resource that routes on the path."""

    isLeaf = True

    def __init__(self, root: Path, state: Path, log: Path | None, clock: IReactorTime) -> None:
        super().__init__()
        self._root, self._state, self._log, self._clock = root, state, log, clock

    def render(self, request: Request) -> bytes | int:
        if request.path == PING.encode():
            return b"ok\n"
        state: dict[str, Any] = read_json(self._state, {})
        answered = False

        def answer() -> None:
            nonlocal answered
            answered = True
            self._answer(request, state)

        call = self._clock.callLater(float(state.get("latency") or 0), answer)

        def gone(_: object) -> None:
            if not answered:  # the client left while we were waiting
                call.cancel()
                self._record(request, None, "client-gone")

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET

    def _answer(self, request: Request, state: dict[str, Any]) -> None:
        try:
            reply = self._decide(request, state)
        except Exception:  # a bug in the fake: say so on stderr and to the client
            traceback.print_exc()
            reply = Reply(500, {"Content-Type": "text/plain"}, b"fake pypi: internal error\n")
        self._record(request, reply.status, reply.action)
        send(request, reply)

    def _decide(self, request: Request, state: dict[str, Any]) -> Reply:
        path = urllib.parse.unquote(request.path.decode("utf-8", "replace"))
        if state.get("reset"):
            return Reply(None, action="reset")
        failing = state.get("status") or _prefix_status(state.get("paths_status") or {}, path)
        if failing:
            headers = {"Content-Type": "text/plain"}
            if state.get("retry_after") is not None:
                headers["Retry-After"] = str(state["retry_after"])
            return Reply(int(failing), headers, f"fake pypi: status {failing}\n".encode())
        if request.method not in (b"GET", b"HEAD"):
            return _plain(405, "method not allowed", {"Allow": "GET, HEAD"})
        index = read_json(self._root / INDEX, {"serial": 0, "projects": {}})
        projects: dict[str, Any] = index["projects"]
        override = state.get("serial")
        if path == "/simple":
            return _redirect("/simple/")
        if path == "/simple/":
            serial = index["serial"] if override is None else override
            return self._page(request, state, serial, lambda fmt: render_list(
                sorted(projects), serial, fmt))
        match = re.fullmatch(r"/simple/([^/]+)(/?)", path)
        if match:
            asked, slash = match.groups()
            name = canonicalize_name(asked)
            if name not in projects:
                return _plain(404, f"project {asked} not found")
            if asked != name or not slash:
                return _redirect(f"/simple/{name}/")
            project = projects[name]
            serial = project["serial"] if override is None else override
            files = [self._advertised(state, name, f) for f in project["files"]]
            return self._page(request, state, serial,
                              lambda fmt: render_project(name, files, serial, fmt))
        if path.startswith("/files/"):
            return self._file(state, projects, path, override)
        return _plain(404, "not found")

    def _page(self, request: Request, state: dict[str, Any], serial: int,
              render: Any) -> Reply:
        fmt, content_type = negotiate(request.getHeader("accept"), state.get("only"))
        body = render(fmt)
        headers = {"Content-Type": content_type, "X-PyPI-Last-Serial": str(serial),
                   "Vary": "Accept"}
        if not state.get("no_etag"):
            headers["ETag"] = etag_of(body, fmt)
            if etag_matches(request.getHeader("if-none-match"), headers["ETag"]):
                return Reply(304, headers)
        return Reply(200, headers, body)

    def _advertised(self, state: dict[str, Any], project: str,
                    entry: dict[str, Any]) -> dict[str, Any]:
        """A file as the page shows it, switches applied."""
        sha256 = entry["sha256"]
        if state.get("wrong_hash"):
            sha256 = hashlib.sha256(b"wrong:" + sha256.encode()).hexdigest()
        reason = (state.get("yank") or {}).get(entry["filename"])
        yanked: bool | str = False  # None/false: not yanked; true/"": no reason given
        if reason is not None and reason is not False:
            yanked = True if reason is True or reason == "" else str(reason)
        overrides = state.get("requires_python") or {}
        requires = {canonicalize_name(k): v for k, v in overrides.items()}
        uploaded = entry["uploaded"]
        return {"filename": entry["filename"], "url": file_url(entry), "sha256": sha256,
                "version": entry["version"], "size": entry["size"], "yanked": yanked,
                "requires_python": requires.get(project),
                "upload_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(uploaded))
                + f".{int(uploaded % 1 * 1e6):06d}Z",
                "metadata_sha256": entry["metadata_sha256"] if state.get("metadata") else None}

    def _file(self, state: dict[str, Any], projects: dict[str, Any], path: str,
              override: int | None) -> Reply:
        for project in projects.values():
            for entry in project["files"]:
                url = urllib.parse.unquote(file_url(entry))
                is_metadata = path == url + ".metadata"
                if path != url and not (is_metadata and state.get("metadata")
                                        and entry["metadata_sha256"]):
                    continue
                stored = self._root / "files" / entry["sha256"][:2] / entry["filename"]
                if is_metadata:
                    stored = stored.with_name(stored.name + ".metadata")
                body = stored.read_bytes()
                if state.get("corrupt") and body:
                    body = body[:-1] + bytes([body[-1] ^ 0xFF])
                serial = project["serial"] if override is None else override
                headers = {"Content-Type": "application/octet-stream",
                           "Last-Modified": http.datetimeToString(int(entry["uploaded"])).decode(),
                           "X-PyPI-Last-Serial": str(serial)}
                return Reply(200, headers, body, "truncate" if state.get("truncate") else None)
        return _plain(404, "file not found")

    def _record(self, request: Request, status: int | None, action: str | None) -> None:
        if self._log is None:
            return
        headers = {}
        for name in LOGGED_HEADERS:
            value = request.getHeader(name)
            if value is not None:
                headers[name] = value
        entry = {"time": time.time(), "method": request.method.decode(),
                 "path": request.path.decode("utf-8", "replace"), "status": status,
                 "aborted": action, "headers": headers}
        with open(self._log, "a") as log:
            log.write(json.dumps(entry) + "\n")


def _prefix_status(paths_status: dict[str, int], path: str) -> int | None:
    matching = [prefix for prefix in paths_status if path.startswith(prefix)]
    return paths_status[max(matching, key=len)] if matching else None


def _plain(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": "text/plain", **(headers or {})},
                 f"fake pypi: {message}\n".encode())


def _redirect(location: str) -> Reply:
    return Reply(301, {"Location": location, "Content-Type": "text/plain"}, b"moved\n")


def send(request: Request, reply: Reply) -> None:
    """Carry out ``reply``: answer, or abort the connection (``reset``/``truncate``)."""
    if reply.action == "reset":
        handle = request.transport.getHandle()
        try:  # linger 0: the client sees a TCP reset, not an orderly close
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        request.transport.abortConnection()
        return
    assert reply.status is not None
    request.setResponseCode(reply.status)
    for name, value in reply.headers.items():
        request.setHeader(name, value)
    if reply.status != 304:
        request.setHeader("Content-Length", str(len(reply.body)))
    if reply.action == "truncate" and request.method != b"HEAD":
        request.write(reply.body[:len(reply.body) // 2])
        request.transport.loseConnection()  # flushes what was written, then closes
        return
    request.write(reply.body)
    request.finish()


class QuietSite(Site):
    """A Site without the access log (our own log is the JSON-lines file)."""

    def log(self, request: Request) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the server until SIGTERM/SIGINT; the bound port goes to stdout and --port-file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--log", type=Path, default=None, help="JSON-lines request log")
    parser.add_argument("--port-file", type=Path, default=None)
    args = parser.parse_args(argv)

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    resource = FakeIndexResource(args.root, args.state, args.log, reactor)
    port = reactor.listenTCP(args.port, QuietSite(resource), interface="127.0.0.1")
    number = port.getHost().port
    if args.port_file is not None:
        temp = args.port_file.with_name(args.port_file.name + ".tmp")
        temp.write_text(str(number))
        os.replace(temp, args.port_file)
    print(number, flush=True)
    reactor.run()


# --- the controller (in the test process) -------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakePyPI:
    """Runs the fake index in a subprocess; the test publishes files and flips switches.

    Layout under ``workdir``: ``root/`` (index.json and the files), ``state.json``
    (switches), ``requests.jsonl`` (request log), ``server.log`` (stdout and stderr).
    After the first start the port is kept, so a restart after ``kill`` serves the same URL.
    """

    def __init__(self, workdir: Path, port: int = 0) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.state_file = workdir / "state.json"
        self.log_file = workdir / "requests.jsonl"
        self.output_file = workdir / "server.log"
        self.port_file = workdir / "port"
        self.port = port
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        if not (self.root / INDEX).exists():
            write_json(self.root / INDEX, {"serial": 0, "projects": {}})
        if not self.state_file.exists():
            write_json(self.state_file, {})

    def add(self, path: Path, uploaded: float | None = None) -> None:
        """Publish a wheel or sdist (copied); bumps the serial. ValueError for other names.
        ``uploaded``: its upload time (PEP 700 upload-time), now by default."""
        name, version = split_filename(path.name)
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.root / "files" / sha256[:2] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        metadata_sha256 = None
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as wheel:
                found = [n for n in wheel.namelist()
                         if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
                if found:
                    metadata = wheel.read(found[0])
                    target.with_name(target.name + ".metadata").write_bytes(metadata)
                    metadata_sha256 = hashlib.sha256(metadata).hexdigest()
        index = read_json(self.root / INDEX, {"serial": 0, "projects": {}})
        index["serial"] += 1
        project = index["projects"].setdefault(name, {"serial": 0, "files": []})
        project["serial"] = index["serial"]
        project["files"] = [f for f in project["files"] if f["filename"] != path.name] + [
            {"filename": path.name, "version": version, "sha256": sha256, "size": len(data),
             "uploaded": time.time() if uploaded is None else uploaded,
             "metadata_sha256": metadata_sha256}]
        write_json(self.root / INDEX, index)

    def set(self, **switches: Any) -> None:
        """Change switches (see SWITCHES) for the next requests; None turns one off."""
        unknown = set(switches) - SWITCHES
        if unknown:
            raise TypeError(f"unknown switches: {sorted(unknown)}; known: {sorted(SWITCHES)}")
        if switches.get("only") not in (None, "json", "html"):
            raise ValueError("only must be 'json', 'html' or None")
        state = read_json(self.state_file, {})
        for name, value in switches.items():
            if value is None:
                state.pop(name, None)
            else:
                state[name] = value
        write_json(self.state_file, state)

    def requests(self) -> list[dict[str, Any]]:
        """Requests answered so far, oldest first: method, path, status (None when the
        connection was aborted), aborted ("reset", "truncate", "client-gone" or None), time,
        headers (lower-case names; accept, if-none-match, authorization, user-agent if sent)."""
        try:
            text = self.log_file.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers; RuntimeError (with its output) if not."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the fake PyPI is already running")
        self.port_file.unlink(missing_ok=True)
        offset = self.output_file.stat().st_size if self.output_file.exists() else 0
        command = [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port),
                   "--root", str(self.root), "--state", str(self.state_file),
                   "--log", str(self.log_file), "--port-file", str(self.port_file)]
        with open(self.output_file, "ab") as output:
            self._proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the fake PyPI exited with {self._proc.returncode}:\n"
                                   + self._output(offset))
            if self.port_file.exists() and self._answers(int(self.port_file.read_text())):
                self.port = int(self.port_file.read_text())
                self.url = f"http://127.0.0.1:{self.port}/simple/"
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"the fake PyPI did not answer within {timeout} s:\n"
                           + self._output(offset))

    def stop(self) -> None:
        """Terminate the server (SIGTERM) and wait for it; SIGKILL after 10 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def kill(self) -> None:
        """SIGKILL the server (an outage: no goodbye to open connections) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def __enter__(self) -> FakePyPI:
        """Returns self (not started: call start(), before or after add())."""
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _answers(self, port: int) -> bool:
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{port}{PING}", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _output(self, offset: int) -> str:
        with open(self.output_file, "rb") as output:
            output.seek(offset)
            return output.read().decode("utf-8", "replace")


if __name__ == "__main__":
    main()
