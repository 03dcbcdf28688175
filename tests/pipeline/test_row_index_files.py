"""The row-index files written at commit time (issue 30, items 2 and 3): what they hold, that the
training index and verify's batches built from them equal those of an output written before them
(real speech tokenized by the demo job), gathered files read instead of a file per shard, and an index
held as ~12 bytes a row of numpy arrays."""

import hashlib
import json
import pickle
import shutil
import zlib
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import rows_gathered, shard_rows, writer
from pipeline.bench.object_store import FakeObjectStore
from pipeline.records import EncodeBatch
from pipeline.training.index import RowIndex, RowReader
from pipeline.verify import run as verify_run
from tests.pipeline.old_output import to_pre_row_index
from tests.pipeline.test_writer import CFG, METADATA, shard, visible_files
from tests.pipeline.training.token_corpus import write_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def index_rows(index: RowIndex) -> list[tuple]:
    """(part file name, row in it, frames, key CRC) per indexed row."""
    names = [f.rsplit("/", 1)[-1] for f in index.files]
    return [(names[f], r, fr, c) for f, r, fr, c in zip(index.file_of.tolist(), index.row_in_file.tolist(),
                                                        index.frames.tolist(), index.key_crc.tolist())]


def index_as_before(out) -> tuple[list[tuple], str]:
    """The index as `RowIndex.build` made it before the row-index files: every committed part opened in
    turn, its `key` and `num_frames` read; the fingerprint from the keys and frames."""
    rows, keys, frames = [], [], []
    for part in writer.committed_parts(str(out)):
        table = pq.read_table(part, columns=["key", "num_frames"])
        for r, (key, fr) in enumerate(zip(table.column("key").to_pylist(), table.column("num_frames").to_pylist())):
            rows.append((part.rsplit("/", 1)[-1], r, fr, zlib.crc32(key.encode())))
            keys.append(key)
        frames.append(np.asarray(table.column("num_frames").to_numpy(), dtype=np.int64))
    digest = hashlib.sha256("\n".join(keys).encode())
    for f in frames:
        digest.update(f.tobytes())
    return rows, digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """3 webdataset shards of 3 real speech clips, tokenized by the demo job's shard worker
    (configs/test.yaml: random:24khz); the encode batches it recorded, captured at its commits."""
    from tests.fault_scenarios import demo_config, make_shards, reference

    root = tmp_path_factory.mktemp("job")
    batches: dict[str, list[EncodeBatch]] = {}
    commit = writer.commit_shard

    def capture(out_dir, shard_id, tokens, rejects, record, *args, **kwargs):
        batches[shard_id] = list(record.encode_batches)
        return commit(out_dir, shard_id, tokens, rejects, record, *args, **kwargs)

    writer.commit_shard = capture
    try:
        spec = make_shards(root / "in", shards=3, per_shard=3)
        reference(spec, demo_config("buckets.max_batch_items=2"), root / "out")
    finally:
        writer.commit_shard = commit
    return root / "out", batches


def test_the_commit_writes_the_row_index_and_a_record_of_counts(job):
    out, batches = job
    for shard_id, record in writer.committed_shards(str(out)).items():
        assert record.encode_batches == [] and record.batches == len(batches[shard_id]) > 1
        table = pq.read_table(out / record.files["rows"]["path"])
        part = pq.read_table(out / record.files["tokens"]["path"])
        assert table.column("key").to_pylist() == part.column("key").to_pylist()
        assert table.column("frames_codes").to_pylist() == part.column("num_frames").to_pylist()
        assert set(table.column("part").to_pylist()) == {record.files["tokens"]["path"]}
        assert table.column("row").to_pylist() == list(range(record.rows))
        assert shard_rows.encode_batches(table) == batches[shard_id]  # keys in batch order, max_batch
        assert shard_rows.streams(table) == ["codes"]
        assert "encode_batches" not in json.dumps({k: v for k, v in record.to_json().items() if v})


def test_index_and_batches_equal_those_of_an_output_written_before(job, tmp_path):
    out, batches = job
    old = tmp_path / "old"
    shutil.copytree(out, old)
    to_pre_row_index(old)
    assert not (old / "rows").exists() and all(
        r.encode_batches and "rows" not in r.files for r in writer.committed_shards(str(old)).values())

    expected, fingerprint = index_as_before(out)
    assert len(expected) == 9
    new_index, old_index = RowIndex.build(str(out)), RowIndex.build(str(old))
    for index in (new_index, old_index):
        assert index_rows(index) == expected and index.fingerprint == fingerprint
    assert [s.tolist() for s in map(new_index.row_group_starts, range(3))] == \
        [s.tolist() for s in map(old_index.row_group_starts, range(3))]

    keys = set(pq.read_table(out / "tokens", columns=["key"]).column("key").to_pylist())
    recorded = {k: b for bs in batches.values() for b in bs for k in b.keys}
    assert verify_run.job_batches(str(out), keys) == verify_run.job_batches(str(old), keys) == recorded
    one = sorted(keys)[:1]
    assert verify_run.job_batches(str(out), set(one)) == {one[0]: recorded[one[0]]}

    reader = RowReader(new_index)
    for row in range(len(new_index)):
        item = reader.read(row, 0, 2)
        assert zlib.crc32(item["key"].encode()) == expected[row][3]
        assert item["codes"].shape[1] == min(2, expected[row][2])


def test_batch_keys_that_are_not_rows_fail_the_commit_and_leave_nothing(tmp_path):
    _, tokens, rejects, record = shard()
    bad = replace(record, encode_batches=[EncodeBatch(["sh-0/k0", "sh-0/nope"], 4)])
    with pytest.raises(ValueError, match="not rows of the shard"):
        writer.commit_shard(str(tmp_path), "sh-0", tokens, rejects, bad, METADATA, CFG)
    assert visible_files(tmp_path) == []


def test_a_failed_commit_removes_the_row_index_too(tmp_path, monkeypatch):
    from pipeline import fault_injection

    monkeypatch.setenv(fault_injection.ENV, str(tmp_path / "faults"))
    fault_injection.plant(str(tmp_path / "faults"), "raise@between_renames:sh-0")
    _, tokens, rejects, record = shard()
    with pytest.raises(fault_injection.PlantedError):
        writer.commit_shard(str(tmp_path / "out"), "sh-0", tokens, rejects, record, METADATA, CFG)
    assert visible_files(tmp_path / "out") == []


def test_gathered_files_are_read_instead_of_a_file_per_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_gathered, "GROUP_SHARDS", 2)
    out = tmp_path / "bucket" / "out"
    write_tokens(out, [4, 3, 0, 5, 2], seed=1, max_frames=40)
    before, _ = index_as_before(out)
    url = "fakes3://bucket/out"
    FakeObjectStore.use(str(tmp_path))
    try:
        first = RowIndex.build(url)  # reads 5 row-index files, writes 3 gathered ones
        gathered = sorted(p.name for p in (out / rows_gathered.FOLDER).iterdir())
        assert len(gathered) == 3
        start = FakeObjectStore.stats()
        again = RowIndex.build(url)
        used = FakeObjectStore.stats().minus(start)
        assert used.requests["get"] == 1 + 5 + 3 and "put" not in used.requests  # provenance, records, gathered
        assert index_rows(again) == index_rows(first) == before and again.fingerprint == first.fingerprint

        # s3 committed again (same rows, a new commit): only its group gets a new gathered file
        write_tokens(tmp_path / "redo", [4, 3, 0, 5], seed=1, max_frames=40)
        shutil.copy(tmp_path / "redo/tokens/part-s3.parquet", out / "tokens/part-s3.parquet")
        shutil.copy(tmp_path / "redo/rows/s3.parquet", out / "rows/s3.parquet")
        redo = json.loads((tmp_path / "redo/_manifest/s3.json").read_text())
        (out / "_manifest/s3.json").write_text(json.dumps(redo))
        third = RowIndex.build(url)
        assert len(list((out / rows_gathered.FOLDER).iterdir())) == 4
        assert index_rows(third) == index_as_before(out)[0]
    finally:
        FakeObjectStore.state = None


def test_the_index_is_numpy_at_about_twelve_bytes_a_row(tmp_path):
    write_tokens(tmp_path, [300] * 4, seed=2, max_frames=20, row_group_rows=100)
    index = RowIndex.build(str(tmp_path), columns=("text",))
    assert len(index) == 1200 and not any(isinstance(v, tuple) and len(v) == len(index) for v in vars(index).values())
    assert index.positions.dtype == np.uint32 and index.frames.dtype == np.int32 and index.key_crc.dtype == np.uint32
    per_row = (index.positions.nbytes + index.frames.nbytes + index.key_crc.nbytes) / len(index)
    assert per_row == 12 and index.nbytes / len(index) < 13
    assert len(pickle.dumps(index)) < 16 * len(index) + 4096
    held_out = RowIndex.build(str(tmp_path), keep_key=lambda k: k.endswith("7"))
    assert len(held_out) == 120 and all(RowReader(held_out).read(r, 0, 1)["key"].endswith("7") for r in range(120))
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in the tokens parts"):
        RowIndex.build(str(tmp_path), columns=("nope",))


def test_a_part_rewritten_since_the_index_was_built_is_caught(tmp_path):
    write_tokens(tmp_path, [3, 3], seed=4, max_frames=10)
    index = RowIndex.build(str(tmp_path))
    part = tmp_path / "tokens/part-s1.parquet"
    table = pq.read_table(part)
    pq.write_table(table.take([1, 0, 2]).replace_schema_metadata(table.schema.metadata), part)
    with pytest.raises(RuntimeError, match="changed since the index was built"):
        RowReader(index).read(3, 0, 1)


def test_broken_or_missing_row_index_files_fall_back_to_the_parts(tmp_path, caplog):
    write_tokens(tmp_path, [4, 3, 5], seed=6, max_frames=30)
    expected, fingerprint = index_as_before(tmp_path)
    (tmp_path / "rows/s0.parquet").write_bytes(b"not parquet")  # overwritten
    (tmp_path / "rows/s2.parquet").unlink()  # lost
    index = RowIndex.build(str(tmp_path))
    assert index_rows(index) == expected and index.fingerprint == fingerprint
    assert "s0's row-index file is not a readable Parquet file" in caplog.text
    assert "shard s2: its row-index file cannot be read" in caplog.text
    (gathered,) = (tmp_path / rows_gathered.FOLDER).iterdir()
    gathered.write_bytes(b"truncated")  # a broken gathered file is gathered again
    assert index_rows(RowIndex.build(str(tmp_path))) == expected
    assert pq.read_table(gathered).num_rows == 12
