"""Virtual time for a store's requests: each request runs on one of `lanes` connections, in simulated seconds.

    main thread   ─req─►─req─►              (one after another: each starts when the last ended)
    pool threads     ├req┤├req┤├req┤ ...     (start together, at most `lanes` at once; the rest wait
                     ├req┤├req┤              for a lane, and that wait is charged)

A request issued from the main thread starts once every earlier request has ended (the caller used
their results). Requests from other threads (a thread pool the caller or the store runs) are taken as
independent of each other: each is issued at the instant the main thread handed the work over (its
first request from another thread after one of its own), and takes the lane that frees first. A
request that needs another's result (the next page of a listing, a read after the HEAD that gave
the size) passes that one's end as `after`. `now` is the time the last request ended.
"""

from __future__ import annotations

import threading


class SimulatedClock:
    def __init__(self, lanes: int):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = [0.0] * lanes
        self.now = 0.0  # simulated seconds since the clock started: the end of the last request
        self.waited = 0.0  # simulated seconds requests spent waiting for a lane
        self._handed_over = 0.0  # when the main thread last handed work to other threads
        self._main_last = True  # the last request came from the main thread
        self._local = threading.local()  # per thread: the end of its last request
        self._lock = threading.Lock()

    def issue(self, after: float = 0.0) -> float:
        """The simulated instant a request made now by this thread is issued (not before `after`)."""
        with self._lock:
            if threading.current_thread() is threading.main_thread():
                self._main_last = True
                return max(self.now, after)
            if self._main_last:
                self._main_last, self._handed_over = False, self.now
            return max(self._handed_over, after)

    def last_end(self) -> float:
        """When this thread's last request ended."""
        return getattr(self._local, "end", 0.0)

    def run(self, issued: float, seconds: float) -> float:
        """Schedule a request issued at `issued` that takes `seconds` on a lane; returns when it ends."""
        with self._lock:
            lane = min(range(len(self.lanes)), key=self.lanes.__getitem__)
            start = max(issued, self.lanes[lane])
            end = self.lanes[lane] = start + seconds
            self.waited += start - issued
            self.now = max(self.now, end)
            self._local.end = end
            return end
