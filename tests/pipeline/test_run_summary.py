"""The run summary is a typed record whose JSON (`_summary.json`, `audiotok tokenize`'s output) keeps the
keys and their order that readers of the file rely on."""

from __future__ import annotations

import json

from pipeline.engine.progress import RunSummary, summarize
from pipeline.job import JobSummary, VerifyBrief
from pipeline.records import Shard, ShardRecord

KEYS = ["shards", "shards_committed", "rows", "rejects", "rejects_by_reason", "audio_hours", "wall_seconds",
        "realtime_factor", "padding_waste", "model_source", "random_weights", "device_peak_mb", "batch_budget",
        "actors", "verify"]


def test_summary_counts_this_inputs_shards_and_keeps_the_json_keys():
    shards = [Shard("a", "a.tar", "webdataset"), Shard("b", "b.tar", "webdataset")]
    records = {"a": ShardRecord("a", "a.tar", rows=3, rejects=1, rejects_by_reason={"undecodable": 1},
                                audio_seconds=7200.0, padded_samples=100, true_samples=75),
               "other": ShardRecord("other", "o.tar", rows=50, rejects=0)}  # another input's: left out
    run = summarize(records, shards, 3600.0, None)
    assert isinstance(run, RunSummary)
    assert (run.shards, run.shards_committed, run.rows, run.rejects) == (2, 1, 3, 1)
    assert run.audio_hours == 2.0 and run.realtime_factor == 2.0 and run.padding_waste == 0.25
    job = JobSummary.of(run, actors=2, verify=VerifyBrief(passed=True, failures=[], rows_sampled=3, report="r"))
    data = json.loads(json.dumps(job.to_json()))
    assert list(data) == KEYS
    assert data["rejects_by_reason"] == {"undecodable": 1} and data["model_source"] is None
    assert data["verify"] == {"passed": True, "failures": [], "rows_sampled": 3, "report": "r"}
    assert JobSummary.of(run, actors=0, verify=None).to_json()["verify"] is None
    assert data["device_peak_mb"] is None  # CPU records: no device peak
    assert data["batch_budget"] is None  # no actor reported one


def test_summary_shows_the_batch_budget_in_force_and_how_it_was_decided():
    from pipeline.budget_in_force import BudgetInForce

    budget = BudgetInForce(57_192_000, 256, "calibrated", 24000, bytes_per_sample=600.0, usable_bytes=43 * 2**30)
    run = summarize({}, [Shard("a", "a.tar", "webdataset")], 1.0, None, budget)
    data = json.loads(json.dumps(JobSummary.of(run, actors=1, verify=None).to_json()))
    assert data["batch_budget"] == {"samples": 57_192_000, "max_batch_items": 256, "how": "calibrated",
                                    "sample_rate": 24000, "bytes_per_sample": 600.0, "usable_bytes": 43 * 2**30,
                                    "reason": ""}


def test_summary_device_peak_is_the_largest_shards_and_old_records_load_without_it():
    shards = [Shard(s, f"{s}.tar", "webdataset") for s in "abc"]
    old = ShardRecord("a", "a.tar", rows=1, rejects=0).to_json()
    del old["device_peak_mb"]  # a record written before the field
    records = {"a": ShardRecord.from_json(old),
               "b": ShardRecord.from_json({**old, "shard_id": "b", "device_peak_mb": 812.5}),
               "c": ShardRecord("c", "c.tar", rows=1, rejects=0, device_peak_mb=640.0)}
    assert records["a"].device_peak_mb is None
    assert summarize(records, shards, 1.0, None).device_peak_mb == 812.5
    assert summarize({"a": records["a"]}, shards, 1.0, None).device_peak_mb is None


def test_device_peak_reads_torch_cuda_over_the_block_and_nothing_on_the_cpu():
    from pipeline.device_peak import DevicePeak

    class FakeCuda:
        def __init__(self):
            self.calls = []

        def reset_peak_memory_stats(self, device):
            self.calls.append(("reset", str(device)))

        def max_memory_allocated(self, device):
            self.calls.append(("peak", str(device)))
            return 3 * 2**20

    fake = FakeCuda()
    with DevicePeak("cuda:0", cuda=fake) as peak:
        assert fake.calls == [("reset", "cuda:0")] and peak.mb is None
    assert peak.mb == 3.0 and fake.calls[-1] == ("peak", "cuda:0")
    cpu = FakeCuda()
    with DevicePeak("cpu", cuda=cpu) as peak:
        pass
    assert peak.mb is None and cpu.calls == []
