"""Decoded audio handed from a decoder process to the actor through shared memory, not a socket.

    child:  outbox.release(freed)              space the parent no longer looks at (from its request)
            buf = outbox.reserve(n)            optional: where the next put writes (soxr writes a file's
                                               resampled audio there: `soxr_direct`)
            meta, fd = outbox.put(arrays)       arrays copied into shared memory (not those already
                                               where they go); send meta (JSON),
            send_fd(sock, fd)                  then the descriptor when there is one to pass
    parent: arrays = inbox.take(sock, meta, shapes)     views of the shared memory, no copy
            freed = inbox.freed()              to send with the next request to that child

Each decoder writes a file's segments one after the other into an *arena*, an anonymous memory
file (`os.memfd_create`) of `keep_bytes` mapped by the child and by the parent. The parent does
not copy them out: the segments it takes are views of its mapping, and the batches are built
straight from there. The space of a segment is freed once no array in the parent looks at it any
more (a finalizer counts it in `freed`, and the next request to that child carries the count), so
the child writes a file only where nothing the parent holds lies: an arena is filled from its
start, and is written again from its start only once every segment in it is freed; meanwhile the
child goes on in another arena (a free one it kept, else a new one, its descriptor passed with
SCM_RIGHTS). The child maps only the arena it writes (its address space stays one arena, however
much audio the parent holds); it keeps `keep_free_bytes` of free arenas at most and closes the
others, telling the parent (`"closed"`), which then unmaps them. Kept arenas are written again
without a page fault or a page zeroed; they hold no more than the parent held at its peak. A file
with more decoded audio than an arena gets a memory file of its own, mapped by the parent as the
segments' storage and freed with them. Nothing is pickled; a child that dies before its descriptor
arrives is an EOF (EOFError), a wrong descriptor an OSError, as a broken socket is. The parent's
views of a dead child's arenas stay valid (its mappings hold the memory) until they are freed.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import socket
import weakref
from collections import Counter
from dataclasses import dataclass

import numpy as np

KEEP_BYTES = 64 << 20  # the size of an arena; larger files get a memory file of their own
KEEP_FREE_BYTES = 1 << 30  # free arenas a child keeps for reuse, at most (the rest are closed)
_ALIGN = 64
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def nbytes(shape) -> int:
    """Bytes of a float32 array of `shape`."""
    count = 4
    for n in shape:
        count *= int(n)
    return count


def _layout(shapes: list[tuple[int, ...]]) -> tuple[list[int], int]:
    """(byte offset of each float32 array of `shapes`, packed one after the other; total bytes)."""
    offsets, total = [], 0
    for shape in shapes:
        offsets.append(total)
        total += -(-nbytes(shape) // _ALIGN) * _ALIGN
    return offsets, total


def _memfd(nbytes: int) -> int:
    fd = os.memfd_create("audiotok-decoded", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, nbytes)
    except OSError:
        os.close(fd)
        raise
    return fd


def _map(fd: int, nbytes: int, populate: bool = False) -> mmap.mmap:
    flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
    return mmap.mmap(fd, nbytes, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _write(mm: mmap.mmap, arrays: list[np.ndarray], offsets: list[int]) -> None:
    start = _address(mm)
    for a, offset in zip(arrays, offsets):
        if a.size and a.ctypes.data == start + offset and a.dtype == np.float32 and a.flags.c_contiguous:
            continue  # built in place (`Outbox.reserve`)
        view = np.frombuffer(mm, np.float32, a.size, offset).reshape(a.shape)
        np.copyto(view, a, casting="same_kind")
        del view  # a mapping closes only once no array looks at it


def _address(mm: mmap.mmap) -> int:
    return np.frombuffer(mm, np.uint8, 1).ctypes.data


def _unmap(mm: mmap.mmap) -> None:
    """Close `mm` now, or, while an array of this process still looks at it, once none does."""
    try:
        mm.close()
    except BufferError:
        pass  # unmapped when the last array looking at it goes


@dataclass(eq=False)
class _Arena:
    id: int
    fd: int
    size: int
    used: int = 0  # bytes written from the start
    live: int = 0  # segments in it the parent has not freed
    mm: mmap.mmap | None = None  # mapped while it is the one written
    passed: bool = False  # its descriptor went to the parent


@contextlib.contextmanager
def _as_out_of_memory():
    """No shared memory to be had (memfd, ftruncate, mmap or dup failing) is running out of memory."""
    try:
        yield
    except OSError as exc:
        raise MemoryError(f"no shared memory to be had: {exc}") from exc


class Outbox:
    """The child's side: its arenas. `reserve` and `put` raise MemoryError when no shared memory
    can be had."""

    def __init__(self, keep_bytes: int = KEEP_BYTES, keep_free_bytes: int = KEEP_FREE_BYTES):
        self.arena_bytes = keep_bytes
        self.keep_free = max(0, keep_free_bytes // keep_bytes)  # arenas
        self.arenas: dict[int, _Arena] = {}
        self.current: _Arena | None = None
        self.ids = itertools.count()
        self.closed: list[int] = []  # arenas closed since the last reply: the parent unmaps them

    def release(self, freed: dict) -> None:
        """Segments the parent freed, {arena id: count} (ids as JSON keys too)."""
        for key, count in freed.items():
            arena = self.arenas.get(int(key))
            if arena is None:
                raise ValueError(f"freed segments of an unknown arena {key}")
            arena.live -= int(count)
            if arena.live < 0:
                raise ValueError(f"arena {key}: more segments freed than were put")
            if arena.live == 0:
                arena.used = 0  # nothing in it is looked at: written again from its start
                if arena is not self.current:
                    self._trim()

    def _trim(self) -> None:
        free = [a for a in self.arenas.values() if a.live == 0 and a is not self.current]
        for arena in free[self.keep_free:]:
            self._close(arena)

    def _close(self, arena: _Arena) -> None:
        if arena.mm is not None:
            _unmap(arena.mm)
        os.close(arena.fd)
        del self.arenas[arena.id]
        self.closed.append(arena.id)

    def _switch(self) -> None:
        """Make a free kept arena, else a new one, the one written."""
        if self.current is not None:
            _unmap(self.current.mm)  # the parent's mapping holds what it still looks at
            self.current.mm = None
        free = next((a for a in self.arenas.values() if a.live == 0 and a is not self.current), None)
        if free is None:
            fd = _memfd(self.arena_bytes)
            free = _Arena(next(self.ids), fd, self.arena_bytes)
            self.arenas[free.id] = free
        free.mm = _map(free.fd, free.size, populate=True)  # no page fault per page as it is written
        previous, self.current = self.current, free
        if previous is not None and previous.live == 0:
            self._trim()

    def _room(self, nbytes: int) -> _Arena:
        """The arena written, with `nbytes` free after what is used in it (nbytes <= an arena)."""
        if self.current is None or self.current.used + nbytes > self.current.size:
            self._switch()
        return self.current

    def reserve(self, count: int) -> np.ndarray:
        """A float32 array of `count` values where the next `put` writes its first array (in shared
        memory when it fits in an arena): an array built there and put first is not copied. Valid
        until the next `reserve` or `put`."""
        nbytes = -(-4 * count // _ALIGN) * _ALIGN
        if not nbytes or nbytes > self.arena_bytes:
            return np.empty(count, np.float32)
        with _as_out_of_memory():
            arena = self._room(nbytes)
        return np.frombuffer(arena.mm, np.float32, count, arena.used)

    def _apart(self, arrays: list[np.ndarray], offsets: list[int]) -> list[np.ndarray]:
        """`arrays`, each one that lies in the arena written but not at its offset there copied out
        first (writing the others could overwrite it)."""
        start = _address(self.current.mm)
        end = start + self.current.size
        return [a.copy() if start <= a.ctypes.data < end and a.ctypes.data != start + o else a
                for a, o in zip(arrays, offsets)]

    def put(self, arrays: list[np.ndarray]) -> tuple[dict, int | None]:
        """Copy `arrays` (float32 [C, T]) into shared memory: (meta for the reply, a descriptor to
        pass after it, or None). The caller closes the descriptor once passed."""
        with _as_out_of_memory():
            meta, fd = self._put(arrays)
        if self.closed:
            meta["closed"], self.closed = self.closed, []
        return meta, fd

    def _put(self, arrays: list[np.ndarray]) -> tuple[dict, int | None]:
        offsets, total = _layout([a.shape for a in arrays])
        if not total:
            meta, fd = {"via": "none"}, None
        elif total > self.arena_bytes:  # a memory file of its own, handed over whole
            fd = _memfd(total)
            with _map(fd, total) as mm:
                _write(mm, arrays, offsets)
            meta = {"via": "own", "size": total}
        else:
            arena = self._room(total)
            base = arena.used
            offsets = [base + o for o in offsets]
            _write(arena.mm, self._apart(arrays, offsets), offsets)
            arena.used += total
            arena.live += len(arrays)
            new, arena.passed = not arena.passed, True
            meta = {"via": "arena", "arena": arena.id, "size": arena.size, "offset": base, "new": new}
            fd = os.dup(arena.fd) if new else None
        return meta, fd

    def close(self) -> None:
        for arena in list(self.arenas.values()):
            self._close(arena)
        self.current, self.closed = None, []


def send_fd(sock: socket.socket, fd: int | None) -> None:
    """Pass `fd` (then close it here); nothing when None."""
    if fd is None:
        return
    try:
        socket.send_fds(sock, [b"A"], [fd])
    finally:
        os.close(fd)


def _receive_fd(sock: socket.socket, nbytes: int) -> mmap.mmap:
    msg, fds, _, _ = socket.recv_fds(sock, 1, 1)
    try:
        if not msg:
            raise EOFError("decoder socket closed before its audio arrived")
        if msg != b"A" or len(fds) != 1 or os.fstat(fds[0]).st_size != nbytes:
            raise OSError(f"expected one audio memory file of {nbytes} bytes; got {len(fds)} descriptor(s)")
        return _map(fds[0], nbytes, populate=True)
    finally:
        for fd in fds:
            os.close(fd)


class Inbox:
    """The parent's side: its mappings of one child's arenas, and the segments it freed in them."""

    def __init__(self):
        self.arenas: dict[int, mmap.mmap] = {}
        self._freed: list[int] = []  # one arena id per segment freed (appended by finalizers, any thread)

    def _free(self, arena: int) -> None:  # (a finalizer: any thread)
        self._freed.append(arena)

    def freed(self) -> dict[int, int]:
        """{arena id: segments freed} since the last call."""
        taken, self._freed = self._freed, []
        return dict(Counter(taken))

    def take(self, sock: socket.socket, meta: dict, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The float32 arrays of `shapes` the child put: views of the shared memory (writable)."""
        for arena in meta.get("closed", ()):
            self.arenas.pop(int(arena), None)  # unmapped once no array looks at it
        offsets, total = _layout(shapes)
        via = meta.get("via")
        if via == "none" and not total:
            return [np.zeros(s, np.float32) for s in shapes]
        if via not in ("own", "arena") or total > int(meta["size"]) - int(meta.get("offset", 0)):
            raise OSError(f"bad audio hand-over {meta} for {total} bytes of audio")
        if via == "own":  # its storage becomes the arrays'
            mm = _receive_fd(sock, int(meta["size"]))
            return [np.frombuffer(mm, np.float32, nbytes(s) // 4, o).reshape(s) for s, o in zip(shapes, offsets)]
        arena, base = int(meta["arena"]), int(meta["offset"])
        if meta["new"]:
            self.arenas[arena] = _receive_fd(sock, int(meta["size"]))
        mm = self.arenas.get(arena)
        if mm is None or len(mm) != int(meta["size"]):
            raise OSError(f"audio arena {arena} of {meta['size']} bytes was never passed")
        out = []
        for shape, offset in zip(shapes, offsets):
            view = np.frombuffer(mm, np.float32, nbytes(shape) // 4, base + offset)
            weakref.finalize(view, self._free, arena)  # counted once no array looks at it
            out.append(view.reshape(shape))
        return out

    def close(self) -> None:
        self.arenas = {}  # each mapping is unmapped once no array looks at it
