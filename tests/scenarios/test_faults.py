"""Faults on a real local Ray: actors and decoder processes killed at random points, a file that
crashes or hangs the decoder every time, exceptions in our own code. Each run is compared with the
uninterrupted reference (tests/fault_scenarios.py); the table prints at the end of the session.

The decoder fault hook (`AUDIOTOK_TEST_DECODER_FAULTS`, see pipeline/decode_pool.py) is set for
this module's Ray; it only acts on the keys crash-segv, crash-once, crash-hang and crash-raise.
"""

import os
import random
from pathlib import Path

import pytest

from pipeline import writer
from pipeline.sources import list_shards
from tests.fault_scenarios import (
    DECODER_FAULTS,
    FAULTS_ENV,
    SEED,
    Killer,
    compare,
    demo_config,
    make_shards,
    moved_to_rejects,
    read_outcome,
    reference,
)

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.faults


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    old = os.environ.get(FAULTS_ENV)
    os.environ[FAULTS_ENV] = DECODER_FAULTS  # Ray's workers inherit it from here
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop(FAULTS_ENV, None)
    else:
        os.environ[FAULTS_ENV] = old


def run(cfg, spec, out, lines):
    from pipeline.job import run_job

    return run_job(cfg, spec, str(out), log=lines.append)


def records(out) -> dict:
    return writer.committed_shards(str(out))


def assert_only_committed_parts_visible(out: Path) -> None:
    """Readers globbing tokens/*.parquet or rejects/*.parquet see exactly the committed shards."""
    for kind in writer.PARTS:
        visible = sorted(str(p) for p in (out / kind).glob("*.parquet")) if (out / kind).exists() else []
        assert visible == sorted(writer.committed_parts(str(out), kind)), kind


def test_actor_killed_mid_shard_at_random_points(fault_inputs, tmp_path):
    spec, want = fault_inputs
    out, lines = tmp_path / "out", []
    killer = Killer(os.getpid(), "ray::TokenizerActor", 3, out, random.Random(SEED + 1))
    killer.start()
    try:
        summary = run(demo_config(), spec, out, lines)
    finally:
        kills = killer.finish()
    died = sum("actor died" in line for line in lines)
    row = compare("actor SIGKILLed mid-shard", 1, read_outcome(out), want, f"{kills} kills, {died} shards redone")
    assert row.ok, row.problems
    assert kills >= 2 and died >= 1, (kills, lines)
    assert summary["shards_committed"] == 8 and max(r["attempt"] for r in records(out).values()) >= 2


def test_decoder_process_killed_at_random_points(fault_inputs, tmp_path):
    spec, want = fault_inputs
    out, lines = tmp_path / "out", []
    cfg = demo_config("audio.decoder_crash_retries=3")  # a file may meet several of the kills
    killer = Killer(os.getpid(), "pipeline.decode_pool", 3, None, random.Random(SEED + 2),
                    first=(0.2, 2.0), gap=(0.3, 1.5))
    killer.start()
    try:
        run(cfg, spec, out, lines)
    finally:
        kills = killer.finish()
    restarts = sum(r.get("decoder_restarts", 0) for r in records(out).values())
    row = compare("decoder process SIGKILLed", 1, read_outcome(out), want, f"{kills} kills, {restarts} files retried")
    assert row.ok, row.problems
    assert kills >= 2 and restarts >= 1
    assert not any("actor died" in line for line in lines), "a decoder crash must not cost the actor"


def test_file_that_crashes_or_hangs_the_decoder_every_time(tmp_path):
    extra = {"s-001": ["crash-segv", "crash-once", "crash-hang"]}
    spec = make_shards(tmp_path / "in", shards=3, per_shard=3, extra=extra)
    cfg = demo_config("audio.decode_timeout_s=5")
    want = moved_to_rejects(reference(spec, cfg, tmp_path / "ref"),
                            {"crash-segv": "decoder_crash", "crash-hang": "decoder_crash"})
    out, lines = tmp_path / "out", []
    run(cfg, spec, out, lines)
    got = read_outcome(out)
    row = compare("file crashes / hangs the decoder", 1, got, want, "segv every try, segv once, hang")
    assert row.ok, row.problems
    crashy = next(r for r in records(out).values() if r.url.endswith("s-001.tar"))
    # segv: first try + 1 retry; once: 1; hang: 1 (not retried) -> 4 decoder processes replaced
    assert crashy.decoder_restarts == 4 and crashy.rejects_by_reason == {"decoder_crash": 2}
    assert crashy.rows == 4  # the rest of the shard is written, crash-once included
    assert not any("actor died" in line for line in lines)
    import pyarrow.dataset as pads

    details = {r["key"]: r["detail"] for r in pads.dataset(out / "rejects").to_table().to_pylist()}
    assert "exit code -11" in details["crash-segv"] and "try 2" in details["crash-segv"]
    assert "decode_timeout_s 5" in details["crash-hang"]


def test_exception_in_our_code_fails_naming_the_shard(tmp_path):
    from pipeline.errors import JobFailed

    spec = make_shards(tmp_path / "in", shards=3, per_shard=2, extra={"s-001": ["crash-raise"]})
    out, lines = tmp_path / "out", []
    with pytest.raises(JobFailed) as failure:
        run(demo_config(), spec, out, lines)
    message = str(failure.value)
    assert "s-001.tar" in message and "crash-raise" in message and "planted fault" in message
    assert not any(r["url"].endswith("s-001.tar") for r in records(out).values())
    assert_only_committed_parts_visible(out)
    assert read_outcome(out).duplicates == 0


def test_commit_that_fails_midway_leaves_nothing_visible_then_rerun(fault_inputs, tmp_path):
    """The manifest record (the last rename of a commit) cannot be written for one shard: its
    tokens and rejects parts were already renamed into place and must disappear again."""
    from pipeline.errors import JobFailed

    spec, want = fault_inputs
    cfg = demo_config()
    victim = random.Random(SEED + 3).choice(list_shards(spec, cfg.source)[1:])
    out, lines = tmp_path / "out", []
    obstacle = out / "_manifest" / f"{victim.shard_id}.json"
    obstacle.mkdir(parents=True)
    with pytest.raises(JobFailed, match=victim.url):
        run(cfg, spec, out, lines)
    assert victim.shard_id not in records(out)
    assert not list(out.glob(f"*/part-{victim.shard_id}.parquet"))
    assert_only_committed_parts_visible(out)
    assert not [p for p in out.rglob(".tmp-*")]
    obstacle.rmdir()
    run(cfg, spec, out, lines)
    row = compare("exception in our code at commit, then re-run", 2, read_outcome(out), want,
                  f"failed on {victim.shard_id}")
    assert row.ok, row.problems


def test_actor_deaths_beyond_the_limit_fail_the_job(fault_inputs, tmp_path):
    """max_actor_restarts=0: the first actor death mid-run ends the job, loudly, with nothing half-written."""
    from pipeline.errors import JobFailed

    spec, _ = fault_inputs
    out, lines = tmp_path / "out", []
    killer = Killer(os.getpid(), "ray::TokenizerActor", 1, out, random.Random(SEED + 6), first=(0.0, 0.5),
                    first_after_commit=True)
    killer.start()
    try:
        with pytest.raises(JobFailed, match=r"died 1 times in a row \(max_actor_restarts 0\), last on shard .*s-0"):
            run(demo_config("max_actor_restarts=0"), spec, out, lines)
    finally:
        assert killer.finish() == 1
    assert 1 <= len(records(out)) < 8
    assert_only_committed_parts_visible(out)
