"""Decoding ahead: decoder processes split into pools, several shards decoding at once, and the
driver handing each actor its next shards; rows are the same whatever the depth."""

import threading
import time

import pyarrow.dataset as pads
import pytest

from codec import load_model
from pipeline import shard_worker
from pipeline.decode_pool import default_processes
from pipeline.job import run_job
from pipeline.provenance import build_provenance
from pipeline.shard_worker import ShardTokenizer
from pipeline.sources import list_shards
from tests.conftest import corpus_file
from tests.fault_scenarios import demo_config
from tests.hostile_corpus import write_tar


def test_default_processes_share_the_node():
    assert default_processes(16, 1) == 15  # one GPU actor on the 16-core box
    assert default_processes(16, 2) == 7
    assert default_processes(2, 1) == 1
    assert default_processes(1, 4) == 1
    assert default_processes() >= 1
    assert default_processes(16, 4, reserve=4) == 1 and default_processes(64, 4, reserve=4) == 12  # CPU actors


def worker_for(tmp_path, *overrides):
    cfg = demo_config(*overrides)
    model = load_model(cfg.model)
    return ShardTokenizer(model, cfg, str(tmp_path / "out"), build_provenance(model, cfg, "cpu")), cfg


@pytest.mark.parametrize("threads, prefetch, sizes", [(5, 2, [2, 2, 1]), (2, 2, [1, 1]), (15, 0, [15]), (1, 3, [1])])
def test_decoder_processes_are_split_between_lanes(tmp_path, threads, prefetch, sizes):
    worker, _ = worker_for(tmp_path, f"decode_threads={threads}", f"prefetch_shards={prefetch}")
    try:
        assert sorted((len(p.workers) for p in list(worker.pools.queue)), reverse=True) == sizes
        assert worker.decoder_processes == threads and worker.reader._max_workers == len(sizes)
    finally:
        worker.close()


def shards(tmp_path, count):
    wav = corpus_file("speech/cmu_arctic_a0007_16k.wav").read_bytes()
    for i in range(count):
        write_tar(tmp_path / f"s{i}.tar", [(f"k{i}a.wav", wav), (f"k{i}b.wav", wav[: len(wav) // 2])])
    return str(tmp_path / f"s{{0..{count - 1}}}.tar")


def test_shards_ahead_decode_at_once(tmp_path, monkeypatch):
    spec = shards(tmp_path, 3)
    worker, cfg = worker_for(tmp_path, "decode_threads=3", "prefetch_shards=2")
    started, release = [], threading.Event()
    read = shard_worker._read_with_retries

    def slow_read(shard, cfg):
        started.append(time.monotonic())
        release.wait(10)
        return read(shard, cfg)

    monkeypatch.setattr(shard_worker, "_read_with_retries", slow_read)
    try:
        todo = list_shards(spec, cfg.source)
        for shard in todo:
            worker.prefetch(shard)
        deadline = time.monotonic() + 5
        while len(started) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(started) == 3, "the three shards did not start reading together"
        release.set()
        records = [worker.run(s) for s in todo]
    finally:
        worker.close()
    assert [r.rows for r in records] == [2, 2, 2]


@pytest.mark.usefixtures("local_ray")
def test_rows_do_not_depend_on_prefetch_depth(tmp_path):
    spec = shards(tmp_path, 5)
    tables = {}
    for depth in (0, 3):
        cfg = demo_config(f"prefetch_shards={depth}", "decode_threads=0")
        summary = run_job(cfg, spec, str(tmp_path / f"out{depth}"), log=lambda m: None)
        assert summary.rows == 10
        table = pads.dataset(str(tmp_path / f"out{depth}" / "tokens")).to_table().sort_by("key")
        tables[depth] = table.select(["key", "codes", "num_samples"]).to_pylist()
    assert tables[0] == tables[3]


def test_shards_given_to_another_actor_are_forgotten(tmp_path):
    spec = shards(tmp_path, 3)
    worker, cfg = worker_for(tmp_path, "decode_threads=2", "prefetch_shards=2")
    try:
        a, b, c = list_shards(spec, cfg.source)
        for shard in (a, b, c):
            worker.prefetch(shard)
        worker.keep_only([a, c])  # the driver gave b to another actor
        assert set(worker.pending) == {a.shard_id, c.shard_id}
        assert [worker.run(s).rows for s in (a, c)] == [2, 2] and not worker.pending
    finally:
        worker.close()


def noise_shards(tmp_path, count, files=3, seconds=6.0, rate=24000):
    """`count` shards of `files` noise WAVs each (at the model's rate: decoded size = samples × 4 bytes)."""
    import io

    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for i in range(count):
        members = []
        for j in range(files):
            buf = io.BytesIO()
            sf.write(buf, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate,
                     format="WAV", subtype="PCM_16")
            members.append((f"n{i}-{j}.wav", buf.getvalue()))
        write_tar(tmp_path / f"n{i}.tar", members)
    return str(tmp_path / f"n{{0..{count - 1}}}.tar"), int(seconds * rate) * 4


def test_prefetch_is_bounded_in_bytes_and_rows_do_not_change(tmp_path):
    """Four shards of three 576 kB files (decoded) all asked ahead, with 1.2 MB of room: the shards
    ahead never hold more than the budget, everything held stays under the budget plus the shard in
    hand, and the rows equal those of a run with room for everything."""
    spec, file_bytes = noise_shards(tmp_path, 4)
    limit = 2 * file_bytes + file_bytes // 10  # room for two files of the twelve
    tables = {}
    for name, budget in (("bounded", limit), ("roomy", 1 << 30)):
        worker, cfg = worker_for(tmp_path / name, "decode_threads=4", "prefetch_shards=3",
                                 f"prefetch_bytes={budget}")
        todo = list_shards(spec, cfg.source)
        try:
            for shard in todo:
                worker.prefetch(shard)
            deadline = time.monotonic() + 60
            while worker.budget.total() < min(budget, 12 * file_bytes) - file_bytes and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # decoders that could go on would have by now
            held_ahead = worker.budget.total()
            records = [worker.run(s) for s in todo]
        finally:
            worker.close()
        assert [r.rows for r in records] == [3, 3, 3, 3]
        if name == "bounded":
            assert file_bytes <= held_ahead <= limit  # some audio was decoded ahead, within the budget
            assert worker.budget.peak_ahead <= limit
            assert worker.budget.peak <= limit + 3 * file_bytes  # plus at most the shard in hand
        else:
            assert held_ahead == 12 * file_bytes  # with room, every shard is decoded ahead
        tables[name] = pads.dataset(str(tmp_path / name / "out" / "tokens")).to_table().sort_by("key")
    columns = ["key", "codes", "num_samples", "scales"]
    assert tables["bounded"].select(columns).equals(tables["roomy"].select(columns))


def test_shard_waiting_for_room_and_given_away_stops_decoding(tmp_path):
    spec, file_bytes = noise_shards(tmp_path, 2, files=2, seconds=2.0)
    worker, cfg = worker_for(tmp_path, "decode_threads=2", "prefetch_shards=1", f"prefetch_bytes={2 * file_bytes}")
    try:
        a, b = list_shards(spec, cfg.source)
        worker.prefetch(a)
        worker.pending[a.shard_id].result(60)  # a holds the whole budget
        worker.prefetch(b)
        time.sleep(1.0)
        later = worker.pending[b.shard_id]
        assert not later.done() and worker.budget.total() == 2 * file_bytes  # b waits for room
        worker.keep_only([a])  # the driver gave b to another actor
        assert later.exception(30) is None and worker.budget.total() == 2 * file_bytes
        assert worker.run(a).rows == 2 and worker.budget.total() == 0
        assert worker.run(b).rows == 2  # b given back later: decoded again, as the shard in hand
    finally:
        worker.close()
