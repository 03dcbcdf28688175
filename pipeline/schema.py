"""Explicit Arrow schemas of the outputs, their row builders, and the Parquet file metadata.

tokens/*.parquet, one row per item (or segment `key#<i>` of a long item):

  key string            unique, stable sample key
  source string         the shard (URL / file) the item came from
  codes list<list<int16>>  [n_q, num_frames] at the highest requested bandwidth
  num_frames int32      code frames (48 kHz: summed over chunks)
  num_samples int64     true length at the model's sample rate
  pad_samples int32     padding samples in the last frame (or last chunk's last frame)
  scales list<float32>  one per chunk (EnCodec 48 kHz); null for codecs without per-chunk scales
                        (EnCodec 24/32 kHz, DAC): decode then uses no scale
  start_s, duration_s float64   position of the segment in the source item, seconds
  item_path string      the item's own file: its path or URL, `<tar>#<member>` for a tar member,
                        `<dataset file or hub split>#row=<i>` for a dataset row (null if unknown)
  <stream>_codes list<list<int16>>  jobs with other token streams (pipeline/streams.py): that stream's
                        ids [1, its frames], e.g. `semantic_codes`; their rates in the file metadata
  <passthrough> string  metadata columns named in the config; non-strings JSON-encoded; nullable

rejects/*.parquet: key, source, reason, detail (strings).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .records import Rejection
from .rejects import check_reason

FORMAT_VERSION = 1
METADATA_PREFIX = "audiotok."
REQUIRED_PROVENANCE = ("model_name", "checkpoint_sha256", "codec_config", "sample_rate", "frame_rate",
                       "bandwidth_to_num_quantizers", "precision", "pipeline_version", "resampler")

CODES_TYPE = pa.list_(pa.list_(pa.int16()))
SCALES_TYPE = pa.list_(pa.float32())
_CORE_FIELDS = [
    pa.field("key", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("codes", CODES_TYPE, nullable=False),
    pa.field("num_frames", pa.int32(), nullable=False),
    pa.field("num_samples", pa.int64(), nullable=False),
    pa.field("pad_samples", pa.int32(), nullable=False),
    pa.field("scales", SCALES_TYPE, nullable=True),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("item_path", pa.string(), nullable=True),
]
CORE_COLUMNS = tuple(f.name for f in _CORE_FIELDS)
REJECTS_SCHEMA = pa.schema([pa.field(n, pa.string(), nullable=False) for n in ("key", "source", "reason", "detail")])


def tokens_schema(passthrough: list[str], streams: list[str] = ()) -> pa.Schema:
    """The tokens schema: the core columns, one codes column per other stream (`streams`: column names,
    e.g. semantic_codes), then one nullable string column per passthrough name."""
    names = [*streams, *passthrough]
    clash = sorted(set(names) & set(CORE_COLUMNS))
    if clash or len(set(names)) != len(names):
        raise ValueError(f"stream and passthrough columns must be distinct and not among {list(CORE_COLUMNS)}; "
                         f"got {names}")
    return pa.schema(_CORE_FIELDS + [pa.field(c, CODES_TYPE, nullable=False) for c in streams]
                     + [pa.field(c, pa.string(), nullable=True) for c in passthrough])


@dataclass
class TokenRow:
    """One tokens row before conversion to Arrow.

    codes: integer [n_q, num_frames], values within int16. num_samples, pad_samples: samples at
    the model rate. scales: one float per chunk, or None. start_s, duration_s: seconds.
    meta: passthrough values by column name (missing names become null).
    """

    key: str
    source: str
    codes: np.ndarray
    num_samples: int
    pad_samples: int
    scales: list[float] | None
    start_s: float
    duration_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    item_path: str | None = None  # Sample.path: the item's own file
    streams: dict[str, np.ndarray] = field(default_factory=dict)  # other streams' ids by column, [1, frames]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def meta_value(value: Any) -> str | None:
    """A passthrough value as stored: None and str unchanged, anything else as (sorted-key) JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)


def _offsets(counts: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"{offsets[-1]} list values in one table exceed int32 offsets; write smaller tables")
    return pa.array(offsets.astype(np.int32))


def _codes_array(rows: list[TokenRow], column: str = "codes") -> tuple[pa.Array, np.ndarray]:
    shapes = []
    arrays = [r.codes if column == "codes" else r.streams[column] for r in rows]
    for r, codes in zip(rows, arrays):
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{r.key}: {column} must be an integer array [n_q, num_frames]; "
                             f"got {codes.dtype} {codes.shape}")
        shapes.append(codes.shape)
    shape = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    if len(set(shape[:, 0].tolist())) > 1:
        raise ValueError(f"all rows of a table must have the same n_q; got {sorted(set(shape[:, 0].tolist()))}")
    flat = np.concatenate([c.reshape(-1) for c in arrays]) if rows else np.zeros(0, np.int16)
    if flat.dtype != np.int16 and flat.size and (flat.min() < -32768 or flat.max() > 32767):
        raise ValueError(f"codes outside int16: [{flat.min()}, {flat.max()}]")
    inner = pa.ListArray.from_arrays(_offsets(np.repeat(shape[:, 1], shape[:, 0])),
                                     pa.array(flat.astype(np.int16, copy=False)))
    return pa.ListArray.from_arrays(_offsets(shape[:, 0]), inner).cast(CODES_TYPE), shape[:, 1]


def _scales_array(rows: list[TokenRow]) -> pa.Array:
    values = [np.asarray(r.scales, dtype=np.float32).reshape(-1) for r in rows if r.scales is not None]
    counts = np.asarray([0 if r.scales is None else len(r.scales) for r in rows], dtype=np.int64)
    mask = pa.array([r.scales is None for r in rows], pa.bool_())
    flat = np.concatenate(values) if values else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(_offsets(counts), pa.array(flat), mask=mask).cast(SCALES_TYPE)


def tokens_table(rows: list[TokenRow], passthrough: list[str], streams: list[str] = ()) -> pa.Table:
    """Rows as a table with `tokens_schema(passthrough, streams)`; codes go in as one flat int16 buffer.
    Every row must hold each column of `streams` in `TokenRow.streams`."""
    schema = tokens_schema(passthrough, streams)
    keys = [r.key for r in rows]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, n in Counter(keys).items() if n > 1)[:5]
        raise ValueError(f"duplicate keys in one table: {dup}")
    codes, frames = _codes_array(rows)
    columns = [
        pa.array(keys, pa.string()),
        pa.array([r.source for r in rows], pa.string()),
        codes,
        pa.array(frames, pa.int32()),
        pa.array([r.num_samples for r in rows], pa.int64()),
        pa.array([r.pad_samples for r in rows], pa.int32()),
        _scales_array(rows),
        pa.array([r.start_s for r in rows], pa.float64()),
        pa.array([r.duration_s for r in rows], pa.float64()),
        pa.array([r.item_path for r in rows], pa.string()),
    ]
    columns += [_codes_array(rows, c)[0] for c in streams]
    columns += [pa.array([meta_value(r.meta.get(c)) for r in rows], pa.string()) for c in passthrough]
    return pa.Table.from_arrays(columns, schema=schema)


def rejects_table(rejections: list[Rejection]) -> pa.Table:
    """Rejections as a table with REJECTS_SCHEMA; every reason must be in `rejects.REASONS`."""
    return pa.Table.from_arrays([
        pa.array([r.key for r in rejections], pa.string()),
        pa.array([r.source for r in rejections], pa.string()),
        pa.array([check_reason(r.reason) for r in rejections], pa.string()),
        pa.array([r.detail for r in rejections], pa.string()),
    ], schema=REJECTS_SCHEMA)


def file_metadata(provenance: dict) -> dict[bytes, bytes]:
    """Parquet key/value metadata: `audiotok.<key>` -> JSON value, plus `audiotok.format_version`.

    `provenance` must hold REQUIRED_PROVENANCE (extra keys are kept); a `format_version` other
    than FORMAT_VERSION is refused.
    """
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}; required: {list(REQUIRED_PROVENANCE)}")
    if provenance.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"provenance format_version {provenance['format_version']} != {FORMAT_VERSION}")
    data = {**provenance, "format_version": FORMAT_VERSION}
    return {f"{METADATA_PREFIX}{k}".encode(): json.dumps(v, sort_keys=True, default=_json_default).encode()
            for k, v in data.items()}


def read_file_metadata(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The inverse of `file_metadata`: the `audiotok.*` entries of a Parquet schema's metadata, decoded."""
    return {k.decode()[len(METADATA_PREFIX):]: json.loads(v) for k, v in (metadata or {}).items()
            if k.decode().startswith(METADATA_PREFIX)}
