"""Single-process ceilings of the CPU stages of our job, in × realtime per core.

    measure(items, sample_rate, channels, cfg) -> Ceilings

items: encoded audio files held in memory, (bytes, duration in seconds). Each item goes through what
a decoder process does to it (pipeline.audio.prepare's two steps), one item at a time, in this
process: `decode_checked` (one soundfile open: header, limits, samples), then `to_model_layout`
(channel conversion, soxr resampling to `sample_rate` at cfg.resample_quality, [C, T] layout).
Each stage's CPU seconds (time.process_time, all threads of this process) are summed separately;
audio seconds / CPU seconds is its × realtime on one core, and times the core count the machine's
ceiling if every core did nothing but that stage. What a decoder process adds to it (messages, the
shared-memory copy): pipeline/bench/decoder_process.py, both side by side: `python -m jobs.stage_ceilings`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline import audio
from pipeline.config import AudioConfig


@dataclass(frozen=True)
class Ceilings:
    audio_s: float
    decode_cpu_s: float
    resample_cpu_s: float  # channel conversion + resampling + [C, T] layout

    @property
    def decode_rt(self) -> float:
        return self.audio_s / self.decode_cpu_s

    @property
    def resample_rt(self) -> float:
        return self.audio_s / self.resample_cpu_s

    @property
    def prepare_rt(self) -> float:
        """Decode and resample in series on one core, as a decoder process does them."""
        return self.audio_s / (self.decode_cpu_s + self.resample_cpu_s)


def measure(items: list[tuple[bytes, float]], sample_rate: int, channels: int, cfg: AudioConfig) -> Ceilings:
    decode_s = resample_s = audio_s = 0.0
    for data, duration in items:
        t0 = time.process_time()
        header, x = audio.decode_checked(data, cfg, sample_rate, channels)
        t1 = time.process_time()
        audio.to_model_layout(x, header.sample_rate, cfg, sample_rate, channels)
        t2 = time.process_time()
        decode_s += t1 - t0
        resample_s += t2 - t1
        audio_s += duration
    return Ceilings(audio_s, max(decode_s, 1e-9), max(resample_s, 1e-9))
