"""A mirrored link upstream gave no upload time gets ``first_seen`` once, kept after
(the minimum release age counts from it: model/policy.py)."""

from __future__ import annotations

from devpi_twisted.mirror.refresh import _first_seen


def test_first_seen_is_set_once_and_kept() -> None:
    links = [{"filename": "a-1.tar.gz", "upload_time": None},
             {"filename": "a-2.tar.gz", "upload_time": "2024-01-01T00:00:00Z"}]
    _first_seen(links, None)
    assert links[0]["first_seen"].endswith("Z") and "first_seen" not in links[1]
    again = [{"filename": "a-1.tar.gz", "upload_time": None}]
    _first_seen(again, {"links": [{"filename": "a-1.tar.gz",
                                   "first_seen": "2020-01-01T00:00:00Z"}]})
    assert again[0]["first_seen"] == "2020-01-01T00:00:00Z"
