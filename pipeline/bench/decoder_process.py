"""CPU seconds one decoder process spends on encoded files, the hand-over to its parent included.

    cpu_s = measure(pool, items, per_call=64)

pool: a `pipeline.decode_pool.DecodePool` with one worker, started (a warm-up call ran: the process
start and its imports are outside the measure). items: encoded audio files held in memory (bytes,
duration in seconds). They are sent to the pool in calls of `per_call` files, as a shard's files are;
what is returned is the worker's CPU seconds (user + system, read from /proc) over those calls: the
decode and resampling of `pipeline.audio.prepare` plus the messages, the shared-memory copy and the
process's own Python. Its parent's side (taking the audio) is not in it.

    allocate_as_decoder()    this process's malloc set as a decoder process's (decode_pool.child_env)

for timing decoder work in this process (pipeline/bench/stage_ceilings.py): with glibc's defaults,
every array of a few MB (a decoded or resampled file) is a fresh mapping, its pages faulted in and
zeroed each time, which a decoder process does not pay.
"""

from __future__ import annotations

import ctypes

from pipeline.bench import proc_cpu
from pipeline.decode_pool import DecodePool, child_env
from pipeline.records import Sample

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def allocate_as_decoder() -> bool:
    """glibc's mallopt with the decoder processes' MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_;
    False (nothing changed) where there is no glibc."""
    env = child_env()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(env["MALLOC_MMAP_THRESHOLD_"]))
                and libc.mallopt(_M_TRIM_THRESHOLD, int(env["MALLOC_TRIM_THRESHOLD_"])))


def measure(pool: DecodePool, items: list[tuple[bytes, float]], per_call: int = 64) -> float:
    worker = pool.workers[0]
    if len(pool.workers) != 1 or worker is None:
        raise ValueError("decoder_process.measure needs a started DecodePool of one worker (run a warm-up call)")
    pid = worker.proc.pid
    samples = [Sample(f"item{i:06d}", "decoder-process-bench", data, "flac") for i, (data, _) in enumerate(items)]
    before = proc_cpu.children()[pid].cpu_s
    for start in range(0, len(samples), per_call):
        pool.prepare_all(samples[start : start + per_call])
    if pool.workers[0] is not worker:
        raise RuntimeError("the decoder process was replaced during the measure (it crashed or hung)")
    return proc_cpu.children()[pid].cpu_s - before
