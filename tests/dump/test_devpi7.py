"""Compatibility with the real devpi-server 7.0 beta (dumpversion 3), installed like 6
by tests/dump/devpi6.py:

(a) a dump made by devpi 7's devpi-export imports into us with every view equal to what
    devpi 7 served (its spellings turned into 6's, which we answer in), every file hash
    equal, and the passwords logging in;
(b) our ``export --format 7`` of that state, with a user and an upload made on our
    server, imports with devpi 7's devpi-import into a fresh devpi-server 7 that serves
    exactly the views the original served, plus ours.

One devpi-server 7 runs at a time: the original, then the one importing our dump.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dump.devpi6 import Devpi6, ensure_installed
from tests.dump.state import PASSWORDS, add_carol, assert_same, build_state, run_cli, views
from tests.dump.test_devpi6 import check_logins
from tests.support import Daemon

Views = tuple[dict[str, Any], dict[str, str]]
# devpi 7's spelling of an index config -> 6's (what we answer), written out by hand
TYPES = {"local": "stage", "remote": "mirror"}
KEYS = {"remote_url": "mirror_url", "remote_refresh_delay": "mirror_cache_expiry",
        "remote_web_url_fmt": "mirror_web_url_fmt"}
LINK_KEYS = ("href", "rel", "log", "for_href")


def _config_as_6(config: dict[str, Any]) -> dict[str, Any]:
    result = {KEYS.get(k, k): v for k, v in config.items()}
    result["type"] = TYPES.get(config["type"], config["type"])  # (ours: as it is)
    rules = result.pop("project_inheritance_rules", None)
    if rules is not None:
        result["mirror_whitelist"] = ["*"] if rules == ["allow all"] else []
    if result.pop("trust_inheritance_rules_from", None) == "type:not remote":
        result["mirror_whitelist_inheritance"] = "union"
    if result.get("mirror_whitelist_inheritance") == "intersection":  # (7: no key, the default)
        del result["mirror_whitelist_inheritance"]
    return result


def _when(entry: dict[str, Any]) -> dict[str, Any]:
    when = entry.get("when")
    if isinstance(when, list):
        when = "%04d-%02d-%02dT%02d:%02d:%02dZ" % tuple(when)
    return {**entry, "when": when}


def comparable(value: Any) -> Any:
    """A view in 6's spelling with links reduced to what both versions serve alike
    (devpi 7 answers ``relpath`` where 6 answers ``hash_spec`` and ``hashes``; the file
    hashes are compared on the bodies), sorted, and log times as text."""
    if isinstance(value, dict):
        if value.get("type") in {*TYPES, *TYPES.values()} and "volatile" in value:
            value = _config_as_6(value)
        result = {k: comparable(v) for k, v in value.items()}
        if isinstance(value.get("+links"), list):
            result["+links"] = sorted(
                ({k: link[k] for k in LINK_KEYS if k in link and link[k] != []}
                 for link in value["+links"]), key=lambda link: str(link["href"]))
            for link in result["+links"]:
                if "log" in link:
                    link["log"] = [_when(e) for e in link["log"]]
        return result
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def links_sorted(value: Any) -> Any:
    if isinstance(value, dict):
        result = {k: links_sorted(v) for k, v in value.items()}
        if isinstance(result.get("+links"), list):
            result["+links"] = sorted(result["+links"], key=lambda link: str(link["href"]))
        return result
    if isinstance(value, list):
        return [links_sorted(v) for v in value]
    return value


def assert_comparable(found: Views, expected: Views) -> None:
    assert_same((comparable(found[0]), found[1]), (comparable(expected[0]), expected[1]))


@pytest.fixture(scope="module")
def devpi7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """State built on a real devpi-server 7, its views, and its devpi-export dump."""
    bindir = ensure_installed(7)
    base = tmp_path_factory.mktemp("devpi7")
    server = Devpi6(bindir, base / "devpi7-original")
    server.run("devpi-init", "--root-passwd", PASSWORDS["root"])
    server.start()
    try:
        build_state(server.url, base / "work", PASSWORDS["root"], major=7)
        expected = views(server.url)
    finally:
        server.stop()
    server.run("devpi-export", str(base / "dump-from-devpi7"))
    yield {"bindir": bindir, "base": base, "views": expected, "dump": base / "dump-from-devpi7"}


def test_a_devpi7_dump_imports_into_us_and_back_into_devpi7(devpi7: dict[str, Any],
                                                           tmp_path: Path) -> None:
    dump = json.loads((devpi7["dump"] / "dataindex.json").read_text())
    assert dump["dumpversion"] == "3" and dump["indexes"]["alice/dev"]["indexconfig"]["type"] == "local"
    serverdir = tmp_path / "ours"
    done = run_cli("import", "--serverdir", str(serverdir), str(devpi7["dump"]))
    assert done.returncode == 0, done.stderr
    assert "importing a dump of 7.0" in done.stderr and "dumpversion 3" in done.stderr
    daemon = Daemon(serverdir).start()
    try:
        imported = views(daemon.url)
        assert_comparable(imported, devpi7["views"])
        assert imported[0]["/alice/prod"]["mirror_whitelist_inheritance"] == "union"
        assert imported[0]["/bob/empty"]["mirror_whitelist"] == ["*"]
        check_logins(daemon.url, PASSWORDS)
        add_carol(daemon.url, tmp_path)
        ours = views(daemon.url)
    finally:
        daemon.stop()
    done = run_cli("export", "--serverdir", str(serverdir), "--format", "7", str(tmp_path / "dump-7"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "dump-7" / "dataindex.json").read_text())["dumpversion"] == "3"

    server = Devpi6(devpi7["bindir"], tmp_path / "devpi7-imported")
    server.run("devpi-import", "--no-events", str(tmp_path / "dump-7"))
    server.start()
    try:
        theirs = views(server.url)
        check_logins(server.url, {**PASSWORDS, "carol": "carol pw"})
    finally:
        server.stop()
    assert_comparable(theirs, ours)
    # what came from devpi 7 went back exactly as devpi 7 served it
    # what came from devpi 7 went back exactly as devpi 7 served it (the order of links aside)
    original, hashes = devpi7["views"]
    mine = {k: v for k, v in theirs[0].items() if not k.startswith("/carol")}
    mine["/"] = {k: v for k, v in mine["/"].items() if k != "carol"}
    assert_same((links_sorted(mine), {k: v for k, v in theirs[1].items() if "carol" not in k}),
                (links_sorted(original), hashes))


def test_a_devpi7_dump_with_a_wrong_size_is_refused_before_anything_is_written(
        devpi7: dict[str, Any], tmp_path: Path) -> None:
    data = json.loads((devpi7["dump"] / "dataindex.json").read_text())
    broken = tmp_path / "broken"
    for path in devpi7["dump"].rglob("*"):
        if path.is_file():
            target = broken / path.relative_to(devpi7["dump"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    data["indexes"]["alice/dev"]["files"][0]["entrymapping"]["size"] += 1
    (broken / "dataindex.json").write_text(json.dumps(data))
    done = run_cli("import", "--serverdir", str(tmp_path / "ours"), str(broken))
    assert done.returncode == 1
    assert "bytes, the dump says" in done.stderr
    assert not (tmp_path / "ours").exists()
