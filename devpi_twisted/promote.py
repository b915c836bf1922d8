"""``devpi-twisted promote``: a stopped replica becomes a standalone server (or, with
``--role primary``, a primary), keeping every serial and every file it has.

It refuses while the node runs (the serving lock is held), for a node that is not a
replica, and while files whose records arrived have no body here (their primary is
the only place to get them; ``--allow-missing-files`` promotes all the same). It
stores the search text of docs that have none (a devpi primary sends none; one change
per such version, after the primary's serials), and changes ``.nodeinfo``: the
primary's URL and uuid are kept under ``promoted-from``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from devpi_twisted import serverdir as sd
from devpi_twisted.config import Config
from devpi_twisted.serverdir import StartupError

ROLES = ("standalone", "primary")
SHOWN_MISSING = 5


def promote(config: Config, role: str, allow_missing: bool) -> None:
    if role not in ROLES:
        raise StartupError(f"--role {role}: a replica is promoted to standalone or primary")
    node = sd.read_nodeinfo(config.serverdir)
    if node is None:
        raise StartupError(f"{config.serverdir} contains no devpi-twisted state")
    if node.role != "replica":
        raise StartupError(f"{config.serverdir} is a {node.role}, not a replica: nothing to promote")
    try:
        lock = sd.lock(config.serverdir)
    except StartupError:
        raise StartupError(f"the node on {config.serverdir} is running; stop it, then promote "
                           "(nothing changed)") from None
    started = time.monotonic()
    try:
        serial, missing, docs = _check_files(config, allow_missing)
        if missing and not allow_missing:
            shown = ", ".join(missing[:SHOWN_MISSING]) + (" ..." if len(missing) > SHOWN_MISSING else "")
            raise StartupError(
                f"{len(missing)} files have no body here yet ({shown}); start the replica "
                "until they arrive, or pass --allow-missing-files (nothing changed)")
        extra: dict[str, Any] = {k: v for k, v in node.extra.items()
                                 if k not in ("masterurl", "primary-uuid")}
        extra["promoted-from"] = {"url": node.extra.get("masterurl"),
                                  "uuid": node.extra.get("primary-uuid"), "serial": serial,
                                  "at": time.time()}
        sd.write_nodeinfo(config.serverdir, sd.NodeInfo(node.uuid, role, extra))
    finally:
        lock.close()
    if missing:
        print(f"devpi-twisted: warning: {len(missing)} files have no body", file=sys.stderr)
    print(f"devpi-twisted: {config.serverdir} is now a {role} at serial {serial} "
          f"({time.monotonic() - started:.2f}s, the search text of {docs} versions' docs "
          "read); start it without --primary-url")


def _check_files(config: Config, allow_missing: bool) -> tuple[int, list[str], int]:
    """The serial, the live files whose bodies are missing, and (when promoting goes
    on) how many versions' docs had their search text stored: a replica of a devpi
    primary gets none with its changes, and the serials it shares with the primary
    are behind it now."""
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from devpi_twisted.model.search import build_docs
    from devpi_twisted.reactors import IServerReactor
    from devpi_twisted.state import open_blobs, open_storage
    from devpi_twisted.storage.types import ThreadOffload
    from devpi_twisted.web.blobcopy import BlobCopies

    found: list[Any] = []

    async def run(reactor: IServerReactor) -> None:
        storage = open_storage(config, reactor)
        try:
            blobs = open_blobs(config, storage, reactor)
            stored = {blob.key for blob in await blobs.usage("")}  # one listing, not a look-up each
            missing = [r.relpath for r in await storage.live_files() if r.relpath not in stored]
            serial, docs = storage.serial, 0
            if not missing or allow_missing:
                staging = config.serverdir / sd.STAGING
                staging.mkdir(mode=0o700, exist_ok=True)
                copies = BlobCopies(blobs, staging)

                def no_text(relpath: str, error: Exception) -> None:
                    print(f"devpi-twisted: warning: no search text of {relpath}: {error}",
                          file=sys.stderr)

                offload = ThreadOffload(reactor)
                docs = await build_docs(
                    storage, lambda relpath: copies.doc_text(relpath, offload, no_text))
                serial = storage.serial
            found.append((serial, sorted(missing), docs))
        finally:
            await storage.close()

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code:
            raise StartupError("reading the state failed (see above); nothing changed") from None
    serial, missing, docs = found[0]
    return int(serial), list(missing), int(docs)
