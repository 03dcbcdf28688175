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
        "pipeline_version": "test", "resampler": {}, "random_weights": True,
    }


def write_tokens(out, rows_per_shard: list[int], seed: int = 0, max_frames: int = 300, row_group_rows: int = 3):
    """Shards s0, s1, ... with the given numbers of rows of random lengths 1..max_frames, 8 codebooks, a
    `text` and a `caption` column; returns {key: row dict} of everything committed."""
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
                            OutputConfig(row_group_rows=row_group_rows))
    writer.write_provenance(str(out), provenance())
    return rows


def write_real_tokens(out, files: dict[str, str], model_source: str = "tiny:24khz", shard_size: int = 3):
    """Corpus files (key -> path under the test corpus) encoded in this process by `model_source` at its
    top bandwidth and committed through the writer, `shard_size` files a shard; returns the model."""
    import torch

    from codec import load_model
    from tests.conftest import real_audio

    model = load_model(model_source)
    c = model.config
    prov = {**provenance(), "model_source": model_source, "codec_config": c.to_dict(),
            "sample_rate": c.sampling_rate, "frame_rate": c.frame_rate, "hop_length": c.hop_length,
            "bandwidths": list(c.target_bandwidths),
            "bandwidth_to_num_quantizers": {str(b): n for b, n in c.bandwidth_to_num_quantizers.items()}}
    keys = list(files)
    for s in range(0, len(keys), shard_size):
        rows = []
        for key in keys[s : s + shard_size]:
            audio = torch.from_numpy(real_audio(files[key], c.sampling_rate, c.audio_channels))
            item = model.encode(audio[None])[0]
            rows.append(schema.TokenRow(key, files[key], item.codes.numpy(), item.num_samples,
                                        model.pad_samples_for(item.num_samples), None, 0.0,
                                        item.num_samples / c.sampling_rate, {"caption": files[key]}))
        shard = f"r{s // shard_size}"
        record = ShardRecord(shard, shard, rows=len(rows), rejects=0)
        writer.commit_shard(str(out), shard, schema.tokens_table(rows, ["caption"]), schema.rejects_table([]),
                            record, schema.file_metadata(prov), OutputConfig(row_group_rows=4))
    writer.write_provenance(str(out), prov)
    return model
