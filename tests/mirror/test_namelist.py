"""The compact project name list (mirror/namelist.py) answers as the dict it was made of."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devpi_twisted.mirror.namelist import NameList

_NAMES = st.dictionaries(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12),
                         max_size=60)


@given(_NAMES, st.text(max_size=12))
def test_a_name_list_answers_as_its_dict(names: dict[str, str], other: str) -> None:
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
