"""A shard's row-index file: one small Parquet row per token row, written by the commit beside the parts.

    <out>/rows/<shard_id>.parquet     renamed into place after the parts, before the manifest record

It holds what the training index and verify need per row, so that the manifest record keeps counts
only (the driver's memory grows with the shards, not the rows) and nobody opens the parts to index them:

    key          string  the row's key
    key_crc      uint32  zlib.crc32 of the key's UTF-8 (the training index keeps it instead of the key)
    part         string  the tokens part holding the row, relative to the output directory
    row          int32   the row's number in that part (0, 1, ...)
    row_group    int32   the part's row group holding it
    frames_<s>   int32   frames of token stream <s>, one column per stream (today `frames_codes`,
                         the `codes` column's num_frames); readers take the streams from the names
    batch        int32   the encode batch the row was in, numbered in the order the job encoded
                         them; null when the job did not record it
    batch_pos    int32   the row's place in that batch
    max_batch    int32   the batch's most items (chunks) per forward pass; null: the codec's default

Schema metadata: `audiotok.rows_version` and `audiotok.part_columns` (JSON list of the tokens
part's columns, so that a reader can check passthrough columns without opening the part).
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict, deque

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import shard_files
from .records import EncodeBatch

FOLDER = "rows"
VERSION = 1
FRAMES_PREFIX = "frames_"
# token stream column -> the tokens column counting its frames (None: its first codebook's list lengths)
STREAMS: dict[str, str | None] = {"codes": "num_frames", "semantic_codes": None}
VERSION_KEY = b"audiotok.rows_version"
PART_COLUMNS_KEY = b"audiotok.part_columns"


def file_name(shard_id: str) -> str:
    """Relative path of a shard's row-index file: `rows/<shard_id>.parquet`."""
    return shard_files.path(FOLDER, shard_id)


def key_crc(keys: list[str]) -> np.ndarray:
    """uint32 [len(keys)]: zlib.crc32 of each key's UTF-8."""
    return np.fromiter((zlib.crc32(k.encode()) for k in keys), dtype=np.uint32, count=len(keys))


def stream_frames(tokens: pa.Table, names: list[str] | None = None) -> dict[str, pa.Array]:
    """{stream: int32 frames per row} of the token streams among `names` (default: the table's columns),
    from the stream's count column when `tokens` has it, else from its first codebook's lengths."""
    names = tokens.schema.names if names is None else names
    out = {}
    for stream, count in STREAMS.items():
        if stream not in names:
            continue
        if count in tokens.schema.names:
            out[stream] = tokens.column(count).combine_chunks().cast(pa.int32())
        else:
            first = pc.list_element(tokens.column(stream).combine_chunks(), 0)
            out[stream] = pc.list_value_length(first).fill_null(0).cast(pa.int32())
    return out


def _batch_columns(keys: list[str], batches: list[EncodeBatch]) -> tuple[list, list, list]:
    """(batch, batch_pos, max_batch) per key; a key listed in several places takes them in order."""
    places: dict[str, deque] = defaultdict(deque)
    for number, batch in enumerate(batches):
        for pos, key in enumerate(batch.keys):
            places[key].append((number, pos, batch.max_batch))
    out = [places[k].popleft() if places.get(k) else (None, None, None) for k in keys]
    left = [k for k, q in places.items() if q]
    if left:
        raise ValueError(f"the encode batches name {len(left)} key(s) that are not rows of the shard, e.g. {left[0]!r}")
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]


def from_tokens(tokens: pa.Table, batches: list[EncodeBatch], part: str, row_group_sizes: list[int]) -> pa.Table:
    """The row-index table of a shard whose tokens part (`part`, relative path) holds `tokens` in row
    groups of `row_group_sizes` rows, encoded in `batches` (the job's, in its order; [] if unknown)."""
    return rows_table(tokens.column("key").to_pylist(), stream_frames(tokens), batches, part, row_group_sizes,
                      tokens.schema.names)


def rows_table(keys: list[str], frames: dict[str, pa.Array], batches: list[EncodeBatch], part: str,
               row_group_sizes: list[int], part_columns: list[str]) -> pa.Table:
    """The row-index table of the rows `keys` of `part` (frames: per stream, `stream_frames`)."""
    n = len(keys)
    if sum(row_group_sizes) != n:
        raise ValueError(f"row groups of {sum(row_group_sizes)} rows for a part of {n} rows")
    batch, pos, max_batch = _batch_columns(keys, batches)
    columns = {
        "key": pa.array(keys, pa.string()),
        "key_crc": pa.array(key_crc(keys), pa.uint32()),
        "part": pa.array([part] * n, pa.string()).dictionary_encode(),
        "row": pa.array(np.arange(n, dtype=np.int32)),
        "row_group": pa.array(np.repeat(np.arange(len(row_group_sizes), dtype=np.int32), row_group_sizes)),
        **{FRAMES_PREFIX + s: f for s, f in frames.items()},
        "batch": pa.array(batch, pa.int32()),
        "batch_pos": pa.array(pos, pa.int32()),
        "max_batch": pa.array(max_batch, pa.int32()),
    }
    return pa.table(columns).replace_schema_metadata({VERSION_KEY: str(VERSION).encode(),
                                                      PART_COLUMNS_KEY: json.dumps(list(part_columns)).encode()})


def streams(table: pa.Table) -> list[str]:
    """The token streams whose frames a row-index table holds (`codes`, ...)."""
    return [n[len(FRAMES_PREFIX):] for n in table.schema.names if n.startswith(FRAMES_PREFIX)]


def part_columns(table: pa.Table) -> list[str] | None:
    """The tokens part's columns as recorded in the table's metadata (None when not recorded)."""
    raw = (table.schema.metadata or {}).get(PART_COLUMNS_KEY)
    return None if raw is None else json.loads(raw)


def encode_batches(table: pa.Table) -> list[EncodeBatch]:
    """One shard's encode batches (keys in batch order, max_batch) from its row-index table, in the
    job's order; rows without a recorded batch are left out."""
    rows = table.select(["key", "batch", "batch_pos", "max_batch"]).to_pylist()
    grouped: dict[int, list] = defaultdict(list)
    limits: dict[int, int | None] = {}
    for r in rows:
        if r["batch"] is not None:
            grouped[r["batch"]].append((r["batch_pos"], r["key"]))
            limits[r["batch"]] = r["max_batch"]
    return [EncodeBatch([k for _, k in sorted(grouped[b])], limits[b]) for b in sorted(grouped)]
