"""The compacted manifest: the snapshot and the records newer than it give exactly the committed shards."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from pipeline import fault_injection, manifest_snapshot, rows_gathered, writer
from pipeline.bench.object_store import FakeObjectStore
from pipeline.records import EncodeBatch, ShardRecord
from tests.conftest import REPO
from tests.pipeline.test_writer import CFG, METADATA, commit, shard


def committed(out, n, start=0):
    return {f"sh-{i}": commit(out, f"sh-{i}", n=2, seed=i)[1] for i in range(start, start + n)}


def snapshots(out):
    folder = out / "_manifest" / "_snapshot"
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def snapshotted(tmp_path):
    """{shard_id: record} of three shards committed in tmp_path (sh-0..sh-2), and the snapshot of them written."""
    want = committed(tmp_path, 3)
    manifest_snapshot.write(manifest_snapshot.load(str(tmp_path)))
    return want


@pytest.fixture
def store(tmp_path):
    """An output URL on the fake object store (files under tmp_path)."""
    FakeObjectStore.use(str(tmp_path))
    yield "fakes3://bucket/out"
    FakeObjectStore.state = None


def commit_to(out: str, count: int) -> None:
    for i in range(count):
        _, tokens, rejects, record = shard(f"sh-{i}", n=2, seed=i)
        writer.commit_shard(out, f"sh-{i}", tokens, rejects, record, METADATA, CFG)


def test_an_output_without_a_snapshot_reads_its_records_then_the_snapshot_holds_them(tmp_path):
    want = committed(tmp_path, 3)  # an output as written before snapshots: records only
    state = manifest_snapshot.load(str(tmp_path), start=True)
    assert state.records == want and (state.from_files, state.from_snapshot, state.snapshot) == (3, 0, None)
    assert writer.cleanup_uncommitted(str(tmp_path), state) == []
    path = manifest_snapshot.write(state)
    assert snapshots(tmp_path) == ["snapshot-0000000001.jsonl.zst"] and path.endswith(snapshots(tmp_path)[0])
    again = manifest_snapshot.load(str(tmp_path))
    assert again.records == want and (again.from_files, again.from_snapshot, again.generation) == (0, 3, 1)
    assert manifest_snapshot.write(again) is None  # it holds exactly these: nothing written
    assert writer.committed_shards(str(tmp_path)) == want
    assert writer.committed_parts(str(tmp_path)) == [str(tmp_path / f"tokens/part-sh-{i}.parquet") for i in range(3)]


def test_records_newer_than_the_snapshot_are_read_and_the_next_generation_replaces_it(tmp_path, snapshotted):
    want = snapshotted | committed(tmp_path, 2, start=3)
    state = manifest_snapshot.load(str(tmp_path))
    assert state.records == want and (state.from_snapshot, state.from_files) == (3, 2)
    manifest_snapshot.write(state)
    assert snapshots(tmp_path) == ["snapshot-0000000002.jsonl.zst"]  # the older one deleted
    assert manifest_snapshot.load(str(tmp_path)).from_snapshot == 5


def test_a_snapshot_never_makes_a_shard_committed_whose_record_or_parts_are_gone(tmp_path, snapshotted):
    (tmp_path / "_manifest" / "sh-0.json").unlink()  # record gone: its parts are uncommitted
    (tmp_path / "tokens" / "part-sh-1.parquet").unlink()  # parts gone: the record is removed
    state = manifest_snapshot.load(str(tmp_path), start=True)
    assert sorted(state.records) == ["sh-1", "sh-2"] and state.from_snapshot == 2
    removed = writer.cleanup_uncommitted(str(tmp_path), state)
    assert sorted(os.path.relpath(p, tmp_path) for p in removed) == [
        "_manifest/sh-1.json", "rejects/part-sh-0.parquet", "rejects/part-sh-1.parquet", "rows/sh-0.parquet",
        "rows/sh-1.parquet", "tokens/part-sh-0.parquet"]
    assert sorted(state.records) == ["sh-2"] and list(writer.committed_shards(str(tmp_path))) == ["sh-2"]


def test_a_record_rewritten_after_the_snapshot_is_read_again(tmp_path, snapshotted):
    _, tokens, rejects, record = shard("sh-1", n=2, seed=1)
    again = writer.commit_shard(str(tmp_path), "sh-1", tokens, rejects, replace(record, attempt=2), METADATA, CFG)
    state = manifest_snapshot.load(str(tmp_path))
    assert state.records["sh-1"] == again and state.records["sh-1"].attempt == 2
    assert (state.from_snapshot, state.from_files) == (2, 1)


def test_the_job_leaves_the_shards_it_redoes_out_of_the_snapshot(tmp_path):
    committed(tmp_path, 3)
    state = manifest_snapshot.load(str(tmp_path), start=True)
    manifest_snapshot.write(state, ["sh-0", "sh-2"])
    assert manifest_snapshot.load(str(tmp_path)).from_files == 1  # sh-1's record: read from its file


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing end line"])
def test_an_unusable_snapshot_is_ignored_and_the_records_are_read(tmp_path, snapshotted, damage, caplog):
    want = snapshotted
    path = str(tmp_path / "_manifest" / "_snapshot" / snapshots(tmp_path)[0])
    blob = open(path, "rb").read()
    if damage == "truncated":
        blob = blob[: len(blob) // 2]
    elif damage == "garbage":
        blob = b"not a snapshot"
    else:
        import pyarrow as pa

        text = pa.input_stream(pa.py_buffer(blob), compression="zstd").read().rsplit(b"\n", 2)[0] + b"\n"
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as z:
            z.write(text)
        blob = sink.getvalue().to_pybytes()
    open(path, "wb").write(blob)
    state = manifest_snapshot.load(str(tmp_path))
    assert state.records == want and (state.from_snapshot, state.from_files, state.snapshot) == (0, 3, None)
    assert "unusable" in caplog.text
    manifest_snapshot.write(state)  # the next generation replaces the damaged one
    assert snapshots(tmp_path) == ["snapshot-0000000002.jsonl.zst"]


def test_a_crash_while_writing_the_snapshot_loses_and_duplicates_nothing(tmp_path, snapshotted):
    """SIGKILL at the named stage, between the snapshot's bytes and its rename (a separate process):
    the records read the same, cleanup removes the temp file, and the next write succeeds."""
    want = snapshotted | committed(tmp_path, 1, start=3)
    planted = tmp_path.parent / f"{tmp_path.name}-faults"
    fault_injection.plant(planted, "kill@snapshot_write")
    code = ("import sys; from pipeline import manifest_snapshot as m; "
            "m.write(m.load(sys.argv[1])); print('not killed')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, fault_injection.ENV: str(planted)}, timeout=120)
    assert done.returncode == -9, done.stdout + done.stderr
    assert len(fault_injection.fired(planted)) == 1
    temp = [n for n in snapshots(tmp_path) if n.startswith(".tmp-")]
    assert len(temp) == 1 and "snapshot-0000000001.jsonl.zst" in snapshots(tmp_path)
    state = manifest_snapshot.load(str(tmp_path), start=True)
    assert state.records == want and (state.from_snapshot, state.from_files) == (3, 1)
    assert writer.cleanup_uncommitted(str(tmp_path), state) == [str(tmp_path / "_manifest/_snapshot" / temp[0])]
    manifest_snapshot.write(state)
    assert snapshots(tmp_path) == ["snapshot-0000000002.jsonl.zst"]
    assert manifest_snapshot.load(str(tmp_path)).records == want


def test_an_error_while_writing_the_snapshot_leaves_no_temp_file(tmp_path, monkeypatch):
    want = committed(tmp_path, 2)
    monkeypatch.setenv(fault_injection.ENV, str(tmp_path.parent / f"{tmp_path.name}-faults"))
    fault_injection.plant(tmp_path.parent / f"{tmp_path.name}-faults", "raise@snapshot_write")
    with pytest.raises(fault_injection.PlantedError):
        manifest_snapshot.write(manifest_snapshot.load(str(tmp_path)))
    assert snapshots(tmp_path) == [] and manifest_snapshot.load(str(tmp_path)).records == want


def test_on_the_object_store_a_start_reads_the_snapshot_not_every_record(store):
    out = store
    commit_to(out, 5)
    before = FakeObjectStore.stats()
    state = manifest_snapshot.load(out, start=True)
    first = FakeObjectStore.stats().minus(before)
    # six listings (manifest, snapshots, tokens, rejects, rows, root) and the sidecar's GET side by side,
    # then the five records' GETs side by side: two request times
    assert first.requests == {"list": 6, "get": 6} and first.seconds == pytest.approx(0.040, rel=0.05)
    assert writer.cleanup_uncommitted(out, state) == []
    manifest_snapshot.write(state)
    before = FakeObjectStore.stats()
    again = manifest_snapshot.load(out, start=True)
    read = FakeObjectStore.stats().minus(before)
    assert again.records == state.records and again.from_snapshot == 5
    assert read.requests == {"list": 6, "get": 2, "head": 1}  # the sidecar; the snapshot: HEAD + GET


def test_the_snapshot_holds_each_record_as_to_json_gives_it(tmp_path):
    want = committed(tmp_path, 2)
    if "encode_batches" in ShardRecord.__dataclass_fields__:  # a list of dataclasses, as the job records it
        want["sh-1"].encode_batches = [EncodeBatch(["sh-1/k0", "sh-1/k1"], 16)]
    want["sh-1"].rejects_by_reason = {"undecodable": 1, "too_short": 2}
    state = manifest_snapshot.load(str(tmp_path))
    state.records["sh-1"] = want["sh-1"]  # as a run's actor returns it (the snapshot trusts it)
    path = manifest_snapshot.write(state)
    held = manifest_snapshot.read_snapshot(state.fs, path)
    assert {s: record for s, (_, record) in held.items()} == {s: r.to_json() for s, r in want.items()}
    assert manifest_snapshot.load(str(tmp_path)).records == want


def test_a_run_ends_with_a_snapshot_of_every_record_without_reading_the_ones_it_committed(tmp_path, store):
    from pipeline import job_start
    from pipeline.records import Shard

    out = store
    commit_to(out, 2)
    begun = job_start.start(out, [Shard(f"sh-{i}", f"/data/sh-{i}.tar", "webdataset") for i in range(4)],
                            log=print)
    assert sorted(begun.done) == ["sh-0", "sh-1"] and [s.shard_id for s in begun.todo] == ["sh-2", "sh-3"]
    assert begun.snapshot.endswith("snapshot-0000000001.jsonl.zst")  # after cleanup: the two records
    records = dict(begun.done)
    for i in (2, 3):  # the run: the actors commit and return their records
        _, tokens, rejects, record = shard(f"sh-{i}", n=2, seed=i)
        records[f"sh-{i}"] = writer.commit_shard(out, f"sh-{i}", tokens, rejects, record, METADATA, CFG)
    before = FakeObjectStore.stats()
    assert job_start.finish(begun, records).endswith("snapshot-0000000002.jsonl.zst")
    closing = FakeObjectStore.stats().minus(before)
    # records listed, not read; GETs only of the 4 row-index files, gathered into one file (`rows_gathered`):
    # PUTs the snapshot and the gathered file's temp, moved into place (COPY)
    assert closing.requests["get"] == 4 and closing.requests["put"] == 2 and closing.requests["copy"] == 1
    assert closing.bytes_read == sum(os.path.getsize(tmp_path / "bucket" / "out" / "rows" / f"sh-{i}.parquet")
                                     for i in range(4))
    again = manifest_snapshot.load(out)
    assert again.records == records and (again.from_snapshot, again.from_files) == (4, 0)
    before = FakeObjectStore.stats()
    assert rows_gathered.gather(out, again.records) == 0  # the gathered file is there: nothing read
    assert "get" not in FakeObjectStore.stats().minus(before).requests


def test_a_start_with_retry_unreadable_redoes_those_shards_and_leaves_them_out_of_the_snapshot(tmp_path):
    from pipeline import job_start
    from pipeline.records import Shard

    committed(tmp_path, 2)
    _, tokens, rejects, record = shard("sh-1", n=2, seed=1)
    writer.commit_shard(str(tmp_path), "sh-1", tokens, rejects.slice(0, 0),
                        replace(record, rejects=0, rejects_by_reason={"shard_unreadable": 1}), METADATA, CFG)
    shards = [Shard(f"sh-{i}", f"/data/sh-{i}.tar", "webdataset") for i in range(2)]
    lines = []
    begun = job_start.start(str(tmp_path), shards, retry_unreadable=True, log=lines.append)
    assert begun.again == ["sh-1"] and [s.shard_id for s in begun.todo] == ["sh-1"] and list(begun.done) == ["sh-0"]
    assert begun.committed_before and "1 shard(s) recorded as shard_unreadable are tried again" in lines[0]
    assert sorted(manifest_snapshot.read_snapshot(begun.state.fs, begun.snapshot)) == ["sh-0"]
    again = manifest_snapshot.load(str(tmp_path))
    assert (again.from_snapshot, again.from_files) == (1, 1)  # sh-1's record: from its file


def test_a_part_file_whose_name_is_not_utf8_is_left_alone_with_a_warning(tmp_path, snapshotted, caplog):
    odd = os.fsencode(tmp_path / "tokens") + b"/part-\xff.parquet"  # the part listings are Arrow strings
    open(odd, "wb").write(b"x")
    (tmp_path / "tokens" / "part-orphan.parquet").write_bytes(b"x")
    state = manifest_snapshot.load(str(tmp_path), start=True)
    assert writer.cleanup_uncommitted(str(tmp_path), state) == [str(tmp_path / "tokens" / "part-orphan.parquet")]
    assert state.records == snapshotted and os.path.exists(odd) and "not UTF-8" in caplog.text
