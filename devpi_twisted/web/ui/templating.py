"""The Jinja2 environment of the web pages (autoescape on, templates from this
package), the filters they use (URL path segments, sizes, UTC dates with relative
times) and the answer of a page: its headers (a strict Content-Security-Policy, no
sniffing, no caching of pages that depend on who asks) and the layout's context (the
outside URL every link starts from, who is logged in, the CSRF token of the session)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from devpi_twisted.model.acl import Identity
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.policy import parse_time as iso_time
from devpi_twisted.web import sessions
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.site import outside_url

if TYPE_CHECKING:
    import jinja2

# Our own pages: nothing but our stylesheet, our images, our forms and our frames.
PAGE_POLICY = (b"default-src 'none'; style-src 'self'; img-src 'self' data:; "
               b"form-action 'self'; frame-src 'self'; base-uri 'none'; "
               b"frame-ancestors 'self'")
HTML = b"text/html; charset=utf-8"

def segment(value: Any) -> str:
    """A value as one URL path segment (every reserved character quoted)."""
    return quote(str(value), safe="")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 text, a log entry's ``when`` list
    ([Y, M, D, h, m, s], UTC) or a number; None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) >= 6:
        try:
            year, month, day, hour, minute, second = (int(v) for v in value[:6])
            return datetime.datetime(year, month, day, hour, minute, second,
                                     tzinfo=datetime.timezone.utc).timestamp()
        except (TypeError, ValueError, OverflowError):
            return None
    return iso_time(value)


def utc(value: Any) -> str:
    """``2024-05-01 12:00 UTC``, or "" for no time."""
    seconds = parse_time(value)
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def iso(value: Any) -> str:
    seconds = parse_time(value)
    return "" if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


_UNITS = ((365 * 86400, "year"), (30 * 86400, "month"), (7 * 86400, "week"),
          (86400, "day"), (3600, "hour"), (60, "minute"))


def ago(value: Any, now: float | None = None) -> str:
    """``3 days ago`` (``just now`` under a minute; ``in ...`` for a future time)."""
    seconds = parse_time(value)
    if seconds is None:
        return ""
    delta = (time.time() if now is None else now) - seconds
    span = abs(delta)
    for unit, name in _UNITS:
        if span >= unit:
            count = int(span // unit)
            text = f"{count} {name}{'s' if count != 1 else ''}"
            return f"{text} ago" if delta >= 0 else f"in {text}"
    return "just now"


def size(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return ""
    amount = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{value} bytes" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    return ""


def path(value: Any) -> str:
    """A relative URL path (``user/index/+f/...``) with each segment quoted."""
    return quote(str(value), safe="/")


@cache
def environment() -> jinja2.Environment:
    """The pages' Jinja2 environment, made (and jinja2 imported: 2 MB resident) when the
    first page is rendered: a server that only answers installers never needs it."""
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("devpi_twisted.web.ui", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        auto_reload=False)
    env.filters.update(q=segment, path=path, utc=utc, iso=iso, ago=ago, size=size)
    return env


def layout(request: HttpRequest, base: str, identity: Identity, now: float) -> dict[str, Any]:
    """What the layout needs: the base URL, who is logged in, the session's CSRF token
    (for the forms that change things), the path to come back to after log in/out, the
    server's time (relative times are relative to it)."""
    session = sessions.session_credentials(request)
    csrf = sessions.csrf_token(session[1]) if session is not None else ""
    here = request.path.decode("utf-8", "replace")
    mount = urlsplit(base).path.rstrip("/")  # the outside URL's path: not ours to route
    if mount and here.startswith(mount + "/"):
        here = here[len(mount):]
    return {"base": base, "username": identity.username if identity.authenticated else None,
            "csrf": csrf, "here": sessions.local_path(here), "session": session is not None,
            "now": now}


def send(request: HttpRequest, body: bytes, status: int = 200) -> bytes:
    """A page's bytes with its headers."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", HTML)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.setHeader(b"Content-Security-Policy", PAGE_POLICY)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Referrer-Policy", b"same-origin")
    request.setHeader(b"Vary", b"Accept, User-Agent, Cookie")
    request.setHeader(b"Cache-Control", b"private, no-cache")
    return body


def error_page(request: HttpRequest, status: int, title: str, text: str) -> bytes:
    """An error as a page of the layout (for browsers), with the "Log in" link: for who
    it is, whoever the request was found to be (anonymous if nobody asked yet)."""
    site = getattr(request, "site", None)
    info = getattr(site, "info", None)
    base = outside_url(request, getattr(info, "outside_url", None))
    identity = getattr(request, "devpi_identity", None)
    context = layout(request, base, identity if isinstance(identity, Identity) else Identity(),
                     time.time())
    return page(request, "error.html", {**context, "title": title, "text": text,
                                        "status": status}, status)


def page(request: HttpRequest, name: str, context: Mapping[str, Any], status: int = 200) -> bytes:
    """Template ``name`` rendered with ``context`` (which holds the layout's), sent."""
    return send(request, environment().get_template(name).render(context).encode("utf-8"), status)


def pages_of(total: int, number: int, per_page: int) -> tuple[int, int, int]:
    """(first item, last item + 1, number of pages) of page ``number`` (from 1)."""
    count = max(1, -(-total // per_page))
    start = (number - 1) * per_page
    return start, min(total, start + per_page), count


def page_number(request: HttpRequest, maximum: int = 1_000_000) -> int:
    """``?page=N`` (1 when absent); InvalidInput for anything but 1..maximum."""
    raw: Sequence[bytes] = (request.args or {}).get(b"page") or [b"1"]
    text = raw[0].decode("latin-1")
    if not text.isdigit() or len(text) > 7 or not 1 <= int(text) <= maximum:
        raise InvalidInput(f"page must be a number from 1 to {maximum}")
    return int(text)
