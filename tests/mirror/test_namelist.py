"""The compact project name list (mirror/namelist.py) answers as the dict it was made of."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from devpi_twisted.mirror.namelist import NameList

_NAMES = st.dictionaries(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12),
                         max_size=60)


@given(_NAMES, st.text(max_size=12))
def test_a_name_list_answers_as_its_dict(names: dict[str, str], other: str) -> None:
    _answers_as(names, other)


def _answers_as(names: dict[str, str], other: str) -> None:
    compact = NameList(names)
    assert compact == names and list(compact) == list(names) and len(compact) == len(names)
    assert dict(compact.items()) == names and compact.values() == list(names.values())
    for key, value in names.items():
        assert key in compact and compact[key] == value
    assert (other in compact) == (other in names)
    if other not in names:
        compact.add(other)
        assert other in compact and compact[other] == other and list(compact)[-1] == other
        assert len(compact) == len(names) + 1


def test_names_found_later_and_missing_ones() -> None:
    compact = NameList({"django": "Django", "zope-interface": "zope.interface", "\u00e9t\u00e9": "x"})
    assert compact["django"] == "Django" and compact["\u00e9t\u00e9"] == "x"
    assert "flask" not in compact and 3 not in compact
    compact.add("flask")
    compact.add("django")  # already listed: kept as upstream spells it
    assert list(compact) == ["django", "zope-interface", "\u00e9t\u00e9", "flask"]
    assert compact["django"] == "Django"


@st.composite
def _mostly_normalised(draw: st.DrawFn) -> dict[str, str]:
    """Names as upstream lists them: most spelled as their normalised form."""
    keys = draw(st.lists(st.text(min_size=1, max_size=12), max_size=60, unique=True))
    return {key: key if draw(st.booleans()) else draw(st.text(min_size=1, max_size=12))
            for key in keys}


@given(_mostly_normalised(), st.text(max_size=12))
def test_a_list_of_names_mostly_spelled_normalised_answers_as_its_dict(
        names: dict[str, str], other: str) -> None:
    _answers_as(names, other)


def test_names_spelled_normalised_are_held_once() -> None:
    names = {f"project-{i}-{'x' * (i % 9)}": f"project-{i}-{'x' * (i % 9)}" for i in range(20_000)}
    names["zope-interface"] = "zope.interface"
    text = sum(len(name) for name in names)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        compact = NameList(names)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < text + 9 * len(names) + 64 * 1024, (held, text)  # one copy, two arrays
    assert compact["zope-interface"] == "zope.interface" and compact["project-7-xxxxxxx"] == \
        "project-7-xxxxxxx"
