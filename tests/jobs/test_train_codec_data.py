"""codec.trainer.data resolves a training config's file list (jobs.train_codec_data prints it); the codec
training loop's loss, schedule and config."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.losses import neg_si_snr_db
from codec.metrics import si_snr_db
from codec.trainer.data import AudioFile, load_mono, packages, resolve
from codec.trainer.loop import lr_at
from jobs.train_codec_data import main


@pytest.fixture()
def fake_packages(tmp_path):
    """Two unpacked 'packages' with short tones, and a corpus folder with one file."""
    root, corpus = tmp_path / "pkgs", tmp_path / "corpus"
    tone = (0.1 * np.sin(np.arange(1600) * 0.3)).astype(np.float32)
    for i in range(5):
        path = root / "pkg-a" / "usr/share/a" / f"clip{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone * (i + 1), 16000)
    stereo = root / "pkg-b" / "music" / "song.wav"
    stereo.parent.mkdir(parents=True)
    sf.write(stereo, np.stack([tone, -tone], axis=1), 16000, subtype="FLOAT")
    (corpus / "speech").mkdir(parents=True)
    sf.write(corpus / "speech" / "held.wav", tone, 16000)
    return root, corpus


def test_resolve_every_exclude_and_held_out_files_never_train(fake_packages):
    root, corpus = fake_packages
    data = {
        "train": [{"package": "pkg-a", "glob": "usr/share/a/*.wav", "licence": "GPL-2",
                   "exclude": ["usr/share/a/clip0.wav"]},
                  {"package": "pkg-b", "path": "music/song.wav", "licence": "BSD-2", "max_s": 0.05}],
        "valid": [{"package": "pkg-a", "path": "usr/share/a/clip3.wav", "licence": "GPL-2"}],
        "heldout": [{"file": "speech/held.wav", "licence": "BSD-2"}],
    }
    files = resolve(data, corpus=corpus, root=root)
    assert [f.path for f in files["train"]] == ["usr/share/a/clip1.wav", "usr/share/a/clip2.wav",
                                                 "usr/share/a/clip4.wav", "music/song.wav"]
    assert files["heldout"] == [AudioFile("corpus", "speech/held.wav", "BSD-2")]
    assert packages(data) == ["pkg-a", "pkg-b"]
    every = resolve({"train": [{"package": "pkg-a", "glob": "usr/share/a/*.wav", "licence": "x", "every": 2,
                                "offset": 1}]}, corpus=corpus, root=root)
    assert [f.path for f in every["train"]] == ["usr/share/a/clip1.wav", "usr/share/a/clip3.wav"]


def test_every_file_ignores_every_offset_and_max_s_but_keeps_exclusions(fake_packages):
    root, corpus = fake_packages
    data = {"train": [{"package": "pkg-a", "glob": "usr/share/a/*.wav", "licence": "x", "every": 2, "offset": 1,
                       "exclude": ["usr/share/a/clip0.wav"]},
                      {"package": "pkg-b", "path": "music/song.wav", "licence": "BSD-2", "max_s": 0.05}],
            "valid": [{"package": "pkg-a", "glob": "usr/share/a/*.wav", "licence": "x", "every": 4, "offset": 3,
                       "max_s": 0.05}]}
    files = resolve(data, corpus=corpus, root=root, every_file=True)
    assert [(f.path, f.max_s) for f in files["train"]] == [
        ("usr/share/a/clip1.wav", None), ("usr/share/a/clip2.wav", None), ("usr/share/a/clip4.wav", None),
        ("music/song.wav", None)]
    assert [(f.path, f.max_s) for f in files["valid"]] == [("usr/share/a/clip3.wav", 0.05)]  # as listed
    assert data["train"][0]["every"] == 2  # the caller's config is left as it was


def test_load_mono_mixes_cuts_resamples_and_caches(fake_packages):
    root, corpus = fake_packages
    song = AudioFile("pkg-b", "music/song.wav", "BSD-2", max_s=0.05)
    mono = load_mono(song, 24000, corpus=corpus, root=root)
    assert mono.dtype == np.float32 and mono.shape == (1200,)  # 0.05 s at 24 kHz
    assert np.abs(mono).max() < 1e-6  # left = -right: the mean is silence
    assert len(list((root / ".cache").glob("*.npy"))) == 1
    assert np.array_equal(load_mono(song, 24000, corpus=corpus, root=root), mono)
    held = load_mono(AudioFile("corpus", "speech/held.wav", "BSD-2"), 16000, corpus=corpus, root=root)
    assert held.shape == (1600,)


def test_missing_package_or_empty_glob_names_the_fix(fake_packages):
    root, corpus = fake_packages
    with pytest.raises(FileNotFoundError, match="jobs.train_codec_data"):
        resolve({"train": [{"package": "pkg-z", "glob": "*.wav", "licence": "x"}]}, corpus=corpus, root=root)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        resolve({"train": [{"package": "pkg-a", "glob": "*.ogg", "licence": "x"}]}, corpus=corpus, root=root)


def test_cli_unreadable_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\n")
    assert main(["--config", str(bad)]) == 2
    assert "data section" in capsys.readouterr().err


def test_neg_si_snr_matches_the_metric():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 2400, generator=gen)
    y = 0.5 * x + 0.3 * torch.randn(3, 1, 2400, generator=gen)
    expected = np.mean([si_snr_db(x[i, 0].numpy(), y[i, 0].numpy()) for i in range(3)])
    assert float(-neg_si_snr_db(x, y)) == pytest.approx(expected, abs=1e-3)


def test_lr_warmup_then_cosine():
    assert lr_at(1, 100, 1e-3, 1e-5, 10) == pytest.approx(1e-4 + 0.9e-4)
    assert lr_at(10, 100, 1e-3, 1e-5, 10) == pytest.approx(1e-3)
    assert lr_at(11, 100, 1e-3, 1e-5, 10) == pytest.approx(1e-3)
    assert lr_at(100, 100, 1e-3, 1e-5, 10) == pytest.approx(1e-5, rel=0.01)
    assert lr_at(55, 100, 1e-3, 1e-5, 0) < lr_at(20, 100, 1e-3, 1e-5, 0)


def test_band_limit_and_stage_config(tmp_path):
    from codec.trainer.config import load_config
    from codec.trainer.loop import band_limit

    x = torch.randn(2400, generator=torch.Generator().manual_seed(1))
    y = band_limit(x, 4000.0, 24000)
    spec = torch.fft.rfft(y).abs()
    assert spec[401:].max() < 1e-3 * spec[:400].mean()  # bin k is k * 10 Hz here
    assert torch.allclose(band_limit(x, 12000.0, 24000), x, atol=1e-5)
    (tmp_path / "base.yaml").write_text("seed: 0\ntrain: {steps: 10, lr: 0.1}\ndata: {batch_size: 4}\n")
    (tmp_path / "stage2.yaml").write_text("base: base.yaml\ntrain: {steps: 5, init_from: x}\n")
    cfg = load_config(tmp_path / "stage2.yaml")
    assert cfg == {"seed": 0, "train": {"steps": 5, "lr": 0.1, "init_from": "x"}, "data": {"batch_size": 4}}
