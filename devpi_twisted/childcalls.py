"""Calls run in a long-lived child process of our own (``python -m devpi_twisted.childcalls``).

The password checks' pool (web/hashing.py) runs argon2 here, so that its 64 MiB per
check is never part of the server's resident size. The child imports only what it is
asked to call (about 12 MB resident: multiprocessing's spawned children import the
server's main script, twistd, and a resource tracker beside them, three times that).

One request per line on the child's stdin: ``[module, qualified name, [args...]]`` in
JSON; one answer per line on its stdout: ``[true, result]`` or ``[false, "error"]``.
Arguments and results are JSON values (passwords, hashes, booleans). The child ends at
the end of its stdin, which is also when the server ends, killed with -9 or not.
A ``Child`` is used by one thread at a time.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from typing import IO, Any


class ChildFailed(Exception):
    """The call raised in the child (the message says what), or the child died."""


class Child:
    """One child process; started at the first call."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the child; ChildFailed if it raised there or the child died
        (a dead child is not used again)."""
        if self._proc is None:
            self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        request = json.dumps([fn.__module__, fn.__qualname__, list(args)]) + "\n"
        try:
            proc.stdin.write(request.encode())
            proc.stdin.flush()
            line = proc.stdout.readline()
        except OSError:
            line = b""
        if not line:
            self.close()
            raise ChildFailed(f"the child process of {fn.__qualname__} died")
        ok, value = json.loads(line)
        if not ok:
            raise ChildFailed(str(value))
        return value

    def close(self) -> None:
        """End the child (its stdin closed) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: a call per line until the end of ``requests``."""
    for line in requests:
        try:
            module, name, args = json.loads(line)
            target: Any = importlib.import_module(module)
            for part in name.split("."):
                target = getattr(target, part)
            answer = json.dumps([True, target(*args)])
        except Exception as e:  # noqa: BLE001 - whatever it is, the parent gets it as text
            answer = json.dumps([False, f"{type(e).__name__}: {e}"])
        answers.write(answer.encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
