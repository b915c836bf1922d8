"""The server directory: node identity, secret file, process lock, bound addresses.

Layout (spec/ops.md 2.5, our own names where our format differs from devpi's):
``.nodeinfo`` (uuid, role; 0600), ``.secret`` (made by init; 0600),
``db.sqlite3`` (sqlite storage), ``+files/`` (file store), ``.lock`` (held by the
main serving process), ``.listening`` (addresses bound, written at start),
``.serial`` (the newest serial, shared by the processes of this host).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
import uuid as uuidlib
from pathlib import Path
from typing import IO, Any

import attrs

NODEINFO = ".nodeinfo"
SECRET = ".secret"
SQLITE = "db.sqlite3"
LOCK = ".lock"
LISTENING = ".listening"
BOARD = ".serial"
STAGING = ".uploads"
# present while an import fills the directory; .nodeinfo is written after it (dump/run.py)
IMPORTING = ".import-unfinished"


class StartupError(Exception):
    """The server cannot start; the message says what to do."""


def explain_oserror(serverdir: Path | None, e: OSError, action: str = "") -> str:
    """One line for a file the process cannot use, naming ``--serverdir`` when the file
    is in (or is) the server directory."""
    reason = (f"{action}: " if action else "") + (e.strerror or str(e))
    # of two names (symlink, rename) the second is where the new entry was to be made
    name = e.filename2 if e.filename2 is not None else e.filename
    filename = Path(os.fsdecode(name)) if name is not None else None
    if serverdir is not None and (filename is None or filename == serverdir
                                  or serverdir in filename.parents):
        inside = f" ({filename.name})" if filename is not None and filename != serverdir else ""
        return f"--serverdir {serverdir}: {reason}{inside}"
    return f"{filename}: {reason}" if filename is not None else reason


@attrs.frozen
class NodeInfo:
    uuid: str
    role: str = "standalone"
    extra: dict[str, Any] = attrs.field(factory=dict)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_nodeinfo(serverdir: Path) -> NodeInfo | None:
    path = serverdir / NODEINFO
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StartupError(explain_oserror(serverdir, e)) from None
    except ValueError as e:
        raise StartupError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("uuid"), str):
        raise StartupError(f"{path} is not a devpi-twisted node file")
    extra = {k: v for k, v in data.items() if k not in ("uuid", "role")}
    return NodeInfo(data["uuid"], data.get("role", "standalone"), extra)


def write_nodeinfo(serverdir: Path, info: NodeInfo) -> None:
    data = {"uuid": info.uuid, "role": info.role, "server": "devpi-twisted", **info.extra}
    _write_private(serverdir / NODEINFO, json.dumps(data, indent=2).encode())


def new_nodeinfo(role: str) -> NodeInfo:
    return NodeInfo(uuidlib.uuid4().hex, role)


def prepare_empty(serverdir: Path) -> None:
    """Create the directory for a new state; refuses one that already holds files, and
    one this process cannot create or write in (one line naming ``--serverdir``)."""
    try:
        if serverdir.exists():
            if not serverdir.is_dir():
                raise StartupError(f"--serverdir {serverdir} exists and is not a directory")
            if any(serverdir.iterdir()):
                raise StartupError(
                    f"--serverdir {serverdir} is not empty; init needs a new or empty directory")
        serverdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # a directory may exist and still refuse files (read-only file system, permissions)
        probe = serverdir / ".init-probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise StartupError(explain_oserror(serverdir, e, "cannot create the state")) from None


def create_secret(path: Path) -> None:
    """32 random bytes, base64 encoded, mode 0600 (as devpi-gen-secret)."""
    _write_private(path, base64.b64encode(os.urandom(32)))


def read_secret(path: Path) -> bytes:
    """The secret file's bytes after devpi's checks (spec/ops.md 2.6)."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as e:
        raise StartupError(f"secret file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupError(f"secret file {path} must be readable by its owner only (chmod 600)")
    if path.parent.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StartupError(f"the directory of secret file {path} must not be group or world writable")
    if len(data) < 32 or len(set(data)) < 6:
        raise StartupError(f"secret file {path} is too short or too simple (32 bytes at least)")
    return data


def lock(serverdir: Path) -> IO[bytes]:
    """Hold the serving lock of ``serverdir``; the returned file keeps it until closed."""
    try:
        handle = open(serverdir / LOCK, "ab")
    except OSError as e:
        raise StartupError(explain_oserror(serverdir, e)) from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StartupError(
            f"another devpi-twisted server is running on {serverdir}; "
            "sqlite storage is served by one process") from None
    return handle


def write_listening(path: Path, addresses: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(addresses), encoding="utf-8")
    os.replace(tmp, path)
