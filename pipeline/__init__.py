"""The tokenization pipeline: sources -> audio preparation -> buckets -> codec -> Parquet, on Ray.

    job.py          the job wired together (the entry points call `run_job`); shard_actor.py: each actor's work
    sources/        one reader per input format; shard listing
    shard_worker.py one shard end to end, without Ray (decode_pool, audio, buckets, schema, writer)
    engine/         scheduling and placement policy (plain code) and the Ray adapter (knows no stage)
    verify/         decode-verify a token dataset (no engine); verify_on_ray.py: verify on the Ray adapter
    bench/          benchmarks as library code;  reader.py, training/: reading tokens for training

What each part may import: docs/architecture.md (kept true by tests/test_architecture.py).
"""
