"""Storage that stalls: pipeline.sources.timed_read, the source readers over it, and the shard worker's retries.

`StallingFS` ("stallfs://") is an in-memory fsspec filesystem of its own whose reads of a planned
path block at a given byte offset until `release` is set, as a stuck network filesystem would.
"""

import re
import tarfile
import threading
import time
from typing import ClassVar

import fsspec
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from pipeline import shard_worker
from pipeline.config import SourceConfig
from pipeline.errors import BadInputError
from pipeline.records import Rejection
from pipeline.sources import ShardReadError, common, list_shards, read_shard
from pipeline.sources.timed_read import CHUNK_BYTES, ReadStalled, call_with_deadline, open_timed
from tests.conftest import corpus_file
from tests.hostile_corpus import write_tar

TIMEOUT = 0.3


class _StallingFile:
    """A read-only file that serves `stall_at` bytes, then blocks in read() until `release` is set."""

    def __init__(self, f, stall_at: int, release: threading.Event):
        self.f, self.stall_at, self.release = f, stall_at, release

    def read(self, n: int = -1) -> bytes:
        left = self.stall_at - self.f.tell()
        if left <= 0:
            self.release.wait()
        elif n < 0 or n > left:
            n = left
        return self.f.read(n)

    def __getattr__(self, name):
        return getattr(self.f, name)


class StallingFS(MemoryFileSystem):
    protocol = "stallfs"
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list] = [""]
    # path -> [offset where reads block (None: the open blocks), opens left to stall]
    plan: ClassVar[dict[str, list]] = {}
    opens: ClassVar[dict[str, int]] = {}
    release = threading.Event()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("stallfs://"))

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "r" not in mode:
            return f
        path = self._strip_protocol(path)
        self.opens[path] = self.opens.get(path, 0) + 1
        stall_at, left = self.plan.get(path, (0, 0))
        if left <= 0:
            return f
        self.plan[path][1] -= 1
        if stall_at is None:
            self.release.wait()
            return f
        return _StallingFile(f, stall_at, self.release)


fsspec.register_implementation("stallfs", StallingFS, clobber=True)


@pytest.fixture
def stallfs():
    fs = StallingFS()
    fs.store.clear()
    fs.plan.clear()
    fs.opens.clear()
    fs.release.clear()
    yield fs
    fs.release.set()  # lets the abandoned reader threads finish
    fs.store.clear()


def test_call_with_deadline():
    assert call_with_deadline(lambda: 7, TIMEOUT, "x") == 7
    assert call_with_deadline(lambda: 7, None, "x") == 7
    with pytest.raises(KeyError, match="from the call"):
        call_with_deadline(lambda: {}["from the call"], TIMEOUT, "x")
    gate = threading.Event()
    started = time.monotonic()
    with pytest.raises(ReadStalled, match=r"^reading thing: storage made no progress for 0\.3 s "
                                          r"\(source\.read_timeout_s\)$") as stalled:
        call_with_deadline(gate.wait, TIMEOUT, "reading thing")
    assert TIMEOUT <= time.monotonic() - started < 3 and isinstance(stalled.value, OSError)
    gate.set()


def test_timed_file_reads_like_the_plain_file(stallfs):
    data = bytes(range(256)) * (CHUNK_BYTES // 128 + 17)  # a bit over two chunks
    stallfs.pipe_file("/f.bin", b"line one\nline two\n" + data)
    with open_timed("stallfs:///f.bin", {}, TIMEOUT) as f:
        assert [f.readline(), next(f)] == [b"line one\n", b"line two\n"]
        assert f.read(10) == data[:10] and f.tell() == 28
        f.seek(18 + len(data) - 5)
        assert f.read() == data[-5:] and f.read(1) == b""
        f.seek(18)
        assert f.read() == data


def test_stalled_read_raises_and_gives_up_the_file(stallfs):
    stallfs.pipe_file("/f.bin", b"x" * 1000)
    stallfs.plan["/f.bin"] = [600, 1]
    f = open_timed("stallfs:///f.bin", {}, TIMEOUT)
    assert f.read(500) == b"x" * 500
    with pytest.raises(ReadStalled, match="reading stallfs:///f.bin: storage made no progress for 0.3 s"):
        f.read(500)
    f.close()  # returns although the stalled read still holds the file
    assert f.closed
    stallfs.plan["/f.bin"] = [None, 1]
    with pytest.raises(ReadStalled, match="opening stallfs:///f.bin"):
        open_timed("stallfs:///f.bin", {}, TIMEOUT)


def tar_with_stall(stallfs, tmp_path, name: str) -> tuple[str, int]:
    """A 3-sample tar on stallfs; returns its URL and the offset in the middle of the second member's data."""
    blob = write_tar(tmp_path / name, [(f"{k}.wav", k.encode() * 40_000) for k in ("a", "b", "c")])
    with tarfile.open(tmp_path / name) as tar:
        middle = tar.getmembers()[1].offset_data + 20_000
    stallfs.pipe_file(f"/{name}", blob)
    return f"stallfs:///{name}", middle


def test_tar_that_stalls_midway_raises_shard_read_error_after_the_earlier_samples(stallfs, tmp_path):
    url, middle = tar_with_stall(stallfs, tmp_path, "s.tar")
    cfg = SourceConfig(read_timeout_s=TIMEOUT)
    (shard,) = list_shards(url, cfg)
    assert [s.key for s in read_shard(shard, cfg)] == ["a", "b", "c"]
    stallfs.plan["/s.tar"] = [middle, 1]
    got = []
    started = time.monotonic()
    with pytest.raises(ShardReadError, match=rf"shard {re.escape(shard.shard_id)} \(stallfs:///s.tar\): ReadStalled: "
                                             r"reading stallfs:///s.tar: storage made no progress for 0.3 s"):
        for sample in read_shard(shard, cfg):
            got.append(sample.key)
    assert got == ["a"] and time.monotonic() - started < 5
    stallfs.plan["/s.tar"] = [None, 1]
    with pytest.raises(ShardReadError, match="ReadStalled: opening stallfs:///s.tar"):
        list(read_shard(shard, cfg))
    assert [s.key for s in read_shard(shard, cfg)] == ["a", "b", "c"]  # the storage answers again


def test_manifest_whose_file_or_row_stalls_raises_shard_read_error(stallfs, monkeypatch):
    monkeypatch.setattr(common, "ROW_PROTOCOLS", common.ROW_PROTOCOLS | {"stallfs"})
    stallfs.pipe_file("/d/m.jsonl", b'{"path": "a.wav"}\n{"path": "b.wav"}\n')
    for key in "ab":
        stallfs.pipe_file(f"/d/{key}.wav", key.encode() * 100)
    cfg = SourceConfig(read_timeout_s=TIMEOUT)
    (shard,) = list_shards("stallfs:///d/m.jsonl", cfg)
    assert [(s.key, s.data) for s in read_shard(shard, cfg)] == [("a", b"a" * 100), ("b", b"b" * 100)]
    stallfs.plan["/d/b.wav"] = [0, 1]
    with pytest.raises(ShardReadError, match="reading stallfs:///d/b.wav: ReadStalled: reading stallfs:///d/b.wav"):
        list(read_shard(shard, cfg))
    stallfs.plan["/d/m.jsonl"] = [5, 1]
    with pytest.raises(ShardReadError, match=rf"{re.escape(shard.shard_id)}.*ReadStalled: reading stallfs:///d/m.jsonl"):
        list(read_shard(shard, cfg))


def job_config(*overrides: str):
    from tests.fault_scenarios import demo_config

    return demo_config(f"source.read_timeout_s={TIMEOUT}", "source.shard_read_retries=2", *overrides)


def test_shard_worker_retries_a_stalled_shard_then_records_it_unreadable(stallfs, tmp_path):
    from tests.fault_scenarios import demo_config

    url, middle = tar_with_stall(stallfs, tmp_path, "s.tar")
    cfg = job_config()
    (shard,) = list_shards(url, cfg.source)
    stallfs.plan["/s.tar"] = [middle, 1]  # stalls once: the retry reads it
    assert [s.key for s in shard_worker._read_with_retries(shard, cfg)] == ["a", "b", "c"]
    assert stallfs.opens["/s.tar"] == 2

    stallfs.opens.clear()
    stallfs.plan["/s.tar"] = [middle, 99]
    got = shard_worker._read_with_retries(shard, cfg)
    assert isinstance(got, Rejection) and (got.key, got.source, got.reason) == (shard.shard_id, url, "shard_unreadable")
    assert got.detail.startswith("2 attempts: shard ") and "no progress for 0.3 s (source.read_timeout_s)" in got.detail
    assert stallfs.opens["/s.tar"] == 2
    with pytest.raises(BadInputError, match="strict: shard stallfs:///s.tar unreadable after 2 attempts"):
        shard_worker._read_with_retries(shard, job_config("strict=true"))
    with pytest.raises(ValueError, match="source.read_timeout_s must be > 0"):
        demo_config("source.read_timeout_s=0")


def test_stalled_shard_is_committed_as_a_rejection_and_the_next_shard_tokenized(stallfs, tmp_path):
    from codec import load_model
    from pipeline import writer
    from pipeline.provenance import build_provenance
    from pipeline.shard_worker import ShardTokenizer

    wav = corpus_file("speech/cmu_arctic_a0007_16k.wav").read_bytes()
    stallfs.pipe_file("/stuck.tar", write_tar(tmp_path / "stuck.tar", [("x.wav", wav)]))
    stallfs.pipe_file("/good.tar", write_tar(tmp_path / "good.tar", [("y.wav", wav)]))
    stallfs.plan["/stuck.tar"] = [1000, 99]
    cfg = job_config()
    model = load_model(cfg.model)
    out = tmp_path / "out"
    worker = ShardTokenizer(model, cfg, str(out), build_provenance(model, cfg, "cpu"))
    try:
        (stuck,), (good,) = (list_shards(f"stallfs:///{name}.tar", cfg.source) for name in ("stuck", "good"))
        worker.prefetch(good)
        records = [worker.run(stuck), worker.run(good)]
    finally:
        worker.close()
    assert [(r.rows, r.rejects, r.rejects_by_reason) for r in records] == [
        (0, 1, {"shard_unreadable": 1}), (1, 0, {})]
    assert set(writer.committed_shards(str(out))) == {stuck.shard_id, good.shard_id}
    (reject,) = pq.read_table(out / writer.part_name("rejects", stuck.shard_id)).to_pylist()
    assert (reject["key"], reject["reason"]) == (stuck.shard_id, "shard_unreadable")
    assert "ReadStalled" in reject["detail"] and "source.read_timeout_s" in reject["detail"]
    assert pq.read_table(out / writer.part_name("tokens", good.shard_id)).column("key").to_pylist() == ["y"]
