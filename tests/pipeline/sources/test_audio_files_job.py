"""The job on a folder of audio files: codes equal transformers' one-item codes; re-runs; the CLI's exit status."""


import pyarrow.dataset as pads
import pytest
import torch

from codec import random_model, save_model
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.records import Sample
from tests.conftest import REPO, copy_corpus_tree, torch_threads, transformers_codes

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("local_ray")

FOLDER = {  # path in the input folder -> corpus file (".mp3": converted from it here)
    "speech/en/librivox-0890.flac": "speech/librivox_0890_16k.flac",
    "speech/hello.ogg": "speech/supertux_tux_hello_44k_stereo.ogg",
    "speech/go.mp3": "speech/goforward_16k.wav",
    "edge/car.aiff": "edge/aiff_klettres_en_car_44k.aiff",
}


def make_folder(root):
    copy_corpus_tree(root, FOLDER)
    (root / "speech" / "hello.txt").write_text("hello there")
    (root / "speech" / "go.json").write_text('{"speaker": "s-go", "text": "go forward"}')
    (root / "README.md").write_text("a corpus")
    return root


def run(cfg, spec, out, lines=None):
    from pipeline.job import run_job

    return run_job(cfg, spec, str(out), log=(lines.append if lines is not None else lambda m: None))


def rows(out):
    return {r["key"]: r for r in pads.dataset(out / "tokens").to_table().to_pylist()}


def test_folder_codes_equal_transformers_one_item_codes(tmp_path):
    transformers = pytest.importorskip("transformers")
    root = make_folder(tmp_path / "wavs")
    cfg = load_config(REPO / "configs" / "test.yaml", ["source.manifest_rows_per_shard=3"])
    lines = []
    summary = run(cfg, f"{root}/", tmp_path / "out", lines)
    assert (summary.shards, summary.rows, summary.rejects) == (2, 4, 0)
    assert lines[0] == (f"[audiotok] {root}/: 0 tar files, 4 audio files, 3 other files (.json 1, .md 1, .txt 1); "
                        "tokenizing the audio files")
    found = rows(tmp_path / "out")
    assert set(found) == {rel.rsplit(".", 1)[0] for rel in FOLDER}
    assert (found["speech/hello"]["text"], found["speech/go"]["text"], found["speech/go"]["speaker"]) == (
        "hello there", "go forward", "s-go")
    assert found["edge/car"]["text"] is None

    model = random_model(cfg.model)
    ref = transformers.EncodecModel.from_pretrained(save_model(model, tmp_path / "ref")).eval()
    c = model.config
    with torch_threads(cfg.cpus_per_actor):  # the actor's thread count: reductions depend on it
        for rel in FOLDER:
            key, ext = rel.rsplit(".", 1)
            sample = Sample(key, "x", (root / rel).read_bytes(), ext)
            (seg,), _ = audio_prep.prepare(sample, cfg.audio, c.sampling_rate, c.audio_channels)
            expected, _, _ = transformers_codes(ref, torch.from_numpy(seg.audio), max(cfg.bandwidths))
            row = found[key]
            assert torch.equal(torch.tensor(row["codes"]), expected), key
            assert len(torch.unique(expected)) > 50, key  # non-trivial codebooks: equality means something
            assert (row["num_samples"], row["num_frames"]) == (seg.num_samples, expected.shape[-1])

    # a re-run over the same folder, given as a glob this time into another output, or again into the same
    again = run(cfg, f"{root}/**/*.*", tmp_path / "out-glob")
    assert (again.shards, again.rows, again.rejects) == (2, 4, 0)
    assert {k: r["codes"] for k, r in rows(tmp_path / "out-glob").items()} == {k: r["codes"] for k, r in found.items()}
    lines.clear()
    rerun = run(cfg, str(root), tmp_path / "out", lines)
    assert "2 shards, 2 already committed, 0 to do" in lines[1] and rerun.rows == 4
    assert len(pads.dataset(tmp_path / "out" / "tokens").to_table()) == 4


def test_cli_exits_2_with_one_line_when_a_folder_holds_nothing_to_tokenize(tmp_path, capsys):
    from jobs.tokenize import main

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no audio here")
    argv = ["--config", str(REPO / "configs" / "test.yaml"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--input", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"audiotok: bad input: input '{tmp_path / 'empty'}' matches 0 files to tokenize "
                          "(0 tar files, 0 audio files, 1 other files (.txt 1)); accepted: webdataset tars")
    assert "\n" not in err and "Traceback" not in err
    assert main([*argv, "--input", str(tmp_path / "missing/*.wav")]) == 2
    assert "matches 0 files to tokenize" in capsys.readouterr().err
