"""Browser login sessions: the cookie carrying a login token, the CSRF token derived
from it, the Origin/Referer check, the login form page and its ``next`` path.

``POST /+login`` from an HTML form (web/app.py) sets two cookies: ``devpi_session``
(HttpOnly; the user name and a login token) and ``devpi_csrf`` (readable by the page's
scripts; the CSRF token). Both are ``SameSite=Strict; Path=/``, ``Secure`` when the
site's outside URL is https, and live as long as the token. A request authenticated
by the session cookie that is not GET or HEAD must carry the CSRF token (header
``X-CSRF-Token`` or form field ``csrf_token``) and, when it names one, come from the
site's own origin (``Origin``, else ``Referer``). The CSRF token is an HMAC of a fixed
text keyed with the login token: only who holds the session's token can make it, and
it tells nothing about the token. Requests with credentials in headers (Basic,
``X-Devpi-Auth``) never use the cookie and need none of this.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
from urllib.parse import parse_qs, urlsplit

from devpi_twisted.model.errors import Forbidden, InvalidInput
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.site import FORM_MEDIA, MAX_FORM_BODY

COOKIE = "devpi_session"
CSRF_COOKIE = "devpi_csrf"
CSRF_HEADER = b"X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELDS = 32
SAFE_METHODS = (b"GET", b"HEAD")
_CSRF_TEXT = b"devpi-twisted csrf token"
_DEFAULT_PORTS = {"http": 80, "https": 443}


# -- cookies ------------------------------------------------------------------


def _cookies(request: HttpRequest) -> dict[str, str]:
    """The request's cookies by name (the first of a name wins); malformed pairs skipped."""
    found: dict[str, str] = {}
    for header in request.requestHeaders.getRawHeaders(b"Cookie", []):
        for pair in header.decode("latin-1").split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name and name not in found:
                found[name] = value.strip().strip('"')
    return found


def session_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """(username, login token) of the session cookie, or None (none, or not ours)."""
    value = _cookies(request).get(COOKIE)
    if not value:
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, token = text.partition(":")
    return (user, token) if sep and user and token else None


def csrf_token(token: str) -> str:
    """The CSRF token of a session whose login token is ``token``."""
    digest = hmac.new(token.encode("utf-8", "surrogatepass"), _CSRF_TEXT, hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii").rstrip("=")


def _cookie(name: str, value: str, max_age: int, secure: bool, http_only: bool) -> bytes:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("ascii")


def set_session(request: HttpRequest, user: str, token: str, max_age: int, secure: bool) -> None:
    """Set the session and CSRF cookies for ``user``'s login ``token``."""
    value = base64.urlsafe_b64encode(f"{user}:{token}".encode("utf-8", "surrogatepass"))
    request.responseHeaders.addRawHeader(
        b"Set-Cookie", _cookie(COOKIE, value.decode("ascii").rstrip("="), max_age, secure, True))
    request.responseHeaders.addRawHeader(
        b"Set-Cookie", _cookie(CSRF_COOKIE, csrf_token(token), max_age, secure, False))
    request.setHeader(b"Cache-Control", b"no-store")


def clear_session(request: HttpRequest, secure: bool) -> None:
    for name, http_only in ((COOKIE, True), (CSRF_COOKIE, False)):
        request.responseHeaders.addRawHeader(b"Set-Cookie",
                                             _cookie(name, "", 0, secure, http_only))
    request.setHeader(b"Cache-Control", b"no-store")


# -- forms and CSRF -----------------------------------------------------------


def is_form(request: HttpRequest) -> bool:
    """An urlencoded body that is not JSON: clients posting JSON without a content
    type of their own (Python's urllib says urlencoded) stay JSON clients."""
    media = (request.getHeader(b"Content-Type") or b"").split(b";", 1)[0].strip().lower()
    if media != FORM_MEDIA:
        return False
    content = request.content
    if content is None:
        return True
    content.seek(0)
    start = content.read(64).lstrip()
    content.seek(0)
    return start[:1] not in (b"{", b"[")


def read_form(request: HttpRequest) -> dict[str, str]:
    """The fields of an urlencoded body (the first value of each); InvalidInput if it
    is longer than MAX_FORM_BODY or has more than MAX_FORM_FIELDS fields."""
    content = request.content
    if content is None:
        return {}
    content.seek(0)
    data: bytes = content.read(MAX_FORM_BODY + 1)
    if len(data) > MAX_FORM_BODY:
        raise InvalidInput(f"Bad request: form body larger than {MAX_FORM_BODY} bytes")
    try:
        fields = parse_qs(data.decode("latin-1"), keep_blank_values=True, errors="replace",
                          max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise InvalidInput(f"Bad request: more than {MAX_FORM_FIELDS} form fields") from None
    return {name: values[0] for name, values in fields.items()}


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def same_origin(request: HttpRequest, base: str) -> bool:
    """Whether the request's Origin (else its Referer) is the site's (``base``, its
    outside URL); a request naming neither passes (the CSRF token decides)."""
    for name in (b"Origin", b"Referer"):
        value = request.getHeader(name)
        if value:
            return _origin(value.decode("latin-1")) == _origin(base)
    return True


def check_csrf(request: HttpRequest, token: str, base: str) -> None:
    """Refuse (Forbidden) a state-changing request made with the session cookie of
    login ``token`` that lacks its CSRF token or comes from another origin."""
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request, base):
        raise Forbidden("cross-site request refused: Origin/Referer is not this server")
    given = request.getHeader(CSRF_HEADER)
    if given is None and is_form(request):
        given = read_form(request).get(CSRF_FIELD, "").encode("latin-1", "replace")
    if not given or not hmac.compare_digest(given, csrf_token(token).encode("ascii")):
        raise Forbidden("CSRF token missing or wrong: a request made with the session cookie "
                        f"needs the {CSRF_HEADER.decode()} header or the {CSRF_FIELD} form field")


# -- the login page -----------------------------------------------------------


def local_path(value: str) -> str:
    """``value`` if it is a path on this server (``/...``, not ``//host`` or a URL,
    no backslash or control character), else ``/``: the ``next`` of a login never
    leads elsewhere."""
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or len(value) > 2000):
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def login_page(base: str, next_path: str, message: str = "") -> bytes:
    """A minimal HTML login form posting to ``+login`` (styled by the web interface)."""
    text = html.escape
    error = f'<p class="error" role="alert">{text(message)}</p>\n' if message else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>devpi: log in</title></head>
<body>
<h1>Log in</h1>
{error}<form method="post" action="{text(base)}/+login">
<p><label>User name <input name="username" autocomplete="username" required></label></p>
<p><label>Password
<input name="password" type="password" autocomplete="current-password"></label></p>
<input type="hidden" name="next" value="{text(next_path)}">
<p><button type="submit">Log in</button></p>
</form>
</body></html>
""".encode("utf-8")
