"""Content negotiation and devpi's JSON envelopes; domain errors mapped to statuses."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from twisted.web.http import RESPONSES

from devpi_twisted.model import errors
from devpi_twisted.model.names import is_unicode
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.simple import is_installer
from devpi_twisted.web.site import json_bytes
from devpi_twisted.web.ui.templating import error_page

JSON = b"application/json"
MAX_JSON_DEPTH = 64  # arrays and objects inside each other in a request body
# handlers (of web/routes.py) whose GET a browser gets as a page of the web interface
PAGE_HANDLERS = frozenset({"management.list_users", "management.get_user",
                           "management.get_index", "projects.project_view",
                           "projects.version_view", "web.docs_frame", "web.docs_frame_index"})

STATUS = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.Gone: 410,
    errors.TooLarge: 413,
    errors.UnsupportedMedia: 415,
    errors.TooManyAttempts: 429,
    errors.Unavailable: 503,
    errors.UpstreamFailed: 502,
}


class BadJSON(errors.InvalidInput):
    def __init__(self) -> None:
        super().__init__("Bad request: could not decode json")


def accept(request: HttpRequest) -> str:
    value = request.getHeader(b"Accept")
    return value.decode("latin-1") if value else ""


def json_acceptable(request: HttpRequest) -> bool:
    """JSON views serve requests asking for JSON, or for nothing in particular;
    a request asking for HTML (a browser) does not get them."""
    value = accept(request)
    return not value or "application/json" in value or "text/html" not in value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _check_json(value: Any) -> Any:
    """``value`` if it nests at most MAX_JSON_DEPTH deep and all its text is valid Unicode
    (no lone surrogates: they cannot be stored or sent as UTF-8); else InvalidInput."""
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                raise errors.InvalidInput(
                    "Bad request: JSON text holds a lone surrogate (\\ud800-\\udfff)")
        elif isinstance(item, (list, dict)):
            if depth >= MAX_JSON_DEPTH:
                raise errors.InvalidInput(
                    f"Bad request: JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            todo.extend((child, depth + 1) for child in children)
    return value


def read_json(request: HttpRequest) -> Any:
    """The request body as JSON: at most the JSON body limit (json_bytes), finite numbers,
    no NaN/Infinity, bounded nesting, valid Unicode; BadJSON or InvalidInput otherwise."""
    body = json_bytes(request)
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadJSON() from None
    return _check_json(value)


def _send(request: HttpRequest, status: int, content_type: bytes, data: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return data


def json_body(request: HttpRequest, status: int, body: Any) -> bytes:
    return _send(request, status, JSON, json.dumps(body, indent=2, sort_keys=True).encode("utf-8"))


def result(request: HttpRequest, type_: str, value: Any, message: str | None = None,
           status: int = 200) -> bytes:
    body: dict[str, Any] = {"type": type_, "result": value}
    if message:
        body["message"] = message
    return json_body(request, status, body)


def message(request: HttpRequest, text: str, status: int = 200) -> bytes:
    return json_body(request, status, {"message": text})


def browser(request: HttpRequest) -> bool:
    """A browser's request (HTML asked for, JSON not, no installer): it gets the web
    interface's pages (web/ui), errors too."""
    return not json_acceptable(request) and not is_installer(request)


def _handler(request: HttpRequest) -> str:
    found = getattr(request, "devpi_match", None)  # (web/site.py, DevpiRequest)
    return str(getattr(getattr(found, "route", None), "handler", ""))


def error(request: HttpRequest, status: int, text: str) -> bytes:
    """An error reply: JSON ``{"message": ...}`` when JSON is acceptable, a page of the
    web interface for a browser, else (installers) a small HTML page."""
    if json_acceptable(request):
        return json_body(request, status, {"message": text})
    title = f"{status} {RESPONSES.get(status, b'').decode()}"
    if not is_installer(request):
        return error_page(request, status, title, text)
    page = (f"<html><head><title>{html.escape(title)}</title></head><body><h1>"
            f"{html.escape(title)}</h1>{html.escape(text)}</body></html>")
    request.setHeader(b"Content-Security-Policy", b"default-src 'none'; base-uri 'none'")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return _send(request, status, b"text/html; charset=UTF-8", page.encode("utf-8"))


def domain_error(request: HttpRequest, e: errors.DomainError) -> bytes:
    status = next((code for cls, code in STATUS.items() if isinstance(e, cls)), 400)
    # a browser opening a page gets the page with its "Log in" link, not the native
    # password dialog (installers, JSON clients and file downloads keep the challenge)
    if isinstance(e, errors.Unauthenticated) and e.challenge and not (
            browser(request) and _handler(request) in PAGE_HANDLERS):
        request.setHeader(b"WWW-Authenticate", b'Basic realm="%s"' % e.realm.encode("ascii"))
    retry_after = getattr(e, "retry_after", None)
    if retry_after is not None:
        request.setHeader(b"Retry-After", b"%d" % max(1, math.ceil(retry_after)))
    return error(request, status, e.message)
