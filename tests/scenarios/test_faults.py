"""Faults on a real local Ray: actors and decoder processes killed at named stages, a shard that kills
its actor every time, a file that crashes or hangs the decoder every time, exceptions in our own
code. Each run is compared with the uninterrupted reference (tests/fault_scenarios.py); the table
prints at the end of the session.

Two test switches are set for this module's Ray (its workers inherit them when it starts): the
decoder fault hook (`AUDIOTOK_TEST_DECODER_FAULTS`, pipeline/decode_pool.py), which only acts on
the keys crash-segv, crash-once, crash-hang and crash-raise, and the named-stage faults
(`AUDIOTOK_TEST_FAULTS`, pipeline/fault_injection.py), whose rules each test plants in the directory it names.
"""

import os
from pathlib import Path

import pytest

from pipeline import fault_injection, writer
from tests.fault_scenarios import (
    DECODER_FAULTS,
    FAULTS_ENV,
    compare,
    demo_config,
    firings,
    make_shards,
    moved_to_rejects,
    read_outcome,
    reference,
    shard_id,
)

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("planted")


@pytest.fixture(scope="module", autouse=True)
def local_ray(fault_dir):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    old = {name: os.environ.get(name) for name in (FAULTS_ENV, fault_injection.ENV)}
    os.environ[FAULTS_ENV] = DECODER_FAULTS  # Ray's workers inherit them from here
    os.environ[fault_injection.ENV] = str(fault_dir)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def plant(fault_dir):
    """plant(*rules): the rules of this test (none unless it plants some); returns the directory."""
    fault_injection.plant(fault_dir, [])
    yield lambda *rules: fault_injection.plant(fault_dir, list(rules))
    fault_injection.plant(fault_dir, [])


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


def test_actor_killed_at_each_named_stage(fault_inputs, tmp_path, plant):
    """SIGKILL after decoding shard 1, while encoding shard 3 (after its first batch), and between the
    renames of shard 5's commit (its parts in place, its record not): each once, each redone."""
    spec, want = fault_inputs
    stages = (("after_decode", 1), ("during_encode", 3), ("between_renames", 5))
    victims = {stage: shard_id(spec, i) for stage, i in stages}
    root = plant(*(f"kill@{stage}:{victim}" for stage, victim in victims.items()))
    out, lines = tmp_path / "out", []
    summary = run(demo_config(), spec, out, lines)
    died = sum("actor died" in line for line in lines)
    row = compare("actor SIGKILLed at each named stage", 1, read_outcome(out), want,
                  f"{died} shards redone: " + ", ".join(f"{stage} s-{i:03d}" for stage, i in stages))
    assert row.ok, row.problems
    assert firings(root) == {(f"kill@{stage}:{victim}#1", victim): 1 for stage, victim in victims.items()}
    assert died == 3, lines
    assert summary.shards_committed == 8
    # each victim is redone once; so is a shard in flight beside it (committing while the victim
    # encoded, or encoding while it committed), named in the same line: it was lost with the actor
    redone = {s: r.attempt for s, r in records(out).items() if r.attempt > 1}
    beside = set(redone) - set(victims.values())
    assert set(victims.values()) <= set(redone) and set(redone.values()) == {2}, redone
    assert all(any(s in line and "(in flight)" in line for line in lines) for s in beside), (beside, lines)
    assert_only_committed_parts_visible(out)


def test_decoder_process_killed_at_named_keys(fault_inputs, tmp_path, plant):
    """Decoder processes SIGKILLed while decoding given files (one of them twice): each kill costs one
    process and one retry of that file, never the actor or the rest of the shard."""
    spec, want = fault_inputs
    root = plant("kill@decode:k1-2", "kill@decode:k4-0#2", "kill@decode:k6-3")
    out, lines = tmp_path / "out", []
    cfg = demo_config("audio.decoder_crash_retries=3")  # k4-0 meets two kills, then decodes
    run(cfg, spec, out, lines)
    restarts = {r.url.rsplit("/", 1)[-1]: r.decoder_restarts for r in records(out).values() if r.decoder_restarts}
    row = compare("decoder process SIGKILLed at named files", 1, read_outcome(out), want,
                  f"{sum(restarts.values())} files retried")
    assert row.ok, row.problems
    assert firings(root) == {("kill@decode:k1-2#1", "k1-2"): 1, ("kill@decode:k4-0#2", "k4-0"): 2,
                             ("kill@decode:k6-3#1", "k6-3"): 1}
    assert restarts == {"s-001.tar": 1, "s-004.tar": 2, "s-006.tar": 1}
    assert not any("actor died" in line for line in lines), "a decoder crash must not cost the actor"


def test_shard_that_kills_its_actor_every_time(fault_inputs, tmp_path, plant):
    """A shard whose actor dies on every attempt fails the job after exactly max_shard_attempts tries,
    naming it; the shards before it are committed, exactly."""
    from pipeline.errors import JobFailed

    spec, want = fault_inputs
    victim = shard_id(spec, 4)
    root = plant(f"kill@after_decode:{victim}#all")
    out, lines = tmp_path / "out", []
    with pytest.raises(JobFailed, match=r"s-004\.tar failed 3 times \(actor died each time\)"):
        run(demo_config("max_shard_attempts=3", "max_actor_restarts=5"), spec, out, lines)
    assert firings(root) == {(f"kill@after_decode:{victim}#all", victim): 3}
    assert sorted(records(out)) == [shard_id(spec, i) for i in range(4)]
    got = read_outcome(out)
    assert got.tokens == {k: v for k, v in want.tokens.items() if int(k[1:].split("-")[0]) < 4}
    assert got.rejects == {k: v for k, v in want.rejects.items() if int(k[1:].split("-")[0]) < 4}
    assert got.duplicates == 0
    assert_only_committed_parts_visible(out)


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
    assert not any(r.url.endswith("s-001.tar") for r in records(out).values())
    assert_only_committed_parts_visible(out)
    assert read_outcome(out).duplicates == 0


def test_commit_that_fails_between_its_renames_leaves_nothing_visible_then_rerun(fault_inputs, tmp_path,
                                                                                   plant):
    """Our code raises between the renames of shard 3's commit: its tokens and rejects parts were
    already renamed into place and must disappear again; the job fails naming it; a re-run completes."""
    from pipeline.errors import JobFailed

    spec, want = fault_inputs
    victim = shard_id(spec, 3)
    root = plant(f"raise@between_renames:{victim}")
    out, lines = tmp_path / "out", []
    with pytest.raises(JobFailed, match=r"s-003\.tar failed: .*planted fault raise@between_renames"):
        run(demo_config(), spec, out, lines)
    assert firings(root) == {(f"raise@between_renames:{victim}#1", victim): 1}
    assert victim not in records(out)
    assert not list(out.glob(f"*/part-{victim}.parquet"))
    assert_only_committed_parts_visible(out)
    assert not [p for p in out.rglob(".tmp-*")]
    run(demo_config(), spec, out, lines)  # the rule has fired its one time
    row = compare("exception between the renames of a commit, then re-run", 2, read_outcome(out), want,
                  f"failed on {victim}")
    assert row.ok, row.problems


def test_actor_deaths_beyond_the_limit_fail_the_job(fault_inputs, tmp_path, plant):
    """max_actor_restarts=0: the first actor death (after decoding shard 2) ends the job, loudly, with
    shard 0 committed, shard 1 committed or not (its commit may be in flight beside shard 2's encode,
    and then dies with the actor) and nothing half-written."""
    from pipeline.errors import JobFailed

    spec, _ = fault_inputs
    victim = shard_id(spec, 2)
    root = plant(f"kill@after_decode:{victim}")
    out, lines = tmp_path / "out", []
    with pytest.raises(JobFailed, match=r"died 1 times in a row \(max_actor_restarts 0\), last on shards? .*s-002"):
        run(demo_config("max_actor_restarts=0"), spec, out, lines)
    assert firings(root) == {(f"kill@after_decode:{victim}#1", victim): 1}
    assert sorted(records(out)) in ([shard_id(spec, 0)], [shard_id(spec, 0), shard_id(spec, 1)])
    assert_only_committed_parts_visible(out)


def test_fatal_cuda_error_replaces_the_actor_and_retries_the_shard(fault_inputs, tmp_path, plant):
    """An illegal memory access (raised as torch raises it) poisons the actor's CUDA context: the actor
    ends, the driver replaces it and the shard is redone; the job does not fail."""
    spec, want = fault_inputs
    victim = shard_id(spec, 2)
    root = plant(f"cudafatal@during_encode:{victim}")
    out, lines = tmp_path / "out", []
    summary = run(demo_config(), spec, out, lines)
    row = compare("fatal CUDA error (illegal address)", 1, read_outcome(out), want, "actor replaced, shard redone")
    assert row.ok, row.problems
    assert firings(root) == {(f"cudafatal@during_encode:{victim}#1", victim): 1}
    assert summary.shards_committed == 8 and sum("actor died" in line for line in lines) == 1
    assert records(out)[victim].attempt == 2


def test_actor_killed_after_encoding_before_its_commit(fault_inputs, tmp_path, plant):
    """SIGKILL once shard 3 is encoded and before its commit (off the encode thread) starts, while the
    next shard may already be encoding: shard 3 does not count as done, it and whatever else the actor
    held run again, and every row is there exactly once."""
    spec, want = fault_inputs
    victim = shard_id(spec, 3)
    root = plant(f"kill@before_commit:{victim}")
    out, lines = tmp_path / "out", []
    summary = run(demo_config(), spec, out, lines)
    died = [line for line in lines if "actor died" in line]
    row = compare("actor SIGKILLed after encoding, before its commit", 1, read_outcome(out), want,
                  "; ".join(line.split("] ", 1)[1].split(";")[0] for line in died))
    assert row.ok, row.problems
    assert firings(root) == {(f"kill@before_commit:{victim}#1", victim): 1}
    assert len(died) == 1 and victim in died[0], lines
    assert summary.shards_committed == 8 and records(out)[victim].attempt == 2
    assert_only_committed_parts_visible(out)
