"""The tokenization job, wired: list shards, skip committed ones, run the rest on actors, summarize.

    sources.list_shards ─► writer.cleanup_uncommitted / committed_shards ─► to do
      ─► engine.placement (how many actors, what each asks) ─► engine.scheduler on engine.ray_backend
      ─► each actor: shard_worker.ShardTokenizer (read, decode, encode, commit one shard)
      ─► _summary.json, and verify.verify_after_job when `verify.sample_count` > 0
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from . import sources, verify, writer
from .config import JobConfig, to_dict
from .engine import ray_backend
from .engine.placement import plan_actors
from .engine.progress import summarize
from .engine.scheduler import ActorInfo, Scheduler, SchedulerSettings


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_job(cfg: JobConfig, input_spec: str, out_dir: str, log=_stderr) -> dict[str, Any]:
    """Tokenize every shard of `input_spec` into `out_dir`; returns the run summary (also written)."""
    started = time.time()
    shards = sources.list_shards(input_spec, cfg.source, log)
    writer.cleanup_uncommitted(out_dir)
    done = writer.committed_shards(out_dir)
    todo = [s for s in shards if s.shard_id not in done]
    log(f"[audiotok] {len(shards)} shards, {len(done)} already committed, {len(todo)} to do")

    placement = plan_actors(cfg, ray_backend.cluster_gpus(), len(todo))
    backend = ray_backend.RayBackend(cfg, out_dir, placement.request)

    def started_line(info: ActorInfo) -> None:
        prov = info.provenance
        writer.write_provenance(out_dir, replace(prov, job_config=to_dict(cfg), input=input_spec).to_json())
        for line in prov.model_sources_skipped:
            log(f"[audiotok] model source skipped: {line.splitlines()[0][:300]}")
        log(f"[audiotok] model: {prov.model_source} (sha256 {prov.checkpoint_sha256[:16]}...); "
            f"{placement.count} actor(s) on {prov.device}, {info.decoder_processes} decoder processes "
            f"each, {cfg.prefetch_shards} shard(s) decoded ahead")
        if prov.random_weights:
            log("[audiotok] WARNING: model has RANDOM weights (random:*); tokens are for testing only")
        elif str(prov.model_source).startswith("tiny:"):
            log("[audiotok] NOTE: this is audiotok's small demo codec (models/tiny-24khz/MODEL_CARD.md), "
                "not facebook/encodec_24khz; its quality is low. Pass --model for real tokens.")

    scheduler = Scheduler(backend, todo, SchedulerSettings.from_config(cfg), log, on_first_start=started_line)
    try:
        records = scheduler.run(placement.count, done, len(shards))
    finally:
        scheduler.stop()

    first = scheduler.first_info
    summary = summarize(records, shards, time.time() - started, first.provenance if first else None)
    summary["actors"] = placement.count  # actor slots used (0 when every shard was already committed)
    checked = verify.verify_after_job(cfg, out_dir, log)  # None unless verify.sample_count > 0
    summary["verify"] = checked and {k: checked[k] for k in ("passed", "failures", "rows_sampled", "report")}
    writer.write_summary(out_dir, summary)
    return summary
