"""Supply-chain policy over HTTP (issue 23, model/policy.py): blocks (``+block``,
``+unblock``, ``+blocks``), ``PROJECT?policy`` (what the index does not offer and why),
and the check refusing a download of a file the mirror's policy holds back (403 with
the rule: release date, or who blocked it when and why), counted for ``/+metrics``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from devpi_twisted.model.errors import Forbidden, InvalidInput, NotFound
from devpi_twisted.model.hooks import BLOCK
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.policy import BLOCKS_KEY, POLICY_KEYS, count_held, held_versions, \
    parse_block, stored_blocks
from devpi_twisted.model.releases import split_filename
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, written
from devpi_twisted.web.pages import SimplePages

def _key(block: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return block.get("project"), block.get("version"), block.get("filename")


class PolicyApp:
    """Blocks and ``?policy``; ``stats``: the counters shared with the file and page apps."""

    def __init__(self, ops: ServerOps, simple: SimpleOps, pages: SimplePages,
                 helpers: RequestHelpers, stats: dict[str, int]) -> None:
        self._ops = ops
        self._simple = simple
        self._pages = pages
        self._helpers = helpers
        self.stats = stats

    async def block(self, request: HttpRequest, user: str, index: str) -> bytes:
        """``{"project", "version"?, "filename"?, "reason"}``: root or the index's owner."""
        identity = await self._helpers.identity(request)
        body = render.read_json(request)
        block = parse_block(body, identity.username or "", time.time())
        key = (block.project, block.version, block.filename)

        def add(config: Mapping[str, Any]) -> dict[str, Any]:  # (a block of the same: replaced)
            kept = [b for b in config.get(BLOCKS_KEY) or () if _key(b) != key]
            return {BLOCKS_KEY: [*kept, block.to_json()]}

        changed = await self._ops.modify_index(
            identity, user, index, add,
            event={"kind": BLOCK, "project": block.project, "version": block.version,
                   "filename": block.filename, "action": "blocked", "reason": block.reason})
        written(request, changed)
        return render.result(request, "block", block.to_json())

    async def unblock(self, request: HttpRequest, user: str, index: str) -> bytes:
        """``{"project", "version"?, "filename"?}``: the block of exactly these removed."""
        identity = await self._helpers.identity(request)
        body = render.read_json(request)
        if not isinstance(body, Mapping) or not isinstance(body.get("project"), str):
            raise InvalidInput('project: required ({"project", "version"?, "filename"?})')
        key = (normalize_project(body["project"]), body.get("version"), body.get("filename"))

        def remove(config: Mapping[str, Any]) -> dict[str, Any]:
            blocks = list(config.get(BLOCKS_KEY) or ())
            kept = [b for b in blocks if _key(b) != key]
            if len(kept) == len(blocks):
                raise NotFound(f"no block of {' '.join(k for k in key if k)} on {user}/{index}")
            return {BLOCKS_KEY: kept}

        changed = await self._ops.modify_index(
            identity, user, index, remove,
            event={"kind": BLOCK, "project": key[0], "version": key[1], "filename": key[2],
                   "action": "unblocked"})
        written(request, changed)
        return render.result(request, "unblock", {"project": key[0], "version": key[1],
                                                  "filename": key[2]})

    async def blocks(self, request: HttpRequest, user: str, index: str) -> bytes:
        config = await self._helpers.readable(request, user, index)
        return render.result(request, "blocks",
                             [b.to_json() for b in stored_blocks(config.to_json().get(BLOCKS_KEY))])

    async def project_policy(self, request: HttpRequest, user: str, index: str,
                             project: str) -> bytes:
        """``?policy``: the versions (and files) the index does not offer, each with its rules."""
        return render.result(request, "policy",
                             await self.held(request, user, index, project))

    async def held(self, request: HttpRequest, user: str, index: str,
                   project: str) -> list[dict[str, Any]]:
        page, _ = await self._simple.project_view(
            user, index, project, self._pages.refresh, await self._helpers.identity(request))
        return held_versions(page.held, page.versions)

    async def check_file(self, user: str, index: str, relpath: str) -> None:
        """Forbidden when the policy of a mirror (``user/index``) holds back its file."""
        config = await self._ops.get_index(user, index)
        if not config.is_mirror:
            return
        json = config.to_json()
        if not any(json.get(key) for key in (*POLICY_KEYS, BLOCKS_KEY)):
            return
        filename = relpath.rsplit("/", 1)[-1].removesuffix(".metadata")
        try:
            project = normalize_project(split_filename(filename)[0])
        except InvalidInput:
            return
        try:
            page, _ = await self._simple.project_view(user, index, project)
        except NotFound:
            return
        for held in page.held:
            if held.filename == filename:
                count_held(self.stats, (held,))
                raise Forbidden(f"{filename} is not served by {user}/{index}: {held.detail}")
