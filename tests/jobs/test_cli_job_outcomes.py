"""Whole tokenize runs through the CLI: a job whose own verify fails exits 3 with its tokens committed;
a skipped model source is logged whole, on one line; each row names its own file (`item_path`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_verify_failure_exits_3_and_keeps_the_tokens(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    # the config's model cannot load here, its fallback can; code agreement above 1 cannot pass
    args = ["tokenize", "--input", str(ROOT / "demo" / "shards"), "--output", str(out), "model=nosuchorg/nosuchmodel",
            "model_fallback=random:24khz", "device=cpu", "num_actors=1", "decode_threads=1", "verify.sample_count=2",
            "verify.min_code_agreement=1.01", "verify.min_si_snr_db=50", "verify.max_mel_distance=0.1"]
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=380)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("audiotok: verify FAILED on 1 check(s); the tokens are "
                                                           "committed; report: ")
    summary = json.loads(done.stdout)
    assert summary["verify"]["passed"] is False
    # random weights: only code agreement is judged (SI-SNR 50 dB and mel 0.1 dB would fail every row)
    assert len(summary["verify"]["failures"]) == 1 and "code agreement" in summary["verify"]["failures"][0]
    assert len(list((out / "_manifest").glob("*.json"))) == 2  # the tokens stay committed
    skipped = [x for x in done.stderr.splitlines() if "model source skipped" in x]
    assert len(skipped) == 1 and skipped[0].startswith("[audiotok] model source skipped: nosuchorg/nosuchmodel: ")
    assert skipped[0].rstrip().endswith("random:48khz"), skipped[0]  # the whole message: it ends with the choices
    table = pq.read_table(sorted((out / "tokens").glob("*.parquet"))[0])
    assert table.schema.field("item_path").type == "string"
    tar = str(ROOT / "demo" / "shards" / "demo-000.tar")
    assert table.column("source").to_pylist()[0] == tar  # kept as it was
    for key, path in zip(table.column("key").to_pylist(), table.column("item_path").to_pylist()):
        assert path.startswith(tar + "#" + key.split("#")[0] + "."), (key, path)
