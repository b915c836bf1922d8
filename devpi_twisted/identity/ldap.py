"""An LDAP directory as the model's ``Directory``, spoken with ldaptor on the reactor.

A check (``LdapDirectory.check``) finds the user's DN (``user_template``, or a
``user_search`` bound anonymously or as its ``userdn``), binds as it with the password,
then reads the groups (``group_search``, on the user's connection or bound as its own
``userdn``). Each check opens its connections and closes them when done; the whole
check has the configured ``timeout`` on the reactor's clock. A directory that cannot
be reached, breaks the connection, fails TLS or is too slow raises
``errors.Unavailable`` (503), never a refusal. Search continuation references
(referrals) are not followed. Passwords are never logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ldaptor.ldapfilter import parseFilter  # type: ignore[import-untyped]
from ldaptor.protocols import pureldap  # type: ignore[import-untyped]
from ldaptor.protocols.ldap.ldapclient import LDAPClient  # type: ignore[import-untyped]
from ldaptor.protocols.ldap.ldaperrors import LDAPException  # type: ignore[import-untyped]
from OpenSSL import SSL
from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate, CertificateOptions, optionsForClientTLS, platformTrust, trustRootFromCertificates,
)
from twisted.logger import Logger
from zope.interface import implementer

from devpi_twisted.identity.ldapconfig import LdapSettings, Search, Server, Tls, read_ldap_config
from devpi_twisted.model.errors import Unavailable
from devpi_twisted.reactors import IClientReactor
from devpi_twisted.serverdir import StartupError

SUCCESS, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT = 0, 4, 32
MAX_GROUPS = 1000  # entries a group search returns at most (they travel in login tokens)
SERVER_TROUBLE = frozenset({51, 52})  # busy, unavailable: the directory, not the user
DN_SPECIAL = re.compile(r'([,+"\\<>;=])')
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
DOWN = (error.ConnectError, error.ConnectionClosed, LDAPException, SSL.Error)


class _DirectoryTrouble(Exception):
    """The directory answered that it cannot serve (busy, unavailable)."""


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """TLS without checking the certificate: ``tls: validate: 0`` (devpi-ldap's default)."""

    def __init__(self, host: str) -> None:
        self._host = host.encode("idna")
        self._context = CertificateOptions().getContext()

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_tlsext_host_name(self._host)
        return connection


def _tls_creator(host: str, tls: Tls) -> Any:
    """How TLS to ``host`` checks its certificate; raises StartupError for a bad CA file."""
    if tls.validate == 0:
        return _Unverified(host)
    if tls.ca_file is None:
        return optionsForClientTLS(host, trustRoot=platformTrust())
    try:
        pems = PEM_CERT.findall(tls.ca_file.read_bytes())
        certificates = [Certificate.loadPEM(pem) for pem in pems]
    except (OSError, SSL.Error, ValueError) as e:
        raise StartupError(f"--ldap-config: tls: ca_certs_file {tls.ca_file}: {e}") from None
    if not certificates:
        raise StartupError(f"--ldap-config: tls: ca_certs_file {tls.ca_file} holds no PEM "
                           "certificate")
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(certificates))


def escape_dn_value(value: str) -> str:
    """``value`` as an attribute value inside a DN (RFC 4514 section 2.4)."""
    escaped = DN_SPECIAL.sub(r"\\\1", value).replace("\0", "\\00")
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


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


class LdapDirectory:
    """The ``Directory`` of ``--ldap-config``; built before the reactor runs (a bad CA
    file raises StartupError there)."""

    log = Logger()

    def __init__(self, settings: LdapSettings, reactor: IClientReactor) -> None:
        self._settings = settings
        self._reactor = reactor
        self._tls = {server.url: _tls_creator(server.host, server.tls)
                     for server in settings.servers if server.ldaps or settings.start_tls}

    @property
    def name(self) -> str:
        return self._settings.name

    async def check(self, username: str, password: str) -> frozenset[str] | None:
        timeout = self._settings.timeout
        work = Deferred.fromCoroutine(self._check(username, password))
        work.addTimeout(timeout, self._reactor)
        try:
            return await work
        except defer.TimeoutError:
            self.log.warn("The LDAP directory did not answer within {timeout}s", timeout=timeout)
            raise Unavailable(f"the LDAP directory did not answer within {timeout:g} seconds; "
                              "try again later", retry_after=timeout) from None
        except (*DOWN, _DirectoryTrouble) as e:
            self.log.warn("The LDAP directory cannot be used: {error}", error=str(e) or repr(e))
            raise Unavailable("the LDAP directory cannot be reached; try again later") from None

    async def _check(self, username: str, password: str) -> frozenset[str] | None:
        settings = self._settings
        if settings.user_template is not None:
            userdn: str | None = settings.user_template.format(
                username=escape_dn_value(username))
        else:
            assert settings.user_search is not None
            userdn = await self._find_user(settings.user_search, username)
        if userdn is None or not password:
            return None
        client = await self._connect()
        try:
            if not await _bind(client, userdn, password):
                return None
            search = settings.group_search
            if search is None:
                return frozenset()
            if search.userdn is None:
                found = await _search(client, search, MAX_GROUPS, username=username,
                                      userdn=userdn)
                return frozenset(found)
        finally:
            _close(client)
        return frozenset(await self._search_as(search, MAX_GROUPS, username=username,
                                               userdn=userdn))

    async def _find_user(self, search: Search, username: str) -> str | None:
        found = await self._search_as(search, 2, username=username)  # 2: more than one
        if len(found) != 1:
            self.log.info("LDAP user search for {username} found {count} entries",
                          username=username, count=len(found))
            return None
        return found[0]

    async def _search_as(self, search: Search, limit: int, **values: str) -> list[str]:
        """A search on a connection of its own, bound as the search's ``userdn`` if it
        names one (anonymous otherwise)."""
        client = await self._connect()
        try:
            if search.userdn is not None and not await _bind(
                    client, search.userdn, search.password or ""):
                self.log.error("The LDAP directory refused the search user {userdn} of "
                               "--ldap-config", userdn=search.userdn)
                raise _DirectoryTrouble("the search user's bind was refused")
            return await _search(client, search, limit, **values)
        finally:
            _close(client)

    async def _connect(self) -> Any:
        """A connected LDAPClient (TLS started when configured): the servers in turn,
        the first that answers; raises the last one's error."""
        problem: Exception = error.ConnectError("no server")
        for server in self._settings.servers:
            try:
                return await self._connect_to(server)
            except DOWN as e:
                problem = e
        raise problem

    async def _connect_to(self, server: Server) -> Any:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, server.host, server.port, timeout=self._settings.timeout)
        if server.ldaps:
            endpoint = wrapClientTLS(self._tls[server.url], endpoint)
        client = await connectProtocol(endpoint, LDAPClient())
        if self._settings.start_tls:
            try:
                await client.startTLS(self._tls[server.url])
            except BaseException:
                _close(client)
                raise
        return client


async def _bind(client: Any, dn: str, password: str) -> bool:
    """Whether the directory accepts ``password`` for ``dn``; raises _DirectoryTrouble
    when it answers that it cannot serve."""
    response = await client.send(pureldap.LDAPBindRequest(dn=dn, auth=password))
    if response.resultCode in SERVER_TROUBLE:
        raise _DirectoryTrouble(_text(response.errorMessage) or "busy or unavailable")
    return bool(response.resultCode == SUCCESS)


async def _search(client: Any, search: Search, limit: int, **values: str) -> list[str]:
    """The ``attribute_name`` values of the (at most ``limit``) entries ``search`` finds,
    its filter's placeholders filled with ``values`` escaped."""
    text = search.filter.format(**{k: pureldap.escape(v) for k, v in values.items()})
    request = pureldap.LDAPSearchRequest(
        baseObject=search.base, scope=search.scope, filter=parseFilter(text),
        attributes=[search.attribute_name], sizeLimit=limit)
    entries: list[Any] = []
    done: Deferred[Any] = Deferred()

    def handle(message: Any) -> bool:
        if isinstance(message, pureldap.LDAPSearchResultEntry):
            if len(entries) < limit:
                entries.append(message)
            return False
        if isinstance(message, pureldap.LDAPSearchResultReference):
            return False  # referrals are not followed
        if not done.called:
            done.callback(message)
        return True

    sent = client.send_multiResponse(request, handle)
    sent.addErrback(lambda failure: None if done.called else done.errback(failure))
    result = await done
    if result.resultCode in SERVER_TROUBLE:
        raise _DirectoryTrouble(_text(result.errorMessage) or "busy or unavailable")
    if result.resultCode not in (SUCCESS, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT):
        LdapDirectory.log.warn("LDAP search under {base} ended with result code {code}: {text}",
                               base=search.base, code=result.resultCode,
                               text=_text(result.errorMessage))
    return _flatten(_values(entry, search.attribute_name) for entry in entries)


def _flatten(lists: Iterable[list[str]]) -> list[str]:
    return [value for values in lists for value in values]


def _close(client: Any) -> None:
    if client.transport is not None:
        client.transport.loseConnection()


def open_directory(path: Path, reactor: IClientReactor) -> LdapDirectory:
    """The directory of ``--ldap-config path``; raises StartupError for a bad file."""
    return LdapDirectory(read_ldap_config(path), reactor)
