"""A two-tokenizer job through the real job (local Ray): random:hubert_base layer 9 + k-means centroids
beside EnCodec random:24khz on real speech. Rows of both streams for every key, nothing missing; codes
equal to EnCodec's of each item alone (byte-identical to a one-tokenizer job's: tests/pipeline/test_streams.py);
semantic ids equal the tokenizer run on each item alone (decoded and resampled to 16 kHz by soxr as a
one-stream job would); a crop of both streams covers the same time; verify passes both streams."""

import json
import math
import tarfile

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from jobs.tokenize import main
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.reader import TokenDataset, load_provenance
from pipeline.records import Sample
from pipeline.training import TokenLoader
from tests.conftest import REPO, corpus_file, real_audio, torch_threads

pytestmark = pytest.mark.usefixtures("local_ray")

FILES = {  # short real speech, 16 and 44.1 kHz, mono and stereo
    "saw": "speech/klettres_en_saw_44k.ogg",
    "team": "speech/hedgewars_voice_british_sameteam_44k_stereo.ogg",
    "forward": "speech/goforward_16k.wav",
}
OVERRIDES = ["model=random:24khz", "bandwidths=[1.5,6.0]", "device=cpu", "num_actors=1", "cpus_per_actor=1",
             "decode_threads=1", "prefetch_shards=0", "semantic.model=random:hubert_base", "verify.sample_count=0"]


@pytest.fixture(scope="module")
def hubert():
    from codec.hubert import load_hubert

    return load_hubert("random:hubert_base")


@pytest.fixture(scope="module")
def centroids(hubert, tmp_path_factory):
    """32 centroids: layer-9 features of random:hubert_base on held-out speech (not one of FILES), every
    n-th frame: varied ids without depending on jobs.fit_kmeans."""
    path = tmp_path_factory.mktemp("centroids") / "k32.npy"
    with torch_threads(1), torch.no_grad():
        model = hubert
        x = torch.from_numpy(real_audio("speech/cmu_arctic_a0007_16k.wav", 16000, 1, seconds=2.0))
        hidden, frames = model(x, [x.shape[-1]], 9)
    feats = hidden[0, : frames[0]].numpy()
    np.save(path, np.ascontiguousarray(feats[:: max(1, len(feats) // 32)][:32], dtype=np.float32))
    return path


def _tar(path):
    with tarfile.open(path, "w") as tf:
        for key, rel in FILES.items():
            tf.add(corpus_file(rel), arcname=f"{key}.{rel.rsplit('.', 1)[1]}")
    return path


@pytest.fixture(scope="module")
def jobs(centroids, tmp_path_factory):
    root = tmp_path_factory.mktemp("semantic_job")
    shards = _tar(root / "s-0.tar")
    config = REPO / "configs" / "audiolm_hubert_encodec_24khz.yaml"
    assert main(["--config", str(config), "--input", str(shards), "--output", str(root / "two"), *OVERRIDES,
                 f"semantic.centroids={centroids}"]) == 0
    return root


def test_both_streams_for_every_key(jobs, hubert, centroids):
    from codec import load_model
    from codec.centroids import load_centroids
    from codec.semantic import SemanticTokenizer

    two = pads.dataset(jobs / "two" / "tokens").to_table().sort_by("key")
    assert two.column("key").to_pylist() == sorted(FILES)
    assert pads.dataset(jobs / "two" / "rejects").count_rows() == 0
    assert two.column("semantic_codes").null_count == 0
    cfg = load_config(REPO / "configs" / "audiolm_hubert_encodec_24khz.yaml", OVERRIDES)
    tokenizer = SemanticTokenizer(hubert, 9, load_centroids(centroids))
    encodec = load_model("random:24khz")
    for row in two.to_pylist():
        rel = FILES[row["key"]]
        sample = Sample(row["key"], "x", corpus_file(rel).read_bytes(), rel.rsplit(".", 1)[1])
        (seg,), _ = audio_prep.prepare(sample, cfg.audio, 16000, 1)
        (seg24,), _ = audio_prep.prepare(sample, cfg.audio, 24000, 1)
        with torch_threads(1):
            alone = tokenizer.encode(torch.from_numpy(seg.audio)[None], [seg.num_samples])[0]
            codes = encodec.encode(torch.from_numpy(seg24.audio)[None], bandwidth=6.0)[0].codes
        assert torch.equal(torch.tensor(row["codes"]), codes), row["key"]
        assert torch.equal(torch.tensor(row["semantic_codes"]), alone), row["key"]
        assert alone.shape[1] == (seg.num_samples - 400) // 320 + 1
        assert len(set(row["semantic_codes"][0])) > 3  # varied ids
        assert abs(alone.shape[1] / 50 - len(row["codes"][0]) / 75) < 0.04  # same audio, 50 vs 75 Hz
    prov = load_provenance(str(jobs / "two"))
    (stream,) = prov.streams
    assert stream["column"] == "semantic_codes" and stream["frame_rate"] == 50.0 and stream["codebook_size"] == 32
    assert stream["model_name"] == "hubert_base_l9_k32" and prov.frame_rate == 75.0


def test_crops_of_both_streams_cover_the_same_time(jobs):
    stored = {it["key"]: it for it in TokenDataset(str(jobs / "two"), streams=("semantic",))}
    loader = TokenLoader(str(jobs / "two"), max_tokens=8 * 60 * 3, max_frames=60, streams=("semantic",), seed=2)
    seen = 0
    for batch in loader:
        for b, key in enumerate(batch["key"]):
            n, start = int(batch["num_frames"][b]), int(batch["start_frame"][b])
            s, first = int(batch["semantic_num_frames"][b]), int(batch["semantic_start_frame"][b])
            assert torch.equal(batch["codes"][b, :, :n], stored[key]["codes"][:, start : start + n])
            assert torch.equal(batch["semantic_codes"][b, :, :s], stored[key]["semantic_codes"][:, first : first + s])
            assert abs(first / 50 - start / 75) <= 0.01 + 1e-9  # half a semantic frame
            assert abs((first + s) / 50 - (start + n) / 75) <= 0.01 + 1e-9 or first + s == \
                stored[key]["semantic_codes"].shape[1]
            assert s == math.floor((start + n) * 50 / 75 + 0.5) - math.floor(start * 50 / 75 + 0.5) or first + s == \
                stored[key]["semantic_codes"].shape[1]
            seen += 1
    assert seen == 3


def test_verify_passes_both_streams(jobs, tmp_path, capsys):
    from jobs.verify import main as verify_main

    capsys.readouterr()
    rc = verify_main(["--tokens", str(jobs / "two"), "--count", "3", "--report", str(tmp_path / "report"),
                      "--ray", "inline", "--threads", "1"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    assert summary["streams"]["semantic"] == {"rows": 3, "mean_code_agreement": 1.0, "min_code_agreement": 1.0}
    assert summary["status_counts"]["ok"] == 3
