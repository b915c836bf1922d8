"""memory.tune: with glibc's mmap threshold fixed, big blocks freed after a bigger one
was are given back at once (untuned, glibc raises the threshold past them and keeps
them in its heap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devpi_twisted import memory

KEPT = """
import sys
from devpi_twisted import memory
if sys.argv[1] == "tuned":
    assert memory.tune()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
big = bytearray(30 << 20)  # freed: glibc raises its mmap threshold to 30 MiB (untuned)
del big
before = rss()
blocks = [bytearray(4 << 20) for _ in range(4)]
del blocks
print(rss() - before)
"""


@pytest.mark.skipif(memory._MALLOPT is None, reason="not glibc: tune is a no-op")
def test_big_blocks_freed_are_given_back_when_tuned() -> None:
    def kept(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", KEPT, mode], capture_output=True,
                              text=True, check=True, timeout=60)
        return int(done.stdout)

    assert kept("untuned") >= 12 << 20  # the check shows the difference
    assert kept("tuned") < 2 << 20
