"""CPU seconds one decoder process spends on encoded files, the hand-over to its parent included.

    cpu_s = measure(pool, items, per_call=64)

pool: a `pipeline.decode_pool.DecodePool` with one worker, started (a warm-up call ran: the process
start and its imports are outside the measure). items: encoded audio files held in memory (bytes,
duration in seconds). They are sent to the pool in calls of `per_call` files, as a shard's files are;
what is returned is the worker's CPU seconds (user + system, read from /proc) over those calls: the
decode and resampling of `pipeline.audio.prepare` plus the messages, the shared-memory copy and the
process's own Python. Its parent's side (taking the audio) is not in it.
"""

from __future__ import annotations

from pipeline.bench import proc_cpu
from pipeline.decode_pool import DecodePool
from pipeline.records import Sample


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
