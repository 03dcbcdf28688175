"""End-to-end quality with the shipped tiny model (models/tiny-24khz) on held-out audio.

    demo shard bytes ─► soundfile ─► pipeline.audio.convert_channels (mono)
      ─► pipeline.audio.resample ─► codec encode ─► decode
      ─► metrics against an independent reference (soxr of the channel mean)

The clips are the demo shards' audio items, which the model never saw in training (checked against
its training.json), read from the repository, so the test needs no corpus. The thresholds are the
demo's verify thresholds (configs/demo.yaml `verify:`, applied by `jobs.verify` at the highest
bandwidth): every clean item must pass them, and each planted bug below (wrong resampling rate,
dropped channel, shifted padding, codes of another row) must make at least one item miss them by
SI_SNR_MARGIN_DB of SI-SNR or MEL_MARGIN_DB of mel distance.
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
import yaml

from codec import load_model
from codec.metrics import mel_distance_db, si_snr_db
from pipeline.audio import convert_channels, resample

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "tiny-24khz"
RATE = 24000
HELDOUT = {  # demo shard key -> corpus file it was copied from (demo/LICENSES.md)
    "librivox-0920": "speech/librivox_0920_16k.ogg",
    "goforward": "speech/goforward_16k.wav",
    "arctic-a0007": "speech/cmu_arctic_a0007_16k.wav",
    "drascula-track12": "music/drascula_track12_9s_44k.ogg",
    "librivox-0890": "speech/librivox_0890_16k.flac",
    "cards-005": "speech/cards_005_16k.wav",
    "flite-kal16": "speech/synth_flite_kal16_16k.wav",
}
BANDWIDTH = 6.0  # the demo's highest bandwidth, where jobs.verify applies its thresholds
VERIFY = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["verify"]
MIN_SI_SNR_DB, MAX_MEL_DB = VERIFY["min_si_snr_db"], VERIFY["max_mel_distance"]
SI_SNR_MARGIN_DB = 3.0  # a planted bug must miss the SI-SNR threshold by this much ...
MEL_MARGIN_DB = 1.5  # ... or the mel distance threshold by this much


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return load_model(MODEL_DIR)


@pytest.fixture(scope="module")
def clips() -> dict[str, tuple[np.ndarray, int]]:
    return load_clips()


def load_clips() -> dict[str, tuple[np.ndarray, int]]:
    """key -> (raw audio float32 [T, C], sample rate) of the held-out demo items, plus a stereo item
    (left: librivox-0920 speech, right: drascula-track12 music at 3x its RMS, speech over louder
    music) whose mono mix needs both channels: dropping the right one loses most of the content.
    (At equal RMS the tiny model's dropped-channel SI-SNR, -4.9 dB, is above its worst clean item,
    flite-kal16 at -5.6 dB, so no per-row threshold could tell them apart.)"""
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
    music = 3.0 * music[:n] * np.sqrt(np.mean(speech[:n] ** 2) / np.mean(music[:n] ** 2))
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


def bug_other_row(clips):
    """The codes of another row decoded in place of this row's: each item gets the next item's audio
    (cut or zero-padded to its length) through the codec."""
    keys = sorted(clips)
    prepared = {k: prepare(*clips[k]) for k in keys}

    def prepare_fn(raw, sr):
        mine = next(k for k in keys if clips[k][0] is raw)
        other = prepared[keys[(keys.index(mine) + 1) % len(keys)]]
        n = len(prepared[mine])
        return np.pad(other, (0, max(0, n - len(other))))[:n]

    return prepare_fn


def measure(model, clips, bandwidth=BANDWIDTH, prepare_fn=prepare, roundtrip_fn=roundtrip) -> dict:
    """key -> (SI-SNR dB, mel distance dB) of the (possibly bugged) pipeline against the reference."""
    out = {}
    for key, (raw, sr) in clips.items():
        ref = reference(raw, sr)
        y = roundtrip_fn(model, prepare_fn(raw, sr), bandwidth)
        y = np.pad(y, (0, max(0, len(ref) - len(y))))[: len(ref)]
        out[key] = (si_snr_db(ref, y), mel_distance_db(ref, y, RATE))
    return out


def failures(metrics: dict, si_snr_margin: float = 0.0, mel_margin: float = 0.0) -> list[str]:
    """Items that miss the verify thresholds (by at least the margins)."""
    return [f"{k}: SI-SNR {s:.2f} dB, mel {m:.2f} dB" for k, (s, m) in metrics.items()
            if s < MIN_SI_SNR_DB - si_snr_margin or m > MAX_MEL_DB + mel_margin]


def test_heldout_items_were_not_trained_on():
    record = json.loads((MODEL_DIR / "training.json").read_text())
    trained = {f["path"] for f in record["files"]["train"]}
    heldout = {f["path"] for f in record["files"]["heldout"] if f["package"] == "corpus"}
    assert not trained & set(HELDOUT.values())
    assert set(HELDOUT.values()) <= heldout
    # the corpus copied these files from packages the model was trained on: never their sources
    librivox = "usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0920.wav"
    assert not trained & {librivox, "usr/share/scummvm/drascula/audio/track12.ogg"}


def test_tiny_model_passes_on_heldout_audio(model, clips):
    metrics = measure(model, clips)
    assert not failures(metrics), metrics


@pytest.mark.parametrize("bug", ["wrong_rate", "dropped_channel", "shifted_padding", "other_row"])
def test_planted_bug_is_caught(model, clips, bug):
    kwargs = {
        "wrong_rate": lambda: {"prepare_fn": bug_wrong_rate},
        "dropped_channel": lambda: {"prepare_fn": bug_dropped_channel},
        "shifted_padding": lambda: {"roundtrip_fn": bug_shifted_padding},
        "other_row": lambda: {"prepare_fn": bug_other_row(clips)},
    }[bug]()
    metrics = measure(model, clips, **kwargs)
    caught = failures(metrics, SI_SNR_MARGIN_DB, MEL_MARGIN_DB)
    assert caught, f"planted bug {bug!r} is not {SI_SNR_MARGIN_DB} dB SI-SNR or {MEL_MARGIN_DB} dB mel " \
                   f"beyond the verify thresholds on any item: {metrics}"
