"""The precision table's pieces: FLOPs per audio-second (the LSTM by hand), rows, refusal, markdown."""

import math

import torch

from codec import random_model
from codec.precision import PrecisionError
from pipeline.bench import precision as pt
from tests.conftest import noise_clips_and_codes


def test_flops_of_the_24khz_encoder():
    row = pt.flop_row("24khz", random_model("random:24khz"))
    # LSTM: 2 layers of 512 units stepped at 75 frames/s, 2 * 4H * (D + H) FLOPs per frame and layer
    assert row.lstm_gflop == 2 * 75 * 2 * 4 * 512 * (512 + 512) / 1e9
    # RVQ distances: 32 codebooks of 1024 x 128 at 75 frames/s; the rest (convs) from the counter
    assert row.rvq_gflop == 32 * 75 * 2 * 1024 * 128 / 1e9
    assert 2.0 < row.conv_gflop < 3.0
    assert math.isclose(row.realtime_limit("fp32"), 67e3 / row.total_gflop)
    assert math.isclose(row.realtime_limit("bf16"), 15 * row.realtime_limit("fp32"))


def test_fp32_row_reproduces_the_reference_and_tf32_is_emulated():
    model = random_model("random:24khz")
    clips, reference = noise_clips_and_codes(model, 1, 12000)
    fp32 = pt.precision_row("m", model, clips, reference, "fp32")
    assert (fp32.status, fp32.how, fp32.agreement_pct, fp32.q0_agreement_pct) == ("ok", "measured", 100.0, 100.0)
    assert math.isfinite(fp32.si_snr_db) and fp32.mel_distance_db > 0
    tf32 = pt.precision_row("m", model, clips, reference, "tf32")
    assert tf32.how == "emulated" and 0 < tf32.agreement_pct <= 100


def test_a_refused_precision_is_a_row_not_a_crash(monkeypatch):
    def refuse(model, dtype):
        raise PrecisionError("wrong kernel")

    monkeypatch.setattr(pt, "reduced_copy", refuse)
    model = random_model("random:24khz")
    row = pt.precision_row("m", model, torch.zeros(1, 1, 2400), [], "bf16")
    assert (row.status, row.detail) == ("refused", "wrong kernel")
    text = pt.format_markdown([row], [])
    assert "| m | bf16 | measured | 1 x 0.1 s | refused |" in text
