"""Both token streams of a row, cropped to the same time window: the rounding rule of `time_window` at
the acoustic frame rates (75, 50, 86.13, 12.5 Hz) against the 50 Hz semantic one, and the reader and the
loader on a committed two-stream dataset whose ids count frames (so a crop's ids say where it starts)."""

import math

import numpy as np
import pytest
import torch

from pipeline import schema, writer
from pipeline.config import OutputConfig
from pipeline.reader import TokenDataset
from pipeline.records import ShardRecord
from pipeline.time_window import frame_span, window_of
from pipeline.training import Pattern, TokenLoader
from pipeline.training.loader import interleave_streams
from tests.pipeline.training.token_corpus import provenance

SEMANTIC = {"name": "semantic", "column": "semantic_codes", "family": "hubert", "model_name": "hubert_base_l9_k500",
            "model_source": "random:hubert_base", "checkpoint_sha256": "1" * 64, "random_weights": True,
            "centroids_sha256": "2" * 64, "tokenizer_config": {}, "sample_rate": 16000, "channels": 1,
            "frame_rate": 50.0, "hop_length": 320, "min_samples": 400, "codebook_size": 500, "resampler": {}}


@pytest.mark.parametrize("rate", [75.0, 50.0, 44100 / 512, 12.5])
def test_crops_of_two_rates_cover_the_same_time(rate):
    rng = np.random.default_rng(0)
    for _ in range(2000):
        seconds = float(rng.uniform(0.05, 30))
        acoustic_total = math.ceil(seconds * rate)
        semantic_total = (int(seconds * 16000) - 400) // 320 + 1
        start = int(rng.integers(0, acoustic_total))
        frames = int(rng.integers(1, acoustic_total - start + 1))
        t0, t1 = window_of(start, frames, rate)
        first, count = frame_span(t0, t1, 50.0, semantic_total)
        assert abs(first / 50 - t0) <= 1 / 100 + 1e-9 or first == semantic_total  # half a semantic frame
        end = (first + count) / 50
        assert abs(end - t1) <= 1 / 100 + 1e-9 or first + count == semantic_total
        # clipped at the row's end: HuBERT's frames stop 25 ms (its 400-sample window) before the audio's end,
        # and the codec's last frame may be padded: within 1.25 semantic frames + one acoustic frame
        assert abs(end - t1) <= 0.025 + 1 / rate + 1e-9
        assert 0 <= first <= first + count <= semantic_total
    assert frame_span(0.0, 1.0, 50.0, 49) == (0, 49)  # 1 s of HuBERT frames: 49, not 50
    assert frame_span(0.01, 0.05, 50.0, 100) == (1, 2)  # 0.5 and 2.5 frames: half up
    with pytest.raises(ValueError):
        frame_span(1.0, 0.5, 50.0, 100)


def write_two_streams(out, rows=6, seed=0):
    """Rows whose codes[q, t] = t and semantic_codes[0, s] = s, of random lengths; returns {key: seconds}."""
    rng = np.random.default_rng(seed)
    prov = {**provenance(), "codec_config": {"codebook_size": 1024}, "streams": [SEMANTIC]}
    token_rows, seconds = [], {}
    for i in range(rows):
        dur = float(rng.uniform(1.0, 6.0))
        frames, sem = math.ceil(dur * 75), (int(dur * 16000) - 400) // 320 + 1
        codes = np.tile(np.arange(frames) % 1024, (8, 1))
        row = schema.TokenRow(f"k{i}", "s0.tar", codes, int(dur * 24000), 0, None, 0.0, dur, {"caption": f"c{i}"})
        row.streams["semantic_codes"] = np.arange(sem)[None] % 500
        token_rows.append(row)
        seconds[f"k{i}"] = dur
    table = schema.tokens_table(token_rows, ["caption"], ["semantic_codes"])
    writer.commit_shard(str(out), "s0", table, schema.rejects_table([]), ShardRecord("s0", "s0", rows=rows, rejects=0),
                        schema.file_metadata(prov), OutputConfig(row_group_rows=2))
    writer.write_provenance(str(out), prov)
    return seconds


def _check_aligned(codes_start, codes_frames, sem_ids):
    t0, t1 = codes_start / 75, (codes_start + codes_frames) / 75
    assert abs(sem_ids[0] / 50 - t0) <= 0.01 + 1e-9
    assert abs((sem_ids[-1] + 1) / 50 - t1) <= 0.01 + 1e-9 or t1 - (sem_ids[-1] + 1) / 50 <= 0.025 + 1 / 75 + 1e-9
    assert (np.diff(sem_ids) == 1).all()


def test_reader_yields_both_streams_cropped_to_one_window(tmp_path):
    seconds = write_two_streams(tmp_path)
    whole = {it["key"]: it for it in TokenDataset(str(tmp_path), streams=("semantic",))}
    assert set(whole) == set(seconds)
    for key, it in whole.items():
        assert it["semantic_codes"].shape == (1, (int(seconds[key] * 16000) - 400) // 320 + 1)
    ds = TokenDataset(str(tmp_path), streams=("semantic",), crop_s=0.8, seed=3)
    seen = 0
    for it in ds:
        codes, sem = it["codes"][0].numpy(), it["semantic_codes"][0].numpy()
        assert len(codes) == 60 and it["num_frames"] == 60
        _check_aligned(int(codes[0]), len(codes), sem)
        assert it["window_s"] == (codes[0] / 75, (codes[0] + 60) / 75)
        seen += codes[0] > 0
    assert seen  # some crops start inside their row
    with pytest.raises(ValueError, match="streams \\['acoustic2'\\] are not in this dataset"):
        TokenDataset(str(tmp_path), streams=("acoustic2",))


def test_loader_batches_both_streams_with_a_pattern_each(tmp_path):
    write_two_streams(tmp_path)
    loader = TokenLoader(str(tmp_path), max_tokens=8 * 100 * 3, max_frames=100, streams=("semantic",), seed=1)
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == 6
    for batch in batches:
        assert batch["semantic_codes"].shape[:2] == (len(batch["key"]), 1)
        for b in range(len(batch["key"])):
            n, s = int(batch["num_frames"][b]), int(batch["semantic_num_frames"][b])
            codes = batch["codes"][b, 0, :n].numpy()
            sem = batch["semantic_codes"][b, 0, :s].numpy()
            assert int(batch["start_frame"][b]) == codes[0] and int(batch["semantic_start_frame"][b]) == sem[0]
            _check_aligned(int(codes[0]), n, sem)
            assert (batch["semantic_codes"][b, 0, s:] == 500).all()  # padded with the codebook size
            assert batch["semantic_mask"][b].sum() == s
        out = interleave_streams(batch, {"codes": Pattern("delay", 8), "semantic_codes": Pattern("parallel", 1)},
                                 {"codes": 1024, "semantic_codes": 500})
        assert out["codes"].sequence.shape[1:] == (8, batch["codes"].shape[-1] + 7)
        assert torch.equal(out["semantic_codes"].mask[:, 0], batch["semantic_mask"])
