"""The tokenization job on real Ray, real shards and real Parquet."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from codec import random_model, save_model
from pipeline import audio as audio_prep
from pipeline.config import load_config
from pipeline.records import Sample
from tests.conftest import REPO, corpus_file

ray = pytest.importorskip("ray")
DEMO = str(REPO / "demo" / "shards" / "demo-{000..001}.tar")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _add(tf, name, data, **kw):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    for k, v in kw.items():
        setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if ti.isfile() else None)


def _wav_header(rate, channels, frames=10):
    data = b"\x00\x00" * channels * frames
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data


def bad_shard(path: Path) -> dict[str, str]:
    """A shard with one input of each bad kind; returns key -> expected reason."""
    import soundfile as sf

    flac = corpus_file("speech/librivox_0890_16k.flac").read_bytes()
    nan = io.BytesIO()
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    expected = {}
    with tarfile.open(path, "w") as tf:
        _add(tf, "good.flac", flac)
        _add(tf, "truncated.flac", flac[:2000]); expected["truncated"] = "undecodable"
        _add(tf, "notaudio.flac", b"this is not audio at all" * 50); expected["notaudio"] = "undecodable"
        _add(tf, "empty.wav", b""); expected["empty"] = "empty"
        _add(tf, "onlymeta.json", b'{"text": "no audio here"}'); expected["onlymeta"] = "missing_audio"
        _add(tf, "rate1hz.wav", _wav_header(1, 1)); expected["rate1hz"] = "bad_header"
        _add(tf, "rate1ghz.wav", _wav_header(10**9, 1)); expected["rate1ghz"] = "bad_header"
        _add(tf, "nan.wav", nan.getvalue()); expected["nan"] = "non_finite"
        _add(tf, "tiny.wav", _wav_header(16000, 1, frames=10)); expected["tiny"] = "too_short"
        _add(tf, "evil.pyd", b"cos\nsystem\n(S'echo pwned'\ntR."); expected["evil"] = "unsafe_member"
        _add(tf, "../escape.flac", flac); expected["../escape"] = "unsafe_member"
        _add(tf, "link.flac", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"); expected["link"] = "unsafe_member"
    return expected


def keys_of(out):
    tokens = pads.dataset(Path(out) / "tokens").to_table(columns=["key"]).column("key").to_pylist()
    rejects = pads.dataset(Path(out) / "rejects").to_table().to_pylist()
    return tokens, rejects


def test_job_rows_rejects_and_exact_codes(tmp_path):
    from pipeline.runner import run_job

    expected = bad_shard(tmp_path / "bad-000.tar")
    out = tmp_path / "out"
    cfg = load_config(REPO / "configs" / "demo.yaml")
    summary = run_job(cfg, str(tmp_path / "bad-000.tar"), str(out), log=lambda m: None)
    tokens, rejects = keys_of(out)
    assert tokens == ["good"]
    assert {r["key"]: r["reason"] for r in rejects} == expected
    assert summary["rows"] == 1 and summary["rejects"] == len(expected)
    assert summary["rejects_by_reason"]["unsafe_member"] == 3
    assert not (Path("/etc") / "passwd.flac").exists()

    summary = run_job(cfg, DEMO, str(out / "demo"), log=lambda m: None)
    assert summary["rows"] == 7 and summary["rejects_by_reason"] == {"undecodable": 1}
    # rows equal transformers encoding each item alone, on the same prepared audio and weights
    transformers = pytest.importorskip("transformers")
    model = random_model(cfg.model)
    ref = transformers.EncodecModel.from_pretrained(save_model(model, tmp_path / "m")).eval()
    # the actor runs torch with cpus_per_actor=1 thread; float reductions depend on the thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.cpus_per_actor))
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
                codes = ref.encode(torch.from_numpy(seg.audio)[None], bandwidth=max(cfg.bandwidths)).audio_codes[0, 0]
            row = by_key[key]
            assert torch.equal(torch.tensor(row["codes"]), codes), key
            assert row["num_samples"] == seg.num_samples and row["num_frames"] == codes.shape[-1]
            assert row["pad_samples"] == codes.shape[-1] * 320 - seg.num_samples
    torch.set_num_threads(threads)


def test_second_run_skips_committed_shards(tmp_path):
    from pipeline.runner import run_job

    cfg = load_config(REPO / "configs" / "demo.yaml")
    first = run_job(cfg, DEMO, str(tmp_path), log=lambda m: None)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens").iterdir()}
    lines = []
    second = run_job(cfg, DEMO, str(tmp_path), log=lines.append)
    assert "2 already committed, 0 to do" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens").iterdir()} == stamps
    assert second["rows"] == first["rows"] == 7


def test_outputs_load_in_datasets_pyarrow_pandas(tmp_path):
    import datasets
    import pandas as pd
    import pyarrow.parquet as pq

    from pipeline.runner import run_job

    cfg = load_config(REPO / "configs" / "demo.yaml")
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


def test_killed_driver_then_rerun_gives_exact_rows(tmp_path):
    """SIGKILL the whole job (driver and its local Ray) after its first commit, re-run, compare."""
    shards = tmp_path / "in"
    shards.mkdir()
    flacs = [corpus_file(f"speech/{n}").read_bytes() for n in ("librivox_0890_16k.flac", "cards_005_16k.wav")]
    for s in range(4):
        with tarfile.open(shards / f"s-{s:03d}.tar", "w") as tf:
            for i in range(3):
                _add(tf, f"k{s}-{i}.{'flac' if i % 2 == 0 else 'wav'}", flacs[i % 2])
    cmd = [sys.executable, "-m", "jobs.tokenize", "--config", "configs/demo.yaml",
           "--input", str(shards / "s-{000..003}.tar"), "--output"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + [str(killed)], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed / "_manifest").glob("*.json")) if killed.exists() else time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed_before = len(list((killed / "_manifest").glob("*.json")))
    assert 1 <= committed_before
    subprocess.run(cmd + [str(killed)], cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    clean = tmp_path / "clean"
    subprocess.run(cmd + [str(clean)], cwd=REPO, env=env, check=True, capture_output=True, timeout=300)

    def rows(out):
        t = pads.dataset(out / "tokens").to_table(columns=["key", "codes"]).to_pylist()
        return sorted((r["key"], str(r["codes"])) for r in t)

    assert rows(killed) == rows(clean)
    assert len(rows(clean)) == 12 and len({k for k, _ in rows(killed)}) == 12
    assert not list((killed / "_tmp").iterdir()) if (killed / "_tmp").exists() else True


def test_strict_mode_fails_fast(tmp_path):
    from pipeline.runner import JobFailed, run_job

    bad_shard(tmp_path / "bad.tar")
    cfg = load_config(REPO / "configs" / "demo.yaml", ["strict=true"])
    with pytest.raises(JobFailed, match="strict"):
        run_job(cfg, str(tmp_path / "bad.tar"), str(tmp_path / "out"), log=lambda m: None)
    assert not list((tmp_path / "out" / "_manifest").glob("*")) if (tmp_path / "out" / "_manifest").exists() else True
