"""The cost of finding a request's route: the route table's matcher (web/routes.py,
what the site and the fast dispatch use; "table" for a path it has seen recently,
"cold" for one it has not) against Klein's URL map built from the same table
(werkzeug's MapAdapter, bound per request as Klein binds it).

Run by hand: ``VENV/bin/python bench/bench_dispatch.py [--rounds 20000]``. Prints
microseconds per match for each kind of path and for the mix.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from werkzeug.exceptions import HTTPException

from devpi_twisted.web.dispatch import build_klein
from devpi_twisted.web.routes import MATCHER, ROUTES

PATHS = {
    "file": (b"GET", b"/alice/dev/+f/4a1/2b3c4d5e6f7a8b9c/pkg-1.0-py3-none-any.whl"),
    "simple_project": (b"GET", b"/root/pypi/+simple/requests/"),
    "upload": (b"POST", b"/alice/dev/"),
    "index": (b"GET", b"/alice/dev"),
    "project": (b"GET", b"/alice/dev/pkg/1.0"),
    "api": (b"GET", b"/+api"),
    "no route": (b"GET", b"/alice/dev/+nothing/x"),
}


async def _handler(*args: Any, **kwargs: Any) -> bytes:
    return b""


def _per_match(match: Callable[[bytes, list[bytes]], object], method: bytes,
               segments: list[bytes], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        match(method, segments)
    return (time.perf_counter() - started) / rounds * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    rounds = parser.parse_args(argv).rounds
    url_map = build_klein({route: _handler for route in ROUTES}).url_map

    def table(method: bytes, segments: list[bytes]) -> object:
        return MATCHER.match_segments(method, segments)

    def cold(method: bytes, segments: list[bytes]) -> object:
        return MATCHER.match(method.decode(), b"/".join(segments).decode("utf-8"))

    def klein(method: bytes, segments: list[bytes]) -> object:
        path = "/" + b"/".join(segments).decode("utf-8")
        try:
            return url_map.bind("localhost", "", path_info=path,
                                default_method=method.decode()).match(return_rule=True)
        except HTTPException:
            return None

    print(f"{'path':16} {'table us':>9} {'cold us':>9} {'klein us':>9} {'ratio':>6}")
    totals = [0.0, 0.0, 0.0]
    for name, (method, path) in PATHS.items():
        segments = path.split(b"/")[1:]
        ours = _per_match(table, method, segments, rounds)
        unseen = _per_match(cold, method, segments, rounds)
        theirs = _per_match(klein, method, segments, rounds)
        totals[0] += ours
        totals[1] += unseen
        totals[2] += theirs
        print(f"{name:16} {ours:9.2f} {unseen:9.2f} {theirs:9.2f} {theirs / unseen:6.1f}")
    mean = [t / len(PATHS) for t in totals]
    print(f"{'mix (mean)':16} {mean[0]:9.2f} {mean[1]:9.2f} {mean[2]:9.2f} "
          f"{mean[2] / mean[1]:6.1f}")
    print("ratio: klein / cold")


if __name__ == "__main__":
    main()
