"""Checkpoints: no arbitrary unpickling, full sha256 recorded and checked. Credentials: a secret in
source.storage_options is never printed, logged or written."""

import hashlib
import json
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from codec import load_model, random_model, save_model
from pipeline.config import load_config
from tests.conftest import REPO

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.faults
DEMO_SHARD = str(REPO / "demo" / "shards" / "demo-000.tar")


class _Evil:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))




def evil_checkpoints(root: Path, marker: Path) -> dict[str, Path]:
    """Every weights layout load_model reads, each carrying a code-running pickle."""
    root.mkdir()
    th = root / "encodec_24khz-evil.th"
    torch.save({"best_state": _Evil(marker)}, th)
    raw = root / "encodec_24khz-raw.th"
    raw.write_bytes(pickle.dumps({"encoder.model.0.conv.conv.weight": _Evil(marker)}))
    hf = save_model(random_model("random:24khz"), root / "hf")
    (hf / "model.safetensors").unlink()
    torch.save({"encoder.layers.0.conv.bias": _Evil(marker)}, hf / "pytorch_model.bin")
    return {"th": th, "raw": raw, "bin": hf}


def test_torch_is_past_the_weights_only_bypass():
    # CVE-2025-32434: torch.load(weights_only=True) could still run code before torch 2.6.0
    assert tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6)


def test_malicious_pickle_checkpoints_are_refused(tmp_path):
    marker = tmp_path / "PWNED"
    for layout, path in evil_checkpoints(tmp_path / "ckpt", marker).items():
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            load_model(path)
        assert not marker.exists(), layout


def test_checkpoint_sha256_recorded_and_mismatch_fails_the_job(tmp_path, local_ray):
    from pipeline.errors import JobFailed
    from pipeline.job import run_job

    model_dir = save_model(random_model("random:24khz:seed=3"), tmp_path / "model")
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()

    cfg = load_config(REPO / "configs" / "test.yaml", [f"model={model_dir}", "model_sha256=" + "0" * 64])
    with pytest.raises(JobFailed, match=f"sha256 {digest} does not match"):
        run_job(cfg, DEMO_SHARD, str(tmp_path / "bad"), log=lambda m: None)
    assert not (tmp_path / "bad" / "_manifest").exists()

    marker = tmp_path / "PWNED"
    evil = evil_checkpoints(tmp_path / "ckpt", marker)["th"]
    with pytest.raises(JobFailed, match="(?s)failed to start.*Weights only load failed"):
        run_job(load_config(REPO / "configs" / "test.yaml", [f"model={evil}"]), DEMO_SHARD, str(tmp_path / "evil"),
                log=lambda m: None)
    assert not marker.exists()

    cfg = load_config(REPO / "configs" / "test.yaml", [f"model={model_dir}", f"model_sha256={digest}"])
    out = tmp_path / "good"
    run_job(cfg, DEMO_SHARD, str(out), log=lambda m: None)
    assert json.loads((out / "_provenance.json").read_text())["checkpoint_sha256"] == digest
    (part,) = (out / "tokens").glob("*.parquet")
    assert json.loads(pq.read_schema(part).metadata[b"audiotok.checkpoint_sha256"]) == digest
    assert json.loads(pq.read_schema(part).metadata[b"audiotok.random_weights"]) is False


def test_secret_in_storage_options_is_never_printed_logged_or_written(tmp_path):
    secret = "sk-live-" + secrets.token_hex(16)
    config = tmp_path / "job.yaml"  # fsspec's local filesystem accepts and ignores the options
    config.write_text((REPO / "configs" / "test.yaml").read_text().replace(
        "source:\n", f"source:\n  storage_options: {{token: {secret}, key: {secret}-key}}\n")
        + f"output:\n  storage_options: {{token: {secret}-out}}\n")  # the job's every output read and write
    assert load_config(config).source.storage_options["token"] == secret
    assert load_config(config).output.storage_options["token"] == f"{secret}-out"
    temp = Path(tempfile.mkdtemp(prefix="at-", dir="/tmp"))  # Ray's sockets need a short path
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(temp), "TMPDIR": str(temp)}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "out"
    inputs = [str(REPO / "demo" / "shards" / "demo-{000..001}.tar"), str(tmp_path / "missing-{0..1}.tar")]
    try:
        printed = []
        for spec in inputs:  # a full run (rows, rejects, progress) and one that fails on its input
            done = subprocess.run([sys.executable, "-m", "jobs.tokenize", "--config", str(config), "--input", spec,
                                   "--output", str(out)],
                                  cwd=REPO, env=env, capture_output=True, timeout=300, check=False)
            printed.append(done.stdout + done.stderr)
        assert b'"rows": 7' in printed[0] and b"do not exist" in printed[1]
        written = [p for root in (out, temp) for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        assert any(p.name == "_summary.json" for p in written) and any("logs" in p.parts for p in written)
        leaks = [str(p) for p in written if secret.encode() in p.read_bytes()]
        leaks += [f"output of run {n}" for n, text in enumerate(printed) if secret.encode() in text]
        assert not leaks, leaks
        provenance = json.loads((out / "_provenance.json").read_text())
        assert provenance["job_config"]["source"]["storage_options"] == {"token": "<redacted>", "key": "<redacted>"}
        assert provenance["job_config"]["output"]["storage_options"] == {"token": "<redacted>"}
    finally:
        shutil.rmtree(temp, ignore_errors=True)
