"""devpi 7's ``inheritance_info`` of a project (``GET /USER/INDEX/PROJECT?v=2``).

devpi 7 shows how it walked the bases to the project: ``index_bases`` (every index
reached, with its bases), ``traversal_infos`` (one entry per index in the resolution
order: a stage ``traversed`` with whether it has the project, a mirror ``allowed`` or
``blocked`` with the reason) and ``has_project_from_remote``. Ours gives the same keys
and the decisions of our resolution order and whitelist (model.md 6.1, 6.2); devpi 7
also lists the postponed and repeated visits of its walk, which ours leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devpi_twisted.model.indexes import resolution_order
from devpi_twisted.model.pagelinks import allowed_mirrors
from devpi_twisted.storage.interface import Storage
from devpi_twisted.storage.values import IndexConfig, StageConfig


def index_bases(start: str, configs: Mapping[str, IndexConfig]) -> dict[str, list[str]]:
    """Every index reachable from ``start`` through bases, with its bases (mirrors: [])."""
    found: dict[str, list[str]] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        config = configs.get(name)
        if name in found or config is None:
            continue
        found[name] = list(config.bases) if isinstance(config, StageConfig) else []
        todo.extend(found[name])
    return dict(sorted(found.items()))


def describe(start: str, project: str, configs: Mapping[str, IndexConfig],
             has: Mapping[str, bool]) -> dict[str, Any]:
    """The inheritance_info of ``project`` seen from ``start``; ``has``: which stages
    hold it."""
    order = resolution_order(start, configs.get)
    allowed = allowed_mirrors(configs, order, start, project, has)
    holder = next((stage for stage in order if has.get(stage)), None)
    infos: list[dict[str, Any]] = []
    for name in order:
        if not configs[name].is_mirror:
            infos.append({"action": "traversed", "name": name,
                          "has_project": "true" if has.get(name) else "false"})
        elif name in allowed:
            infos.append({"action": "allowed", "name": name, "has_project": "unknown",
                          "reason": f"Direct access to package {project!r}, allowing {name}"})
        else:
            infos.append({"action": "blocked", "name": name, "has_project": "notset",
                          "reason": f"package {project!r} located in {holder} blocks "
                                    f"releases from index {name}"})
    # devpi 7 says "unknown" whenever a mirror is in the walk (it asks none of them here)
    remote = any(configs[name].is_mirror for name in order)
    return {"has_project_from_remote": "unknown" if remote else "false",
            "index_bases": index_bases(start, configs), "traversal_infos": infos}


async def inheritance_info(storage: Storage, user: str, index: str,
                           project: str) -> dict[str, Any]:
    """``describe`` over the stored configs and versions."""
    configs = {i.name: i.config for i in await storage.list_indexes()}
    start = f"{user}/{index}"
    has = {}
    for name in resolution_order(start, configs.get):
        if not configs[name].is_mirror:
            owner, stage = name.split("/", 1)
            has[name] = bool(await storage.get_versions(owner, stage, project))
    return describe(start, project, configs, has)
