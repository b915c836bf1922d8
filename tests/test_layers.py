"""The import contracts of .importlinter (DESIGN.md's layers) hold."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import bin_path

ROOT = Path(__file__).resolve().parent.parent


def test_imports_follow_the_layers() -> None:
    done = subprocess.run([bin_path("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
