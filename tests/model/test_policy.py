"""model/policy.py: durations, specifiers, which index's setting applies, the filter."""

from __future__ import annotations

import attrs
import pytest

from devpi_twisted.model import indexes as idx
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.policy import Block, check_constraint, filter_links, held_versions, \
    iso_date, parse_block, parse_duration, policy_of

NOW = 1_800_000_000.0
DAY = 86400


@pytest.mark.parametrize("text, seconds", [("7d", 7 * DAY), ("36h", 36 * 3600), ("90m", 5400),
                                           (" 0d ", 0)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7", "7 days", "-1d", "1.5d", "d", "", "7w", 7, None,
                                  "9999999d"])
def test_bad_durations_name_the_field(text: object) -> None:
    with pytest.raises(InvalidInput, match="min_release_age"):
        parse_duration(text)


def test_specifiers_are_normalised_and_bad_ones_named() -> None:
    assert check_constraint("Django >=4.2, <5") == "django<5,>=4.2"
    assert check_constraint("requests") == "requests"
    assert check_constraint("*") == "*"
    for bad in ("django>=>4", "pkg @ https://x/y.whl", "pkg[extra]", "x" * 600):
        with pytest.raises(InvalidInput, match="constraints"):
            check_constraint(bad)


def test_index_keys_validated_with_the_others() -> None:
    config = idx.new_config("root/dev", {"min_release_age": "7d", "min_release_age_exempt":
                                         "Certifi,My_Pkg", "constraints": "a<2\nb"}, {})
    assert config["min_release_age"] == "7d"
    assert config["min_release_age_exempt"] == ["certifi", "my-pkg"]
    assert config["constraints"] == ["a<2", "b"]
    mirror = idx.new_config("root/m", {"type": "mirror", "mirror_url": "https://x/simple/",
                                       "min_release_age": "36h"}, {})
    assert mirror["min_release_age"] == "36h"
    with pytest.raises(InvalidInput, match="min_release_age"):
        idx.new_config("root/dev", {"min_release_age": "week"}, {})
    patched = idx.patch_config("root/dev", config, ["constraints+=c>1", "min_release_age="], {})
    assert patched["constraints"] == ["a<2", "b", "c>1"] and "min_release_age" not in patched


def test_the_first_index_of_the_order_that_sets_a_key_wins() -> None:
    order = [("u/dev", {"constraints": ["a<2"]}), ("u/base", {"min_release_age": "1d",
                                                             "constraints": ["*"]}),
             ("root/pypi", {"min_release_age": "7d", "min_release_age_exempt": ["x"],
                            "blocks": [{"project": "a", "version": "1", "reason": "r",
                                        "by": "root", "at": iso_date(NOW)}]})]
    policy = policy_of(order)
    assert policy.min_age == DAY and policy.exempt == frozenset()
    assert policy.constraints is not None and set(policy.constraints) == {"a"}
    assert not policy.star and not policy.listed("b")
    assert policy.blocks[0].index == "root/pypi"
    assert policy_of([("u/x", {})]).empty


@attrs.frozen
class L:
    stage: str
    filename: str
    upload_time: str | None = None
    first_seen: str | None = None


def _version(filename: str) -> str | None:
    return filename.rsplit("-", 1)[-1].removesuffix(".tar.gz")


def test_filter_age_constraints_blocks_and_private_uploads() -> None:
    old, young = iso_date(NOW - 30 * DAY), iso_date(NOW - 3600)
    links = [L("root/pypi", "a-1.0.tar.gz", old), L("root/pypi", "a-2.0.tar.gz", young),
             L("root/pypi", "a-3.0.tar.gz", None, young), L("u/dev", "a-4.0.tar.gz", young),
             L("u/base", "a-0.5.tar.gz", young)]
    policy = policy_of([("u/dev", {"min_release_age": "7d", "constraints": ["a>=0.9"]})])
    got = filter_links(policy, "a", links, "u/dev", frozenset({"root/pypi"}), _version, NOW)
    assert [link.filename for link in got.kept] == ["a-1.0.tar.gz", "a-4.0.tar.gz"]
    assert {(h.version, h.rule) for h in got.held} == {
        ("2.0", "age"), ("3.0", "age"), ("0.5", "constraint")}
    assert got.due == pytest.approx(NOW - 3600 + 7 * DAY)
    exempt = attrs.evolve(policy, exempt=frozenset({"a"}))
    assert len(filter_links(exempt, "a", links, "u/dev", frozenset({"root/pypi"}), _version,
                            NOW).kept) == 4
    blocked = attrs.evolve(policy, blocks=(Block("a", "1.0", None, "bad", "root", NOW),))
    got = filter_links(blocked, "a", links, "u/dev", frozenset({"root/pypi"}), _version, NOW)
    assert [link.filename for link in got.kept] == ["a-4.0.tar.gz"]
    listing = held_versions(got.held, ["4.0"])
    assert listing[0]["rules"][0]["detail"].startswith("blocked by root on ")


def test_blocks_parsed_with_fields_named() -> None:
    block = parse_block({"project": "Foo_Bar", "version": "1", "reason": " why "}, "root", NOW)
    assert (block.project, block.version, block.filename, block.reason) == (
        "foo-bar", "1", None, "why")
    for body, field in (({"version": "1", "reason": "r"}, "project"),
                        ({"project": "x"}, "reason"), ({"project": "x", "reason": ""}, "reason"),
                        ({"project": "x", "reason": "r", "when": 1}, "when"), ([], "expected")):
        with pytest.raises(InvalidInput, match=field):
            parse_block(body, "root", NOW)  # type: ignore[arg-type]
