"""Webhooks in our dump format: read and checked like the API's input, imported with
the state, exported again (dump/hooks.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted.dump.format import DumpError, read_dump
from tests.dump.state import run_cli
from tests.dump.synth import write_dump

HOOKS = [{"index": "alice/dev", "url": "https://h.example/in", "secret": "0123456789",
          "events": ["yank", "upload"], "creator": "alice"},
         {"index": None, "url": "http://h.example/all", "secret": "abcdefghij",
          "events": ["index"], "creator": "root"}]


def _with_hooks(tmp_path: Path, hooks: Any) -> Path:
    directory = tmp_path / "dump"
    write_dump(directory, 2)
    path = directory / "dataindex.json"
    data = json.loads(path.read_text())
    data["devpi_twisted_hooks"] = hooks
    path.write_text(json.dumps(data))
    return directory


def test_hooks_are_read_in_canonical_form(tmp_path: Path) -> None:
    dump = read_dump(_with_hooks(tmp_path, HOOKS))
    assert dump.hooks == (
        ("alice/dev", "https://h.example/in", "0123456789", ("upload", "yank"), "alice"),
        ("", "http://h.example/all", "abcdefghij", ("index",), "root"))


def test_bad_hooks_are_problems(tmp_path: Path) -> None:
    bad = [{**HOOKS[0], "url": "ftp://x/"}, {**HOOKS[0], "index": "bob/none"},
           {**HOOKS[0], "events": ["boom"]}, 5]
    with pytest.raises(DumpError) as caught:
        read_dump(_with_hooks(tmp_path, bad))
    text = str(caught.value)
    assert "'url' must be an http or https URL" in text and "'bob/none' is not imported" in text
    assert "unknown event 'boom'" in text and "[3] is not a JSON object" in text


def test_hooks_are_imported_and_exported_again(tmp_path: Path) -> None:
    dump = _with_hooks(tmp_path, HOOKS)
    serverdir = tmp_path / "state"
    done = run_cli("import", "--serverdir", str(serverdir), "--no-root-pypi", str(dump))
    assert done.returncode == 0, done.stderr
    done = run_cli("export", "--serverdir", str(serverdir), str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    exported = json.loads((tmp_path / "again" / "dataindex.json").read_text())
    assert exported["devpi_twisted_hooks"] == [
        {**HOOKS[0], "events": ["upload", "yank"]}, HOOKS[1]]
