"""Where the upstream client connects: endpoints kept per scheme, host and port."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import HostnameEndpoint
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported

from devpi_twisted.mirror.upstream import KeptEndpoints


class Policy:
    """An IPolicyForHTTPS that records the hosts it was asked about."""

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, int]] = []

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        self.asked.append((hostname, port))
        return object()


def test_one_endpoint_is_kept_per_scheme_host_and_port() -> None:
    policy = Policy()
    endpoints = KeptEndpoints(reactor, policy)
    first = endpoints.endpointForURI(URI.fromBytes(b"http://pypi.example/simple/a/"))
    assert isinstance(first, HostnameEndpoint)
    assert endpoints.endpointForURI(URI.fromBytes(b"http://pypi.example/files/a.whl")) is first
    other_port = endpoints.endpointForURI(URI.fromBytes(b"http://pypi.example:8080/simple/"))
    assert other_port is not first
    tls = endpoints.endpointForURI(URI.fromBytes(b"https://pypi.example/simple/a/"))
    assert tls is not first and not isinstance(tls, HostnameEndpoint)  # TLS wraps TCP
    assert endpoints.endpointForURI(URI.fromBytes(b"https://pypi.example/x")) is tls
    assert policy.asked == [(b"pypi.example", 443)]  # once, not per request


def test_other_schemes_are_refused() -> None:
    with pytest.raises(SchemeNotSupported):
        KeptEndpoints(reactor, Policy()).endpointForURI(URI.fromBytes(b"ftp://pypi.example/"))


def test_the_kept_endpoints_are_bounded() -> None:
    endpoints = KeptEndpoints(reactor, Policy())
    for i in range(KeptEndpoints.LIMIT + 10):
        endpoints.endpointForURI(URI.fromBytes(b"http://host%d.example/" % i))
    assert len(endpoints._kept) <= KeptEndpoints.LIMIT
