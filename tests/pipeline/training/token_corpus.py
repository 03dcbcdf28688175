"""A small committed token dataset written through the job's writer (schema, manifest, provenance)."""

import numpy as np

from pipeline import schema, writer
from pipeline.config import OutputConfig
from pipeline.records import ShardRecord

N_Q = {"1.5": 2, "6.0": 8}


def provenance() -> dict:
    return {
        "model_name": "test", "model_source": "random:24khz", "checkpoint_sha256": "0" * 64, "codec_config": {},
        "sample_rate": 24000, "channels": 1, "frame_rate": 75, "hop_length": 320, "chunk_length": None,
        "chunk_stride": None, "bandwidths": [1.5, 6.0], "bandwidth_to_num_quantizers": N_Q, "precision": "fp32",
        "pipeline_version": "test", "resampler": {}, "random_weights": True, "num_quantizers": max(N_Q.values()),
        "device": "cpu", "segment_max_s": 60.0,
    }


def write_tokens(out, rows_per_shard: list[int], seed: int = 0, max_frames: int = 300, row_group_rows: int = 3,
                 storage_options: dict | None = None):
    """Shards s0, s1, ... with the given numbers of rows of random lengths 1..max_frames, 8 codebooks, a
    `text` and a `caption` column; returns {key: row dict} of everything committed. storage_options:
    the output filesystem's (`output.storage_options`)."""
    rng = np.random.default_rng(seed)
    rows = {}
    for s, count in enumerate(rows_per_shard):
        shard = []
        for i in range(count):
            frames = int(rng.integers(1, max_frames + 1))
            key = f"s{s}-{i}"
            codes = rng.integers(0, 1024, (8, frames))
            meta = {"text": f"text of {key}", "caption": f"caption {frames}"}
            shard.append(schema.TokenRow(key, f"s{s}.tar", codes, frames * 320 - 5, 5, None, 0.0, frames / 75, meta))
            rows[key] = {"codes": codes, "frames": frames, **meta}
        record = ShardRecord(f"s{s}", f"s{s}", rows=count, rejects=0)
        writer.commit_shard(str(out), f"s{s}", schema.tokens_table(shard, ["text", "caption"]),
                            schema.rejects_table([]), record, schema.file_metadata(provenance()),
                            OutputConfig(row_group_rows=row_group_rows, storage_options=dict(storage_options or {})))
    writer.write_provenance(str(out), provenance(), storage_options=storage_options)
    return rows


def write_markov_tokens(out, files: int = 12, rows_per_file: int = 3, frames: int = 400, follow: float = 0.8,
                        seed: int = 0):
    """Tokens with known structure, 2 codebooks of 256: codebook 0 is a Markov chain (the next code is
    perm[code] with probability `follow`, else uniform), codebook 1 is perm2[codebook 0 of the same
    frame] with probability `follow`. A unigram model gets ~log(256) nats; a model that reads the
    previous frame and, through the delay pattern, codebook 0 of its own frame gets far less."""
    rng = np.random.default_rng(seed)
    perm, perm2 = rng.permutation(256), rng.permutation(256)
    prov = {**provenance(), "codec_config": {"codebook_size": 256}, "bandwidths": [1.5],
            "bandwidth_to_num_quantizers": {"1.5": 2}}
    for f in range(files):
        rows = []
        for i in range(rows_per_file):
            codes = np.zeros((2, frames), dtype=np.int64)
            codes[0, 0] = rng.integers(256)
            for t in range(1, frames):
                codes[0, t] = perm[codes[0, t - 1]] if rng.random() < follow else rng.integers(256)
            follows = rng.random(frames) < follow
            codes[1] = np.where(follows, perm2[codes[0]], rng.integers(0, 256, frames))
            rows.append(schema.TokenRow(f"dir/file{f}#{i}", f"f{f}", codes, frames * 320, 0, None, 0.0,
                                        frames / 75, {"caption": f"file {f}"}))
        record = ShardRecord(f"f{f}", f"f{f}", rows=len(rows), rejects=0)
        writer.commit_shard(str(out), f"f{f}", schema.tokens_table(rows, ["caption"]), schema.rejects_table([]),
                            record, schema.file_metadata(prov), OutputConfig(row_group_rows=4))
    writer.write_provenance(str(out), prov)
