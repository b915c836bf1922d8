"""A throwaway nginx for the tests: the real /usr/sbin/nginx with its own prefix, pid,
logs and temp paths in a temp dir, running a site made by ``devpi-twisted gen-config``.

The main configuration here is only the frame (events, logs, temp paths); the site
is included unchanged. When the tests run as root, nginx's workers would become
``nobody`` and could not read the server directory in a private temp dir, so the
frame names the current user. A missing nginx fails (scripts/run-tests installs it
from Debian's packages): tests never skip it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

ACCESS_FORMAT = ('$request_method $request_uri $status $body_bytes_sent '
                 'upstream=$upstream_addr upstream_status=$upstream_status')


def nginx_binary() -> str:
    found = shutil.which("nginx")
    if found is None and os.path.exists("/usr/sbin/nginx"):
        found = "/usr/sbin/nginx"
    if found is None:
        raise RuntimeError("nginx is not installed; scripts/run-tests installs it "
                           "(apt-get install nginx)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    def __init__(self, base: Path, site: Path) -> None:
        self.base = base
        self.site = site
        self.proc: subprocess.Popen[bytes] | None = None
        self.access_log = base / "access.log"
        self.error_log = base / "error.log"
        self.conf = base / "nginx.conf"

    def frame(self) -> str:
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"
        temp = "\n".join(f"    {kind}_temp_path {self.base / 'tmp' / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        mime = ""
        if os.path.exists("/etc/nginx/mime.types"):
            mime = "    include /etc/nginx/mime.types;\n"
        return (f"{user}daemon off;\nworker_processes 1;\npid {self.base / 'nginx.pid'};\n"
                f"error_log {self.error_log} info;\n"
                "events { worker_connections 512; }\n"
                "http {\n"
                f"{mime}    default_type application/octet-stream;\n"
                f"    log_format devpi_test '{ACCESS_FORMAT}';\n"
                f"    access_log {self.access_log} devpi_test;\n"
                "    sendfile on;\n"
                f"{temp}\n"
                f"    include {self.site};\n"
                "}\n")

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` of the frame with the site."""
        self._prepare()
        return subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)

    def _prepare(self) -> None:
        (self.base / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.frame())

    def _command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-p", str(self.base), "-c", str(self.conf), "-e",
                str(self.error_log), *extra]

    def start(self, port: int, timeout: float = 20) -> Nginx:
        checked = self.check()
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.error_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen on {port}: {self.error_log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []
