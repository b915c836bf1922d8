"""Where a login attempt comes from (X-Real-IP trusted from loopback only) and the
pool password checks run on (issue 19 items 1 and 4)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs
from twisted.web.test.requesthelper import DummyRequest

from devpi_twisted.model.errors import Unavailable
from devpi_twisted.web.auth import client_address
from devpi_twisted.web.hashing import HashingPool
from devpi_twisted.web.site import access_event
from tests.support import result_of


def _request(peer: Any, real_ip: str | None = None) -> DummyRequest:
    request = DummyRequest([b""])
    request.client = peer
    if real_ip is not None:
        request.requestHeaders.setRawHeaders(b"X-Real-IP", [real_ip.encode()])
    return request


@pytest.mark.parametrize("peer", [IPv4Address("TCP", "127.0.0.1", 5000),
                                  IPv4Address("TCP", "127.8.9.10", 5000),
                                  IPv6Address("TCP", "::1", 5000),
                                  UNIXAddress(None)])
def test_x_real_ip_counts_from_a_local_proxy(peer: Any) -> None:
    assert client_address(_request(peer, "203.0.113.9")) == "203.0.113.9"
    assert client_address(_request(peer, " 2001:db8::1 ")) == "2001:db8::1"


def test_x_real_ip_is_ignored_from_other_addresses() -> None:
    peer = IPv4Address("TCP", "198.51.100.4", 5000)
    assert client_address(_request(peer, "203.0.113.9")) == "198.51.100.4"
    assert client_address(_request(peer)) == "198.51.100.4"


@pytest.mark.parametrize("header", ["not an address", "1.2.3.4, 5.6.7.8", "", "\u00e9"])
def test_a_real_ip_that_is_not_one_address_is_ignored(header: str) -> None:
    peer = IPv4Address("TCP", "127.0.0.1", 5000)
    request = _request(peer)
    request.requestHeaders.setRawHeaders(b"X-Real-IP", [header.encode("utf-8")])
    assert client_address(request) == "127.0.0.1"


def test_unix_socket_without_header_is_one_client() -> None:
    assert client_address(_request(UNIXAddress(None))) == "unix"


def test_the_pool_refuses_calls_beyond_its_threads_and_queue() -> None:
    pool = HashingPool(Clock(), threads=1, queue=2)  # not started: nothing runs
    for _ in range(3):
        pool(sum, [1, 2])
    assert pool.pending == 3
    refused = pool(sum, [1, 2])
    with pytest.raises(Unavailable) as info:
        result_of(refused)
    assert info.value.retry_after == 2.0
    assert pool.pending == 3 and pool.refused == 1



def test_the_access_log_names_the_client_the_throttle_counts() -> None:
    peer = IPv4Address("TCP", "198.51.100.4", 5000)
    request = _request(peer, "203.0.113.9")  # a header set by the client itself
    request.method, request.uri, request.clientproto = b"GET", b"/+api", b"HTTP/1.1"
    request.code, request.sentLength = 200, 5
    with capturedLogs() as events:
        access_event(Logger(), request, 0.001)
    (event,) = events
    assert event["client"] == "198.51.100.4"
