"""The scale benchmark: the driver's and the trainer's bookkeeping on a synthetic N-shard output.

Each figure runs the library's own code in a fresh process (so that its peak RSS is its own) on the
output of `synthetic_output.build`, either on the local disk (wall and CPU seconds of this machine)
or on the fake object store (`object_store`: requests counted by kind, bytes, simulated seconds at
20 ms a request, 10 in flight). Figures, as the job and the trainer meet them:

    job_start     job_start.start (one read of the committed state: the manifest's snapshot and the records
                  newer than it; cleanup, the to-do list, the snapshot) and the provenance sidecar, on an
                  output that holds its snapshot (as every run leaves it)
    job_start_records  the same on an output without a snapshot (as written before #30): every record
                  read, then the snapshot written
    row_index     training.index.RowIndex.build, first time: reads every shard's row-index file, writes
                  the gathered files (`rows_gathered`, one per 1,000 shards)
    row_index_cached  the same once the gathered files are there (~1 read per 1,000 shards)
    row_index_parts   the same on an output without row-index files (as before #30: every part opened)
    fragments     reader.TokenDataset(...).fragments()  (per DataLoader worker, per epoch; the
                  dataset, made once per job, reads the committed parts: its time is in the note)
    listing       sources.paths.match of a brace pattern naming every input shard
    listing_each  the same, asking about each name (sources.paths.LIST_FROM out of reach): before #30
    scheduler     the end of a run (no shard left to hand out) at `actors` actors on bench.cluster

`scale_to` (e.g. 1,000,000): the fake store's figures scaled linearly to that many shards, as an
estimate (every figure here grows linearly in the shards, except the scheduler's).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field

from . import synthetic_output
from .synthetic_output import SyntheticOutput

FIGURES = ("job_start", "job_start_records", "row_index", "row_index_cached", "row_index_parts", "fragments",
           "listing", "listing_each", "scheduler")


@dataclass(frozen=True)
class Figure:
    """One measured operation. seconds: simulated on the fake store, else wall; cpu_s: this process's."""

    name: str
    storage: str  # "local" | "fake"
    shards: int
    seconds: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float  # the process's peak RSS growth over what it held before the operation
    requests: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    note: str = ""

    def line(self, scale_to: int = 0) -> str:
        reqs = ", ".join(f"{k} {n:,}" for k, n in sorted(self.requests.items()))
        text = (f"{self.name:<13} {self.storage:<5} {self.shards:>9,} shards  {self.seconds:9.2f} s"
                f"{' (simulated)' if self.storage == 'fake' else '            '}  wall {self.wall_s:7.2f} s  "
                f"cpu {self.cpu_s:7.2f} s  peak rss +{self.peak_rss_mb:7.1f} MB")
        if self.storage == "fake":
            text += f"  requests: {reqs or 'none'}; read {self.bytes_read / 1e6:,.1f} MB"
            if scale_to and self.name != "scheduler":
                k = scale_to / self.shards
                text += (f"\n{'':<20}at {scale_to:,} shards (x{k:g}): ~{self.seconds * k / 60:,.1f} min, "
                         f"~{sum(self.requests.values()) * k:,.0f} requests, ~{self.bytes_read * k / 1e9:,.1f} GB read")
        return text + (f"  [{self.note}]" if self.note else "")


def _rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM, the peak of its own memory since it started. (ru_maxrss is
    not: across the exec of a spawned process Linux keeps the peak of the parent it was forked from.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _operation(name: str, out: SyntheticOutput, fake: bool, actors: int):
    """The callable measured for figure `name` (imports done beforehand, outside the measure)."""
    from .. import reader, rows_gathered, writer
    from ..config import SourceConfig
    from ..sources import paths
    from .object_store import FakeObjectStore

    where = out.url if fake else out.local_dir
    clock = (lambda: FakeObjectStore.stats().seconds) if fake else time.perf_counter
    if name in ("job_start", "job_start_records"):
        from .. import job_start
        from ..records import Shard

        shards = [Shard(s, f"s3://corpus/{s}.tar", "webdataset") for s in out.shard_ids()]

        def start():
            begun = job_start.start(where, shards, log=lambda line: None, clock=clock)
            mark = clock()
            writer.write_provenance_file(where, begun.check_provenance(synthetic_output.provenance(out.n_q)))
            steps = {**begun.steps, "provenance": clock() - mark}
            return (f"{len(begun.done):,} committed, {len(begun.todo):,} to do; {begun.describe()}; "
                    f"snapshot {'written' if begun.snapshot else 'current'}; "
                    + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in steps.items()))
        return start
    if name.startswith("row_index"):
        if name in ("row_index", "row_index_parts"):  # no gathered files (an earlier figure wrote them)
            _remove_gathered(out.local_dir)
        elif name == "row_index_cached":
            rows_gathered.gather(where)
        return lambda: _row_index(where, parts_only=name == "row_index_parts", clock=clock)
    if name == "fragments":
        made = clock()
        dataset = reader.TokenDataset(where)
        made = clock() - made
        return lambda: (f"{len(dataset.fragments()):,} fragments (the dataset, made once per job, read the "
                        f"manifest in {made:.2f} s)")
    if name in ("listing", "listing_each"):
        def listing():
            list_from = paths.LIST_FROM
            paths.LIST_FROM = 10**12 if name == "listing_each" else list_from
            try:
                return f"{len(paths.match(out.inputs(fake), SourceConfig()).files):,} files"
            finally:
                paths.LIST_FROM = list_from
        return listing
    if name == "scheduler":
        return lambda: scheduler_end_of_run(actors)
    raise ValueError(f"unknown figure {name!r}; choose from {FIGURES}")


def _remove_gathered(local_dir: str) -> None:
    import shutil

    from ..rows_gathered import FOLDER

    shutil.rmtree(os.path.join(local_dir, FOLDER), ignore_errors=True)


def _row_index(where: str, parts_only: bool, clock) -> str:
    """RowIndex.build of `where`, the seconds it spends reading the committed set (the manifest) told
    apart; parts_only: as on an output written before the row-index files (each part opened)."""
    import pickle

    from .. import rows_gathered, writer
    from ..training.index import RowIndex

    spent = [0.0]
    committed_shards, has_rows = writer.committed_shards, rows_gathered._has_rows_file

    def timed(*args, **kwargs):
        started = clock()
        try:
            return committed_shards(*args, **kwargs)
        finally:
            spent[0] += clock() - started

    writer.committed_shards = timed
    if parts_only:
        rows_gathered._has_rows_file = lambda record: False
    try:
        index = RowIndex.build(where, write_gathered=not parts_only)
    finally:
        writer.committed_shards, rows_gathered._has_rows_file = committed_shards, has_rows
    rows = max(1, len(index))
    names = sum(len(f) + 49 for f in index.files)
    return (f"{len(index):,} rows; the committed set (manifest) {spent[0]:.2f} s of it; arrays "
            f"{index.nbytes / rows:.1f} B/row + file names {names / 1e6:.1f} MB; pickled "
            f"{len(pickle.dumps(index)) / 1e6:.1f} MB")


def scheduler_end_of_run(actors: int, shards_per_actor: int = 3) -> str:
    """Run `actors * shards_per_actor` shards on the simulated cluster; the CPU seconds of the end of the run."""
    from ..engine.scheduler import Scheduler, SchedulerSettings
    from ..records import Shard
    from .cluster import SimulatedCluster

    n = actors * shards_per_actor
    backend = SimulatedCluster(jitter=0.5)
    scheduler = Scheduler(backend, [Shard(f"s{i}", f"s3://corpus/s{i}.tar", "webdataset") for i in range(n)],
                          SchedulerSettings(progress_interval_s=5.0, shards_in_flight_per_actor=2), lambda m: None)
    backend.watch = scheduler
    started = time.process_time()
    scheduler.run(actors, {}, n)
    tail = time.process_time() - backend.tail_started_cpu
    return (f"{actors:,} actors, {n:,} shards: whole run {time.process_time() - started:.2f} s CPU, "
            f"end of run {tail:.2f} s CPU, {backend.events:,} events")


def _prepare(name: str, out: SyntheticOutput, fake: bool) -> None:
    """What a figure needs in place before it is measured (run in a process of its own when isolated, so
    that the figure's peak RSS is its own), through the storage measured: its listing stamps are the
    snapshot's."""
    from .. import manifest_snapshot
    from .object_store import FakeObjectStore

    if name == "job_start":  # the steady state: the output holds the snapshot its last run wrote
        if fake:
            FakeObjectStore.use(out.root)
        manifest_snapshot.write(manifest_snapshot.load(out.url if fake else out.local_dir))
    elif name == "job_start_records":  # an output as written before snapshots: records only
        shutil.rmtree(os.path.join(out.local_dir, *manifest_snapshot.SNAPSHOTS.split("/")), ignore_errors=True)


def _measure(name: str, out: SyntheticOutput, fake: bool, actors: int, queue) -> None:
    from .object_store import FakeObjectStore

    if fake:
        FakeObjectStore.use(out.root)
    operation = _operation(name, out, fake, actors)
    before = FakeObjectStore.stats() if fake else None
    rss, cpu, wall = _rss_mb(), time.process_time(), time.perf_counter()
    note = operation()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    used = FakeObjectStore.stats().minus(before) if fake else None
    queue.put(Figure(name, "fake" if fake else "local", out.shards, used.seconds if fake else wall, wall, cpu,
                     _rss_mb() - rss, used.requests if fake else {}, used.bytes_read if fake else 0, note))


def measure(name: str, out: SyntheticOutput, fake: bool, actors: int = 2048, isolated: bool = True) -> Figure:
    """Figure `name` measured in a fresh process (isolated=False: in this one, its peak RSS then only
    what the operation added to this process's peak)."""
    if not isolated:
        _prepare(name, out, fake)
        results: list[Figure] = []

        class Into:
            put = results.append

        _measure(name, out, fake, actors, Into)
        return results[0]
    ctx = multiprocessing.get_context("spawn")
    if name in ("job_start", "job_start_records"):
        setup = ctx.Process(target=_prepare, args=(name, out, fake))
        setup.start()
        setup.join()
        if setup.exitcode:
            raise RuntimeError(f"the set-up of figure {name} failed in its process (exit code {setup.exitcode})")
    queue = ctx.Queue()
    process = ctx.Process(target=_measure, args=(name, out, fake, actors, queue))
    process.start()
    try:
        figure = queue.get(timeout=24 * 3600)
    finally:
        process.join()
    if process.exitcode:
        raise RuntimeError(f"figure {name} failed in its process (exit code {process.exitcode})")
    return figure


def run(root: str, shards: int, figures: tuple[str, ...] = FIGURES, storages: tuple[str, ...] = ("local", "fake"),
        actors: int = 2048, log=print, isolated: bool = True, **shape) -> list[Figure]:
    """Build (or reuse) the synthetic output under `root` and measure each figure on each storage."""
    unknown = sorted(set(figures) - set(FIGURES)) + sorted(set(storages) - {"local", "fake"})
    if unknown:
        raise ValueError(f"unknown figure(s) or storage(s) {unknown}; figures: {FIGURES}, storages: local, fake")
    started = time.perf_counter()
    out = synthetic_output.build(root, shards, **shape)
    log(f"[bench_scale] synthetic output of {shards:,} shards under {out.root} ({time.perf_counter() - started:.1f} s)")
    results = []
    for name in figures:
        for storage in storages if name != "scheduler" else ("local",):
            results.append(measure(name, out, storage == "fake", actors, isolated))
            log(results[-1].line())
    return results


def as_json(figures: list[Figure]) -> list[dict]:
    return [asdict(f) for f in figures]
