"""Numbered schema migrations: ``NNNN_name.DIALECT.sql`` files applied in order.

The applied version is kept in ``schema_version``; a database newer than this
code refuses to open. A script that is only ``-- include: NAME.sql`` runs the shared
``NAME.sql`` (SQL both dialects accept), so a step both take is written once.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.(sqlite|postgres)\.sql$")
_TRIGGER = re.compile(r"CREATE\s+TRIGGER\b", re.IGNORECASE)
_END = re.compile(r"\bEND\Z", re.IGNORECASE)
_INCLUDE = re.compile(r"\A-- include: ([a-z0-9_]+\.sql)\s*\Z")


def scripts(dialect: str) -> list[tuple[int, str]]:
    """(version, SQL text) of every migration for ``dialect``, oldest first."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match and match.group(2) == dialect:
            text = entry.read_text(encoding="utf-8")
            shared = _INCLUDE.match(text)
            if shared:
                text = resources.files(__name__).joinpath(shared.group(1)).read_text(encoding="utf-8")
            found.append((int(match.group(1)), text))
    found.sort()
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations for {dialect} are not numbered 1..n: {versions}")
    return found


def latest(dialect: str) -> int:
    return len(scripts(dialect))


def statements(sql: str) -> list[str]:
    """The statements of a migration script: ``--`` comments dropped, split on ';'
    (our scripts hold no ';' or '--' inside string literals), except inside a
    ``CREATE TRIGGER ... BEGIN ... END`` (whose body holds statements of its own)."""
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    found: list[str] = []
    pending = ""
    for part in code.split(";"):
        pending = f"{pending};{part}" if pending else part
        text = pending.strip()
        if _TRIGGER.match(text) and not _END.search(text):
            continue  # inside a trigger's body
        if text:
            found.append(text)
        pending = ""
    if pending.strip():
        found.append(pending.strip())
    return found
