"""The shipped tiny model loads everywhere it should, and the training code path works (no real training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codec import EncodecConfig, load_model, save_model
from codec.losses import MultiScaleMelLoss, mel_filterbank, waveform_l1
from codec.trainer import TrainableEncodec

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "tiny-24khz"


def test_shipped_files_and_size():
    for name in ("config.json", "model.safetensors", "MODEL_CARD.md", "training.json"):
        assert (MODEL_DIR / name).is_file(), name
    assert (MODEL_DIR / "model.safetensors").stat().st_size <= 10_000_000
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["sampling_rate"] == 24000 and config["audio_channels"] == 1
    assert 6.0 in config["target_bandwidths"] and 1.5 in config["target_bandwidths"]


def test_load_model_reports_trained_weights():
    model = load_model(MODEL_DIR)
    assert model.provenance.random_weights is False
    assert model.config.hop_length == 320 and model.config.frame_rate == 75
    assert model.config.bandwidth_to_num_quantizers == {1.5: 2, 3.0: 5, 6.0: 10}


def test_transformers_loads_it_and_gives_our_codes():
    transformers = pytest.importorskip("transformers")
    theirs = transformers.EncodecModel.from_pretrained(MODEL_DIR).eval()
    ours = load_model(MODEL_DIR)
    audio = torch.randn(1, 1, 24000, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.no_grad():
        their_codes = theirs.encode(audio, bandwidth=6.0).audio_codes[0, 0]
        their_audio = theirs.decode(theirs.encode(audio, bandwidth=6.0).audio_codes, [None]).audio_values
    item = ours.encode(audio, bandwidth=6.0)[0]
    assert torch.equal(item.codes, their_codes)
    assert torch.allclose(ours.decode([item])[0], their_audio[0, :, :24000], atol=1e-4)


def test_training_config_matches_the_shipped_model():
    import yaml

    from codec.trainer.loop import build_config

    cfg = yaml.safe_load((MODEL_DIR.parents[1] / "configs" / "train_tiny.yaml").read_text())
    shipped = EncodecConfig.from_dict(json.loads((MODEL_DIR / "config.json").read_text()))
    assert build_config(cfg["model"]).to_dict() == shipped.to_dict()
    assert all(entry["licence"] for split in ("train", "valid", "heldout") for entry in cfg["data"][split])


def test_training_files_are_licensed_and_disjoint_from_the_held_out_audio():
    record = json.loads((MODEL_DIR / "training.json").read_text())
    files = record["files"]
    train = {(f["package"], f["path"]) for f in files["train"]}
    held = {(f["package"], f["path"]) for split in ("valid", "heldout") for f in files[split]}
    assert len(train) > 100 and record["train_seconds"] >= 30 * 60 and not train & held
    # copyleft terms the weights can carry (GPL-2.0) or permissive ones; nothing NC, CC-BY-SA or unknown
    allowed = {"GPL-2", "GPL-2+", "BSD-2", "Drascula-License (BSD-like)"}
    assert {f["licence"] for f in files["train"]} <= allowed
    assert record["weights_license"] == "GPL-2.0" and "GPL-2.0" in (MODEL_DIR / "MODEL_CARD.md").read_text()
    assert not any("encodec_test" in f["path"] for f in files["train"])  # CC-BY-NC
    manifest = MODEL_DIR.parents[2] / "shared" / "corpus" / "manifest.csv"
    if manifest.is_file():  # every file the test corpus copied from a package stays held out
        import csv

        with manifest.open() as f:
            sources = {(row["source_pkg"], row["source_path"]) for row in csv.DictReader(f)}
        assert not train & sources


TINY = EncodecConfig(num_filters=2, hidden_size=8, codebook_size=16, num_lstm_layers=1,
                     target_bandwidths=(0.6, 1.2))  # 4 bits x 75 Hz = 300 bps: 2 and 4 codebooks


def _train(seed: int, steps: int = 2) -> TrainableEncodec:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TrainableEncodec(TINY)
    audio = torch.randn(4, 1, 3200, generator=gen) * 0.1
    latents = model.encode_latents(audio).detach()
    model.ema.kmeans_init(latents.permute(0, 2, 1).reshape(-1, latents.shape[1]), gen)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    mel = MultiScaleMelLoss(24000, windows=(64, 128))
    for _ in range(steps):
        recon, commit, codes = model(audio, n_q=4, generator=gen)
        loss = waveform_l1(audio, recon) + mel(audio, recon) + commit
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert codes.shape == (4, 4, 10)
    return model


def test_training_is_reproducible_from_a_seed_and_exports(tmp_path):
    a, b, c = _train(0), _train(0), _train(1)
    sa, sb, sc = a.export().state_dict(), b.export().state_dict(), c.export().state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    codebook = sa["quantizer.layers.0.codebook.embed"]
    assert codebook.abs().sum() > 0 and torch.unique(codebook, dim=0).shape[0] > 1
    loaded = load_model(save_model(a.export(), tmp_path / "tiny"))
    audio = torch.randn(1, 1, 1000, generator=torch.Generator().manual_seed(5)) * 0.1
    item = loaded.encode(audio, bandwidth=1.2)[0]
    assert item.codes.shape == (4, 4) and loaded.decode([item])[0].shape == (1, 1000)


def test_straight_through_gradient_reaches_the_encoder():
    model = TrainableEncodec(TINY)
    audio = torch.randn(2, 1, 3200, generator=torch.Generator().manual_seed(0)) * 0.1
    recon, _commit, _ = model(audio, n_q=2)
    waveform_l1(audio, recon).backward()
    first = model.model.encoder.layers[0].conv.parametrizations.weight.original1
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_mel_filterbank_equals_the_metrics_one():
    from codec.metrics import mel_filterbank as reference

    bank = mel_filterbank(24000, 512, 64)
    assert bank.shape == (64, 257)
    assert torch.allclose(bank, torch.from_numpy(reference(24000, 512, 64)).float(), atol=1e-6)
    with pytest.raises(ValueError):
        mel_filterbank(24000, 32, 64)


def test_tiny_source_alias_and_fallback():
    from codec import load_first

    model = load_model("tiny:24khz")
    assert model.provenance.source == "tiny:24khz" and model.provenance.random_weights is False
    assert model.provenance.model_card.endswith("MODEL_CARD.md")
    with pytest.raises(ValueError, match="tiny:24khz"):
        load_model("tiny:48khz")
    first, skipped = load_first(["/nonexistent/model", "tiny:24khz"])
    assert first.provenance.source == "tiny:24khz"
    assert len(skipped) == 1 and skipped[0].startswith("/nonexistent/model: ")
    with pytest.raises(ValueError, match="no model source"):
        load_first(["/nonexistent/a", "tiny:96khz"])
