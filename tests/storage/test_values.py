"""Index configurations and version data as records carry them (storage/values.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs
import pytest
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
    assert config.acl_read == (":ANONYMOUS:",)
    assert index_config({"type": "mirror", "acl_read": ["alice", ":devs"]}).acl_read == (
        "alice", ":devs")


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6),
       st.sampled_from(["stage", "mirror", "other"]))
def test_to_json_gives_the_stored_json_back_exactly(extra: dict[str, object], kind: str) -> None:
    stored = {**extra, "type": kind}
    config = index_config(stored)
    assert json.dumps(config.to_json()) == json.dumps(stored)
    assert config.to_json() == stored
    assert index_config(config) is config
    assert IndexRecord("u", "i", config, 1) == IndexRecord("u", "i", stored, 1)


def test_to_json_is_a_copy_the_caller_may_change() -> None:
    config = index_config(STAGE_JSON)
    shown = config.to_json()
    shown["projects"] = []
    assert "projects" not in config.to_json()


def test_version_data_parses_its_links() -> None:
    data = VersionRecord("alice", "dev", "pkg", "1.0",
                         {"name": "pkg", "version": "1.0", "+elinks": [LINK, TOX]}, 5).data
    assert isinstance(data, VersionData)
    assert data.metadata == {"name": "pkg", "version": "1.0"}
    release, tox = data.links
    assert isinstance(release, FileLink)
    assert (release.rel, release.filename, release.sha256, release.hash_spec, release.for_entrypath) == (
        "releasefile", "pkg-1.0.tar.gz", "abc", "sha256=abc", None)
    assert release.log == ({"what": "upload"},)
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


# -- parsed once, at construction ------------------------------------------------------


def test_every_attribute_is_a_field_computed_at_construction() -> None:
    names = {f.name for f in attrs.fields(MirrorConfig)}
    assert {"type", "volatile", "title", "mirror_url", "mirror_cache_expiry",
            "mirror_no_project_list", "mirror_ignore_serial_header",
            "mirror_use_external_urls", "mirror_web_url_fmt"} <= names
    assert {"bases", "acl_upload", "acl_toxresult_upload", "mirror_whitelist",
            "mirror_whitelist_inheritance"} <= {f.name for f in attrs.fields(StageConfig)}
    assert {"links", "metadata", "requires_python"} <= {f.name for f in attrs.fields(VersionData)}
    assert {"rel", "entrypath", "filename", "for_entrypath", "hashes", "sha256", "hash_spec",
            "log", "core_metadata", "yanked", "size", "upload_time"} <= {
        f.name for f in attrs.fields(FileLink)}
    config = index_config(STAGE_JSON)
    assert "bases" in attrs.asdict(config, recurse=False)  # stored on the value, not computed per read


def test_a_bad_link_fails_where_the_record_is_built() -> None:
    with pytest.raises(ValueError):
        VersionRecord("alice", "dev", "pkg", "1.0", {"+elinks": [{"rel": "releasefile"}]}, 5)
    with pytest.raises(TypeError):
        VersionRecord("alice", "dev", "pkg", "1.0", {"+elinks": ["pkg-1.0.tar.gz"]}, 5)
    with pytest.raises(TypeError):
        IndexRecord("alice", "dev", ["stage"], 3)  # type: ignore[arg-type]


def test_values_are_frozen() -> None:
    config = index_config(MIRROR_JSON)
    assert isinstance(config, MirrorConfig)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.mirror_url = "https://elsewhere.example/"  # type: ignore[misc]
    assert isinstance(version_data({"name": "pkg"}).metadata, Mapping)


def test_values_are_equal_when_their_json_is() -> None:
    assert index_config(dict(STAGE_JSON)) == index_config(STAGE_JSON)
    assert index_config(STAGE_JSON) != index_config({**STAGE_JSON, "title": "x"})
    assert index_config(STAGE_JSON) != STAGE_JSON  # a value is not a dict: compare to_json()
    assert FileLink(LINK) == FileLink(dict(LINK)) and FileLink(LINK) != FileLink(TOX)
    assert version_data({"+elinks": [LINK]}) == version_data({"+elinks": [dict(LINK)]})


def test_mirror_flags_are_the_truth_of_the_stored_value() -> None:
    config = index_config({"type": "mirror", "mirror_ignore_serial_header": "false",
                           "mirror_use_external_urls": 0, "mirror_cache_expiry": "soon"})
    assert isinstance(config, MirrorConfig)
    assert (config.mirror_ignore_serial_header, config.mirror_use_external_urls,
            config.mirror_no_project_list, config.mirror_cache_expiry) == (True, False, False, "soon")


def test_link_attributes_as_stored() -> None:
    link = FileLink({**LINK, "yanked": "broken", "upload_time": "2024-01-01T00:00:00",
                     "core_metadata": {"sha256": "meta"}})
    assert (link.yanked, link.size, link.upload_time, link.core_metadata) == (
        "broken", 3, "2024-01-01T00:00:00", {"sha256": "meta"})
    assert (FileLink(TOX).yanked, FileLink(TOX).size, FileLink(TOX).core_metadata) == (False, None, None)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_a_link_gives_its_stored_json_back_exactly(extra: dict[str, object]) -> None:
    stored = {**extra, **LINK}
    assert json.dumps(FileLink(stored).to_json()) == json.dumps(stored)


def test_with_links_replaces_the_links_in_place() -> None:
    data = version_data({"name": "pkg", "+elinks": [LINK, TOX], "version": "1.0", "+x": 1})
    changed = data.with_links([data.links[0], {**TOX, "yanked": True}])
    assert list(changed) == ["name", "+elinks", "version", "+x"]
    assert changed["+elinks"] == [LINK, {**TOX, "yanked": True}]
    assert list(version_data({"name": "pkg"}).with_links([LINK])) == ["name", "+elinks"]
