"""The driver's policy without Ray: a scripted backend stands in for the cluster."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import pytest

from pipeline.engine.scheduler import (
    ActorLost,
    ActorStarted,
    Scheduler,
    SchedulerSettings,
    ShardFailed,
    ShardFinished,
    Slot,
)
from pipeline.errors import JobFailed
from pipeline.records import Shard, ShardRecord


def shards(n: int) -> list[Shard]:
    return [Shard(f"s{i}", f"mem://s{i}.tar", "webdataset") for i in range(n)]


def record(shard_id: str) -> ShardRecord:
    return ShardRecord(shard_id, f"mem://{shard_id}.tar", rows=1, rejects=0, audio_seconds=1.0)


@dataclass
class FakeBackend:
    """Actors start after `start_delay` polls (None: never); `outcome(shard_id, attempt)` says what a
    run does: "ok", "die" (the actor is lost) or "fail" (our code raised)."""

    outcome: object = lambda shard_id, attempt: "ok"
    start_delay: int | None = 0
    init_fails: bool = False
    started: list[int] = field(default_factory=list)
    runs: list[tuple[int, str, list[str], int]] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    events: deque = field(default_factory=deque)
    starting: dict[int, int] = field(default_factory=dict)
    next_id: int = 0
    polls: int = 0
    afters: list[list[str]] = field(default_factory=list)  # per run: the shards in flight before it

    def start_actor(self) -> int:
        actor_id, self.next_id = self.next_id, self.next_id + 1
        self.started.append(actor_id)
        if self.init_fails:
            self.events.append(ActorLost(actor_id, "constructor raised", init_failed=True))
        elif self.start_delay is not None:
            self.starting[actor_id] = self.start_delay
        return actor_id

    def run_shard(self, actor_id, shard, ahead, attempt, after=()) -> None:
        self.runs.append((actor_id, shard.shard_id, [s.shard_id for s in ahead], attempt))
        self.afters.append([s.shard_id for s in after])
        what = self.outcome(shard.shard_id, attempt)
        if what == "ok":
            self.events.append(ShardFinished(actor_id, shard.shard_id, record(shard.shard_id)))
        elif what == "die":
            self.events.append(ActorLost(actor_id, "SIGKILL"))
        else:
            self.events.append(ShardFailed(actor_id, shard.shard_id, "ValueError: bug"))

    def poll(self, timeout_s: float) -> list:
        self.polls += 1
        assert self.polls < 1000, "the scheduler keeps polling"
        for actor_id in list(self.starting):
            if self.starting[actor_id] == 0:
                del self.starting[actor_id]
                self.events.append(ActorStarted(actor_id, {"model_source": "fake"}))
            else:
                self.starting[actor_id] -= 1
        out = list(self.events)
        self.events.clear()
        if not out:
            time.sleep(max(min(timeout_s, 0.01), 0.002))
        return out

    cap: int = 0  # actors the "cluster" holds, for growth

    def capacity(self) -> int:
        return self.cap

    def why_not_started(self) -> str:
        return "each actor asks 1 GPU(s); the nodes have: none"

    def stop_actor(self, actor_id: int) -> None:
        self.stopped.append(actor_id)
        self.starting.pop(actor_id, None)
        self.events = deque(e for e in self.events if e.actor_id != actor_id)


def settings(**kw) -> SchedulerSettings:
    return SchedulerSettings(**{"progress_interval_s": 0.0, "failure_grace_s": 1.0, **kw})


def run(backend, n_shards: int, count: int, **kw):
    lines = []
    scheduler = Scheduler(backend, shards(n_shards), settings(**kw), lines.append)
    return scheduler, scheduler.run(count, {}, n_shards), lines


def test_every_shard_commits_once():
    backend = FakeBackend()
    _, records, _ = run(backend, 7, 3)
    assert sorted(records) == sorted(f"s{i}" for i in range(7))
    assert sorted(r[1] for r in backend.runs) == sorted(records)


def test_spreads_shards_before_decoding_ahead():
    scheduler = Scheduler(FakeBackend(), shards(6), settings(prefetch_shards=2), print)
    backend = scheduler.backend
    scheduler.slots = [Slot(backend.start_actor(), started=True) for _ in range(3)]
    for slot in scheduler.slots:
        scheduler._dispatch(slot)
    for actor, finished in ((2, "s4"), (2, "s5"), (0, "s0"), (1, "s2")):
        slot = scheduler.slots[actor]
        assert [s.shard_id for s in slot.running] == [finished]
        slot.running.clear()
        scheduler._dispatch(slot)
    assert [r[:3] for r in backend.runs] == [
        (0, "s0", ["s1"]), (1, "s2", ["s3"]), (2, "s4", []),  # 6 shards, 3 actors: only 2 decoded ahead
        (2, "s5", []),  # s5 is the last one no actor holds
        (2, "s1", []),  # actor 2 takes s1 from actor 0, which was holding it ahead
        (0, "s3", []),  # actor 0 finished s0 and takes s3 from actor 1
    ]
    assert not scheduler.slots[1].running and not any(slot.queued for slot in scheduler.slots)

    many = Scheduler(FakeBackend(), shards(30), settings(prefetch_shards=2), print)
    many.slots = [Slot(many.backend.start_actor(), started=True) for _ in range(3)]
    for slot in many.slots:
        many._dispatch(slot)
    many.slots[0].running.clear()
    many._dispatch(many.slots[0])
    assert [r[:3] for r in many.backend.runs] == [
        (0, "s0", ["s1", "s2"]), (1, "s3", ["s4", "s5"]), (2, "s6", ["s7", "s8"]), (0, "s1", ["s2", "s9"])]


def test_shards_go_only_to_started_actors_and_pending_ones_are_named():
    # actor 0 starts at once, actor 1 never: every shard runs on actor 0, and the progress line says
    # that one actor is still starting
    backend = FakeBackend()
    original = backend.start_actor

    def start():
        actor_id = original()
        if actor_id == 1:
            backend.starting.pop(actor_id)
        return actor_id

    backend.start_actor = start
    _, records, lines = run(backend, 4, 2)
    assert len(records) == 4 and {r[0] for r in backend.runs} == {0}
    assert any("actors starting 1" in line for line in lines)


def test_first_start_callback_runs_before_any_shard():
    seen = []
    backend = FakeBackend(start_delay=2)
    scheduler = Scheduler(backend, shards(3), settings(), lambda m: None,
                          on_first_start=lambda info: seen.append((info, len(backend.runs))))
    scheduler.run(2, {}, 3)
    assert seen == [({"model_source": "fake"}, 0)]


def test_dead_actor_is_replaced_and_its_shards_requeued():
    deaths = {("s1", 1)}
    backend = FakeBackend(outcome=lambda s, a: "die" if (s, a) in deaths else "ok")
    _, records, lines = run(backend, 5, 2, prefetch_shards=1)
    assert sorted(records) == [f"s{i}" for i in range(5)]
    assert [r[3] for r in backend.runs if r[1] == "s1"] == [1, 2]  # tried again, as attempt 2
    assert len(backend.started) == 3 and len(backend.stopped) >= 1
    assert any("actor died on shard s1" in line for line in lines)


def test_poison_shard_fails_after_exactly_max_shard_attempts():
    backend = FakeBackend(outcome=lambda s, a: "die" if s == "s2" else "ok")
    with pytest.raises(JobFailed, match=r"s2.tar failed 3 times"):
        run(backend, 4, 1, max_shard_attempts=3, max_actor_restarts=10)
    assert [r[3] for r in backend.runs if r[1] == "s2"] == [1, 2, 3]


def test_slot_losing_actors_in_a_row_fails_the_job():
    backend = FakeBackend(outcome=lambda s, a: "die")
    with pytest.raises(JobFailed, match="died 3 times in a row"):
        run(backend, 10, 1, max_shard_attempts=100, max_actor_restarts=2)


def test_constructor_error_fails_the_job_at_once():
    backend = FakeBackend(init_fails=True)
    with pytest.raises(JobFailed, match="failed to start: constructor raised"):
        run(backend, 2, 1)
    assert backend.runs == []


def test_our_error_fails_the_job_after_the_shards_in_flight():
    backend = FakeBackend(outcome=lambda s, a: "fail" if s == "s0" else "ok")
    with pytest.raises(JobFailed, match="s0.tar failed: ValueError: bug"):
        run(backend, 4, 2)
    # s2 was in flight on the other actor: its outcome was taken, nothing more was started
    assert [r[1] for r in backend.runs] == ["s0", "s2"] and not backend.events


def test_nothing_to_do_starts_no_actor():
    backend = FakeBackend()
    _, records, _ = run(backend, 0, 0)
    assert records == {} and backend.started == []


def test_no_actor_starting_fails_after_placement_timeout_naming_why():
    backend = FakeBackend(start_delay=None)  # Ray never places the actor
    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"no actor could start within placement_timeout_s \(0.3 s\): each actor asks"):
        run(backend, 3, 1, placement_timeout_s=0.3)
    assert time.monotonic() - started < 5 and backend.runs == []


def test_capacity_that_joins_gets_actors_and_shards():
    # one actor at start; after some polls the "cluster" holds 3: two more start and take shards
    backend = FakeBackend(outcome=lambda s, a: "ok")
    slow = backend.run_shard

    def run_shard(actor_id, shard, ahead, attempt, after=()):
        backend.cap = 3 if len(backend.runs) >= 2 else 1
        slow(actor_id, shard, ahead, attempt, after)

    backend.run_shard = run_shard
    backend.outcome = lambda s, a: "ok"
    scheduler, records, lines = run(backend, 12, 1, rescale_interval_s=0.0, prefetch_shards=0)
    assert len(records) == 12 and len(scheduler.slots) == 3
    assert {r[0] for r in backend.runs} == {0, 1, 2}
    assert any("the cluster grew: 2 more actor(s)" in line for line in lines)


def test_growth_stops_at_max_actors():
    backend = FakeBackend(cap=10)
    scheduler, records, _ = run(backend, 12, 1, rescale_interval_s=0.0, max_actors=2, prefetch_shards=0)
    assert len(records) == 12 and len(scheduler.slots) == 2


def test_actor_dying_while_holding_shards_ahead_retries_each_alone_and_charges_the_poison():
    # s1 kills any actor that holds it (running or decoding it ahead); it is found, s0 is not charged
    def outcome_of(backend):
        def run_shard(actor_id, shard, ahead, attempt, after=()):
            backend.runs.append((actor_id, shard.shard_id, [s.shard_id for s in ahead], attempt))
            if "s1" in [shard.shard_id, *(s.shard_id for s in ahead)]:
                backend.events.append(ActorLost(actor_id, "SIGKILL (out of memory)"))
            else:
                backend.events.append(ShardFinished(actor_id, shard.shard_id, record(shard.shard_id)))
        return run_shard

    backend = FakeBackend()
    backend.run_shard = outcome_of(backend)
    with pytest.raises(JobFailed, match=r"s1.tar failed 3 times"):
        run(backend, 4, 1, prefetch_shards=2, max_shard_attempts=3, max_actor_restarts=10)
    assert backend.runs[0][1:3] == ("s0", ["s1", "s2"])  # died while s1 was decoded ahead
    assert ("s0", [], 2) in [r[1:] for r in backend.runs]  # s0 ran again alone, and committed
    alone = [r for r in backend.runs if r[1] == "s1"]
    assert [r[2] for r in alone] == [[], [], []] and [r[3] for r in alone] == [1, 2, 3]


# ----- two shards in flight per actor (the second encodes while the first commits) ----------------
@dataclass
class InFlightBackend(FakeBackend):
    """Runs stay in flight: each poll ends the oldest run of each actor, by its outcome."""

    inflight: dict = field(default_factory=dict)  # actor -> [(shard_id, attempt)] in order
    most_in_flight: int = 0

    def run_shard(self, actor_id, shard, ahead, attempt, after=()) -> None:
        self.runs.append((actor_id, shard.shard_id, [s.shard_id for s in ahead], attempt))
        self.afters.append([s.shard_id for s in after])
        assert [s for s, _ in self.inflight.get(actor_id, [])] == self.afters[-1]
        self.inflight.setdefault(actor_id, []).append((shard.shard_id, attempt))
        self.most_in_flight = max(self.most_in_flight, len(self.inflight[actor_id]))

    def poll(self, timeout_s: float) -> list:
        for actor_id, runs in list(self.inflight.items()):
            if not runs:
                continue
            shard_id, attempt = runs.pop(0)
            what = self.outcome(shard_id, attempt)
            if what == "ok":
                self.events.append(ShardFinished(actor_id, shard_id, record(shard_id)))
            elif what == "die":  # every run in flight on it is lost with it
                self.events.append(ActorLost(actor_id, "SIGKILL"))
                del self.inflight[actor_id]
            else:
                self.events.append(ShardFailed(actor_id, shard_id, "ValueError: bug"))
        return super().poll(timeout_s)

    def stop_actor(self, actor_id: int) -> None:
        super().stop_actor(actor_id)
        self.inflight.pop(actor_id, None)


def test_two_shards_in_flight_keep_each_actor_busy_and_commit_each_once():
    backend = InFlightBackend()
    _, records, _ = run(backend, 9, 2, prefetch_shards=1, shards_in_flight_per_actor=2)
    assert sorted(records) == sorted(f"s{i}" for i in range(9))
    assert sorted(r[1] for r in backend.runs) == sorted(records)  # each ran once
    assert backend.most_in_flight == 2  # never more than two at once on an actor
    # the second run on an actor takes the shard the first decoded ahead, and names the first as in
    # flight before it (so the actor encodes them in that order)
    first, second = [(r, a) for r, a in zip(backend.runs, backend.afters) if r[0] == 0][:2]
    assert first == ((0, "s0", ["s1"], 1), []) and second == ((0, "s1", ["s2"], 1), ["s0"])

    one = InFlightBackend()
    run(one, 6, 1, prefetch_shards=1, shards_in_flight_per_actor=1)
    assert one.most_in_flight == 1  # the setting 1: today's one shard at a time


def test_death_with_two_shards_in_flight_requeues_both_and_each_runs_alone():
    # the actor dies while s0 commits and s1 encodes: both are lost with it, both run again (attempt
    # 2), each alone, since either may have killed it; every shard commits exactly once
    backend = InFlightBackend(outcome=lambda s, a: "die" if (s, a) == ("s0", 1) else "ok")
    _, records, lines = run(backend, 5, 1, prefetch_shards=1, shards_in_flight_per_actor=2)
    assert sorted(records) == [f"s{i}" for i in range(5)]
    assert backend.runs[:2] == [(0, "s0", ["s1"], 1), (0, "s1", ["s2"], 1)] and backend.afters[1] == ["s0"]
    again = [r for r in backend.runs if r[0] == 1]
    assert again[:2] == [(1, "s0", [], 2), (1, "s1", [], 2)]  # alone: nothing else held, one at a time
    assert [a for r, a in zip(backend.runs, backend.afters) if r[0] == 1][:2] == [[], []]
    assert any("actor died on shards s0, s1 (in flight)" in line for line in lines)
    assert backend.stopped[:1] == [0] and len(backend.started) == 2


def test_poison_shard_in_flight_is_found_and_charged():
    # s1 kills its actor whenever it runs: with two in flight it is found by running alone, fails
    # after max_shard_attempts, and s0 (held beside it once) is committed
    backend = InFlightBackend(outcome=lambda s, a: "die" if s == "s1" else "ok")
    with pytest.raises(JobFailed, match=r"s1.tar failed 3 times"):
        run(backend, 4, 1, prefetch_shards=0, shards_in_flight_per_actor=2, max_shard_attempts=3,
            max_actor_restarts=10)
    assert [r[2] for r in backend.runs if r[1] == "s1"][1:] == [[], []]  # after the first death, alone


# ----- cost at many actors (the simulated cluster of pipeline.bench) ------------------------------
def simulated_run(actors: int, shards_per_actor: int = 3, events_per_poll: int = 1):
    from pipeline.bench.cluster import SimulatedCluster

    backend = SimulatedCluster(jitter=0.5, events_per_poll=events_per_poll)
    scheduler = Scheduler(backend, shards(actors * shards_per_actor),
                          SchedulerSettings(progress_interval_s=5.0, shards_in_flight_per_actor=2), lambda m: None)
    backend.watch = scheduler
    offers = 0
    next_shard = scheduler._next_shard

    def counted(slot):
        nonlocal offers
        offers += 1
        return next_shard(slot)

    scheduler._next_shard = counted
    records = scheduler.run(actors, {}, actors * shards_per_actor)
    assert sorted(records) == sorted(f"s{i}" for i in range(actors * shards_per_actor))
    return backend, offers, time.process_time() - backend.tail_started_cpu


def test_work_per_event_does_not_grow_with_the_actors():
    # a slot is offered shards only after an event of its own (or after shards were re-queued): the
    # offers per event are the same at 64 and 2,048 actors; before, every slot was offered shards
    # after every wait, and an idle one scanned every slot for a shard to take over
    small, small_offers, _ = simulated_run(64)
    large, large_offers, tail_cpu = simulated_run(2048)
    per_event = small_offers / small.events, large_offers / large.events
    assert per_event[1] <= 2.5 and per_event[1] <= 1.1 * per_event[0], per_event
    assert tail_cpu <= 10.0  # the target for the end of a run at 2,048 actors (219 s before)


def test_every_ready_event_of_a_wait_is_handled():
    backend, _, _ = simulated_run(256, events_per_poll=0)  # many shards finish at the same instant
    assert backend.polls < backend.events


def test_ray_backend_poll_returns_every_ready_result(monkeypatch):
    from pipeline.engine import ray_backend

    calls = []

    def wait(refs, num_returns, timeout):
        calls.append((len(refs), num_returns, timeout))
        ready = [r for r in refs if r != "slow"][:num_returns]
        return ready, [r for r in refs if r not in ready]

    monkeypatch.setattr(ray_backend.ray, "wait", wait)
    monkeypatch.setattr(ray_backend.ray, "get", lambda ref: record(ref))
    backend = ray_backend.RayBackend.__new__(ray_backend.RayBackend)
    backend.waiting = {"a": (0, "a"), "slow": (1, "slow"), "b": (2, "b")}
    events = backend.poll(1.0)
    assert [(e.actor_id, e.shard_id) for e in events] == [(0, "a"), (2, "b")]
    assert calls == [(3, 1, 1.0), (2, 2, 0)] and list(backend.waiting) == ["slow"]
