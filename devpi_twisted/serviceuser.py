"""What the service user of ``devpi-twisted gen-config``'s files can reach. The
generated files run the server as another user than the one running gen-config (root,
typically): a server directory under /root or a virtualenv made from a Python in /root
would make every one of them fail at start. These checks read the file system and the
user database, and name what would stop that user.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping
from pathlib import Path

import attrs

@attrs.frozen
class Account:
    """The service user as the file system sees it (``uid`` None: no such user here,
    so only the permission bits for others apply)."""

    name: str
    uid: int | None
    gids: frozenset[int] = frozenset()


def service_account(name: str) -> Account:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return Account(name, None)
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return Account(name, entry.pw_uid, frozenset(groups))


def default_service_user(serverdir: Path) -> str:
    """The invoking user; for root the owner of an existing server directory, or devpi."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        owner = serverdir.stat().st_uid
        return pwd.getpwuid(owner).pw_name if owner != 0 else "devpi"
    except (OSError, KeyError):
        return "devpi"


def _may(st: os.stat_result, account: Account, bits: str) -> bool:
    if account.uid == 0:
        return True
    if account.uid == st.st_uid:
        shift = 6
    elif st.st_gid in account.gids:
        shift = 3
    else:
        shift = 0
    mask = sum({"r": 4, "w": 2, "x": 1}[b] for b in bits) << shift
    return st.st_mode & mask == mask


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _describe(path: Path, st: os.stat_result) -> str:
    return f"{path} is mode {stat.S_IMODE(st.st_mode):04o}, owner {_owner(st.st_uid)}"


def _blocker(path: Path, account: Account) -> str | None:
    """Why ``account`` cannot get to ``path``: the first directory above it that it may
    not enter, described; None when it may enter all of them."""
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError:
            return None  # the rest does not exist; said elsewhere
        if not _may(st, account, "x"):
            return _describe(parent, st)
    return None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def access_problems(account: Account, serverdir: Path, bindir: Path,
                    read: Mapping[str, Path], init: bool) -> list[str]:
    """One line per thing the service user will not be able to do with the files the
    generated configuration names: enter and write the server directory, run twistd and
    its Python, read the files given by ``read`` (option name -> path)."""
    user = account.name
    problems = []
    if account.uid is None:
        problems.append(f"user {user!r} does not exist on this machine: create it "
                        f"(useradd --system {user}) or name another with --service-user")
    serverdir = serverdir.resolve()
    blocked = _blocker(serverdir, account)
    if blocked is not None:
        problems.append(f"--serverdir {serverdir} is not reachable by user {user} ({blocked}): "
                        f"choose a directory it can reach, e.g. /srv/devpi")
    elif not serverdir.exists():
        parent = _nearest_existing(serverdir)
        if init and parent.is_dir() and _may(parent.stat(), account, "wx"):
            pass  # --init creates it at the first start
        else:
            problems.append(
                f"--serverdir {serverdir} does not exist: create it as {user} "
                f"(sudo -u {user} {bindir / 'devpi-twisted'} init --serverdir {serverdir})")
    elif not serverdir.is_dir():
        problems.append(f"--serverdir {serverdir} is not a directory")
    else:
        st = serverdir.stat()
        try:
            foreign = [entry for entry in sorted(serverdir.iterdir())
                       if not _may(entry.lstat(), account, "rw")]
        except OSError:  # gen-config's own user may not look inside
            foreign = []
        if not _may(st, account, "rwx"):
            problems.append(f"--serverdir {serverdir} is not writable by user {user} "
                            f"({_describe(serverdir, st)}): chown -R {user} {serverdir}")
        elif foreign:
            problems.append(f"--serverdir {serverdir} holds files user {user} cannot write "
                            f"({_describe(foreign[0], foreign[0].lstat())}): "
                            f"chown -R {user} {serverdir}")
    twistd = bindir / "twistd"
    blocked = _blocker(twistd.resolve(), account)
    if not twistd.exists():
        problems.append(f"--bindir {bindir} holds no twistd: give the bin directory of the "
                        "virtualenv devpi-twisted is installed in")
    elif blocked is not None or not _may(twistd.resolve().stat(), account, "rx"):
        why = blocked or _describe(twistd, twistd.resolve().stat())
        problems.append(f"{twistd} cannot be run by user {user} ({why}): install devpi-twisted "
                        f"in a virtualenv it can reach (e.g. /opt/devpi) and give --bindir")
    python = (bindir / "python").resolve()
    if twistd.exists() and blocked is None and python.exists():
        blocked = _blocker(python, account)
        if blocked is not None:
            problems.append(f"the Python of {bindir} ({python}) is not reachable by user {user} "
                            f"({blocked}): make the virtualenv from a Python it can reach "
                            "(e.g. /usr/bin/python3)")
    for option, path in read.items():
        path = path.resolve()
        blocked = _blocker(path, account)
        if not path.exists():
            problems.append(f"{option} {path} does not exist")
        elif blocked is not None or not _may(path.stat(), account, "r"):
            problems.append(f"{option} {path} is not readable by user {user} "
                            f"({blocked or _describe(path, path.stat())})")
    return problems
