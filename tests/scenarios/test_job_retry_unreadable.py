"""A re-run tries again the shards a storage fault left as shard_unreadable, and replaces their rejects."""

from __future__ import annotations

import shutil

import pyarrow.dataset as pads

from tests.fault_scenarios import demo_config, make_shards


def test_unreadable_shard_is_retried_by_the_next_run(tmp_path, local_ray):
    from pipeline.job import run_job

    spec = make_shards(tmp_path / "in", shards=2, per_shard=2)
    bad = tmp_path / "in" / "s-001.tar"
    shutil.copy(bad, tmp_path / "good.tar")
    bad.write_bytes(bad.read_bytes()[:1000])  # cut short: the shard cannot be read to its end
    out, lines = tmp_path / "out", []
    first = run_job(demo_config(), spec, str(out), log=lines.append)
    assert first.rows == 2 and first.rejects_by_reason == {"shard_unreadable": 1}

    shutil.copy(tmp_path / "good.tar", bad)  # the storage answers again
    lines.clear()
    second = run_job(demo_config(), spec, str(out), log=lines.append)
    assert any("1 shard(s) recorded as shard_unreadable are tried again" in line for line in lines)
    assert second.rows == 4 and second.rejects == 0
    assert pads.dataset(str(out / "rejects")).count_rows() == 0  # its reject record was replaced
    assert pads.dataset(str(out / "tokens")).count_rows() == 4

    third = run_job(demo_config("retry_unreadable=false"), spec, str(out), log=lines.append)
    assert third.rows == 4 and any("2 already committed, 0 to do" in line for line in lines)
