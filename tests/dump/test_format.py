"""Reading dataindex.json: what is converted, and every broken dump refused with its reason."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted.dump.format import DumpError, config_from_dump, hashes_of, read_dump, user_from_dump
from tests.dump.synth import write_dump


def rewrite(directory: Path, change: Any) -> None:
    path = directory / "dataindex.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    write_dump(tmp_path / "dump", 4)
    return tmp_path / "dump"


def problems(directory: Path) -> str:
    with pytest.raises(DumpError) as caught:
        read_dump(directory)
    return str(caught.value)


def test_a_good_dump_reads_with_every_file_and_its_hashes(dump: Path) -> None:
    read = read_dump(dump)
    assert read.dumpversion == "2"
    assert set(read.users) == {"alice", "root"}
    [index] = read.indexes
    assert index.name == "alice/dev"
    assert len(index.files) == 4
    first = index.files[0]
    assert first.hashes["sha256"] == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert read.file_count == 4


def test_not_a_dump_directory(tmp_path: Path) -> None:
    assert "holds no dataindex.json" in problems(tmp_path)
    (tmp_path / "dataindex.json").write_text("{not json")
    assert "is not valid JSON" in problems(tmp_path)


def test_incompatible_dumpversion(dump: Path) -> None:
    rewrite(dump, lambda d: d.update(dumpversion="4"))
    assert "incompatible dumpversion: '4'" in problems(dump)


def test_every_problem_is_listed_at_once(dump: Path) -> None:
    def break_it(d: dict[str, Any]) -> None:
        files = d["indexes"]["alice/dev"]["files"]
        files[0]["relpath"] = "../../etc/passwd"
        files[1]["relpath"] = "alice/dev/nowhere.tar.gz"
        files[2]["type"] = "weird"
        d["users"]["bad user!"] = {}
    rewrite(dump, break_it)
    text = problems(dump)
    assert "4 problems" in text
    assert "'../../etc/passwd' is not a plain relative path" in text
    assert "alice/dev/nowhere.tar.gz: the file is missing from the dump" in text
    assert "unknown file type 'weird'" in text
    assert "username 'bad user!'" in text


def test_names_we_cannot_store_are_refused(dump: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        index = d["indexes"]["alice/dev"]
        index["projects"]["pkg0"]["1/../x"] = {"name": "pkg0"}
        desc = index["files"][0]
        index["files"].append({**desc, "type": "doczip", "version": "1/../x"})
    rewrite(dump, change)
    assert "invalid filename 'pkg0-1/../x.doc.zip'" in problems(dump)


def test_files_of_versions_not_in_projects_are_refused(dump: Path) -> None:
    rewrite(dump, lambda d: d["indexes"]["alice/dev"]["projects"]["pkg0"].pop("1.0"))
    assert "some files weren't imported" in problems(dump)


def test_circular_bases_and_unknown_types_are_refused(dump: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["indexes"]["alice/a"] = {"indexconfig": {"type": "stage", "bases": ["alice/b"]}}
        d["indexes"]["alice/b"] = {"indexconfig": {"type": "stage", "bases": ["alice/a"]}}
        d["indexes"]["alice/c"] = {"indexconfig": {"type": "plugin-thing"}}
    rewrite(dump, change)
    text = problems(dump)
    assert "circular bases: alice/a -> alice/b -> alice/a" in text
    assert "unknown index type 'plugin-thing'" in text


def test_skipped_index_types_are_left_out_with_a_warning(dump: Path) -> None:
    rewrite(dump, lambda d: d["indexes"].update(
        {"alice/c": {"indexconfig": {"type": "plugin-thing"}}}))
    read = read_dump(dump, ["plugin-thing"])
    assert [i.name for i in read.indexes] == ["alice/dev"]
    assert "index alice/c of type plugin-thing skipped" in read.warnings


def test_a_bad_mirror_url_is_imported_with_a_masked_warning(dump: Path) -> None:
    url = "http://bob:s3cretXYZ@h.example:abc/simple/?token=s3cretXYZ"
    rewrite(dump, lambda d: d["indexes"].update(
        {"alice/m": {"indexconfig": {"type": "mirror", "mirror_url": url}}}))
    read = read_dump(dump)
    warning = next(w for w in read.warnings if "alice/m" in w)
    assert "must be a URL" in warning and "s3cretXYZ" not in warning
    assert "http://bob:****@h.example:abc/simple/?token=****" in warning
    assert read.indexes[[i.name for i in read.indexes].index("alice/m")].config.to_json()["mirror_url"] == url


def test_bases_come_first_and_missing_bases_are_warned_about(dump: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["indexes"]["alice/a"] = {"indexconfig": {"type": "stage", "bases": ["alice/z", "gone/x"]}}
        d["indexes"]["alice/z"] = {"indexconfig": {"type": "stage", "bases": []}}
    rewrite(dump, change)
    read = read_dump(dump)
    names = [i.name for i in read.indexes]
    assert names.index("alice/z") < names.index("alice/a")
    assert any("base gone/x is not in the dump" in w for w in read.warnings)
    assert read.indexes[names.index("alice/a")].config.to_json()["bases"] == ["alice/z", "gone/x"]


def test_toxresult_must_point_at_a_release_file_of_its_version(dump: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        files = d["indexes"]["alice/dev"]["files"]
        tox = copy.deepcopy(files[0])
        tox.update(type="toxresult", for_entrypath="alice/dev/+f/abc/def/other-1.0.tar.gz")
        files.append(tox)
    rewrite(dump, change)
    assert "no release file other-1.0.tar.gz in pkg0 1.0" in problems(dump)


def test_toxresults_with_their_release_files_hash_are_not_checked_against_it(dump: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        files = d["indexes"]["alice/dev"]["files"]
        release = files[0]
        spec = release["entrymapping"]["hash_spec"]
        relpath = f"alice/dev/pkg0/{spec}/{release['relpath'].split('/')[-1]}.toxresult-20260101000000-0"
        (dump / relpath).parent.mkdir(parents=True)
        (dump / relpath).write_text("{}")
        files.append({**release, "type": "toxresult", "relpath": relpath,
                      "for_entrypath": "alice/dev/+f/x/y/" + release["relpath"].split("/")[-1]})
    rewrite(dump, change)
    [index] = read_dump(dump).indexes
    [tox] = [f for f in index.files if f.type == "toxresult"]
    assert tox.hashes == {}


def test_old_dumps_spellings_and_versions_are_merged(dump: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["dumpversion"] = "1"
        index = d["indexes"]["alice/dev"]
        index["projects"]["PKG0"] = {"9.0": {"name": "PKG0", "+doczip": "x", ":action": "submit"}}
        for desc in index["files"]:
            desc.pop("version")
            desc["projectname"] = "PKG0" if desc["projectname"] == "pkg0" else desc["projectname"]
    rewrite(dump, change)
    [index] = read_dump(dump).indexes
    assert set(index.projects["pkg0"]) == {"1.0", "1.1", "9.0"}
    assert index.projects["pkg0"]["9.0"] == {"name": "PKG0", "version": "9.0"}
    assert {f.version for f in index.files} == {"1.0", "1.1"}  # from the filenames


def test_users_and_configs_are_converted() -> None:
    user = user_from_dump("bob", {"username": "bob", "pwhash": "$argon2id$x", "indexes": {},
                                  "email": "", "title": "T"})
    assert user == {"profile": {"title": "T", "created": "1970-01-01T00:00:00Z"},
                    "pwhash": "$argon2id$x"}
    assert config_from_dump({"pypi_whitelist": ["a"], "uploadtrigger_jenkins": None, "x": 1}) == \
        {"mirror_whitelist": ["a"], "x": 1}
    assert hashes_of({"md5": "AB", "hash_spec": "sha256=cd", "hashes": {"sha512": "ef"}}) == \
        {"md5": "ab", "sha256": "cd", "sha512": "ef"}
