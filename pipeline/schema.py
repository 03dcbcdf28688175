"""Explicit Arrow schemas of the outputs, and builders for them.

tokens/*.parquet, one row per item (or segment of a long item):
  key string, source string, codes list<list<int16>> [n_q, num_frames], num_frames int32,
  num_samples int64, pad_samples int32, scales list<float32> (null for unchunked models),
  start_s float64, duration_s float64, then passthrough metadata columns (string).
rejects/*.parquet: key, source, reason, detail (strings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .records import Rejection

FORMAT_VERSION = 1
REQUIRED_PROVENANCE = ("model_name", "checkpoint_sha256", "codec_config", "sample_rate", "frame_rate",
                       "bandwidth_to_num_quantizers", "precision", "pipeline_version", "resampler")

CODES_TYPE = pa.list_(pa.list_(pa.int16()))
REJECTS_SCHEMA = pa.schema([("key", pa.string()), ("source", pa.string()),
                            ("reason", pa.string()), ("detail", pa.string())])


def tokens_schema(passthrough: list[str]) -> pa.Schema:
    fields = [
        ("key", pa.string()), ("source", pa.string()), ("codes", CODES_TYPE),
        ("num_frames", pa.int32()), ("num_samples", pa.int64()), ("pad_samples", pa.int32()),
        ("scales", pa.list_(pa.float32())), ("start_s", pa.float64()), ("duration_s", pa.float64()),
    ]
    return pa.schema([pa.field(n, t, nullable=n == "scales") for n, t in fields]
                     + [pa.field(c, pa.string()) for c in passthrough])


@dataclass
class TokenRow:
    key: str
    source: str
    codes: np.ndarray  # int16 [n_q, num_frames]
    num_samples: int
    pad_samples: int
    scales: list[float] | None
    start_s: float
    duration_s: float
    meta: dict[str, Any] = field(default_factory=dict)


def _meta_value(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def tokens_table(rows: list[TokenRow], passthrough: list[str]) -> pa.Table:
    schema = tokens_schema(passthrough)
    n_q = [r.codes.shape[0] for r in rows]
    frames = [r.codes.shape[1] for r in rows]
    flat = np.concatenate([r.codes.reshape(-1) for r in rows]).astype(np.int16) if rows else np.zeros(0, np.int16)
    inner_offsets = np.concatenate([[0], np.cumsum(np.repeat(frames, n_q))]).astype(np.int32)
    outer_offsets = np.concatenate([[0], np.cumsum(n_q)]).astype(np.int32)
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets), pa.array(flat, pa.int16()))
    codes = pa.ListArray.from_arrays(pa.array(outer_offsets), inner)
    columns = {
        "key": pa.array([r.key for r in rows], pa.string()),
        "source": pa.array([r.source for r in rows], pa.string()),
        "codes": codes.cast(CODES_TYPE),
        "num_frames": pa.array(frames, pa.int32()),
        "num_samples": pa.array([r.num_samples for r in rows], pa.int64()),
        "pad_samples": pa.array([r.pad_samples for r in rows], pa.int32()),
        "scales": pa.array([r.scales for r in rows], pa.list_(pa.float32())),
        "start_s": pa.array([r.start_s for r in rows], pa.float64()),
        "duration_s": pa.array([r.duration_s for r in rows], pa.float64()),
    }
    for c in passthrough:
        columns[c] = pa.array([_meta_value(r.meta.get(c)) for r in rows], pa.string())
    return pa.Table.from_pydict(columns, schema=schema)


def rejects_table(rejections: list[Rejection]) -> pa.Table:
    return pa.Table.from_pydict({
        "key": [r.key for r in rejections], "source": [r.source for r in rejections],
        "reason": [r.reason for r in rejections], "detail": [r.detail for r in rejections],
    }, schema=REJECTS_SCHEMA)


def file_metadata(provenance: dict) -> dict[bytes, bytes]:
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}")
    data = {"format_version": FORMAT_VERSION, **provenance}
    return {f"audiotok.{k}".encode(): json.dumps(v, sort_keys=True).encode() for k, v in data.items()}
