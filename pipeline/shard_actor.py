"""What each of the job's actors holds: one model (and any other streams' tokenizers), its provenance and
a `ShardTokenizer` (no Ray here).

The engine's Ray backend builds `ShardWork(context, cfg, out_dir, setup)` inside a placed actor
(named `TokenizerActor` in Ray) and calls `run(shard, next_shards, attempt, after)` from up to
`shards_in_flight_per_actor` threads at once: it commits `shard`, after encoding the shards `after`
(calls in flight before it), and starts decoding `next_shards`. After a fatal CUDA error the actor
process ends (the driver replaces it and retries its shards), first letting a commit in flight end
(it needs no CUDA).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .config import JobConfig
from .cuda_errors import is_fatal_cuda_error
from .engine.actor_env import check_storage, resolve_runtime
from .engine.placement import ActorRequest, decoder_processes
from .engine.ray_backend import PlacedContext
from .engine.scheduler import ActorInfo
from .records import Shard, ShardRecord

COMMIT_WAIT_S = 60.0  # how long an actor ending after a fatal CUDA error lets its commit in flight run


@dataclass(frozen=True)
class ActorSetup:
    """What the driver decided for every actor of a run."""

    request: ActorRequest
    run_id: str  # the output directory's run marker
    input_root: str | None


class ShardWork:
    """One model per actor; `run` tokenizes and commits one shard."""

    actor_name = "TokenizerActor"  # as Ray shows the job's actor processes

    def __init__(self, context: PlacedContext, cfg: JobConfig, out_dir: str, setup: ActorSetup):
        # torch and the codec load in the actor only: the driver never needs them
        from codec import load_first
        from codec.runtime import dtype_for

        from .budget_calibration import in_force, size_budget
        from .provenance import build_provenance, check_sha256
        from .shard_worker import ShardTokenizer
        from .streams import load_streams

        check_storage(out_dir, setup.run_id, setup.input_root, cfg.source.storage_options, context.node_id,
                      cfg.output.storage_options)
        runtime = resolve_runtime(setup.request.device, context.gpu_ids, setup.request.torch_threads)
        dtype = dtype_for(cfg.precision)
        sources = [cfg.model] + ([cfg.model_fallback] if cfg.model_fallback else [])
        self.model, skipped = load_first(sources, device=runtime.device, dtype=dtype)
        self.model.set_batch_plan(cfg.batch_plan)
        self.streams = load_streams(cfg, runtime.device)  # other streams keep the configured (or fallback) budget
        self.batch_budget = size_budget(self.model, cfg)  # `auto`: sized on this card, with every model loaded
        self.provenance = build_provenance(self.model, cfg, runtime.device, skipped, runtime, self.streams)
        check_sha256(self.provenance, cfg)
        decoders = decoder_processes(cfg, setup.request, context.node(setup.request.num_cpus))
        self.node_id = context.node_id
        self.worker = ShardTokenizer(self.model, in_force(cfg, self.batch_budget), out_dir, self.provenance,
                                     decoders=decoders, streams=self.streams)
        self.worker.node_id = context.node_id

    def describe(self) -> ActorInfo:
        return ActorInfo(self.provenance, self.node_id, os.getpid(), self.worker.decoder_processes,
                         self.batch_budget)

    def run(self, shard: Shard, next_shards: list[Shard], attempt: int, after: list[Shard]) -> ShardRecord:
        try:  # forgets shards the driver gave to other actors since, and decodes the next ones
            return self.worker.run(shard, attempt, ahead=next_shards, after=after)
        except Exception as exc:
            if is_fatal_cuda_error(exc):  # this process's CUDA context is unusable: end it, the driver
                print(f"[audiotok] fatal CUDA error on shard {shard.shard_id}, ending this actor: {exc}",
                      file=sys.stderr, flush=True)  # replaces the actor and retries its shards
                self.worker.wait_for_commit(COMMIT_WAIT_S)  # a commit in flight needs no CUDA: let it end
                os._exit(70)
            raise
