"""How many actors a job runs and what each asks of Ray (plain code, no Ray).

The inputs are the job config and a snapshot of the cluster's resources; the Ray adapter takes the
snapshot and applies the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import JobConfig
from ..decode_pool import default_processes


@dataclass(frozen=True)
class ActorRequest:
    """What one actor asks of its node (Ray's logical resources)."""

    num_cpus: float
    num_gpus: float = 0.0

    def options(self) -> dict[str, float]:
        return {"num_gpus": self.num_gpus, "num_cpus": self.num_cpus} if self.num_gpus else {"num_cpus": self.num_cpus}


@dataclass(frozen=True)
class Placement:
    count: int
    request: ActorRequest


def plan_actors(cfg: JobConfig, cluster_gpus: float, shards: int) -> Placement:
    """One actor per `gpus_per_actor` GPUs (or `num_actors`), one on a CPU-only cluster; never more
    than there are shards to do (0 when none is left)."""
    gpus = cluster_gpus if cfg.device != "cpu" else 0
    if gpus:
        request = ActorRequest(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor)
        count = cfg.num_actors or max(1, int(gpus / cfg.gpus_per_actor))
    else:
        request = ActorRequest(num_cpus=cfg.cpus_per_actor)
        count = cfg.num_actors or 1
    return Placement(max(1, min(count, shards)) if shards else 0, request)


def decoder_processes(cfg: JobConfig, device: str, node_cpus: float, node_gpus: float) -> int:
    """`decode_threads`, or for 0 this actor's share of its node's cores (Ray's logical CPUs), less
    what the actor itself uses (1 core on a GPU, its torch threads on the CPU)."""
    if cfg.decode_threads:
        return cfg.decode_threads
    cpus = int(node_cpus) or None
    if device == "cuda":  # actors sharing this node, and the cores each keeps for itself
        sharing, reserve = int((node_gpus or 1) / max(cfg.gpus_per_actor, 1e-9)), 1
        sharing = min(sharing, cfg.num_actors or sharing)
    else:  # CPU actors: one unless num_actors says otherwise; each keeps its torch threads
        sharing = min(cfg.num_actors or 1, int((cpus or 1) / max(cfg.cpus_per_actor, 1)))
        reserve = max(1, int(cfg.cpus_per_actor))
    return default_processes(cpus, max(1, sharing), reserve)
