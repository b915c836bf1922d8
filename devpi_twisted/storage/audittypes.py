"""Values of the audit log as storage keeps them (model/audit.py says what is recorded;
auditplans.py holds the plans).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class AuditEntry:
    """One audit event as stored (model/audit.py says what is recorded). Audit rows are
    not index state: writing one takes no serial and leaves no changelog entry, so they
    are neither replicated nor exported. ``actor`` None: anonymous; ``index``:
    ``user/index`` or None; ``process``: ``host:pid`` of the process that recorded it;
    ``id``: 0 until stored, then increasing with every append."""

    kind: str
    actor: str | None
    client: str
    index: str | None
    details: Mapping[str, Any]
    at: float
    process: str = ""
    id: int = 0


@attrs.frozen
class AuditQuery:
    """Filters of ``query_audit`` (None: not filtered): ``kinds`` any of these,
    ``since <= at < until``, ``before_id``: only entries older than that id (paging)."""

    kinds: frozenset[str] | None = None
    actor: str | None = None
    index: str | None = None
    client: str | None = None
    since: float | None = None
    until: float | None = None
    before_id: int | None = None
    limit: int = 100
