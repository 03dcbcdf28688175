"""Audio preparation: header checks, decode, channel conversion, resampling, segmenting.

Pure functions on bytes and numpy arrays. The header is checked before anything is decoded, and
decoding runs in blocks against a size budget, so a lying header or a decompression bomb cannot
take more memory than `AudioConfig.max_decoded_bytes`.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from .config import AudioConfig
from .records import Rejection, Sample, Segment

_BLOCK = 1 << 18  # frames decoded per block


def prepare(sample: Sample, cfg: AudioConfig, sample_rate: int, channels: int) -> tuple[list[Segment], list[Rejection]]:
    """One raw sample -> segments at `sample_rate` with `channels` channels, or a rejection."""
    def reject(reason: str, detail: str):
        return [], [Rejection(sample.key, sample.source, reason, detail)]

    if sample.reject is not None:
        return reject(*sample.reject)
    if not sample.data:
        return reject("empty", "no audio bytes")
    if len(sample.data) > cfg.max_file_bytes:
        return reject("too_large", f"{len(sample.data)} bytes > max_file_bytes {cfg.max_file_bytes}")
    try:
        info = sf.info(io.BytesIO(sample.data))
    except (RuntimeError, TypeError, ValueError, EOFError, OSError) as exc:  # libsndfile on junk
        return reject("undecodable", f"{type(exc).__name__}: {exc}"[:300])
    if not cfg.min_sample_rate <= info.samplerate <= cfg.max_sample_rate:
        return reject("bad_header", f"sample rate {info.samplerate} Hz outside [{cfg.min_sample_rate}, {cfg.max_sample_rate}]")
    if not 1 <= info.channels <= cfg.max_channels:
        return reject("bad_header", f"{info.channels} channels outside [1, {cfg.max_channels}]")
    try:
        data = _decode(sample.data, info.channels, cfg.max_decoded_bytes)
    except _TooLarge as exc:
        return reject("too_large", str(exc))
    except (RuntimeError, TypeError, ValueError, EOFError, OSError) as exc:
        return reject("undecodable", f"{type(exc).__name__}: {exc}"[:300])
    if data.shape[0] == 0:
        return reject("no_frames", "decodes to zero samples")
    if not np.isfinite(data).all():
        return reject("non_finite", "NaN or Inf in decoded samples")
    audio = convert_channels(data, channels)
    if info.samplerate != sample_rate:
        audio = soxr.resample(audio, info.samplerate, sample_rate, quality=cfg.resample_quality)
    audio = np.ascontiguousarray(audio.T, dtype=np.float32)
    return segment(sample, audio, sample_rate, cfg)


class _TooLarge(Exception):
    pass


def _decode(data: bytes, channels: int, budget_bytes: int) -> np.ndarray:
    """All frames as float32 [T, C], read block by block; raises _TooLarge past the budget."""
    blocks, total = [], 0
    with sf.SoundFile(io.BytesIO(data)) as f:
        while True:
            block = f.read(_BLOCK, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            total += block.nbytes
            if total > budget_bytes:
                raise _TooLarge(f"decoded size exceeds max_decoded_bytes {budget_bytes}")
            blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)


def convert_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """[T, C_in] -> [T, channels]: mono = mean of all channels; stereo from mono = duplicated;
    stereo from more than two channels = the first two (front left/right in WAV order)."""
    if channels == 1:
        return data.mean(axis=1, keepdims=True) if data.shape[1] > 1 else data
    if data.shape[1] == 1:
        return np.repeat(data, channels, axis=1)
    return data[:, :channels]


def segment(sample: Sample, audio: np.ndarray, sample_rate: int, cfg: AudioConfig) -> tuple[list[Segment], list[Rejection]]:
    """Cut [C, T] audio longer than max_duration_s into key#0, key#1, ...; reject pieces under min_duration_s."""
    total = audio.shape[-1]
    step = int(round(cfg.max_duration_s * sample_rate))
    minimum = cfg.min_duration_s * sample_rate
    if total <= step:
        if total < minimum:
            return [], [Rejection(sample.key, sample.source, "too_short", f"{total / sample_rate:.4f} s < {cfg.min_duration_s} s")]
        return [Segment(sample.key, sample.source, audio, 0.0, total / sample_rate, dict(sample.meta))], []
    segments, rejections = [], []
    for n, start in enumerate(range(0, total, step)):
        piece = audio[:, start : start + step]
        key = f"{sample.key}#{n}"
        if piece.shape[-1] < minimum:
            rejections.append(Rejection(key, sample.source, "too_short", f"trailing segment of {piece.shape[-1] / sample_rate:.4f} s"))
            continue
        segments.append(Segment(key, sample.source, np.ascontiguousarray(piece), start / sample_rate,
                                piece.shape[-1] / sample_rate, dict(sample.meta)))
    return segments, rejections
