"""Transactions of API tokens, as plans (plans.py): create and revoke (changes: a
serial and a changelog entry, so every worker and replica sees them), list with use
times, and record a use (not a change: each node keeps the uses it saw)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from devpi_twisted.storage.interface import (
    TOKEN, Change, Record, RecordExists, RecordMissing, TokenRecord, token_record,
)
from devpi_twisted.storage.plans import USER_SERIAL, Plan, commit, one, rows, run, take_serial

TOKEN_SERIAL = "SELECT serial FROM tokens WHERE owner = ? AND id = ?"
TOKEN_VALUE = "SELECT value FROM tokens WHERE owner = ? AND id = ?"
TOKENS_WITH_USE = ("SELECT id, value, serial, first_used, last_used FROM tokens "
                   "WHERE owner = ? ORDER BY id")
FIRST_USED = "SELECT first_used FROM tokens WHERE owner = ? AND id = ?"
SET_USED = ("UPDATE tokens SET first_used = COALESCE(first_used, ?), last_used = ? "
            "WHERE owner = ? AND id = ?")


def create_token(owner: str, token_id: str, value: Mapping[str, Any], at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(USER_SERIAL, owner)) is None:
        raise RecordMissing(owner)
    if (yield one(TOKEN_SERIAL, owner, token_id)) is not None:
        raise RecordExists(f"{owner}/{token_id}")
    return (yield from commit(serial, [Record(TOKEN, f"{owner}/{token_id}", dict(value))], at))


def delete_token(owner: str, token_id: str, at: float) -> Plan[Change]:
    """Revocation: the record stays, marked with the time (a refusal can then say
    "revoked" on every node); it goes with its user."""
    serial = yield from take_serial()
    row = yield one(TOKEN_VALUE, owner, token_id)
    value = None if row is None else json.loads(row[0])
    if value is None or value.get("revoked") is not None:
        raise RecordMissing(f"{owner}/{token_id}")
    value["revoked"] = at
    return (yield from commit(serial, [Record(TOKEN, f"{owner}/{token_id}", value)], at))


def list_tokens(owner: str) -> Plan[list[TokenRecord]]:
    found = yield rows(TOKENS_WITH_USE, owner)
    records = [token_record(owner, i, json.loads(v), int(s), first, last)
               for i, v, s, first, last in found]
    return [r for r in records if r.revoked is None]


def record_use(owner: str, token_id: str, at: float) -> Plan[bool]:
    row = yield one(FIRST_USED, owner, token_id)
    if row is None:
        return False
    yield run(SET_USED, at, at, owner, token_id)
    return row[0] is None
