"""devpi 7's dump format (dumpversion 3): what is translated, what is refused, and the
way back (dump/v3.py); the round trip against the real devpi 7 is in test_devpi7.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted.dump.format import DumpError, read_dump
from devpi_twisted.dump.v3 import config_to_v3, from_v3, last_modified_to_v3, projects_to_v3, \
    when_to_v3
from tests.dump.synth import write_dump
from tests.dump.state import run_cli
from tests.dump.test_format import rewrite


def as_v3(data: dict[str, Any]) -> None:
    """The synthetic 6 dump in 7's spelling, with a whitelisted project of no versions."""
    data["dumpversion"] = "3"
    index = data["indexes"]["alice/dev"]
    index["indexconfig"].update(type="local", project_inheritance_rules=["allow all"],
                                trust_inheritance_rules_from="type:not remote")
    index["projects"] = {name: {"config": {"name": name}, "versions": versions}
                         for name, versions in index["projects"].items()}
    index["projects"]["six"] = {"config": {"inheritance_rules": ["allow all"]}, "versions": {}}
    for desc in index["files"]:
        desc["entrymapping"]["size"] = 200
        desc["entrymapping"]["last_modified"] = "2026-11-25T10:00:00Z"
        desc["log"][0]["when"] = "2026-11-25T10:00:00Z"
    data["indexes"]["root/pypi"] = {"indexconfig": {
        "type": "remote", "remote_url": "https://pypi.org/simple/", "remote_refresh_delay": 60,
        "remote_no_project_list": True}}


@pytest.fixture
def dump7(tmp_path: Path) -> Path:
    write_dump(tmp_path / "dump", 4)
    rewrite(tmp_path / "dump", as_v3)
    return tmp_path / "dump"


def test_a_devpi7_dump_reads_in_6s_spelling(dump7: Path) -> None:
    read = read_dump(dump7)
    assert read.dumpversion == "3"
    stage, mirror = sorted(read.indexes, key=lambda i: i.name)
    config = stage.config.to_json()
    assert config["type"] == "stage" and config["mirror_whitelist"] == ["six", "*"]
    assert config["mirror_whitelist_inheritance"] == "union"
    assert "project_inheritance_rules" not in config and "six" not in stage.projects
    assert sorted(stage.projects) == ["pkg0"]
    assert mirror.config.to_json() == {"type": "mirror", "mirror_url": "https://pypi.org/simple/",
                                       "mirror_cache_expiry": 60, "mirror_no_project_list": True}
    desc = stage.files[0]
    assert desc.size == 200 and desc.last_modified == "Wed, 25 Nov 2026 10:00:00 GMT"
    assert desc.log[0]["when"] == [2026, 11, 25, 10, 0, 0]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["indexes"]["alice/dev"]["indexconfig"].update(project_inheritance_rules=["x"]),
     "project_inheritance_rules ['x'] is neither"),
    (lambda d: d["indexes"]["alice/dev"]["indexconfig"].update(trust_inheritance_rules_from="all"),
     "trust_inheritance_rules_from 'all' is neither"),
    (lambda d: d["indexes"]["alice/dev"]["projects"].update(pkg0={"1.0": {}}),
     "project 'pkg0' is not {'config'"),
    (lambda d: d["indexes"]["alice/dev"]["projects"]["six"].update(
        config={"inheritance_rules": ["block all"]}), "inheritance_rules ['block all'] is not"),
    (lambda d: d["indexes"]["alice/dev"]["files"][1]["entrymapping"].update(size="200"),
     "size '200' is not a whole number of bytes"),
    (lambda d: d.update(dumpversion="4"), "incompatible dumpversion: '4'"),
])
def test_what_cannot_be_translated_is_refused(dump7: Path, change: Any, message: str) -> None:
    rewrite(dump7, change)
    with pytest.raises(DumpError) as caught:
        read_dump(dump7)
    assert message in str(caught.value)


def test_the_way_back_is_what_devpi7_writes() -> None:
    config, whitelist = config_to_v3({"type": "stage", "bases": [], "mirror_whitelist": ["Six", "*"],
                                      "mirror_whitelist_inheritance": "union"})
    assert config == {"type": "local", "bases": [], "project_inheritance_rules": ["allow all"],
                      "trust_inheritance_rules_from": "type:not remote"}
    assert projects_to_v3({"a": {"1": {}}}, whitelist) == {
        "a": {"config": {}, "versions": {"1": {}}},
        "six": {"config": {"inheritance_rules": ["allow all"]}, "versions": {}}}
    config, _ = config_to_v3({"type": "stage", "mirror_whitelist": [],
                              "mirror_whitelist_inheritance": "intersection"})
    assert config == {"type": "local", "project_inheritance_rules": [
        "block type:remote if local_exists"]}
    assert config_to_v3({"type": "mirror", "mirror_url": "u", "mirror_cache_expiry": 5,
                         "mirror_ignore_serial_header": True})[0] == {
        "type": "remote", "remote_url": "u", "remote_refresh_delay": 5}
    assert last_modified_to_v3("Wed, 25 Nov 2026 10:00:00 GMT") == "2026-11-25T10:00:00Z"
    assert when_to_v3([{"when": [2026, 11, 25, 10, 0, 0]}]) == [{"when": "2026-11-25T10:00:00Z"}]
    # and back again
    data = {"indexes": {"a/b": {"indexconfig": config, "projects": {}}}}
    assert from_v3(json.loads(json.dumps(data)))["indexes"]["a/b"]["indexconfig"] == {
        "type": "stage", "mirror_whitelist": []}


def test_a_dump_of_an_unknown_version_is_refused_before_anything_is_written(dump7: Path,
                                                                           tmp_path: Path) -> None:
    rewrite(dump7, lambda d: d.update(dumpversion="4"))
    done = run_cli("import", "--serverdir", str(tmp_path / "ours"), str(dump7))
    assert done.returncode == 1 and "incompatible dumpversion: '4'" in done.stderr
    assert not (tmp_path / "ours").exists()
