"""The job end to end over each kind of source, and with the 48 kHz model, against transformers."""

import json
import os
import shutil

import pyarrow.dataset as pads
import pytest
import torch

from codec import random_model, save_model
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.records import Sample
from tests.conftest import REPO, corpus_file, torch_threads, transformers_codes

ray = pytest.importorskip("ray")
FILES = {  # key -> corpus file (real audio, mixed rates, channels and formats)
    "librivox-0890": "speech/librivox_0890_16k.flac",
    "hello": "speech/supertux_tux_hello_44k_stereo.ogg",
    "elvish": "music/wesnoth_elvish-theme_6s_44k.wav",
    "front-left": "speech/alsa_front_left_48k_24bit.flac",
}


pytestmark = pytest.mark.usefixtures("local_ray")


def run(cfg, spec, out):
    from pipeline.job import run_job

    return run_job(cfg, spec, str(out), log=lambda m: None)


def rows(out):
    return {r["key"]: r for r in pads.dataset(out / "tokens").to_table().to_pylist()}


def assert_rows_match_transformers(cfg, out, tmp_path, meta=None):
    """Each row's codes equal transformers' EncodecModel on the same prepared audio, item alone."""
    transformers = pytest.importorskip("transformers")
    model = random_model(cfg.model)
    ref = transformers.EncodecModel.from_pretrained(save_model(model, tmp_path / "ref")).eval()
    c = model.config
    found = rows(out)
    assert set(found) == set(FILES)
    with torch_threads(cfg.cpus_per_actor):  # the actor's thread count: reductions depend on it
        for key, rel in FILES.items():
            data = corpus_file(rel).read_bytes()
            sample = Sample(key, "x", data, rel.rsplit(".", 1)[1])
            (seg,), _ = audio_prep.prepare(sample, cfg.audio, c.sampling_rate, c.audio_channels)
            expected, _, out_ref = transformers_codes(ref, torch.from_numpy(seg.audio), max(cfg.bandwidths))
            row = found[key]
            assert torch.equal(torch.tensor(row["codes"]), expected), key
            assert row["num_samples"] == seg.num_samples and row["num_frames"] == expected.shape[-1]
            if c.chunk_length is None:
                assert row["scales"] is None
            else:
                assert row["scales"] == [float(s) for s in out_ref.audio_scales]
            if meta:
                assert row[meta[0]] == meta[1][key]


def test_manifest_source_with_metadata(tmp_path):
    lines = [json.dumps({"path": str(corpus_file(rel)), "speaker": f"spk-{key}"}) for key, rel in FILES.items()]
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    cfg = load_config(REPO / "configs" / "test.yaml", ["source.manifest_rows_per_shard=2"])
    summary = run(cfg, str(manifest), tmp_path / "out")
    assert summary.shards == 2 and summary.rows == 4 and summary.rejects == 0
    found = rows(tmp_path / "out")
    # manifest keys are the path as written, minus the extension
    assert {k.rsplit("/", 1)[-1] for k in found} == {os.path.splitext(os.path.basename(r))[0] for r in FILES.values()}
    assert sorted(r["speaker"] for r in found.values()) == sorted(f"spk-{k}" for k in FILES)


def test_hf_saved_dataset_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = [str(corpus_file(rel)) for rel in FILES.values()]
    ds = datasets.Dataset.from_dict({"key": list(FILES), "audio": paths, "text": [f"t-{k}" for k in FILES]})
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=2)
    cfg = load_config(REPO / "configs" / "test.yaml", ["source.key_column=key"])
    summary = run(cfg, f"hf:{tmp_path / 'saved'}", tmp_path / "out")
    assert summary.shards == 2 and summary.rows == 4
    assert_rows_match_transformers(cfg, tmp_path / "out", tmp_path, meta=("text", {k: f"t-{k}" for k in FILES}))


def test_file_url_brace_pattern_and_48khz_model(tmp_path):
    import webdataset as wds

    shards = tmp_path / "shards"
    shards.mkdir()
    keys = list(FILES)
    for s in range(2):
        with wds.TarWriter(str(shards / f"part-{s:02d}.tar"), encoder=False) as sink:
            for key in keys[2 * s : 2 * s + 2]:
                rel = FILES[key]
                sink.write({"__key__": key, rel.rsplit(".", 1)[1]: corpus_file(rel).read_bytes()})
    cfg = load_config(REPO / "configs" / "test.yaml", ["model=random:48khz", "bandwidths=[6.0,24.0]"])
    summary = run(cfg, f"file://{shards}/part-{{00..01}}.tar", tmp_path / "out")
    assert summary.shards == 2 and summary.rows == 4
    assert_rows_match_transformers(cfg, tmp_path / "out", tmp_path)
    first = rows(tmp_path / "out")["elvish"]
    assert len(first["codes"]) == 16 and len(first["scales"]) == 7  # 288000 samples: ceil(288000 / 47520) chunks
    shutil.rmtree(shards)
