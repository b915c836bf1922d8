"""An LDAP directory as the model's ``Directory``, spoken with ldaptor on the reactor.

A check (``LdapDirectory.check``) finds the user's DN (``user_template``, or a
``user_search`` bound anonymously or as its ``userdn``), binds as it with the password,
then reads the groups (``group_search``, on the user's connection or bound as its own
``userdn``). With ``referrals`` (the default) the search continuation references a
search meets are followed once, to at most ``MAX_REFERENCES`` servers, bound as the
search was (the user's own credentials for a group search on the user's connection, as
devpi-ldap's ldap3 does); a user found there binds there. A referred server that is
down or refuses the bind is skipped (logged): the directory itself answered. Each check opens its
connections and closes them when done; the whole check has the configured ``timeout``
on the reactor's clock. A directory that cannot be reached, breaks the connection,
fails TLS or is too slow raises ``errors.Unavailable`` (503), never a refusal.
Passwords are never logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ldaptor.protocols.ldap.ldapclient import LDAPClient  # type: ignore[import-untyped]
from ldaptor.protocols.ldap.ldaperrors import LDAPException  # type: ignore[import-untyped]
from OpenSSL import SSL, crypto
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
from devpi_twisted.identity.ldapwire import (
    DirectoryTrouble, bind, escape_dn_value, referred, search,
)
from devpi_twisted.model.errors import Unavailable
from devpi_twisted.reactors import IClientReactor
from devpi_twisted.serverdir import StartupError

MAX_GROUPS = 1000  # entries a group search returns at most (they travel in login tokens)
MAX_REFERENCES = 8  # referrals followed per search
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
DOWN = (error.ConnectError, error.ConnectionClosed, LDAPException, SSL.Error)

__all__ = ["LdapDirectory", "escape_dn_value", "open_directory"]


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


def _trust(tls: Tls) -> Any:
    """The trust root TLS checks certificates against (None: no check); raises
    StartupError for a bad CA file (read once, at start)."""
    if tls.validate == 0:
        return None
    if tls.ca_file is None:
        return platformTrust()
    try:
        pems = PEM_CERT.findall(tls.ca_file.read_bytes())
        certificates = [Certificate.loadPEM(pem) for pem in pems]
    except (OSError, SSL.Error, crypto.Error, ValueError) as e:
        raise StartupError(f"--ldap-config: tls: ca_certs_file {tls.ca_file}: {e}") from None
    if not certificates:
        raise StartupError(f"--ldap-config: tls: ca_certs_file {tls.ca_file} holds no PEM "
                           "certificate")
    return trustRootFromCertificates(certificates)


class LdapDirectory:
    """The ``Directory`` of ``--ldap-config``; built before the reactor runs (a bad CA
    file raises StartupError there)."""

    log = Logger()

    def __init__(self, settings: LdapSettings, reactor: IClientReactor) -> None:
        self._settings = settings
        self._reactor = reactor
        self._trust = {server.tls: _trust(server.tls) for server in settings.servers}

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
        except (*DOWN, DirectoryTrouble) as e:
            self.log.warn("The LDAP directory cannot be used: {error}", error=str(e) or repr(e))
            raise Unavailable("the LDAP directory cannot be reached; try again later") from None

    async def _check(self, username: str, password: str) -> frozenset[str] | None:
        settings = self._settings
        where: Server | None = None  # None: the configured servers
        if settings.user_template is not None:
            userdn = settings.user_template.format(username=escape_dn_value(username))
        else:
            assert settings.user_search is not None
            found = await self._search(settings.user_search, 2, None, _as(settings.user_search),
                                       username=username)
            if len(found) != 1:
                self.log.info("LDAP user search for {username} found {count} entries",
                              username=username, count=len(found))
                return None
            userdn, where = found[0]
        if not password:
            return None
        client, server = await self._connect(where)
        try:
            if not await bind(client, userdn, password):
                return None
            groups = settings.group_search
            if groups is None:
                return frozenset()
            if groups.userdn is None:
                return frozenset(value for value, _ in await self._search(
                    groups, MAX_GROUPS, (client, server), (userdn, password),
                    username=username, userdn=userdn))
        finally:
            _close(client)
        return frozenset(value for value, _ in await self._search(
            groups, MAX_GROUPS, None, _as(groups), username=username, userdn=userdn))

    async def _search(self, what: Search, limit: int, on: tuple[Any, Server] | None,
                      credentials: tuple[str, str] | None, **values: str,
                      ) -> list[tuple[str, Server]]:
        """The values ``what`` finds, each with the server it was found on: on ``on`` (a
        bound connection and its server) or a new connection bound with ``credentials``;
        then, with ``referrals``, on the servers its references name (bound the same)."""
        if on is None:
            client, server = await self._connect_bound(None, credentials)
            try:
                found = await search(client, what, limit, values)
            finally:
                _close(client)
        else:
            server = on[1]
            found = await search(on[0], what, limit, values)
        results = [(value, server) for value in found.values]
        if not self._settings.referrals:
            return results
        for url in found.references[:MAX_REFERENCES]:
            target = referred(url, self._settings.servers[0].tls)
            if target is None:
                self.log.warn("LDAP referral {url} is not an ldap(s) URL; not followed", url=url)
                continue
            try:
                client, _ = await self._connect_bound(target.server, credentials, referral=True)
            except DOWN as e:  # the directory answered; one server it refers to is away
                self.log.warn("LDAP referral server {url} cannot be reached: {error}",
                              url=target.server.url, error=str(e) or repr(e))
                continue
            if client is None:
                continue
            try:
                more = await search(client, what, limit, values, target.base, target.scope)
            finally:
                _close(client)
            results += [(value, target.server) for value in more.values]
        return results[:limit]

    async def _connect_bound(self, server: Server | None, credentials: tuple[str, str] | None,
                             referral: bool = False) -> tuple[Any, Server]:
        """A connection bound with ``credentials`` (None: anonymous). A refused bind is
        DirectoryTrouble (the search user of the file is wrong), or for a ``referral``
        target a connection of None (that server is skipped)."""
        client, server = await self._connect(server)
        if credentials is None or await bind(client, *credentials):
            return client, server
        _close(client)
        if referral:
            self.log.warn("LDAP referral server {url} refused the bind; skipped", url=server.url)
            return None, server
        self.log.error("The LDAP directory refused the search user {userdn} of --ldap-config",
                       userdn=credentials[0])
        raise DirectoryTrouble("the search user's bind was refused")

    async def _connect(self, only: Server | None = None) -> tuple[Any, Server]:
        """A connected LDAPClient (TLS started when configured) and its server: ``only``,
        or the configured servers in turn, the first that answers; raises the last one's
        error."""
        problem: Exception = error.ConnectError("no server")
        for server in (only,) if only is not None else self._settings.servers:
            try:
                return await self._connect_to(server), server
            except DOWN as e:
                problem = e
        raise problem

    def _tls(self, server: Server) -> Any:
        trust = self._trust[server.tls]
        if trust is None:
            return _Unverified(server.host)
        return optionsForClientTLS(server.host, trustRoot=trust)

    async def _connect_to(self, server: Server) -> Any:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, server.host, server.port, timeout=self._settings.timeout)
        if server.ldaps:
            endpoint = wrapClientTLS(self._tls(server), endpoint)
        client = await connectProtocol(endpoint, LDAPClient())
        if self._settings.start_tls and not server.ldaps:
            try:
                await client.startTLS(self._tls(server))
            except BaseException:
                _close(client)
                raise
        return client


def _as(what: Search) -> tuple[str, str] | None:
    """The credentials a search binds with: its ``userdn``, or None (anonymous)."""
    return None if what.userdn is None else (what.userdn, what.password or "")


def _close(client: Any) -> None:
    if client.transport is not None:
        client.transport.loseConnection()


def open_directory(path: Path, reactor: IClientReactor) -> LdapDirectory:
    """The directory of ``--ldap-config path``; raises StartupError for a bad file."""
    return LdapDirectory(read_ldap_config(path), reactor)
