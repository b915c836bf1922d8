"""Export and import time for 10,000 files, on sqlite and PostgreSQL.

Run by hand, never in CI, with the python of the venv devpi-twisted is installed in
(non-editable): ``VENV/bin/python bench/bench_dump.py [--files 10000] [--setups sqlite,postgres]``.

A synthetic devpi-server 6 dump (tests/dump/synth.py: ~200-byte files, 2 per version,
5 versions per project) is imported into a fresh server directory (and, for
PostgreSQL, a fresh database on a throwaway cluster from tests/pg.py), exported again,
and the export imported once more with ``--hard-links`` (sqlite only). Each step is one
``devpi-twisted`` process; the times include its start-up and the hash checks. Import
CPU: utime+stime of the importing process (and of the throwaway cluster's server and
backends) per file.

Figures of 2026-11-25 (2 cores shared with other test runs, load average 4-6, ext4):
sqlite 10,000 files: import 36.9s (271 files/s), export 17.2s (580 files/s),
import --hard-links 22.1s; PostgreSQL: import 49.2s (203 files/s), export 37.4s.

Figures of 2026-12-07 (load average 4-6, two runs each, in turns), before (main at
86c1ee5) -> after (batches of ~1,000 files, one os.sync and one transaction each, the
bodies of a group of versions stored in one trip to the thread pool):
sqlite 10,000 files: import 839 / 747 -> 1,062 / 1,028 files/s; PostgreSQL: import
431 / 373 -> 397 / 498 files/s (its blob store still writes file by file).

Figures of 2026-12-07 evening (load average 3.7-4.7, ``--setups postgres``, three runs
each in turns), main at a2d9e4c -> pipelined statements and ``PgBlobStore.put_files``
(transactions of up to 4 MiB of bodies, small bodies sent with the COMMIT): import
559 / 664 / 520 -> 1,434 / 1,687 / 1,612 files/s; CPU 1.23 / 1.16 / 1.29 -> 0.54 / 0.42 /
0.44 ms per file, PostgreSQL 0.60 / 0.57 / 0.57 -> 0.16 / 0.16 / 0.17 ms.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
from bench_storage import tree_cpu  # noqa: E402
from tests.dump.synth import write_dump  # noqa: E402

BIN = Path(sys.executable).parent


CPU: list[tuple[float, float | None]] = []  # (process, cluster) CPU seconds of each timed step


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(*args: str, db_pid: int | None = None) -> float:
    """Seconds of one ``devpi-twisted`` command; its CPU (and the cluster's) go to CPU."""
    started, cpu0 = time.monotonic(), children_cpu()
    db0 = tree_cpu(db_pid) if db_pid else 0.0
    done = subprocess.run([str(BIN / "devpi-twisted"), *args], capture_output=True, text=True)
    seconds = time.monotonic() - started
    CPU.append((children_cpu() - cpu0, tree_cpu(db_pid) - db0 if db_pid else None))
    if done.returncode != 0:
        raise SystemExit(f"devpi-twisted {' '.join(args)} failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--setups", default="sqlite,postgres")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dump-") as tmp:
        base = Path(tmp)
        started = time.monotonic()
        write_dump(base / "dump", options.files)
        print(f"wrote a dump of {options.files} files in {time.monotonic() - started:.1f}s")
        cluster = None
        try:
            for setup in options.setups.split(","):
                storage: list[str] = []
                db_pid = None
                if setup == "postgres":
                    if cluster is None:
                        from tests.pg import PgCluster

                        cluster = PgCluster().start()
                    storage = ["--storage", cluster.storage_option(cluster.create_database())]
                    db_pid = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
                serverdir = base / f"{setup}-state"
                imported = timed("import", "--serverdir", str(serverdir), *storage, str(base / "dump"),
                                 db_pid=db_pid)
                cpu, db = CPU[-1]
                exported = timed("export", "--serverdir", str(serverdir), *storage,
                                 str(base / f"{setup}-export"))
                line = (f"{setup:9} {options.files} files: import {imported:6.1f}s "
                        f"({options.files / imported:6.0f} files/s), export {exported:6.1f}s "
                        f"({options.files / exported:6.0f} files/s); import CPU {cpu * 1e3 / options.files:.3f} "
                        f"ms/file" + (f" + PostgreSQL {db * 1e3 / options.files:.3f}" if db is not None else ""))
                if setup == "sqlite":
                    linked = timed("import", "--serverdir", str(base / "linked"), "--hard-links",
                                   str(base / f"{setup}-export"))
                    line += f", import --hard-links {linked:6.1f}s"
                print(line, flush=True)
        finally:
            if cluster is not None:
                cluster.stop()


if __name__ == "__main__":
    main()
