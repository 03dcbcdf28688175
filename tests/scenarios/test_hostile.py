"""The job on real Ray over the generated hostile corpus (tests/hostile_corpus.py): every input is
rejected with its expected reason or tokenized, nothing is written outside the output directory, no
pickle is loaded, no shell command runs, and memory stays within the configured budgets."""

import os
import re
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from pipeline import writer
from pipeline.config import load_config
from tests.conftest import REPO, corpus_file
from tests.hostile_corpus import FLAC, HOSTILE_OVERRIDES, MP3, OGG, WAV, build

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("local_ray")]


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
            if skip not in p.parents and p != skip}


def test_hostile_corpus_is_rejected_or_handled(tmp_path):
    from pipeline.job import run_job

    for rel in (FLAC, OGG, MP3, WAV):  # the real files it is built from: skip without the corpus
        corpus_file(rel)
    built = build(tmp_path / "in")
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)
    cfg = load_config(REPO / "configs" / "test.yaml", HOSTILE_OVERRIDES)
    lines: list[str] = []
    run_job(cfg, built["tars"], str(out), log=lines.append)
    run_job(cfg, built["manifest"], str(out), log=lines.append)

    tokens = pads.dataset(out / "tokens").to_table(columns=["key", "num_samples"]).to_pylist()
    rejects = pads.dataset(out / "rejects").to_table().to_pylist()
    keys = [r["key"] for r in tokens] + [r["key"] for r in rejects]
    assert len(keys) == len(set(keys)), "a key appears twice"
    got: dict[str, str] = {}
    tokenized = {re.sub(r"#\d+$", "", r["key"]) for r in tokens}
    for key in tokenized:
        got[key] = "ok"
    for r in rejects:
        base = re.sub(r"#\d+$", "", r["key"])
        if not (r["reason"] == "too_short" and base in tokenized):  # a short tail segment of a long item
            got[r["key"]] = r["reason"]
    assert got == built["expected"], {k: (got.get(k), v) for k, v in built["expected"].items() if got.get(k) != v}

    details = {r["key"]: r["detail"] for r in rejects}
    assert "decoding passed max_decoded_bytes" in details["bomb-flac"]  # stopped while decoding, in blocks
    assert "header claims" in details["ten-hours-flac"]  # refused before decoding
    assert all("outside" in details[k] or "Channel count" in details[k]
               for k, v in built["expected"].items() if v == "bad_header")

    # nothing written outside the output directory, and nothing but the writer's files inside it
    assert snapshot(tmp_path, out) == before
    assert not Path("/abs/path.flac").exists() and not (tmp_path / "escape.flac").exists()
    allowed = re.compile(r"(tokens|rejects)/part-[\w.-]+\.parquet|rows/[\w.-]+\.parquet|_manifest/[\w.-]+\.json"
                         r"|_manifest/_snapshot/snapshot-\d{10}\.jsonl\.zst|_row_index/[0-9a-f]{32}\.parquet"
                         r"|_provenance\.json|_summary\.json|_run\.json")
    assert all(allowed.fullmatch(str(p.relative_to(out))) for p in out.rglob("*") if p.is_file())
    # no pickle was loaded and no shell command ran (either would have created a marker)
    assert not any(os.path.exists(m) for m in built["markers"])

    records = writer.committed_shards(str(out)).values()
    budget_mb = cfg.audio.max_decoded_bytes / 2**20
    decoders = max(r.decoder_peak_rss_mb for r in records)
    assert 0 < decoders < 2 * budget_mb + 256, decoders  # the 2.1 GB bomb was cut at the budget
    assert max(r.worker_peak_rss_mb for r in records) < 2048
    assert sum(r.decoder_restarts for r in records) == 0  # hostile data crashed no decoder
    assert not any("actor died" in line for line in lines)
