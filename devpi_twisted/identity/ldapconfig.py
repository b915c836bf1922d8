"""``--ldap-config FILE``: devpi-ldap's YAML format read into frozen settings.

Read once at start (``makeService`` runs before the reactor): every mistake raises
StartupError naming the file and the key, so a bad file stops the server instead of
failing the first login. Keys (all under ``devpi-ldap:``): ``url`` or ``server_pool``
(a list of ``{url, tls}``), ``tls`` (``validate`` 0/1/2 and ``ca_certs_file``, as
devpi-ldap hands to ldap3), ``start_tls`` (ours), ``user_template`` or ``user_search``,
``group_search``, ``referrals``, ``reject_as_unknown``, ``timeout``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import yaml
from ldaptor.ldapfilter import InvalidLDAPFilter, parseFilter  # type: ignore[import-untyped]

from devpi_twisted.serverdir import StartupError

DEFAULT_TIMEOUT = 10.0
SCOPES = {"base-object": 0, "single-level": 1, "whole-subtree": 2}
TOP_KEYS = frozenset({"url", "server_pool", "tls", "start_tls", "user_template", "user_search",
                      "group_search", "referrals", "reject_as_unknown", "timeout"})
SEARCH_KEYS = frozenset({"base", "filter", "scope", "attribute_name", "userdn", "password"})
TLS_KEYS = frozenset({"validate", "ca_certs_file"})
MAX_FILE = 1024 * 1024


@attrs.frozen
class Tls:
    """``validate``: 0 checks no certificate (devpi-ldap's default), 1 and 2 check it
    and the host name (ours: 2 unless set); ``ca_file``: the CAs trusted (default: the
    system's)."""

    validate: int = 2
    ca_file: Path | None = None


@attrs.frozen
class Server:
    url: str
    host: str
    port: int
    ldaps: bool
    tls: Tls = Tls()


@attrs.frozen
class Search:
    """``user_search`` or ``group_search``; ``userdn``/``password``: bind as them first."""

    base: str
    filter: str
    scope: int
    attribute_name: str
    userdn: str | None = None
    password: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class LdapSettings:
    servers: tuple[Server, ...]
    user_template: str | None = None
    user_search: Search | None = None
    group_search: Search | None = None
    start_tls: bool = False
    referrals: bool = True
    reject_as_unknown: bool = True
    timeout: float = DEFAULT_TIMEOUT

    @property
    def name(self) -> str:
        return " ".join(server.url for server in self.servers)


def read_ldap_config(path: Path) -> LdapSettings:
    """The settings of ``path``; raises StartupError with one line saying what is wrong."""
    where = f"--ldap-config {path}"
    try:
        with path.open("rb") as f:
            text = f.read(MAX_FILE + 1)
    except OSError as e:
        raise StartupError(f"{where}: cannot read it: {e.strerror}") from None
    if len(text) > MAX_FILE:
        raise StartupError(f"{where}: larger than {MAX_FILE} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise StartupError(f"{where}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("devpi-ldap"), Mapping):
        raise StartupError(f"{where}: expected a mapping under a top-level 'devpi-ldap' key")
    try:
        return parse_settings(data["devpi-ldap"])
    except ValueError as e:
        raise StartupError(f"{where}: {e}") from None


def parse_settings(raw: Mapping[str, Any]) -> LdapSettings:
    """Settings of the mapping under ``devpi-ldap``; raises ValueError naming the key."""
    _known(raw, TOP_KEYS, "")
    if ("url" in raw) == ("server_pool" in raw):
        raise ValueError("give either 'url' or 'server_pool' (not both, not neither)")
    servers: tuple[Server, ...]
    if "url" in raw:
        servers = (_server(raw["url"], raw.get("tls"), "url"),)
    else:
        pool = raw["server_pool"]
        if not isinstance(pool, list) or not pool:
            raise ValueError("'server_pool' must be a non-empty list of {url, tls}")
        for entry in pool:
            if not isinstance(entry, Mapping) or "url" not in entry:
                raise ValueError("every 'server_pool' entry needs a 'url'")
            _known(entry, frozenset({"url", "tls"}), "server_pool entry ")
        servers = tuple(_server(e["url"], e.get("tls", raw.get("tls")), "server_pool url")
                        for e in pool)
    if ("user_template" in raw) == ("user_search" in raw):
        raise ValueError("give either 'user_template' or 'user_search' (not both, not neither)")
    template = None
    if "user_template" in raw:
        template = _text(raw["user_template"], "user_template")
        _placeholders(template, {"username"}, "user_template", required="username")
    user_search = _search(raw["user_search"], "user_search", {"username"}) \
        if "user_search" in raw else None
    group_search = _search(raw["group_search"], "group_search", {"username", "userdn"}) \
        if raw.get("group_search") is not None else None
    settings = LdapSettings(
        servers, template, user_search, group_search,
        start_tls=_bool(raw.get("start_tls", False), "start_tls"),
        referrals=_bool(raw.get("referrals", True), "referrals"),
        reject_as_unknown=_bool(raw.get("reject_as_unknown", True), "reject_as_unknown"),
        timeout=_timeout(raw.get("timeout", DEFAULT_TIMEOUT)))
    if settings.start_tls and any(s.ldaps for s in servers):
        raise ValueError("'start_tls' is for ldap:// URLs; an ldaps:// URL is TLS already")
    return settings


def _known(raw: Mapping[str, Any], keys: frozenset[str], what: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        raise ValueError(f"unknown {what}key(s): {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(keys))})")


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"'{key}' must be true or false, not {value!r}")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise ValueError(f"'timeout' must be a number of seconds above 0 and at most 600, "
                         f"not {value!r}")
    return float(value)


def _server(url: Any, tls: Any, key: str) -> Server:
    parts = urlsplit(_text(url, key))
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"'{key}': {url!r} is not an ldap:// or ldaps:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"'{key}': {url!r} must name only the host and port")
    try:
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    except ValueError:
        raise ValueError(f"'{key}': {url!r} has a bad port") from None
    return Server(url, unquote(parts.hostname), port, parts.scheme == "ldaps", _tls(tls))


def _tls(raw: Any) -> Tls:
    if raw is None:
        return Tls()
    if not isinstance(raw, Mapping):
        raise ValueError("'tls' must be a mapping (validate, ca_certs_file)")
    _known(raw, TLS_KEYS, "tls ")
    validate = raw.get("validate", 2)
    if validate not in (0, 1, 2) or isinstance(validate, bool):
        raise ValueError(f"'tls: validate' must be 0, 1 or 2 (ssl.CERT_*), not {validate!r}")
    ca_file = None
    if raw.get("ca_certs_file") is not None:
        ca_file = Path(_text(raw["ca_certs_file"], "tls: ca_certs_file")).expanduser()
        if not ca_file.is_file():
            raise ValueError(f"'tls: ca_certs_file': {ca_file} is not a readable file")
    return Tls(validate, ca_file)


def _placeholders(text: str, allowed: set[str], key: str, required: str | None = None) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as e:
        raise ValueError(f"'{key}': {e}") from None
    if names - allowed:
        raise ValueError(f"'{key}' may use {', '.join('{' + a + '}' for a in sorted(allowed))}, "
                         f"not {', '.join('{' + n + '}' for n in sorted(names - allowed))}")
    if required is not None and required not in names:
        raise ValueError(f"'{key}' must contain {{{required}}}")


def _search(raw: Any, key: str, allowed: set[str]) -> Search:
    if not isinstance(raw, Mapping):
        raise ValueError(f"'{key}' must be a mapping (base, filter, scope, attribute_name)")
    _known(raw, SEARCH_KEYS, f"{key} ")
    for needed in ("base", "filter", "attribute_name"):
        if needed not in raw:
            raise ValueError(f"'{key}' needs '{needed}'")
    search_filter = _text(raw["filter"], f"{key}: filter")
    _placeholders(search_filter, allowed, f"{key}: filter")
    try:
        parseFilter(search_filter.format(**{name: "x" for name in allowed}))
    except InvalidLDAPFilter as e:
        raise ValueError(f"'{key}: filter' is not an LDAP filter: {e}") from None
    scope = raw.get("scope", "whole-subtree")
    if scope not in SCOPES:
        raise ValueError(f"'{key}: scope' must be one of {', '.join(SCOPES)}, not {scope!r}")
    userdn = raw.get("userdn")
    if userdn is not None and raw.get("password") is None:
        raise ValueError(f"'{key}' sets 'userdn' without its 'password'")
    return Search(
        base=_text(raw["base"], f"{key}: base"), filter=search_filter, scope=SCOPES[scope],
        attribute_name=_text(raw["attribute_name"], f"{key}: attribute_name"),
        userdn=None if userdn is None else _text(userdn, f"{key}: userdn"),
        password=None if userdn is None else str(raw["password"]))
