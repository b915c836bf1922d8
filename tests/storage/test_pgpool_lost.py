"""A PostgreSQL connection whose socket goes away while txpostgres reads it: logged as a
lost connection (the pool replaces it on next use), never an unhandled error; any other
ValueError still raises."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from txpostgres.txpostgres import Connection

from devpi_twisted.storage.pgpool import QuietConnection


def _gone(self: Connection) -> None:
    raise ValueError("file descriptor cannot be a negative integer (-1)")


def test_a_socket_lost_while_reading_is_a_lost_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    removed: list[object] = []
    conn = QuietConnection.__new__(QuietConnection)
    conn.reactor = SimpleNamespace(removeReader=removed.append)
    monkeypatch.setattr(Connection, "doRead", _gone)
    monkeypatch.setattr(QuietConnection, "fileno", lambda self: -1)
    conn.doRead()
    assert removed == [conn]
    monkeypatch.setattr(QuietConnection, "fileno", lambda self: 7)  # a live socket
    with pytest.raises(ValueError):
        conn.doRead()
    assert removed == [conn]
