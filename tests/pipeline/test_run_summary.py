"""The run summary is a typed record whose JSON (`_summary.json`, `audiotok tokenize`'s output) keeps the
keys and their order that readers of the file rely on."""

from __future__ import annotations

import json

from pipeline.engine.progress import RunSummary, summarize
from pipeline.job import JobSummary, VerifyBrief
from pipeline.records import Shard, ShardRecord

KEYS = ["shards", "shards_committed", "rows", "rejects", "rejects_by_reason", "audio_hours", "wall_seconds",
        "realtime_factor", "padding_waste", "model_source", "random_weights", "actors", "verify"]


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
