"""The byte bound on decoded audio held ahead: files of shards ahead wait for room, the shard in hand
never waits, and a shard given away stops waiting."""

import threading
import time

import pytest

from pipeline.decoded_budget import DecodedBudget, Dropped, Ticket


def admit_later(budget, ticket, nbytes):
    """admit in a thread; returns (thread, outcome list: 'ok' or the exception)."""
    outcome = []

    def go():
        try:
            budget.admit(ticket, nbytes)
            outcome.append("ok")
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, outcome


def test_ahead_waits_for_room_and_the_shard_in_hand_never_waits():
    budget = DecodedBudget(100)
    a, b, c = Ticket("a"), Ticket("b"), Ticket("c")
    budget.admit(a, 60)
    waiting, outcome = admit_later(budget, b, 60)  # 120 > 100: waits
    time.sleep(0.2)
    assert outcome == [] and budget.total() == 60
    budget.take_in_hand(c)
    budget.admit(c, 500)  # in hand: over the limit, at once
    assert budget.total() == 560 and outcome == []
    budget.release(c)
    budget.release(a)  # a's encode ended: b fits now
    waiting.join(5)
    assert outcome == ["ok"] and budget.total() == 60
    assert budget.peak_ahead <= 100 and budget.peak == 560


def test_a_dropped_shard_stops_waiting():
    budget = DecodedBudget(10)
    a, b = Ticket("a"), Ticket("b")
    budget.admit(a, 10)
    waiting, outcome = admit_later(budget, b, 5)
    time.sleep(0.1)
    budget.drop(b)
    waiting.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], Dropped)
    with pytest.raises(Dropped):
        budget.admit(b, 1)
    budget.forget(b)
    assert budget.total() == 10
