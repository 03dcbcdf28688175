"""The tokenization job on real Ray, real shards and real Parquet."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from codec import random_model, save_model
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.records import Sample
from tests.conftest import REPO, corpus_file, torch_threads
from tests.hostile_corpus import write_tar

ray = pytest.importorskip("ray")
DEMO = str(REPO / "demo" / "shards" / "demo-{000..001}.tar")


pytestmark = pytest.mark.usefixtures("local_ray")


def _add(members: list[tuple], name: str, data: bytes, type=None, linkname: str = "") -> None:
    members.append((name, data) if type is None else (name, type, linkname))


def _wav_header(rate, channels, frames=10):
    data = b"\x00\x00" * channels * frames
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    riff = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16)
    return riff + fmt + b"data" + struct.pack("<I", len(data)) + data


def bad_shard(path: Path) -> dict[str, str]:
    """A shard with one input of each bad kind; returns key -> expected reason."""
    import soundfile as sf

    flac = corpus_file("speech/librivox_0890_16k.flac").read_bytes()
    nan = io.BytesIO()
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    expected = {}
    members: list[tuple] = []
    _add(members, "good.flac", flac)
    _add(members, "truncated.flac", flac[:2000])
    expected["truncated"] = "undecodable"
    _add(members, "notaudio.flac", b"this is not audio at all" * 50)
    expected["notaudio"] = "undecodable"
    _add(members, "empty.wav", b"")
    expected["empty"] = "empty"
    _add(members, "onlymeta.json", b'{"text": "no audio here"}')
    expected["onlymeta"] = "missing_audio"
    _add(members, "rate1hz.wav", _wav_header(1, 1))
    expected["rate1hz"] = "bad_header"
    _add(members, "rate1ghz.wav", _wav_header(10**9, 1))
    expected["rate1ghz"] = "bad_header"
    _add(members, "nan.wav", nan.getvalue())
    expected["nan"] = "non_finite"
    _add(members, "tiny.wav", _wav_header(16000, 1, frames=10))
    expected["tiny"] = "too_short"
    _add(members, "evil.pyd", b"cos\nsystem\n(S'echo pwned'\ntR.")
    expected["evil"] = "unsafe_member"
    _add(members, "../escape.flac", flac)
    expected["../escape"] = "unsafe_member"
    _add(members, "link.flac", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    expected["link"] = "unsafe_member"
    write_tar(path, members)
    return expected


def keys_of(out):
    tokens = pads.dataset(Path(out) / "tokens").to_table(columns=["key"]).column("key").to_pylist()
    rejects = pads.dataset(Path(out) / "rejects").to_table().to_pylist()
    return tokens, rejects


def test_job_rows_rejects_and_exact_codes(tmp_path):
    from pipeline.job import run_job

    expected = bad_shard(tmp_path / "bad-000.tar")
    out = tmp_path / "out"
    cfg = load_config(REPO / "configs" / "test.yaml")
    summary = run_job(cfg, str(tmp_path / "bad-000.tar"), str(out), log=lambda m: None)
    tokens, rejects = keys_of(out)
    assert tokens == ["good"]
    assert {r["key"]: r["reason"] for r in rejects} == expected
    assert summary.rows == 1 and summary.rejects == len(expected)
    assert (summary.batch_budget.how, summary.batch_budget.samples) == ("fixed", 960000)  # from the actor
    assert summary.rejects_by_reason["unsafe_member"] == 3
    assert not (Path("/etc") / "passwd.flac").exists()

    summary = run_job(cfg, DEMO, str(out / "demo"), log=lambda m: None)
    assert summary.rows == 7 and summary.rejects_by_reason == {"undecodable": 1}
    # rows equal transformers encoding each item alone, on the same prepared audio and weights
    transformers = pytest.importorskip("transformers")
    model = random_model(cfg.model)
    ref = transformers.EncodecModel.from_pretrained(save_model(model, tmp_path / "m")).eval()
    # the actor runs torch with cpus_per_actor=1 thread; float reductions depend on the thread count
    with torch_threads(cfg.cpus_per_actor):
        table = pads.dataset(out / "demo" / "tokens").to_table().to_pylist()
        by_key = {r["key"]: r for r in table}
        with tarfile.open(REPO / "demo" / "shards" / "demo-000.tar") as tf:
            for member in tf.getmembers():
                key, ext = member.name.split(".", 1)
                if ext == "json":
                    continue
                sample = Sample(key, "x", tf.extractfile(member).read(), ext)
                (seg,), _ = audio_prep.prepare(sample, cfg.audio, 24000, 1)
                with torch.no_grad():  # transformers' LSTM takes another kernel path with autograd on
                    encoded = ref.encode(torch.from_numpy(seg.audio)[None], bandwidth=max(cfg.bandwidths))
                    codes = encoded.audio_codes[0, 0]
                row = by_key[key]
                assert torch.equal(torch.tensor(row["codes"]), codes), key
                assert row["num_samples"] == seg.num_samples and row["num_frames"] == codes.shape[-1]
                assert row["pad_samples"] == codes.shape[-1] * 320 - seg.num_samples


def test_second_run_skips_committed_shards(tmp_path):
    from pipeline.job import run_job

    cfg = load_config(REPO / "configs" / "test.yaml")
    first = run_job(cfg, DEMO, str(tmp_path), log=lambda m: None)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens").iterdir()}
    lines = []
    second = run_job(cfg, DEMO, f"file://{tmp_path}", log=lines.append)  # an output URL, not a path
    assert "2 already committed, 0 to do" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens").iterdir()} == stamps
    assert second.rows == first.rows == 7
    assert json.loads((tmp_path / "_summary.json").read_text()) == json.loads(json.dumps(second.to_json()))
    assert not Path("file:").exists()


def test_resume_of_an_output_without_snapshot_and_after_a_failed_snapshot(tmp_path, monkeypatch):
    """An output as written before the manifest's snapshot (records only) resumes; a fault while the
    start writes the snapshot fails that run but loses and duplicates nothing; the next start reads it."""
    import shutil

    from pipeline import fault_injection
    from pipeline.job import run_job

    cfg = load_config(REPO / "configs" / "test.yaml")
    first = run_job(cfg, DEMO, str(tmp_path), log=lambda m: None)
    snapshots = tmp_path / "_manifest" / "_snapshot"
    assert os.listdir(snapshots) == ["snapshot-0000000001.jsonl.zst"]  # written at the end of the run
    shutil.rmtree(snapshots)  # the output as written before snapshots
    planted = tmp_path.parent / f"{tmp_path.name}-faults"
    fault_injection.plant(planted, "raise@snapshot_write")
    monkeypatch.setenv(fault_injection.ENV, str(planted))
    with pytest.raises(fault_injection.PlantedError):
        run_job(cfg, DEMO, str(tmp_path), log=lambda m: None)
    assert not snapshots.exists() or not os.listdir(snapshots)
    monkeypatch.delenv(fault_injection.ENV)
    for reads in ("0 record(s) from the manifest's snapshot, 2 from their files",
                  "2 record(s) from the manifest's snapshot, 0 from their files"):
        lines = []
        again = run_job(cfg, DEMO, str(tmp_path), log=lines.append)
        assert f"2 already committed, 0 to do ({reads})" in lines[0]
        assert os.listdir(snapshots) == ["snapshot-0000000001.jsonl.zst"] and again.rows == first.rows == 7
    tokens, _ = keys_of(tmp_path)
    assert len(tokens) == len(set(tokens)) == 7


def test_outputs_load_in_datasets_pyarrow_pandas(tmp_path):
    import datasets
    import pandas as pd
    import pyarrow.parquet as pq

    from pipeline.job import run_job

    cfg = load_config(REPO / "configs" / "test.yaml")
    run_job(cfg, DEMO, str(tmp_path), log=lambda m: None)
    files = sorted(str(p) for p in (tmp_path / "tokens").glob("*.parquet"))
    table = pads.dataset(files).to_table()
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    frame = pd.concat([pd.read_parquet(f) for f in files])
    assert len(ds) == len(frame) == table.num_rows == 7
    assert ds[0]["codes"] == table.column("codes")[0].as_py() == [list(x) for x in frame.iloc[0]["codes"]]
    assert len(ds[0]["codes"]) == 8  # n_q at 6 kbps
    meta = pq.read_schema(files[0]).metadata
    assert json.loads(meta[b"audiotok.bandwidth_to_num_quantizers"]) == {"1.5": 2, "6.0": 8}
    assert json.loads(meta[b"audiotok.random_weights"]) is True
    assert json.loads((tmp_path / "_provenance.json").read_text())["checkpoint_sha256"]


@pytest.mark.faults
def test_killed_driver_then_rerun_gives_exact_rows(fault_inputs, tmp_path):
    """SIGKILL the whole job (driver, its local Ray, actors, decoders) twice, at named stages: between
    the renames of shard 2's commit (its parts in place, its record not), then after decoding shard 5;
    then re-run the same command to the end: the rows equal the uninterrupted reference exactly."""
    from pipeline import fault_injection
    from tests.fault_scenarios import commits, compare, firings, read_outcome, shard_id

    spec, want = fault_inputs
    out, planted = tmp_path / "out", tmp_path / "planted"
    cmd = [sys.executable, "-m", "jobs.tokenize", "--config", "configs/test.yaml", "--input", spec,
           "--output", str(out)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", fault_injection.ENV: str(planted)}
    env.pop("RAY_ADDRESS", None)
    part = out / "tokens" / f"part-{shard_id(spec, 2)}.parquet"
    for index, stage, committed in ((2, "between_renames", 2), (5, "after_decode", 5)):
        victim = shard_id(spec, index)
        fault_injection.plant(planted, f"killsession@{stage}:{victim}")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,  # its own session
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert proc.wait(timeout=300) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert firings(planted) == {(f"killsession@{stage}:{victim}#1", victim): 1}
        # shards run two at a time per actor: shard N-1 may still be committing when shard N is decoded
        # (commits go one at a time, in order, so every shard before N-1 has committed)
        assert commits(out) == committed if stage == "between_renames" else commits(out) in (committed - 1, committed)
        if stage == "between_renames":  # a complete part without its record, until the next run
            assert part.exists() and not (out / "_manifest" / f"{victim}.json").exists()
    fault_injection.plant(planted, [])
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    row = compare("driver SIGKILLed at named stages, then re-run", 3, read_outcome(out), want,
                  "killed between renames of shard 2, after decoding shard 5")
    assert row.ok, row.problems
    assert not list(out.rglob(".tmp-*"))


def test_strict_mode_fails_fast(tmp_path):
    from pipeline.errors import JobFailed
    from pipeline.job import run_job

    bad_shard(tmp_path / "bad.tar")
    cfg = load_config(REPO / "configs" / "test.yaml", ["strict=true"])
    with pytest.raises(JobFailed, match="strict"):
        run_job(cfg, str(tmp_path / "bad.tar"), str(tmp_path / "out"), log=lambda m: None)
    from pipeline import writer

    assert writer.committed_shards(str(tmp_path / "out")) == {}  # nothing committed, the reject not recorded
    assert not list((tmp_path / "out").glob("*/part-*.parquet"))
