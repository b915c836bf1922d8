"""What the mirror answers: the states of a project page after ``ensure`` and the
failures a client sees."""

from __future__ import annotations

FRESH, CACHED, MISSING, OFFLINE = "fresh", "cached", "missing", "offline"


class MirrorFailed(Exception):
    """Upstream failed and nothing cached can stand in; ``str`` is for the client."""


class NoSuchFile(Exception):
    """Neither we nor upstream have the file."""


class TransferBroken(Exception):
    """Upstream's body was short or did not match its hash, after the client's response
    had started: the client must see a broken transfer."""
