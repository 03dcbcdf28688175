"""Commits off the encode thread, without Ray: two `ShardTokenizer.run` calls at once (as the threaded
actor makes them) overlap the commit of one shard with the encode of the next, with at most one
commit in flight, commits in encode order, and the same rows as one shard at a time."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow.dataset as pads

from pipeline import shard_worker, writer
from pipeline.sources import list_shards
from tests.pipeline.test_prefetch import shards, worker_for


def events_of(monkeypatch, commit_seconds: float):
    """Record (what, shard, time) of each encode and commit; each commit takes `commit_seconds` more."""
    events, lock = [], threading.Lock()
    encode, commit = shard_worker.ShardTokenizer._encode, writer.commit_shard

    def note(what, shard_id):
        with lock:
            events.append((what, shard_id, time.monotonic()))

    def slow_encode(self, segments, shard_id=""):
        note("encode-start", shard_id)
        try:
            return encode(self, segments, shard_id)
        finally:
            note("encode-end", shard_id)

    def slow_commit(out_dir, shard_id, *args, **kw):
        note("commit-start", shard_id)
        time.sleep(commit_seconds)
        try:
            return commit(out_dir, shard_id, *args, **kw)
        finally:
            note("commit-end", shard_id)

    monkeypatch.setattr(shard_worker.ShardTokenizer, "_encode", slow_encode)
    monkeypatch.setattr(writer, "commit_shard", slow_commit)
    return events


def spans(events, what):
    start = {s: t for w, s, t in events if w == f"{what}-start"}
    return {s: (start[s], t) for w, s, t in events if w == f"{what}-end"}


def test_encode_of_the_next_shard_overlaps_the_commit(tmp_path, monkeypatch):
    spec = shards(tmp_path, 4)
    worker, cfg = worker_for(tmp_path, "decode_threads=2", "prefetch_shards=1")
    events = events_of(monkeypatch, commit_seconds=1.0)
    todo = list_shards(spec, cfg.source)
    try:
        with ThreadPoolExecutor(2) as calls:  # the actor's two threads
            records = list(calls.map(lambda i: worker.run(todo[i], 1, todo[i + 1:i + 2], todo[max(0, i - 1):i]),
                                     range(len(todo))))
    finally:
        worker.close()
    assert [r.rows for r in records] == [2, 2, 2, 2]
    assert {r.shard_id for r in records} == set(writer.committed_shards(str(tmp_path / "out")))
    encodes, commits = spans(events, "encode"), spans(events, "commit")
    # commits keep the order of the encodes, and never two at once
    by_encode = sorted(encodes, key=lambda s: encodes[s][0])
    by_commit = sorted(commits, key=lambda s: commits[s][0])
    assert by_commit == by_encode == [s.shard_id for s in todo]  # in the order the calls were made
    for a, b in zip(by_commit, by_commit[1:]):
        assert commits[a][1] <= commits[b][0], f"commits of {a} and {b} overlap"
    # a shard's encode starts before the commit of the shard before it ends (the commit is off the
    # encode thread); each encode starts after the one before it ended (one encode at a time)
    for a, b in zip(by_encode, by_encode[1:]):
        assert encodes[b][0] < commits[a][1], f"{b} waited for the commit of {a}"
        assert encodes[a][1] <= encodes[b][0]


def test_rows_equal_one_shard_at_a_time(tmp_path):
    spec = shards(tmp_path, 3)
    tables = {}
    for mode in ("serial", "overlapped"):
        worker, cfg = worker_for(tmp_path / mode, "decode_threads=2", "prefetch_shards=1")
        todo = list_shards(spec, cfg.source)
        try:
            if mode == "serial":
                for shard in todo:
                    worker.run(shard)
            else:
                with ThreadPoolExecutor(2) as calls:
                    list(calls.map(lambda i: worker.run(todo[i], 1, todo[i + 1:i + 2], todo[max(0, i - 1):i]),
                                   range(len(todo))))
        finally:
            worker.close()
        tables[mode] = pads.dataset(str(tmp_path / mode / "out" / "tokens")).to_table().sort_by("key")
    assert tables["serial"].select(["key", "codes", "num_samples", "scales"]).equals(
        tables["overlapped"].select(["key", "codes", "num_samples", "scales"]))
