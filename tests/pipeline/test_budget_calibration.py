"""`buckets.batch_budget_samples: auto` without a GPU: the sizing on a fake card (fake torch.cuda, a
fake measured peak), the fallback on the CPU and when the calibration raises (out of memory), the
calibration's measure path through peak_memory.TensorMeter, the config's validation, and codes that
do not depend on the budget on the CPU plan."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from pipeline import batch_budget, peak_memory
from pipeline.budget_calibration import in_force, measure, size_budget
from pipeline.config import load_config
from pipeline.errors import ConfigError
from tests.conftest import REPO, batch_independent_kernels, torch_threads
from tests.fault_scenarios import demo_config

GIB = 2**30
RATE = 24000


class FakeCuda:
    """torch.cuda's memory API for one card: `resident` bytes held, `free` bytes free; a fake model's
    encode sets the peak of the row."""

    def __init__(self, free: int, resident: int):
        self.free, self.resident, self.peak, self.calls = free, resident, resident, []

    def synchronize(self, *a):
        pass

    def empty_cache(self):
        self.calls.append("empty_cache")

    def reset_peak_memory_stats(self, *a):
        self.calls.append("reset")
        self.peak = self.resident

    def memory_allocated(self, *a):
        return self.resident

    def max_memory_allocated(self, *a):
        return self.peak

    def max_memory_reserved(self, *a):
        return self.peak

    def mem_get_info(self, index=0):
        return self.free, 80 * GIB


class FakeModel:
    """A whole-item codec on "cuda" whose encode of [B, C, T] peaks at resident + bytes_per_sample x B x T
    on the fake card (or raises `error`)."""

    name, sample_rate, channels, chunk_length = "fake_24khz", RATE, 1, None

    def __init__(self, cuda: FakeCuda, bytes_per_sample: float, error: Exception | None = None):
        self.cuda, self.bps, self.error, self.shapes = cuda, bytes_per_sample, error, []
        self.device = torch.device("cuda")

    def encode(self, x, lengths=None, bandwidth=None, max_batch=None):
        if self.error is not None:
            raise self.error
        self.shapes.append(tuple(x.shape))
        self.cuda.peak = self.cuda.resident + int(self.bps * x.shape[0] * x.shape[-1])
        return []


def auto_config(*overrides: str):
    return load_config(REPO / "configs" / "encodec_24khz.yaml", ["model=random:24khz", *overrides])


def test_sized_on_a_fake_card_by_the_rule():
    cfg = auto_config()
    cuda = FakeCuda(free=40 * GIB, resident=200 * 2**20)
    model = FakeModel(cuda, 600.0)
    budget = size_budget(model, cfg, cuda=cuda)
    assert budget.how == "calibrated" and budget.bytes_per_sample == pytest.approx(600.0)
    # (free + resident) x (1 - 20 %) - resident, over 600 bytes/sample, in whole seconds
    usable = 40 * GIB + 200 * 2**20
    expected = int((usable * 0.8 - 200 * 2**20) / 600) // RATE * RATE
    assert budget.samples == expected == 57_192_000 and budget.usable_bytes == usable
    assert budget.max_batch_items == cfg.buckets.max_batch_items
    # the calibration shapes: 256 short items at the fallback budget, and the longest (30 s) item
    assert model.shapes == [(256, 1, 7_680_000 // 256), (10, 1, 30 * RATE)]
    assert "calibrated" in budget.line() and "600 bytes/sample" in budget.line()
    sized = in_force(cfg, budget)
    assert sized.buckets.batch_budget_samples == expected and sized.buckets.budget_samples() == expected
    # a card with little free memory gets less than the fallback; one where 30 s does not fit: fallback
    small_card = FakeCuda(free=2 * GIB, resident=200 * 2**20)
    small = size_budget(FakeModel(small_card, 600.0), cfg, cuda=small_card)
    assert small.how == "calibrated" and RATE * 30 <= small.samples < cfg.buckets.batch_budget_fallback_samples
    full_card = FakeCuda(free=10 * 2**20, resident=200 * 2**20)
    full = size_budget(FakeModel(full_card, 600.0), cfg, cuda=full_card)
    assert full.how == "fallback" and "ValueError" in full.reason
    assert full.samples == cfg.buckets.batch_budget_fallback_samples


def test_actors_sharing_a_card_size_for_their_share():
    cfg = auto_config("gpus_per_actor=0.5")
    cuda = FakeCuda(free=79 * GIB, resident=200 * 2**20)  # nothing else on the 80 GiB card yet
    budget = size_budget(FakeModel(cuda, 600.0), cfg, cuda=cuda)
    assert budget.usable_bytes == 40 * GIB  # half the card, not all that is free
    whole = size_budget(FakeModel(cuda, 600.0), auto_config(), cuda=cuda)
    assert whole.usable_bytes == 79 * GIB + 200 * 2**20 and whole.samples > 1.9 * budget.samples


def test_fallback_on_cpu_and_when_the_calibration_raises(caplog):
    cfg = auto_config()

    class CpuModel(FakeModel):
        def __init__(self):
            super().__init__(FakeCuda(GIB, 0), 1.0)
            self.device = torch.device("cpu")

    cpu = size_budget(CpuModel(), cfg)
    assert (cpu.how, cpu.samples, cpu.max_batch_items) == ("fallback", 7_680_000, 256)
    assert "not a CUDA device" in cpu.reason and "fallback" in cpu.line()
    cuda = FakeCuda(free=40 * GIB, resident=0)
    oom = size_budget(FakeModel(cuda, 600.0, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")),
                      cfg, cuda=cuda)
    assert oom.how == "fallback" and oom.samples == 7_680_000
    assert "OutOfMemoryError" in oom.reason and "empty_cache" in cuda.calls
    assert "OutOfMemoryError" in caplog.text
    fixed = size_budget(CpuModel(), auto_config("buckets.batch_budget_samples=480000"))
    assert (fixed.how, fixed.samples) == ("fixed", 480000)


def test_measure_counts_real_tensors_on_the_cpu():
    """The calibration's measure path on a real codec with peak_memory.TensorMeter (bytes of the live
    tensors): activation bytes grow with the batch, and the rule sizes a budget from them."""
    from codec import random_model

    cfg = auto_config("audio.max_duration_s=0.5", "buckets.batch_budget_fallback_samples=24000",
                      "buckets.max_batch_items=4")
    model = random_model("random:24khz")
    points = measure(model, cfg, peak_memory.TensorMeter())
    assert [p.padded_samples for p in points] == [4 * 6000, 2 * 12000]
    assert all(100 < p.bytes_per_sample < 5000 for p in points)  # a few hundred bytes/sample (docs/gpu.md)
    advice = batch_budget.recommend(model.name, points, 8 * GIB, RATE, 12000, 24000, 4)
    assert advice.budget_samples == 4 * 12000  # capped at max_batch_items longest items


@pytest.mark.parametrize("value", ["big", 0, -5, True, 1.5, None])
def test_budget_config_is_an_integer_or_auto(value):
    with pytest.raises(ConfigError, match="batch_budget_samples"):
        load_config(None, [f"buckets.batch_budget_samples={value if value is not None else 'null'}"])


def test_fallback_config_and_the_presets():
    with pytest.raises(ConfigError, match="batch_budget_fallback_samples"):
        load_config(None, ["buckets.batch_budget_samples=auto", "buckets.batch_budget_fallback_samples=0"])
    assert load_config(None, ["buckets.batch_budget_samples=auto"]).buckets.budget_samples() == 24000 * 600
    for preset, fallback in (("24khz", 7_680_000), ("32khz", 10_240_000), ("48khz", 12_288_000)):
        b = load_config(REPO / "configs" / f"encodec_{preset}.yaml").buckets
        assert b.auto_budget and b.budget_samples() == fallback and b.max_batch_items == 256


def test_auto_on_cpu_gives_the_same_codes(tmp_path):
    """A shard tokenized with `auto` on the CPU (the fallback in force) and with a fixed budget of
    one item per batch: byte-identical codes (the CPU plan's codes do not depend on the batch)."""
    from codec import load_model
    from pipeline.provenance import build_provenance
    from pipeline.shard_worker import ShardTokenizer
    from pipeline.sources import list_shards

    rng = np.random.default_rng(7)
    path = tmp_path / "auto-000.tar"
    with tarfile.open(path, "w") as tf:
        for i, seconds in enumerate((0.7, 1.3, 0.4, 1.1, 0.9)):
            t = np.arange(int(16000 * seconds)) / 16000
            audio = (0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) + 0.05 * rng.standard_normal(t.size))
            blob = io.BytesIO()
            sf.write(blob, audio.astype(np.float32), 16000, format="WAV")
            info = tarfile.TarInfo(f"clip{i}.wav")
            info.size = len(blob.getvalue())
            tf.addfile(info, io.BytesIO(blob.getvalue()))
    tables = []
    for name, overrides in (("auto", ["buckets.batch_budget_samples=auto",
                                      "buckets.batch_budget_fallback_samples=960000"]),
                            ("one", ["buckets.batch_budget_samples=1"])):
        cfg = demo_config(*overrides)
        (shard,) = list_shards(str(path), cfg.source)
        model = load_model(cfg.model)
        budget = size_budget(model, cfg)
        assert budget.how == ("fallback" if name == "auto" else "fixed")
        sized = in_force(cfg, budget)
        worker = ShardTokenizer(model, sized, str(tmp_path / name), build_provenance(model, cfg, "cpu"))
        try:
            with torch_threads(cfg.cpus_per_actor), batch_independent_kernels():
                record = worker.run(shard)
        finally:
            worker.close()
        assert record.rows == 5
        tables.append((record.batches, pq.read_table(tmp_path / name / "tokens" / f"part-{shard.shard_id}.parquet")))
    (auto_batches, auto), (one_batches, one) = tables
    assert auto_batches < one_batches == 5  # the budgets differed
    assert auto.column("key").to_pylist() == one.column("key").to_pylist()
    assert auto.column("codes").to_pylist() == one.column("codes").to_pylist()
