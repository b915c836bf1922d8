"""A replica's requests to its primary, each with the replica's headers (ops.md 6.2):
``PrimaryClient`` (the primary's URL and uuid, the replica's token, treq with the
injected reactor), ``header`` (one answer header) and the TLS client certificate
policy of ``--replica-cert``."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IDelayedCall, IOpenSSLClientConnectionCreator, IReactorTime
from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS, platformTrust
from twisted.internet.task import Cooperator
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

from devpi_twisted import __version__
from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.replication import protocol

USER_AGENT = f"devpi-replica/{__version__} (devpi-twisted)"


class PrimaryUnreachable(Exception):
    """The primary did not answer (refused, reset, timed out); ``str`` says what."""


class PrimaryClient:
    """Requests to the primary at ``primary_url`` through ``http`` (treq), timed on
    ``reactor``; ``primary_uuid`` is what the replica expects the primary to be."""

    def __init__(self, http: HTTPClient, reactor: IReactorTime, primary_url: str, uuid: str,
                 signer: TokenSigner, outside_url: str | None = None,
                 primary_uuid: str = "") -> None:
        self._http = http
        self._reactor = reactor
        # request bodies are read from their files in turns on the same reactor
        self._cooperator = Cooperator(scheduler=self._soon)
        self.url = primary_url.rstrip("/")
        self.uuid = uuid
        self._signer = signer
        self._outside_url = outside_url
        self.primary_uuid = primary_uuid  # "" until the first reply names it

    def use_signer(self, signer: TokenSigner) -> None:
        """Sign the replica's tokens with ``signer`` from now on (a devpi primary's key)."""
        self._signer = signer

    def _soon(self, work: Callable[[], object]) -> IDelayedCall:
        return self._reactor.callLater(0, work)

    def headers(self, file: bool = False, **extra: str) -> dict[str, list[str]]:
        """The replica headers with a fresh token (valid 37.6 s)."""
        headers = {
            protocol.REPLICA_UUID: [self.uuid],
            protocol.EXPECTED_PRIMARY: [self.primary_uuid],
            protocol.EXPECTED_MASTER: [self.primary_uuid],
            "Authorization": [f"Bearer {self._signer.make(self.uuid)}"],
            "User-Agent": [USER_AGENT],
        }
        if self._outside_url:
            headers[protocol.REPLICA_OUTSIDE_URL] = [self._outside_url]
        if file:
            headers[protocol.FILE_REPLICATION] = ["YES"]
        for name, value in extra.items():
            headers[name.replace("_", "-")] = [value]
        return headers

    async def request(self, method: str, path: str, timeout: float,
                      headers: dict[str, list[str]], data: IO[bytes] | None = None,
                      unbuffered: bool = False) -> IResponse:
        """``method`` on the primary's ``path`` (with query), with the body in ``data``
        (read from its current position); redirects not followed."""
        body = None if data is None else FileBodyProducer(
            data, self._cooperator)  # (Twisted's FileBodyProducer is not annotated)
        try:
            return await self._http.request(
                method, self.url + path, headers=Headers(headers),
                data=body, timeout=timeout, allow_redirects=False, unbuffered=unbuffered,
                # treq uses the reactor only for the timeout's callLater; its annotation
                # asks for a TCP and name-resolving reactor too
                reactor=self._reactor)  # type: ignore[arg-type]
        except CancelledError:
            raise
        except Exception as e:  # refused, reset, DNS, TLS, timeout
            raise PrimaryUnreachable(f"{type(e).__name__} on {method} {self.url}{path}: {e}") from None

    async def get(self, path: str, timeout: float, file: bool = False, unbuffered: bool = False,
                  **extra: str) -> IResponse:
        return await self.request("GET", path, timeout, self.headers(file, **extra),
                                  unbuffered=unbuffered)


def header(response: IResponse, name: str) -> str | None:
    values = response.headers.getRawHeaders(name.encode())
    return values[-1].decode("latin-1") if values else None


@implementer(IPolicyForHTTPS)
class ClientCertificatePolicy:
    """HTTPS as browsers check it, presenting the replica's client certificate
    (``--replica-cert``: one PEM file with the certificate and its private key)."""

    def __init__(self, pem: bytes) -> None:
        self._certificate = PrivateCertificate.loadPEM(pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return optionsForClientTLS(
            hostname.decode("ascii"),
            trustRoot=platformTrust(),
            clientCertificate=self._certificate)


def serial_of(response: IResponse) -> int | None:
    """The primary's serial an answer names (``X-Devpi-Serial``), None without one."""
    value = header(response, protocol.SERIAL)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
