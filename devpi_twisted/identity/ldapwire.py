"""The LDAP operations a directory check uses, on a connected ldaptor ``LDAPClient``:
a simple bind and a search (filter values escaped, size-limited, search continuation
references collected), plus the escaping of a DN value and the reading of a referral URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
from ldaptor.ldapfilter import parseFilter  # type: ignore[import-untyped]
from ldaptor.protocols import pureldap  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from devpi_twisted.identity.ldapconfig import SCOPES, Search, Server, Tls

SUCCESS, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT = 0, 4, 32
SERVER_TROUBLE = frozenset({51, 52})  # busy, unavailable: the directory, not the user
DN_SPECIAL = re.compile(r'([,+"\\<>;=])')
URL_SCOPES = {"base": SCOPES["base-object"], "one": SCOPES["single-level"],
              "sub": SCOPES["whole-subtree"]}

log = Logger()


class DirectoryTrouble(Exception):
    """The directory answered that it cannot serve (busy, unavailable, search user refused)."""


@attrs.frozen
class Found:
    """What a search found: the values of its attribute, and the URLs of the search
    continuation references (referrals) the server sent instead of entries it lacks."""

    values: list[str]
    references: list[str]


@attrs.frozen
class Referred:
    """Where a referral URL points: a server, and the base and scope to search there
    (None: the original search's)."""

    server: Server
    base: str | None
    scope: int | None


def escape_dn_value(value: str) -> str:
    """``value`` as an attribute value inside a DN (RFC 4514 section 2.4)."""
    escaped = DN_SPECIAL.sub(r"\\\1", value).replace("\0", "\\00")
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def referred(url: str, tls: Tls) -> Referred | None:
    """The target of an LDAP URL in a referral (RFC 4516: ``ldap://host:port/base??scope``),
    checked with ``tls``; None if it is not an ldap(s) URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        return None
    ldaps = parts.scheme == "ldaps"
    server = Server(url, unquote(parts.hostname), port or (636 if ldaps else 389), ldaps, tls)
    fields = parts.query.split("?")
    scope = URL_SCOPES.get(fields[1]) if len(fields) > 1 else None
    return Referred(server, unquote(parts.path[1:]) or None, scope)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _values(entry: Any, attribute: str) -> list[str]:
    """The values of ``attribute`` in a search result entry; for ``dn`` or
    ``distinguishedName`` not sent as an attribute, the entry's own DN."""
    wanted = attribute.lower()
    for name, values in entry.attributes:
        if _text(name).lower() == wanted:
            return [_text(v) for v in values]
    if wanted in ("dn", "distinguishedname"):
        return [_text(entry.objectName)]
    return []


def _flatten(lists: Iterable[list[str]]) -> list[str]:
    return [value for values in lists for value in values]


async def bind(client: Any, dn: str, password: str) -> bool:
    """Whether the directory accepts ``password`` for ``dn``; raises DirectoryTrouble
    when it answers that it cannot serve."""
    response = await client.send(pureldap.LDAPBindRequest(dn=dn, auth=password))
    if response.resultCode in SERVER_TROUBLE:
        raise DirectoryTrouble(_text(response.errorMessage) or "busy or unavailable")
    return bool(response.resultCode == SUCCESS)


async def search(client: Any, what: Search, limit: int, values: Mapping[str, str],
                 base: str | None = None, scope: int | None = None) -> Found:
    """The ``attribute_name`` values of the (at most ``limit``) entries ``what`` finds
    under ``base`` (default: its own), its filter's placeholders filled with ``values``
    escaped; and the references the server sent."""
    text = what.filter.format(**{k: pureldap.escape(v) for k, v in values.items()})
    request = pureldap.LDAPSearchRequest(
        baseObject=what.base if base is None else base,
        scope=what.scope if scope is None else scope, filter=parseFilter(text),
        attributes=[what.attribute_name], sizeLimit=limit)
    entries: list[Any] = []
    references: list[str] = []
    done: Deferred[Any] = Deferred()

    def handle(message: Any) -> bool:
        if isinstance(message, pureldap.LDAPSearchResultEntry):
            if len(entries) < limit:
                entries.append(message)
            return False
        if isinstance(message, pureldap.LDAPSearchResultReference):
            references.extend(_text(uri.value if hasattr(uri, "value") else uri)
                              for uri in message.uris)
            return False
        if not done.called:
            done.callback(message)
        return True

    sent = client.send_multiResponse(request, handle)
    sent.addErrback(lambda failure: None if done.called else done.errback(failure))
    result = await done
    if result.resultCode in SERVER_TROUBLE:
        raise DirectoryTrouble(_text(result.errorMessage) or "busy or unavailable")
    if result.resultCode not in (SUCCESS, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT):
        log.warn("LDAP search under {base} ended with result code {code}: {text}",
                 base=request.baseObject, code=result.resultCode,
                 text=_text(result.errorMessage))
    return Found(_flatten(_values(entry, what.attribute_name) for entry in entries), references)
