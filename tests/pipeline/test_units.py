"""Pure pipeline pieces: configs, buckets, audio preparation (no Ray)."""

import io

import numpy as np
import pytest
import soundfile as sf

from pipeline import audio as audio_prep
from pipeline.config import AudioConfig, load_config
from pipeline.records import Sample
from pipeline.rejects import REASONS
from tests.conftest import REPO, corpus_file


@pytest.mark.parametrize("path",
                         sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("train_")),
                         ids=lambda p: p.name)  # train_*.yaml: codec training configs (tests/codec/test_tiny_model.py)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.bandwidths and cfg.audio.max_duration_s > 0


def test_config_overrides_and_unknown_keys():
    cfg = load_config(REPO / "configs" / "test.yaml", ["buckets.num_buckets=5", "bandwidths=[3.0]"])
    assert cfg.buckets.num_buckets == 5 and cfg.bandwidths == [3.0]
    with pytest.raises(ValueError, match="valid keys"):
        load_config(None, ["audio.max_durationn_s=3"])


def _sample(data, ext="wav", key="k"):
    return Sample(key, "src", data, ext)


def test_prepare_resamples_and_mixes_real_audio():
    data = corpus_file("music/wesnoth_battle-epic_10s_44k.flac").read_bytes()
    segs, rejects = audio_prep.prepare(_sample(data, "flac"), AudioConfig(max_duration_s=30), 24000, 1)
    assert not rejects and segs[0].audio.shape == (1, 240000) and segs[0].audio.dtype == np.float32
    segs, _ = audio_prep.prepare(_sample(data, "flac"), AudioConfig(max_duration_s=30), 48000, 2)
    assert segs[0].audio.shape == (2, 480000)


def test_segmenting_keys_and_positions():
    data = corpus_file("speech/librivox_0870_16k.wav").read_bytes()  # 7.1 s
    cfg = AudioConfig(max_duration_s=3.0, min_duration_s=1.5)
    segs, rejects = audio_prep.prepare(_sample(data, key="a"), cfg, 16000, 1)
    assert [(s.key, s.start_s, round(s.duration_s, 3)) for s in segs] == [("a#0", 0.0, 3.0), ("a#1", 3.0, 3.0)]
    assert [(r.key, r.reason) for r in rejects] == [("a#2", "too_short")]


def test_stereo_from_mono_and_first_two_of_six():
    six = corpus_file("edge/6ch_alsa_FL_FR_FC_noise_RL_RR_48k.wav").read_bytes()
    segs, _ = audio_prep.prepare(_sample(six), AudioConfig(), 48000, 2)
    raw, _ = sf.read(io.BytesIO(six), dtype="float32")
    np.testing.assert_array_equal(segs[0].audio, raw[:, :2].T)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: corpus_file("edge/zero_frames_16k_mono.wav").read_bytes(), "no_frames"),
        (lambda: b"RIFF" + b"\x00" * 100, "undecodable"),
        (lambda: corpus_file("edge/klettres_da_a-15_128kHz.ogg").read_bytes(), "bad_header"),
    ],
)
def test_rejections(make, reason):
    cfg = AudioConfig(max_sample_rate=96000)
    segs, rejects = audio_prep.prepare(_sample(make()), cfg, 24000, 1)
    assert not segs and [r.reason for r in rejects] == [reason]
    assert reason in REASONS


def test_decompression_budget_is_enforced():
    silence = io.BytesIO()
    sf.write(silence, np.zeros(16000 * 60, np.float32), 16000, format="FLAC")  # 60 s of silence: tiny FLAC
    cfg = AudioConfig(max_decoded_bytes=1_000_000)
    segs, rejects = audio_prep.prepare(_sample(silence.getvalue(), "flac"), cfg, 16000, 1)
    assert not segs and rejects[0].reason == "too_large"
