"""``GET /+search``: full-text search (model/search.py) for anyone, over the indexes the
caller may read. JSON (``{"type": "search", "result": {...}}``) where JSON is
acceptable; for a browser, the page an injected ``html`` callable renders (without
one: "no HTML view here"). Query parameters: ``query``, ``user``, ``index``, ``page``,
each at most once; the query string at most MAX_QUERY_STRING bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.search import SearchHit, SearchOps, SearchResults
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, json_view, query_params

MAX_QUERY_STRING = 2048  # bytes
PARAMETERS = frozenset({"query", "user", "index", "page"})
MAX_PAGE_DIGITS = 4

SearchPage = Callable[[HttpRequest, SearchResults], bytes]


def hit_json(hit: SearchHit, base: str) -> dict[str, Any]:
    return {"user": hit.user, "index": hit.index, "project": hit.project, "version": hit.version,
            "kind": hit.kind, "title": hit.title, "path": hit.path, "url": base + hit.path,
            "snippet": [[text, matched] for text, matched in hit.snippet], "score": hit.score}


def results_json(results: SearchResults, base: str) -> dict[str, Any]:
    return {"query": results.query, "total": results.total, "page": results.page,
            "per_page": results.per_page, "hits": [hit_json(h, base) for h in results.hits]}


def parameters(request: HttpRequest) -> dict[str, str]:
    """The search's query parameters (each at most once; others are ignored);
    InvalidInput for a query string too long or not UTF-8."""
    found = query_params(request, MAX_QUERY_STRING, "search")
    params = {}
    for name in PARAMETERS & found.keys():
        if len(found[name]) > 1:
            raise InvalidInput(f"search: '{name}' given more than once")
        params[name] = found[name][0]
    return params


def page_number(text: str | None) -> int:
    if text is None or text == "":
        return 1
    if not text.isascii() or not text.isdigit() or len(text) > MAX_PAGE_DIGITS:
        raise InvalidInput("search: 'page' must be a page number")
    return int(text)


class SearchApp:
    """Needs the search operations, the request helpers (identity, base URL) and the
    HTML page (None: none)."""

    def __init__(self, search: SearchOps, helpers: RequestHelpers,
                 html: SearchPage | None = None) -> None:
        self._search = search
        self._helpers = helpers
        self._html = html

    async def search(self, request: HttpRequest) -> bytes:
        if self._html is None:
            json_view(request)
        params = parameters(request)
        identity = await self._helpers.identity(request)
        results = await self._search.search(
            identity, params.get("query", ""), user=params.get("user") or None,
            index=params.get("index") or None, page=page_number(params.get("page")))
        request.setHeader(b"Cache-Control", b"no-store" if identity.authenticated else b"no-cache")
        request.setHeader(b"Vary", b"Accept, Authorization, Cookie")
        if self._html is not None and not render.json_acceptable(request):
            return self._html(request, results)
        return render.result(request, "search", results_json(results, self._helpers.base(request)))
