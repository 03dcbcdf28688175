"""Decoded audio through shared memory (pipeline/shared_audio.py) and recycled huge-page host memory
(pipeline/host_memory.py): what goes in comes out bit for bit, the arena grows and is reused, a large
file gets a memory file of its own, and a broken hand-over is an EOF or OSError, never wrong audio."""

import gc
import os
import socket

import numpy as np
import pytest

from pipeline import host_memory, shared_audio


def arrays(rng, *lengths, channels=1):
    return [rng.standard_normal((channels, n)).astype(np.float32) for n in lengths]


def hand_over(outbox, inbox, parts):
    child, parent = socket.socketpair()
    try:
        meta, fd = outbox.put(parts)
        shared_audio.send_fd(child, fd)
        return meta, inbox.take(parent, meta, [p.shape for p in parts])
    finally:
        child.close()
        parent.close()


def test_arrays_round_trip_as_views_of_the_arena_and_freed_space_is_written_again():
    rng = np.random.default_rng(0)
    outbox, inbox = shared_audio.Outbox(keep_bytes=1 << 20), shared_audio.Inbox()
    kept = []
    for i, parts in enumerate([arrays(rng, 1000, 7), arrays(rng, 5, channels=2), arrays(rng, 100_000, 3)]):
        meta, got = hand_over(outbox, inbox, parts)
        assert meta["via"] == "arena" and meta["new"] == (i == 0) and meta["arena"] == 0  # one arena, passed once
        assert all(np.array_equal(a, b) and b.flags.writeable for a, b in zip(parts, got))
        assert all(b.base is not None for b in got)  # views of the shared memory: no copy
        kept.append((parts, got))
    for parts, got in kept:  # held arrays are never written over
        assert all(np.array_equal(a, b) for a, b in zip(parts, got))
    assert inbox.freed() == {}
    first = kept[0][1][0]
    del kept, got
    gc.collect()
    assert inbox.freed() == {0: 4}  # one count per segment, once no array looks at it
    outbox.release({"0": 4})
    meta, got = hand_over(outbox, inbox, arrays(rng, 10))
    assert meta["offset"] > 0 and not meta["new"]  # one segment still held: not written from the start
    assert np.isfinite(first).all()
    del first, got
    gc.collect()
    outbox.release(inbox.freed())
    meta, got = hand_over(outbox, inbox, arrays(rng, 10))
    assert meta == {"via": "arena", "arena": 0, "size": 1 << 20, "offset": 0, "new": False}
    with pytest.raises(ValueError):
        outbox.release({"7": 1})
    with pytest.raises(ValueError):
        outbox.release({"0": 2})  # more than it holds
    outbox.close()
    inbox.close()


def test_a_full_held_arena_is_left_for_another_and_free_arenas_beyond_keep_free_are_closed():
    rng = np.random.default_rng(3)
    outbox, inbox = shared_audio.Outbox(keep_bytes=1 << 16, keep_free_bytes=1 << 16), shared_audio.Inbox()
    held = []
    for _ in range(3):  # each fills most of an arena: three arenas, each passed once
        meta, got = hand_over(outbox, inbox, parts := arrays(rng, 12_000))
        assert meta["new"] and meta["offset"] == 0
        held.append((parts, got))
    assert [m for m in sorted(inbox.arenas)] == [0, 1, 2] and len(outbox.arenas) == 3
    assert all(np.array_equal(a[0], b[0]) for a, b in held)
    del held, got
    gc.collect()
    outbox.release(inbox.freed())  # all free: 2 (written) is written again from its start, 0 kept, 1 closed
    meta, got = hand_over(outbox, inbox, arrays(rng, 12_000))
    assert meta["closed"] == [1] and meta["arena"] == 2 and meta["offset"] == 0 and not meta["new"]
    assert sorted(inbox.arenas) == [0, 2] and sorted(outbox.arenas) == [0, 2]
    outbox.close()
    inbox.close()


def test_a_file_larger_than_the_arena_gets_its_own_memory_file():
    rng = np.random.default_rng(1)
    outbox, inbox = shared_audio.Outbox(keep_bytes=1 << 16), shared_audio.Inbox()
    parts = arrays(rng, 40_000, 9, channels=2)
    meta, got = hand_over(outbox, inbox, parts)
    assert meta["via"] == "own"
    assert all(np.array_equal(a, b) for a, b in zip(parts, got))
    meta, got = hand_over(outbox, inbox, [])
    assert meta == {"via": "none"} and got == []


def test_a_missing_or_wrong_hand_over_is_an_error():
    outbox, inbox = shared_audio.Outbox(), shared_audio.Inbox()
    child, parent = socket.socketpair()
    meta, fd = outbox.put(arrays(np.random.default_rng(2), 10))
    child.close()  # the child died before passing its arena
    with pytest.raises(EOFError):
        inbox.take(parent, meta, [(1, 10)])
    parent.close()
    with pytest.raises(OSError):  # says more audio than it holds
        inbox.take(socket.socketpair()[1], {"via": "arena", "size": 64, "new": False}, [(1, 1000)])
    with pytest.raises(OSError):
        inbox.take(socket.socketpair()[1], {"via": "pickle"}, [(1, 10)])
    os.close(fd)


def test_host_memory_is_recycled():
    recycler = host_memory._RECYCLER
    a = host_memory.empty((3, 1, 1 << 20))
    a[...] = 1.5
    view = a[1:]
    del a
    gc.collect()
    held = recycler.held
    del view  # the last array looking at the mapping: it goes back to the free list
    gc.collect()
    assert recycler.held == held + (12 << 20)
    b = host_memory.empty((3, 1, (1 << 20) - 5))  # fits the freed mapping: it is taken again
    assert b.shape == (3, 1, (1 << 20) - 5) and recycler.held == held
    small = host_memory.empty((10,))
    assert isinstance(small, np.ndarray) and small.shape == (10,)


def test_no_shared_memory_to_be_had_is_a_memory_error(monkeypatch):
    """The decoder child exits as out of memory (not as a bug) when reserve or put finds no shared memory."""
    def refused(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shared_audio.os, "memfd_create", refused)
    outbox = shared_audio.Outbox()
    with pytest.raises(MemoryError, match="no shared memory"):
        outbox.reserve(1000)
    with pytest.raises(MemoryError, match="no shared memory"):
        outbox.put([np.zeros((1, 1000), np.float32)])
    with pytest.raises(MemoryError, match="no shared memory"):  # a file bigger than an arena: its own memory file
        outbox.put([np.zeros((1, outbox.arena_bytes // 4 + 1), np.float32)])
    outbox.close()
