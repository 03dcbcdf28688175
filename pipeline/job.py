"""The tokenization job, wired: list shards, skip committed ones, run the rest on actors, summarize.

    sources.list_shards ─► job_start (one read of the committed state, cleanup, to do, the manifest's snapshot)
      ─► engine.placement (how many actors, what each asks) ─► engine.scheduler on engine.ray_backend
      ─► each actor: shard_actor.ShardWork ─► shard_worker.ShardTokenizer (read, decode, encode, commit one shard)
      ─► the manifest's snapshot, _summary.json, and verify_on_ray.verify_after_job when `verify.sample_count` > 0
"""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from . import job_start, sources, verify_on_ray, writer
from .config import JobConfig, to_dict
from .engine import ray_backend
from .engine.placement import Placement, plan_actors, unplaceable
from .engine.progress import RunSummary, summarize
from .engine.scheduler import ActorInfo, Scheduler, SchedulerSettings
from .manifest_snapshot import ManifestState
from .records import Shard
from .shard_actor import ActorSetup, ShardWork
from .sources.common import input_root, normalize


@dataclass(kw_only=True)
class VerifyBrief:
    """The verify sample at the end of a job, as the run summary records it (the report has the rest)."""

    passed: bool
    failures: list[str]
    rows_sampled: int
    report: str


@dataclass(kw_only=True)
class JobSummary(RunSummary):
    """The job's run summary (`_summary.json`, what `run_job` returns): the engine's, the actors used,
    and the verify sample's outcome (None when verify.sample_count is 0)."""

    actors: int  # actor slots used (0 when every shard was already committed)
    verify: VerifyBrief | None = None

    @classmethod
    def of(cls, run: RunSummary, actors: int, verify: VerifyBrief | None) -> JobSummary:
        return cls(**{f.name: getattr(run, f.name) for f in dataclasses.fields(RunSummary)},
                   actors=actors, verify=verify)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _place(cfg: JobConfig, shards: int, log) -> Placement:
    """The actors to start, from the nodes there are. When no node can hold one (GPU nodes not there
    yet), one is asked for all the same: that pending demand is what makes an autoscaler add a node,
    and the scheduler fails the job if no actor starts within placement_timeout_s."""
    nodes = ray_backend.alive_nodes()
    placement = plan_actors(cfg, nodes, shards)
    for note in placement.notes:
        log(f"[audiotok] {note}")
    if shards and not placement.count:
        log(f"[audiotok] no node can hold an actor now ({unplaceable(placement.request, nodes)}); asking for one, "
            f"so that an autoscaler can add a node; the job fails if none starts within placement_timeout_s "
            f"({cfg.placement_timeout_s:g} s)")
        placement = replace(placement, count=min(shards, cfg.num_actors or 1))
    return placement


def run_job(cfg: JobConfig, input_spec: str, out_dir: str, log=_stderr,
            shards: list[Shard] | None = None, state: ManifestState | None = None) -> JobSummary:
    """Tokenize every shard of `input_spec` (or the `shards` listed from it by preflight.preflight)
    into `out_dir`; returns the run summary (also written). state: the output's committed state as
    preflight read it (else read here)."""
    started = time.time()
    out_dir = normalize(str(out_dir))  # every node must find the same directory
    shards = sources.list_shards(input_spec, cfg.source, log) if shards is None else shards
    options = cfg.output.storage_options
    begun = job_start.start(out_dir, shards, cfg.retry_unreadable, log, storage_options=options,
                            state=state)  # one read of the committed state
    done, todo = begun.done, begun.todo
    log(f"[audiotok] {len(shards)} shards, {len(done)} already committed, {len(todo)} to do ({begun.describe()})")

    placement = _place(cfg, len(todo), log)
    run_id = uuid.uuid4().hex
    if todo:
        writer.write_run_marker(out_dir, run_id, options)
    setup = ActorSetup(placement.request, run_id, input_root(shards))
    backend = ray_backend.RayBackend(ShardWork, (cfg, out_dir, setup), placement.request,
                                     cfg.shards_in_flight_per_actor)

    # the sidecar is checked here, in memory, against the one read at start; written off the event loop
    sidecar = ThreadPoolExecutor(1, thread_name_prefix="audiotok-provenance")
    sidecar_written: list[Future] = []

    def started_line(info: ActorInfo) -> None:
        prov = info.provenance
        data = begun.check_provenance(replace(prov, job_config=to_dict(cfg), input=input_spec).to_json())
        sidecar_written.append(sidecar.submit(writer.write_provenance_file, out_dir, data, options))
        for line in prov.model_sources_skipped:  # whole, on one line (a message may hold newlines)
            log(f"[audiotok] model source skipped: {' '.join(line.split())[:1000]}")
        if prov.gpu_name:
            gpu = f" ({prov.gpu_name})"
        else:
            gpu = " (simulated GPU: encoding on the CPU)" if prov.simulated_gpu else ""
        log(f"[audiotok] model: {prov.model_source} (sha256 {prov.checkpoint_sha256[:16]}...); "
            f"{placement.count} actor(s) asking {placement.request.describe()}, on {prov.device}{gpu}, "
            f"{prov.torch_threads} torch thread(s), {info.decoder_processes} decoder processes each, "
            f"{cfg.prefetch_shards} shard(s) decoded ahead (at most {cfg.prefetch_bytes / 2**30:g} GiB), "
            f"{cfg.shards_in_flight_per_actor} in flight; torch {prov.torch_version}, CUDA {prov.cuda_version}, "
            f"cuDNN {prov.cudnn_version}")
        if info.batch_budget is not None:
            log(f"[audiotok] batch budget: {info.batch_budget.line()}")
        if prov.random_weights:
            log("[audiotok] WARNING: model has RANDOM weights (random:*); tokens are for testing only")
        elif str(prov.model_source).startswith("tiny:"):
            hint = (f" (the fallback: {cfg.model} could not be loaded). Pass --model <dir, checkpoint or hub id> "
                    "for real tokens" if prov.model_sources_skipped else "")
            log("[audiotok] NOTE: this is audiotok's small demo codec (models/tiny-24khz/MODEL_CARD.md), "
                f"not facebook/encodec_24khz; its quality is low{hint}.")

    scheduler = Scheduler(backend, todo, SchedulerSettings.from_config(cfg), log, on_first_start=started_line)
    try:
        records = scheduler.run(placement.count, done, len(shards))
    finally:
        scheduler.stop()
        sidecar.shutdown(wait=True)
    for written in sidecar_written:
        written.result()  # a failed write of the sidecar fails the job, as before
    job_start.finish(begun, records, log)

    first = scheduler.first_info
    run = summarize(records, shards, time.time() - started, first.provenance if first else None,
                    first.batch_budget if first else None)
    checked = verify_on_ray.verify_after_job(cfg, out_dir, log)  # None unless verify.sample_count > 0
    brief = None if checked is None else VerifyBrief(passed=checked.passed, failures=checked.failures,
                                                     rows_sampled=checked.rows_sampled, report=checked.report)
    summary = JobSummary.of(run, len(scheduler.slots), brief)
    writer.write_summary(out_dir, summary.to_json(), options)
    return summary
