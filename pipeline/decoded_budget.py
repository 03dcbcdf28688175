"""The bound on decoded audio an actor holds: `prefetch_bytes` of float32 segments, counted per file.

Each shard an actor decodes gets a `Ticket`. Before the decoder pool takes a decoded file's audio
(`DecodePool.prepare_all(admit=...)`, once its size is known and before it is received), it asks
`admit(ticket, nbytes)`: a file of the shard *in hand* (the one the actor is encoding, or waiting
to encode, with its encode lock held) always passes; a file of a shard decoded ahead waits until
everything held, plus the file, fits in the limit. So the audio of the shards decoded ahead never
exceeds the limit, and everything held never exceeds the limit plus the shard in hand: one huge
shard still runs, decoded when it is in hand. A shard's bytes are freed when its encode ends
(`release`) or when the driver gives it to another actor (`drop`: a decode still waiting stops
with `Dropped`). Nothing waits forever: the shard in hand always proceeds, and every other shard
held either comes into hand or is dropped.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

_ids = itertools.count()


class Dropped(Exception):
    """The shard was given to another actor while its decode waited for room: stop decoding it."""


@dataclass(eq=False)
class Ticket:
    """One decode of one shard (a shard decoded again later gets a new ticket)."""

    shard_id: str
    number: int = field(default_factory=lambda: next(_ids))


class DecodedBudget:
    def __init__(self, limit: int):
        self.limit = int(limit)
        self.cond = threading.Condition()
        self.held: dict[Ticket, int] = {}
        self.dropped: set[Ticket] = set()
        self.in_hand: Ticket | None = None
        self.peak_ahead = 0  # most bytes held at once by shards not in hand
        self.peak = 0  # most bytes held at once, the shard in hand included

    def total(self) -> int:
        return sum(self.held.values())

    def admit(self, ticket: Ticket, nbytes: int) -> None:
        """Wait until `nbytes` more of `ticket`'s audio may be held, then count them; Dropped if the
        shard is dropped meanwhile."""
        with self.cond:
            while True:
                if ticket in self.dropped:
                    raise Dropped(ticket.shard_id)
                if ticket is self.in_hand or self.total() + nbytes <= self.limit:
                    break
                self.cond.wait()
            self.held[ticket] = self.held.get(ticket, 0) + nbytes
            total = self.total()
            self.peak = max(self.peak, total)
            in_hand = self.held.get(self.in_hand, 0) if self.in_hand is not None else 0
            self.peak_ahead = max(self.peak_ahead, total - in_hand)

    def take_in_hand(self, ticket: Ticket) -> None:
        """`ticket`'s shard is now the one being encoded: its files pass, whatever the limit."""
        with self.cond:
            self.in_hand = ticket
            self.cond.notify_all()

    def release(self, ticket: Ticket) -> None:
        """The shard's audio is no longer held (encoded, or its decode ended without use)."""
        with self.cond:
            self.held.pop(ticket, None)
            if self.in_hand is ticket:
                self.in_hand = None
            self.cond.notify_all()

    def drop(self, ticket: Ticket) -> None:
        """The shard went to another actor: free its bytes, and stop a decode that waits for room."""
        with self.cond:
            self.dropped.add(ticket)
            self.held.pop(ticket, None)
            self.cond.notify_all()

    def forget(self, ticket: Ticket) -> None:
        """The decode of a dropped ticket has ended: nothing more to remember about it."""
        with self.cond:
            self.dropped.discard(ticket)
            self.held.pop(ticket, None)
            self.cond.notify_all()
