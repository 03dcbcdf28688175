"""CUDA out of memory on a batch: its forward passes are halved and it is encoded again; the committed
rows equal those of the run that never ran out of memory. The error is injected on the CPU through
the `encode_oom` stage of pipeline.fault_injection, only for passes larger than N items, so the split succeeds."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from pipeline import fault_injection
from tests.conftest import batch_independent_kernels, corpus_file, torch_threads
from tests.fault_scenarios import demo_config

CLIPS = [("speech/librivox_0890_16k.flac", 0.0, 1.7), ("speech/cards_005_16k.wav", 0.3, 0.9),
         ("speech/goforward_16k.wav", 0.0, 1.3), ("speech/cmu_arctic_a0007_16k.wav", 0.2, 1.6),
         ("speech/librivox_0890_16k.flac", 2.0, 1.1), ("speech/goforward_16k.wav", 1.0, 0.7)]


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """One tar of 6 real speech excerpts of 0.7-1.7 s (lengths differ inside a batch: padding matters)."""
    path = tmp_path_factory.mktemp("oom") / "oom-000.tar"
    with tarfile.open(path, "w") as tf:
        for i, (rel, start, seconds) in enumerate(CLIPS):
            data, rate = sf.read(corpus_file(rel), dtype="float32")
            blob = io.BytesIO()
            sf.write(blob, data[int(start * rate): int((start + seconds) * rate)], rate, format="WAV")
            info = tarfile.TarInfo(f"clip{i}.wav")
            info.size = len(blob.getvalue())
            tf.addfile(info, io.BytesIO(blob.getvalue()))
    from pipeline.sources import list_shards

    cfg = demo_config()
    (one,) = list_shards(str(path), cfg.source)
    return cfg, one


@pytest.fixture(scope="module")
def worker(shard, tmp_path_factory):
    from codec import load_model
    from pipeline.provenance import build_provenance
    from pipeline.shard_worker import ShardTokenizer

    cfg, _ = shard
    model = load_model(cfg.model)
    tokenizer = ShardTokenizer(model, cfg, "", build_provenance(model, cfg, "cpu"))
    # rows are compared across pass sizes: kernels whose rounding does not depend on the batch (conftest)
    with torch_threads(cfg.cpus_per_actor), batch_independent_kernels():
        yield tokenizer
    tokenizer.close()


def tokenize(worker, shard, out: Path, pass_limit: int | None):
    """Run the shard into `out` with at most `pass_limit` items per forward pass; (record, tokens table)."""
    _, one = shard
    worker.out_dir, worker.pass_limit = str(out), pass_limit
    record = worker.run(one)
    return record, pq.read_table(out / "tokens" / f"part-{one.shard_id}.parquet")


@pytest.fixture(scope="module")
def unsplit(worker, shard, tmp_path_factory):
    """Passes of up to 4 items, nothing injected: the run every split run must equal."""
    record, table = tokenize(worker, shard, tmp_path_factory.mktemp("unsplit"), 4)
    assert record.rows == len(CLIPS) and record.batches < record.rows  # passes of several items
    assert record.device_peak_mb is None  # torch's CUDA peak: none on the CPU
    return table


@pytest.fixture
def planted(tmp_path, monkeypatch):
    monkeypatch.setenv(fault_injection.ENV, str(tmp_path / "faults"))
    return lambda rule: fault_injection.plant(tmp_path / "faults", rule)


def test_the_unsplit_run_batches_several_items_and_equals_one_by_one(worker, shard, unsplit, tmp_path):
    record, table = tokenize(worker, shard, tmp_path, None)  # the CPU default: one item per pass
    assert record.batches < record.rows  # so the unsplit run's passes hold several items
    assert table.equals(unsplit)


@pytest.mark.parametrize("above", [1, 2])
def test_oom_halves_the_passes_and_the_rows_equal_the_unsplit_run(worker, shard, unsplit, tmp_path, planted,
                                                                  above):
    root = planted(f"oom@encode_oom:*>{above}#all")
    record, table = tokenize(worker, shard, tmp_path, 4)
    sizes = [f.items for f in fault_injection.fired(root)]
    assert sizes and all(s > above for s in sizes) and max(sizes) > 2, sizes  # it fired, on big passes only
    assert table.equals(unsplit), "rows of the split run differ from the unsplit run"
    assert record.rows == unsplit.num_rows


def test_oom_raised_as_runtime_error_by_the_model_is_split_too(worker, shard, unsplit, tmp_path, monkeypatch):
    model, calls = worker.model, []
    real = model.encode

    def encode(x, lengths, bandwidth=None, max_batch=None):
        largest = model.largest_forward_pass(lengths, x.shape[-1], max_batch)
        calls.append(largest)
        if largest > 1:
            raise RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported")
        return real(x, lengths, bandwidth=bandwidth, max_batch=max_batch)

    monkeypatch.setattr(model, "encode", encode)
    _, table = tokenize(worker, shard, tmp_path, 4)
    assert table.equals(unsplit) and max(calls) > 2 and 1 in calls


def test_oom_on_one_item_fails_as_before(worker, shard, tmp_path, planted):
    root = planted("oom@encode_oom#all")
    with pytest.raises(torch.cuda.OutOfMemoryError, match="planted fault"):
        tokenize(worker, shard, tmp_path, 4)
    sizes = [f.items for f in fault_injection.fired(root)]
    assert sizes[-1] == 1 and sizes == sorted(sizes, reverse=True) and sizes[0] > 2, sizes
    assert not (tmp_path / "_manifest").exists()


def test_other_errors_are_not_retried(worker, shard, tmp_path, planted):
    root = planted("raise@encode_oom#all")
    with pytest.raises(fault_injection.PlantedError):
        tokenize(worker, shard, tmp_path, 4)
    assert len(fault_injection.fired(root)) == 1
    assert not (tmp_path / "_manifest").exists()
