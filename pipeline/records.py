"""Plain records passed between pipeline stages (no Ray, no torch).

Flow: Shard -> Sample (raw bytes + metadata) -> Segment (decoded audio at the model rate)
or Rejection (a key that will not be tokenized, with a reason from `pipeline.rejects`).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import shard_files


@dataclass(frozen=True)
class Shard:
    """One unit of work, retry and commit.

    shard_id: stable, filesystem-safe name derived from `url` (output files are named after it).
    url: where the shard lives (local path, fsspec URL, dataset file, or manifest row range).
    kind: the reader, a key of `sources.READERS` ("audio_files", "webdataset", "manifest", "hf").
    options: that reader's typed options (e.g. `sources.manifest.ManifestRows`), None for tars.
    """

    shard_id: str
    url: str
    kind: str
    options: Any = None


@dataclass
class Sample:
    """One raw input item read from a shard, not yet decoded.

    data: the encoded audio file's bytes; None when the item has no audio (then `reject` is set).
    ext: lower-case extension of the audio member ("flac", "wav", ...), "" when unknown.
    meta: metadata kept for passthrough (json fields, .txt/.cls members, dataset columns).
    reject: (reason, detail) when the reader already knows the item is bad.
    """

    key: str
    source: str
    data: bytes | None
    ext: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    reject: tuple[str, str] | None = None
    path: str = ""  # the item's own file: its path or URL, `<tar>#<member>`, `<dataset file>#row=<i>`


@dataclass
class Segment:
    """Decoded, channel-converted audio ready for the codec.

    audio: float32 [C, T] at the model's channel count, and at the model's sample rate when `rate`
        is None; else at `rate` Hz, to be resampled next to the model (`audio.resample_on: actor`).
    start_s, duration_s: position of the segment in the source item, in seconds.
    other_audio: the same piece for each other token stream, float32 [C, T] at that stream's rate and
        channels (`stream_audio`), in the order the job lists its streams; empty in one-stream jobs.
    """

    key: str
    source: str
    audio: np.ndarray
    start_s: float
    duration_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    rate: int | None = None
    path: str = ""  # Sample.path of the item it comes from
    other_audio: list[np.ndarray] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[-1])


@dataclass(frozen=True)
class Rejection:
    key: str
    source: str
    reason: str
    detail: str


@dataclass(frozen=True)
class EncodeBatch:
    """One batch as the job encoded it: its rows' keys in batch order and the most items (chunked
    models: chunks) per forward pass (None: the codec's default). With the CUDA batch plan a row's
    codes depend on its batch, so verify re-encodes the batch the same way."""

    keys: list[str]
    max_batch: int | None = None


@dataclass(slots=True)
class ShardRecord:
    """The manifest record of a committed shard (`<out>/_manifest/<shard_id>.json`): its counts,
    where and how it ran, and (added by the commit) its files. Seconds are wall-clock seconds.
    Per-row details (keys, encode batches) are in the shard's row-index file (`shard_rows`), so a
    driver holding every record holds ~2 KB a shard, whatever the rows; `encode_batches` is only
    filled by a shard worker before its commit, or read from records written before the row index."""

    shard_id: str
    url: str
    rows: int
    rejects: int
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    input_keys: int = 0
    audio_seconds: float = 0.0
    attempt: int = 1
    node_id: str | None = None
    worker_peak_rss_mb: float = 0.0
    decoder_peak_rss_mb: float = 0.0
    decoder_restarts: int = 0
    read_seconds: float = 0.0
    encode_seconds: float = 0.0
    wall_seconds: float = 0.0
    padded_samples: int = 0  # samples in the padded batches (per channel)
    true_samples: int = 0  # samples of audio in them
    batches: int = 0
    batch_plan: str = "cpu"  # the codec's batch plan (codec/batch_plan.py)
    device_peak_mb: float | None = None  # torch's peak CUDA memory allocated over the shard's encode; None on CPU
    encode_batches: list[EncodeBatch] = field(default_factory=list)
    finished_at: float | None = None  # unix seconds, set by the commit
    format_version: int | None = None  # set by the commit
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # {kind: {"path", "bytes"}}, set by the commit

    def __post_init__(self):
        if self.files:  # the paths the shard id gives are not held (`shard_files`)
            self.files = shard_files.compact(self.shard_id, self.files)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "files": shard_files.as_json(self.files)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardRecord:
        """From a manifest file; keys this version does not know (a newer writer's) are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in known})  # `files`: see __post_init__
        # the same few names in every record: one copy of each string, not one per record
        record.rejects_by_reason = {sys.intern(k): v for k, v in record.rejects_by_reason.items()}
        record.batch_plan = sys.intern(record.batch_plan) if isinstance(record.batch_plan, str) else record.batch_plan
        record.encode_batches = [b if isinstance(b, EncodeBatch) else EncodeBatch(**b) for b in record.encode_batches]
        return record
