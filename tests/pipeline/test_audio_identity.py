"""pipeline.audio.prepare gives bit for bit the audio of the code before the decoders were made leaner
(main at c0ce7a9): one open per file, no finiteness scan of integer PCM, planar soxr for several channels,
mono widened after resampling. `_old_prepare` below is that code, kept here as the reference; the
resampler is part of the provenance, so its output must not move by one bit.
"""

import io
import math

import numpy as np
import pytest
import soundfile as sf
import soxr

from pipeline import audio
from pipeline.config import AudioConfig
from pipeline.records import Sample
from tests.conftest import corpus_file

# Several rates (8 to 128 kHz), channel counts (1, 2, 6) and codecs (FLAC 16/24 bit, PCM, u8, mu-law,
# GSM, float WAV, AIFF, Ogg Vorbis, Opus, MP3).
CLIPS = ["speech/librivox_0890_16k.flac", "speech/cmu_arctic_a0007_16k.wav", "speech/librivox_0920_16k.ogg",
         "speech/alsa_front_left_48k_24bit.flac", "speech/asterisk_en_allison_demo-congrats_8k_32kbps.mp3",
         "speech/asterisk_fr_armelle_conf-adminmenu_gsm610.wav", "speech/synth_espeakng_en-us_22k.wav",
         "speech/klettres_ru_soft_44k_stereo.ogg", "music/wesnoth_battle-epic_10s_44k.flac",
         "music/wesnoth_elvish-theme_6s_44k.wav", "music/heroes_xm_heroes03_12s_48k.flac",
         "music/wesnoth_love_theme_20s_48k.opus", "music/asc_frontiers_30s_22k_orig.mp3",
         "edge/6ch_alsa_FL_FR_FC_noise_RL_RR_48k.wav", "edge/aiff_klettres_en_car_44k.aiff",
         "edge/float32_wesnoth_elvish-theme_3s_48k_stereo.wav", "edge/klettres_da_a-15_128kHz.ogg",
         "edge/mulaw_asterisk_en_basic-pbx-ivr-main_8k.wav", "edge/short_50ms_wesnoth_battle-epic_44k_stereo.flac",
         "env/heroes_foule2_crowd_u8_11k.wav", "env/supertux_rain_10s_44k_stereo.flac"]
TARGETS = [(24000, 1), (48000, 2), (16000, 1), (44100, 2)]


# ----- the reference: pipeline/audio.py's decode path before this change ---------------------------------
class _OldStreamFile(sf.SoundFile):
    def seekable(self) -> bool:
        return False


def _old_decode(data: bytes, cfg: AudioConfig) -> tuple[np.ndarray, int]:
    info = sf.info(io.BytesIO(data))
    frames = None if not 0 <= info.frames < audio.UNKNOWN_FRAMES else int(info.frames)
    budget = cfg.max_decoded_bytes // (4 * info.channels)
    with (sf.SoundFile if frames is not None else _OldStreamFile)(io.BytesIO(data)) as f:
        if frames is not None:
            x = f.read(min(frames, budget), dtype="float32", always_2d=True)
        else:
            blocks = []
            while len(block := f.read(audio.BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(block)
            x = np.concatenate(blocks)
    assert np.isfinite(x).all()
    return x, int(info.samplerate)


def _old_convert(x: np.ndarray, channels: int) -> np.ndarray:
    have = x.shape[1]
    if have == channels:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(x, channels, axis=1)
    return x[:, :channels]


def _old_prepare(data: bytes, cfg: AudioConfig, sample_rate: int, channels: int) -> tuple[list, int, float]:
    """([C, T] pieces, their rate, source seconds) as the old prepare made them (no rejections here)."""
    x, rate_in = _old_decode(data, cfg)
    source_seconds = len(x) / rate_in
    x = _old_convert(x, channels)
    deferred = (cfg.resample_on == "actor" and rate_in != sample_rate
                and audio.device_resamplable(rate_in, sample_rate))
    if not deferred and rate_in != sample_rate:
        y = soxr.resample(np.ascontiguousarray(x, dtype=np.float32), rate_in, sample_rate, quality=cfg.resample_quality)
        x = np.asarray(y, dtype=np.float32)
    rate = rate_in if deferred else sample_rate
    full = np.ascontiguousarray(x.T, dtype=np.float32)
    count = max(1, math.ceil(source_seconds / cfg.max_duration_s - 1e-9))
    bounds = [round(k * cfg.max_duration_s * rate) for k in range(count)] + [full.shape[-1]]
    return [full[:, bounds[k]:bounds[k + 1]] for k in range(count)], rate, source_seconds


# ----- the comparison ------------------------------------------------------------------------------------
def _same(clip: str, cfg: AudioConfig, sample_rate: int, channels: int) -> None:
    data = corpus_file(clip).read_bytes()
    want, want_rate, _ = _old_prepare(data, cfg, sample_rate, channels)
    segments, rejections = audio.prepare(Sample("k", "src", data, clip.rsplit(".", 1)[-1]), cfg, sample_rate,
                                         channels)
    assert len(segments) + len(rejections) == len(want), clip
    for seg in segments:
        k = int(seg.key.rsplit("#", 1)[1]) if "#" in seg.key else 0
        got = seg.audio
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == want[k].shape, (clip, seg.key)
        assert got.tobytes() == want[k].tobytes(), f"{clip} {seg.key}: audio differs from the old decode path"
        assert (seg.rate or sample_rate) == want_rate


@pytest.mark.parametrize("clip", CLIPS)
def test_prepare_is_bit_identical_to_the_old_path(clip):
    for sample_rate, channels in TARGETS:
        _same(clip, AudioConfig(), sample_rate, channels)


@pytest.mark.parametrize("clip", ["music/wesnoth_battle-epic_10s_44k.flac", "speech/librivox_0890_16k.flac",
                                  "edge/6ch_alsa_FL_FR_FC_noise_RL_RR_48k.wav"])
def test_actor_resampling_and_segments_are_bit_identical(clip):
    """`resample_on: actor` (the file's own rate, no soxr) and cutting into several segments."""
    for sample_rate, channels in TARGETS:
        _same(clip, AudioConfig(resample_on="actor"), sample_rate, channels)
        _same(clip, AudioConfig(max_duration_s=2.5, min_duration_s=0.0), sample_rate, channels)


def test_unknown_length_flac_is_bit_identical(monkeypatch):
    from tests.pipeline.test_audio import flac_with_total

    data = flac_with_total(0)
    monkeypatch.setattr(audio, "BLOCK_FRAMES", 4096)
    want, _, _ = _old_prepare(data, AudioConfig(), 24000, 2)
    (seg,), rejections = audio.prepare(Sample("k", "src", data, "flac"), AudioConfig(), 24000, 2)
    assert rejections == [] and seg.audio.tobytes() == want[0].tobytes()


def test_planar_resample_equals_interleaved_soxr():
    """audio.resample hands soxr one plane per channel; soxr's interleaved output has the same values."""
    x = np.random.default_rng(0).uniform(-1, 1, (44100 * 3 + 17, 2)).astype(np.float32)
    got = audio.resample(x, 44100, 48000)
    want = soxr.resample(x, 44100, 48000, quality="HQ")
    assert got.shape == want.shape and np.array_equal(got, want) and got.T.flags.c_contiguous
