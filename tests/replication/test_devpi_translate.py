"""devpi's serialisation and the translation of its changelog entries, without servers:
bytes written by the real devpi-server's own ``fileutil.dumps`` (run in its virtualenv)
read back by devpi_wire; broken bytes refused; entries that cannot be translated
refused naming serial and key, with nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted.dump.devpi_changes import Translator6
from devpi_twisted.dump.devpi_changes7 import Translator7
from devpi_twisted.replication import devpi_wire
from devpi_twisted.replication.devpi_follow import Untranslatable, devpi_major
from devpi_twisted.replication.protocol import MalformedChanges
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import FILE, INDEX, USER, VERSION, Change
from devpi_twisted.storage.sqlite import SqliteStorage
from tests.dump.devpi6 import ensure_installed
from tests.support import failure_of, result_of

SHA = "1841b535a01248bfa28e40cde7782ed37e9a7c369fc4cc6ce3d9741d2604fe61"
RELPATH = f"alice/dev/+f/{SHA[:3]}/{SHA[3:16]}/pkg-1.0-py3-none-any.whl"
VALUE = ("(0, {'.config': ('USERLIST', -1, {'root'}), 'alice/.config': ('USER', -1, "
         "{'pwhash': '$argon2id$x', 'indexes': {'dev': {'type': 'stage', 'bases': ('a/b',), "
         "'volatile': True}}}), 'big': 2**70, 'f': 1.5, 'b': b'\\x00', 'n': None, "
         "'t': (True, False), 'fs': frozenset({1}), 'l': [1, 'x', [2]]})")


def devpi_dumps(major: int, expression: str) -> bytes:
    """``expression`` serialised by the real devpi-server ``major``.x."""
    python = ensure_installed(major) / "python"
    done = subprocess.run([str(python), "-c", "import sys; from devpi_server.fileutil import "
                           f"dumps; sys.stdout.buffer.write(dumps({expression}))"],
                          capture_output=True, check=True)
    return done.stdout


@pytest.mark.parametrize("major", [6, 7])
def test_what_devpi_writes_reads_back(major: int) -> None:
    data = devpi_dumps(major, "[" + VALUE + "]")
    assert devpi_wire.loads(data) == [eval(VALUE)]  # noqa: S307 (our own literal)
    [(serial, changes)] = devpi_wire.changelog_entries(data, 0)
    assert serial == 0 and changes["alice/.config"][0] == "USER"


@pytest.mark.parametrize("data", [b"", b"F\x00\x00", b"Z", b"LLQ", b"LP" + b"Q", b"K\x7f\xff\xff\xffQ",
                                  b"N\x00\x00\x00\x05abQ", b"F\x00\x00\x00\x01@\x00\x00\x00\x05Q"])
def test_broken_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedChanges):
        devpi_wire.loads(data)


def test_a_gap_in_serials_is_refused() -> None:
    data = devpi_dumps(6, "[(3, {}), (5, {})]")
    with pytest.raises(MalformedChanges, match="serial 5 where 4 was due"):
        devpi_wire.changelog_entries(data, 3)


def test_devpi_is_told_apart_from_us() -> None:
    assert devpi_major("6.20.3") == 6
    assert devpi_major("7.0.0b4") == 7
    assert devpi_major("devpi-twisted 0.1.0") is None
    assert devpi_major(None) is None


@pytest.fixture
def storage(tmp_path: Path) -> Any:
    found = SqliteStorage.open(tmp_path / "db.sqlite3", InlineExecutor())
    yield found
    found.close()


def test_devpi6_entries_become_our_records(storage: SqliteStorage) -> None:
    translator = Translator6(storage)
    user = {"pwhash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "email": "a@example.com", "indexes": {"dev": {"type": "stage", "bases": (),
                                                           "volatile": True}}}
    records = result_of(translator.translate(0, {"alice/.config": ("USER", -1, user),
                                                 ".config": ("USERLIST", -1, {"alice"})}))
    assert [(r.type, r.key) for r in records] == [(USER, "alice"), (INDEX, "alice/dev")]
    assert records[0].value["pwhash"] == user["pwhash"]
    assert records[1].value["bases"] == []
    result_of(storage.import_change(Change(0, 0.0, records)))
    entry = {"hash_spec": f"sha256={SHA}", "hashes": {"sha256": SHA}, "project": "pkg",
             "version": "1.0", "last_modified": "Mon, 07 Dec 2026 17:15:12 GMT"}
    link = {"rel": "releasefile", "entrypath": RELPATH, "hash_spec": f"sha256={SHA}",
            "_log": [{"what": "upload", "who": "alice", "when": (2026, 12, 7, 17, 15, 12)}]}
    records = result_of(translator.translate(1, {
        RELPATH: ("STAGEFILE", -1, entry),
        "alice/dev/pkg/1.0/.config": ("PROJVERSION", -1, {"name": "pkg", "version": "1.0",
                                                          "+elinks": [link]})}))
    assert [(r.type, r.key) for r in records] == [(VERSION, "alice/dev/pkg/1.0"), (FILE, RELPATH)]
    assert records[0].value["+elinks"][0]["upload_time"] == "2026-12-07T17:15:12Z"
    result_of(storage.import_change(Change(1, 0.0, records)))
    # the index goes: its record is deleted after whatever else the serial holds
    user["indexes"] = {}
    records = result_of(translator.translate(2, {
        "alice/.config": ("USER", 1, user), RELPATH: ("STAGEFILE", 1, None),
        "alice/dev/pkg/1.0/.config": ("PROJVERSION", 1, None)}))
    assert [(r.type, r.key, r.value) for r in records][1:] == [
        (VERSION, "alice/dev/pkg/1.0", None), (FILE, RELPATH, {"project": "pkg", "entry": {}}),
        (INDEX, "alice/dev", None)]


@pytest.mark.parametrize("changes, key, reason", [
    ({"x/.config": ("PLUGINKEY", -1, {})}, "x/.config", "unknown key type 'PLUGINKEY'"),
    ({"eve\u200b/.config": ("USER", -1, {"indexes": {}})}, "eve\u200b/.config",
     "invisible character U+200B"),
    ({"bob/.config": ("USER", -1, {"indexes": {"x": {"type": "plugin"}}})}, "bob/.config",
     "unknown index type 'plugin'"),
    ({"bob/dev/p/1/.config": ("PROJVERSION", -1, {"+elinks": [{"rel": "releasefile"}]})},
     "bob/dev/p/1/.config", "needs an entrypath"),
    ({"bob/dev/+f/../../x": ("STAGEFILE", -1, {"project": "p"})}, "bob/dev/+f/../../x",
     "not a file path"),
])
def test_untranslatable_devpi6_entries_name_serial_and_key(
        storage: SqliteStorage, changes: dict[str, Any], key: str, reason: str) -> None:
    error = failure_of(Translator6(storage).translate(7, changes))
    assert isinstance(error, Untranslatable)
    assert error.serial == 7 and error.key == key and reason in error.reason
    assert str(error).startswith(f"devpi serial 7, key {key!r}: ")
    assert storage.serial == -1


def test_devpi7_entries_become_one_version_record(storage: SqliteStorage) -> None:
    translator = Translator7(storage)
    records = result_of(translator.translate(0, [
        ("USER", "alice", 1, None, -1, {"pwhash": "$argon2id$x"}),
        ("INDEX", "alice/dev", 2, 1, -1, {"type": "local", "bases": (),
                                          "project_inheritance_rules": ["allow all"]}),
        ("INDEX", "alice/mirror", 3, 1, -1, {"type": "remote",
                                             "remote_url": "https://example.com/simple/"})]))
    configs = {r.key: r.value for r in records if r.type == INDEX}
    assert configs["alice/dev"]["type"] == "stage" and configs["alice/dev"]["mirror_whitelist"] == ["*"]
    assert configs["alice/mirror"] == {"type": "mirror", "mirror_url": "https://example.com/simple/"}
    result_of(storage.import_change(Change(0, 0.0, records)))
    log = [{"what": "upload", "who": "alice", "when": "2026-12-07T17:17:14Z"}]
    relpath = RELPATH[len("alice/dev/"):]
    records = result_of(translator.translate(1, [
        ("VERSION", "alice/dev/pkg/1.0", 4, 5, -1, {"requires_python": ">=3.8"}),
        ("VERSIONFILE", "alice/dev/pkg/1.0/pkg-1.0-py3-none-any.whl", 6, 4, -1,
         {"log": log, "relpath": relpath}),
        ("FILE", RELPATH, 7, 2, -1, {"hashes": {"sha256": SHA}, "size": 9, "project": "pkg",
                                     "version": "1.0"}),
        ("VERSIONMETADATA", "alice/dev/pkg/1.0", 8, 5, -1, {"name": "pkg", "version": "1.0"}),
        ("PROJECT", "alice/dev/pkg", 5, 2, -1, {"name": "pkg"}),
        ("DIGESTULIDS", SHA, 9, None, -1, {7})]))
    version = next(r.value for r in records if r.type == VERSION)
    assert version["name"] == "pkg"
    [link] = version["+elinks"]
    assert link["entrypath"] == RELPATH and link["hashes"] == {"sha256": SHA} and link["size"] == 9
    assert link["upload_time"] == "2026-12-07T17:17:14Z"
    error = failure_of(translator.translate(2, [("NEWKEY", "a/b", 1, None, -1, {})]))
    assert isinstance(error, Untranslatable) and error.key == "a/b"
