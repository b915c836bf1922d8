"""User, index and project names (spec/model.md section 1)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import MAX_NAME, check_name, normalize_project

# spec/model.md 1.1, verbatim.
FORBIDDEN_PUNCTUATION = "!\"#$%&'()*+,/:;<=>?[\\]^`{|}~"
CONTROLS_AND_SPACE = "".join(chr(c) for c in range(0x20)) + " "
VALID_DISTRIBUTION_NAME = r"\A[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z"


def _message(kind: str, name: str) -> str:
    return (f"{kind} '{name}' contains characters that aren't allowed. "
            "Any ascii symbol besides -.@_ is blocked.")


allowed_names = st.text(
    alphabet=st.characters(
        exclude_characters=FORBIDDEN_PUNCTUATION + CONTROLS_AND_SPACE,
        exclude_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp")),
    min_size=1, max_size=MAX_NAME // 4).filter(lambda name: name not in (".", ".."))


def test_forbidden_punctuation_is_all_ascii_punctuation_but_four() -> None:
    assert set(FORBIDDEN_PUNCTUATION) == set(string.punctuation) - set("-.@_")


# -- check_name --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "Alice", "a-b.c_d@e", "1", "föö", "😀", "名前", "...", "-_-",
                                  ".a", "a" * MAX_NAME, "é" * (MAX_NAME // 2)])
def test_check_name_returns_valid_names_unchanged(name: str) -> None:
    assert check_name("username", name) == name


def test_check_name_does_not_normalise_case() -> None:
    assert check_name("indexname", "Dev") == "Dev"


@pytest.mark.parametrize("char", list(FORBIDDEN_PUNCTUATION))
def test_check_name_rejects_each_forbidden_ascii_punctuation(char: str) -> None:
    name = f"a{char}b"
    with pytest.raises(InvalidInput) as info:
        check_name("username", name)
    assert info.value.message == _message("username", name)


@pytest.mark.parametrize("char", list(CONTROLS_AND_SPACE), ids=lambda c: f"0x{ord(c):02x}")
def test_check_name_rejects_ascii_controls_and_space(char: str) -> None:
    with pytest.raises(InvalidInput):
        check_name("username", f"a{char}b")


@pytest.mark.parametrize("char", ["-", ".", "@", "_"])
def test_check_name_allows_the_four_permitted_punctuation_characters(char: str) -> None:
    assert check_name("username", f"a{char}b") == f"a{char}b"


def test_check_name_rejects_empty_name() -> None:
    with pytest.raises(InvalidInput):
        check_name("username", "")


def test_check_name_message_names_the_kind_for_indexes() -> None:
    with pytest.raises(InvalidInput) as info:
        check_name("indexname", "a/b")
    assert info.value.message == _message("indexname", "a/b")


@pytest.mark.parametrize("name", [".", ".."])
def test_check_name_rejects_the_directory_names(name: str) -> None:
    # devpi allows them; as path segments of blob keys and files they name directories.
    with pytest.raises(InvalidInput, match="is not allowed"):
        check_name("username", name)


@pytest.mark.parametrize("char", ["\x7f", "\x85", "\u00a0", "\u200b", "\u200d", "\u202e", "\u2028",
                                  "\u3000", "\ufeff", "\ud800"])
def test_check_name_rejects_invisible_characters_devpi_lets_through(char: str) -> None:
    with pytest.raises(InvalidInput, match=f"U\\+{ord(char):04X}"):
        check_name("username", f"a{char}b")


def test_check_name_rejects_names_longer_than_the_limit() -> None:
    with pytest.raises(InvalidInput, match="longer than"):
        check_name("indexname", "a" * (MAX_NAME + 1))
    with pytest.raises(InvalidInput, match="longer than"):
        check_name("username", "é" * (MAX_NAME // 2 + 1))  # two bytes each
    with pytest.raises(InvalidInput, match="longer than"):
        check_name("username", "a" * 10_000)


def test_check_name_keeps_case_and_unicode_form_as_devpi() -> None:
    # devpi neither lower-cases nor normalises: these are four different names.
    names = ["alice", "Alice", "\u00e9", "e\u0301"]
    assert [check_name("username", n) for n in names] == names


@given(allowed_names)
def test_check_name_accepts_any_text_without_forbidden_characters(name: str) -> None:
    assert check_name("username", name) == name


@given(st.text(), st.sampled_from(FORBIDDEN_PUNCTUATION + CONTROLS_AND_SPACE), st.text())
def test_check_name_rejects_any_text_containing_a_forbidden_character(
        head: str, bad: str, tail: str) -> None:
    name = head + bad + tail
    with pytest.raises(InvalidInput) as info:
        check_name("indexname", name)
    assert info.value.message == _message("indexname", name)


# -- normalize_project -------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("Hello_World", "hello-world"),
    ("zope.interface", "zope-interface"),
    ("A..B__C--D", "a-b-c-d"),
    ("Django", "django"),
    ("pkg-1.0", "pkg-1-0"),
    ("f\u00f6\u00f6", "f-"),
    ("a \u00e9\u00e8 b", "a-b"),
])
def test_normalize_project_replaces_non_alphanumeric_runs_with_one_dash(name: str, expected: str) -> None:
    assert normalize_project(name) == expected


@given(st.text())
def test_normalize_project_is_idempotent(name: str) -> None:
    once = normalize_project(name)
    assert normalize_project(once) == once


@given(st.text())
def test_normalize_project_yields_lower_ascii_alphanumerics_and_single_dashes(name: str) -> None:
    result = normalize_project(name)
    assert set(result) <= set(string.ascii_lowercase + string.digits + "-")
    assert "--" not in result


@given(st.from_regex(VALID_DISTRIBUTION_NAME))
def test_normalize_project_agrees_with_pep503_for_valid_names(name: str) -> None:
    assert normalize_project(name) == canonicalize_name(name)


@given(st.from_regex(VALID_DISTRIBUTION_NAME))
def test_normalize_project_ignores_case_and_separator_spelling(name: str) -> None:
    variant = name.upper().replace("-", "_").replace(".", "-")
    assert normalize_project(variant) == normalize_project(name)
