"""The Ray adapter: the only pipeline module that imports `ray`. It knows no stage.

Work runs on *placed actors*: Ray actors that each hold one object of a plain class the caller hands
over (`work_cls(context, *args)`, built inside the actor: models load there only), named by its
`actor_name` in Ray. The object answers `describe()` once started and `run(...)` per call.
`RayBackend` is the scheduler's `Backend` on such actors (the job hands it `shard_actor.ShardWork`);
`run_on_actors` deals batches of items to a few of them and gathers the results (verify hands it its
checker, `pipeline.verify_on_ray`). `connect_ray` joins a named cluster or starts a
local Ray of its own (`engine.ray_connect`). Ray never
restarts an actor or retries a task by itself here: the scheduler decides.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray
import ray.exceptions
from ray.util.state import get_actor

from ..errors import JobFailed, one_line
from ..records import Shard
from .placement import ActorRequest, Node, capacity, unplaceable
from .ray_connect import CONNECT_TIMEOUT_S, choose_target, probe
from .scheduler import ActorLost, ActorStarted, Event, ShardFailed, ShardFinished


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


def shutdown_ray() -> None:
    """Leave Ray (stopping the local Ray that `connect_ray` started here), if connected."""
    if ray.is_initialized():
        ray.shutdown()


def alive_nodes() -> list[Node]:
    """A snapshot of the cluster's alive nodes and their logical resources."""
    return [Node(n["NodeID"], n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
            for n in ray.nodes() if n.get("Alive")]


@dataclass(frozen=True)
class PlacedContext:
    """Where a placed actor runs, handed to its work object first."""

    node_id: str
    gpu_ids: list
    nodes: list[Node]  # the cluster's alive nodes when the actor started

    def node(self, cpus: float) -> Node:
        """This actor's node (a node of `cpus` CPUs when Ray no longer lists it)."""
        return next((n for n in self.nodes if n.node_id == self.node_id), Node(self.node_id, cpus))


class PlacedActor:
    """The body of every placed actor: one `work_cls(context, *args)`, its describe() and run()."""

    def __init__(self, work_cls: type, *args):
        context = PlacedContext(ray.get_runtime_context().get_node_id(), ray.get_gpu_ids(), alive_nodes())
        self.work = work_cls(context, *args)

    def describe(self) -> Any:
        return self.work.describe()

    def run(self, *args) -> Any:
        return self.work.run(*args)


_remote_classes: dict[type, Any] = {}


def placed_actor(work_cls: type):
    """The Ray actor class for `work_cls`, named by its `actor_name` (default `<work class name>Actor`):
    Ray shows that name for its processes (`ray::<name>`) and in its state API."""
    if work_cls not in _remote_classes:
        name = getattr(work_cls, "actor_name", f"{work_cls.__name__}Actor")
        _remote_classes[work_cls] = ray.remote(type(name, (PlacedActor,), {}))
    return _remote_classes[work_cls]


class RayBackend:
    """`engine.scheduler.Backend` on placed actors holding `work_cls(context, *work_args)`, whose
    `run(shard, ahead, attempt, after)` returns the shard's record; up to `concurrency` calls run at
    once on threads of each actor."""

    def __init__(self, work_cls: type, work_args: Sequence, request: ActorRequest, concurrency: int = 1):
        self.work_cls, self.work_args, self.request = work_cls, tuple(work_args), request
        self.actor_cls = placed_actor(work_cls).options(max_restarts=0, max_task_retries=0,
                                                        max_concurrency=concurrency, **request.options())
        self.actors: dict[int, Any] = {}
        self.waiting: dict[Any, tuple[int, str | None]] = {}  # ref -> (actor id, shard id or None: start)
        self.ids = itertools.count()

    def start_actor(self) -> int:
        actor_id = next(self.ids)
        handle = self.actors[actor_id] = self.actor_cls.remote(self.work_cls, *self.work_args)
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
        return capacity(self.request, alive_nodes())

    def why_not_started(self) -> str:
        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
        return f"{unplaceable(self.request, alive_nodes())}; free now: {free or 'nothing'}"


# ----- batches of items on a few actors ----------------------------------------------------------
def run_on_actors(work_cls: type, work_args: Sequence, batches: list[list], request: ActorRequest, count: int,
                  placement_timeout_s: float = 120.0, what: str = "work",
                  results_timeout_s: float | None = None) -> tuple[list, Any]:
    """Start `count` placed actors holding `work_cls(context, *work_args)`, deal `batches` to them in
    turn (each batch one `run(batch)` call, returning a list) and return (the results of all batches,
    in batch order, concatenated; the first actor's describe()). An actor that cannot start within
    placement_timeout_s fails the call (JobFailed) instead of waiting forever; the actors are killed
    at the end. Actors may be restarted once by Ray (a lost actor re-runs its batch). With
    `results_timeout_s`, batches not all done that long after the first actor started fail the call too."""
    if not batches:
        return [], None
    actor_cls = placed_actor(work_cls).options(max_restarts=1, **request.options())
    actors = [actor_cls.remote(work_cls, *work_args) for _ in range(max(1, count))]
    try:
        ready, _ = ray.wait([a.describe.remote() for a in actors[:1]], timeout=placement_timeout_s)
        if not ready:
            raise JobFailed(f"no {what} actor started within {placement_timeout_s:g} s: "
                            f"{unplaceable(request, alive_nodes())}")
        described = ray.get(ready[0])
        refs = [actors[i % len(actors)].run.remote(batch) for i, batch in enumerate(batches)]
        try:
            parts = ray.get(refs, timeout=results_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise JobFailed(f"the {what} actors' batches did not finish within {results_timeout_s:g} s") from None
        return [r for part in parts for r in part], described
    finally:
        for actor in actors:
            ray.kill(actor)
