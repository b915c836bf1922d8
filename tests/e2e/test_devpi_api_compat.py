"""Our JSON beside the real devpi-server's, key for key, in each answer mode: the same
devpi-client (7.x) workflow runs against devpi-server 6.20 and our daemon with
``--devpi-api 6``, and against devpi-server 7.0 beta and ours with ``--devpi-api 7``;
then the same requests go to both and the answers are compared after the values that
must differ (uuids, times, serials, hosts, paths) are normalised.

One devpi-server and one daemon per mode (module-scoped), both with ``--no-root-pypi``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dump.devpi6 import Devpi6, ensure_installed
from tests.e2e.test_devpi_client import DevpiCLI
from tests.support import Daemon, call, init_serverdir, login, make_wheel

UPSTREAM = "http://127.0.0.1:9/simple/"  # nothing listens: nothing leaves the machine
# /+status keys of ours that devpi-server has not (spec/api.md 3.4)
OUR_STATUS_KEYS = {"cache", "mirror", "process", "replication", "replication-errors"}
# the devpi 7 walk entries ours leaves out (model/inheritance_info.py)
INFO_KEY = "inheritance_info"


@pytest.fixture(scope="module", params=[6, 7])
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, str]]:
    """(mode, devpi-server's URL, our daemon's URL), root's password 'root' on both."""
    major = request.param
    base = tmp_path_factory.mktemp(f"devpi{major}")
    theirs = Devpi6(ensure_installed(major), base / "devpi")
    theirs.run("devpi-init", "--no-root-pypi", "--root-passwd", "root")
    theirs.start()
    init_serverdir(base / "ours", "--no-root-pypi", "--root-passwd", "root")
    ours = Daemon(base / "ours", "--devpi-api", str(major)).start()
    try:
        yield major, theirs.url, ours.url
    finally:
        ours.stop()
        theirs.stop()


def _workflow(mode: int, url: str, home: Path, wheel: Path) -> list[str]:
    """devpi-client's part: users, indexes in the mode's spelling, an upload; returns
    what the client printed of the indexes and the project (URLs as ``URL``)."""
    devpi = DevpiCLI(home)
    devpi("use", url)
    devpi("login", "root", "--password", "root")
    devpi("user", "-c", "alice", "email=alice@example.com", "password=secret")
    devpi("login", "alice", "--password", "secret")
    if mode == 6:
        devpi("index", "-c", "alice/up", "type=mirror", f"mirror_url={UPSTREAM}",
              "mirror_no_project_list=True", "mirror_cache_expiry=60")
    else:
        devpi("index", "-c", "alice/up", "type=remote", f"remote_url={UPSTREAM}",
              "remote_no_project_list=True", "remote_refresh_delay=60")
    devpi("index", "-c", "alice/dev", "bases=alice/up")
    devpi("index", "-c", "alice/open", "bases=alice/up")
    devpi("index", "alice/open", "project_inheritance_rules=allow all" if mode == 7
          else "mirror_whitelist=*")
    devpi("use", "alice/dev")
    devpi("upload", str(wheel))
    devpi("index", "alice/dev", "acl_upload+=root")
    shown = [devpi("index", "alice/up"), devpi("index", "alice/dev"), devpi("index", "-l"),
             devpi("list"), devpi("list", "compat-pkg")]
    return [text.replace(url, "URL") for text in shown]


REQUESTS = [
    ("GET", "/+api", None), ("GET", "/alice/dev/+api", None), ("GET", "/alice", None),
    ("GET", "/alice/dev", None), ("GET", "/alice/up?no_projects=", None),
    ("GET", "/alice/open?no_projects=", None), ("GET", "/", None),
    ("GET", "/alice/dev/compat-pkg", None), ("GET", "/alice/dev/compat-pkg/1.0", None),
    ("PUT", "/alice/bad", {"type": "stage", "frobnicate": 1}),
    ("PUT", "/alice/bad", {"type": "elsewhere"}),
    ("PATCH", "/alice/dev", ["volatile=perhaps"]),
]
# devpi 6 knows neither: it refuses the key and ignores ?v= (ours accepts both spellings
# in either mode, checked below)
RULES = ("PATCH", "/alice/dev", ["project_inheritance_rules=allow all"])
ONLY_7 = [("GET", "/alice/dev/compat-pkg?v=2", None), RULES,
          ("PATCH", "/alice/dev/compat-pkg", ["inheritance_rules=allow all"]),
          ("GET", "/alice/dev/compat-pkg?v=2", None)]


def _normalised(value: Any, url: str) -> Any:
    """``value`` with what must differ between two servers replaced by placeholders."""
    if isinstance(value, dict):
        return {k: "<varies>" if k in ("created", "when", "uuid", "serverdir", "port",
                                        "server-code", "versioninfo", "metrics", "serial",
                                        "event-serial", "last-commit-timestamp",
                                        "event-serial-timestamp", "event-serial-in-sync-at")
                else _normalised(v, url) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v, url) for v in value]
    if isinstance(value, str):
        value = value.replace(url, "URL")
        return re.sub(r"(\+f|\+e)/[0-9a-f]{3}/[0-9a-f]{13}/", r"\1/HASH/", value)
    return value


def _answers(url: str, auth: tuple[str, str], requests: list[tuple[str, str, Any]]) -> list[Any]:
    found = []
    for method, path, body in requests:
        status, reply, _ = call(url + path, method, body, auth=auth)
        if status >= 400:  # messages are ours to word: the status must match
            reply = {"status": status}
        found.append((method, path, status, _normalised(reply, url)))
    return found


def _differences(theirs: Any, ours: Any, where: str = "") -> list[str]:
    """Where two JSON values differ, key for key."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        found = [f"{where}: key {k!r} only in devpi's" for k in theirs.keys() - ours.keys()]
        found += [f"{where}: key {k!r} only in ours" for k in ours.keys() - theirs.keys()]
        for key in theirs.keys() & ours.keys():
            found += _differences(theirs[key], ours[key], f"{where}/{key}")
        return found
    if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) == len(ours):
        return [d for i, (a, b) in enumerate(zip(theirs, ours)) for d in
                _differences(a, b, f"{where}[{i}]")]
    return [] if theirs == ours else [f"{where}: devpi {theirs!r} ours {ours!r}"]


def test_same_workflow_same_json_as_the_real_devpi_server(
        pair: tuple[int, str, str], tmp_path: Path) -> None:
    mode, theirs, ours = pair
    wheel = make_wheel(tmp_path, "compat-pkg", "1.0")
    printed = [_workflow(mode, url, tmp_path / name, wheel)
               for url, name in ((theirs, "client-theirs"), (ours, "client-ours"))]
    assert printed[0] == printed[1]  # devpi-client shows the same either way
    assert ("type=remote" if mode == 7 else "type=mirror") in printed[1][0]
    assert "compat-pkg" in printed[1][3]
    requests = REQUESTS + (ONLY_7 if mode == 7 else [])
    expected = _answers(theirs, login(theirs, "alice", "secret"), requests)
    found = _answers(ours, login(ours, "alice", "secret"), requests)
    if mode == 6:
        assert _answers(theirs, login(theirs, "alice", "secret"), [RULES])[0][2] == 400
        assert _answers(ours, login(ours, "alice", "secret"), [RULES])[0][2] == 200
    problems = []
    for (method, path, status, want), (_, _, got_status, got) in zip(expected, found):
        if status != got_status:
            problems.append(f"{method} {path}: devpi {status}, ours {got_status}")
            continue
        if path.endswith("?v=2"):  # devpi 7's walk lists postponed and repeated visits
            want["result"][INFO_KEY].pop("traversal_infos")
            got["result"][INFO_KEY].pop("traversal_infos")
        problems += [f"{method} {path}{d}" for d in _differences(want, got)]
    assert not problems, "\n".join(problems)


def test_status_keys_and_role_as_the_real_devpi_server(pair: tuple[int, str, str]) -> None:
    mode, theirs, ours = pair
    want = call(theirs + "/+status")[1]["result"]
    got = call(ours + "/+status")[1]["result"]
    assert want.keys() <= got.keys(), want.keys() - got.keys()
    assert got.keys() - want.keys() <= OUR_STATUS_KEYS, got.keys() - want.keys()
    assert got["role"] == want["role"] == ("MASTER" if mode == 6 else "PRIMARY")
    assert got["versioninfo"]["devpi-server"] == want["versioninfo"]["devpi-server"]
