"""How many actors a job runs and what each asks of Ray, from what the cluster's nodes have (no Ray).

The inputs are the job config and a snapshot of the nodes (`Node`); the Ray adapter takes the
snapshot and applies the result. The rules:

* GPUs are a requirement, not a preference: `device: cuda` asks `gpus_per_actor` GPUs per actor,
  and so does `device: auto` when any node has GPUs; `auto` on a cluster without GPUs runs on CPUs.
* `cpus_per_actor` is capped at the largest node's CPUs (an actor asking more could never start).
* A node holds min(GPUs / gpus_per_actor, CPUs / cpus_per_actor) GPU actors, or CPUs /
  cpus_per_actor CPU actors; the job runs as many as the nodes hold, at most `num_actors` when set
  and at most one per shard. Nodes that join later add capacity (`capacity`).
* An actor's torch thread count is its CPUs (at least 1): one value per run, in the provenance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import JobConfig
from ..decode_pool import default_processes


@dataclass(frozen=True)
class Node:
    """One alive node of the cluster as Ray counts it (logical resources)."""

    node_id: str
    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class ActorRequest:
    """What one actor asks of its node (Ray's logical resources)."""

    num_cpus: float
    num_gpus: float = 0.0

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus else "cpu"

    @property
    def torch_threads(self) -> int:
        return max(1, int(self.num_cpus))

    def options(self) -> dict[str, float]:
        return {"num_gpus": self.num_gpus, "num_cpus": self.num_cpus} if self.num_gpus else {"num_cpus": self.num_cpus}

    def describe(self) -> str:
        gpus = f"{self.num_gpus:g} GPU(s) and " if self.num_gpus else ""
        return f"{gpus}{self.num_cpus:g} CPU(s) per actor"


@dataclass(frozen=True)
class Placement:
    request: ActorRequest
    count: int  # actors to start now (0: none fits the nodes there are)
    notes: tuple[str, ...] = ()  # what was changed or cannot be used, for the log


def per_node(request: ActorRequest, node: Node) -> int:
    """Actors of `request` that `node` holds."""
    by_cpu = math.floor(node.cpus / request.num_cpus + 1e-9) if request.num_cpus else 10**6
    if not request.num_gpus:
        return by_cpu
    return min(math.floor(node.gpus / request.num_gpus + 1e-9), by_cpu)


def capacity(request: ActorRequest, nodes: list[Node]) -> int:
    return sum(per_node(request, n) for n in nodes)


def wanted(cfg: JobConfig, request: ActorRequest, nodes: list[Node], shards: int) -> int:
    """Actors to run: what the nodes hold, at most num_actors (when set) and one per shard."""
    fits = capacity(request, nodes)
    return max(0, min(fits, cfg.num_actors or fits, shards))


def plan_actors(cfg: JobConfig, nodes: list[Node], shards: int) -> Placement:
    notes: list[str] = []
    use_gpus = cfg.device == "cuda" or (cfg.device == "auto" and any(n.gpus > 0 for n in nodes))
    if cfg.device == "auto" and not use_gpus:
        notes.append("no node has a GPU: running on CPUs (device: auto)")
    cpus = float(cfg.cpus_per_actor)
    biggest = max((n.cpus for n in nodes), default=0.0)
    if biggest and cpus > biggest:
        notes.append(f"cpus_per_actor {cpus:g} capped at {biggest:g}, the most CPUs a node has")
        cpus = biggest
    request = ActorRequest(num_cpus=cpus, num_gpus=cfg.gpus_per_actor if use_gpus else 0.0)
    count = wanted(cfg, request, nodes, shards)
    fits = capacity(request, nodes)
    if cfg.num_actors and fits < min(cfg.num_actors, shards):
        notes.append(f"num_actors {cfg.num_actors}: the nodes hold {fits} now; more start if nodes join")
    if use_gpus:
        idle = [n for n in nodes if n.gpus and per_node(request, n) * request.num_gpus < n.gpus - 1e-9]
        for n in idle:
            notes.append(f"node {n.node_id[:12]}: {per_node(request, n)} actor(s) for {n.gpus:g} GPU(s) "
                         f"({n.cpus:g} CPUs / {cpus:g} per actor, {request.num_gpus:g} GPU(s) per actor)")
    return Placement(request, count, tuple(notes))


def unplaceable(request: ActorRequest, nodes: list[Node]) -> str:
    """Why no actor of `request` fits, naming what each node has."""
    have = "; ".join(f"{n.node_id[:12]}: {n.cpus:g} CPUs, {n.gpus:g} GPUs" for n in nodes) or "no alive node"
    return f"each actor asks {request.describe()}; the nodes have: {have}"


def decoder_processes(cfg: JobConfig, request: ActorRequest, node: Node) -> int:
    """`decode_threads`, or for 0 this actor's share of its node's cores (Ray's logical CPUs), less
    what the actor itself uses (1 core on a GPU, its torch threads on the CPU)."""
    if cfg.decode_threads:
        return cfg.decode_threads
    sharing = max(1, min(per_node(request, node), cfg.num_actors or per_node(request, node)))
    reserve = 1 if request.num_gpus else request.torch_threads
    return default_processes(int(node.cpus) or None, sharing, reserve)
