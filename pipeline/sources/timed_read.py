"""Reading fsspec files with a stall timeout, so storage that stops answering cannot hang a worker.

`open_timed(url, storage_options, timeout_s)` returns a buffered binary file (read, readline,
iteration, seek, tell) whose every call into storage must return within `timeout_s` seconds: the
open, then each read of at most `CHUNK_BYTES`. A call that does not raises `ReadStalled`, a
TimeoutError (so an OSError), which the source readers turn into a `ShardReadError`.

Each storage call runs in a short-lived daemon thread that the caller waits on with a deadline;
small reads (tarfile asks for 10 KiB records) are served from the 4 MiB buffer, so there is one
thread per 4 MiB. A call that never returns leaves its thread blocked in storage: the file is
then closed by another daemon thread, never waited on. A transfer slower than 4 MiB per
`timeout_s` (14 KiB/s at the default 300 s) counts as a stall too; so does a slower one where the
filesystem fetches more than it is asked for in one call (s3fs and gcsfs read whole blocks).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec

CHUNK_BYTES = 4 << 20
T = TypeVar("T")


class ReadStalled(TimeoutError):
    """A storage call made no progress for `source.read_timeout_s` seconds."""


def call_with_deadline(fn: Callable[[], T], timeout_s: float | None, what: str) -> T:
    """`fn()`, or ReadStalled naming `what` when it has not returned after `timeout_s` s (None: wait)."""
    if timeout_s is None:
        return fn()
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def call() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=call, name="audiotok-storage-call", daemon=True).start()
    if not done.wait(timeout_s):
        raise ReadStalled(f"{what}: storage made no progress for {timeout_s:g} s (source.read_timeout_s)")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class _TimedRaw(io.RawIOBase):
    """Raw reads of at most CHUNK_BYTES from an fsspec file object, each under the deadline."""

    def __init__(self, f: Any, timeout_s: float | None, name: str):
        super().__init__()
        self._f, self._timeout, self._name = f, timeout_s, name
        self._stalled = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._f.seekable()

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        n = min(len(buffer), CHUNK_BYTES)
        try:
            data = call_with_deadline(lambda: self._f.read(n), self._timeout, f"reading {self._name}")
        except ReadStalled:
            self._stalled = True
            raise
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            if self._stalled:  # the file's own lock may be held by the blocked read: do not wait on it
                threading.Thread(target=self._f.close, name="audiotok-storage-close", daemon=True).start()
            else:
                self._f.close()
        super().close()


def open_timed(url: str, storage_options: dict[str, Any], timeout_s: float | None) -> io.BufferedReader:
    """`url` opened for binary reading through fsspec; storage calls raise ReadStalled after `timeout_s` s."""
    name = url[:200]
    f = call_with_deadline(lambda: fsspec.open(url, "rb", **storage_options).open(), timeout_s, f"opening {name}")
    return io.BufferedReader(_TimedRaw(f, timeout_s, name), CHUNK_BYTES)
