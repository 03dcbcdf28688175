"""The decoder child process: `python -m pipeline.decode_child <socket fd> <progress fd>`, started and
spoken to by `decode_pool` (the protocol, crash isolation and the test hooks are described there).

It decodes each file of a request in turn (`audio.prepare`, soxr writing into shared memory), puts
the segments in its shared-memory arenas (`shared_audio.Outbox`) and answers with one entry per file;
before each file it writes the *progress* word (request number, file in it, start time) that lets the
parent blame a crash or hang on exactly one file. Out of memory (shared memory included) exits with
OOM_EXIT; any other Python exception is reported in the reply as our bug.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
import resource
import socket
import struct
import sys
import threading
import time
from multiprocessing.connection import Connection

from . import audio as audio_prep
from . import fault_injection, shared_audio
from .config import AudioConfig
from .records import Sample

FAULTS_ENV = "AUDIOTOK_TEST_DECODER_FAULTS"
OOM_EXIT = 3
PROGRESS = struct.Struct("=qqd")  # (request seq, file of it being decoded, its start: time.monotonic())


def watch_parent(parent: int) -> None:
    """Exit this (child) process once `parent` is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _planted_fault(spec: str, key: str, attempt: int) -> None:
    for item in filter(None, spec.split(",")):
        mode, _, target = item.partition(":")
        if target != key:
            continue
        if mode == "segv" or (mode == "segv-once" and attempt == 1):
            import ctypes

            ctypes.string_at(0)
        elif mode == "abort":
            os.abort()
        elif mode == "hang":
            while True:
                time.sleep(1.0)
        elif mode == "raise":
            raise RuntimeError(f"planted fault for key {key!r} ({FAULTS_ENV})")


def main(fd: int, progress_fd: int) -> None:
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    sock = socket.socket(fileno=os.dup(fd))  # the same socket, for passing descriptors
    outbox = shared_audio.Outbox()
    progress = mmap.mmap(progress_fd, PROGRESS.size)
    os.close(progress_fd)
    conn = Connection(fd)
    init = json.loads(conn.recv_bytes())
    limit = init["memory_limit"]
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cfg = AudioConfig(**init["audio"])
    other = [tuple(t) for t in init.get("other", [])]
    faults = os.environ.get(FAULTS_ENV, "")

    conn.send_bytes(b'{"ready": true}')
    while True:
        try:
            head = json.loads(conn.recv_bytes())
            data = conn.recv_bytes()
        except EOFError:
            return
        files, handovers, offset, error = [], [], 0, None
        try:
            outbox.release(head["free"])
        except Exception:  # noqa: BLE001 - our bug: reported, the parent raises it
            import traceback

            error = traceback.format_exc()[-4000:]
        for position, f in enumerate(head["files"] if error is None else ()):
            PROGRESS.pack_into(progress, 0, head["seq"], position, time.monotonic())
            size = int(f["size"])
            blob = data if size == len(data) and offset == 0 else data[offset : offset + size]
            offset += size
            try:
                if faults:
                    _planted_fault(faults, f["key"], f["try"])
                fault_injection.maybe_fault("decode", f["key"])
                sample = Sample(f["key"], f["source"], blob, f["ext"])
                segments, rejections = audio_prep.prepare(sample, cfg, init["sample_rate"], init["channels"], other,
                                                          outbox.reserve)  # soxr writes into shared memory
            except MemoryError:
                os._exit(OOM_EXIT)
            except Exception:  # noqa: BLE001 - any other exception is our bug: reported, the parent raises it
                import traceback

                error = traceback.format_exc()[-4000:]
                break
            del blob, sample
            try:
                audio, handover = outbox.put([s.audio for s in segments] + [a for s in segments for a in s.other_audio])
            except MemoryError:  # no shared memory to be had included
                os._exit(OOM_EXIT)
            handovers.append(handover)
            files.append({"audio": audio,
                          "segments": [{"key": s.key, "start_s": s.start_s, "duration_s": s.duration_s,
                                        "shape": list(s.audio.shape), "rate": s.rate,
                                        "other_shapes": [list(a.shape) for a in s.other_audio]} for s in segments],
                          "rejections": [dataclasses.asdict(r) for r in rejections]})
            del segments
        del data
        reply = {"files": files, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if error is not None:
            reply["error"] = error
        conn.send_bytes(json.dumps(reply).encode())
        for handover in handovers:
            shared_audio.send_fd(sock, handover)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
