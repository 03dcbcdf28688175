"""Benchmarks as library code (thin entry points in jobs/): what they build, run and measure.

    e2e.py               the transformers baseline vs our job on the same shards (runs, ratio, bound line)
    codec.py             our codec's variants vs transformers: speed and code agreement; corpus loading, k-means
    stage_ceilings.py    decode and resample rates per core, timed in this process
    resource_monitor.py  GPU and CPU busy % and GPU memory while a run is timed
    scale.py             bookkeeping at N shards: job start, row index, fragments, listing, scheduler (jobs.bench_scale)
    synthetic_output.py  an N-shard committed output and input listing from a few real template shards
    object_store.py      fakes3://, a fake object store charging each request on a simulated clock
    sim_clock.py         that clock: requests on 10 connections, in simulated seconds
    cluster.py           a simulated cluster for engine.scheduler: actors finishing shards on a virtual clock
    corpus.py            FLAC tar shards of ≥ N minutes from copies of corpus clips (hard links for repeats)
    stand_in.py          a model with EncodecModel.encode's signature returning seeded random codes at no cost
    proc_cpu.py          CPU seconds of this process and its children, from the OS
    actor.py             ShardTokenizer without Ray: CPU-s per audio-hour of every process, steady × realtime
    ab.py                alternating A/B runs of the actor bench in git worktrees of other refs
    op_profile.py        op-level A/B of the encode between refs: codes, ops by shape, FLOPs, CPU per op
"""
