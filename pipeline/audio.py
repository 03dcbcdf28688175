"""Audio preparation: header checks, decode, channel conversion, resampling, segmenting.

Pure functions on bytes and numpy arrays (numpy, soundfile and soxr only: cheap to import in a
worker process). The header is checked before anything is decoded, and decoding reads at most the
budgeted number of frames, so neither a lying header nor a decompression bomb can take more memory
than `AudioConfig.max_decoded_bytes` (plus one block).

    bytes ─► decode_checked (one open: header_of ─► check_header ─► read) [T, C_in]
          ─► to_model_layout (convert_channels, resample (soxr) unless the actor does) [C, T']
          ─► split_segments ─► Segment(key or key#n) / Rejection

(`decode_header` and `decode` open the bytes on their own, for callers that need one of the two.)
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from . import soxr_direct, stream_audio
from .config import AudioConfig
from .records import Rejection, Sample, Segment
from .rejects import check_reason

BLOCK_FRAMES = 1 << 16  # frames decoded per block when the header gives no usable frame count
UNKNOWN_FRAMES = 1 << 62  # libsndfile reports 2**63 - 1 frames for streams of unknown length
_DECODE_ERRORS = (RuntimeError, TypeError, ValueError, EOFError, OSError)  # LibsndfileError is a RuntimeError
_HEADER_MESSAGES = ("channel count", "sf_info struct incomplete")  # libsndfile's words for 0 channels / 0 Hz
_FINITE_SUBTYPES = ("PCM_", "ALAC_", "ULAW", "ALAW")  # integer samples: always finite as floats


class AudioRejected(Exception):
    """Bad input audio: `reason` is one of `pipeline.rejects.REASONS`, `detail` is free text."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Header:
    """What the container says. frames: per channel, None when unknown (streams)."""

    sample_rate: int
    channels: int
    frames: int | None
    format: str
    subtype: str


def _open(data: bytes) -> _Reader:
    """The encoded file opened once for its header and its samples; raises AudioRejected (undecodable /
    bad_header) as libsndfile words its failure."""
    try:
        return _Reader(io.BytesIO(data))
    except _DECODE_ERRORS as exc:
        text = f"{type(exc).__name__}: {exc}"[:300]
        raise AudioRejected("bad_header" if any(m in text.lower() for m in _HEADER_MESSAGES) else "undecodable",
                            text) from exc


def header_of(f: sf.SoundFile) -> Header:
    frames = None if not 0 <= f.frames < UNKNOWN_FRAMES else int(f.frames)
    return Header(int(f.samplerate), int(f.channels), frames, f.format, f.subtype)


def decode_header(data: bytes) -> Header:
    """Read only the header of an encoded file; raises AudioRejected (undecodable / bad_header)."""
    with _open(data) as f:
        return header_of(f)


def check_header(header: Header, nbytes: int, cfg: AudioConfig, sample_rate: int, channels: int) -> None:
    """Raise AudioRejected unless rate, channels, file size and (known) decoded sizes fit the limits.

    Decoded size: frames * channels_in * 4 bytes (float32); output size: frames * sample_rate /
    header.sample_rate * channels * 4 bytes. Both must stay within cfg.max_decoded_bytes.
    """
    if nbytes > cfg.max_file_bytes:
        raise AudioRejected("too_large", f"{nbytes} bytes > max_file_bytes {cfg.max_file_bytes}")
    if not cfg.min_sample_rate <= header.sample_rate <= cfg.max_sample_rate:
        raise AudioRejected("bad_header", f"sample rate {header.sample_rate} Hz outside "
                                          f"[{cfg.min_sample_rate}, {cfg.max_sample_rate}]")
    if not 1 <= header.channels <= cfg.max_channels:
        raise AudioRejected("bad_header", f"{header.channels} channels outside [1, {cfg.max_channels}]")
    if header.frames is not None:
        _check_size(header.frames, header, cfg, sample_rate, channels, "header claims")


def _check_size(frames: int, header: Header, cfg: AudioConfig, sample_rate: int, channels: int, what: str):
    decoded = frames * header.channels * 4
    output = math.ceil(frames * sample_rate / header.sample_rate) * channels * 4
    if max(decoded, output) > cfg.max_decoded_bytes:
        raise AudioRejected("too_large", f"{what} {frames} frames x {header.channels} ch at {header.sample_rate} Hz: "
                                         f"{max(decoded, output)} bytes > max_decoded_bytes {cfg.max_decoded_bytes}")


def decode(data: bytes, header: Header, cfg: AudioConfig) -> np.ndarray:
    """All frames as float32 [T, C_in]; raises AudioRejected (undecodable / too_large / non_finite)."""
    with _open(data) as f:
        return read(f, header, cfg)


def read(f: sf.SoundFile, header: Header, cfg: AudioConfig) -> np.ndarray:
    """All frames of the open file `f` (of `header`) as float32 [T, C_in]; raises AudioRejected
    (undecodable / too_large / non_finite).

    Known frame counts are read in one call of at most header.frames frames (libsndfile never returns
    more than the header says); unknown ones block by block against the running budget. Integer PCM
    (`_FINITE_SUBTYPES`: FLAC, PCM WAV, ...) decodes to finite floats by construction; other samples are
    checked for NaN and Inf.
    """
    budget = cfg.max_decoded_bytes // (4 * header.channels)  # frames
    check = not header.subtype.startswith(_FINITE_SUBTYPES)
    try:
        if header.frames is not None:
            x = f.read(min(header.frames, budget), dtype="float32", always_2d=True)
        else:
            blocks, total = [], 0
            while True:
                block = f.read(min(BLOCK_FRAMES, budget - total + 1), dtype="float32", always_2d=True)
                if not len(block):
                    break
                total += len(block)
                if total > budget:
                    raise AudioRejected("too_large", f"decoding passed max_decoded_bytes {cfg.max_decoded_bytes} "
                                                     "(header gives no frame count)")
                if check and not np.isfinite(block).all():
                    raise AudioRejected("non_finite", f"NaN or Inf in decoded samples near frame {total}")
                blocks.append(block)
            x = np.concatenate(blocks) if blocks else np.zeros((0, header.channels), np.float32)
    except _DECODE_ERRORS as exc:
        raise AudioRejected("undecodable", f"{type(exc).__name__}: {exc}"[:300]) from exc
    if check and not np.isfinite(x).all():
        raise AudioRejected("non_finite", "NaN or Inf in decoded samples")
    return x


class _Reader(sf.SoundFile):
    """Read front to back without seeking. soundfile asks a seekable file for its position before
    every read and seeks after it; libsndfile fails that seek at the end of a stream of unknown length
    (e.g. FLAC with total_samples = 0), and it is work for nothing on the others."""

    def seekable(self) -> bool:
        return False


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """[T, C_in] -> [T, channels].

    To mono: the mean of all channels. To stereo: mono is duplicated; from more than two channels
    the first two are kept (front left / right in WAV, FLAC and Vorbis channel order), the rest dropped.
    """
    have = x.shape[1]
    if have == channels:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(x, channels, axis=1)
    if have > channels:
        return x[:, :channels]
    raise ValueError(f"cannot convert {have} channels to {channels}; targets are 1 (mono) or 2 (stereo)")


def resample(x: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ",
             alloc: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
    """[T, C] float32 at in_rate -> [T', C] float32 at out_rate, T' ≈ T * out_rate / in_rate (soxr).

    The values are soxr.resample's of the channels given one plane each (soxr filters each channel on
    its own: the same values as interleaved). soxr reads `x` as decoded and writes one plane per
    channel (`soxr_direct`), into `alloc(n)` when given (n float32 values: a decoder's shared memory),
    so the result's transpose [C, T'] is C-contiguous and in that memory. Where `soxr_direct` cannot
    give the result, soxr.resample does, on a planar copy.
    """
    if in_rate == out_rate:
        return x
    y = soxr_direct.resample(x, in_rate, out_rate, quality, alloc or soxr_direct.empty)
    if y is not None:
        return y.T
    planar = np.ascontiguousarray(x.T, dtype=np.float32).T  # [T, C] with each channel contiguous
    return soxr.resample(planar, in_rate, out_rate, quality=quality)


# `audio.resample_on: actor` builds one filter per output phase (rate_out / gcd of the rates):
# 160 for 44.1 -> 48 kHz, but 24000 for an odd 47999 Hz file, a filter of gigabytes. Rates with
# more phases than this are resampled by soxr in the decoder process as usual.
MAX_DEVICE_PHASES = 1024


def device_resamplable(rate_in: int, rate_out: int) -> bool:
    return rate_out // math.gcd(rate_in, rate_out) <= MAX_DEVICE_PHASES


def split_segments(sample: Sample, audio: np.ndarray, sample_rate: int, source_seconds: float,
                   cfg: AudioConfig) -> tuple[list[Segment], list[Rejection]]:
    """Cut [C, T] audio into Segments of cfg.max_duration_s; pieces under cfg.min_duration_s are rejected.

    The number of pieces n = ceil(source_seconds / max_duration_s) comes from the source length, so
    resampling rounding never adds a sliver piece. n == 1 keeps the key; otherwise piece k is `key#k`
    covering samples [round(k * max_duration_s * sample_rate), next start) (the last piece runs to
    the end). start_s / duration_s are in seconds of the source.
    """
    total = audio.shape[-1]
    count = max(1, math.ceil(source_seconds / cfg.max_duration_s - 1e-9))
    bounds = [round(k * cfg.max_duration_s * sample_rate) for k in range(count)] + [total]
    shortest = math.ceil(cfg.min_duration_s * sample_rate - 1e-6)
    segments, rejections = [], []
    for k in range(count):
        key = sample.key if count == 1 else f"{sample.key}#{k}"
        start, stop = bounds[k], max(bounds[k], bounds[k + 1])
        if stop - start < shortest:
            rejections.append(Rejection(key, sample.source, "too_short",
                                        f"{(stop - start) / sample_rate:.4f} s < min_duration_s {cfg.min_duration_s}"))
            continue
        piece = audio if count == 1 else np.ascontiguousarray(audio[:, start:stop])
        segments.append(Segment(key, sample.source, piece, start / sample_rate, (stop - start) / sample_rate,
                                dict(sample.meta), path=sample.path))
    return segments, rejections


def decode_checked(data: bytes, cfg: AudioConfig, sample_rate: int, channels: int) -> tuple[Header, np.ndarray]:
    """(header, float32 [T, C_in]) of encoded bytes, opened once, every limit checked; raises AudioRejected."""
    if not data:
        raise AudioRejected("empty", "zero-byte audio")
    with _open(data) as f:  # one open for the header and the samples
        header = header_of(f)
        check_header(header, len(data), cfg, sample_rate, channels)
        x = read(f, header, cfg)
    if not len(x):
        raise AudioRejected("no_frames", "decodes to zero samples")
    if header.frames is None:
        _check_size(len(x), header, cfg, sample_rate, channels, "decoded")
    return header, x


def to_model_layout(x: np.ndarray, rate_in: int, cfg: AudioConfig, sample_rate: int, channels: int,
                    alloc: Callable[[int], np.ndarray] | None = None) -> tuple[np.ndarray, int]:
    """Decoded [T, C_in] at rate_in -> (float32 [channels, T'] C-contiguous, its rate): `sample_rate`, or
    rate_in when the actor resamples it (cfg.resample_on "actor" and a rate it can do). alloc: where
    soxr writes the resampled audio (`resample`)."""
    deferred = (cfg.resample_on == "actor" and rate_in != sample_rate
                and device_resamplable(rate_in, sample_rate))  # resampled next to the model
    widen = x.shape[1] == 1 and channels > 1  # mono duplicated after resampling: one channel to resample
    if not widen:
        x = convert_channels(x, channels)
    if not deferred:
        x = resample(x, rate_in, sample_rate, cfg.resample_quality, None if widen else alloc)
    audio = np.ascontiguousarray(x.T, dtype=np.float32)  # [C, T]: no copy after soxr (planar) or for mono
    if widen:
        audio = np.repeat(audio, channels, axis=0)
    return audio, rate_in if deferred else sample_rate


def prepare(sample: Sample, cfg: AudioConfig, sample_rate: int, channels: int,
            other: list[tuple[int, int]] = (), alloc: Callable[[int], np.ndarray] | None = None,
            ) -> tuple[list[Segment], list[Rejection]]:
    """One raw sample -> Segments of float32 [channels, T] at `sample_rate` Hz (at the file's own
    rate, with `Segment.rate` set, when cfg.resample_on is "actor"), or Rejections.
    other: (sample_rate, channels) of the job's other token streams: `stream_audio.attach`.
    alloc: where soxr writes the file's resampled audio (`resample`; a decoder's shared memory).

    Every input key ends up in exactly one of the two lists (a segmented key as key#0, key#1, ...).
    """
    if sample.reject is not None:
        reason, detail = sample.reject
        return [], [Rejection(sample.key, sample.source, check_reason(reason), detail)]
    try:
        if sample.data is None:
            raise AudioRejected("missing_audio", "the sample has no audio data")
        header, x = decode_checked(sample.data, cfg, sample_rate, channels)
    except AudioRejected as exc:
        return [], [Rejection(sample.key, sample.source, exc.reason, exc.detail)]
    source_seconds = len(x) / header.sample_rate
    audio, rate = to_model_layout(x, header.sample_rate, cfg, sample_rate, channels, alloc)
    segments, rejections = split_segments(sample, audio, rate, source_seconds, cfg)
    for seg in segments if rate != sample_rate else []:
        seg.rate = rate
    if other:  # the same pieces for the job's other token streams, resampled from the decoded file
        audio_at = [resample(convert_channels(x, c), header.sample_rate, r, cfg.resample_quality)
                    for r, c in other]
        stream_audio.attach(segments, audio_at, [r for r, _ in other], source_seconds, cfg)
    return segments, rejections
