"""The mirror's counters of this process (pages answered from the cache, asked
upstream, failed there, prefetched; first downloads of files and failed ones), and the
one place a failure of a mirror is counted and logged."""

from __future__ import annotations

from twisted.logger import Logger

_log = Logger()
COUNTERS = ("page_hits", "page_fetches", "page_errors", "page_prefetches", "file_fetches",
            "file_errors")


def new_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


def page_failed(counters: dict[str, int], name: str, error: str) -> None:
    """Upstream (or the primary) failed mirror ``name``'s page: counted and logged."""
    counters["page_errors"] += 1
    _log.warn("mirror {name}: {error}", name=name, error=error)
