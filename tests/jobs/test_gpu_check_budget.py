"""The GPU check's sizing pieces without a GPU: the batch-budget rule, our peak memory through torch's
CUDA memory API (a fake `torch.cuda` whose allocator is the tensors' live bytes), the LSTM's share of
a batch through CUDA events (a fake `torch.cuda.Event`), the end-to-end sizes and time plan, the
corpus's hard links, and our job stopped at its time limit."""

import math
import os
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from codec import random_model
from pipeline import batch_budget, peak_memory
from pipeline.bench import corpus
from pipeline.bench import e2e as bench_e2e
from pipeline.bench.gpu_check import e2e_rows, profile_rows, sizes
from pipeline.bench.gpu_check.codec_rows import device_model, encode_codes
from pipeline.bench.gpu_check.lstm_share import LstmTimer

GIB = 2**30


def test_the_rule_sizes_the_budget_from_the_worse_row():
    points = [batch_budget.MemoryPoint("many short", 1_000_000, 600_000_000, 100_000_000),  # 500 B/sample
              batch_budget.MemoryPoint("few long", 1_000_000, 700_000_000, 50_000_000)]  # 650 B/sample
    advice = batch_budget.recommend("24khz", points, 10 * GIB, 24000, 720000, 7_680_000, 256)
    usable = 10 * GIB * 0.8 - 100_000_000
    assert advice.bytes_per_sample == 650 and advice.worst == "few long" and advice.resident_bytes == 100_000_000
    assert advice.budget_samples == int(usable / 650) // 24000 * 24000 and advice.budget_samples % 24000 == 0
    assert advice.predicted_peak_bytes(advice.budget_samples) <= 10 * GIB * 0.8
    assert advice.max_batch_items == 256 and "20 % headroom" in advice.line()
    # a whole-item batch holds at most max_batch_items of the longest items
    big = batch_budget.recommend("24khz", points, 10_000 * GIB, 24000, 720000, 7_680_000, 256)
    assert big.budget_samples == 256 * 720000
    # chunked (48 kHz): whole chunks, and max_batch_items follows the chunks a pass may hold
    chunked = batch_budget.recommend("48khz", points, 10 * GIB, 48000, 1_440_000, 12_288_000, 256, chunk_samples=48000)
    assert chunked.budget_samples % 48000 == 0 and chunked.max_batch_items == chunked.budget_samples // 48000
    with pytest.raises(ValueError, match="30 s item"):  # the card cannot hold one longest item
        batch_budget.recommend("24khz", points, GIB // 2, 24000, 720000, 7_680_000, 256)
    with pytest.raises(ValueError, match="no growth"):
        batch_budget.recommend("24khz", [batch_budget.MemoryPoint("x", 10, 5, 5)], GIB, 24000, 1, 1, 1)


class FakeCuda:
    """torch.cuda's memory API with an allocator made of the tensors the row's ops create (their live
    bytes, peak_memory's dispatch mode) on top of `resident` bytes; the calls are logged."""

    def __init__(self, card_bytes: int, resident: int = 64 * 2**20):
        self.card, self.resident, self.calls, self.live = card_bytes, resident, [], None

    def synchronize(self):
        self.calls.append("synchronize")

    def empty_cache(self):
        self.calls.append("empty_cache")

    def reset_peak_memory_stats(self):
        self.calls.append("reset")
        self.live = peak_memory._LiveTensors()
        self.live.__enter__()

    def memory_allocated(self):
        return self.resident

    def max_memory_allocated(self):
        self.calls.append("max_allocated")
        self.live.__exit__(None, None, None)
        return self.resident + self.live.peak

    def max_memory_reserved(self):
        return self.resident + int(1.1 * self.live.peak)

    def get_device_properties(self, index):
        return SimpleNamespace(total_memory=self.card)


def test_memory_rows_measure_through_the_cuda_api_and_check_the_recommended_budget(monkeypatch):
    model_cfg, cfg = profile_rows._preset("24khz")
    short = replace(cfg, audio=replace(cfg.audio, max_duration_s=0.25))  # keeps the at-budget batch small here
    monkeypatch.setattr(profile_rows, "_preset", lambda preset: (model_cfg, short))
    fake = FakeCuda(card_bytes=32 * 2**20, resident=4 * 2**20)
    rows = profile_rows.memory_rows("24khz", "cpu", 1 / 2048, 0.25, meter=peak_memory.CudaMeter(cuda=fake))
    by_name = {r.name: r for r in rows}
    measured = [r for r in rows if "budget:" in r.name]
    assert len(measured) == 2 and all(r.data["meter"] == "torch.cuda.max_memory_allocated" for r in measured)
    assert all(r.data["resident_bytes"] == fake.resident and r.data["peak_bytes"] > fake.resident for r in measured)
    # every row starts from an emptied cache and a reset peak, and empties the cache after itself
    starts = [i for i, c in enumerate(fake.calls) if c == "reset"]
    assert len(starts) == 3 and all(fake.calls[i - 2: i] == ["synchronize", "empty_cache"] for i in starts)
    assert fake.calls[-1] == "empty_cache"
    advice = by_name["24khz recommended batch budget"]
    assert advice.status == "ok" and advice.data["card_bytes"] == fake.card and not advice.data["nominal_card"]
    assert 24000 <= advice.data["budget_samples"] and advice.data["budget_samples"] % 24000 == 0
    at = by_name["24khz at the recommended budget"]
    assert at.status == "ok", at  # measured within card x (1 - headroom)
    activations = (at.data["peak_bytes"] - fake.resident) / (at.data["predicted_bytes"] - fake.resident)
    assert at.data["items"] >= 2 and 0.8 < activations <= 1.05  # activations grow linearly with the samples


def test_cuda_meter_counts_only_the_rows_own_allocations():
    fake = FakeCuda(card_bytes=GIB, resident=1000)
    meter = peak_memory.CudaMeter(cuda=fake)
    with meter.row() as mem:
        kept = torch.ones(1000)  # 4000 bytes
        tmp = torch.ones(2000) * 2  # 2 x 8000 bytes live at once
        del tmp
    assert mem.resident_bytes == 1000 and mem.activation_bytes == 4000 + 2 * 8000 and kept.numel() == 1000
    assert meter.card_bytes() == GIB


class FakeEvent:
    def __init__(self, enable_timing=False):
        assert enable_timing
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return 1000.0 * (end.t - self.t)


def test_lstm_share_on_cuda_events_and_on_the_cpu():
    model, _ = device_model(random_model("random:24khz"), "cpu")
    x = torch.randn(2, 1, 4800) * 0.1
    synced = []
    cuda = SimpleNamespace(Event=FakeEvent, synchronize=lambda: synced.append(1))
    for device, fake in (("cuda", cuda), ("cpu", None)):
        with LstmTimer(model.encoder, device, cuda=fake) as timer:
            encode_codes(model, x, 24.0, None)
        assert timer.calls == 1 and 0 < timer.lstm_s < timer.total_s and 0 < timer.share < 1
    assert len(synced) == 2  # once before and once after the batch: no sync inside it
    with pytest.raises(ValueError, match="LSTM"), LstmTimer(torch.nn.Linear(2, 2), "cpu"):
        pass


def test_gpu_sizes_reach_the_targets_within_the_time_plan():
    g = sizes.GPU
    assert g.e2e_minutes["speech"] >= 600 and g.e2e_minutes["music"] >= 180 and g.e2e_per_shard >= 512
    assert g.baseline_minutes * 10 <= min(g.e2e_minutes.values())  # the baseline runs on a small slice
    assert sizes.planned_s(g) <= g.budget_s <= 285  # a start-up of a few minutes and two tries fit 15 minutes
    assert g.job_limit_s + g.baseline_limit_s < g.budget_s / 5  # no single wait near the budget
    clips = [corpus.Clip(f"c{i}", b"x", s) for i, s in enumerate((7.1, 5.3, 6.0, 3.5))]
    seconds = e2e_rows.whole_shards_s(clips, 600, 512)
    shard_s = 512 * sum(c.seconds for c in clips) / len(clips)
    assert seconds >= 600 * 60 and round(seconds / shard_s) == math.ceil(600 * 60 / shard_s) == 13  # whole shards
    assert sizes.CPU.e2e_per_shard < 64 and sizes.CPU.e2e_minutes == {"speech": 0.1}  # CPU mode: small


def test_identical_shards_are_hard_links(tmp_path):
    clips = [corpus.Clip(f"c{i}", bytes([i]) * 100, 1.0) for i in range(8)]  # 8 clips, 16 per shard: all alike
    built = corpus.write_shards(clips, 16 * 10, tmp_path, per_shard=16, distinct=2)
    assert len(built.shards) == 10 and len({os.stat(s).st_ino for s in built.shards}) == 2


def test_our_job_is_stopped_at_its_time_limit(monkeypatch, tmp_path):
    import pipeline.engine.ray_backend as ray_backend
    import pipeline.job as job

    def endless_job(cfg, spec, out, log):
        log("[audiotok] model: random:24khz")
        while True:  # a job that would never end: it logs progress each 20 ms
            time.sleep(0.02)
            log("[audiotok] shards 0/9")

    monkeypatch.setattr(job, "run_job", endless_job)
    monkeypatch.setattr(ray_backend, "connect_ray", lambda **kw: None)
    cfg = SimpleNamespace(num_actors=1, device="cpu")
    started = time.monotonic()
    run, stages = bench_e2e.ours(["a.tar", "b.tar"], cfg, tmp_path, "ours", limit_s=0.3)
    assert time.monotonic() - started < 5 and run.cut_at_s >= 0.3 and run.rows == 0 and run.audio_s == 0
    assert stages.actors == 1 and "stopped" in run.name
    # with committed shards: their audio over the time until the last commit (what was lost in flight is not counted)
    import pipeline.writer as writer
    from pipeline.records import ShardRecord

    commits = []

    def committing_job(cfg, spec, out, log):
        log("[audiotok] model: random:24khz")
        for i in range(1000):
            time.sleep(0.02)
            if i in (5, 10):
                commits.append(ShardRecord(f"s{i}", "u", rows=512, rejects=0, audio_seconds=2560.0,
                                           padded_samples=100, true_samples=90, encode_seconds=0.05,
                                           finished_at=time.time(), device_peak_mb=100.0 * i))
            log("[audiotok] shards")

    monkeypatch.setattr(job, "run_job", committing_job)
    monkeypatch.setattr(writer, "committed_shards", lambda out: {r.shard_id: r for r in commits})
    before = time.time()
    run, stages = bench_e2e.ours(["a.tar"], cfg, tmp_path, "ours2", limit_s=0.5)
    assert run.rows == 1024 and run.audio_s == 5120.0 and run.cut_at_s >= 0.5
    assert run.wall_s <= commits[-1].finished_at - before + 0.05 < run.cut_at_s  # until the last commit
    assert abs(run.padding_waste - 0.1) < 1e-9 and stages.encode_s == 0.1
    assert run.device_peak_mb == 1000.0  # our peak: the largest shard's, from torch (not nvidia-smi)
