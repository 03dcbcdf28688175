"""pipeline.audio on real corpus files and on crafted bad headers / payloads."""

import io
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from pipeline import audio
from pipeline.config import AudioConfig
from pipeline.records import Sample
from pipeline.rejects import REASONS
from tests.conftest import REPO, corpus_file

FLAC_16K = "speech/librivox_0890_16k.flac"  # 84800 frames, mono
WAV_16K = "speech/cmu_arctic_a0007_16k.wav"  # 64000 frames, mono
STEREO_44K = "music/wesnoth_battle-epic_10s_44k.flac"  # 441000 frames, stereo
LONG_8K = "speech/asterisk_en_allison_demo-instruct_8k_73s.wav"  # 586790 frames, 73.35 s


def sample(rel_or_bytes, key="k", **kw) -> Sample:
    data = corpus_file(rel_or_bytes).read_bytes() if isinstance(rel_or_bytes, str) else rel_or_bytes
    return Sample(key, "shard-0", data, **kw)


def decoded(rel: str) -> np.ndarray:
    x, _ = sf.read(corpus_file(rel), dtype="float32", always_2d=True)
    return x


def wav_header(rate: int, channels: int, frames: int = 100, bits: int = 16) -> bytes:
    """A PCM WAV with an arbitrary header (struct-packed), followed by `frames` of data."""
    data = b"\x01\x00" * frames * max(channels, 1)
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


def flac_with_total(total: int) -> bytes:
    """The real FLAC with STREAMINFO's 36-bit total-samples field replaced (0 means unknown)."""
    data = bytearray(corpus_file(FLAC_16K).read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # first block is STREAMINFO
    at = 8 + 10
    word = int.from_bytes(data[at : at + 8], "big")
    data[at : at + 8] = ((word & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    return bytes(data)


def float_wav(x: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def one_rejection(segments, rejections):
    assert segments == [] and len(rejections) == 1
    assert rejections[0].key == "k" and rejections[0].source == "shard-0"
    assert rejections[0].reason in REASONS
    return rejections[0]


def test_decode_header_reads_real_header_and_unknown_length():
    h = audio.decode_header(corpus_file(FLAC_16K).read_bytes())
    assert (h.sample_rate, h.channels, h.frames, h.format) == (16000, 1, 84800, "FLAC")
    assert audio.decode_header(flac_with_total(0)).frames is None


def test_resample_rate_length_and_wiring():
    segs, rej = audio.prepare(sample(FLAC_16K), AudioConfig(), 24000, 1)
    assert rej == [] and len(segs) == 1
    seg = segs[0]
    assert seg.audio.dtype == np.float32 and seg.audio.flags.c_contiguous and seg.audio.shape[0] == 1
    assert abs(seg.num_samples - 84800 * 24000 // 16000) <= 1
    expected = soxr.resample(decoded(FLAC_16K), 16000, 24000, quality="HQ")[:, 0]
    np.testing.assert_array_equal(seg.audio[0], expected)
    assert (seg.key, seg.start_s) == ("k", 0.0) and seg.duration_s == pytest.approx(5.3, abs=1e-4)

    segs, _ = audio.prepare(sample(STEREO_44K), AudioConfig(), 48000, 2)
    assert segs[0].audio.shape == (2, 480000)


def test_resampled_tone_keeps_its_frequency():
    rate, t = 44100, np.arange(44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    segs, _ = audio.prepare(sample(float_wav(tone, rate)), AudioConfig(), 24000, 1)
    y = segs[0].audio[0]
    assert len(y) == 24000
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * 24000 / len(y)
    assert abs(peak_hz - 1000.0) <= 1.0


def test_channel_conversion():
    cfg = AudioConfig()
    stereo = decoded(STEREO_44K)
    mono = audio.prepare(sample(STEREO_44K), cfg, 44100, 1)[0][0].audio
    np.testing.assert_allclose(mono[0], stereo.mean(axis=1), atol=1e-7)
    kept = audio.prepare(sample(STEREO_44K), cfg, 44100, 2)[0][0].audio
    np.testing.assert_array_equal(kept, stereo.T)

    dup = audio.prepare(sample(WAV_16K), cfg, 16000, 2)[0][0].audio
    assert dup.shape == (2, 64000)
    np.testing.assert_array_equal(dup[0], decoded(WAV_16K)[:, 0])
    np.testing.assert_array_equal(dup[1], dup[0])

    rel = "edge/6ch_alsa_FL_FR_FC_noise_RL_RR_48k.wav"
    six = decoded(rel)
    assert six.shape[1] == 6 and not np.array_equal(six[:, 0], six[:, 2])
    front = audio.prepare(sample(rel), cfg, 48000, 2)[0][0].audio
    np.testing.assert_array_equal(front, six[:, :2].T)


def test_segmenting_exact_keys_starts_and_short_tail():
    cfg = AudioConfig(max_duration_s=30.0, min_duration_s=0.05)
    segs, rej = audio.prepare(sample(LONG_8K, key="demo"), cfg, 8000, 1)
    assert rej == []
    assert [s.key for s in segs] == ["demo#0", "demo#1", "demo#2"]
    assert [s.start_s for s in segs] == [0.0, 30.0, 60.0]
    assert [s.num_samples for s in segs] == [240000, 240000, 586790 - 480000]
    assert segs[2].duration_s == pytest.approx(13.34875)
    np.testing.assert_array_equal(np.concatenate([s.audio for s in segs], axis=1)[0], decoded(LONG_8K)[:, 0])
    assert all(s.audio.flags.c_contiguous and s.meta == {} for s in segs)

    segs, rej = audio.prepare(sample(LONG_8K, key="demo"), AudioConfig(min_duration_s=14.0), 24000, 1)
    assert [s.key for s in segs] == ["demo#0", "demo#1"] and [s.num_samples for s in segs] == [720000, 720000]
    assert [(r.key, r.reason) for r in rej] == [("demo#2", "too_short")]


def test_exact_multiple_of_max_duration():
    exact = "music/moh_macroform_cold_day_30s_8k.wav"  # 240000 frames = 30.000 s
    segs, rej = audio.prepare(sample(exact, meta={"text": "x"}), AudioConfig(max_duration_s=30.0), 24000, 1)
    assert rej == [] and [s.key for s in segs] == ["k"] and segs[0].meta == {"text": "x"}
    segs, rej = audio.prepare(sample(exact), AudioConfig(max_duration_s=10.0), 44100, 1)
    assert rej == [] and [s.key for s in segs] == ["k#0", "k#1", "k#2"]
    assert [s.start_s for s in segs] == [0.0, 10.0, 20.0] and {s.num_samples for s in segs} == {441000}


def test_short_items():
    cfg = AudioConfig(min_duration_s=0.05)
    rej = one_rejection(*audio.prepare(sample("env/sound-icons_percussion-10_35ms_16k.wav"), cfg, 24000, 1))
    assert rej.reason == "too_short"
    segs, rej = audio.prepare(sample("edge/short_50ms_wesnoth_battle-epic_44k_stereo.flac"), cfg, 24000, 1)
    assert rej == [] and segs[0].num_samples == 1200


BAD_CASES = {
    "pre_rejected": (lambda: Sample("k", "shard-0", None, reject=("unsafe_member", "x")), {}, "unsafe_member"),
    "no_data": (lambda: Sample("k", "shard-0", None), {}, "missing_audio"),
    "zero_bytes": (lambda: sample(b""), {}, "empty"),
    "zero_frames": (lambda: sample("edge/zero_frames_16k_mono.wav"), {}, "no_frames"),
    "not_audio": (lambda: sample(b"<html>not a flac file</html>" * 20, ext="flac"), {}, "undecodable"),
    "truncated_flac": (lambda: sample(corpus_file(FLAC_16K).read_bytes()[:45000]), {}, "undecodable"),
    "rate_1hz": (lambda: sample(wav_header(1, 1)), {}, "bad_header"),
    "rate_2ghz": (lambda: sample(wav_header(2_000_000_000, 1)), {}, "bad_header"),
    "zero_channels": (lambda: sample(wav_header(16000, 0)), {}, "bad_header"),
    "300_channels": (lambda: sample(wav_header(16000, 300)), {}, "bad_header"),
    "nan": (lambda: sample(float_wav(np.array([0.1, np.nan, 0.2] * 400, np.float32))), {}, "non_finite"),
    "inf": (lambda: sample(float_wav(np.array([0.1, np.inf, 0.2] * 400, np.float32))), {}, "non_finite"),
    "huge_frame_count": (lambda: sample(flac_with_total((1 << 36) - 1)), {}, "too_large"),
    "file_bytes": (lambda: sample(FLAC_16K), {"max_file_bytes": 50_000}, "too_large"),
    "decoded_bytes": (lambda: sample(FLAC_16K), {"max_decoded_bytes": 84800 * 4 - 1}, "too_large"),
    "output_bytes": (lambda: sample(FLAC_16K), {"max_decoded_bytes": 84800 * 4 * 2}, "too_large"),
    "unknown_length_budget": (lambda: sample(flac_with_total(0)), {"max_decoded_bytes": 100_000}, "too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_named_rejection(case):
    make, overrides, reason = BAD_CASES[case]
    rej = one_rejection(*audio.prepare(make(), AudioConfig(**overrides), 48000, 1))
    assert rej.reason == reason, rej.detail
    assert rej.detail


def test_unknown_frame_count_decodes_everything_in_blocks(monkeypatch):
    monkeypatch.setattr(audio, "BLOCK_FRAMES", 4096)
    segs, rej = audio.prepare(sample(flac_with_total(0)), AudioConfig(), 16000, 1)
    assert rej == []
    np.testing.assert_array_equal(segs[0].audio[0], decoded(FLAC_16K)[:, 0])


def test_nan_after_first_block_of_unknown_length_stream(monkeypatch):
    monkeypatch.setattr(audio, "header_of", lambda f: audio.Header(16000, 1, None, "WAV", "FLOAT"))
    x = np.full(10000, 0.1, np.float32)
    x[9000] = np.nan
    monkeypatch.setattr(audio, "BLOCK_FRAMES", 1024)
    assert one_rejection(*audio.prepare(sample(float_wav(x)), AudioConfig(), 16000, 1)).reason == "non_finite"


def test_importing_audio_pulls_no_heavy_modules():
    code = "import sys, pipeline.audio; print(sorted(m for m in ('torch', 'ray', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
