"""codec/semantic.py: the tokenizer 31b's job calls (contract: docs/semantic.md). Mixed-length batches equal
each item alone (features within 1e-5 x RMS, identical ids) on both plans; mistakes are ValueErrors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from codec import semantic
from codec.centroids import CentroidMeta, save_centroids
from codec.codewords import nearest
from codec.hubert import PRESETS, TooShort, random_from_config, save_hubert
from codec.semantic import SemanticSpec, load_semantic
from tests.conftest import real_audio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REDUCED = dataclasses.replace(PRESETS["hubert_base"], num_hidden_layers=4, name="hubert_base_4layers")
LENGTHS = [12000, 400, 7777, 3201]


@pytest.fixture(scope="module")
def reduced_dir(tmp_path_factory):
    return save_hubert(random_from_config(REDUCED, seed=0), tmp_path_factory.mktemp("hubert") / REDUCED.name)


@pytest.fixture(scope="module")
def speech_batch():
    speech = torch.from_numpy(real_audio("speech/cmu_arctic_a0007_16k.wav", 16000, 1))[0]
    audio = torch.zeros(len(LENGTHS), 1, max(LENGTHS) + 160)  # padded past the longest item too
    for b, n in enumerate(LENGTHS):
        audio[b, 0, :n] = speech[2000 * b : 2000 * b + n]
    return audio


def centroids_from(tokenizer_features: list[torch.Tensor], path, k=16):
    rows = torch.cat(tokenizer_features)
    vectors = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:k]]
    np.save(path, vectors.numpy())
    return str(path)


def test_batch_equals_items_alone_on_both_plans(reduced_dir, speech_batch, tmp_path, monkeypatch):
    spec = SemanticSpec(str(reduced_dir), 4, centroids_from([torch.randn(40, 768)], tmp_path / "rand.npy"))
    tok = load_semantic(spec)
    alone = [tok.features(speech_batch[b : b + 1, :, :n], [n])[0] for b, n in enumerate(LENGTHS)]
    spec = dataclasses.replace(spec, centroids=centroids_from(alone, tmp_path / "c.npy"))
    tok = load_semantic(spec)
    ids_alone = [nearest(f, tok.centroids.vectors)[None] for f in alone]
    for plan in ("cpu", "cuda", "cuda in passes of 2"):
        tok.set_batch_plan(plan.split()[0])
        if plan == "cuda in passes of 2":  # a batch whose first activation would pass MAX_ELEMENTS
            monkeypatch.setattr(semantic, "MAX_ELEMENTS", 2 * 512 * (max(LENGTHS) // 5 + 1))
        feats, ids = tok.features(speech_batch, LENGTHS), tok.encode(speech_batch, LENGTHS)
        for b, n in enumerate(LENGTHS):
            assert feats[b].shape == (tok.frames_for(n), 768) == (((n - 400) // 320) + 1, 768)
            rms = alone[b].pow(2).mean().sqrt()
            assert float((feats[b] - alone[b]).abs().max()) <= 1e-5 * float(rms), (plan, n)
            assert ids[b].dtype == torch.int64 and torch.equal(ids[b], ids_alone[b]), (plan, n)
    assert len(set(torch.cat(ids_alone, 1)[0].tolist())) > 4  # the ids are not one constant


def test_tokenizer_numbers_and_config(reduced_dir, tmp_path):
    meta = CentroidMeta(model=str(reduced_dir), model_sha256="", layer=4, k=8, dim=768,
                        seed=0, sample="s", sample_sha256="0" * 64, iterations=1, batch_size=1)
    tok = load_semantic(SemanticSpec(str(reduced_dir), 4, centroids_from([torch.randn(9, 768)], tmp_path / "c.npy", 8)))
    assert (tok.family, tok.sample_rate, tok.channels, tok.hop_length, tok.frame_rate, tok.min_samples,
            tok.codebook_size) == ("hubert", 16000, 1, 320, 50.0, 400, 8)
    assert tok.name == "hubert_base_4layers_l4_k8" and tok.dtype == torch.float32
    config = tok.config_dict()
    assert config["layer"] == 4 and config["k"] == 8 and config["centroids_sha256"] == tok.centroids_sha256
    assert config["model_sha256"] == tok.provenance.sha256 and config["architecture"]["num_hidden_layers"] == 4
    with pytest.raises(TooShort, match="fewer than the 400"):
        tok.encode(torch.zeros(1, 1, 399), [399])
    # centroids fitted on another layer or model are refused
    save_centroids(tmp_path / "l3.safetensors", torch.randn(8, 768), dataclasses.replace(meta, layer=3))
    with pytest.raises(ValueError, match="fitted on layer 3, not layer 4"):
        load_semantic(SemanticSpec(str(reduced_dir), 4, str(tmp_path / "l3.safetensors")))
    other = dataclasses.replace(meta, model_sha256="f" * 64)
    save_centroids(tmp_path / "other.safetensors", torch.randn(8, 768), other)
    with pytest.raises(ValueError, match="fitted on the features of"):
        load_semantic(SemanticSpec(str(reduced_dir), 4, str(tmp_path / "other.safetensors")))
    np.save(tmp_path / "narrow.npy", np.zeros((8, 512), dtype=np.float32))
    with pytest.raises(ValueError, match="dim 512"):
        load_semantic(SemanticSpec(str(reduced_dir), 4, str(tmp_path / "narrow.npy")))
    with pytest.raises(ValueError, match="layer must be 0..4"):
        load_semantic(SemanticSpec(str(reduced_dir), 5, str(tmp_path / "c.npy")))
    with pytest.raises(ValueError, match="fp32 only"):
        load_semantic(SemanticSpec(str(reduced_dir), 4, str(tmp_path / "c.npy")), dtype=torch.bfloat16)
