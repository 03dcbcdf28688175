import json
import os
from dataclasses import replace

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipeline import writer
from pipeline.config import OutputConfig
from pipeline.records import Rejection, ShardRecord
from pipeline.schema import REQUIRED_PROVENANCE, TokenRow, file_metadata, rejects_table, tokens_table

PASS = ["text", "speaker"]
CFG = OutputConfig(row_group_rows=4)


def shard(shard_id="sh-0", n=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = [TokenRow(f"{shard_id}/k{i}", f"/data/{shard_id}.tar", rng.integers(0, 1024, (8, 5 + i)).astype(np.int16),
                     (5 + i) * 320 - 7, 7, None, 0.0, (5 + i) / 75, {"text": f"t{i}", "speaker": i})
            for i in range(n)]
    rejects = [Rejection(f"{shard_id}/bad", f"/data/{shard_id}.tar", "undecodable", "not audio")]
    record = ShardRecord(shard_id, f"/data/{shard_id}.tar", rows=n, rejects=1,
                         rejects_by_reason={"undecodable": 1}, audio_seconds=1.5, attempt=1)
    return rows, tokens_table(rows, PASS), rejects_table(rejects), record


METADATA = file_metadata({k: k for k in REQUIRED_PROVENANCE})


def commit(out, shard_id="sh-0", **kw):
    rows, tokens, rejects, record = shard(shard_id, **kw)
    return rows, writer.commit_shard(str(out), shard_id, tokens, rejects, record, METADATA, CFG)


def visible_files(out):
    return sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)


def test_commit_layout_and_record(tmp_path):
    _, record = commit(tmp_path)
    assert visible_files(tmp_path) == ["_manifest/sh-0.json", "rejects/part-sh-0.parquet", "rows/sh-0.parquet",
                                       "tokens/part-sh-0.parquet"]
    on_disk = json.loads((tmp_path / "_manifest/sh-0.json").read_text())
    assert on_disk == record.to_json() and record == writer.committed_shards(str(tmp_path))["sh-0"]
    assert record.files["tokens"] == {"path": "tokens/part-sh-0.parquet",
                                      "bytes": os.path.getsize(tmp_path / "tokens/part-sh-0.parquet")}
    assert record.rows == 10 and record.rejects_by_reason == {"undecodable": 1} and record.finished_at > 0
    rows = tmp_path / "rows/sh-0.parquet"
    assert record.files["rows"] == {"path": "rows/sh-0.parquet", "bytes": os.path.getsize(rows)}
    assert writer.committed_parts(str(tmp_path)) == [str(tmp_path / "tokens/part-sh-0.parquet")]


def test_parquet_file_properties(tmp_path):
    _, tokens, rejects, _ = shard()
    commit(tmp_path)
    pf = pq.ParquetFile(tmp_path / "tokens/part-sh-0.parquet")
    assert pf.read().equals(tokens)
    assert pf.schema_arrow.metadata[b"audiotok.model_name"] == b'"model_name"'
    assert b"audiotok.format_version" in pq.read_schema(tmp_path / "rejects/part-sh-0.parquet").metadata
    assert [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)] == [4, 4, 2]
    codes = next(pf.metadata.row_group(0).column(i) for i in range(pf.metadata.num_columns)
                 if pf.metadata.row_group(0).column(i).path_in_schema.startswith("codes"))
    assert codes.compression == "ZSTD" and "RLE_DICTIONARY" in codes.encodings
    assert pq.read_table(tmp_path / "rejects/part-sh-0.parquet").equals(rejects)


def test_readers_see_exactly_the_rows_and_ignore_temps(tmp_path):
    rows, _ = commit(tmp_path)
    commit(tmp_path, "sh-1", n=3, seed=1)
    for kind in ("tokens", "rejects", "_manifest"):
        (tmp_path / kind / ".tmp-sh-2-0123").write_bytes(b"garbage, not parquet")
    assert pads.dataset(tmp_path / "tokens").count_rows() == 13
    import pandas as pd

    df = pd.read_parquet(tmp_path / "tokens")
    assert len(df) == 13 and df.set_index("key").loc["sh-0/k3", "codes"][1].tolist() == rows[3].codes[1].tolist()
    assert set(writer.committed_shards(str(tmp_path))) == {"sh-0", "sh-1"}

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    for spec in ({"data_files": str(tmp_path / "tokens/*.parquet")}, {"data_dir": str(tmp_path / "tokens")}):
        ds = datasets.load_dataset("parquet", split="train", cache_dir=str(tmp_path / "hf"), **spec)
        assert ds.num_rows == 13
        got = {r["key"]: r["codes"] for r in ds}
        assert all(got[r.key] == r.codes.tolist() for r in rows)
        assert ds.features["codes"].feature.feature.dtype == "int16"


def crash_after(monkeypatch, calls, killed=True):
    """The commit's rename number `calls` fails; killed: as if the process died there (no cleanup runs)."""
    real = os.replace
    done = []
    if killed:
        monkeypatch.setattr(writer, "_remove_uncommitted_parts", lambda fs, finals: None)

    def replace(src, dst):
        if len(done) >= calls:
            raise OSError("simulated crash")
        done.append(dst)
        real(src, dst)

    monkeypatch.setattr(writer.os, "replace", replace)


def test_crash_between_renames_then_cleanup_and_recommit(tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    commit(clean)
    out = tmp_path / "out"
    crash_after(monkeypatch, 1)
    with pytest.raises(OSError, match="simulated crash"):
        commit(out)
    monkeypatch.undo()
    assert visible_files(out) == ["tokens/part-sh-0.parquet"]
    assert writer.committed_shards(str(out)) == {} and writer.committed_parts(str(out)) == []
    assert writer.cleanup_uncommitted(str(out)) == [str(out / "tokens/part-sh-0.parquet")]
    assert visible_files(out) == [] and pads.dataset(out / "tokens").count_rows() == 0
    commit(out)
    assert visible_files(out) == visible_files(clean)
    for part in ("tokens/part-sh-0.parquet", "rejects/part-sh-0.parquet"):
        assert pq.read_table(out / part).equals(pq.read_table(clean / part))
    assert writer.cleanup_uncommitted(str(out)) == []


def test_failed_commit_removes_the_parts_it_moved(tmp_path, monkeypatch):
    crash_after(monkeypatch, 1, killed=False)  # an exception, not a death: the commit cleans up itself
    with pytest.raises(OSError, match="simulated crash"):
        commit(tmp_path)
    assert visible_files(tmp_path) == []


def test_cleanup_removes_stale_temps_orphans_and_broken_records(tmp_path):
    commit(tmp_path)
    commit(tmp_path, "sh-1", n=2)
    stray = [tmp_path / "tokens/.tmp-sh-2-ab", tmp_path / "_manifest/.tmp-sh-2-ab", tmp_path / ".tmp-provenance-x",
             tmp_path / "rows/.tmp-sh-2-ab"]
    for p in stray:
        p.write_bytes(b"x")
    (tmp_path / "tokens/part-sh-9.parquet").write_bytes(b"orphan")
    (tmp_path / "rows/sh-9.parquet").write_bytes(b"orphan")
    (tmp_path / "tokens/part-sh-1.parquet").unlink()
    removed = writer.cleanup_uncommitted(str(tmp_path))
    assert sorted(removed) == sorted(map(str, stray + [tmp_path / "_manifest/sh-1.json",
                                                       tmp_path / "rejects/part-sh-1.parquet",
                                                       tmp_path / "tokens/part-sh-9.parquet",
                                                       tmp_path / "rows/sh-1.parquet", tmp_path / "rows/sh-9.parquet"]))
    assert visible_files(tmp_path) == ["_manifest/sh-0.json", "rejects/part-sh-0.parquet", "rows/sh-0.parquet",
                                       "tokens/part-sh-0.parquet"]


def test_recommit_replaces_without_duplicates(tmp_path):
    commit(tmp_path)
    commit(tmp_path)
    assert pads.dataset(tmp_path / "tokens").count_rows() == 10 and len(visible_files(tmp_path)) == 4


def test_commit_refuses_inconsistent_inputs(tmp_path):
    _, tokens, rejects, record = shard()
    bad = [("sh/0", replace(record, shard_id="sh/0")), ("sh-0", replace(record, rows=3)),
           ("sh-0", replace(record, shard_id="sh-1")), ("tmp-x", replace(record, shard_id="tmp-x"))]
    for shard_id, rec in bad:
        with pytest.raises(ValueError):
            writer.commit_shard(str(tmp_path), shard_id, tokens, rejects, rec, METADATA, CFG)
    with pytest.raises(ValueError, match="rejects table"):
        writer.commit_shard(str(tmp_path), "sh-0", tokens, tokens, replace(record, rejects=10), METADATA, CFG)
    assert visible_files(tmp_path) == []


def test_fsspec_memory_filesystem():
    import fsspec

    out = "memory://audiotok-test/out"
    fs = fsspec.filesystem("memory")
    _, tokens, _, _ = shard()
    commit(out)
    fs.pipe_file("/audiotok-test/out/tokens/.tmp-sh-1-x", b"x")
    fs.pipe_file("/audiotok-test/out/tokens/part-sh-1.parquet", b"x")
    assert list(writer.committed_shards(out)) == ["sh-0"]
    (part,) = writer.committed_parts(out)
    assert part.startswith("memory://") and part.endswith("audiotok-test/out/tokens/part-sh-0.parquet")
    assert len(writer.cleanup_uncommitted(out)) == 2
    assert sorted(fs.find("/audiotok-test/out")) == [f"/audiotok-test/out/{p}" for p in (
        "_manifest/sh-0.json", "rejects/part-sh-0.parquet", "rows/sh-0.parquet", "tokens/part-sh-0.parquet")]
    assert pq.read_table("audiotok-test/out/tokens/part-sh-0.parquet", filesystem=fs).equals(tokens)
    fs.rm("/audiotok-test", recursive=True)


def test_write_provenance(tmp_path):
    prov = {k: k for k in REQUIRED_PROVENANCE} | {"job_config": {"num_actors": 1}}
    writer.write_provenance(str(tmp_path), prov)
    writer.write_provenance(str(tmp_path), prov | {"model_name": "other"})
    commit(tmp_path)
    writer.write_provenance(str(tmp_path), prov | {"model_name": "other", "job_config": {"num_actors": 4}})
    with pytest.raises(ValueError, match="model_name"):
        writer.write_provenance(str(tmp_path), prov)
    saved = json.loads((tmp_path / "_provenance.json").read_text())
    assert saved["model_name"] == "other" and saved["format_version"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failure_before_any_rename_leaves_nothing(tmp_path, monkeypatch):
    crash_after(monkeypatch, 0)
    with pytest.raises(OSError):
        commit(tmp_path)
    assert visible_files(tmp_path) == []


def test_record_may_hold_numpy_scalars(tmp_path):
    _, tokens, rejects, record = shard()
    record = replace(record, audio_seconds=np.float64(1.5), rows=np.int64(10))
    writer.commit_shard(str(tmp_path), "sh-0", tokens, rejects, record, METADATA, CFG)
    assert writer.committed_shards(str(tmp_path))["sh-0"].audio_seconds == 1.5
