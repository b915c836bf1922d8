"""devpi-server 7's dump format (dumpversion 3) translated to and from devpi 6's
(dumpversion 2), which format.py reads and the exporter writes.

What differs in a version 3 dump (devpi 7.0's importexport): index types are ``local``
and ``remote``; a remote's keys are ``remote_*`` (``remote_refresh_delay`` for 6's
``mirror_cache_expiry``); a local index spells its whitelist as
``project_inheritance_rules`` and ``trust_inheritance_rules_from``, and each project is
``{"config": {"name": ..., "inheritance_rules": [...]}, "versions": {...}}`` (a
whitelisted project without versions has an entry of its own); a file's
``entrymapping`` carries its ``size``, and its ``last_modified`` and the log times
are ``"%Y-%m-%dT%H:%M:%SZ"`` strings (6 writes an HTTP date and lists).

We store devpi 6's shape, so ``from_v3`` turns a version 3 ``dataindex.json`` into a
version 2 one before the usual checks, and ``to_v3`` turns ours into what devpi 7
writes. Pure: no I/O.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Mapping
from typing import Any

from devpi_twisted.model.devpi_api import API_7, ALLOW_ALL, BLOCK_REMOTE, REMOTE_KEYS, RULE_KEY, \
    TRUST_KEY, TRUST_MODES, TYPE_NAMES_7, index_view, inheritance_rules
from devpi_twisted.model.indexes import PROJECT_RULE_KEY
from devpi_twisted.model.names import normalize_project

V3 = "3"
# devpi 7's names of types and remote keys are those of --devpi-api 7's answers
# (model/devpi_api.py): one table for both
TYPES_FROM_V3 = {v: k for k, v in TYPE_NAMES_7.items()}
WHEN_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class V3Error(ValueError):
    """A version 3 value we cannot translate (the message names the index and key)."""


# -- version 3 -> what we read (version 2) ---------------------------------------------


def _config_from_v3(name: str, config: Mapping[str, Any], whitelist: list[str]) -> dict[str, Any]:
    result = dict(config)
    kind = result.get("type")
    result["type"] = TYPES_FROM_V3.get(str(kind), kind)
    if result["type"] == "mirror":
        for key, ours in REMOTE_KEYS.items():
            if key in result:
                result[ours] = result.pop(key)
        return result
    rules = result.pop(RULE_KEY, None)
    if rules is not None:
        rules = [rules] if isinstance(rules, str) else rules
        if rules not in ([ALLOW_ALL], [BLOCK_REMOTE], []):
            raise V3Error(f"index {name}: {RULE_KEY} {rules!r} is neither "
                          f"{[ALLOW_ALL]!r} nor {[BLOCK_REMOTE]!r}")
        whitelist = whitelist + ["*"] * (rules == [ALLOW_ALL])
    trust = result.pop(TRUST_KEY, None)
    if trust not in (None, ""):
        if str(trust).lower() not in TRUST_MODES:
            raise V3Error(f"index {name}: {TRUST_KEY} {trust!r} is neither 'none' nor "
                          "'type:not remote'")
        result["mirror_whitelist_inheritance"] = TRUST_MODES[str(trust).lower()]
    old = result.get("mirror_whitelist") or []  # (a 6 key left in a 7 dump: kept)
    result["mirror_whitelist"] = list(dict.fromkeys([*old, *whitelist])) if isinstance(old, list) else old
    return result


def _projects_from_v3(name: str, projects: Any) -> tuple[Any, list[str]]:
    """``{project: versions}`` and the projects whose rules say ``allow all``."""
    if not isinstance(projects, dict):
        return projects, []  # (format.py names the problem)
    result: dict[str, Any] = {}
    whitelist: list[str] = []
    for project, entry in projects.items():
        if not isinstance(entry, dict) or "versions" not in entry:
            raise V3Error(f"index {name}: project {project!r} is not "
                          "{'config': ..., 'versions': ...}")
        config = entry.get("config") or {}
        rules = config.get(PROJECT_RULE_KEY) if isinstance(config, dict) else config
        if rules not in (None, [], [ALLOW_ALL]):
            raise V3Error(f"index {name}: project {project}: {PROJECT_RULE_KEY} {rules!r} "
                          f"is not {[ALLOW_ALL]!r}")
        if rules == [ALLOW_ALL]:
            whitelist.append(normalize_project(str(project)))
        if entry["versions"]:
            result[project] = entry["versions"]
    return result, whitelist


def _when_from_v3(log: Any) -> None:
    for entry in log if isinstance(log, list) else ():
        when = entry.get("when") if isinstance(entry, dict) else None
        if isinstance(when, str):
            try:
                parsed = datetime.datetime.strptime(when, WHEN_FORMAT)
            except ValueError:
                continue  # kept as it is
            entry["when"] = [parsed.year, parsed.month, parsed.day, parsed.hour,
                             parsed.minute, parsed.second]


def _last_modified_from_v3(mapping: Any) -> None:
    if isinstance(mapping, dict) and isinstance(mapping.get("last_modified"), str):
        try:
            parsed = datetime.datetime.strptime(mapping["last_modified"], WHEN_FORMAT)
        except ValueError:
            return  # (an HTTP date already)
        mapping["last_modified"] = email.utils.format_datetime(
            parsed.replace(tzinfo=datetime.timezone.utc), usegmt=True)


def last_modified_to_v3(value: Any) -> Any:
    """An HTTP date as devpi 7 writes ``last_modified``; anything else as it is."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return value
    return parsed.astimezone(datetime.timezone.utc).strftime(WHEN_FORMAT)


def from_v3(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version 3 ``dataindex.json`` as the version 2 one format.py reads; V3Error
    names what cannot be translated. The files' ``size`` stays in their entrymapping
    (format.py checks it)."""
    result = dict(data)
    indexes = data.get("indexes")
    if not isinstance(indexes, dict):
        return result
    translated: dict[str, Any] = {}
    for name, dumped in indexes.items():
        if not isinstance(dumped, dict) or not isinstance(dumped.get("indexconfig"), dict):
            translated[name] = dumped
            continue
        dumped = dict(dumped)
        whitelist: list[str] = []
        if "projects" in dumped:
            dumped["projects"], whitelist = _projects_from_v3(name, dumped["projects"])
        dumped["indexconfig"] = _config_from_v3(name, dumped["indexconfig"], whitelist)
        files = dumped.get("files") or []
        for desc in files if isinstance(files, list) else ():
            if isinstance(desc, dict):
                _when_from_v3(desc.get("log"))
                _last_modified_from_v3(desc.get("entrymapping"))
        translated[name] = dumped
    result["indexes"] = translated
    return result


# -- what we write (version 2) -> version 3 --------------------------------------------


def config_to_v3(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A stored index config as devpi 7 keeps it (what ``--devpi-api 7`` shows), and the
    projects it whitelists by name."""
    result = index_view(config, API_7)
    if config.get("type") == "mirror":
        return result, []
    result.setdefault(RULE_KEY, inheritance_rules(config))
    whitelist = config.get("mirror_whitelist") or []
    return result, sorted({normalize_project(n) for n in whitelist if n != "*"})


def projects_to_v3(projects: Mapping[str, Any], whitelist: list[str]) -> dict[str, Any]:
    """``{project: versions}`` as devpi 7's ``{project: {"config", "versions"}}``."""
    return {project: {"config": {PROJECT_RULE_KEY: [ALLOW_ALL]} if project in whitelist else {},
                      "versions": projects.get(project, {})}
            for project in sorted({*projects, *whitelist})}


def when_to_v3(log: list[Any]) -> list[Any]:
    result = []
    for entry in log:
        when = entry.get("when") if isinstance(entry, Mapping) else None
        if isinstance(when, list) and len(when) == 6 and all(isinstance(p, int) for p in when):
            entry = {**entry, "when": datetime.datetime(*when).strftime(WHEN_FORMAT)}
        result.append(entry)
    return result
