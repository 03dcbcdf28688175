"""A job's start on its output directory: one read of the committed state, cleanup, the to-do list,
the manifest's snapshot, and the provenance check, without Ray (the job and the scale bench run it).

    manifest_snapshot.load(start=True)   the listings (manifest, parts, root), the sidecar, the newest
                                         snapshot and the records newer than it: read once
    writer.cleanup_uncommitted(state)    parts checked against that one listing
    to do                                the input's shards not committed (retry_unreadable: and
                                         those recorded as shard_unreadable)
    manifest_snapshot.write              after cleanup, of the shards this run will not redo
    check_provenance                     in memory, against the sidecar read at start: the job calls
                                         it when the first actor reports its model, and writes the
                                         sidecar on a thread, off the scheduler's event loop
    finish                               at the end of a run: the snapshot, and the gathered row-index
                                         files (`rows_gathered.gather`)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from . import manifest_snapshot, rows_gathered, writer
from .records import Shard, ShardRecord


@dataclass
class JobStart:
    """What a start found. done: the committed shards not to redo; todo: the shards to run;
    again: committed shards redone (shard_unreadable, with retry_unreadable); removed: what cleanup
    deleted; snapshot: the snapshot written (None: the one there was current, or none was needed);
    steps: seconds per step on the caller's clock."""

    out_dir: str
    state: manifest_snapshot.ManifestState
    done: dict[str, ShardRecord]
    todo: list[Shard]
    again: list[str]
    removed: list[str]
    snapshot: str | None
    steps: dict[str, float] = field(default_factory=dict)
    storage_options: dict | None = None  # the output filesystem's (config `output.storage_options`)

    @property
    def committed_before(self) -> bool:
        """Whether committed shards were there at start (redone ones included): the sidecar must match."""
        return bool(self.state.records)

    def check_provenance(self, provenance: dict) -> dict:
        """The sidecar to write for `provenance` (writer.check_provenance against the one read at start)."""
        return writer.check_provenance(self.out_dir, self.state.provenance, provenance, self.committed_before)

    def describe(self) -> str:
        return (f"{self.state.from_snapshot:,} record(s) from the manifest's snapshot, "
                f"{self.state.from_files:,} from their files")


def start(out_dir: str, shards: list[Shard], retry_unreadable: bool = False, log: Callable[[str], None] = print,
          clock: Callable[[], float] = time.perf_counter, storage_options: dict | None = None,
          state: manifest_snapshot.ManifestState | None = None) -> JobStart:
    """Read the committed state of `out_dir` once (or take `state`, read by preflight for this start),
    clean it up, list what to do and snapshot the rest."""
    marks = [clock()]
    if state is None or not state.started:
        state = manifest_snapshot.load(out_dir, start=True, storage_options=storage_options)
    marks.append(clock())
    removed = writer.cleanup_uncommitted(out_dir, state)
    marks.append(clock())
    done = state.records  # not copied (at 1M shards a copy is ~40 MB): `finish` reads the manifest again
    again = []
    if retry_unreadable:  # storage faults may have passed: those shards are tried again
        again = [k for k, r in done.items() if "shard_unreadable" in r.rejects_by_reason]
        skip = set(again)
        done = {k: r for k, r in done.items() if k not in skip} if again else done
        if again:
            log(f"[audiotok] {len(again)} shard(s) recorded as shard_unreadable are tried again")
    todo = [s for s in shards if s.shard_id not in done]
    marks.append(clock())
    snapshot = write_snapshot(state, log, done)  # shards redone are left out: their new records are read next time
    marks.append(clock())
    steps = dict(zip(("read", "cleanup", "to-do", "snapshot"), (b - a for a, b in zip(marks, marks[1:]))))
    return JobStart(out_dir, state, done, todo, again, removed, snapshot, steps, storage_options)


def write_snapshot(state: manifest_snapshot.ManifestState, log: Callable[[str], None], shard_ids=None) -> str | None:
    """Write the manifest's snapshot (a cache of the records: a storage error is logged, not fatal)."""
    try:
        return manifest_snapshot.write(state, shard_ids)
    except OSError as exc:
        log(f"[audiotok] could not write the manifest's snapshot ({type(exc).__name__}: {exc}); "
            "the next start reads the records instead")
        return None


def finish(begun: JobStart, committed: dict[str, ShardRecord], log: Callable[[str], None] = print) -> str | None:
    """After a run that committed shards: the manifest listed again and snapshotted, the run's records
    (`committed`, as the actors returned them) taken as they are; then the row-index files of the
    committed set gathered (`rows_gathered.gather`: the groups whose gathered file is missing), so that
    the trainer's first `RowIndex.build` reads ~1 file per 1,000 shards."""
    if not begun.todo:
        return None
    state = manifest_snapshot.refresh(begun.state, committed)
    snapshot = write_snapshot(state, log)
    gather_rows(begun.out_dir, state.records, log, begun.storage_options)
    return snapshot


def gather_rows(out_dir: str, records: dict[str, ShardRecord], log: Callable[[str], None],
                storage_options: dict | None = None) -> int:
    """The gathered row-index files of `records` written where missing (a cache for the trainer: a
    storage error is logged, not fatal; `RowIndex.build` gathers what is missing itself)."""
    try:
        return rows_gathered.gather(out_dir, records, storage_options)
    except OSError as exc:
        log(f"[audiotok] could not gather the row-index files ({type(exc).__name__}: {exc}); "
            "the trainer's first index build gathers them")
        return 0
