"""Rows for the codec families beside EnCodec (DAC, Mimi), through the `Codec` interface only.

For each random preset: held-out corpus clips at its rate, cut to mixed lengths (`codec_rows.mixed_batch`),
encoded one item at a time on the CPU plan (the exact reference: equal to transformers' one-item codes,
tests/codec/dac, tests/codec/mimi) and as one batch on the device's plan, at the preset's highest
bandwidth. A row gives the batch's code agreement with the reference and its × realtime. The weights
are random (no hub here): `random_dac` / `random_mimi` fill the codebooks from the model's own latents,
so codes are not trivial. The reference is kept to `FAMILY_CLIPS` clips: one item at a time on the
CPU is slow for DAC 44 kHz (several CPU-seconds per audio-second).
"""

from __future__ import annotations

import copy
import time

import torch

from codec.registry import load_codec

from .. import codec as bench_codec
from .codec_rows import TARGET, mixed_batch
from .table import Check

FAMILY_PRESETS = ("random:dac_44khz", "random:mimi")
FAMILY_CLIPS = 4


def family_row(source: str, device: str, sizes) -> Check:
    """One preset's row (see the module docstring); sizes: family_clip_s and max_clips (`sizes.Sizes`)."""
    base = load_codec(source).set_batch_plan("cpu")
    rate, bw = base.sample_rate, max(base.target_bandwidths)
    _, held = bench_codec.load_audio(rate, base.channels, 0.1, FAMILY_CLIPS * sizes.family_clip_s)
    clips = bench_codec.cut_clips(held, rate, sizes.family_clip_s)[: min(FAMILY_CLIPS, sizes.max_clips)]
    x, lengths = mixed_batch(clips, clips.shape[0], probe_at=0)
    with torch.inference_mode():
        reference = [base.encode(x[i:i + 1, :, :n], bandwidth=bw)[0].codes for i, n in enumerate(lengths)]
        plan = "cuda" if device == "cuda" else "cpu"
        model = copy.deepcopy(base).to(device).set_batch_plan(plan)
        model.encode(x.to(device), lengths, bandwidth=bw)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        codes = [item.codes.cpu() for item in model.encode(x.to(device), lengths, bandwidth=bw)]
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    audio_s = sum(lengths) / rate
    agree = bench_codec.agreement(codes, reference)
    return Check("families", f"{base.name} {bw:g} kbps, batch {len(lengths)} ({plan} plan)",
                 "ok" if agree >= TARGET else "fail", f"{agree:.3f} %",
                 f"{audio_s / seconds:.3g}x realtime on {audio_s:.1f} s of mixed-length clips; vs one item at a "
                 f"time on the CPU plan; random weights",
                 {"source": source, "kbps": bw, "batch": len(lengths), "plan": plan, "agreement_pct": agree,
                  "realtime": audio_s / seconds, "target_pct": TARGET})
