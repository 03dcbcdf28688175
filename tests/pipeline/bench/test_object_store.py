"""The fake object store charges and limits requests as it says (pipeline.bench.object_store)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pytest

from pipeline import writer
from pipeline.bench.object_store import FakeObjectStore, StoreCosts
from tests.pipeline.test_writer import CFG, METADATA, shard

MS = 0.020


@pytest.fixture
def store(tmp_path):
    FakeObjectStore.use(str(tmp_path / "store"))
    yield fsspec.filesystem("fakes3")
    FakeObjectStore.state = None


def test_a_request_costs_its_latency_plus_its_bytes(store):
    store.pipe_file("fakes3://b/x.bin", b"\0" * 1_000_000)
    assert store.cat_file("fakes3://b/x.bin", 10, 20) == b"\0" * 10
    stats = FakeObjectStore.stats()
    assert stats.requests == {"put": 1, "get": 1}
    assert stats.bytes_written == 1_000_000 and stats.bytes_read == 10
    assert stats.seconds == pytest.approx(2 * MS + 1_000_010 / 100e6)


def test_sequential_requests_add_up_and_parallel_ones_run_ten_at_a_time(store):
    for i in range(20):
        store.pipe_file(f"b/k{i}", b"")
    before = FakeObjectStore.stats()
    for i in range(20):
        store.info(f"b/k{i}")
    sequential = FakeObjectStore.stats().minus(before)
    assert sequential.requests == {"head": 20} and sequential.seconds == pytest.approx(20 * MS)

    before = FakeObjectStore.stats()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: store.info(f"b/k{i % 20}"), range(35)))
    parallel = FakeObjectStore.stats().minus(before)
    # 35 HEADs, 10 at once: 4 rounds of 20 ms; those beyond the first 10 waited, and that is charged
    assert parallel.requests == {"head": 35} and parallel.seconds == pytest.approx(4 * MS)
    assert parallel.waited_s == pytest.approx(MS * (10 * 1 + 10 * 2 + 5 * 3))


def test_a_read_follows_the_head_that_gave_its_size_also_in_a_pool(store):
    store.pipe_file("b/x", b"y" * 100)
    before = FakeObjectStore.stats()
    with ThreadPoolExecutor(4) as pool:  # 4 files opened and read at once: HEAD, then GET, each
        assert list(pool.map(lambda _: fsspec.open("fakes3://b/x", "rb").open().read(), range(4))) == [b"y" * 100] * 4
    read = FakeObjectStore.stats().minus(before)
    assert read.requests == {"head": 4, "get": 4} and read.seconds == pytest.approx(2 * MS + 100 / 100e6)


def test_the_store_lets_at_most_ten_requests_in_at_once(store, monkeypatch):
    store.pipe_file("b/k", b"x")
    release, inside = threading.Event(), []
    original = FakeObjectStore._local

    def slow_local(self, path):  # every request resolves its key inside the store's semaphore
        inside.append(path)
        release.wait(10)
        return original(self, path)

    monkeypatch.setattr(FakeObjectStore, "_local", slow_local)
    monkeypatch.setattr(FakeObjectStore, "cat_file", lambda self, p, *a: self._request("get", lambda: self._local(p)))
    threads = [threading.Thread(target=store.cat_file, args=("b/k",)) for _ in range(15)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(inside) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # give the other 5 every chance to get in, were the limit not enforced
    assert len(inside) == 10
    release.set()
    for t in threads:
        t.join(10)
    assert len(inside) == 15 and FakeObjectStore.stats().most_in_flight == 10


def test_listing_is_paged_1000_keys_a_request(store, tmp_path):
    root = tmp_path / "store" / "b" / "many"
    root.mkdir(parents=True)
    for i in range(2500):
        (root / f"f{i:05d}").write_bytes(b"")
    before = FakeObjectStore.stats()
    assert len(store.ls("fakes3://b/many")) == 2500
    listed = FakeObjectStore.stats().minus(before)
    assert listed.requests == {"list": 3} and listed.seconds == pytest.approx(3 * MS)
    before = FakeObjectStore.stats()
    assert len(store.find("b")) == 2500 and FakeObjectStore.stats().minus(before).requests == {"list": 3}
    with pytest.raises(FileNotFoundError):
        store.ls("b/none")
    with pytest.raises(FileNotFoundError):
        store.info("b/none")


def test_a_custom_cost_model_and_the_error_without_a_backing_directory(tmp_path):
    FakeObjectStore.state = None
    with pytest.raises(RuntimeError, match=r"FakeObjectStore.use\(root\)"):
        fsspec.filesystem("fakes3").info("b/x")
    FakeObjectStore.use(str(tmp_path), StoreCosts(request_s=0.5, max_in_flight=2))
    fs = fsspec.filesystem("fakes3")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: fs.pipe_file(f"b/{i}", b""), range(4)))
    assert FakeObjectStore.stats().seconds == pytest.approx(1.0)
    FakeObjectStore.state = None


def test_the_writer_commits_and_reads_back_through_the_fake(store):
    out = "fakes3://bucket/out"
    for i in range(3):
        _, tokens, rejects, record = shard(f"sh-{i}")
        writer.commit_shard(out, f"sh-{i}", tokens, rejects, record, METADATA, CFG)
    commits = FakeObjectStore.stats()
    # per shard: 4 PUTs (tokens, rejects, row index, record), 4 COPY + 4 DELETE for the renames;
    # cleanup of temp files: HEADs
    assert commits.requests["put"] == 12 and commits.requests["copy"] == 12
    assert sorted(writer.committed_shards(out)) == ["sh-0", "sh-1", "sh-2"]
    read = FakeObjectStore.stats().minus(commits)
    # the records' and the snapshots' listings run together, then the 3 GETs of the records together
    assert read.requests == {"list": 2, "get": 3}
    assert read.seconds == pytest.approx(2 * MS, rel=0.05)
    assert writer.cleanup_uncommitted(out) == []
