"""The scale benchmark at 200 shards: every figure runs, counts what it should and times it consistently."""

import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline import job_start, shard_rows, writer
from pipeline.bench import scale, synthetic_output
from pipeline.bench.object_store import FakeObjectStore
from pipeline.records import Shard

SHARDS = 200


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    found = scale.run(str(root), SHARDS, actors=64, log=lambda line: None, isolated=False, rows=6, frames=20,
                      n_q=2, templates=3)
    FakeObjectStore.state = None
    return root, {(f.name, f.storage): f for f in found}


def test_the_synthetic_output_is_a_committed_output(figures):
    root, _ = figures
    out = synthetic_output.SyntheticOutput(str(root), SHARDS, 6, 2)
    records = writer.committed_shards(out.local_dir)
    assert sorted(records) == out.shard_ids() and writer.cleanup_uncommitted(out.local_dir) == []
    copy = records["shard-0000007"]  # a copy of template 1: its parts are the template's bytes
    assert copy.url == "s3://corpus/shard-0000007.tar" and copy.rows == 6 and copy.encode_batches == []
    part = os.path.join(out.local_dir, copy.files["tokens"]["path"])
    assert pq.read_table(part).column("key").to_pylist()[0] == "shard-0000001/utt-00000"
    rows = pq.read_table(os.path.join(out.local_dir, copy.files["rows"]["path"]))  # its own row index
    assert set(rows.column("part").to_pylist()) == {"tokens/part-shard-0000007.parquet"}
    assert shard_rows.encode_batches(rows)[0].keys[0] == "shard-0000001/utt-00000"
    with open(os.path.join(root, "bench-shape.json")) as f:
        assert json.load(f)["shards"] == SHARDS


def test_every_figure_runs_on_both_storages(figures):
    _, found = figures
    assert {n for n, _ in found} == set(scale.FIGURES)
    for storage in ("local", "fake"):
        assert found["job_start_records", storage].note.startswith(
            "200 committed, 0 to do; 0 record(s) from the manifest's snapshot, 200 from their files; snapshot written")
        assert found["job_start", storage].note.startswith(
            "200 committed, 0 to do; 200 record(s) from the manifest's snapshot, 0 from their files; snapshot current")
    for name in ("row_index", "row_index_cached", "row_index_parts"):
        assert found[name, "fake"].note.startswith(f"{SHARDS * 6:,} rows; the committed set (manifest) ")
    assert found["fragments", "fake"].note.startswith(f"{SHARDS:,} fragments")
    assert "end of run" in found["scheduler", "local"].note


def test_the_store_figures_count_requests_and_charge_them(figures):
    _, found = figures
    assert found["listing", "fake"].requests == {"list": 1}
    each = found["listing_each", "fake"]
    assert each.requests == {"head": SHARDS} and each.seconds == pytest.approx(SHARDS / 10 * 0.020)
    before = found["job_start_records", "fake"]  # no snapshot yet: every record a GET (10 at a time), once
    assert before.requests["get"] == SHARDS + 1 and before.seconds >= SHARDS / 10 * 0.020
    start = found["job_start", "fake"]  # the snapshot and the sidecar: two GETs, whatever the shard count
    assert start.requests["get"] == 2 and start.requests["head"] == 1 and start.seconds < before.seconds / 3
    parts = found["row_index_parts", "fake"]  # as before: parts opened one after another, a HEAD and GETs each
    assert parts.requests["head"] >= SHARDS and parts.seconds >= SHARDS * 2 * 0.020
    assert parts.bytes_read > 0 and "at 1,000,000 shards (x5000)" in parts.line(1_000_000)
    # the committed set: the manifest's snapshot (a HEAD and a GET, the records all in it), then every row-index
    # file (in parallel) and one gathered file put; the other HEAD: is there a provenance sidecar
    cold = found["row_index", "fake"]
    assert SHARDS <= cold.requests["get"] <= SHARDS + 3 and cold.requests["put"] == 1 and cold.requests["head"] == 2
    cached = found["row_index_cached", "fake"]  # the snapshot, then one gathered file for the 200 shards
    assert cached.requests["get"] <= 3 and "put" not in cached.requests and cached.requests["head"] == 2
    assert cached.seconds < parts.seconds / 10 and cached.bytes_read < parts.bytes_read / 5
    fragments = found["fragments", "fake"]  # per worker per epoch: no request at all
    assert fragments.requests == {}


@pytest.mark.parametrize("args, says", [
    (["--figures", "job_start,nope"], "unknown figure(s) or storage(s) ['nope']"),
    (["--storages", "s3"], "unknown figure(s) or storage(s) ['s3']"),
    (["--shards", "0"], "--shards 0: must be at least 1"),
])
def test_bench_scale_refuses_bad_arguments_in_one_line(tmp_path, capsys, args, says):
    from jobs import bench_scale

    with pytest.raises(SystemExit) as exited:
        bench_scale.main(["--root", str(tmp_path), *args])
    assert exited.value.code == 2 and says in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # refused before building anything


def test_the_job_start_at_10k_shards_reads_the_snapshot_and_lists_each_folder_once(tmp_path):
    """The scale bench at 10,000 shards (CI): the job start's requests, counted on the fake store.
    An output written before snapshots: every record read once (10,000 GETs, 10 at a time), the
    snapshot written; then a start reads the snapshot (a HEAD and a GET) and the sidecar, and lists
    the manifest, the part folders, the snapshots and the root once each, 1,000 keys a page."""
    shards = 10_000
    shape = {"rows": 2, "frames": 8, "n_q": 2, "templates": 2}
    out = synthetic_output.build(str(tmp_path), shards, **shape)
    found = {("job_start", "local"): scale.measure("job_start", out, False, isolated=False)}
    found |= {(f.name, f.storage): f for f in scale.run(
        str(tmp_path), shards, ("job_start_records", "job_start"), ("fake",), log=lambda line: None,
        isolated=False, **shape)}
    FakeObjectStore.state = None
    pages = shards // 1000
    before, start = found["job_start_records", "fake"], found["job_start", "fake"]
    # listings: the manifest, the snapshots' folder, the two part folders, the row-index files' folder, the root
    assert before.requests == {"list": pages + 1 + 3 * pages + 1, "get": shards + 1, "put": 2, "copy": 1,
                               "delete": 1}
    # the manifest's listing now holds the snapshots' folder too: one more key, one more page
    assert start.requests == {"list": 1 + (pages + 1) + 3 * pages + 1, "get": 2, "head": 1, "put": 1, "copy": 1,
                              "delete": 1}
    assert before.seconds >= shards / 10 * 0.020 and start.seconds < before.seconds / 20
    assert start.seconds * 1_000_000 / shards <= 5 * 60  # the target at 1M shards, by the same simulation
    assert f"0 record(s) from the manifest's snapshot, {shards:,} from their files" in before.note
    # a resume: 5 records committed again since the snapshot (a new object each): read, the rest not
    for i in range(5):
        path = os.path.join(out.local_dir, "_manifest", f"{synthetic_output.shard_id(i)}.json")
        with open(path, "rb") as f, open(path + ".new", "wb") as g:
            g.write(f.read())
        os.replace(path + ".new", path)
    FakeObjectStore.use(str(tmp_path))
    try:
        begun = job_start.start(out.url, [Shard(s, s, "webdataset") for s in out.shard_ids()], log=lambda line: None)
        resumed = FakeObjectStore.stats()
    finally:
        FakeObjectStore.state = None
    assert (begun.state.from_snapshot, begun.state.from_files, len(begun.todo)) == (shards - 5, 5, 0)
    assert resumed.requests["get"] == 1 + 1 + 5 and resumed.requests["head"] == 1 and begun.snapshot
    for storage in ("local", "fake"):
        assert f"{shards:,} record(s) from the manifest's snapshot, 0 from their files" in \
            found["job_start", storage].note
