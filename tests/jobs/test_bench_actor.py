"""The actor bench on a tiny corpus: it runs the real ShardTokenizer, counts every process's CPU from
the OS, and its stand-in model gives codes of the real model's shapes (random, seeded)."""

import os
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from codec import load_model
from pipeline.bench import actor, corpus, proc_cpu
from pipeline.bench.stand_in import StandInModel
from tests.conftest import corpus_file


@pytest.fixture(autouse=True)
def needs_corpus():
    corpus_file(corpus.SPEECH[0])  # skips (or fails in CI) without the shared corpus


def test_bench_reports_every_process_per_audio_hour(tmp_path, capsys):
    settings = actor.BenchSettings(kind="speech", minutes=1.0, per_shard=4)
    result = actor.run(settings, tmp_path)
    assert result.audio_s >= 60 and result.shards == -(-result.rows // 4)
    roles = [p.role for p in result.processes]
    assert roles[0] == "actor" and roles.count("decoder") == 1  # the one decoder process, read from /proc
    assert result.per_hour("actor") > 0 and result.per_hour("decoder") > 0
    assert result.realtime > 0
    text = actor.report(result)
    assert "decoder" in text and "steady state" in text and "CPU-s / audio-h" in text
    parts = sorted((tmp_path / "out" / "tokens").glob("part-*.parquet"))
    assert len(parts) == result.shards + settings.warmup_shards  # the warm-up shard is committed too
    codes = pq.read_table(parts[0]).column("codes").to_pylist()[0]
    assert len(codes) == 32 and len(set(codes[0])) > 10  # 24 kbps: 32 codebooks of random, not constant, codes


def test_stand_in_has_the_shapes_of_the_model():
    model = load_model("random:48khz")
    stand_in = StandInModel(model, seed=3)
    x = torch.zeros(2, 2, 96000)
    got = stand_in.encode(x, [96000, 50000], bandwidth=6.0)
    want = model.encode(x[:, :, :48000 * 2], [96000, 50000], bandwidth=6.0)
    assert [g.codes.shape for g in got] == [w.codes.shape for w in want]
    assert [len(g.scales) for g in got] == [len(w.scales) for w in want]
    again = StandInModel(model, seed=3).encode(x, [96000, 50000], bandwidth=6.0)
    assert all(torch.equal(a.codes, b.codes) for a, b in zip(got, again))  # seeded
    assert int(got[0].codes.max()) < model.config.codebook_size
    with pytest.raises(ValueError, match="float"):
        stand_in.encode(torch.zeros(1, 1, 10), [10])


def test_child_cpu_is_read_from_the_os():
    import subprocess
    import sys

    before = proc_cpu.snapshot()
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                              "while time.process_time()-t<0.5: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = [p for p in proc_cpu.cpu_between(before, proc_cpu.snapshot()) if p.pid == child.pid]
            if rows and rows[0].cpu_s >= 0.45:
                break
            time.sleep(0.2)
        assert rows and rows[0].cpu_s >= 0.45 and rows[0].role.startswith("python")
    finally:
        child.kill()
        child.wait()
    gone = proc_cpu.cpu_between(before, proc_cpu.snapshot())
    assert child.pid not in {p.pid for p in gone}
    assert sum(p.cpu_s for p in gone if p.role == "reaped children") >= 0.45


def test_corpus_refuses_a_wrong_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        corpus.sources("noise")
    clips = corpus.sources("speech")
    built = corpus.write_shards(clips, 30.0, tmp_path, per_shard=2, distinct=1)
    assert built.seconds >= 30 and len(built.shards) == -(-built.items // 2)
    assert all(os.path.getsize(p) > 0 for p in built.shards)
    assert np.isclose(sum(clips[i % len(clips)].seconds for i in range(built.items)), built.seconds)


def test_page_faults_and_system_time_are_read_per_process():
    import subprocess
    import sys

    before = proc_cpu.snapshot()
    child = subprocess.Popen([sys.executable, "-c", "import time\nb = b'x' * (80 << 20)\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        rows = []
        while time.monotonic() < deadline:  # 80 MiB written: ~20,000 pages of 4 KiB faulted in
            rows = [p for p in proc_cpu.cpu_between(before, proc_cpu.snapshot()) if p.pid == child.pid]
            if rows and rows[0].minflt > 15000:
                break
            time.sleep(0.2)
        assert rows and rows[0].minflt > 15000 and 0.0 <= rows[0].sys_s <= rows[0].cpu_s + 0.02
    finally:
        child.kill()
        child.wait()
    own = [p for p in proc_cpu.cpu_between(before, proc_cpu.snapshot()) if p.role == "actor"][0]
    assert own.minflt >= 0 and own.sys_s >= 0.0


def test_ab_summary_prints_system_time_and_page_faults_when_recorded():
    from pipeline.bench import ab

    new = {"cpu_s_per_audio_h": {"actor": 300.0}, "sys_s_per_audio_h": {"actor": 2.5},
           "minflt_per_audio_h": {"actor": 4_000_000.0}, "realtime": 10.0, "pipeline": "/tree/pipeline"}
    old = {"cpu_s_per_audio_h": {"actor": 310.0}, "realtime": 9.0, "pipeline": "/old/pipeline"}  # older JSON
    text = ab.summary({"new": [new], "old": [old]})
    assert "actor sys-s/audio-h" in text and "2.500" in text
    assert "actor kfaults/audio-h" in text and "4000.000" in text
    assert "310.000" in text
