"""A synthetic N-shard token output and input listing, for measuring bookkeeping at scale.

A few template shards are committed through `writer.commit_shard` (real Parquet parts, row-index
files and manifest records, ~`rows` rows of `frames` frames with `n_q` codebooks, encode batches of
16 keys as the job records them, which the commit puts in the row index); every other shard is a
copy of one of them: its part files hard-linked (same bytes, no disk space), its row-index file
rewritten naming its own part, its manifest record rewritten with its own shard id and URL. The input listing is
`inputs/shard-<i>.tar`, empty files (listing never opens them). Everything lies under
`<root>/<bucket>/`, so the same files serve as a local output and, through
`bench.object_store.FakeObjectStore.use(root)`, as `fakes3://<bucket>/out`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schema, shard_rows, writer
from ..config import OutputConfig
from ..records import EncodeBatch, ShardRecord

BUCKET = "bench"
PASSTHROUGH = ["text"]


@dataclass(frozen=True)
class SyntheticOutput:
    """Where the synthetic output lies: `local_dir` on disk, `url` through the fake store."""

    root: str
    shards: int
    rows: int
    n_q: int = 8

    @property
    def local_dir(self) -> str:
        return os.path.join(self.root, BUCKET, "out")

    @property
    def url(self) -> str:
        return f"fakes3://{BUCKET}/out"

    def inputs(self, fake: bool) -> str:
        """A brace pattern naming every input shard."""
        base = f"fakes3://{BUCKET}/inputs" if fake else os.path.join(self.root, BUCKET, "inputs")
        return f"{base}/shard-{{{0:07d}..{self.shards - 1:07d}}}.tar"

    def shard_ids(self) -> list[str]:
        return [shard_id(i) for i in range(self.shards)]


def shard_id(i: int) -> str:
    return f"shard-{i:07d}"


def provenance(n_q: int) -> dict:
    return {"model_name": "synthetic", "model_source": "random:24khz", "checkpoint_sha256": "0" * 64,
            "random_weights": True, "codec_config": {"codebook_size": 1024}, "sample_rate": 24000, "channels": 1,
            "frame_rate": 75.0, "hop_length": 320, "chunk_length": None, "chunk_stride": None,
            "bandwidths": [6.0], "bandwidth_to_num_quantizers": {"6.0": n_q}, "num_quantizers": n_q,
            "precision": "fp32", "device": "cpu", "pipeline_version": "bench", "resampler": {}, "segment_max_s": 30.0}


def _template(out: str, i: int, rows: int, frames: int, n_q: int) -> ShardRecord:
    rng = np.random.default_rng(i)
    sid = shard_id(i)
    token_rows = [schema.TokenRow(f"{sid}/utt-{r:05d}", f"s3://corpus/{sid}.tar",
                                  rng.integers(0, 1024, (n_q, frames)).astype(np.int16), frames * 320, 0, None,
                                  0.0, frames / 75, {"text": f"utterance {r} of {sid}"}) for r in range(rows)]
    keys = [row.key for row in token_rows]
    record = ShardRecord(sid, f"s3://corpus/{sid}.tar", rows=rows, rejects=0, input_keys=rows,
                         audio_seconds=rows * frames / 75, batches=(rows + 15) // 16,
                         encode_batches=[EncodeBatch(keys[b:b + 16], 16) for b in range(0, rows, 16)])
    return writer.commit_shard(out, sid, schema.tokens_table(token_rows, PASSTHROUGH), schema.rejects_table([]),
                               record, schema.file_metadata(provenance(n_q)), OutputConfig(row_group_rows=64))


def build(root: str, shards: int, rows: int = 120, frames: int = 750, n_q: int = 8,
          templates: int = 4) -> SyntheticOutput:
    """Write (or reuse, when it is there with the same shape) the synthetic output under `root`."""
    made = SyntheticOutput(os.path.abspath(root), shards, rows, n_q)
    stamp = os.path.join(made.root, f"{BUCKET}-shape.json")
    shape = {"shards": shards, "rows": rows, "frames": frames, "n_q": n_q, "templates": templates,
             "row_index": shard_rows.VERSION}
    if os.path.exists(stamp) and json.load(open(stamp)) == shape:
        return made
    out = made.local_dir
    os.makedirs(os.path.join(out, writer.MANIFEST), exist_ok=True)
    records = [_template(out, i, rows, frames, n_q).to_json() for i in range(min(templates, shards))]
    row_tables = [pq.read_table(os.path.join(out, shard_rows.file_name(r["shard_id"]))) for r in records]
    for i in range(len(records), shards):
        template = records[i % len(records)]
        sid = shard_id(i)
        for kind in writer.PARTS:
            target = os.path.join(out, writer.part_name(kind, sid))
            if not os.path.exists(target):
                os.link(os.path.join(out, writer.part_name(kind, template["shard_id"])), target)
        table = row_tables[i % len(records)]
        part = pa.array([writer.part_name("tokens", sid)] * table.num_rows, pa.string()).dictionary_encode()
        rows_path = os.path.join(out, shard_rows.file_name(sid))
        pq.write_table(table.set_column(table.schema.get_field_index("part"), "part", part), rows_path,
                       compression="zstd")
        names = {**{k: writer.part_name(k, sid) for k in writer.PARTS}, writer.ROWS: shard_rows.file_name(sid)}
        files = {k: {**v, "path": names[k]} for k, v in template["files"].items()}
        files[writer.ROWS]["bytes"] = os.path.getsize(rows_path)
        record = {**template, "shard_id": sid, "url": f"s3://corpus/{sid}.tar", "files": files}
        with open(os.path.join(out, writer.MANIFEST, f"{sid}.json"), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
    writer.write_provenance(out, provenance(n_q))
    inputs = os.path.join(made.root, BUCKET, "inputs")
    os.makedirs(inputs, exist_ok=True)
    for i in range(shards):
        open(os.path.join(inputs, f"shard-{i:07d}.tar"), "wb").close()
    with open(stamp, "w") as f:
        json.dump(shape, f)
    return made
