"""A webhook receiver for end-to-end tests and bench/bench_hooks.py: a threaded
http.server on a free loopback port that checks each request's HMAC signature and
records it; ``mode`` makes it answer 204 ("ok"), 500 ("fail") or hold the request
unanswered until released ("stall")."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.mode = "ok"
        self.accepted: list[dict[str, Any]] = []  # bodies answered 2xx, in order
        self.requests = 0
        self.bad_signatures = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers.get("X-Devpi-Timestamp", "")
                mac = hmac.new(receiver.secret.encode(), stamp.encode() + b"." + body,
                               hashlib.sha256).hexdigest()
                with receiver.lock:
                    receiver.requests += 1
                    mode = receiver.mode
                    if not hmac.compare_digest("sha256=" + mac,
                                               self.headers.get("X-Devpi-Signature", "")):
                        receiver.bad_signatures += 1
                        mode = "fail"
                if mode == "stall":
                    receiver.release.wait(60)
                    mode = "fail"
                if mode == "fail":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                parsed = json.loads(body)
                parsed["_event_header"] = self.headers.get("X-Devpi-Event")
                parsed["_delivery"] = self.headers.get("X-Devpi-Delivery")
                with receiver.lock:
                    receiver.accepted.append(parsed)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def serials(self) -> list[int]:
        with self.lock:
            return [int(b["serial"]) for b in self.accepted]
