"""Plain records passed between pipeline stages (no Ray, no torch).

Flow: Shard -> Sample (raw bytes + metadata) -> Segment (decoded audio at the model rate)
or Rejection (a key that will not be tokenized, with a reason from `pipeline.rejects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


@dataclass
class Segment:
    """Decoded, channel-converted audio ready for the codec.

    audio: float32 [C, T] at the model's channel count, and at the model's sample rate when `rate`
        is None; else at `rate` Hz, to be resampled next to the model (`audio.resample_on: actor`).
    start_s, duration_s: position of the segment in the source item, in seconds.
    """

    key: str
    source: str
    audio: np.ndarray
    start_s: float
    duration_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    rate: int | None = None

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[-1])


@dataclass(frozen=True)
class Rejection:
    key: str
    source: str
    reason: str
    detail: str
