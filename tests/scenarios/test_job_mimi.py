"""Mimi through the whole product: the job (CLI, `random:mimi`, tars of real clips at 16-44.1 kHz, one of
50 ms) with rows equal to transformers' one-item codes under the same weights; the Parquet metadata
(family, 12.5 frames/s); verify at the preset's 8 codebooks; diff; the training loader at 12.5 Hz; and
Moshi's per-codebook delay (semantic codebook first, the acoustic ones one step later) on Mimi tokens."""

import json
import math
import shutil
import tarfile

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from codec.mimi import random_mimi, save_mimi
from jobs.tokenize import main
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.reader import TokenDataset, load_provenance
from pipeline.records import Sample
from pipeline.training.patterns import Pattern
from tests.conftest import REPO, corpus_file, torch_threads

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("local_ray")

FILES = {
    "hello": "speech/supertux_tux_hello_44k_stereo.ogg",
    "tiny": "edge/short_50ms_wesnoth_battle-epic_44k_stereo.flac",
    "cards": "speech/cards_005_16k.wav",
}
CONFIG = REPO / "configs" / "mimi_8.yaml"
OVERRIDES = ["model=random:mimi", "device=cpu", "num_actors=1", "cpus_per_actor=1", "decode_threads=1",
             "audio.max_duration_s=4"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """transformers' MimiModel with random:mimi's weights (written by our save, read by from_pretrained)."""
    root = tmp_path_factory.mktemp("mimi")
    save_mimi(random_mimi("random:mimi"), root / "random_mimi")
    return transformers.MimiModel.from_pretrained(root / "random_mimi").eval()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    (root / "shards").mkdir()
    with tarfile.open(root / "shards" / "s-0.tar", "w") as tf:
        for key, rel in FILES.items():
            tf.add(corpus_file(rel), arcname=f"{key}.{rel.rsplit('.', 1)[1]}")
    rc = main(["--config", str(CONFIG), "--input", str(root / "shards" / "s-*.tar"), "--output", str(root / "out"),
               *OVERRIDES])
    assert rc == 0
    return root


def test_job_rows_equal_transformers_alone(job, reference):
    cfg = load_config(CONFIG, OVERRIDES)
    rows = {r["key"]: r for r in pads.dataset(job / "out" / "tokens").to_table().to_pylist()}
    assert set(rows) == set(FILES)
    with torch_threads(cfg.cpus_per_actor):
        for key, rel in FILES.items():
            sample = Sample(key, "x", corpus_file(rel).read_bytes(), rel.rsplit(".", 1)[1])
            (seg,), _ = audio_prep.prepare(sample, cfg.audio, 24000, 1)
            with torch.no_grad():
                expected = reference.encode(torch.from_numpy(seg.audio)[None], num_quantizers=8).audio_codes[0]
            row = rows[key]
            assert torch.equal(torch.tensor(row["codes"]), expected), key
            assert row["num_frames"] == expected.shape[-1] == math.ceil(seg.num_samples / 1920)
            assert row["pad_samples"] == expected.shape[-1] * 1920 - seg.num_samples and row["scales"] is None
            assert expected.shape[0] == 8
    assert rows["tiny"]["num_frames"] == 1
    assert len({c for row in rows["hello"]["codes"] for c in row}) > 20  # varied codes


def test_metadata_records_the_codec(job):
    prov = load_provenance(str(job / "out"))
    assert prov.codec_family == "mimi" and prov.model_name == "mimi"
    assert prov.frame_rate == 12.5 and prov.hop_length == 1920 and prov.sample_rate == 24000
    assert prov.bandwidth_to_num_quantizers == {"1.1": 8}
    part = next((job / "out" / "tokens").glob("*.parquet"))
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(part).metadata.items()}
    assert json.loads(meta["audiotok.codec_family"]) == "mimi"
    assert json.loads(meta["audiotok.frame_rate"]) == 12.5


def test_loader_and_moshi_delay_pattern(job):
    """The training loader at 12.5 Hz (pad id 2048: the first id that is not a Mimi code), then Moshi's
    layout: codebook 0 (semantic) at step t, the 7 acoustic codebooks at t + 1; revert gives the codes back."""
    from pipeline.training.loader import TokenLoader

    loader = TokenLoader(str(job / "out"), max_tokens=2000, bandwidth=1.1)
    assert loader.pad_id == 2048 and loader.n_q == 8
    stored = {it["key"]: it["codes"] for it in TokenDataset(str(job / "out"))}
    pattern = Pattern("delay", 8, (0, 1, 1, 1, 1, 1, 1, 1))
    seen = 0
    for batch in loader:
        codes, frames = batch["codes"], batch["num_frames"]
        built = pattern.build(codes, frames, empty_id=2048)
        timesteps = codes.shape[-1]
        reverted = pattern.revert(built.sequence, timesteps)
        assert built.sequence.shape == (codes.shape[0], 8, timesteps + 1)
        for b, key in enumerate(batch["key"]):
            n, start = int(frames[b]), int(batch["start_frame"][b])
            assert torch.equal(codes[b, :, :n], stored[key][:, start : start + n])
            assert torch.equal(built.sequence[b, 0, :n], codes[b, 0, :n])  # semantic: no delay
            assert torch.equal(built.sequence[b, 1:, 1 : n + 1], codes[b, 1:, :n])  # acoustic: one step later
            assert (built.sequence[b, 1:, 0] == 2048).all() and int(built.mask[b].sum()) == 8 * n
            assert torch.equal(reverted[b, :, :n], codes[b, :, :n])
            seen += 1
    assert seen == 3


def test_verify_and_diff_on_mimi_output(job, tmp_path, capsys):
    from jobs.diff import main as diff_main
    from jobs.verify import main as verify_main

    report = tmp_path / "report"
    rc = verify_main(["--tokens", str(job / "out"), "--count", "3", "--report", str(report), "--ray", "inline",
                      "--threads", "1", "--min-si-snr", "-1000", "--max-mel-distance", "1000"])
    items = pq.read_table(report / "items.parquet").to_pylist()
    assert rc == 0, capsys.readouterr().err
    assert len(items) == 3 and all(r["status"] == "ok" and r["code_agreement_all"] == 1.0 for r in items)
    assert all(r["n_q"] == 8 and r["bandwidth_kbps"] == 1.1 for r in items)
    copy = tmp_path / "copy"
    shutil.copytree(job / "out", copy)
    assert diff_main([str(job / "out"), str(copy)]) == 0


def test_the_32_codebook_preset_verifies_at_both_codebook_counts(tmp_path, capsys):
    """configs/mimi_32.yaml (4.4 kbps) with 1.1 kbps beside it: verify judges each row at 8 and 32 codebooks."""
    from jobs.verify import main as verify_main

    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "s-0.tar", "w") as tf:
        tf.add(corpus_file(FILES["cards"]), arcname="cards.wav")
    rc = main(["--config", str(REPO / "configs" / "mimi_32.yaml"), "--input", str(tmp_path / "shards" / "s-0.tar"),
               "--output", str(tmp_path / "out"), *OVERRIDES, "bandwidths=[1.1,4.4]", "verify.sample_count=0"])
    assert rc == 0, capsys.readouterr().err
    report = tmp_path / "report"
    rc = verify_main(["--tokens", str(tmp_path / "out"), "--count", "1", "--report", str(report), "--ray", "inline",
                      "--threads", "1", "--bandwidths", "1.1", "4.4", "--min-si-snr", "-1000",
                      "--max-mel-distance", "1000"])
    items = pq.read_table(report / "items.parquet").to_pylist()
    assert rc == 0, capsys.readouterr().err
    assert sorted((r["n_q"], r["bandwidth_kbps"]) for r in items) == [(8, 1.1), (32, 4.4)]
    assert all(r["status"] == "ok" and r["code_agreement_all"] == 1.0 for r in items)
    assert all(r["si_snr_db"] is not None and r["mel_distance_db"] is not None for r in items)
