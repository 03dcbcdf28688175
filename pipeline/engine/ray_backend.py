"""The Ray adapter: the only pipeline module that imports `ray`.

`TokenizerActor` holds one model and a `ShardTokenizer`; `RayBackend` starts those actors and turns
Ray's outcomes into the scheduler's events (`engine.scheduler`). The actors are threaded, with
`shards_in_flight_per_actor` calls running at once, so that a shard encodes while the one before it
commits (`ShardTokenizer.run` orders them); each call still returns its shard's committed record.
An actor ending after a fatal CUDA error first lets a commit in flight end (it needs no CUDA).
`VerifyActor` and `check_with_ray` run verify's checks on actors. `connect_ray` joins a named cluster or
starts a local Ray (`engine.ray_connect`). Ray never restarts an actor or retries a task by itself here:
the scheduler decides.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
import ray.exceptions
from ray.util.state import get_actor

from ..config import JobConfig
from ..cuda_errors import is_fatal_cuda_error
from ..errors import JobFailed, one_line
from ..records import Shard, ShardRecord
from .actor_env import check_storage, resolve_runtime
from .placement import ActorRequest, Node, capacity, decoder_processes, unplaceable
from .ray_connect import CONNECT_TIMEOUT_S, choose_target, probe
from .scheduler import ActorInfo, ActorLost, ActorStarted, Event, ShardFailed, ShardFinished

if TYPE_CHECKING:  # torch and the codec load in verify actors only
    from ..verify.check import CheckSettings
    from ..verify.result import CheckResult


def connect_ray(num_cpus: int | None = None, address: str | None = None, log_to_driver: bool = True,
                timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Join the cluster named by `address` or RAY_ADDRESS (engine.ray_connect), else start a private local
    Ray, never one that `ray start` left on the machine; True if started here. JobFailed, within about
    `timeout_s`, when a named cluster cannot be reached."""
    if ray.is_initialized():
        return False
    target = choose_target(address)
    if target.local:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
        return True
    probe(target, timeout_s)
    # the address answered: Ray's own wait for its GCS (60 s by default) is bounded too, with room for a busy head
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(max(30, int(timeout_s))))
    try:
        ray.init(address=target.address, log_to_driver=log_to_driver)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        raise JobFailed(f"cannot join the Ray cluster at {target.address} (from {target.origin}): "
                        f"{one_line(exc)}; fix the address, or unset it to run on a local Ray") from exc
    return False


def alive_nodes() -> list[Node]:
    """A snapshot of the cluster's alive nodes and their logical resources."""
    return [Node(n["NodeID"], n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
            for n in ray.nodes() if n.get("Alive")]


@dataclass(frozen=True)
class ActorSetup:
    """What the driver decided for every actor of a run."""

    request: ActorRequest
    run_id: str  # the output directory's run marker
    input_root: str | None


COMMIT_WAIT_S = 60.0  # how long an actor ending after a fatal CUDA error lets its commit in flight run


@ray.remote
class TokenizerActor:
    """One model per actor; `run(shard, next_shards, attempt, after)` commits `shard`, after encoding the
    shards `after` (calls in flight before it), and starts decoding `next_shards`. Up to
    `shards_in_flight_per_actor` calls run at once, on threads of the actor."""

    def __init__(self, cfg: JobConfig, out_dir: str, setup: ActorSetup):
        # torch and the codec load in the actor only: the driver never needs them
        from codec import load_first
        from codec.runtime import dtype_for

        from ..provenance import build_provenance, check_sha256
        from ..shard_worker import ShardTokenizer

        node_id = ray.get_runtime_context().get_node_id()
        check_storage(out_dir, setup.run_id, setup.input_root, cfg.source.storage_options, node_id)
        runtime = resolve_runtime(setup.request.device, ray.get_gpu_ids(), setup.request.torch_threads)
        dtype = dtype_for(cfg.precision)
        sources = [cfg.model] + ([cfg.model_fallback] if cfg.model_fallback else [])
        self.model, skipped = load_first(sources, device=runtime.device, dtype=dtype)
        self.model.set_batch_plan(cfg.batch_plan)
        self.provenance = build_provenance(self.model, cfg, runtime.device, skipped, runtime)
        check_sha256(self.provenance, cfg)
        node = next((n for n in alive_nodes() if n.node_id == node_id), Node(node_id, setup.request.num_cpus))
        decoders = decoder_processes(cfg, setup.request, node)
        self.worker = ShardTokenizer(self.model, cfg, out_dir, self.provenance, decoders=decoders)
        self.worker.node_id = node_id

    def describe(self) -> ActorInfo:
        return ActorInfo(self.provenance, ray.get_runtime_context().get_node_id(), os.getpid(),
                         self.worker.decoder_processes)

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


class RayBackend:
    """`engine.scheduler.Backend` on Ray core actors."""

    def __init__(self, cfg: JobConfig, out_dir: str, setup: ActorSetup):
        self.cfg, self.out_dir, self.setup = cfg, out_dir, setup
        self.actor_cls = TokenizerActor.options(max_restarts=0, max_task_retries=0,
                                                max_concurrency=cfg.shards_in_flight_per_actor,
                                                **setup.request.options())
        self.actors: dict[int, Any] = {}
        self.waiting: dict[Any, tuple[int, str | None]] = {}  # ref -> (actor id, shard id or None: start)
        self.ids = itertools.count()

    def start_actor(self) -> int:
        actor_id = next(self.ids)
        handle = self.actors[actor_id] = self.actor_cls.remote(self.cfg, self.out_dir, self.setup)
        self.waiting[handle.describe.remote()] = (actor_id, None)
        return actor_id

    def run_shard(self, actor_id: int, shard: Shard, ahead: list[Shard], attempt: int,
                  after: list[Shard] = ()) -> None:
        ref = self.actors[actor_id].run.remote(shard, ahead, attempt, list(after))
        self.waiting[ref] = (actor_id, shard.shard_id)

    def poll(self, timeout_s: float) -> list[Event]:
        if not self.waiting:
            return []
        ready, rest = ray.wait(list(self.waiting), num_returns=1, timeout=timeout_s)
        if ready and rest:  # every other result ready by now comes back from this wait too
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return [self._outcome(ref) for ref in ready]

    def _outcome(self, ref) -> Event:
        actor_id, shard_id = self.waiting.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.ActorUnavailableError as exc:
            # the actor may still be running the shard: it must be gone before the shard runs elsewhere
            self._kill_and_confirm(actor_id)
            return ActorLost(actor_id, f"actor unreachable, killed: {exc}")
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

    def _kill_and_confirm(self, actor_id: int, timeout_s: float = 120.0) -> None:
        """Kill an actor and wait until Ray reports it dead; JobFailed if it cannot be confirmed."""
        handle = self.actors.get(actor_id)
        if handle is None:
            return
        ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = get_actor(handle._actor_id.hex())
            if state is None or state.state == "DEAD":
                return
            time.sleep(1.0)
        raise JobFailed(f"an unreachable actor could not be confirmed dead within {timeout_s:g} s; its shard "
                        "is not run elsewhere, so that no two actors write it at once")

    def capacity(self) -> int:
        return capacity(self.setup.request, alive_nodes())

    def why_not_started(self) -> str:
        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
        return f"{unplaceable(self.setup.request, alive_nodes())}; free now: {free or 'nothing'}"


# ----- verify on actors ---------------------------------------------------------------------------
@ray.remote
class VerifyActor:
    def __init__(self, settings):
        from ..verify.check import Checker  # torch and the codec load in the actor only

        self.checker = Checker(settings)

    def model_provenance(self) -> dict:
        return dict(self.checker.model.provenance)

    def check(self, rows: list[dict]) -> list[CheckResult]:
        return self.checker.check(rows, keep_audio=False)


def check_with_ray(rows: list[dict], settings: CheckSettings, num_actors: int = 0,
                   placement_timeout_s: float = 120.0,
                   ray_address: str | None = None) -> tuple[list[CheckResult], dict]:
    """Results of `Checker.check` for `rows` (any order) and the actors' model provenance.

    Each actor re-reads whole source shards, so rows are grouped by `source` and the groups are
    dealt to actors largest first. num_actors 0: one per GPU when settings.device is cuda, else one
    per 2 CPUs (at least 1), never more than there are sources. Joins `ray_address` or
    RAY_ADDRESS, else starts a local Ray (`connect_ray`).
    """
    connect_ray(address=ray_address)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["source"], []).append(row)
    if not groups:
        return [], {}
    # the same rules as the job's actors: GPUs are a requirement, and an actor that cannot start fails
    # the check after placement_timeout_s instead of waiting forever
    request = ActorRequest(num_cpus=1.0, num_gpus=1.0 if settings.device == "cuda" else 0.0)
    nodes = alive_nodes()
    fits = capacity(request, nodes) if settings.device == "cuda" else max(1, sum(int(n.cpus) for n in nodes) // 2)
    if not fits:
        raise JobFailed(f"verify on {settings.device}: no node can hold a verify actor: {unplaceable(request, nodes)}")
    count = max(1, min(num_actors or fits, fits, len(groups)))
    actors = [VerifyActor.options(max_restarts=1, **request.options()).remote(settings) for _ in range(count)]
    ready, _ = ray.wait([a.model_provenance.remote() for a in actors[:1]], timeout=placement_timeout_s)
    if not ready:
        for actor in actors:
            ray.kill(actor)
        raise JobFailed(f"no verify actor started within {placement_timeout_s:g} s: {unplaceable(request, nodes)}")
    provenance = ray.get(ready[0])
    ordered = sorted(groups.values(), key=len, reverse=True)
    refs = [actors[i % count].check.remote(group) for i, group in enumerate(ordered)]
    results = [r for part in ray.get(refs) for r in part]
    for actor in actors:
        ray.kill(actor)
    return results, provenance
