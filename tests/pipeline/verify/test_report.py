"""Report pieces without a model: aggregates, thresholds, ordering, PNG/WAV/SVG writers, the files."""

import io
import json
import math
import struct
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.config import VerifyConfig
from pipeline.verify import VerifySummary, report, report_media
from pipeline.verify.result import BandwidthScores, CheckResult, Media
from pipeline.verify.thresholds import badness, threshold_failures


def result(key, source, snr, agree=1.0, status="ok", mel=10.0, media=False):
    r = CheckResult(key=key, source=source, num_samples=24000, duration_s=1.0, start_s=0.0, status=status,
                    detail="" if status == "ok" else "why", code_agreement_all=agree)
    if status == "ok":
        for bw, n_q in ((1.5, 2), (6.0, 8)):
            r.bandwidths[bw] = BandwidthScores(n_q=n_q, si_snr_db=snr - (6.0 - bw), mel_distance_db=mel, lsd_db=5.0,
                                               code_agreement=agree)
    if media:
        t = np.arange(24000) / 24000
        orig = np.sin(2 * np.pi * 440 * t)[None].astype(np.float32) * 0.5
        r.media = Media(orig, {bw: orig * 0.9 for bw in (1.5, 6.0)})
    return r


def summary_of(passed, failures, tokens):
    return VerifySummary(passed=passed, failures=failures, tokens=tokens, path="inline", rows_total=3,
                         rows_sampled=3, seed=0, sample_count=3, sample_fraction=None, status_counts={},
                         model_source="m", model_sha256=None, model_matches_provenance=False, random_weights=None,
                         device="cpu", precision="fp32", threads=1, bandwidths=[1.5, 6.0], thresholds=VerifyConfig(),
                         report="r")


def test_aggregates_by_bandwidth_and_source():
    results = [result(f"k{i}", "a.tar" if i < 4 else "b.tar", snr=float(i)) for i in range(10)]
    rows = report.flatten(results)
    aggs = report.aggregates(rows)
    top = next(a for a in aggs if a["group"] == "bandwidth" and a["bandwidth_kbps"] == 6.0)
    snrs = np.arange(10.0)
    assert top["n"] == 10 and top["si_snr_db_mean"] == pytest.approx(4.5)
    assert top["si_snr_db_p5"] == pytest.approx(np.percentile(snrs, 5)) and top["si_snr_db_median"] == 4.5
    low = next(a for a in aggs if a["group"] == "bandwidth" and a["bandwidth_kbps"] == 1.5)
    assert low["si_snr_db_mean"] == pytest.approx(4.5 - 4.5)
    b = next(a for a in aggs if a["group"] == "source" and a["source"] == "b.tar" and a["bandwidth_kbps"] == 6.0)
    assert b["n"] == 6 and b["si_snr_db_mean"] == pytest.approx(6.5)


def test_thresholds_and_worst_first():
    results = [result("good", "a", 20.0), result("noisy", "a", 2.0, mel=30.0), result("drift", "a", 20.0, agree=0.97),
               result("gone", "a", 0.0, status="missing_original"), result("silent", "a", math.nan)]
    assert [r.key for r in sorted(results, key=badness)] == ["gone", "drift", "silent", "noisy", "good"]
    failures = threshold_failures(results, VerifyConfig(min_si_snr_db=5.0, max_mel_distance=20.0,
                                                        min_code_agreement=0.999))
    assert len(failures) == 4
    assert failures[0].startswith("1/5 rows could not be verified: gone (missing_original")
    assert failures[1] == "code agreement < 0.999 for 1/4 rows: drift (0.97)"
    assert failures[2] == "SI-SNR dB < 5.0 for 1/4 rows: noisy (2)"  # NaN (silent original) is not judged
    assert failures[3] == "mel distance dB > 20.0 for 1/4 rows: noisy (30)"
    assert threshold_failures(results[:1], VerifyConfig(min_code_agreement=None)) == []


def _read_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    w, h = size
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_png_wav_svg():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert np.array_equal(_read_png(report_media.png_bytes(rgb)), rgb)
    with pytest.raises(ValueError):
        report_media.png_bytes(np.zeros((0, 3, 3), np.uint8))
    levels = report_media.mel_db(np.sin(np.arange(24000) * 0.1)[None], 24000)
    image = report_media.spectrogram_rgb(levels, float(levels.max()))
    assert image.shape == (2 * levels.shape[0], levels.shape[1], 3) and levels.shape[1] <= 640
    audio, rate = sf.read(io.BytesIO(report_media.wav_bytes(np.array([[0.5, 2.0, -3.0]]), 16000)))
    assert rate == 16000 and np.allclose(audio, [0.5, 1.0, -1.0], atol=1e-4)
    svg = report_media.histogram_svg([1.0, 2.0, math.nan, 2.5], "x <&>", threshold=3.0)
    assert svg.count("<rect") == 20 and "n=3" in svg and "x &lt;&amp;&gt;" in svg and "#d33" in svg
    assert "no finite values" in report_media.histogram_svg([math.nan], "y")


def test_write_report_files(tmp_path):
    results = sorted([result("a#0", "s/a.tar", 3.0, media=True), result("b", "s/b.tar", 9.0),
                      result("c", "s/b.tar", 0.0, status="length_mismatch")], key=badness)
    summary = report.write_report(str(tmp_path), results, summary_of(False, ["x"], "t"), 24000)
    assert {p.name for p in tmp_path.iterdir()} == {"index.html", "items.parquet", "items.json", "aggregates.parquet",
                                                    "summary.json", "media"}
    items = pq.read_table(tmp_path / "items.parquet")
    assert items.schema == report.ITEMS_SCHEMA and items.num_rows == 5
    assert items.column("key").to_pylist()[0] == "c" and items.column("bandwidth_kbps").to_pylist()[0] is None
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["aggregates"] == json.loads(json.dumps(summary.aggregates)) and summary.aggregates
    assert saved == json.loads(json.dumps(summary.to_json())) and saved["sample"] == {"count": 3, "fraction": None}
    media = sorted(p.name for p in (tmp_path / "media").iterdir())
    assert len(media) == 6 and all(name.startswith("002-a_0-") for name in media)  # ranks from 1: a is 2nd
    page = (tmp_path / "index.html").read_text()
    assert "FAILED" in page and page.count("<audio") == 3 and page.count("<img") == 3 and 'href="#item-2"' in page
