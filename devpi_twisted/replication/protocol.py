"""What primary and replica agree on: headers, the replica's bearer token, the body.

Headers and token follow devpi (spec/ops.md 6.2): the replica names itself with
``X-Devpi-Replica-Uuid`` and proves it holds the shared secret with ``Authorization:
Bearer <token>``, a timed signature of its uuid made with the replica key derived
from the secret, fresh for every request (valid 37.6 s).

The body is our own (ops.md 6.4 allows it between our nodes): a changelog entry is
the JSON of our storage records, ``{"serial": N, "at": T, "records": [...]}``; the
multi-serial reply is one such object per line (``application/x-ndjson``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from devpi_twisted.storage.interface import Change, Record

REPLICA_UUID = "X-Devpi-Replica-Uuid"
EXPECTED_PRIMARY = "X-Devpi-Expected-Primary-Id"
EXPECTED_MASTER = "X-Devpi-Expected-Master-Id"
REPLICA_OUTSIDE_URL = "X-Devpi-Replica-Outside-Url"
FILE_REPLICATION = "X-Devpi-Replica-Filerepl"
PRIMARY_UUID = "X-Devpi-Primary-Uuid"
MASTER_UUID = "X-Devpi-Master-Uuid"
SERIAL = "X-Devpi-Serial"
PROXY = "X-Devpi-Proxy"

CHANGES_TYPE = "application/x-ndjson"
CHANGE_TYPE = "application/json"
# one reply carries at most this many entries / bytes of them; the replica asks again
BATCH_CHANGES = 1000
BATCH_BYTES = 5 * 1024 * 1024
LONG_POLL = 30.0  # seconds the primary holds a poll that asks for the next serial
INITIAL_POLL = 1.0  # ... on the replica's first request after its start


class MalformedChanges(ValueError):
    """A body that is not a list of changelog entries in serial order."""


def encode_change(change: Change) -> bytes:
    return json.dumps({"serial": change.serial, "at": change.at,
                       "records": [r.to_json() for r in change.records]},
                      separators=(",", ":")).encode()


def decode_change(data: Mapping[str, Any]) -> Change:
    try:
        return Change(int(data["serial"]), float(data["at"]),
                      tuple(Record.from_json(r) for r in data["records"]))
    except (KeyError, TypeError, ValueError) as e:
        raise MalformedChanges(f"not a changelog entry: {e}") from None


def encode_changes(changes: Iterable[Change]) -> bytes:
    return b"".join(encode_change(c) + b"\n" for c in changes)


def decode_changes(body: bytes, first: int) -> list[Change]:
    """Entries of a multi-serial reply; they must run on from ``first`` without a gap."""
    changes: list[Change] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as e:
            raise MalformedChanges(f"not JSON: {e}") from None
        if not isinstance(data, dict):
            raise MalformedChanges("an entry is not a JSON object")
        change = decode_change(data)
        if change.serial != first + len(changes):
            raise MalformedChanges(f"serial {change.serial} where {first + len(changes)} was due")
        changes.append(change)
    return changes
