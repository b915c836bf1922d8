"""Index configurations and version data as records carry them (storage/values.py)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from devpi_twisted.storage.interface import IndexRecord, VersionRecord
from devpi_twisted.storage.values import (
    FileLink, IndexConfig, MirrorConfig, StageConfig, VersionData, index_config, version_data,
)

STAGE_JSON = {"type": "stage", "volatile": False, "bases": ["root/pypi"], "acl_upload": ["alice"],
              "acl_toxresult_upload": [":ANONYMOUS:"], "mirror_whitelist": [], "custom": 1}
MIRROR_JSON = {"type": "mirror", "volatile": True, "mirror_url": "https://pypi.org/simple/",
               "mirror_cache_expiry": 60, "mirror_no_project_list": "yes"}
LINK = {"rel": "releasefile", "entrypath": "alice/dev/+f/abc/pkg-1.0.tar.gz",
        "hash_spec": "sha256=abc", "hashes": {"sha256": "abc"}, "size": 3,
        "_log": [{"what": "upload"}]}
TOX = {"rel": "toxresult", "entrypath": "alice/dev/+f/abc/pkg-1.0.tar.gz.toxresult-1",
       "for_entrypath": LINK["entrypath"], "hashes": {"sha256": "def"}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)


def test_records_parse_the_config_by_its_type() -> None:
    stage = IndexRecord("alice", "dev", STAGE_JSON, 3).config
    mirror = IndexRecord("root", "pypi", MIRROR_JSON, 0).config
    assert isinstance(stage, StageConfig) and not stage.is_mirror
    assert isinstance(mirror, MirrorConfig) and mirror.is_mirror
    assert (stage.type, stage.volatile, stage.bases, stage.acl_upload) == (
        "stage", False, ("root/pypi",), ("alice",))
    assert stage.acl_toxresult_upload == (":ANONYMOUS:",)
    assert (mirror.mirror_url, mirror.mirror_cache_expiry, mirror.mirror_no_project_list) == (
        "https://pypi.org/simple/", 60, True)


def test_a_config_without_type_is_a_stage_and_unset_values_have_defaults() -> None:
    config = index_config({})
    assert isinstance(config, StageConfig)
    assert (config.type, config.volatile, config.bases, config.acl_toxresult_upload) == (
        "stage", True, (), None)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6),
       st.sampled_from(["stage", "mirror", "other"]))
def test_to_json_gives_the_stored_json_back_exactly(extra: dict[str, object], kind: str) -> None:
    stored = {**extra, "type": kind}
    config = index_config(stored)
    assert json.dumps(config.to_json()) == json.dumps(stored)
    assert dict(config) == stored
    assert index_config(config) is config
    assert IndexRecord("u", "i", config, 1) == IndexRecord("u", "i", stored, 1)


def test_to_json_is_a_copy_the_caller_may_change() -> None:
    config = index_config(STAGE_JSON)
    shown = config.to_json()
    shown["projects"] = []
    assert "projects" not in config


def test_version_data_parses_its_links() -> None:
    data = VersionRecord("alice", "dev", "pkg", "1.0",
                         {"name": "pkg", "version": "1.0", "+elinks": [LINK, TOX]}, 5).data
    assert isinstance(data, VersionData)
    assert data.metadata == {"name": "pkg", "version": "1.0"}
    release, tox = data.links
    assert isinstance(release, FileLink)
    assert (release.rel, release.filename, release.sha256, release.hash_spec, release.for_entrypath) == (
        "releasefile", "pkg-1.0.tar.gz", "abc", "sha256=abc", None)
    assert release.log == [{"what": "upload"}]
    assert (tox.rel, tox.for_entrypath, tox.sha256, tox.hash_spec) == (
        "toxresult", LINK["entrypath"], "def", "")


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.booleans())
def test_version_data_gives_the_stored_json_back_exactly(metadata: dict[str, object],
                                                          with_links: bool) -> None:
    stored = {**metadata, "+elinks": [LINK, TOX]} if with_links else metadata
    data = version_data(stored)
    assert json.dumps(data.to_json()) == json.dumps(stored)
    assert version_data(data) is data
    assert len(data.links) == (2 if with_links else 0)


def test_new_version_data_has_links_only_if_there_are_any() -> None:
    assert VersionData.of({"name": "pkg"}, []).to_json() == {"name": "pkg"}
    assert VersionData.of({"name": "pkg"}, [LINK]).to_json() == {"name": "pkg", "+elinks": [LINK]}


def test_configs_of_different_types_differ() -> None:
    assert index_config({"type": "mirror"}) != index_config({"type": "stage"})
    assert isinstance(index_config({"type": "mirror"}), IndexConfig)
