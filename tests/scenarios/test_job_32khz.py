"""MusicGen's tokenizer (facebook/encodec_32khz architecture): the preset, `random:32khz`, and the job on
real audio equal to transformers' EncodecModel item by item, with weights that transformers wrote."""

import json
import tarfile

import pyarrow.dataset as pads
import pytest
import torch

from codec import PRESETS, load_model, random_model
from jobs.tokenize import main
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.records import Sample
from tests.conftest import REPO, batch_independent_kernels, corpus_file, real_audio, torch_threads

FILES = {  # key -> corpus file: music and speech, 16 to 48 kHz, mono and stereo
    "elvish": "music/wesnoth_elvish-theme_6s_44k.wav",
    "blupi": "music/midi_planetblupi_music001_15s_48k.ogg",
    "cave": "music/supertux_retro_cave_old_10s_48k.flac",
    "librivox-0890": "speech/librivox_0890_16k.flac",
    "hello": "speech/supertux_tux_hello_44k_stereo.ogg",
}


def transformers_32khz(directory, seed=0):
    """A transformers EncodecModel with the 32 kHz architecture and seeded non-trivial weights, written
    by its own `save_pretrained`: convolutions and LSTMs as transformers initialises them, codebooks drawn
    from the encoder's residuals on noise (all-zero codebooks would give code 0 everywhere)."""
    transformers = pytest.importorskip("transformers")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = transformers.EncodecModel(transformers.EncodecConfig(**PRESETS["32khz"].to_dict())).eval()
    with torch.no_grad(), torch_threads(1):
        residual = ref.encoder(torch.randn(1, 1, 32000 * 3, generator=gen) * 0.1)[0].t()
        for layer in ref.quantizer.layers:
            picks = residual[torch.randint(0, residual.shape[0], (layer.codebook.embed.shape[0],), generator=gen)]
            embed = picks + 0.05 * residual.std() * torch.randn(picks.shape, generator=gen)
            layer.codebook.embed.copy_(embed)
            layer.codebook.embed_avg.copy_(embed)
            layer.codebook.inited.fill_(1)
            residual = residual - embed[torch.cdist(residual, embed).argmin(1)]
    ref.save_pretrained(str(directory))
    return ref


def test_preset_is_musicgens_tokenizer():
    c = PRESETS["32khz"]
    assert (c.sampling_rate, c.audio_channels, c.hop_length, c.frame_rate) == (32000, 1, 640, 50)
    assert (c.codebook_size, c.num_filters, c.use_causal_conv, c.use_conv_shortcut) == (2048, 64, False, False)
    assert c.bandwidth_to_num_quantizers == {2.2: 4}
    with pytest.raises(ValueError, match=r"\[2.2\]"):
        c.num_quantizers_for(1.5)  # the 24 kHz bandwidths are invalid here
    cfg = load_config(REPO / "configs" / "encodec_32khz.yaml")
    assert (cfg.model, cfg.bandwidths) == ("facebook/encodec_32khz", [2.2])
    model = random_model("random:32khz")
    assert model.config == c and model.provenance.random_weights
    codes = model.encode(torch.randn(1, 1, 32000) * 0.1)[0].codes
    assert codes.shape == (4, 50) and len(codes.unique()) > 20  # non-trivial codebooks
    with pytest.raises(ValueError, match="random:32khz"):
        random_model("random:44khz")


def test_offline_preset_names_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="(?s)facebook/encodec_32khz.*random:32khz"):
        load_model("facebook/encodec_32khz")


def test_mixed_length_batch_equals_transformers_item_alone(tmp_path):
    """Items of different lengths in one forward pass (as on a GPU), every frame including the last."""
    ref = transformers_32khz(tmp_path / "m", seed=3)
    ours = load_model(tmp_path / "m")
    lengths = [32000 + 333, 5000, 701, 2 * 32000 + 17]
    audio = torch.from_numpy(real_audio("music/wesnoth_battle-epic_10s_44k.flac", 32000, 1))
    batch = torch.stack([audio[:, i * 70000 : i * 70000 + max(lengths)] for i in range(len(lengths))])
    with torch_threads(1), batch_independent_kernels():
        items = ours.encode(batch, lengths, max_batch=len(lengths))
        for b, n in enumerate(lengths):
            with torch.no_grad():
                expected = ref.encode(batch[b : b + 1, :, :n], bandwidth=2.2).audio_codes[0, 0]
            assert expected.shape == (4, -(-n // 640)) and torch.equal(items[b].codes, expected), n


def _shard(path, keys):
    with tarfile.open(path, "w") as tf:
        for key in keys:
            rel = FILES[key]
            tf.add(corpus_file(rel), arcname=f"{key}.{rel.rsplit('.', 1)[1]}")


@pytest.mark.usefixtures("local_ray")
def test_job_on_real_audio_equals_transformers(tmp_path, capsys):
    ref = transformers_32khz(tmp_path / "encodec_32khz")
    (tmp_path / "shards").mkdir()
    _shard(tmp_path / "shards" / "s-0.tar", list(FILES)[:3])
    _shard(tmp_path / "shards" / "s-1.tar", list(FILES)[3:])
    overrides = [f"model={tmp_path / 'encodec_32khz'}", "bandwidths=[2.2]", "audio.max_duration_s=20"]
    cfg = load_config(REPO / "configs" / "test.yaml", overrides)
    capsys.readouterr()
    rc = main(["--config", str(REPO / "configs" / "test.yaml"), "--input", str(tmp_path / "shards" / "s-*.tar"),
               "--output", str(tmp_path / "out"), *overrides])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["rows"] == len(FILES) and summary["rejects"] == 0
    found = {r["key"]: r for r in pads.dataset(tmp_path / "out" / "tokens").to_table().to_pylist()}
    assert set(found) == set(FILES)
    with torch_threads(cfg.cpus_per_actor):  # the actor's thread count: reductions depend on it
        for key, rel in FILES.items():
            sample = Sample(key, "x", corpus_file(rel).read_bytes(), rel.rsplit(".", 1)[1])
            (seg,), _ = audio_prep.prepare(sample, cfg.audio, 32000, 1)
            with torch.no_grad():
                expected = ref.encode(torch.from_numpy(seg.audio)[None], bandwidth=2.2).audio_codes[0, 0]
            row = found[key]
            assert expected.shape[0] == 4 and len(expected.unique()) > 50, key  # real, varied codes
            assert torch.equal(torch.tensor(row["codes"]), expected), key
            assert row["num_frames"] == expected.shape[-1] == -(-seg.num_samples // 640)
            assert row["pad_samples"] == expected.shape[-1] * 640 - seg.num_samples and row["scales"] is None


@pytest.mark.usefixtures("local_ray")
def test_job_runs_with_random_32khz(tmp_path):
    _shard(tmp_path / "s.tar", ["elvish", "hello"])
    rc = main(["--config", str(REPO / "configs" / "encodec_32khz.yaml"), "--input", str(tmp_path / "s.tar"),
               "--model", "random:32khz", "--output", str(tmp_path / "out"),
               "device=cpu", "cpus_per_actor=1", "decode_threads=1", "audio.max_duration_s=10"])
    assert rc == 0
    rows = pads.dataset(tmp_path / "out" / "tokens").to_table().to_pylist()
    assert sorted(r["key"] for r in rows) == ["elvish", "hello"]
    assert all(len(r["codes"]) == 4 and max(max(c) for c in r["codes"]) < 2048 for r in rows)
