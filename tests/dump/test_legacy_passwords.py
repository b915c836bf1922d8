"""Users of very old devpi (salted sha256, ``pwsalt``) imported from a dump log in with
their password, which is then stored as argon2id; until then an export gives devpi
its own form back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from devpi_twisted.dump.format import user_for_dump, user_from_dump
from devpi_twisted.model.passwords import needs_rehash, verify_password
from tests.dump.state import run_cli
from tests.dump.synth import write_dump
from tests.support import Daemon, call, login

SALT = "c2FsdHNhbHRzYWx0c2FsdA=="


def old_hash(password: str) -> str:
    return hashlib.sha256(SALT.encode("ascii") + password.encode("utf-8")).hexdigest()


def test_legacy_hashes_verify_and_ask_for_a_rehash() -> None:
    stored = user_from_dump("old", {"pwsalt": SALT, "pwhash": old_hash("pässword")})["pwhash"]
    assert verify_password("pässword", stored)
    assert not verify_password("password", stored)
    assert needs_rehash(stored)
    assert user_for_dump("old", {}, stored) == {"username": "old", "pwsalt": SALT,
                                                "pwhash": old_hash("pässword")}
    argon = user_from_dump("new", {"pwsalt": SALT, "pwhash": "$argon2id$v=19$rest"})["pwhash"]
    assert argon == "$argon2id$v=19$rest"


def test_an_old_user_logs_in_and_gets_an_argon2_hash(tmp_path: Path) -> None:
    write_dump(tmp_path / "dump", 2)
    path = tmp_path / "dump" / "dataindex.json"
    data = json.loads(path.read_text())
    data["users"]["old"] = {"username": "old", "pwsalt": SALT, "pwhash": old_hash("old secret")}
    path.write_text(json.dumps(data))
    serverdir = tmp_path / "state"
    done = run_cli("import", "--serverdir", str(serverdir), str(tmp_path / "dump"))
    assert done.returncode == 0, done.stderr
    assert "replaced by an argon2 hash at the user's first login" in done.stderr

    done = run_cli("export", "--serverdir", str(serverdir), str(tmp_path / "before"))
    assert done.returncode == 0, done.stderr
    before = json.loads((tmp_path / "before" / "dataindex.json").read_text())["users"]["old"]
    assert (before["pwsalt"], before["pwhash"]) == (SALT, old_hash("old secret"))

    daemon = Daemon(serverdir).start()
    try:
        status, _, _ = call(daemon.url + "/+login", "POST", {"user": "old", "password": "wrong"})
        assert status == 401
        login(daemon.url, "old", "old secret")
        login(daemon.url, "old", "old secret")  # and again, now against the new hash
    finally:
        daemon.stop()
    done = run_cli("export", "--serverdir", str(serverdir), str(tmp_path / "after"))
    assert done.returncode == 0, done.stderr
    after = json.loads((tmp_path / "after" / "dataindex.json").read_text())["users"]["old"]
    assert "pwsalt" not in after and after["pwhash"].startswith("$argon2id$")
    assert verify_password("old secret", after["pwhash"])
