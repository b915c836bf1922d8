"""How a replica applies a run of changelog entries: the one apply path of replication.

``apply_changes(storage, changes, imported)`` takes entries in serial order with no
gap (a reply of the primary's ``/+changelog/N-``, already decoded, or changes
translated from another primary's protocol) and commits them in transactions of at
most ``APPLY_BATCH`` entries, each entry under its own serial
(``Storage.import_changes``). A replica that is far behind thus pays one commit (one
fsync) for a batch instead of one per serial; one that keeps up gets one entry per
reply and commits it alone, as before.

Guarantees: a batch is one transaction, so a crash (kill -9) leaves the replica at the
last serial of a committed batch, never inside one; the next poll asks for the serial
after it, so nothing is missed and nothing is applied twice (entries already held are
skipped; a gap raises StaleRecord and writes nothing). ``imported(change)`` is called
for every entry of a batch once that batch is committed (the file queue uses it), in
serial order; ``committed()`` once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from devpi_twisted.storage.interface import Change, Storage

# entries per transaction: the commit's cost shared by up to this many serials, and the
# writers' lock held for the time of one batch at most (a few hundred ms on this machine)
APPLY_BATCH = 250


async def apply_changes(storage: Storage, changes: Sequence[Change],
                        imported: Callable[[Change], None] = lambda change: None,
                        committed: Callable[[], None] = lambda: None) -> int:
    """Commit ``changes`` in batches; returns how many were new here."""
    applied = 0
    for start in range(0, len(changes), APPLY_BATCH):
        batch = changes[start:start + APPLY_BATCH]
        applied += await storage.import_changes(batch)
        committed()
        for change in batch:
            imported(change)
    return applied
