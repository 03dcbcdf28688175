"""Decoded audio handed from a decoder process to the actor through shared memory, not a socket.

    child:  meta, fd = outbox.put(arrays)       arrays copied into shared memory; send meta (JSON),
            send_fd(sock, fd)                  then the descriptor when there is one to pass
    parent: arrays = inbox.take(sock, meta, shapes)

Each decoder keeps one *arena*, an anonymous memory file (`os.memfd_create`) mapped once by the
child and once by the parent: the child copies a file's segments into it one after the other, the
parent copies them out into its own memory when it takes the reply. The arena is written again
only for the next file, which the parent asks for after it has taken this one, so one arena per
decoder is enough, and after the first files no page of it is faulted in or freed again (a
socket costs a kernel copy each way and the parent's fresh pages). The arena grows (a new memfd,
its descriptor passed with SCM_RIGHTS) up to `KEEP_BYTES`; a file with more decoded audio than
that gets a memory file of its own, mapped by the parent as the segments' storage (no copy) and
freed with them. Nothing is pickled; a child that dies before its descriptor arrives is an EOF
(EOFError), a wrong descriptor an OSError, as a broken socket is.
"""

from __future__ import annotations

import mmap
import os
import socket

import numpy as np

from . import host_memory

KEEP_BYTES = 64 << 20  # the most an arena grows to; larger files get a memory file of their own
_FIRST_BYTES = 8 << 20
_ALIGN = 64
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def _layout(shapes: list[tuple[int, ...]]) -> tuple[list[int], int]:
    """(byte offset of each float32 array of `shapes`, packed one after the other; total bytes)."""
    offsets, total = [], 0
    for shape in shapes:
        offsets.append(total)
        total += -(-4 * int(np.prod(shape)) // _ALIGN) * _ALIGN
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
    for a, offset in zip(arrays, offsets):
        view = np.frombuffer(mm, np.float32, a.size, offset).reshape(a.shape)
        np.copyto(view, a, casting="same_kind")
        del view  # a mapping closes only once no array looks at it


class Outbox:
    """The child's side: its arena."""

    def __init__(self, keep_bytes: int = KEEP_BYTES):
        self.keep = keep_bytes
        self.fd: int | None = None
        self.mm: mmap.mmap | None = None
        self.size = 0

    def put(self, arrays: list[np.ndarray]) -> tuple[dict, int | None]:
        """Copy `arrays` (float32 [C, T]) into shared memory: (meta for the reply, a descriptor to
        pass after it, or None). The caller closes the descriptor once passed."""
        offsets, total = _layout([a.shape for a in arrays])
        if not total:
            return {"via": "none"}, None
        if total > self.keep:  # a memory file of its own, handed over whole
            fd = _memfd(total)
            with _map(fd, total) as mm:
                _write(mm, arrays, offsets)
            return {"via": "own", "size": total}, fd
        new = total > self.size
        if new:
            self.close()
            self.size = min(self.keep, max(total, 2 * self.size, _FIRST_BYTES))
            self.fd = _memfd(self.size)
            self.mm = _map(self.fd, self.size)
        _write(self.mm, arrays, offsets)
        return {"via": "arena", "size": self.size, "new": new}, (os.dup(self.fd) if new else None)

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.mm, self.size = None, None, 0


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
    """The parent's side: its mapping of one child's arena."""

    def __init__(self):
        self.mm: mmap.mmap | None = None
        self.slabs = host_memory.Slabs()  # where the arrays are copied to: huge pages, few faults

    def take(self, sock: socket.socket, meta: dict, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The float32 arrays of `shapes` the child put (writable, the parent's own)."""
        offsets, total = _layout(shapes)
        via = meta.get("via")
        if via == "none" and not total:
            return [np.zeros(s, np.float32) for s in shapes]
        if via not in ("own", "arena") or total > int(meta["size"]):
            raise OSError(f"bad audio hand-over {meta} for {total} bytes of audio")
        if via == "own":  # its storage becomes the arrays'
            mm = _receive_fd(sock, int(meta["size"]))
            return [np.frombuffer(mm, np.float32, int(np.prod(s)), o).reshape(s) for s, o in zip(shapes, offsets)]
        if meta["new"]:
            self.close()
            self.mm = _receive_fd(sock, int(meta["size"]))
        if self.mm is None or len(self.mm) != int(meta["size"]):
            raise OSError(f"audio arena of {meta['size']} bytes was never passed")
        out = []
        for shape, offset in zip(shapes, offsets):
            mine = self.slabs.take(shape)
            np.copyto(mine, np.frombuffer(self.mm, np.float32, mine.size, offset).reshape(shape))
            out.append(mine)
        return out

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
