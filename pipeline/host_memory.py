"""Large host arrays on recycled transparent huge pages: no page faults once warm.

Padded batches are hundreds of MB per hour of audio. In fresh memory with 4 KiB
pages the kernel faults in and zeroes every page (345 MB, ~84,000 pages, per copy of an hour of
24 kHz mono audio), which cost the actor more than copying the audio. Here large arrays live in
anonymous mappings advised MADV_HUGEPAGE (2 MiB pages where `transparent_hugepage/enabled` allows
it, ordinary pages elsewhere), and a
mapping no array looks at any more goes back to a free list (`RETAIN_BYTES` at most, process-wide)
for the next array of at most its size: after the first batches nothing is faulted in again.

    empty(shape, dtype)        an uninitialised array (callers write every element they read)

(Decoded audio is not copied here: the actor reads it where the decoders wrote it, `shared_audio`.)
"""

from __future__ import annotations

import bisect
import mmap
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
