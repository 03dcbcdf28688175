"""DAC through the whole product: the job on tars and folders with weights transformers wrote (the full
dac_44khz architecture, codebooks fitted to real audio), equal to transformers' one-item codes row by row;
its Parquet metadata; verify; diff; the reader, which refuses to mix two codecs."""

import json
import math
import shutil
import tarfile

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from codec.dac import PRESETS, random_from_config, save_dac
from jobs.tokenize import main
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.reader import TokenDataset, load_provenance
from pipeline.records import Sample
from tests.conftest import REPO, corpus_file, real_audio, run_demo_job, torch_threads

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("local_ray")

FILES = {  # short real clips, 16 to 48 kHz, mono and stereo, one of 50 ms
    "hello": "speech/supertux_tux_hello_44k_stereo.ogg",
    "saw": "speech/klettres_en_saw_44k.ogg",
    "tiny": "edge/short_50ms_wesnoth_battle-epic_44k_stereo.flac",
    "cards": "speech/cards_005_16k.wav",
}
CONFIG = REPO / "configs" / "dac_44khz.yaml"
OVERRIDES = ["device=cpu", "num_actors=1", "cpus_per_actor=1", "decode_threads=1", "audio.max_duration_s=4"]


@pytest.fixture(scope="module")
def dac_dir(tmp_path_factory):
    """transformers' save_pretrained of the full dac_44khz architecture, codebooks fitted to real music."""
    root = tmp_path_factory.mktemp("dac")
    with torch_threads(2):
        fit = torch.from_numpy(real_audio("music/wesnoth_battle-epic_10s_44k.flac", 44100, 1, seconds=2.0))[None]
        ours = random_from_config(PRESETS["dac_44khz"], seed=11, fit_audio=fit)
    save_dac(ours, root / "ours")
    ref = transformers.DacModel.from_pretrained(root / "ours").eval()
    ref.save_pretrained(root / "dac_44khz")
    return root / "dac_44khz", ref


def _tar(path, keys):
    with tarfile.open(path, "w") as tf:
        for key in keys:
            rel = FILES[key]
            tf.add(corpus_file(rel), arcname=f"{key}.{rel.rsplit('.', 1)[1]}")


def _run(inputs, out, model, capsys):
    capsys.readouterr()
    rc = main(["--config", str(CONFIG), "--input", str(inputs), "--output", str(out), f"model={model}", *OVERRIDES])
    return rc, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def job(dac_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    (root / "shards").mkdir()
    _tar(root / "shards" / "s-0.tar", ["hello", "saw"])
    _tar(root / "shards" / "s-1.tar", ["tiny", "cards"])
    rc = main(["--config", str(CONFIG), "--input", str(root / "shards" / "s-*.tar"), "--output", str(root / "out"),
               f"model={dac_dir[0]}", *OVERRIDES])
    assert rc == 0
    return root


def test_job_rows_equal_transformers_alone(job, dac_dir):
    _, ref = dac_dir
    cfg = load_config(CONFIG, OVERRIDES)
    extractor = transformers.DacFeatureExtractor(sampling_rate=44100, hop_length=512)
    rows = {r["key"]: r for r in pads.dataset(job / "out" / "tokens").to_table().to_pylist()}
    assert set(rows) == set(FILES)
    with torch_threads(cfg.cpus_per_actor):
        for key, rel in FILES.items():
            sample = Sample(key, "x", corpus_file(rel).read_bytes(), rel.rsplit(".", 1)[1])
            (seg,), _ = audio_prep.prepare(sample, cfg.audio, 44100, 1)
            inputs = extractor(seg.audio[0], sampling_rate=44100, return_tensors="pt")["input_values"]
            with torch.no_grad():
                expected = ref.encode(inputs).audio_codes[0]
            row = rows[key]
            assert torch.equal(torch.tensor(row["codes"]), expected), key
            assert row["num_frames"] == expected.shape[-1] == math.ceil(seg.num_samples / 512)
            assert row["pad_samples"] == expected.shape[-1] * 512 - seg.num_samples and row["scales"] is None
            assert expected.shape[0] == 9
    assert len(set(rows["hello"]["codes"][0])) > 50  # real, varied codes


def test_metadata_records_the_codec(job):
    prov = load_provenance(str(job / "out"))
    assert prov.codec_family == "dac" and prov.model_name == "dac_44khz"
    assert prov.frame_rate == pytest.approx(86.1328125) and prov.hop_length == 512
    assert prov.bandwidth_to_num_quantizers == {"7.752": 9} and len(prov.checkpoint_sha256) == 64
    part = next((job / "out" / "tokens").glob("*.parquet"))
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(part).metadata.items()}
    assert json.loads(meta["audiotok.codec_family"]) == "dac"
    items = list(TokenDataset(str(job / "out"), bandwidth=7.752))
    assert len(items) == 4 and all(it["codes"].shape[0] == 9 for it in items)


def test_training_loader_reads_dac_rows(job):
    from pipeline.training.loader import TokenLoader

    loader = TokenLoader(str(job / "out"), max_tokens=20000, bandwidth=7.752)
    assert loader.pad_id == 1024 and loader.n_q == 9  # the first id that is not a DAC code
    stored = {it["key"]: it["codes"] for it in TokenDataset(str(job / "out"))}
    seen = 0
    for batch in loader:
        for b, key in enumerate(batch["key"]):
            n, start = int(batch["num_frames"][b]), int(batch["start_frame"][b])
            assert torch.equal(batch["codes"][b, :, :n], stored[key][:, start : start + n])
            assert (batch["codes"][b, :, n:] == 1024).all()
            seen += 1
    assert seen == 4


def test_verify_and_diff_on_dac_output(job, tmp_path, capsys):
    from jobs.diff import main as diff_main
    from jobs.verify import main as verify_main

    report = tmp_path / "report"
    rc = verify_main(["--tokens", str(job / "out"), "--count", "4", "--report", str(report), "--ray", "inline",
                      "--threads", "1", "--min-si-snr", "-1000", "--max-mel-distance", "1000"])
    items = pq.read_table(report / "items.parquet").to_pylist()
    assert rc == 0, capsys.readouterr().err
    assert len(items) == 4 and all(r["status"] == "ok" and r["code_agreement_all"] == 1.0 for r in items)
    assert all(r["n_q"] == 9 and r["bandwidth_kbps"] == 7.752 for r in items)
    copy = tmp_path / "copy"
    shutil.copytree(job / "out", copy)
    assert diff_main([str(job / "out"), str(copy)]) == 0


def test_job_on_a_folder(job, dac_dir, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    for key in ("saw", "cards"):
        shutil.copy(corpus_file(FILES[key]), folder / f"{key}.{FILES[key].rsplit('.', 1)[1]}")
    rc, summary = _run(folder, tmp_path / "out", dac_dir[0], capsys)
    assert rc == 0 and summary["rows"] == 2
    tar_rows = {r["key"]: r["codes"] for r in pads.dataset(job / "out" / "tokens").to_table().to_pylist()}
    for row in pads.dataset(tmp_path / "out" / "tokens").to_table().to_pylist():
        assert row["codes"] == tar_rows[row["key"].rsplit("/", 1)[-1]]


def test_reader_refuses_to_mix_codecs(job, tmp_path):
    encodec = run_demo_job(tmp_path / "encodec")
    with pytest.raises(ValueError, match="(?s)different codecs.*dac.*encodec"):
        TokenDataset([str(job / "out"), str(encodec)])
