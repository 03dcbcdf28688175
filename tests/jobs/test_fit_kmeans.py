"""python -m jobs.fit_kmeans: a seeded sample of a folder -> centroids with provenance, byte-identical for
the same seed; undecodable and too-short items are skipped and counted; mistakes exit 2 in one line."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import soundfile as sf

from codec.centroids import load_centroids
from codec.hubert import PRESETS, random_from_config, save_hubert
from jobs.fit_kmeans import main
from pipeline.kmeans_fit import FitOptions, fit_kmeans
from tests.conftest import corpus_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REDUCED = dataclasses.replace(PRESETS["hubert_base"], num_hidden_layers=2, name="hubert_base_2layers")
CLIPS = ["speech/cards_005_16k.wav", "speech/goforward_16k.wav", "speech/klettres_en_saw_44k.ogg"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    (root / "audio").mkdir()
    for rel in CLIPS:
        shutil.copy(corpus_file(rel), root / "audio" / rel.split("/")[-1])
    sf.write(root / "audio" / "short.wav", np.zeros(300, dtype=np.float32), 16000)  # < 400 samples: no frame
    (root / "audio" / "broken.wav").write_bytes(b"RIFF not really a wav")
    save_hubert(random_from_config(REDUCED, seed=0), root / "model")
    return root


def options(corpus, out, **kw):
    return FitOptions(input=str(corpus / "audio"), output=str(out), model=str(corpus / "model"), layer=2, k=8,
                      seed=kw.pop("seed", 1), max_item_seconds=1.5, batch_size=64, steps=5, **kw)


def test_same_seed_same_bytes_with_provenance(corpus, tmp_path):
    logs = []
    first = fit_kmeans(options(corpus, tmp_path / "a.safetensors"), log=logs.append)
    fit_kmeans(options(corpus, tmp_path / "b.safetensors"), log=lambda m: None)
    other = fit_kmeans(options(corpus, tmp_path / "c.safetensors", seed=2), log=lambda m: None)
    a, b, c = (load_centroids(tmp_path / f"{n}.safetensors") for n in "abc")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert not np.array_equal(a.vectors.numpy(), c.vectors.numpy()) and other.frames == first.frames
    assert a.k == 8 and a.dim == 768 and a.meta.layer == 2 and a.meta.k == 8 and a.meta.seed == 1
    assert a.meta.model == str(corpus / "model") and len(a.meta.model_sha256) == 64
    assert a.meta.sample_sha256 == first.sample_sha256 and f"{first.frames} frames" in a.meta.sample
    assert first.skipped == {"shorter_than_one_frame": 1, "undecodable": 1}
    assert first.items >= len(CLIPS) and first.frames > 8
    assert any("wrote" in line for line in logs) and not list(tmp_path.glob(".fit_kmeans-*"))


def test_fraction_and_max_seconds_bound_the_sample(corpus, tmp_path):
    capped = fit_kmeans(options(corpus, tmp_path / "a.safetensors", max_seconds=1.0), log=lambda m: None)
    assert capped.items == 1 and capped.seconds <= 1.5


def test_cli_mistakes_exit_2_in_one_line(corpus, tmp_path, capsys):
    base = ["--input", str(corpus / "audio"), "--model", str(corpus / "model"), "--layer", "2", "--steps", "1"]
    assert main([*base, "--output", str(tmp_path / "c.npy")]) == 2
    assert "output must be a .safetensors" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "c.safetensors"), "--k", "100000"]) == 2
    assert "fewer than k=100000" in capsys.readouterr().err and not (tmp_path / "c.safetensors").exists()
    assert main([*base, "--output", str(tmp_path / "c.safetensors"), "--layer", "3"]) == 2
    assert "layer must be 0..2" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "none"), "--output", str(tmp_path / "c.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("audiotok fit_kmeans: ")
