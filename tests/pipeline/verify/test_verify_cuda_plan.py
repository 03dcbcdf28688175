"""Verify on a job run with the CUDA batch plan (on the CPU): each row is re-encoded in the batch the job
encoded it in, so good data passes at 0.999 while the same rows re-encoded alone would not, and
planted corruption still fails."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from pipeline import writer
from pipeline.verify import VerifyOptions, run, run_verify
from tests.conftest import run_demo_job

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def job(local_ray, tmp_path_factory):
    """The demo shards with random:24khz (configs/test.yaml), 2 shards of 5 + 2 rows, CUDA plan."""
    return run_demo_job(tmp_path_factory.mktemp("job") / "out", ["batch_plan=cuda"])


def verify(job, report, count=7):
    return run_verify(str(job), str(report), VerifyOptions(count=count, bandwidths=[6.0], max_media_items=0),
                      log=lambda m: None)


def test_the_row_index_records_each_batch(job):
    records = writer.committed_shards(str(job)).values()
    assert {r.batch_plan for r in records} == {"cuda"} and all(r.encode_batches == [] for r in records)
    all_keys = set(pq.read_table(job / "tokens", columns=["key"]).column("key").to_pylist())
    batches = run.job_batches(str(job), all_keys)
    assert sorted(batches) == sorted(all_keys) and len(all_keys) == 7
    assert all(k in b.keys for k, b in batches.items()) and any(len(b.keys) > 1 for b in batches.values())
    provenance = json.loads((job / "_provenance.json").read_text())
    assert provenance["batch_plan"] == "cuda"


def test_rows_pass_when_re_encoded_in_their_batch(job, tmp_path):
    summary = verify(job, tmp_path / "r")
    assert summary.passed and summary.rows_sampled == 7, summary.failures
    items = pq.read_table(tmp_path / "r" / "items.parquet").to_pylist()
    assert all(r["code_agreement_all"] == 1.0 for r in items)


def test_an_output_written_before_the_row_index_verifies_the_same(job, tmp_path):
    """Its manifest records carry the batches (every key), and there are no row-index files."""
    from tests.pipeline.old_output import to_pre_row_index

    old = tmp_path / "old"
    shutil.copytree(job, old)
    to_pre_row_index(old)
    keys = set(pq.read_table(job / "tokens", columns=["key"]).column("key").to_pylist())
    assert run.job_batches(str(old), keys) == run.job_batches(str(job), keys) and not (old / "rows").exists()
    summary = verify(old, tmp_path / "r")
    assert summary.passed and summary.rows_sampled == 7, summary.failures


def test_re_encoded_alone_the_same_rows_disagree(job, tmp_path, monkeypatch):
    """What verify did before: each row alone. The batched LSTM made some codes depend on the batch."""
    monkeypatch.setattr(run, "job_batches", lambda tokens, keys, storage_options=None: {})
    summary = verify(job, tmp_path / "r")
    items = pq.read_table(tmp_path / "r" / "items.parquet").to_pylist()
    assert min(r["code_agreement_all"] for r in items) < 0.999
    assert not summary.passed and "code agreement < 0.999" in summary.failures[0]


def test_planted_corruption_still_fails(job, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(job, bad)
    part = writer.committed_parts(str(bad))[0]
    table = pq.read_table(part)
    rows = table.to_pylist()
    rows[0]["codes"][7][5:25] = [(c + 1) % 1024 for c in rows[0]["codes"][7][5:25]]  # a valid, wrong code
    pq.write_table(table.from_pylist(rows, schema=table.schema), part)
    summary = verify(bad, tmp_path / "r")
    assert not summary.passed and rows[0]["key"] in summary.failures[0]
