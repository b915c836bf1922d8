"""Which mirrored files cleanup removes: by age, then by size budget, least recently
used first; extracted .metadata files stay."""

from __future__ import annotations

import pytest

from devpi_twisted.model.cleanup import DAY, StoredFile, choose, parse_size
from devpi_twisted.model.errors import InvalidInput

NOW = 1_000_000_000.0


def f(key: str, size: int, days_ago: float) -> StoredFile:
    return StoredFile(key, size, NOW - days_ago * DAY)


FILES = [f("m/i/+f/a/old.whl", 100, 40), f("m/i/+f/a/old.whl.metadata", 5, 40),
         f("m/i/+f/b/mid.whl", 200, 10), f("m/i/+f/c/new.whl", 300, 0.5),
         f("m/i/+f/d/older.whl", 50, 35)]


def keys(files: list[StoredFile]) -> list[str]:
    return [x.key.rsplit("/", 1)[1] for x in files]


def test_files_not_downloaded_for_the_days_go_oldest_first() -> None:
    assert keys(choose(FILES, NOW, 30, None)) == ["old.whl", "older.whl"]


def test_size_budget_removes_least_recently_used_until_it_fits() -> None:
    assert keys(choose(FILES, NOW, None, 500)) == ["old.whl", "older.whl"]
    assert keys(choose(FILES, NOW, None, 300)) == ["old.whl", "older.whl", "mid.whl"]
    assert keys(choose(FILES, NOW, None, 0)) == ["old.whl", "older.whl", "mid.whl", "new.whl"]
    assert choose(FILES, NOW, None, 650) == []


def test_age_and_budget_together() -> None:
    assert keys(choose(FILES, NOW, 30, 300)) == ["old.whl", "older.whl", "mid.whl"]


def test_metadata_files_are_never_chosen() -> None:
    assert all(not x.key.endswith(".metadata") for x in choose(FILES, NOW, 0, 0))


@pytest.mark.parametrize("text, size", [("123", 123), ("1K", 1024), ("500M", 500 << 20),
                                        ("10G", 10 << 30), ("1.5T", int(1.5 * (1 << 40))),
                                        ("2GiB", 2 << 30), ("7 kb", 7 << 10)])
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "ten", "-5M", "5X"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(text)
