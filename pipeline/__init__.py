"""The tokenization pipeline: sources -> audio preparation -> buckets -> codec -> Parquet, on Ray.

    job.py          the job wired together (the entry points call `run_job`)
    sources/        one reader per input format; shard listing
    shard_worker.py one shard end to end, without Ray (decode_pool, audio, buckets, schema, writer)
    engine/         scheduling and placement policy (plain code) and the Ray adapter
    verify/         decode-verify a token dataset;  reader.py, training/: reading tokens for training
"""
