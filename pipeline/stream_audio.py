"""The audio of the other token streams: each decoded file resampled once more, per extra stream's rate.

A job with a semantic tokenizer beside the acoustic codec (pipeline/streams.py) needs every segment at two
rates (e.g. 24 kHz for EnCodec, 16 kHz for HuBERT). The decoder process decodes the file once;
`audio.prepare` converts the channels of the *decoded* audio and resamples it (soxr, `audio.resample_quality`)
once per extra stream, and `attach` cuts each at the same segment boundaries (`audio.split_segments`'
rule at that rate: piece k starts at round(k * max_duration_s * rate)) and hangs the pieces on the segments
(`Segment.other_audio`, in the order of the targets). The acoustic audio is computed exactly as in a
one-stream job, so its codes do not change. Segments are cut by the same count (from the source length),
so both rates give the same keys.
"""

from __future__ import annotations

import math

import numpy as np

from .config import AudioConfig
from .records import Segment


def cut(audio: np.ndarray, rate: int, source_seconds: float, cfg: AudioConfig) -> list[np.ndarray]:
    """[C, T] audio at `rate` -> its pieces, as `audio.split_segments` cuts them (none rejected here)."""
    total = audio.shape[-1]
    count = max(1, math.ceil(source_seconds / cfg.max_duration_s - 1e-9))
    if count == 1:
        return [audio]
    bounds = [round(k * cfg.max_duration_s * rate) for k in range(count)] + [total]
    return [np.ascontiguousarray(audio[:, bounds[k]:max(bounds[k], bounds[k + 1])]) for k in range(count)]


def attach(segments: list[Segment], audio: list[np.ndarray], rates: list[int], source_seconds: float,
           cfg: AudioConfig) -> None:
    """Set `other_audio` of each segment: its piece of each of `audio` (float32 [T, C], the decoded file
    converted and resampled to each other stream's channels and `rates`)."""
    if not audio or not segments:
        return
    count = max(1, math.ceil(source_seconds / cfg.max_duration_s - 1e-9))
    by_target = [cut(np.ascontiguousarray(x.T, dtype=np.float32), rate, source_seconds, cfg)
                 for x, rate in zip(audio, rates)]
    for seg in segments:
        k = 0 if count == 1 else int(seg.key.rsplit("#", 1)[1])
        seg.other_audio = [pieces[k] for pieces in by_target]
