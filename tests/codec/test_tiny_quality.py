"""End-to-end quality with the shipped tiny model (models/tiny-24khz) on held-out audio.

    demo shard bytes ─► soundfile ─► pipeline.audio.convert_channels (mono) ─► pipeline.audio.resample
      ─► codec encode ─► decode ─► metrics against an independent reference (soxr of the channel mean)

The clips are the demo shards' items that the model never saw in training (checked against its
training.json), read from the repository, so the test needs no corpus. Thresholds sit between what
the model achieves and what garbled audio gives; each planted bug below (wrong resampling rate,
dropped channel, shifted padding) must make at least one item fail them.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from codec import load_model
from pipeline.audio import convert_channels, resample
from pipeline.verify.metrics import mel_distance_db, si_snr_db

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "tiny-24khz"
RATE = 24000
HELDOUT = {  # demo shard key -> corpus file it was copied from (demo/LICENSES.md)
    "librivox-0920": "speech/librivox_0920_16k.ogg",
    "goforward": "speech/goforward_16k.wav",
    "arctic-a0007": "speech/cmu_arctic_a0007_16k.wav",
    "drascula-track12": "music/drascula_track12_9s_44k.ogg",
}
BANDWIDTH = 6.0  # the demo's highest bandwidth
# Per item, at BANDWIDTH. The tiny model does not reproduce the waveform's phase (its SI-SNR is
# negative, see MODEL_CARD.md), so SI-SNR only separates it from garbage; the envelope checks are phase-blind.
# Measured (training.json, 6 kbps): SI-SNR -15.7..-6.7 dB, mel 6.8..8.7 dB, envelope corr 0.66..0.89,
# lag 1..133 samples; the planted bugs give SI-SNR down to -51 dB, mel up to 22 dB, corr down to -0.14,
# lags of 340+ samples (see test_planted_bug_is_caught).
MIN_SI_SNR_DB = -20.0
MAX_MEL_DB = 10.0
MIN_ENVELOPE_CORR = 0.5
MIN_LAG, MAX_LAG = -100, 200  # samples; the model itself trails its input by up to ~130 samples


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return load_model(MODEL_DIR)


@pytest.fixture(scope="module")
def clips() -> dict[str, tuple[np.ndarray, int]]:
    return load_clips()


def load_clips() -> dict[str, tuple[np.ndarray, int]]:
    """key -> (raw audio float32 [T, C], sample rate) of the held-out demo items, plus a stereo item
    (left: librivox-0920 speech, right: drascula-track12 music at the same RMS) whose mono mix needs
    both channels."""
    out = {}
    for shard in sorted((REPO / "demo" / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key = member.name.rsplit(".", 1)[0]
                if key in HELDOUT and not member.name.endswith(".json"):
                    data, sr = sf.read(io.BytesIO(tar.extractfile(member).read()), dtype="float32", always_2d=True)
                    out[key] = (data, sr)
    assert set(out) == set(HELDOUT)
    speech, rate = out["librivox-0920"][0][:, 0], out["librivox-0920"][1]
    music = soxr.resample(out["drascula-track12"][0].mean(axis=1), out["drascula-track12"][1], rate)
    n = min(len(speech), len(music))
    music = music[:n] * np.sqrt(np.mean(speech[:n] ** 2) / np.mean(music[:n] ** 2))
    out["stereo-speech-music"] = (np.stack([speech[:n], music], axis=1).astype(np.float32), rate)
    return out


def reference(raw: np.ndarray, sr: int) -> np.ndarray:
    """What the pipeline should produce, computed without pipeline code: channel mean, soxr HQ."""
    return soxr.resample(raw.mean(axis=1), sr, RATE, quality="HQ").astype(np.float32)


def prepare(raw: np.ndarray, sr: int) -> np.ndarray:
    return resample(convert_channels(raw, 1), sr, RATE)[:, 0]


def roundtrip(model, x: np.ndarray, bandwidth: float) -> np.ndarray:
    audio = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    return model.decode(model.encode(audio, bandwidth=bandwidth))[0][0].numpy()


# ---- planted bugs: each replaces one stage of the pipeline ------------------------------------------
def bug_wrong_rate(raw, sr):
    """Resampler told the wrong input rate (16 kHz read as 22.05 kHz, 44.1 kHz as 48 kHz)."""
    return resample(convert_channels(raw, 1), {16000: 22050, 44100: 48000}.get(sr, sr), RATE)[:, 0]


def bug_dropped_channel(raw, sr):
    """Mono 'mix' that keeps only the first channel."""
    return resample(np.ascontiguousarray(raw[:, :1]), sr, RATE)[:, 0]


def bug_shifted_padding(model, x, bandwidth):
    """The last frame's padding put before the audio instead of after it: output delayed by the pad."""
    hop = model.config.hop_length
    pad = hop - len(x) % hop if len(x) % hop else hop
    y = roundtrip(model, np.concatenate([np.zeros(pad, np.float32), x]), bandwidth)
    return y[: len(x)]


def envelope_match(ref: np.ndarray, est: np.ndarray, max_lag: int = 640, smooth: int = 240) -> tuple[float, int]:
    """(correlation, lag): the normalised cross-correlation of the amplitude envelopes (|x| averaged
    over `smooth` samples = 10 ms, mean removed) at its peak within +-max_lag samples, and the lag in
    samples by which `est` trails `ref` there. Phase-blind, unlike SI-SNR."""
    kernel = np.ones(smooth) / smooth
    a, b = (np.convolve(np.abs(x), kernel, mode="same") for x in (ref, est))
    a, b = a - a.mean(), b - b.mean()
    n = len(a) + len(b)
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    best = int(np.argmax(corr[lags]))
    return float(corr[lags][best] / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)), int(lags[best])


def measure(model, clips, bandwidth=BANDWIDTH, prepare_fn=prepare, roundtrip_fn=roundtrip) -> dict:
    """key -> (SI-SNR dB, mel distance dB, envelope correlation, envelope lag in samples) of the
    (possibly bugged) pipeline against the reference."""
    out = {}
    for key, (raw, sr) in clips.items():
        ref = reference(raw, sr)
        y = roundtrip_fn(model, prepare_fn(raw, sr), bandwidth)
        y = np.pad(y, (0, max(0, len(ref) - len(y))))[: len(ref)]
        out[key] = (si_snr_db(ref, y), mel_distance_db(ref, y, RATE), *envelope_match(ref, y))
    return out


def failures(metrics: dict) -> list[str]:
    return [f"{k}: SI-SNR {s:.2f} dB, mel {m:.2f} dB, envelope corr {c:.3f} at lag {lag} samples"
            for k, (s, m, c, lag) in metrics.items()
            if s < MIN_SI_SNR_DB or m > MAX_MEL_DB or c < MIN_ENVELOPE_CORR or not MIN_LAG <= lag <= MAX_LAG]


def test_heldout_items_were_not_trained_on():
    record = json.loads((MODEL_DIR / "training.json").read_text())
    trained = {item["file"] for item in record["data"]["train"]}
    assert not trained & set(HELDOUT.values())
    assert set(HELDOUT.values()) <= {item["file"] for item in record["data"]["heldout"]}


def test_tiny_model_passes_on_heldout_audio(model, clips):
    metrics = measure(model, clips)
    assert not failures(metrics), metrics


@pytest.mark.parametrize("bug", ["wrong_rate", "dropped_channel", "shifted_padding"])
def test_planted_bug_is_caught(model, clips, bug):
    kwargs = {
        "wrong_rate": {"prepare_fn": bug_wrong_rate},
        "dropped_channel": {"prepare_fn": bug_dropped_channel},
        "shifted_padding": {"roundtrip_fn": bug_shifted_padding},
    }[bug]
    caught = failures(measure(model, clips, **kwargs))
    assert caught, f"planted bug {bug!r} passed the quality thresholds"
