"""``GET /+audit``: the audit log as JSON (AuditApp), for root and --restrict-modify
admins; the filters and their checks are model/audit.py's (parse_query)."""

from __future__ import annotations

from devpi_twisted.model.audit import AuditOps
from devpi_twisted.model.errors import NotFound
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, query_params

MAX_QUERY = 4096  # bytes of query string


class AuditApp:
    """Needs the audit reading operations (None: a server built without an audit log
    answers 404) and the request helpers (the identity)."""

    def __init__(self, audit: AuditOps | None, helpers: RequestHelpers) -> None:
        self._audit = audit
        self._helpers = helpers

    async def events(self, request: HttpRequest) -> bytes:
        """``{"type": "audit", "result": {"events": [...], "next": cursor}}``, newest first;
        filters kind, user, index, client, since, until; paging limit, cursor."""
        if self._audit is None:
            raise NotFound("this server keeps no audit log")
        identity = await self._helpers.identity(request)
        params = query_params(request, MAX_QUERY, "audit")
        result = await self._audit.query(identity, params)
        request.setHeader(b"Cache-Control", b"no-store")
        return render.result(request, "audit", result)
