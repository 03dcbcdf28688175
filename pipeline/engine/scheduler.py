"""The driver's policy, without Ray: which shard goes to which actor, retries, deaths, progress.

The scheduler keeps a fixed number of actor *slots*. It talks to the cluster only through a
`Backend` (`engine.ray_backend.RayBackend` on Ray, a fake in the tests): it asks for actors to be
started, hands shards to started ones and polls for events. An actor takes shards only once it has
started (`ActorStarted`); until then its slot is named as pending in the progress line.

    slot: starting ──ActorStarted──► idle ◄──ShardFinished── busy
            │                          └─run_shard(shard, ahead)─┘
            └─ActorLost─► (counted) ─► starting again, its shards back at the head of the queue

A started actor runs up to `shards_in_flight_per_actor` shards at once (2: the second encodes while
the first commits; each call still ends with its shard committed). Each busy actor also decodes
ahead the next `prefetch_shards` shards it will run, but only while more shards are left than
actors, so the last shards spread over actors instead of queueing behind one; the same holds for
a second shard in flight, which an actor takes from the shards it decodes ahead or, while more
shards are left than actors, from the queue. An idle actor with nothing left to start takes the
last shard another actor holds ahead (never one in flight: that actor will run it).

Faults: Ray never restarts an actor by itself. An actor that dies is replaced here and its shards
(in flight, then ahead) are re-queued; when it held several, each runs alone next, holding no
other shard in flight or ahead, so that a poison shard is found. A shard counts as done only once
its committed record is back. A shard is attempted at most `max_shard_attempts` times and a slot may lose
`max_actor_restarts` actors in a row (without a committed shard in between), else `JobFailed`.
An error raised by our own code fails the job naming the shard, after the other shards in flight
have finished or failed (for up to `failure_grace_s`), so no commit is cut off by the driver.

Cost: the work per event does not grow with the number of actors. Slots are found by actor id in a
map; after each wait only the slots that had an event are offered shards (all of them after shards
were re-queued), in slot order as before; the slots holding shards ahead and those with shards in
flight are kept in sets, so neither the end-of-run hand-over nor the "work left?" test scans every slot.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..budget_in_force import BudgetInForce
from ..errors import JobFailed, one_line
from ..provenance import Provenance
from ..records import Shard, ShardRecord
from .progress import Progress


@dataclass(frozen=True)
class ActorInfo:
    """What a started actor reports: the provenance of what it will write, and where it runs."""

    provenance: Provenance
    node_id: str
    pid: int
    decoder_processes: int
    batch_budget: BudgetInForce | None = None  # the batch budget it encodes with, and how it was decided


@dataclass(frozen=True)
class ActorStarted:
    actor_id: int
    info: ActorInfo


@dataclass(frozen=True)
class ShardFinished:
    actor_id: int
    shard_id: str
    record: ShardRecord  # the committed manifest record


@dataclass(frozen=True)
class ActorLost:
    """The actor is gone (killed, out of memory, node lost) or failed in its constructor."""

    actor_id: int
    error: str
    init_failed: bool = False


@dataclass(frozen=True)
class ShardFailed:
    """Our own code raised while running the shard: a bug or a strict-mode rejection."""

    actor_id: int
    shard_id: str
    error: str


Event = ActorStarted | ShardFinished | ActorLost | ShardFailed


class Backend(Protocol):
    """Where actors run. Each call returns at once; outcomes come back from `poll` as events."""

    def start_actor(self) -> int:
        """Start an actor; returns its id. ActorStarted or ActorLost follows."""

    def run_shard(self, actor_id: int, shard: Shard, ahead: list[Shard], attempt: int,
                  after: list[Shard] = ()) -> None:
        """Run and commit `shard` on a started actor, decoding `ahead` meanwhile; `after`: the shards
        handed to it before and still in flight, which it encodes first. It forgets any other shard
        it decoded ahead. ShardFinished, ShardFailed or ActorLost follows."""

    def poll(self, timeout_s: float) -> list[Event]:
        """Events that happened, waiting up to `timeout_s` for the first one."""

    def stop_actor(self, actor_id: int) -> None:
        """Kill the actor (it may only be unreachable); no event about it follows."""

    def capacity(self) -> int:
        """Actors the cluster's alive nodes hold now (grows when nodes join)."""

    def why_not_started(self) -> str:
        """What the actors ask and what the nodes have, for an actor that does not start."""


@dataclass(frozen=True)
class SchedulerSettings:
    prefetch_shards: int = 2
    max_shard_attempts: int = 3
    max_actor_restarts: int = 3
    progress_interval_s: float = 5.0
    failure_grace_s: float = 300.0
    placement_timeout_s: float = 120.0  # no actor running for this long: the job fails
    max_actors: int = 0  # never more actor slots than this (0: no limit)
    rescale_interval_s: float = 5.0  # how often the nodes are looked at for added capacity
    shards_in_flight_per_actor: int = 1  # run calls an actor holds at once (the job's config: 2)

    @classmethod
    def from_config(cls, cfg) -> SchedulerSettings:
        return cls(cfg.prefetch_shards, cfg.max_shard_attempts, cfg.max_actor_restarts, cfg.progress_interval_s,
                   placement_timeout_s=cfg.placement_timeout_s, max_actors=cfg.num_actors,
                   shards_in_flight_per_actor=cfg.shards_in_flight_per_actor)


@dataclass(eq=False)  # hashed by identity: kept in the scheduler's sets
class Slot:
    actor_id: int
    started: bool = False
    running: list[Shard] = field(default_factory=list)  # shards its actor runs (in flight), in order
    alone: bool = False  # it runs one shard holding no other shard (none in flight or decoded ahead)
    queued: deque[Shard] = field(default_factory=deque)  # shards its actor decodes ahead
    deaths: int = 0  # actors lost in a row without a committed shard


class Scheduler:
    """Runs every shard of `todo` on `count` actor slots of `backend`; see the module docstring."""

    def __init__(self, backend: Backend, todo: Iterable[Shard], settings: SchedulerSettings,
                 log: Callable[[str], None], on_first_start: Callable[[ActorInfo], None] | None = None):
        self.backend, self.settings, self.log = backend, settings, log
        self.todo: deque[Shard] = deque(todo)
        self.on_first_start = on_first_start
        self.slots = []
        self.attempts: dict[str, int] = {}
        self.suspects: set[str] = set()  # held by an actor that died holding several: each runs alone next
        self.first_info: ActorInfo | None = None

    @property
    def slots(self) -> list[Slot]:
        return self._slots

    @slots.setter
    def slots(self, slots: list[Slot]) -> None:
        self._slots: list[Slot] = []
        self._by_actor: dict[int, Slot] = {}
        self._position: dict[Slot, int] = {}
        self._holding: set[Slot] = set()  # slots with shards decoded ahead
        self._busy: set[Slot] = set()  # slots with shards in flight
        self._dirty: set[Slot] = set()  # slots to offer shards after the current wait
        for slot in slots:
            self._add(slot)

    def _add(self, slot: Slot) -> Slot:
        self._position[slot] = len(self._slots)
        self._slots.append(slot)
        self._by_actor[slot.actor_id] = slot
        self._track(slot)
        return slot

    def _track(self, slot: Slot) -> None:
        """Keep the holding / busy sets in step with the slot's shards."""
        (self._holding.add if slot.queued else self._holding.discard)(slot)
        (self._busy.add if slot.running else self._busy.discard)(slot)

    # ----- the loop ------------------------------------------------------------------------------
    def run(self, count: int, done: dict[str, ShardRecord], total: int) -> dict[str, ShardRecord]:
        """{shard_id: record} of every committed shard (`done` included); raises JobFailed."""
        records = dict(done)
        progress = Progress(total, len(done), self.log, self.settings.progress_interval_s)
        self.slots = [Slot(self.backend.start_actor()) for _ in range(count)]
        self.idle_since = time.monotonic()  # since when no actor has been running
        self.rescaled = time.monotonic()
        try:
            while self._work_left():
                self._check_running()
                self._grow()
                failure = None
                for event in self.backend.poll(self.settings.progress_interval_s):
                    try:
                        record = self._handle(event)
                    except JobFailed as exc:  # the other events still count, then the job stops
                        failure, record = failure or exc, None
                    if record is not None:
                        records[record.shard_id] = record
                        progress.shard_done(record)
                if failure is not None:
                    raise failure
                dirty, self._dirty = sorted(self._dirty, key=self._position.__getitem__), set()
                for slot in dirty:
                    while slot.started and self._dispatch(slot):
                        pass
                if progress.due():
                    progress.maybe_print(pending=sum(not s.started for s in self.slots))
        except JobFailed:
            self._drain()
            raise
        progress.maybe_print(force=True)
        return records

    def stop(self) -> None:
        for slot in self.slots:
            self.backend.stop_actor(slot.actor_id)

    def _check_running(self) -> None:
        """Fail when no actor has been running for placement_timeout_s (none could be placed)."""
        if any(s.started for s in self.slots):
            self.idle_since = None
            return
        now = time.monotonic()
        self.idle_since = self.idle_since or now
        if now - self.idle_since > self.settings.placement_timeout_s:
            raise JobFailed(f"no actor could start within placement_timeout_s "
                            f"({self.settings.placement_timeout_s:g} s): {self.backend.why_not_started()}")

    def _grow(self) -> None:
        """Add actor slots for capacity that joined (nodes added by an autoscaler), while there are
        more shards left than actors, up to max_actors."""
        now = time.monotonic()
        if now - self.rescaled < self.settings.rescale_interval_s or not self.todo:
            return
        self.rescaled = now
        limit = min(self.backend.capacity(), self.settings.max_actors or 10**9)
        added, starting = 0, sum(not s.started for s in self.slots)
        while len(self.slots) < limit and len(self.todo) > starting + added:
            self._add(Slot(self.backend.start_actor()))
            added += 1
        if added:
            self.log(f"[audiotok] the cluster grew: {added} more actor(s), {len(self.slots)} in all")

    def _work_left(self) -> bool:
        return bool(self.todo or self._busy or self._holding)

    def _drain(self) -> None:
        """After a failure: let the shards in flight commit or fail on their own, for a while."""
        busy = {(s.actor_id, shard.shard_id) for s in self.slots for shard in s.running}
        if not busy:
            return
        self.log(f"[audiotok] job failed; waiting up to {self.settings.failure_grace_s:.0f} s for "
                 f"{len(busy)} shard(s) in flight")
        deadline = time.monotonic() + self.settings.failure_grace_s
        while busy and time.monotonic() < deadline:
            for event in self.backend.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
                if isinstance(event, ShardFinished | ShardFailed):
                    busy.discard((event.actor_id, event.shard_id))
                elif isinstance(event, ActorLost):  # every shard it held is gone with it
                    busy = {(a, s) for a, s in busy if a != event.actor_id}

    # ----- events --------------------------------------------------------------------------------
    def _handle(self, event: Event) -> ShardRecord | None:
        slot = self._by_actor.get(event.actor_id)
        if slot is None:  # an actor already replaced
            return None
        self._dirty.add(slot)
        if isinstance(event, ActorStarted):
            slot.started = True
            if self.first_info is None:
                self.first_info = event.info
                if self.on_first_start:
                    self.on_first_start(event.info)
            return None
        if isinstance(event, ShardFinished):
            self._finish(slot, event.shard_id)
            slot.deaths = 0
            self.suspects.discard(event.shard_id)
            return event.record
        if isinstance(event, ShardFailed):
            shard = self._finish(slot, event.shard_id)
            self.log(f"[audiotok] shard {event.shard_id} raised:\n{event.error}")
            raise JobFailed(f"shard {shard.url if shard else event.shard_id} failed: {one_line(event.error)}")
        self._lost(slot, event)
        return None

    def _finish(self, slot: Slot, shard_id: str) -> Shard | None:
        """Take `shard_id` off the slot's shards in flight; returns it (None if it was not there)."""
        shard = next((s for s in slot.running if s.shard_id == shard_id), None)
        if shard is not None:
            slot.running.remove(shard)
            self._track(slot)
        return shard

    def _lost(self, slot: Slot, event: ActorLost) -> None:
        running, slot.running = slot.running, []
        shard = running[0] if running else None
        if event.init_failed:
            self.log(f"[audiotok] the model actor raised while starting:\n{event.error}")
            raise JobFailed(f"the model actor failed to start: {one_line(event.error)}")
        held = running + list(slot.queued)
        if len(running) == 1 and slot.alone and self.attempts[shard.shard_id] >= self.settings.max_shard_attempts:
            raise JobFailed(f"shard {shard.url} failed {self.attempts[shard.shard_id]} times "
                            f"(actor died each time): {event.error}")
        if len(held) > 1:  # any of them may have killed it: each runs alone before one is charged
            self.suspects.update(s.shard_id for s in held)
        slot.deaths += 1
        where = f"on shard {shard.url}" if shard is not None else "while starting"
        if len(running) > 1:
            where = f"on shards {', '.join(s.url for s in running)} (in flight)"
        if slot.deaths > self.settings.max_actor_restarts:
            raise JobFailed(f"an actor died {slot.deaths} times in a row (max_actor_restarts "
                            f"{self.settings.max_actor_restarts}), last {where}: {event.error}")
        if len(running) > 1:
            self.log(f"[audiotok] actor died on shards {', '.join(s.shard_id for s in running)} (in flight); "
                     f"replacing it and retrying the shards")
        elif shard is not None:
            self.log(f"[audiotok] actor died on shard {shard.shard_id}; replacing it and retrying the shard")
        else:
            self.log("[audiotok] an actor died while starting; replacing it")
        self.todo.extendleft(reversed(running + list(slot.queued)))
        slot.queued.clear()
        self._track(slot)
        self._dirty.update(self._slots)  # shards went back to the queue: any started actor may take them
        self.backend.stop_actor(slot.actor_id)
        del self._by_actor[slot.actor_id]
        slot.actor_id, slot.started = self.backend.start_actor(), False
        self._by_actor[slot.actor_id] = slot

    # ----- dispatch ------------------------------------------------------------------------------
    def _next_shard(self, slot: Slot) -> Shard | None:
        """The slot's next shard to run. For an idle actor: its own next shard, else the next unstarted
        one, else the last one another actor holds ahead (that actor forgets it at its next run). For
        a second shard in flight: its own next shard, else, while more shards are left than actors,
        the next unstarted one that is not a suspect (a suspect runs alone)."""
        if slot.running:
            if (len(slot.running) >= self.settings.shards_in_flight_per_actor
                    or any(s.shard_id in self.suspects for s in slot.running)):
                return None
            if slot.queued:
                return slot.queued.popleft()
            if len(self.todo) < len(self.slots):
                return None
            nxt = next((s for s in self.todo if s.shard_id not in self.suspects), None)
            if nxt is not None:
                self.todo.remove(nxt)
            return nxt
        if slot.queued:
            return slot.queued.popleft()
        if self.todo:
            return self.todo.popleft()
        if not self._holding:
            return None
        donor = max(self._holding, key=lambda s: (len(s.queued), -self._position[s]))  # the first that holds most
        shard = donor.queued.pop()
        self._track(donor)
        return shard

    def _dispatch(self, slot: Slot) -> bool:
        """Hand the slot's actor one more shard to run, if it has room for one; False if not."""
        shard = self._next_shard(slot)
        if shard is None:
            return False
        slot.running.append(shard)
        # decode ahead, but never take shards another actor could start on: with few shards left
        # they spread over the actors instead of queueing behind one; a suspect runs alone and is
        # never decoded ahead
        ahead = min(self.settings.prefetch_shards, len(self.todo) // len(self.slots))
        if shard.shard_id in self.suspects:
            ahead = 0
            self.todo.extendleft(reversed(slot.queued))
            slot.queued.clear()
        while len(slot.queued) < ahead:
            nxt = next((s for s in self.todo if s.shard_id not in self.suspects), None)
            if nxt is None:
                break
            self.todo.remove(nxt)
            slot.queued.append(nxt)
        slot.alone = len(slot.running) == 1 and not slot.queued
        self._track(slot)
        n = self.attempts[shard.shard_id] = self.attempts.get(shard.shard_id, 0) + 1
        self.backend.run_shard(slot.actor_id, shard, list(slot.queued), n, after=slot.running[:-1])
        return True
