"""A new user's mistakes through the CLI: exit status 2, one line on stderr, no traceback, and for the
driver-side checks (pipeline/preflight.py) an answer within 5 s without starting Ray."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "demo" / "shards")
DRIVER_LIMIT_S = 5.0


# Ray "runs" at a closed port: a command that got as far as connecting would fail with "cannot reach the
# Ray cluster" (exit 1), so an expected one-line error proves the check ran before Ray
NO_RAY = {"RAY_ADDRESS": "127.0.0.1:9"}


def audiotok(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """The command's result and its time to answer: wall seconds, scaled down by how overloaded the
    machine is (load average over cores, when above 1: a shared test machine), but never below the
    CPU seconds the command used."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **NO_RAY, **(env or {})}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    overload = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    return done, max(wall / overload, cpu)


def assert_one_line_error(done: subprocess.CompletedProcess, seconds: float, *, status: int = 2,
                          contains: str = "") -> str:
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == status, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert contains in lines[0], lines[0]
    assert seconds < DRIVER_LIMIT_S, f"{seconds:.1f} s to: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("model, says", [
    ("random:25khz", "unknown random model"),
    ("tiny:48khz", "no such tiny model"),
    ("./no/such/dir", "not found"),
    ("nosuchorg/nosuchmodel", "nosuchorg/nosuchmodel"),
])
def test_an_explicit_model_must_load_or_fail(tmp_path, model, says):
    """demo.yaml has a fallback model; a --model named by the user never falls back to it."""
    done, seconds = audiotok("tokenize", "--config", "configs/demo.yaml", "--input", DEMO, "--model", model,
                             "--output", str(tmp_path / "out"), env={"HF_HUB_OFFLINE": "1"})
    line = assert_one_line_error(done, seconds, contains=says)
    assert line.startswith("audiotok: bad configuration: model")
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_file_that_does_not_load(tmp_path):
    bad = tmp_path / "encodec_24khz-d7cc33bc.th"
    bad.write_bytes(b"not a checkpoint")
    done, seconds = audiotok("tokenize", "--input", DEMO, "--model", str(bad), "--output", str(tmp_path / "out"))
    assert_one_line_error(done, seconds, contains="is not a checkpoint that loads")


def test_hub_model_without_network_is_bounded(tmp_path):
    """No HF_HUB_OFFLINE, and a hub that cannot be reached (a closed local port as its endpoint)."""
    done, seconds = audiotok("tokenize", "--config", "configs/encodec_24khz.yaml", "--input", DEMO, "--model",
                             "someorg/somemodel", "--output", str(tmp_path / "out"),
                             env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"})
    assert_one_line_error(done, seconds, contains="cannot be reached")


def test_hub_dataset_without_network_is_bounded(tmp_path):
    done, seconds = audiotok("tokenize", "--input", "hf:someorg/somedataset", "--model", "random:24khz",
                             "--output", str(tmp_path / "out"), env={"HF_ENDPOINT": "http://127.0.0.1:9",
                                                                    "HF_HUB_OFFLINE": "0"})
    assert_one_line_error(done, seconds, contains="bad input: input hf:someorg/somedataset: not a local path, and "
                                                  "the hub (127.0.0.1) cannot be reached")


def test_bandwidth_the_model_lacks(tmp_path):
    done, seconds = audiotok("tokenize", "--input", DEMO, "--model", "random:24khz", "--output",
                             str(tmp_path / "out"), "bandwidths=[7.0]")
    assert_one_line_error(done, seconds, contains="bandwidths [7.0] kbps are not ones model 'random:24khz' has")


def test_output_naming_a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("x")
    done, seconds = audiotok("tokenize", "--input", DEMO, "--model", "random:24khz", "--output", str(path))
    assert_one_line_error(done, seconds, contains="is a file; give a directory")
    done, seconds = audiotok("tokenize", "--input", DEMO, "--model", "random:24khz", "--output", str(path / "sub"))
    assert_one_line_error(done, seconds, contains="is a file, so the directory cannot be created")


def test_missing_input(tmp_path):
    done, seconds = audiotok("tokenize", "--input", str(tmp_path / "nothing-*.wav"), "--model", "random:24khz",
                             "--output", str(tmp_path / "out"))
    assert_one_line_error(done, seconds, contains="bad input")


def _fake_committed(out: Path, **job) -> None:
    """An output that holds one committed (empty) shard of another run, and that run's sidecar."""
    from pipeline.config import OutputConfig
    from pipeline.records import ShardRecord
    from pipeline.schema import rejects_table, tokens_table
    from pipeline.writer import commit_shard

    out.mkdir(parents=True)
    job_config = {"model": "random:24khz", "bandwidths": [1.5, 6.0], "precision": "fp32", "batch_plan": "auto",
                  "audio": {"max_duration_s": 30.0, "resample_quality": "HQ", "resample_on": "decoder"},
                  "source": {"metadata_columns": ["text", "speaker", "caption"]}, **job}
    sidecar = {"format_version": 1, "model_source": "random:24khz:seed=0", "bandwidths": job_config["bandwidths"],
               "job_config": job_config}
    commit_shard(str(out), "demo-000", tokens_table([], []), rejects_table([]), ShardRecord("demo-000", DEMO, 0, 0),
                 {}, OutputConfig())
    (out / "_provenance.json").write_text(json.dumps(sidecar))


def test_output_holding_another_models_shards(tmp_path):
    from pipeline.writer import committed_shards

    out = tmp_path / "out"
    _fake_committed(out)
    assert list(committed_shards(str(out))) == ["demo-000"]  # the fake is a real commit record
    done, seconds = audiotok("tokenize", "--input", DEMO, "--model", "random:48khz", "--output", str(out),
                             "bandwidths=[6.0]")
    line = assert_one_line_error(done, seconds, contains="already holds 1 committed shard(s) made with other settings")
    assert "model: random:24khz:seed=0 -> random:48khz" in line and "write to a new output directory" in line


def test_rerun_with_other_bandwidths_than_committed(tmp_path):
    out = tmp_path / "out"
    _fake_committed(out)
    done, seconds = audiotok("tokenize", "--input", DEMO, "--model", "random:24khz", "--output", str(out),
                             "bandwidths=[3.0]")
    line = assert_one_line_error(done, seconds, contains="bandwidths: [1.5, 6.0] -> [3.0]")
    assert "model:" not in line


def test_help_lists_commands_and_unknown_command_fails():
    done, _ = audiotok("--help")
    assert done.returncode == 0
    for name in ("tokenize", "verify", "diff", "gpu-check"):
        assert any(line.split()[:1] == [name] and len(line.split()) > 3 for line in done.stdout.splitlines()), name
    done, seconds = audiotok("nosuch")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "audiotok: unknown command 'nosuch'; commands: tokenize, verify, diff, gpu-check (audiotok --help)"]
    done, _ = audiotok()
    assert done.returncode == 2 and "commands:" in done.stderr


def test_preflight_finds_the_shipped_tiny_models_as_the_loader_does():
    from codec.loading import TINY_MODELS
    from pipeline.preflight import _tiny_models

    assert {k: v.resolve() for k, v in _tiny_models().items()} == {k: v.resolve() for k, v in TINY_MODELS.items()}
