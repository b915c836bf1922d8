"""Index configuration: defaults, normalisation, validation, PATCH forms, resolution order.

spec/model.md section 3 and 6.1, spec/api.md section 5.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.storage.values import index_config
from devpi_twisted.model.indexes import (
    new_config,
    parse_bool,
    parse_list,
    patch_config,
    patch_project_rules,
    project_config,
    resolution_order,
)

PYPI = {"type": "mirror", "volatile": False, "title": "PyPI",
        "mirror_url": "https://pypi.org/simple/",
        "mirror_web_url_fmt": "https://pypi.org/project/{name}/"}


def _stage(owner: str, bases: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    config = {"type": "stage", "volatile": True, "bases": bases or [], "acl_upload": [owner],
              "acl_toxresult_upload": [":ANONYMOUS:"], "mirror_whitelist": [],
              "mirror_whitelist_inheritance": "intersection"}
    config.update(extra)
    return config


DEV = _stage("alice", ["root/pypi"])
OTHERS: dict[str, dict[str, Any]] = {
    "root/pypi": PYPI,
    "alice/prod": _stage("alice", ["root/pypi"]),
    "alice/dev": DEV,
    "bob/lib": _stage("bob"),
}


def _rejects(message: str, fn: Any, *args: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        fn(*args)
    assert info.value.message == message


# -- parse_bool / parse_list ---------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False),
    ("true", True), ("True", True), ("TRUE", True), ("yes", True), ("Yes", True),
    ("false", False), ("False", False), ("FALSE", False), ("no", False), ("NO", False),
])
def test_parse_bool_accepts_json_bools_and_case_insensitive_words(value: Any, expected: bool) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", "1", "on"])
def test_parse_bool_rejects_other_strings_with_devpi_message(value: str) -> None:
    _rejects(f"Unknown boolean value '{value}'.", parse_bool, value)


@pytest.mark.parametrize("value", [None, 1, 0])
def test_parse_bool_rejects_non_string_non_bool_values(value: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_bool(value)


@pytest.mark.parametrize(("value", "expected"), [
    (["a", "b"], ["a", "b"]),
    ("x,y", ["x", "y"]),
    ("x,,y", ["x", "y"]),
    (" x , y ,", ["x", "y"]),
    ("", []),
    ([], []),
])
def test_parse_list_takes_lists_as_is_and_splits_strings_on_commas(value: Any, expected: list[str]) -> None:
    assert parse_list(value) == expected


@pytest.mark.parametrize("value", [5, None, {"a": 1}])
def test_parse_list_rejects_other_types_with_devpi_message(value: Any) -> None:
    _rejects(f"Unknown list value {value}.", parse_list, value)


# -- new_config: stages --------------------------------------------------------------


def test_new_stage_gets_documented_defaults() -> None:
    assert new_config("alice/dev", {}, OTHERS) == {
        "type": "stage", "volatile": True, "bases": [], "acl_upload": ["alice"],
        "acl_toxresult_upload": [":ANONYMOUS:"], "mirror_whitelist": [],
        "mirror_whitelist_inheritance": "intersection"}


def test_new_stage_matches_spec_example_with_string_bases() -> None:
    assert new_config("alice/dev", {"bases": "root/pypi"}, OTHERS) == {
        "type": "stage", "volatile": True, "bases": ["root/pypi"],
        "acl_upload": ["alice"], "acl_toxresult_upload": [":ANONYMOUS:"],
        "mirror_whitelist": [], "mirror_whitelist_inheritance": "intersection"}


def test_new_stage_accepts_devpi_client_string_values() -> None:
    config = new_config("carol/x", {"bases": "root/pypi,alice/prod", "volatile": "False"}, OTHERS)
    assert config["bases"] == ["root/pypi", "alice/prod"]
    assert config["volatile"] is False


def test_new_stage_keeps_bases_order() -> None:
    config = new_config("carol/x", {"bases": ["bob/lib", "alice/prod", "root/pypi"]}, OTHERS)
    assert config["bases"] == ["bob/lib", "alice/prod", "root/pypi"]


def test_new_stage_empty_bases_string_means_no_bases() -> None:
    assert new_config("carol/x", {"bases": ""}, OTHERS)["bases"] == []


def test_new_stage_ignores_leading_and_trailing_slashes_of_bases() -> None:
    assert new_config("carol/x", {"bases": "/root/pypi/, alice/prod/"}, OTHERS)["bases"] == [
        "root/pypi", "alice/prod"]


@pytest.mark.parametrize("spec", ["/a/b/c", "root", "a//b", "/"])
def test_new_stage_rejects_base_spec_without_two_segments(spec: str) -> None:
    _rejects(f"invalid base index spec: '{spec}'", new_config, "carol/x", {"bases": [spec]}, OTHERS)


def test_new_stage_rejects_missing_base() -> None:
    _rejects("base index 'nope/x' does not exist", new_config, "carol/x", {"bases": "nope/x"}, OTHERS)


def test_new_stage_reports_every_missing_base_joined() -> None:
    _rejects("base index 'nope/x' does not exist, base index 'nope/y' does not exist",
             new_config, "carol/x", {"bases": "nope/x,root/pypi,nope/y"}, OTHERS)


def test_new_stage_rejects_unknown_key() -> None:
    _rejects("indexconfig got unexpected keyword arguments: foo=1",
             new_config, "alice/new", {"foo": 1}, OTHERS)


def test_new_stage_lists_every_unknown_key() -> None:
    with pytest.raises(InvalidInput) as info:
        new_config("alice/new", {"zap": "x", "foo": 1}, OTHERS)
    prefix = "indexconfig got unexpected keyword arguments: "
    assert info.value.message.startswith(prefix)
    assert sorted(info.value.message[len(prefix):].split(", ")) == ["foo=1", "zap=x"]


def test_new_stage_rejects_mirror_only_keys() -> None:
    _rejects("indexconfig got unexpected keyword arguments: mirror_url=https://x.org/simple/",
             new_config, "alice/new", {"mirror_url": "https://x.org/simple/"}, OTHERS)


def test_new_stage_rejects_unknown_boolean() -> None:
    _rejects("Unknown boolean value 'maybe'.", new_config, "alice/new", {"volatile": "maybe"}, OTHERS)


def test_new_stage_joins_several_value_errors() -> None:
    _rejects("Unknown boolean value 'maybe'., Unknown value 'both' for "
             "mirror_whitelist_inheritance, must be 'intersection' or 'union'.",
             new_config, "alice/new",
             {"volatile": "maybe", "mirror_whitelist_inheritance": "both"}, OTHERS)


def test_new_stage_rejects_list_key_of_wrong_type() -> None:
    _rejects("Unknown list value 5.", new_config, "alice/new", {"acl_upload": 5}, OTHERS)


def test_new_stage_upper_cases_special_principals_and_keeps_others() -> None:
    config = new_config("alice/new", {
        "acl_upload": ":anonymous:, Bob, :Devs, :authenticated:",
        "acl_toxresult_upload": [":Authenticated:"]}, OTHERS)
    assert config["acl_upload"] == [":ANONYMOUS:", "Bob", ":Devs", ":AUTHENTICATED:"]
    assert config["acl_toxresult_upload"] == [":AUTHENTICATED:"]


def test_new_stage_normalises_whitelist_names_and_keeps_star() -> None:
    config = new_config("alice/new", {"mirror_whitelist": "Foo_Bar,*,foo.bar,Zope.Interface"}, OTHERS)
    assert config["mirror_whitelist"] == ["foo-bar", "*", "zope-interface"]


@pytest.mark.parametrize(("value", "expected"), [("UNION", "union"), ("Intersection", "intersection")])
def test_new_stage_lower_cases_whitelist_inheritance(value: str, expected: str) -> None:
    config = new_config("alice/new", {"mirror_whitelist_inheritance": value}, OTHERS)
    assert config["mirror_whitelist_inheritance"] == expected


def test_new_stage_rejects_unknown_whitelist_inheritance() -> None:
    _rejects("Unknown value 'both' for mirror_whitelist_inheritance, must be 'intersection' or 'union'.",
             new_config, "alice/new", {"mirror_whitelist_inheritance": "both"}, OTHERS)


def test_new_index_stores_title_description_and_custom_data_verbatim() -> None:
    body = {"title": "T", "description": ["any"], "custom_data": "42"}
    config = new_config("alice/new", body, OTHERS)
    assert (config["title"], config["description"], config["custom_data"]) == ("T", ["any"], "42")
    config = new_config("alice/new", {"custom_data": {"nested": [1, None]}}, OTHERS)
    assert config["custom_data"] == {"nested": [1, None]}


@pytest.mark.parametrize(("given", "stored"), [("stage", "stage"), ("local", "stage"),
                                               ("mirror", "mirror"), ("remote", "mirror")])
def test_new_index_type_aliases_are_stored_canonically(given: str, stored: str) -> None:
    assert new_config("alice/new", {"type": given}, OTHERS)["type"] == stored


def test_new_index_rejects_unknown_type() -> None:
    _rejects("unknown index type 'foo'", new_config, "alice/new", {"type": "foo"}, OTHERS)


def test_new_index_rejects_invalid_index_name() -> None:
    _rejects("indexname 'a:b' contains characters that aren't allowed. "
             "Any ascii symbol besides -.@_ is blocked.",
             new_config, "alice/a:b", {}, OTHERS)


def test_new_stage_rejects_bases_that_lead_back_to_itself() -> None:
    # bob/x still names the deleted alice/gone as a base (dangling names are kept).
    others = {**OTHERS, "bob/x": _stage("bob", ["alice/gone"])}
    with pytest.raises(InvalidInput) as info:
        new_config("alice/gone", {"bases": "bob/x"}, others)
    assert "inherit from itself" in info.value.message


def test_new_config_does_not_mutate_its_arguments() -> None:
    body = {"bases": "root/pypi", "volatile": "no"}
    others = copy.deepcopy(OTHERS)
    new_config("alice/new", body, others)
    assert body == {"bases": "root/pypi", "volatile": "no"}
    assert others == OTHERS


# -- new_config: mirrors -------------------------------------------------------------


def test_new_mirror_gets_only_type_and_volatile_by_default() -> None:
    assert new_config("root/m", {"type": "mirror"}, OTHERS) == {"type": "mirror", "volatile": True}


def test_new_mirror_keeps_its_keys_and_parses_strings() -> None:
    config = new_config("root/m", {
        "type": "mirror", "mirror_url": "https://user:pw@example.org/simple/",
        "mirror_cache_expiry": "600", "mirror_web_url_fmt": "https://example.org/p/{name}/",
        "mirror_no_project_list": "yes", "mirror_use_external_urls": "False",
        "mirror_ignore_serial_header": True, "volatile": "no"}, OTHERS)
    assert config == {
        "type": "mirror", "volatile": False, "mirror_url": "https://user:pw@example.org/simple/",
        "mirror_cache_expiry": 600, "mirror_web_url_fmt": "https://example.org/p/{name}/",
        "mirror_no_project_list": True, "mirror_use_external_urls": False,
        "mirror_ignore_serial_header": True}


def test_new_mirror_silently_drops_stage_keys_sent_by_old_exports() -> None:
    config = new_config("root/m", {
        "type": "mirror", "mirror_url": "http://example.org/simple/",
        "bases": "nope/x", "acl_upload": ["root"], "mirror_whitelist": ["*"],
        "pypi_whitelist": ["foo"]}, OTHERS)
    assert config == {"type": "mirror", "volatile": True, "mirror_url": "http://example.org/simple/"}


@pytest.mark.parametrize("key", ["acl_toxresult_upload", "mirror_whitelist_inheritance", "foo"])
def test_new_mirror_rejects_other_unknown_keys(key: str) -> None:
    _rejects(f"indexconfig got unexpected keyword arguments: {key}=x",
             new_config, "root/m", {"type": "mirror", key: "x"}, OTHERS)


@pytest.mark.parametrize("url", ["ftp://example.org/simple/", "example.org", 5])
def test_new_mirror_rejects_mirror_url_that_is_not_http(url: Any) -> None:
    _rejects("'mirror_url' option must be a URL.", new_config, "root/m",
             {"type": "mirror", "mirror_url": url}, OTHERS)


@pytest.mark.parametrize("expiry", ["soon", None, "1.5"])
def test_new_mirror_rejects_non_integer_cache_expiry(expiry: Any) -> None:
    _rejects("'mirror_cache_expiry' option must be an integer", new_config, "root/m",
             {"type": "mirror", "mirror_cache_expiry": expiry}, OTHERS)


# -- devpi 7's inheritance rules, kept as the devpi 6 whitelist ---------------------

ALLOW, BLOCK = "allow all", "block type:remote if local_exists"
RULES_CHOICES = "must be ['allow all'] or ['block type:remote if local_exists']."


@pytest.mark.parametrize(("rules", "whitelist"), [
    ("allow all", ["*"]), ([ALLOW], ["*"]), (BLOCK, []), ([BLOCK], [])])
def test_new_stage_takes_project_inheritance_rules_as_the_whitelist(rules: Any,
                                                                    whitelist: list[str]) -> None:
    config = new_config("alice/new", {"project_inheritance_rules": rules}, OTHERS)
    assert config["mirror_whitelist"] == whitelist
    assert "project_inheritance_rules" not in config


@pytest.mark.parametrize(("value", "mode"), [("none", "intersection"), ("type:not remote", "union"),
                                             ("Type:Not Remote", "union")])
def test_trust_inheritance_rules_from_is_the_whitelist_inheritance(value: str, mode: str) -> None:
    config = new_config("alice/new", {"trust_inheritance_rules_from": value}, OTHERS)
    assert config["mirror_whitelist_inheritance"] == mode
    assert "trust_inheritance_rules_from" not in config


@pytest.mark.parametrize(("body", "message"), [
    ({"project_inheritance_rules": []}, f"Unknown value [] for project_inheritance_rules, {RULES_CHOICES}"),
    ({"project_inheritance_rules": [BLOCK, ALLOW]},
     f"Unknown value ['{BLOCK}', 'allow all'] for project_inheritance_rules, {RULES_CHOICES}"),
    ({"trust_inheritance_rules_from": "all"},
     "Unknown value 'all' for trust_inheritance_rules_from, must be 'none' or 'type:not remote'."),
])
def test_bad_inheritance_rules_are_refused(body: dict[str, Any], message: str) -> None:
    _rejects(message, new_config, "alice/new", body, OTHERS)


def test_patch_list_allow_all_then_block_keeps_named_projects() -> None:
    named = _stage("alice", ["root/pypi"], mirror_whitelist=["foo"])
    allowed = patch_config("alice/dev", named, ["project_inheritance_rules=allow all"], OTHERS)
    assert allowed["mirror_whitelist"] == ["foo", "*"]
    blocked = patch_config("alice/dev", allowed, [f"project_inheritance_rules={BLOCK}"], OTHERS)
    assert blocked["mirror_whitelist"] == ["foo"]


@pytest.mark.parametrize(("item", "message"), [
    (f"project_inheritance_rules-={BLOCK}", f"Unknown value [] for project_inheritance_rules, {RULES_CHOICES}"),
    ("project_inheritance_rules+=allow all",
     f"Unknown value ['{BLOCK}', 'allow all'] for project_inheritance_rules, {RULES_CHOICES}"),
    ("project_inheritance_rules-=foo", "The 'project_inheritance_rules' setting doesn't have value 'foo'"),
])
def test_patch_list_changes_of_rules_as_devpi_7_answers_them(item: str, message: str) -> None:
    _rejects(message, patch_config, "alice/dev", DEV, [item], OTHERS)


def test_patch_list_can_swap_the_rule_in_one_request() -> None:
    config = patch_config("alice/dev", DEV, [f"project_inheritance_rules-={BLOCK}",
                                             "project_inheritance_rules+=allow all"], OTHERS)
    assert config["mirror_whitelist"] == ["*"]


def test_project_rules_add_and_remove_one_name_of_the_whitelist() -> None:
    allowed = patch_project_rules(DEV, "Foo_Bar", ["inheritance_rules=allow all"])
    assert allowed["mirror_whitelist"] == ["foo-bar"]
    assert project_config(allowed, "foo.bar") == {"inheritance_rules": [ALLOW]}
    assert project_config(allowed, "other") == {}
    again = patch_project_rules(allowed, "foo-bar", {"inheritance_rules": ["allow all"]})
    assert again["mirror_whitelist"] == ["foo-bar"]
    removed = patch_project_rules(again, "foo-bar", ["inheritance_rules-=allow all"])
    assert removed["mirror_whitelist"] == [] and project_config(removed, "foo-bar") == {}
    assert patch_project_rules(allowed, "foo-bar", {})["mirror_whitelist"] == []


def test_project_rules_leave_allow_all_of_the_index_alone() -> None:
    star = _stage("alice", ["root/pypi"], mirror_whitelist=["*", "foo"])
    assert patch_project_rules(star, "foo", ["inheritance_rules="])["mirror_whitelist"] == ["*"]


@pytest.mark.parametrize(("body", "message"), [
    (["inheritance_rules=deny"], "Unknown value ['deny'] for inheritance_rules, must be [] or ['allow all']."),
    ({"volatile": False}, "projectconfig got unexpected keyword arguments: volatile=False"),
    (["inheritance_rules-=allow all"], "The 'inheritance_rules' setting doesn't have value 'allow all'"),
    ("allow all", "Bad request: expected a JSON object or list"),
])
def test_project_rules_refusals(body: Any, message: str) -> None:
    _rejects(message, patch_project_rules, DEV, "foo", body)


def test_a_mirror_has_no_project_rules() -> None:
    _rejects("only stage indexes have a project configuration", patch_project_rules, PYPI, "foo",
             ["inheritance_rules=allow all"])
    assert project_config(PYPI, "foo") == {}


# -- patch_config: list form ---------------------------------------------------------


def test_patch_list_sets_values_parsed_like_create() -> None:
    config = patch_config("alice/dev", DEV, ["volatile=False", "bases=root/pypi,alice/prod"], OTHERS)
    assert config["volatile"] is False
    assert config["bases"] == ["root/pypi", "alice/prod"]


def test_patch_list_keeps_equals_signs_inside_values() -> None:
    assert patch_config("alice/dev", DEV, ["title=a=b"], OTHERS)["title"] == "a=b"


def test_patch_list_append_adds_new_value() -> None:
    assert patch_config("alice/dev", DEV, ["acl_upload+=bob"], OTHERS)["acl_upload"] == ["alice", "bob"]


def test_patch_list_append_ignores_duplicate_value() -> None:
    assert patch_config("alice/dev", DEV, ["acl_upload+=alice"], OTHERS)["acl_upload"] == ["alice"]


def test_patch_list_append_ignores_duplicate_base() -> None:
    assert patch_config("alice/dev", DEV, ["bases+=root/pypi"], OTHERS)["bases"] == ["root/pypi"]


def test_patch_list_append_compares_normalised_values() -> None:
    config = patch_config("alice/dev", {**DEV, "mirror_whitelist": ["foo-bar"]},
                          ["acl_toxresult_upload+=:anonymous:", "mirror_whitelist+=Foo_Bar",
                           "acl_upload+=:authenticated:"], OTHERS)
    assert config["acl_toxresult_upload"] == [":ANONYMOUS:"]
    assert config["mirror_whitelist"] == ["foo-bar"]
    assert config["acl_upload"] == ["alice", ":AUTHENTICATED:"]


def test_patch_list_append_normalises_base_spec() -> None:
    config = patch_config("alice/dev", DEV, ["bases+=/alice/prod/"], OTHERS)
    assert config["bases"] == ["root/pypi", "alice/prod"]


def test_patch_list_append_rejects_missing_base() -> None:
    _rejects("base index 'nope/x' does not exist", patch_config, "alice/dev", DEV,
             ["bases+=nope/x"], OTHERS)


def test_patch_list_remove_value_from_list() -> None:
    config = patch_config("alice/dev", {**DEV, "mirror_whitelist": ["foo-bar", "baz"]},
                          ["acl_upload-=alice", "mirror_whitelist-=Foo.Bar"], OTHERS)
    assert config["acl_upload"] == []
    assert config["mirror_whitelist"] == ["baz"]


def test_patch_list_remove_absent_value_is_rejected() -> None:
    _rejects("The 'acl_upload' setting doesn't have value 'x'", patch_config, "alice/dev", DEV,
             ["acl_upload-=x"], OTHERS)


def test_patch_list_remove_key_with_empty_value() -> None:
    config = patch_config("alice/dev", {**DEV, "title": "T"}, ["title-="], OTHERS)
    assert "title" not in config


@pytest.mark.parametrize("key", ["volatile", "bases", "acl_upload", "acl_toxresult_upload",
                                 "mirror_whitelist", "mirror_whitelist_inheritance", "type"])
def test_patch_list_cannot_remove_keys_with_defaults_of_a_stage(key: str) -> None:
    _rejects("Default values can't be removed.", patch_config, "alice/dev", DEV, [f"{key}-="], OTHERS)


def test_patch_list_cannot_remove_volatile_of_a_mirror() -> None:
    _rejects("Default values can't be removed.", patch_config, "root/pypi", PYPI, ["volatile-="], OTHERS)


def test_patch_list_can_remove_mirror_key_without_default() -> None:
    config = patch_config("root/pypi", PYPI, ["mirror_web_url_fmt-="], OTHERS)
    assert "mirror_web_url_fmt" not in config
    assert config["mirror_url"] == PYPI["mirror_url"]


def test_patch_list_applies_items_in_order() -> None:
    config = patch_config("alice/dev", DEV, ["acl_upload=bob", "acl_upload+=carol", "acl_upload-=bob"], OTHERS)
    assert config["acl_upload"] == ["carol"]


def test_patch_list_set_then_append_base_in_one_request() -> None:
    config = patch_config("alice/dev", DEV, ["bases=", "bases+=bob/lib"], OTHERS)
    assert config["bases"] == ["bob/lib"]


@pytest.mark.parametrize("item", ["title+=x", "title-=x"])
def test_patch_list_change_of_missing_key_is_bad_request(item: str) -> None:
    with pytest.raises(InvalidInput):
        patch_config("alice/dev", DEV, [item], OTHERS)


def test_patch_list_append_to_non_list_key_is_bad_request() -> None:
    with pytest.raises(InvalidInput):
        patch_config("alice/dev", {**DEV, "title": "T"}, ["title+=x"], OTHERS)


@pytest.mark.parametrize("item", ["volatile", 5, None, "=x", "+=x"])
def test_patch_list_rejects_items_that_are_not_key_value(item: Any) -> None:
    with pytest.raises(InvalidInput):
        patch_config("alice/dev", DEV, [item], OTHERS)


def test_patch_list_rejects_type_change() -> None:
    _rejects("the 'type' of an index can't be changed", patch_config, "alice/dev", DEV,
             ["type=mirror"], OTHERS)


def test_patch_list_accepts_unchanged_type_by_alias() -> None:
    assert patch_config("alice/dev", DEV, ["type=local"], OTHERS)["type"] == "stage"


def test_patch_list_rejects_unknown_boolean() -> None:
    _rejects("Unknown boolean value 'maybe'.", patch_config, "alice/dev", DEV, ["volatile=maybe"], OTHERS)


def test_patch_list_rejects_new_unknown_key() -> None:
    _rejects("indexconfig got unexpected keyword arguments: foo=1", patch_config, "alice/dev", DEV,
             ["foo=1"], OTHERS)


def test_patch_list_keeps_unknown_stored_key_when_only_appending_or_removing() -> None:
    current = {**DEV, "plugin_key": "v"}
    config = patch_config("alice/dev", current, ["acl_upload+=bob", "acl_upload-=alice"], OTHERS)
    assert config["plugin_key"] == "v"
    assert config["acl_upload"] == ["bob"]


def test_patch_list_removes_unknown_stored_key() -> None:
    config = patch_config("alice/dev", {**DEV, "plugin_key": "v"}, ["plugin_key-="], OTHERS)
    assert "plugin_key" not in config


def test_patch_list_rejects_unknown_stored_key_once_a_value_is_set() -> None:
    _rejects("indexconfig got unexpected keyword arguments: plugin_key=v", patch_config, "alice/dev",
             {**DEV, "plugin_key": "v"}, ["title=x"], OTHERS)


def test_patch_list_rejects_unknown_stored_key_when_mixing_set_and_append() -> None:
    _rejects("indexconfig got unexpected keyword arguments: plugin_key=v", patch_config, "alice/dev",
             {**DEV, "plugin_key": "v"}, ["acl_upload+=bob", "title=x"], OTHERS)


def test_patch_list_rejects_base_on_itself() -> None:
    with pytest.raises(InvalidInput) as info:
        patch_config("alice/dev", DEV, ["bases+=alice/dev"], OTHERS)
    assert "inherit from itself" in info.value.message


def test_patch_list_rejects_indirect_cycle_in_bases() -> None:
    others = {**OTHERS, "alice/prod": _stage("alice", ["alice/dev"])}
    with pytest.raises(InvalidInput) as info:
        patch_config("alice/dev", DEV, ["bases=alice/prod"], others)
    assert "inherit from itself" in info.value.message


def test_patch_list_on_mirror_silently_drops_stage_keys() -> None:
    # spec/model.md 3.3: bases, acl_upload, mirror_whitelist, pypi_whitelist sent
    # for a mirror are dropped; the list form sends them too (devpi drops them in
    # get_indexconfig_from_kwargs, for both PATCH forms).
    config = patch_config("root/pypi", PYPI, ["bases=alice/prod", "acl_upload=root",
                                              "mirror_whitelist=*", "pypi_whitelist=foo"], OTHERS)
    assert config == PYPI


def test_patch_list_does_not_mutate_current_config() -> None:
    current = copy.deepcopy(DEV)
    patch_config("alice/dev", current, ["acl_upload+=bob", "bases-=root/pypi", "title=x"], OTHERS)
    assert current == DEV


def test_patch_list_that_changes_nothing_is_not_an_error_here() -> None:
    # ?error_on_noop belongs to the request handler, not to this layer.
    assert patch_config("alice/dev", DEV, ["volatile=True", "acl_upload+=alice"], OTHERS) == DEV


# -- patch_config: dict form ---------------------------------------------------------


def test_patch_dict_merges_given_keys_and_keeps_others() -> None:
    config = patch_config("alice/dev", DEV, {"title": "T"}, OTHERS)
    assert config == {**DEV, "title": "T"}


def test_patch_dict_normalises_string_values() -> None:
    config = patch_config("alice/dev", DEV, {"volatile": "no", "bases": "alice/prod, bob/lib",
                                             "acl_upload": ":anonymous:"}, OTHERS)
    assert config["volatile"] is False
    assert config["bases"] == ["alice/prod", "bob/lib"]
    assert config["acl_upload"] == [":ANONYMOUS:"]


def test_patch_dict_accepts_whole_get_envelope() -> None:
    result = {**DEV, "title": "T", "projects": ["hello"]}
    config = patch_config("alice/dev", DEV, {"type": "indexconfig", "result": result}, OTHERS)
    assert config == {**DEV, "title": "T"}


def test_patch_dict_ignores_projects() -> None:
    assert patch_config("alice/dev", DEV, {"projects": ["x"]}, OTHERS) == DEV


def test_patch_dict_rejects_type_change() -> None:
    _rejects("the 'type' of an index can't be changed", patch_config, "alice/dev", DEV,
             {"type": "mirror"}, OTHERS)


def test_patch_dict_accepts_current_type() -> None:
    assert patch_config("root/pypi", PYPI, {"type": "remote"}, OTHERS) == PYPI


def test_patch_dict_rejects_unknown_key() -> None:
    _rejects("indexconfig got unexpected keyword arguments: foo=1", patch_config, "alice/dev", DEV,
             {"foo": 1}, OTHERS)


def test_patch_dict_rejects_missing_base() -> None:
    _rejects("base index 'nope/x' does not exist", patch_config, "alice/dev", DEV,
             {"bases": ["nope/x"]}, OTHERS)


def test_patch_dict_on_mirror_silently_drops_stage_keys() -> None:
    config = patch_config("root/pypi", PYPI, {
        "bases": ["nope/x"], "acl_upload": ["root"], "mirror_whitelist": ["*"],
        "pypi_whitelist": [], "mirror_cache_expiry": "60"}, OTHERS)
    assert config == {**PYPI, "mirror_cache_expiry": 60}


def test_patch_dict_drops_obsolete_pypi_whitelist_from_stored_stage_config() -> None:
    # spec/model.md 3.4: pypi_whitelist is dropped from existing configs on the next modification.
    current = {**DEV, "pypi_whitelist": []}
    config = patch_config("alice/dev", current, {"title": "T"}, OTHERS)
    assert config == {**DEV, "title": "T"}


@pytest.mark.parametrize("body", ["volatile=False", 5, None])
def test_patch_rejects_body_that_is_neither_object_nor_list(body: Any) -> None:
    with pytest.raises(InvalidInput):
        patch_config("alice/dev", DEV, body, OTHERS)


def test_patch_dict_that_changes_nothing_is_not_an_error_here() -> None:
    assert patch_config("alice/dev", DEV, {}, OTHERS) == DEV
    assert patch_config("alice/dev", DEV, dict(DEV), OTHERS) == DEV


def test_patch_dict_does_not_mutate_current_config() -> None:
    current = copy.deepcopy(DEV)
    patch_config("alice/dev", current, {"bases": "", "title": "x"}, OTHERS)
    assert current == DEV


# -- resolution_order ----------------------------------------------------------------


def _order(start: str, configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``resolution_order`` over configs as storage hands them out."""
    parsed = {name: index_config(config) for name, config in configs.items()}
    return resolution_order(start, parsed.get)


def test_resolution_order_spec_example_lists_mirrors_last() -> None:
    configs = {"alice/dev": _stage("alice", ["alice/prod", "root/pypi"]),
               "alice/prod": _stage("alice", ["bob/lib"]), "bob/lib": _stage("bob"),
               "root/pypi": PYPI}
    assert _order("alice/dev", configs) == ["alice/dev", "alice/prod", "bob/lib", "root/pypi"]


def test_resolution_order_puts_mirror_listed_first_after_all_stages() -> None:
    configs = {"a/x": _stage("a", ["root/pypi", "a/y"]), "a/y": _stage("a"), "root/pypi": PYPI}
    assert _order("a/x", configs) == ["a/x", "a/y", "root/pypi"]


def test_resolution_order_is_breadth_first_in_configured_order() -> None:
    configs = {"a/a": _stage("a", ["a/b", "a/c"]), "a/b": _stage("a", ["a/d"]),
               "a/c": _stage("a", ["a/e"]), "a/d": _stage("a"), "a/e": _stage("a")}
    assert _order("a/a", configs) == ["a/a", "a/b", "a/c", "a/d", "a/e"]


def test_resolution_order_lists_each_index_once() -> None:
    configs = {"a/a": _stage("a", ["a/b", "a/c", "root/pypi"]),
               "a/b": _stage("a", ["a/d", "root/pypi"]), "a/c": _stage("a", ["a/d", "root/pypi"]),
               "a/d": _stage("a", ["root/pypi"]), "root/pypi": PYPI}
    assert _order("a/a", configs) == ["a/a", "a/b", "a/c", "a/d", "root/pypi"]


def test_resolution_order_orders_several_mirrors_by_discovery() -> None:
    other = {**PYPI, "mirror_url": "https://other.example/simple/"}
    configs = {"a/a": _stage("a", ["a/b", "root/one"]), "a/b": _stage("a", ["root/two"]),
               "root/one": PYPI, "root/two": other}
    assert _order("a/a", configs) == ["a/a", "a/b", "root/one", "root/two"]


def test_resolution_order_skips_bases_that_no_longer_exist() -> None:
    configs = {"a/a": _stage("a", ["gone/x", "a/b"]), "a/b": _stage("a", ["gone/y"])}
    assert _order("a/a", configs) == ["a/a", "a/b"]


def test_resolution_order_terminates_on_cycles() -> None:
    configs = {"a/a": _stage("a", ["a/b"]), "a/b": _stage("a", ["a/a", "a/b"])}
    assert _order("a/a", configs) == ["a/a", "a/b"]


def test_resolution_order_of_missing_index_is_empty() -> None:
    assert _order("nope/x", OTHERS) == []


def test_resolution_order_of_mirror_is_itself() -> None:
    assert _order("root/pypi", OTHERS) == ["root/pypi"]


def test_resolution_order_of_stage_without_bases_key_is_itself() -> None:
    configs = {"old/x": {"type": "stage", "volatile": True, "acl_upload": ["old"]}}
    assert _order("old/x", configs) == ["old/x"]
