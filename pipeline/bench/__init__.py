"""Benchmarks as library code: what `jobs.bench_e2e`, `jobs.bench_codec` and `jobs.gpu_check` run.

    e2e.py              the transformers baseline vs our job on the same shards (runs, ratio, bound line)
    codec.py            our codec's variants vs transformers: speed and code agreement; corpus loading, k-means
    stage_ceilings.py   decode and resample rates per core, timed in this process
    resource_monitor.py GPU and CPU busy % and GPU memory while a run is timed
"""
