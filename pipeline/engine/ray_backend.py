"""The Ray adapter: the only pipeline module that imports `ray`.

`TokenizerActor` holds one model and a `ShardTokenizer`; `RayBackend` starts those actors and turns
Ray's outcomes into the scheduler's events (`engine.scheduler`). `VerifyActor` and
`check_with_ray` run verify's checks on actors. `connect_ray` joins a cluster or starts a local Ray.
Ray never restarts an actor or retries a task by itself here: the scheduler decides.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import ray
import ray.exceptions

from ..config import JobConfig
from ..records import Shard, ShardRecord
from .placement import ActorRequest, decoder_processes
from .scheduler import ActorInfo, ActorLost, ActorStarted, Event, ShardFailed, ShardFinished


def connect_ray(num_cpus: int | None = None) -> bool:
    """Join the cluster in RAY_ADDRESS (or a `ray job submit` job) or start a local Ray; True if started here."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
        return False
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    return True


def cluster_gpus() -> float:
    return ray.cluster_resources().get("GPU", 0)


def _node_resources() -> dict[str, float]:
    node_id = ray.get_runtime_context().get_node_id()
    return next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id), {})


@ray.remote
class TokenizerActor:
    """One model per actor; `run(shard, next_shards)` commits `shard` and starts decoding `next_shards`."""

    def __init__(self, cfg: JobConfig, out_dir: str):
        # torch and the codec load in the actor only: the driver never needs them
        import torch

        from codec import load_first

        from ..provenance import build_provenance, check_sha256
        from ..shard_worker import ShardTokenizer

        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(max(1, int(cfg.cpus_per_actor)))
        # fp32 means fp32: torch runs cuDNN convolutions in TF32 unless told not to (codes would drift)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
        sources = [cfg.model] + ([cfg.model_fallback] if cfg.model_fallback else [])
        self.model, skipped = load_first(sources, device=device, dtype=dtype)
        self.provenance = build_provenance(self.model, cfg, device, skipped)
        check_sha256(self.provenance, cfg)
        node = _node_resources()
        decoders = decoder_processes(cfg, device, node.get("CPU", 0), node.get("GPU", 0))
        self.worker = ShardTokenizer(self.model, cfg, out_dir, self.provenance, decoders=decoders)
        self.worker.node_id = ray.get_runtime_context().get_node_id()

    def describe(self) -> ActorInfo:
        return ActorInfo(self.provenance, ray.get_runtime_context().get_node_id(), os.getpid(),
                         self.worker.decoder_processes)

    def run(self, shard: Shard, next_shards: list[Shard], attempt: int) -> ShardRecord:
        self.worker.keep_only([shard, *next_shards])  # shards the driver gave to other actors since
        for upcoming in [shard, *next_shards]:  # the shard to run first, if it is not decoding yet
            self.worker.prefetch(upcoming)
        return self.worker.run(shard, attempt)


class RayBackend:
    """`engine.scheduler.Backend` on Ray core actors."""

    def __init__(self, cfg: JobConfig, out_dir: str, request: ActorRequest):
        self.cfg, self.out_dir = cfg, out_dir
        self.actor_cls = TokenizerActor.options(max_restarts=0, max_task_retries=0, **request.options())
        self.actors: dict[int, Any] = {}
        self.waiting: dict[Any, tuple[int, str | None]] = {}  # ref -> (actor id, shard id or None: start)
        self.ids = itertools.count()

    def start_actor(self) -> int:
        actor_id = next(self.ids)
        handle = self.actors[actor_id] = self.actor_cls.remote(self.cfg, self.out_dir)
        self.waiting[handle.describe.remote()] = (actor_id, None)
        return actor_id

    def run_shard(self, actor_id: int, shard: Shard, ahead: list[Shard], attempt: int) -> None:
        ref = self.actors[actor_id].run.remote(shard, ahead, attempt)
        self.waiting[ref] = (actor_id, shard.shard_id)

    def poll(self, timeout_s: float) -> list[Event]:
        if not self.waiting:
            return []
        ready, _ = ray.wait(list(self.waiting), num_returns=1, timeout=timeout_s)
        return [self._outcome(ref) for ref in ready]

    def _outcome(self, ref) -> Event:
        actor_id, shard_id = self.waiting.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            return ActorLost(actor_id, str(exc), init_failed=bool(getattr(exc, "actor_init_failed", False)))
        except ray.exceptions.RayTaskError as exc:
            return ShardFailed(actor_id, shard_id or "", str(exc))
        if shard_id is None:
            return ActorStarted(actor_id, value)
        return ShardFinished(actor_id, shard_id, value)

    def stop_actor(self, actor_id: int) -> None:
        handle = self.actors.pop(actor_id, None)
        if handle is not None:
            ray.kill(handle, no_restart=True)
        for ref in [r for r, (a, _) in self.waiting.items() if a == actor_id]:
            del self.waiting[ref]


# ----- verify on actors ---------------------------------------------------------------------------
@ray.remote
class VerifyActor:
    def __init__(self, settings):
        from ..verify.check import Checker  # torch and the codec load in the actor only

        self.checker = Checker(settings)

    def model_provenance(self) -> dict:
        return dict(self.checker.model.provenance)

    def check(self, rows: list[dict]) -> list[dict]:
        return self.checker.check(rows, keep_audio=False)


def check_with_ray(rows: list[dict], settings, num_actors: int = 0) -> tuple[list[dict], dict]:
    """Results of `Checker.check` for `rows` (any order) and the actors' model provenance.

    Each actor re-reads whole source shards, so rows are grouped by `source` and the groups are
    dealt to actors largest first. num_actors 0: one per GPU when settings.device is cuda, else one
    per 2 CPUs (at least 1), never more than there are sources. Starts a local Ray if none runs.
    """
    connect_ray()
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["source"], []).append(row)
    if not groups:
        return [], {}
    resources = ray.cluster_resources()
    if settings.device == "cuda":
        options, count = {"num_gpus": 1, "num_cpus": 1}, int(resources.get("GPU", 0)) or 1
    else:
        options, count = {"num_cpus": 1}, max(1, int(resources.get("CPU", 1)) // 2)
    count = max(1, min(num_actors or count, len(groups)))
    actors = [VerifyActor.options(max_restarts=1, **options).remote(settings) for _ in range(count)]
    provenance = ray.get(actors[0].model_provenance.remote())
    ordered = sorted(groups.values(), key=len, reverse=True)
    refs = [actors[i % count].check.remote(group) for i, group in enumerate(ordered)]
    results = [r for part in ray.get(refs) for r in part]
    for actor in actors:
        ray.kill(actor)
    return results, provenance
