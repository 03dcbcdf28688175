"""Crash-isolated decoding: `audio.prepare` runs in a few child processes, one file at a time each.

libsndfile is C code fed hostile bytes: a segfault, an abort or a hang in it must cost one file, not
the actor. Each worker is `python -m pipeline.decode_child <fd> <fd>` (`decode_child.py`), a fresh
interpreter (no fork of the threaded Ray worker) that talks to its parent over a socketpair with
length-prefixed byte messages only (JSON headers and raw bytes; nothing is pickled in either
direction), the decoded audio in shared memory (`shared_audio`: arenas per decoder, their memfds
passed on the socket; the actor batches straight from them and frees each segment's space when it is
done with it):

    parent ─► child   {"seq", "free", "files": [{"key", "source", "ext", "try", "size"}, ...]}  then the
                      files' encoded bytes, one after the other ("free": arena space the parent no
                      longer looks at; "seq": the request's number)
    child  ─► parent  {"files": [{"audio", "segments": [{key, start_s, duration_s, shape, rate, other_shapes}],
                       "rejections": [...]}, ...], "rss_mb"}, one entry per file of the request, in order
                      ("audio": where in shared memory that file's float32 [C, T] segments are), then
                      the descriptors of the new arenas (or own memory files), in the files' order;
                      on a Python exception, "error": traceback and the entries of the files before it
    other_shapes: the segment's audio for each other token stream (`stream_audio`), put after all the segments'

A request carries several small files (up to REQUEST_FILES, REQUEST_BYTES of encoded data beyond its
first file), so the actor's cost per file (messages, JSON, waking up) is paid once per request. A
*progress* word in shared memory (request number, file in it, when it started: CLOCK_MONOTONIC)
says which file the child is decoding, so a crash or a hang is still the fault of exactly one file:
the files of the request before it and after it are sent again as if never tried (those before it
are decoded again; their replies died with the process).

A worker that dies (EOF on its socket: segfault, abort, out of memory, killed from outside) is
replaced; its file is tried again up to `AudioConfig.decoder_crash_retries` more times, then
rejected as `decoder_crash`. A file still decoding `AudioConfig.decode_timeout_s` after it started has its
worker killed and is rejected as `decoder_crash` at once (a hang is not retried). A Python
exception in the child is a bug in our code, not bad data: it is raised in the parent
(`DecoderError`, naming the key), as is a worker that fails to start START_TRIES times in a row.
Children exit when the parent goes away (EOF, or a watchdog on the parent pid), and run under RLIMIT_AS as a last guard.

Test hook, inert unless set: `AUDIOTOK_TEST_DECODER_FAULTS="segv:<key>,abort:<key>,..."` makes the
child do that instead of decoding the sample with that exact key. Modes: `segv` (a real SIGSEGV via
ctypes), `abort` (os.abort), `segv-once` (SIGSEGV on the first try only), `hang` (sleep until
killed), `raise` (a Python exception). Read by the child from its environment only. The named
stage `decode` of `pipeline.fault_injection` (`AUDIOTOK_TEST_FAULTS`) fires in the child too, before each
sample.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from . import audio as audio_prep
from . import shared_audio
from .config import AudioConfig
from .decode_child import OOM_EXIT, PROGRESS
from .errors import AudiotokError
from .records import Rejection, Sample, Segment
from .rejects import check_reason

START_TIMEOUT_S = 120.0
START_TRIES = 3  # a worker that dies while starting is started again (it may have been killed)
REQUEST_FILES = 16  # most files in one request to a decoder
REQUEST_BYTES = 2 << 20  # most encoded bytes in one request, beyond its first file
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def default_processes(node_cpus: int | None = None, actors_on_node: int = 1, reserve: int = 1) -> int:
    """Decoder processes for `decode_threads: 0`: the node's cores shared by the actors on it, less
    `reserve` cores for each actor's own work (reading, batching, encoding, writing)."""
    cpus = node_cpus or len(os.sched_getaffinity(0))
    return max(1, int(cpus) // max(1, actors_on_node) - reserve)


def child_env() -> dict[str, str]:
    """The environment of our helper processes: one BLAS/OpenMP thread, this package importable, and
    glibc's malloc keeping freed memory for reuse (allocations up to 32 MiB from the heap, up to 64 MiB
    of free heap kept) instead of returning it to the kernel after each file, so a decoder stops
    faulting in fresh pages for every file (docs/actor_bench.md)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
            "PYTHONPATH": os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}


class DecoderError(AudiotokError):
    """Our decoding code failed (a Python exception in a worker, or a worker that cannot start)."""


@dataclass
class _Request:
    """Files sent to a worker and not answered yet."""

    indices: list[int]  # samples, in the order the child decodes them
    seq: int
    sent: float  # time.monotonic()
    grace: float = 0.0  # seconds the parent waited for the byte budget meanwhile: not held against it


class _Worker:
    def __init__(self, init: bytes):
        parent, child = socket.socketpair()
        env = child_env()
        progress = os.memfd_create("audiotok-progress", os.MFD_CLOEXEC)
        try:
            os.ftruncate(progress, PROGRESS.size)
            self.progress = mmap.mmap(progress, PROGRESS.size)
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.decode_child", str(child.fileno()),
                                          str(progress)], pass_fds=[child.fileno(), progress], env=env,
                                         stdin=subprocess.DEVNULL)
        finally:
            child.close()
            os.close(progress)
        self.sock = socket.socket(fileno=os.dup(parent.fileno()))  # the same socket, for passing descriptors
        self.inbox = shared_audio.Inbox()
        self.conn = Connection(parent.detach())
        self.request: _Request | None = None
        self.seq = 0
        try:
            self.conn.send_bytes(init)
            if not self.conn.poll(START_TIMEOUT_S) or json.loads(self.conn.recv_bytes()) != {"ready": True}:
                raise DecoderError(f"decoder process did not start within {START_TIMEOUT_S} s")
        except (EOFError, OSError) as exc:
            self.kill()
            raise DecoderError(f"decoder process died while starting (exit code {self.proc.wait()})") from exc

    def kill(self) -> int | None:
        """Kill the process (if alive) and reap it; returns its exit code."""
        try:
            self.proc.kill()
        except OSError:
            pass
        self.conn.close()
        self.sock.close()
        self.inbox.close()
        code = self.proc.wait()
        self.progress.close()
        return code

    def current(self) -> tuple[int, float]:
        """(position in the request of the file being decoded, when it started): the progress word
        when it is this request's, else its first file, started when sent."""
        request = self.request
        seq, position, started = PROGRESS.unpack_from(self.progress)
        if seq != request.seq or not 0 <= position < len(request.indices):
            return 0, request.sent
        return position, max(started, request.sent)

    def deadline(self, timeout_s: float) -> float:
        return self.current()[1] + timeout_s + self.request.grace


class DecodePool:
    """`prepare_all(samples)`: `audio.prepare` of each sample in `workers` crash-isolated processes.

    Results are in sample order and equal to calling `audio.prepare` in this process, except that
    a sample whose decoder dies or hangs becomes a `decoder_crash` Rejection. One caller at a time.
    """

    def __init__(self, cfg: AudioConfig, sample_rate: int, channels: int, workers: int = 2,
                 other: list[tuple[int, int]] = ()):
        self.cfg, self.sample_rate, self.channels = cfg, sample_rate, channels
        self.other = [(int(r), int(c)) for r, c in other]  # the other token streams' (rate, channels)
        limit = cfg.max_file_bytes + (6 + 2 * len(self.other)) * cfg.max_decoded_bytes + (1 << 30)
        self._init = json.dumps({"audio": dataclasses.asdict(cfg), "sample_rate": sample_rate,
                                 "channels": channels, "memory_limit": limit, "other": self.other}).encode()
        self.workers: list[_Worker | None] = [None] * max(1, workers)
        self.restarts = 0  # workers replaced after dying or hanging, over the pool's life
        self.lock = threading.Lock()
        self.admit: Callable[[int], None] | None = None  # of the current call

    def prepare_all(self, samples: list[Sample], admit: Callable[[int], None] | None = None,
                    ) -> tuple[list[tuple[list[Segment], list[Rejection]]], dict]:
        """([(segments, rejections)] per sample, stats {decoder_restarts, decoder_peak_rss_mb} of this call).

        admit(nbytes), when given, is called with the size of each decoded file's float32 audio
        before it is received, and may wait (`decoded_budget`); the time it waits does not count
        against the other files' `decode_timeout_s`. What it raises ends the call, as any error does.
        """
        with self.lock:
            self.admit = admit
            results: list = [None] * len(samples)
            todo: deque[int] = deque()
            for i, s in enumerate(samples):
                if s.reject is not None or not s.data:  # nothing to decode: answered here
                    results[i] = audio_prep.prepare(s, self.cfg, self.sample_rate, self.channels, self.other)
                else:
                    todo.append(i)
            stats = {"decoder_restarts": 0, "decoder_peak_rss_mb": 0.0}
            tries = [0] * len(samples)
            try:
                self._run(samples, todo, results, tries, stats)
            except BaseException:
                for n, w in enumerate(self.workers):  # busy workers hold replies nobody will read
                    if w is not None and w.request is not None:
                        w.kill()
                        self.workers[n] = None
                raise
            return results, stats

    def _run(self, samples, todo, results, tries, stats) -> None:
        timeout_s = self.cfg.decode_timeout_s
        while todo or any(w is not None and w.request is not None for w in self.workers):
            for n in range(len(self.workers)):
                if todo and (self.workers[n] is None or self.workers[n].request is None):
                    self.workers[n] = self.workers[n] or self._start()
                    self._send(self.workers[n], samples, self._next_request(samples, todo), tries)
            busy = {w.conn: n for n, w in enumerate(self.workers) if w is not None and w.request is not None}
            timeout = max(0.0, min(self.workers[n].deadline(timeout_s) for n in busy.values()) - time.monotonic())
            for conn in wait(list(busy), timeout):
                n = busy[conn]
                worker = self.workers[n]
                try:
                    rss = self._receive(worker, samples, results)
                    stats["decoder_peak_rss_mb"] = max(stats["decoder_peak_rss_mb"], rss)
                    worker.request = None
                except (EOFError, OSError):
                    index = self._blame(worker, tries, todo)
                    code = self._replace(n, stats)
                    why = "out of memory" if code == OOM_EXIT else f"exit code {code}"
                    self._crashed(samples[index], index, tries, todo, results, f"decoder process died ({why})",
                                  retry=tries[index] <= self.cfg.decoder_crash_retries)
            now = time.monotonic()
            for n, w in enumerate(self.workers):
                if w is not None and w.request is not None and w.deadline(timeout_s) <= now:
                    index = self._blame(w, tries, todo)
                    self._replace(n, stats)
                    self._crashed(samples[index], index, tries, todo, results,  # a hang is not retried
                                  f"decoding took longer than decode_timeout_s {timeout_s}", retry=False)

    def _next_request(self, samples, todo: deque) -> list[int]:
        """The next files for a free worker, taken from the front of `todo`: at most REQUEST_FILES and
        REQUEST_BYTES beyond the first, and no more than a fair share of what is left (about half of
        it per worker, so the pool's workers all get some)."""
        most = max(1, min(REQUEST_FILES, -(-len(todo) // (2 * len(self.workers)))))
        indices = [todo.popleft()]
        size = len(samples[indices[0]].data)
        while todo and len(indices) < most and size + len(samples[todo[0]].data) <= REQUEST_BYTES:
            size += len(samples[todo[0]].data)
            indices.append(todo.popleft())
        return indices

    @staticmethod
    def _blame(worker: _Worker, tries, todo: deque) -> int:
        """After `worker` died or hung: the sample it was decoding; the request's others go back to
        the front of `todo` as if never tried."""
        position, _ = worker.current()
        indices = worker.request.indices
        for index in reversed(indices[:position] + indices[position + 1:]):
            tries[index] -= 1
            todo.appendleft(index)
        return indices[position]

    def _start(self) -> _Worker:
        for attempt in range(1, START_TRIES + 1):
            try:
                return _Worker(self._init)
            except DecoderError:
                if attempt == START_TRIES:
                    raise
        raise AssertionError("unreachable")

    def _send(self, worker: _Worker, samples: list[Sample], indices: list[int], tries: list[int]) -> None:
        worker.seq += 1
        files = []
        for index in indices:
            tries[index] += 1
            s = samples[index]
            files.append({"key": s.key, "source": s.source, "ext": s.ext, "try": tries[index], "size": len(s.data)})
        head = {"seq": worker.seq, "free": worker.inbox.freed(), "files": files}
        worker.request = _Request(indices, worker.seq, time.monotonic())
        try:
            worker.conn.send_bytes(json.dumps(head).encode())
            worker.conn.send_bytes(samples[indices[0]].data if len(indices) == 1
                                   else b"".join(samples[i].data for i in indices))
        except OSError:
            pass  # the worker died; wait() reports EOF on its socket next

    def _receive(self, worker: _Worker, samples: list[Sample], results: list) -> float:
        """Take a worker's reply to its request into `results`; returns its peak RSS (MB)."""
        reply = json.loads(worker.conn.recv_bytes())
        indices = worker.request.indices
        files = reply.get("files", [])
        answered = len(files) < len(indices) if "error" in reply else len(files) == len(indices)
        if not answered:  # an error ends the request: the files before it only
            raise OSError(f"a decoder answered {len(files)} files to a request of {len(indices)}")
        done = [(index, self._take(worker, samples[index], file)) for index, file in zip(indices, files)]
        if "error" in reply:
            sample = samples[indices[len(files)]]
            raise DecoderError(f"decoding {sample.key!r} from {sample.source} failed in our code:\n{reply['error']}")
        for index, result in done:
            results[index] = result
        return reply["rss_mb"]

    def _take(self, worker: _Worker, sample: Sample, reply: dict) -> tuple[list[Segment], list[Rejection]]:
        """One file's segments (views of shared memory, admitted to the byte budget) and rejections."""
        if self.admit is not None and reply["segments"]:
            waited = time.monotonic()
            self.admit(sum(shared_audio.nbytes(shape) for s in reply["segments"]
                           for shape in [s["shape"], *s.get("other_shapes", [])]))
            waited = time.monotonic() - waited
            for w in self.workers:  # the others' decode time went on while this one waited
                if w is not None and w.request is not None and w is not worker:
                    w.request.grace += waited
        shapes = [tuple(s["shape"]) for s in reply["segments"]]
        other = [tuple(shape) for s in reply["segments"] for shape in s.get("other_shapes", [])]
        arrays = worker.inbox.take(worker.sock, reply["audio"], shapes + other)
        segments = [Segment(s["key"], sample.source, audio, s["start_s"], s["duration_s"], dict(sample.meta),
                            s.get("rate"), sample.path) for s, audio in zip(reply["segments"], arrays)]
        rest = iter(arrays[len(shapes):])  # the other streams' pieces, segment by segment
        for seg in segments:
            seg.other_audio = [next(rest) for _ in self.other]
        rejections = [Rejection(r["key"], sample.source, check_reason(r["reason"]), r["detail"])
                      for r in reply["rejections"]]
        return segments, rejections

    def _replace(self, n: int, stats: dict) -> int | None:
        code = self.workers[n].kill()
        self.workers[n] = None  # restarted when next needed
        self.restarts += 1
        stats["decoder_restarts"] += 1
        return code

    @staticmethod
    def _crashed(sample, index, tries, todo, results, detail, retry: bool) -> None:
        if retry:
            todo.appendleft(index)
        else:
            results[index] = ([], [Rejection(sample.key, sample.source, "decoder_crash",
                                             f"{detail}; try {tries[index]} of this file")])

    def close(self) -> None:
        for n, w in enumerate(self.workers):
            if w is not None:
                w.kill()
                self.workers[n] = None
