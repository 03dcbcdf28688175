"""A simulated cluster for `engine.scheduler`: actors that start at once and finish shards on a virtual clock.

No Ray and no sleeping: each `run_shard` is due `shard_seconds` (± a deterministic jitter) of virtual time
after it was handed over, and `poll` advances the virtual clock to the next due run. `events_per_poll`
says how many ready events one poll returns: 1 as a `ray.wait(num_returns=1)` loop does, or 0 for every
event due at that virtual instant (runs handed over together with the same duration finish together).
What it measures is the scheduler's own CPU work per event, which the real cluster adds to every shard.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

from ..engine.scheduler import ActorInfo, ActorStarted, ShardFinished
from ..records import Shard, ShardRecord

_INFO = ActorInfo(provenance=None, node_id="simulated", pid=0, decoder_processes=0)


@dataclass
class SimulatedCluster:
    """A `scheduler.Backend` whose actors never fail; `polls`, `events` count what the scheduler consumed."""

    shard_seconds: float = 60.0
    jitter: float = 0.0  # each run lasts shard_seconds * (1 + jitter * u), u in [0, 1) from the shard's index
    events_per_poll: int = 1  # 0: every event due at the same virtual instant
    capacity_actors: int = 0
    watch: object = None  # the scheduler: its end of run (no shard left to hand out) is timed
    tail_started_cpu: float | None = None  # process CPU seconds when `watch.todo` was first seen empty
    tail_started_wall: float | None = None
    now: float = 0.0
    polls: int = 0
    events: int = 0
    _due: list = field(default_factory=list)  # heap of (time, seq, event)
    _seq: int = 0
    _next_id: int = 0

    def _push(self, at: float, event) -> None:
        heapq.heappush(self._due, (at, self._seq, event))
        self._seq += 1

    def start_actor(self) -> int:
        actor_id, self._next_id = self._next_id, self._next_id + 1
        self._push(self.now, ActorStarted(actor_id, _INFO))
        return actor_id

    def run_shard(self, actor_id: int, shard: Shard, ahead: list[Shard], attempt: int,
                  after: list[Shard] = ()) -> None:
        u = (self._seq * 0.6180339887) % 1.0
        record = ShardRecord(shard.shard_id, shard.url, rows=1, rejects=0, audio_seconds=self.shard_seconds)
        self._push(self.now + self.shard_seconds * (1 + self.jitter * u), ShardFinished(actor_id, shard.shard_id,
                                                                                         record))

    def poll(self, timeout_s: float) -> list:
        self.polls += 1
        if self.watch is not None and self.tail_started_cpu is None and not self.watch.todo:
            self.tail_started_cpu, self.tail_started_wall = time.process_time(), time.perf_counter()
        if not self._due:
            return []
        at = self._due[0][0]
        self.now = max(self.now, at)
        out = []
        while self._due and self._due[0][0] <= at and (not self.events_per_poll or len(out) < self.events_per_poll):
            out.append(heapq.heappop(self._due)[2])
        self.events += len(out)
        return out

    def stop_actor(self, actor_id: int) -> None:
        self._due = [d for d in self._due if d[2].actor_id != actor_id]
        heapq.heapify(self._due)

    def capacity(self) -> int:
        return self.capacity_actors

    def why_not_started(self) -> str:
        return "simulated actors always start"
