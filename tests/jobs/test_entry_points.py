"""The entry points turn a user's mistake into one line and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    env = {"RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("args, says", [
    (["--input", "no/such/dir/*.tar"], "matches 0 files to tokenize"),
    (["--input", "missing-shard.tar"], "do not exist"),
    (["--input", "demo/shards/demo-000.tar", "buckets.no_such_key=1"], "unknown config key"),
    (["--input", "demo/shards/demo-000.tar", "precision=fp8"], "precision must be one of"),
])
def test_tokenize_bad_arguments_exit_2_in_one_line(tmp_path, args, says):
    done = run("-m", "jobs.tokenize", "--config", "configs/test.yaml", "--output", str(tmp_path / "o"), *args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("audiotok:")]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr


def test_tokenize_missing_config_file_exits_2(tmp_path):
    done = run("-m", "jobs.tokenize", "--config", "configs/nope.yaml", "--input", "x.tar", "--output", str(tmp_path))
    assert done.returncode == 2 and "cannot read config configs/nope.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_verify_missing_dataset_exits_2(tmp_path):
    done = run("-m", "jobs.verify", "--tokens", str(tmp_path / "none"), "--report", str(tmp_path / "r"))
    assert done.returncode == 2 and done.stderr.startswith("audiotok verify: ") and "Traceback" not in done.stderr
