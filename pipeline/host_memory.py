"""Large host arrays on recycled transparent huge pages: no page faults once warm.

Padded batches are hundreds of MB per hour of audio. In fresh memory with 4 KiB
pages the kernel faults in and zeroes every page (345 MB, ~84,000 pages, per copy of an hour of
24 kHz mono audio), which cost the actor more than copying the audio. Here large arrays live in
anonymous mappings advised MADV_HUGEPAGE (2 MiB pages where `transparent_hugepage/enabled` allows
it, ordinary pages elsewhere), and a
mapping no array looks at any more goes back to a free list (`RETAIN_BYTES` at most, process-wide)
for the next array of at most its size: after the first batches nothing is faulted in again.

    empty(shape, dtype)        an uninitialised array (callers write every element they read)
    keep_freed_heap()          the same for what torch allocates on the host (the encoder's
                               activations on the CPU): malloc keeps freed memory for the next call

torch's CPU tensors come from glibc malloc. By default a block above a threshold that adapts as blocks are
freed (at most 32 MiB) is a fresh mmap, and a free top of the heap beyond twice that threshold goes back
to the kernel: the encoder's activations (tens of MB per layer for a few seconds of 24 kHz audio) are then
faulted in again, page by page, in many passes, and how many depends on the history of the process's heap,
so the same encode costs a varying amount of kernel time (docs/actor_bench.md). `keep_freed_heap` fixes
both thresholds high, as `decode_pool.child_env` does for the decoders through the environment: after the
first passes the heap holds the activations' peak and nothing is faulted in again. Values are unchanged.

(Decoded audio is not copied here: the actor reads it where the decoders wrote it, `shared_audio`.)
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import platform
import threading
import weakref

import numpy as np

HUGE = 2 << 20
RETAIN_BYTES = 1 << 30  # free mappings kept for reuse, at most (the rest are unmapped)
_ADVICE = getattr(mmap, "MADV_HUGEPAGE", None)


class _Recycler:
    def __init__(self, retain: int):
        self.retain = retain
        self.lock = threading.Lock()
        self.free: list[tuple[int, int, mmap.mmap]] = []  # (size, id, mapping), sorted by size
        self.held = 0

    def get(self, nbytes: int) -> mmap.mmap:
        size = max(HUGE, -(-nbytes // HUGE) * HUGE)
        with self.lock:
            i = bisect.bisect_left(self.free, (size, -1))
            if i < len(self.free) and self.free[i][0] <= 2 * size:  # best fit, not twice too large
                got = self.free.pop(i)
                self.held -= got[0]
                return got[2]
        mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if _ADVICE is not None:
            try:
                mm.madvise(_ADVICE)
            except OSError:  # no transparent huge pages here: ordinary pages
                pass
        return mm

    def put(self, mm: mmap.mmap) -> None:  # (a finalizer: any thread)
        with self.lock:
            if self.held + len(mm) <= self.retain:
                bisect.insort(self.free, (len(mm), id(mm), mm))
                self.held += len(mm)
                return
        mm.close()

    def wrap(self, mm: mmap.mmap) -> np.ndarray:
        """uint8 over all of `mm`; `mm` comes back here once that array and every view of it are gone."""
        whole = np.frombuffer(mm, np.uint8)
        weakref.finalize(whole, self.put, mm)
        return whole


_RECYCLER = _Recycler(RETAIN_BYTES)


def empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """np.empty(shape, dtype); from recycled huge pages when it is at least one huge page large."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    if count * dtype.itemsize < HUGE:
        return np.empty(shape, dtype)
    whole = _RECYCLER.wrap(_RECYCLER.get(count * dtype.itemsize))
    return whole[: count * dtype.itemsize].view(dtype).reshape(shape)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
HEAP_MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap (a 30 s item's activation is ~92 MB)
HEAP_TRIM_THRESHOLD = 1 << 30  # free heap top kept, at most


def keep_freed_heap(mmap_threshold: int = HEAP_MMAP_THRESHOLD, trim_threshold: int = HEAP_TRIM_THRESHOLD) -> bool:
    """Set glibc malloc's fixed mmap and trim thresholds for this process (see the module docstring).
    True if set; False where the C library is not glibc (nothing changes there)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt in this process's C library
        return False
    set_mmap = mallopt(_M_MMAP_THRESHOLD, mmap_threshold)  # 1 when accepted
    set_trim = mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    return bool(set_mmap and set_trim)
